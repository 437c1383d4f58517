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
    let spool = dir.path().join("state/agent-test/spool");
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

    // The collector answers at last, at the address the event was made for.
    let rec = Recorder::at(&silent.stop());
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
    assert!(!out.status.success(), "not delivered is a failure");
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
    let waiting = spooled(&dir.path().join("state/agent-test/spool"));
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let start = read_json(&waiting[0]);

    let rec = Recorder::at(&silent.stop());
    let mut args = send_args("EXIT", &rec.url, dir.path());
    args.insert(1, "--wait".into());
    let out = anonstats(&strs(&args), &[]);
    ok(&out);
    // Delivered when `send --wait` returns: no polling.
    assert_eq!(names(&rec.events()), ["START", "EXIT"]);
    assert_eq!(rec.events()[0]["uuid"], start["uuid"]);
    assert!(spooled(&dir.path().join("state/agent-test/spool")).is_empty());
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
    assert!(!out.status.success(), "not delivered is a failure");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spooled(&dir.path().join("state/agent-test/spool")).len(), 1);
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
    assert!(spooled(&dir.path().join("state/agent-test/spool")).is_empty());
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
    assert!(spooled(&dir.path().join("state/agent-test/spool")).is_empty());
}

#[test]
fn collector_down_then_the_next_send_delivers_the_spool() {
    let mut c = common::Collector::start();
    let down_url = c.url.clone();
    c.kill();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("state/agent-test/spool");
    let args = send_args("CLOUD_CONNECT_FAIL", &down_url, dir.path());
    let mut args = with_token(args, &c.write_token);
    args.insert(2, "504".into());
    ok(&anonstats(&strs(&args), &[]));
    wait_detached(dir.path(), DETACHED);
    let waiting = spooled(&spool);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let failed = read_json(&waiting[0]);

    // Back at the same address: the spooled event was made for that endpoint.
    c.restart_on_same_port();
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

/// `send --wait` arguments for the test directory.
fn wait_args(action: &str, endpoint: &str, token: &str, dir: &Path) -> Vec<String> {
    let mut args = with_token(send_args(action, endpoint, dir), token);
    args.insert(1, "--wait".into());
    args
}

/// The spool keeps 64 events: what it drops is counted, and the next delivered event says
/// how many, so that every event is either stored or counted.
#[test]
fn a_full_spool_counts_what_it_dropped_and_the_next_delivery_reports_it() {
    let mut c = common::Collector::start();
    let down_url = c.url.clone();
    c.kill();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("state/agent-test/spool");
    let sent = 70;
    for i in 0..sent {
        let mut args = wait_args("BACKLOG", &down_url, &c.write_token, dir.path());
        args.insert(3, i.to_string());
        let _ = anonstats(&strs(&args), &[]);
    }
    assert_eq!(spooled(&spool).len(), 64, "the spool keeps 64 events");

    c.restart_on_same_port();
    let out = anonstats(
        &strs(&wait_args("START", &c.url, &c.write_token, dir.path())),
        &[],
    );
    ok(&out);
    let stored = c.export();
    let carriers: Vec<&Value> = stored
        .iter()
        .filter(|e| e["properties"].get("dropped_events").is_some())
        .collect();
    assert_eq!(carriers.len(), 1, "one event carries the count");
    let dropped = carriers[0]["properties"]["dropped_events"]
        .as_u64()
        .expect("a number") as usize;
    assert_eq!(dropped, sent + 1 - 64);
    assert_eq!(stored.len() + dropped, sent + 1, "stored or counted");
    // The newest are kept, the oldest dropped.
    let mut kept: Vec<usize> = stored
        .iter()
        .filter_map(|e| e["properties"]["action_result"].as_str()?.parse().ok())
        .collect();
    kept.sort();
    assert_eq!(kept, (dropped..sent).collect::<Vec<_>>());
    assert!(spooled(&spool).is_empty());

    // Acknowledged, the count is reset.
    ok(&anonstats(
        &strs(&wait_args("EXIT", &c.url, &c.write_token, dir.path())),
        &[],
    ));
    let exit = c.export().into_iter().find(|e| e["event"] == "EXIT");
    let exit = exit.expect("EXIT stored");
    assert!(exit["properties"].get("dropped_events").is_none(), "{exit}");
}

/// A refused token is reported, and the refused event is dropped (it would be refused
/// again) and counted.
#[test]
fn wait_fails_with_the_reason_when_the_collector_refuses_the_token() {
    let c = common::Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = anonstats(
        &strs(&wait_args("START", &c.url, "aw_wrong", dir.path())),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status 0; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("not delivered") && stderr.contains("token") && stderr.contains("401"),
        "{stderr}"
    );
    assert!(spooled(&dir.path().join("state/agent-test/spool")).is_empty());
    assert!(c.export().is_empty());

    // `show` shows the count the next event carries.
    let mut show = with_token(send_args("EXIT", &c.url, dir.path()), &c.write_token);
    show[0] = "show".into();
    let out = anonstats(&strs(&show), &[]);
    ok(&out);
    let body: Value = serde_json::from_slice(&out.stdout).expect("show prints JSON");
    assert_eq!(body["batch"][0]["properties"]["dropped_events"], 1);
    assert!(body["sent_at"].is_string());

    ok(&anonstats(
        &strs(&wait_args("EXIT", &c.url, &c.write_token, dir.path())),
        &[],
    ));
    let stored = c.export();
    assert_eq!(names(&stored), ["EXIT"]);
    assert_eq!(stored[0]["properties"]["dropped_events"], 1);
}

/// What may succeed later stays in the spool, and `send --wait` says so and fails.
#[test]
fn wait_fails_with_the_reason_when_the_collector_cannot_be_reached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let out = anonstats(
        &strs(&wait_args("START", &closed, "test-token", dir.path())),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status 0; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for part in [
        "not delivered",
        "cannot connect",
        &closed,
        "connection refused",
        "spool",
    ] {
        assert!(stderr.contains(part), "no {part:?} in: {stderr}");
    }
    assert_eq!(spooled(&dir.path().join("state/agent-test/spool")).len(), 1);
}

/// A delivery under way when the opt-out file appears sends nothing more: what waits in
/// the spool is deleted, not sent.
#[test]
fn a_detached_delivery_stops_at_opt_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("state/agent-test/spool");
    let rec = Recorder::gated();
    let mut first = send_args("FIRST", &rec.url, dir.path());
    first.extend(["--timeout".into(), "20".into()]);
    ok(&anonstats(&strs(&first), &[]));
    wait_until("the first batch posted", DETACHED, || rec.requests() == 1);
    // Spooled while the first delivery holds the spool: that delivery sends it next.
    let mut second = send_args("SECOND", &rec.url, dir.path());
    second.extend(["--timeout".into(), "20".into()]);
    ok(&anonstats(&strs(&second), &[]));
    wait_until("the second event spooled", DETACHED, || {
        spooled(&spool).len() == 2
    });
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    std::fs::write(
        dir.path().join("etc/.opt-out-from-anonymous-statistics"),
        "",
    )
    .expect("opt out");
    rec.release();
    wait_detached(dir.path(), Duration::from_secs(30));
    assert_eq!(rec.requests(), 1, "{:?}", rec.batches());
    assert_eq!(names(&rec.events()), ["FIRST"]);
    assert!(spooled(&spool).is_empty(), "{:?}", spooled(&spool));
}

/// Milliseconds since 1970 of an RFC 3339 UTC time as the export writes it
/// (`2025-01-31T10:00:00.000Z`).
fn epoch_ms(t: &str) -> i64 {
    let num = |r: std::ops::Range<usize>| t[r].parse::<i64>().expect("a number");
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let millis = if t.as_bytes().get(19) == Some(&b'.') {
        num(20..23)
    } else {
        0
    };
    secs * 1000 + millis
}

/// An agent whose clock is two days behind: its events are stored at the collector's
/// time, because each request says when it was sent by that same clock (`sent_at`).
#[test]
fn a_wrong_clock_is_corrected_by_the_collector() {
    use std::time::SystemTime;
    let c = common::Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let behind = Duration::from_secs(2 * 86_400);
    let client = anonstats_client::Client::builder()
        .product("agent-test", "1.0.0")
        .endpoint(&c.url)
        .token(&c.write_token)
        .config_dir(dir.path().join("etc"))
        .state_dir(dir.path().join("state"))
        .env(|_| None)
        .clock(move || SystemTime::now() - behind)
        .build()
        .expect("client");
    let before = anonstats_client::time::rfc3339(SystemTime::now());
    let outcome = client.send_action("CLOCK", None, None);
    let after = anonstats_client::time::rfc3339(SystemTime::now());
    assert_eq!(outcome, anonstats_client::Outcome::Delivered(1));
    let stored = c.export();
    assert_eq!(names(&stored), ["CLOCK"]);
    let at = epoch_ms(stored[0]["timestamp"].as_str().expect("timestamp"));
    // The event was made and sent between `before` and `after`; the correction keeps
    // the interval from event to send, which the clock's rounding to ms may shift by 1.
    assert!(
        at >= epoch_ms(&before) - 2 && at <= epoch_ms(&after) + 2,
        "stored at {} ({at}), sent between {before} and {after}",
        stored[0]["timestamp"]
    );
}

/// An event larger than the collector takes (1 MB) is refused for good (413): dropped,
/// counted, and reported by the next delivered event.
#[test]
fn an_event_the_collector_refuses_as_too_large_is_dropped_and_counted() {
    let c = common::Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let client = anonstats_client::Client::builder()
        .product("agent-test", "1.0.0")
        .endpoint(&c.url)
        .token(&c.write_token)
        .config_dir(dir.path().join("etc"))
        .state_dir(dir.path().join("state"))
        .env(|_| None)
        .build()
        .expect("client");
    let mut props = serde_json::Map::new();
    props.insert("blob".into(), "x".repeat(1_500_000).into());
    let outcome = client.capture_and_wait("HUGE", props);
    match &outcome {
        anonstats_client::Outcome::Dropped(why) => assert!(why.contains("413"), "{why}"),
        other => panic!("{other:?}"),
    }
    let outcome = client.capture_and_wait("SMALL", Default::default());
    assert_eq!(outcome, anonstats_client::Outcome::Delivered(1));
    let stored = c.export();
    assert_eq!(names(&stored), ["SMALL"]);
    assert_eq!(stored[0]["properties"]["dropped_events"], 1);
    assert!(spooled(&dir.path().join("state/agent-test/spool")).is_empty());
}
