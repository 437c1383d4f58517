//! What `capture()` costs the host's thread: each call timed on its own, against a
//! collector on loopback that answers at once, and against one that never answers.
//! Prints percentiles; docs/BENCHMARKS.md ("Agent capture") holds the figures.
//!
//! cargo bench -p anonstats-client --bench capture

use anonstats_client::{Client, Mode};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A collector that answers `{"status":1}` to every request, or never answers.
fn collector(answers: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if !answers {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                              content-length: 12\r\n\r\n{\"status\":1}";
                    if reader.get_mut().write_all(ok.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(label: &str, endpoint: &str, mode: Mode, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder()
        .product("bench", "1.0.0")
        .endpoint(endpoint)
        .token("phc_bench")
        .config_dir(dir.path().join("etc"))
        .state_dir(dir.path().join("state"))
        .mode(mode)
        .env(|_| None)
        .build()
        .unwrap();
    let mut props = Map::new();
    props.insert("collectors_enabled".into(), Value::from(12));
    props.insert("dashboard".into(), Value::from("overview"));
    let mut times = Vec::with_capacity(n);
    let first = Instant::now();
    client.capture("BENCH_FIRST", props.clone());
    let first = first.elapsed();
    for _ in 0..n {
        let p = props.clone();
        let t = Instant::now();
        std::hint::black_box(client.capture("BENCH", p));
        times.push(t.elapsed());
        // A host's events come apart in time; the pause lets the client's own threads run
        // between two calls, as they would between two calls of a real program.
        std::thread::sleep(Duration::from_micros(200));
    }
    times.sort();
    println!(
        "{label:<34} first {:>8.1?}  p50 {:>7.1?}  p99 {:>7.1?}  p99.9 {:>7.1?}  max {:>8.1?}  (n={n})",
        first,
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 0.999),
        times[times.len() - 1],
    );
}

fn main() {
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    run("capture, collector answers", &collector(true), Mode::On, n);
    run(
        "capture, collector never answers",
        &collector(false),
        Mode::On,
        n,
    );
    run("capture, local mode", "http://127.0.0.1:9", Mode::Local, n);
}
