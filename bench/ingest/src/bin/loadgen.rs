//! Load generator for the capture endpoints: N keep-alive HTTP/1.1 connections, each
//! sending one request at a time for a fixed duration, with agent events as
//! `anonstats-client` builds them (about 600 bytes each, a fresh v7 uuid per event).
//!
//! Prints one line of `key=value` pairs: requests/s, events/s, p50/p99/max latency over
//! the measured window, errors (503s counted apart as `shed`), and `acked_events`, every event answered with 200 during
//! warm-up and measurement (to compare with what the collector stored).

use anonstats_bench_ingest::{Generator, Mode};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Full URL of the capture endpoint, e.g. http://127.0.0.1:9470/batch/
    #[arg(long)]
    url: String,
    /// The project's write token.
    #[arg(long, default_value = "aw_bench")]
    token: String,
    /// Events per request: 1 sends a single event object, more sends `{"api_key", "batch": [...]}`.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Worker threads of the load generator's own runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Send a fresh token that no collector knows in every request (a flood of guesses).
    #[arg(long)]
    random_tokens: bool,
    /// Distinct machines (distinct_id values) the events come from.
    #[arg(long, default_value_t = 1000)]
    machines: usize,
    /// Requests a second across all connections, each connection paced to its share
    /// (0: as fast as they are answered).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    events: u64,
    errors: u64,
    acked_events: u64,
    /// Answers 503, and those of them without `Retry-After`.
    shed: u64,
    shed_without_retry_after: u64,
    /// Answers other than 200 and 503.
    other_status: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    /// The first failure that was not an HTTP answer (a reset or closed connection).
    first_unanswered: Option<String>,
}

struct Target {
    addr: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok(Target {
        addr: host.to_string(),
        host: host.to_string(),
        path: path.to_string(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let target = Arc::new(parse_url(&args.url)?);
    let mode = if args.batch <= 1 {
        Mode::Single
    } else {
        Mode::Batch(args.batch)
    };
    let mut generator = Generator::new(&args.token, args.machines, mode);
    if args.random_tokens {
        generator = generator.with_random_tokens();
    }
    let generator = Arc::new(generator);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let total = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            tasks.push(tokio::spawn(connection(
                target.clone(),
                generator.clone(),
                measure_from,
                end,
                (args.rate > 0.0)
                    .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate)),
            )));
        }
        let mut total = Stats::default();
        for t in tasks {
            let s = t.await.unwrap_or_else(|e| Stats {
                errors: 1,
                first_error: Some(e.to_string()),
                ..Stats::default()
            });
            total.requests += s.requests;
            total.events += s.events;
            total.errors += s.errors;
            total.acked_events += s.acked_events;
            total.shed += s.shed;
            total.shed_without_retry_after += s.shed_without_retry_after;
            total.other_status += s.other_status;
            total.latencies_us.extend(s.latencies_us);
            if total.first_unanswered.is_none() {
                total.first_unanswered = s.first_unanswered;
            }
            if total.first_error.is_none() {
                total.first_error = s.first_error;
            }
        }
        total
    });
    let cpu_pct = 100.0 * (cpu_seconds() - cpu_start) / start.elapsed().as_secs_f64();
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    if let Some(e) = &total.first_unanswered {
        eprintln!("first request without an answer: {e}");
    }
    if let Some(e) = &total.first_error {
        eprintln!("first error: {e}");
    }
    println!(
        "requests={} events={} rps={:.0} eps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={} acked_events={} shed={} shed_without_retry_after={} other_status={} client_cpu_pct={:.0}",
        total.requests,
        total.events,
        total.requests as f64 / args.duration,
        total.events as f64 / args.duration,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        total.errors,
        total.acked_events,
        total.shed,
        total.shed_without_retry_after,
        total.other_status,
        cpu_pct,
    );
    Ok(())
}

/// User + system CPU time of this process so far, from /proc (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One connection: reconnects after an error, stops at `end` once its request in
/// flight is answered (so every event it sent is either acknowledged or counted as an error).
async fn connection(
    target: Arc<Target>,
    generator: Arc<Generator>,
    measure_from: Instant,
    end: Instant,
    pace: Option<Duration>,
) -> Stats {
    let mut stats = Stats::default();
    // Spread the paced connections' sends over one interval.
    let mut next = Instant::now() + pace.map_or(Duration::ZERO, |p| p.mul_f64(fastrand::f64()));
    let mut rng = fastrand::Rng::new();
    let error = |stats: &mut Stats, e: String| {
        stats.errors += 1;
        if stats.first_unanswered.is_none() && !e.starts_with("HTTP ") {
            stats.first_unanswered = Some(e.clone());
        }
        if stats.first_error.is_none() {
            stats.first_error = Some(e);
        }
    };
    'connect: while Instant::now() < end {
        let stream = match TcpStream::connect(&target.addr).await {
            Ok(s) => s,
            Err(e) => {
                error(&mut stats, format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut send, conn) =
            match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            {
                Ok(pair) => pair,
                Err(e) => {
                    error(&mut stats, format!("handshake: {e}"));
                    continue;
                }
            };
        tokio::spawn(conn);
        loop {
            if Instant::now() >= end {
                break 'connect;
            }
            if let Some(pace) = pace {
                tokio::time::sleep_until(next.into()).await;
                next += pace;
            }
            let (body, n) = generator.body(&mut rng);
            let req = hyper::Request::post(target.path.as_str())
                .header(HOST, target.host.as_str())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("a request built from a valid URL");
            if let Err(e) = send.ready().await {
                error(&mut stats, format!("connection: {e}"));
                continue 'connect;
            }
            let t0 = Instant::now();
            let resp = match send.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    error(&mut stats, format!("request: {e}"));
                    continue 'connect;
                }
            };
            let status = resp.status();
            let retry_after = resp.headers().contains_key(hyper::header::RETRY_AFTER);
            let body = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    error(&mut stats, format!("response body: {e}"));
                    continue 'connect;
                }
            };
            let t1 = Instant::now();
            if status == hyper::StatusCode::SERVICE_UNAVAILABLE {
                stats.shed += 1;
                stats.shed_without_retry_after += u64::from(!retry_after);
            } else if status != hyper::StatusCode::OK {
                stats.other_status += 1;
            }
            if status != hyper::StatusCode::OK {
                error(
                    &mut stats,
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                );
                continue;
            }
            stats.acked_events += n as u64;
            if t1 >= measure_from && t1 < end {
                stats.requests += 1;
                stats.events += n as u64;
                stats
                    .latencies_us
                    .push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }
    stats
}
