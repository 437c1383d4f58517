//! Every acknowledged event survives, exactly once, across concurrent senders and a
//! hard kill.

mod common;

use common::{Collector, agent};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn concurrent_senders_then_kill_and_restart_keep_exactly_the_acknowledged_events() {
    let mut c = Collector::start();
    let acked = Arc::new(AtomicUsize::new(0));
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (url, token, acked) = (url.clone(), c.write_token.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut sent = 0;
                let mut batch_no = 0;
                while sent < 10_000 {
                    // Mixed sizes: single events and batches up to 200.
                    let size = [1, 7, 50, 200][batch_no % 4].min(10_000 - sent);
                    let batch: Vec<_> = (0..size)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}"), "properties": {"n": sent + i}}))
                        .collect();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let resp = agent.post(&url).header("content-type", "application/json").send(body.as_bytes());
                    if resp.is_ok_and(|r| r.status().as_u16() == 200) {
                        acked.fetch_add(size, Ordering::SeqCst);
                    }
                    sent += size;
                    batch_no += 1;
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0);
    // No graceful shutdown: what was acknowledged must already be on disk.
    c.kill();
    c.restart();
    assert_eq!(c.export().len(), acked);
}

#[test]
fn sigterm_finishes_requests_in_flight_and_loses_no_acknowledged_event() {
    let mut c = Collector::start();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (url, token, acked, stop) = (url.clone(), c.write_token.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let batch: Vec<_> = (0..20)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}"), "properties": {"n": n + i}}))
                        .collect();
                    n += 20;
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    match agent.post(&url).send(body.as_bytes()) {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.fetch_add(20, Ordering::SeqCst);
                        }
                        // Refused or cut off once the collector stops: not acknowledged.
                        _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    // Stop under load: once some requests were acknowledged, not after a guessed time.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < 400 {
        assert!(
            std::time::Instant::now() < until,
            "no load reached the collector"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.stop();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0);
    assert_eq!(
        c.export().len(),
        acked,
        "exactly the acknowledged events were committed"
    );
}

#[test]
fn events_killed_before_the_rollups_counted_them_are_counted_at_the_next_start() {
    // Rollups fold committed events in at most ten minutes: long enough that the kill
    // below comes first.
    let mut c = Collector::start_with(&["--rollup-fold-ms", "600000"]);
    let versions = ["1.0", "1.1", "2.0"];
    let mut expected: std::collections::BTreeMap<
        String,
        (u64, std::collections::BTreeSet<String>),
    > = Default::default();
    for b in 0..6 {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let (machine, version) = (format!("m{}", (b * 50 + i) % 40), versions[i % 3]);
                let e = expected.entry(version.to_string()).or_default();
                e.0 += 1;
                e.1.insert(machine.clone());
                json!({"event": "START", "distinct_id": machine, "properties": {"product_version": version}})
            })
            .collect();
        let a = common::post_json(
            &c.url("/batch/"),
            &json!({"api_key": c.write_token, "batch": batch}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    c.kill();
    let behind = c.cli(&[
        "sql",
        "--format",
        "csv",
        "SELECT (SELECT value FROM meta WHERE key = 'rollup_seq') || '/' || (SELECT MAX(seq) FROM events)",
    ]);
    assert!(
        behind.trim_end().ends_with("0/300"),
        "the rollups should not count the events yet: {behind}"
    );
    c.restart();
    let got = common::admin_get(
        &c,
        "/api/v1/insights/breakdown?property=product_version&range=7",
    );
    let mut rows: Vec<(String, u64, u64)> = got["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap_or_default().to_string(),
                r["count"].as_u64().unwrap_or_default(),
                r["machines"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    rows.sort();
    let expected: Vec<(String, u64, u64)> = expected
        .into_iter()
        .map(|(v, (n, machines))| (v, n, machines.len() as u64))
        .collect();
    assert_eq!(rows, expected);
}
