//! Delivery from the CLI: a collector that never answers costs at most the timeout, the
//! event waits in the spool and is delivered exactly once at the next `send`.

mod agent_common;

use agent_common::*;
use std::time::{Duration, Instant};

#[test]
fn silent_collector_then_spool_delivered_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let silent = Silent::start();
    let started = Instant::now();
    let out = anonstats(&strs(&send_args("START", &silent.url, dir.path())), &[]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default timeout is 2 s in all; allow a margin for process start and a loaded machine.
    assert!(took < Duration::from_millis(2600), "send took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spool"),
        "stderr says where the event went: {stderr}"
    );
    let spooled = files_under(&dir.path().join("state/spool"));
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let spooled_event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spooled[0]).expect("read")).expect("json");

    let rec = Recorder::start();
    let out = anonstats(&strs(&send_args("EXIT", &rec.url, dir.path())), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches = rec.batches();
    assert_eq!(batches.len(), 1, "one batch: {batches:?}");
    let names: Vec<_> = rec.events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(names, ["START", "EXIT"]);
    assert_eq!(rec.events()[0]["uuid"], spooled_event["uuid"]);
    assert_eq!(batches[0]["api_key"], "test-token");
    assert!(files_under(&dir.path().join("state/spool")).is_empty());

    // Nothing is sent twice.
    let out = anonstats(&strs(&send_args("CUSTOM_EVENT", &rec.url, dir.path())), &[]);
    assert!(out.status.success());
    let names: Vec<_> = rec.events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(names, ["START", "EXIT", "CUSTOM_EVENT"]);
}

#[test]
fn refused_connection_returns_quickly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let started = Instant::now();
    let out = anonstats(&strs(&send_args("START", &closed, dir.path())), &[]);
    assert!(out.status.success());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(files_under(&dir.path().join("state/spool")).len(), 1);
}
