//! Delivery from the CLI. `send` writes the event to the spool and leaves delivery to a
//! detached process, so a collector that never answers costs the caller nothing; `send
//! --wait` delivers before returning and costs at most the timeout. Either way an event
//! that could not be delivered waits in the spool and is delivered exactly once later.

mod agent_common;
mod common;

use agent_common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a detached delivery to give up on a silent collector (2 s) on a busy machine.
const DETACHED: Duration = Duration::from_secs(10);

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn silent_collector_costs_send_nothing_and_the_event_is_delivered_once_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("state/spool");
    let silent = Silent::start();
    let started = Instant::now();
    let out = anonstats(&strs(&send_args("START", &silent.url, dir.path())), &[]);
    let took = started.elapsed();
    ok(&out);
    // The timeout is 2 s; the caller does not wait for the collector at all.
    assert!(took < Duration::from_millis(500), "send took {took:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waiting = spooled(&spool);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let start = read_json(&waiting[0]);
    assert_eq!(start["event"], "START");

    // The detached delivery gives up after the timeout and leaves the event in the spool,
    // with its system facts added.
    wait_detached(dir.path(), DETACHED);
    assert_eq!(spooled(&spool), waiting);
    let kept = read_json(&waiting[0]);
    assert_eq!(kept["uuid"], start["uuid"]);
    assert!(kept["properties"]["system_kernel_name"].is_string());

    let rec = Recorder::start();
    ok(&anonstats(
        &strs(&send_args("EXIT", &rec.url, dir.path())),
        &[],
    ));
    wait_detached(dir.path(), DETACHED);
    assert_eq!(names(&rec.events()), ["START", "EXIT"]);
    assert_eq!(rec.batches().len(), 1, "one batch, oldest first");
    assert_eq!(rec.events()[0]["uuid"], start["uuid"]);
    assert_eq!(rec.batches()[0]["api_key"], "test-token");
    assert!(spooled(&spool).is_empty());

    // Nothing is sent twice.
    ok(&anonstats(
        &strs(&send_args("CUSTOM_EVENT", &rec.url, dir.path())),
        &[],
    ));
    wait_detached(dir.path(), DETACHED);
    assert_eq!(names(&rec.events()), ["START", "EXIT", "CUSTOM_EVENT"]);
}

#[test]
fn wait_delivers_before_returning_and_reports_a_silent_collector() {
    let dir = tempfile::tempdir().expect("temp dir");
    let silent = Silent::start();
    let mut args = send_args("START", &silent.url, dir.path());
    args.insert(1, "--wait".into());
    let started = Instant::now();
    let out = anonstats(&strs(&args), &[]);
    let took = started.elapsed();
    ok(&out);
    // The default timeout is 2 s in all; allow a margin for process start and a loaded machine.
    assert!(took < Duration::from_millis(2600), "send took {took:?}");
    assert!(
        took > Duration::from_millis(1500),
        "send did not wait: {took:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spool"),
        "stderr says where the event went: {stderr}"
    );
    let waiting = spooled(&dir.path().join("state/spool"));
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let start = read_json(&waiting[0]);

    let rec = Recorder::start();
    let mut args = send_args("EXIT", &rec.url, dir.path());
    args.insert(1, "--wait".into());
    let out = anonstats(&strs(&args), &[]);
    ok(&out);
    // Delivered when `send --wait` returns: no polling.
    assert_eq!(names(&rec.events()), ["START", "EXIT"]);
    assert_eq!(rec.events()[0]["uuid"], start["uuid"]);
    assert!(spooled(&dir.path().join("state/spool")).is_empty());
}

#[test]
fn refused_connection_returns_quickly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut args = send_args("START", &closed, dir.path());
    args.insert(1, "--wait".into());
    let started = Instant::now();
    let out = anonstats(&strs(&args), &[]);
    ok(&out);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spooled(&dir.path().join("state/spool")).len(), 1);
}

/// `args` with the test token replaced by `token`.
fn with_token(mut args: Vec<String>, token: &str) -> Vec<String> {
    for a in args.iter_mut().filter(|a| *a == "test-token") {
        *a = token.to_string();
    }
    args
}

/// Starts `n` sends of `CONCURRENT i` at once, all with the same state directory.
fn concurrent_sends(n: usize, endpoint: &str, token: &str, dir: &Path) {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut args = with_token(send_args("CONCURRENT", endpoint, dir), token);
            args.insert(2, i.to_string());
            Command::new(BIN)
                .args(&args)
                .env_remove("DISABLE_TELEMETRY")
                .env_remove("DO_NOT_TRACK")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start send")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("send");
        ok(&out);
    }
}

#[test]
fn concurrent_sends_post_every_event_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = Recorder::start();
    let n = 12;
    concurrent_sends(n, &rec.url, "test-token", dir.path());
    wait_detached(dir.path(), DETACHED);
    let events = rec.events();
    let mut posted: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *posted
            .entry(e["uuid"].as_str().unwrap_or("").into())
            .or_default() += 1;
    }
    let twice: Vec<_> = posted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "posted more than once: {twice:?}");
    let mut results: Vec<String> = events
        .iter()
        .map(|e| {
            e["properties"]["action_result"]
                .as_str()
                .unwrap_or("")
                .into()
        })
        .collect();
    results.sort_by_key(|r| r.parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(results, expected, "every event, once");
    assert!(spooled(&dir.path().join("state/spool")).is_empty());
}

#[test]
fn concurrent_sends_reach_the_real_collector() {
    let c = common::Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let n = 8;
    concurrent_sends(n, &c.url, &c.write_token, dir.path());
    wait_until("every event stored", DETACHED, || c.export().len() >= n);
    wait_detached(dir.path(), DETACHED);
    let stored = c.export();
    assert_eq!(stored.len(), n);
    assert!(stored.iter().all(|e| e["event"] == "CONCURRENT"));
    assert!(spooled(&dir.path().join("state/spool")).is_empty());
}

#[test]
fn collector_down_then_the_next_send_delivers_the_spool() {
    let mut c = common::Collector::start();
    let down_url = c.url.clone();
    c.kill();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("state/spool");
    let args = send_args("CLOUD_CONNECT_FAIL", &down_url, dir.path());
    let mut args = with_token(args, &c.write_token);
    args.insert(2, "504".into());
    ok(&anonstats(&strs(&args), &[]));
    wait_detached(dir.path(), DETACHED);
    let waiting = spooled(&spool);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let failed = read_json(&waiting[0]);

    c.restart();
    let args = with_token(send_args("START", &c.url, dir.path()), &c.write_token);
    ok(&anonstats(&strs(&args), &[]));
    wait_until("both events stored", DETACHED, || c.export().len() >= 2);
    wait_detached(dir.path(), DETACHED);
    let stored = c.export();
    let mut got = names(&stored);
    got.sort();
    assert_eq!(got, ["CLOUD_CONNECT_FAIL", "START"]);
    let kept = stored
        .iter()
        .find(|e| e["event"] == "CLOUD_CONNECT_FAIL")
        .expect("the spooled event");
    assert_eq!(kept["uuid"], failed["uuid"]);
    assert_eq!(kept["properties"]["error_code"], "504");
    assert!(spooled(&spool).is_empty());
}
