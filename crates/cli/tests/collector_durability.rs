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
    std::thread::sleep(std::time::Duration::from_millis(700));
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
