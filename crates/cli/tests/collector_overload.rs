//! When the disk stalls or senders outrun it, capture sheds load at once with 503 and
//! `Retry-After`, its memory stays bounded, and it recovers on its own.

mod common;

use common::Collector;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Senders that give up after two seconds and send again at once, as impatient clients
/// do: whatever they left behind is still the collector's to finish.
fn impatient_load(
    url: &str,
    token: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(u16, Duration, bool)>>> {
    (0..threads)
        .map(|t| {
            let (url, token, stop) = (url.to_string(), token.to_string(), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(2)))
                    .build()
                    .into();
                let mut seen = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let batch: Vec<_> = (0..1000)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}"), "properties": {"n": n * 1000 + i}}))
                        .collect();
                    n += 1;
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let sent = Instant::now();
                    match agent.post(&url).header("content-type", "application/json").send(body.as_bytes()) {
                        Ok(r) => {
                            let retry_after = r.headers().get("retry-after").is_some();
                            seen.push((r.status().as_u16(), sent.elapsed(), retry_after));
                        }
                        // Gave up waiting.
                        Err(_) => seen.push((0, sent.elapsed(), false)),
                    }
                }
                seen
            })
        })
        .collect()
}

#[test]
fn a_stalled_disk_sheds_with_503_at_once_keeps_memory_bounded_and_recovers() {
    if !common::require(std::path::Path::new("/usr/bin/strace").exists(), "strace") {
        return;
    }
    // The sync thread's 3rd to 6th fdatasync each take 5 s longer: the log stalls for
    // 20 s while senders keep coming.
    let c = Collector::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fdatasync",
            "-e",
            "inject=fdatasync:delay_enter=5000000:when=3..6",
        ],
        // A small bound, so that a few senders reach it on a debug build.
        &["--queue-mb", "8"],
    );
    let url = c.url("/batch/");
    for _ in 0..2 {
        let a = common::post_json(
            &url,
            &json!({"api_key": c.write_token, "event": "warm", "distinct_id": "w"}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = impatient_load(&url, &c.write_token, 16, stop.clone());
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<_> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let shed: Vec<_> = seen.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(
        !shed.is_empty(),
        "no request was answered 503 while the disk stalled: {:?}",
        summary(&seen)
    );
    assert!(
        shed.iter().all(|(_, _, ra)| *ra),
        "a 503 without Retry-After"
    );
    // Shedding does not wait for the disk: a 503 that took as long as a stalled sync
    // would be no shedding at all.
    let slowest = shed.iter().map(|(_, d, _)| *d).max().unwrap();
    assert!(slowest < Duration::from_secs(1), "a 503 took {slowest:?}");
    let others: Vec<_> = seen
        .iter()
        .filter(|(s, _, _)| ![0, 200, 503].contains(s))
        .collect();
    assert!(
        others.is_empty(),
        "answers other than 200 and 503: {others:?}"
    );
    let rss = c.peak_rss();
    assert!(rss < 300 << 20, "peak RSS {} MB", rss >> 20);

    // Once the disk catches up, capture answers 200 again without a restart.
    let recovered = Arc::new(Mutex::new(None));
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let a = common::post_json(
            &url,
            &json!({"api_key": c.write_token, "event": "after", "distinct_id": "w"}),
        );
        if a.status == 200 {
            *recovered.lock().unwrap() = Some(a.status);
            break;
        }
        assert_eq!(a.status, 503, "{}", a.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        recovered.lock().unwrap().is_some(),
        "capture did not recover after the stall"
    );
}

fn summary(seen: &[(u16, Duration, bool)]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for (s, _, _) in seen {
        *m.entry(*s).or_insert(0) += 1;
    }
    m
}
