//! When the disk stalls or senders outrun it, capture sheds load at once with 503 and
//! `Retry-After`, its memory stays bounded, and it recovers on its own.

mod common;

use common::Collector;
use serde_json::json;
use std::time::{Duration, Instant};

/// What one sender saw: each answer's status, when it came, and whether it said when to
/// retry.
type Seen = Vec<(u16, Instant, bool)>;

/// Senders that each send batches of 1000 events until one is acknowledged, waiting as
/// long as `Retry-After` asks after a 503.
fn senders_until_acknowledged(
    url: &str,
    token: &str,
    threads: usize,
) -> Vec<std::thread::JoinHandle<Seen>> {
    (0..threads)
        .map(|t| {
            let (url, token) = (url.to_string(), token.to_string());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .into();
                let mut seen = Seen::new();
                for n in 0u64.. {
                    let batch: Vec<_> = (0..1000)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}-{}", i % 100), "properties": {"n": n * 1000 + i}}))
                        .collect();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let r = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                        .expect("an answer");
                    let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    let status = r.status().as_u16();
                    seen.push((status, Instant::now(), retry_after.is_some()));
                    if status != 503 {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(retry_after.unwrap_or(1)));
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
    // 20 s, and no request is acknowledged meanwhile.
    let c = Collector::start_with_fdatasync_fault(
        "delay_enter=5000000:when=3..6",
        // A bound of 4 MB is about 25 batches of 1000 events in flight (each holds
        // about 160 KB once decoded).
        &["--queue-mb", "4"],
    );
    let url = c.url("/batch/");
    for _ in 0..2 {
        let a = common::post_json(
            &url,
            &json!({"api_key": c.write_token, "event": "warm", "distinct_id": "w"}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let seen: Vec<_> = senders_until_acknowledged(&url, &c.write_token, 48)
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let all: Vec<_> = seen.iter().flatten().collect();
    let others: Vec<_> = all
        .iter()
        .filter(|(s, _, _)| ![200, 503].contains(s))
        .collect();
    assert!(
        others.is_empty(),
        "answers other than 200 and 503: {others:?}"
    );
    // Shedding does not wait for the disk: some 503 came before the first 200.
    let first_ack = all
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, t, _)| *t)
        .min()
        .expect("a 200");
    let shed_in_stall = all
        .iter()
        .filter(|(s, t, _)| *s == 503 && *t < first_ack)
        .count();
    assert!(
        shed_in_stall > 0,
        "no request was answered 503 while the disk stalled"
    );
    assert!(
        all.iter()
            .filter(|(s, _, _)| *s == 503)
            .all(|(_, _, ra)| *ra),
        "a 503 without Retry-After"
    );
    let rss = c.peak_rss();
    assert!(rss < 300 << 20, "peak RSS {} MB", rss >> 20);
    // Every sender was acknowledged in the end, without a restart, and every
    // acknowledged event is stored.
    assert!(
        seen.iter()
            .all(|s| s.last().is_some_and(|(st, _, _)| *st == 200))
    );
    assert_eq!(c.export().len(), 2 + 48 * 1000);
}

/// Reads until the server closes the connection, for at most `limit`; returns what it
/// sent, or None if it kept the connection open that long.
fn read_until_closed(s: &mut std::net::TcpStream, limit: Duration) -> Option<String> {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) => return None,
        }
    }
}

fn connect(c: &Collector) -> std::net::TcpStream {
    std::net::TcpStream::connect(c.url.trim_start_matches("http://")).expect("connect")
}

#[test]
fn slow_clients_are_cut_off_headers_and_idle_connections_by_the_header_timeout_bodies_with_408() {
    use std::io::Write;
    let c = Collector::start_with(&["--header-timeout-secs", "1", "--body-timeout-secs", "1"]);
    // Headers that never end.
    let mut slow_headers = connect(&c);
    slow_headers
        .write_all(b"POST /batch/ HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    // A connection that never says anything.
    let mut silent = connect(&c);
    // A body that stops halfway.
    let mut slow_body = connect(&c);
    slow_body
        .write_all(b"POST /batch/ HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"api_key\": ")
        .unwrap();
    for (what, s) in [
        ("unfinished headers", &mut slow_headers),
        ("a silent connection", &mut silent),
    ] {
        assert!(
            read_until_closed(s, Duration::from_secs(20)).is_some(),
            "{what} was kept open"
        );
    }
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(20))
        .expect("an unfinished body was kept open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    // Normal clients are served all along.
    let a = common::post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "event": "ok", "distinct_id": "m"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

/// The send and receive queues of the loopback TCP socket from `local` to `remote`,
/// from `/proc/net/tcp`.
fn tcp_queue(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        if port(f.get(1)?)? != local || port(f.get(2)?)? != remote {
            return None;
        }
        let (tx, rx) = f.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

#[test]
fn a_request_shed_for_its_size_is_answered_503_not_cut_off() {
    use std::io::{Read, Write};
    let c = Collector::start_with(&["--queue-mb", "1"]);
    // A sender whose body is on its way holds its share of the bound.
    let mut holder = connect(&c);
    holder
        .write_all(b"POST /batch/ HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 300000\r\n\r\n")
        .unwrap();
    holder.write_all(&[b' '; 200_000]).unwrap();
    // Wait until the collector has read all of it (its socket's receive queue is empty
    // once the holder's send queue is).
    let (ours, theirs) = (
        holder.local_addr().unwrap().port(),
        holder.peer_addr().unwrap().port(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(tcp_queue(ours, theirs).is_some_and(|(tx, _)| tx == 0)
        && tcp_queue(theirs, ours).is_some_and(|(_, rx)| rx == 0))
    {
        assert!(
            Instant::now() < deadline,
            "the collector did not read the body"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // An 8 MB batch cannot fit beside it: its sender must read a 503, not a reset
    // connection, whatever it had sent when the collector decided.
    let body = format!(
        "{{\"api_key\": \"{}\", \"batch\": [{}]}}",
        c.write_token,
        vec![r#"{"event": "big", "distinct_id": "m"}"#; 200_000].join(",")
    );
    let mut big = connect(&c);
    big.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let sent = big
        .write_all(
            format!(
                "POST /batch/ HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .and_then(|()| big.write_all(body.as_bytes()));
    let mut answer = vec![0u8; 4096];
    let read = big.read(&mut answer);
    let answer = match (&sent, read) {
        (Ok(()), Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        (sent, read) => panic!("no answer: sending {sent:?}, reading {read:?}"),
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    drop(holder);
}

#[test]
fn connections_past_the_cap_wait_for_a_free_slot() {
    use std::io::Write;
    let c = Collector::start_with(&["--max-connections", "3", "--header-timeout-secs", "30"]);
    let mut held: Vec<_> = (0..3).map(|_| connect(&c)).collect();
    // Each held connection is served: it answers a request and stays open.
    for s in &mut held {
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let n = std::io::Read::read(s, &mut buf).expect("a held connection is answered");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut waiting = connect(&c);
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_until_closed(&mut waiting, Duration::from_secs(2)),
        None,
        "a fourth connection was served beside three"
    );
    drop(held.pop());
    let answer = read_until_closed(&mut waiting, Duration::from_secs(20))
        .expect("served once a slot was free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The soft and hard open-file limits of a process, from `/proc/PID/limits`.
fn open_file_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let mut words = line.split_whitespace().skip(3);
    let mut next = || words.next().unwrap().parse().unwrap();
    (next(), next())
}

/// Started as a service manager starts it (a soft open-file limit of 1024), the collector
/// raises its limit for its connection cap; where the hard limit is too low, it lowers the
/// cap instead and says so, so that connections past it wait rather than fail to be
/// accepted.
#[test]
fn the_open_file_limit_is_raised_for_the_connection_cap_or_the_cap_lowered_to_fit() {
    use std::io::Write;
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output();
    if !common::require(prlimit.is_ok(), "prlimit (util-linux)") {
        return;
    }
    // The hard limit can only be lowered; the soft one is raised up to it.
    let (_, hard) = open_file_limits("self");
    let limit = format!("--nofile=1024:{hard}");
    let c = Collector::start_under(&["prlimit", &limit, "--"], &[]);
    let (soft, _) = open_file_limits(&c.serve_pid().to_string());
    assert_eq!(soft, hard.min(10_000 + 256));
    drop(c);

    let c = Collector::start_under(&["prlimit", "--nofile=600:600", "--"], &[]);
    let log = || std::fs::read_to_string(&c.stderr_log).unwrap_or_default();
    assert!(
        log().contains("serving at most 344 connections at once"),
        "{}",
        log()
    );
    // More connections than file descriptors: the first 344 are served, the rest wait.
    let mut idle: Vec<_> = (0..700).map(|_| connect(&c)).collect();
    let mut last = connect(&c);
    last.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    idle.truncate(100);
    let answer =
        read_until_closed(&mut last, Duration::from_secs(30)).expect("served once slots were free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !log().contains("cannot accept a connection"),
        "accepts failed: {}",
        log()
    );
}
