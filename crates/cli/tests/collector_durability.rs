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
                    if let Ok(r) = resp {
                        if r.status().as_u16() == 200 {
                            acked.fetch_add(size, Ordering::SeqCst);
                        }
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
