//! Abuse with a valid token: the write token ships inside every agent, so anyone can send
//! with it. Past the per-project and per-machine limits, or past the cap on new machines,
//! capture answers 429 with `Retry-After` and a `detail` naming the limit, stores nothing
//! of the request, and counts it in `/metrics`; a leaked token is rotated away while the
//! collector runs.

mod common;

use common::{Answer, Collector, admin_metrics, post_json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A `/batch/` body with `n` events from each machine, in order.
fn batch(token: &str, machines: &[(&str, usize)]) -> Value {
    let events: Vec<_> = machines
        .iter()
        .flat_map(|&(m, n)| {
            (0..n).map(move |i| json!({"event": "load", "distinct_id": m, "properties": {"i": i}}))
        })
        .collect();
    json!({"api_key": token, "batch": events})
}

fn send(c: &Collector, token: &str, machines: &[(&str, usize)]) -> Answer {
    post_json(&c.url("/batch/"), &batch(token, machines))
}

/// The value of one series in `/metrics`.
fn metric(c: &Collector, series: &str) -> u64 {
    let text = admin_metrics(c);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

fn assert_limited(a: &Answer, flag: &str) {
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.json()["code"], "rate_limited", "{}", a.body);
    assert_eq!(a.json()["type"], "throttled_error", "{}", a.body);
    assert!(
        a.detail().contains(flag),
        "detail does not name {flag}: {}",
        a.body
    );
    assert!(a.detail().contains("nothing was stored"), "{}", a.body);
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", a.headers));
    assert!(retry >= 1, "Retry-After: {retry}");
}

/// Polls until `done` holds, for at most 10 s (key changes reach a running collector
/// within 100 ms).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_machine_past_its_limit_gets_429_for_the_whole_batch_and_others_go_on() {
    let c = Collector::start_with(&["--machine-events-per-minute", "5"]);
    assert_eq!(send(&c, &c.write_token, &[("a", 5)]).status, 200);

    // One event of a over its limit refuses the whole batch, b's events too.
    let a = send(&c, &c.write_token, &[("b", 3), ("a", 1)]);
    assert_limited(&a, "--machine-events-per-minute");
    assert!(
        a.detail().contains("limit of 5 events a minute"),
        "{}",
        a.body
    );
    assert_eq!(c.export().len(), 5, "a refused batch stored nothing");

    // The refusal spent nothing of b's budget: b still sends its full five.
    assert_eq!(send(&c, &c.write_token, &[("b", 5)]).status, 200);
    assert_eq!(c.export().len(), 10);

    assert_eq!(
        metric(
            &c,
            r#"anonstats_rate_limited_total{limit="machine_events"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &c,
            r#"anonstats_rate_limited_total{limit="project_events"}"#
        ),
        0
    );
    assert_eq!(
        metric(
            &c,
            r#"anonstats_requests_total{result="rejected",reason="rate_limited"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &c,
            r#"anonstats_events_total{result="rejected",reason="rate_limited"}"#
        ),
        4
    );
}

/// PostHog SDKs resend the whole batch on 429: after `Retry-After` the resend passes, and
/// each event is stored once.
#[test]
fn a_batch_resent_after_retry_after_is_stored_once() {
    let c = Collector::start_with(&["--machine-events-per-minute", "6"]);
    assert_eq!(send(&c, &c.write_token, &[("a", 6)]).status, 200);
    let body = json!({"api_key": c.write_token, "batch": [
        {"event": "late", "distinct_id": "a", "uuid": "0193a000-0000-7000-8000-000000000001"},
        {"event": "late", "distinct_id": "b", "uuid": "0193a000-0000-7000-8000-000000000002"},
    ]});
    let a = post_json(&c.url("/batch/"), &body);
    assert_limited(&a, "--machine-events-per-minute");
    // One event each 10 s refills: the collector says when, and then it passes.
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{:?}", a.headers);
    std::thread::sleep(Duration::from_secs(retry));
    let again = post_json(&c.url("/batch/"), &body);
    assert_eq!(again.status, 200, "{}", again.body);
    let late: Vec<_> = c
        .export()
        .into_iter()
        .filter(|e| e["event"] == "late")
        .collect();
    assert_eq!(late.len(), 2, "{late:?}");
}

#[test]
fn a_project_past_its_limit_gets_429_while_other_projects_go_on() {
    let c = Collector::start_with(&["--project-events-per-minute", "10"]);
    let machines: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let each: Vec<(&str, usize)> = machines.iter().map(|m| (m.as_str(), 1)).collect();
    assert_eq!(send(&c, &c.write_token, &each).status, 200);
    let a = send(&c, &c.write_token, &[("m0", 1)]);
    assert_limited(&a, "--project-events-per-minute");
    assert!(
        a.detail().contains("limit of 10 events a minute"),
        "{}",
        a.body
    );

    let other = c.cli(&["keys", "create-project", "other"]);
    let token = other.lines().last().unwrap().to_string();
    assert_eq!(
        send(&c, &token, &[("m0", 10)]).status,
        200,
        "another project has its own budget"
    );
    assert_eq!(
        metric(
            &c,
            r#"anonstats_rate_limited_total{limit="project_events"}"#
        ),
        1
    );
    assert_eq!(c.export().len(), 20);
}

#[test]
fn new_machines_past_the_cap_are_refused_while_known_ones_keep_sending() {
    let c = Collector::start_with(&["--new-machines-per-minute", "3"]);
    let known = [("k1", 1), ("k2", 1), ("k3", 1)];
    assert_eq!(send(&c, &c.write_token, &known).status, 200);
    let a = send(&c, &c.write_token, &[("new", 1)]);
    assert_limited(&a, "--new-machines-per-minute");
    assert!(
        a.detail().contains("machines it has seen go on"),
        "{}",
        a.body
    );

    // A flood of random ids: every request refused, none of them remembered, and the
    // known machines go on meanwhile.
    for round in 0..100 {
        let ids: Vec<String> = (0..20)
            .map(|i| uuid::Uuid::new_v4().to_string() + &format!("{round}{i}"))
            .collect();
        let flood: Vec<(&str, usize)> = ids.iter().map(|m| (m.as_str(), 1)).collect();
        assert_eq!(send(&c, &c.write_token, &flood).status, 429);
        if round % 10 == 0 {
            assert_eq!(
                send(&c, &c.write_token, &known).status,
                200,
                "round {round}"
            );
        }
    }
    assert_eq!(metric(&c, "anonstats_rate_limit_machines"), 3);
    assert_eq!(
        metric(&c, r#"anonstats_rate_limited_total{limit="new_machines"}"#),
        101
    );
    assert_eq!(c.export().len(), 3 * 11);
}

/// The defaults let a fleet through: one machine sending ten full agent batches (100
/// events) at once, but not a thousand events more within the minute; and a thousand
/// machines each sending a full batch.
#[test]
fn the_default_limits_let_a_fleet_through() {
    let c = Collector::start();
    for _ in 0..10 {
        assert_eq!(send(&c, &c.write_token, &[("busy", 100)]).status, 200);
    }
    // Passes only once a minute since the first batch has gone by.
    let a = send(&c, &c.write_token, &[("busy", 1000)]);
    assert_limited(&a, "--machine-events-per-minute");
    assert!(
        a.detail().contains("limit of 1000 events a minute"),
        "{}",
        a.body
    );

    let machines: Vec<String> = (0..1000).map(|i| format!("machine-{i}")).collect();
    for chunk in machines.chunks(50) {
        let each: Vec<(&str, usize)> = chunk.iter().map(|m| (m.as_str(), 100)).collect();
        let a = send(&c, &c.write_token, &each);
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(
        metric(&c, r#"anonstats_events_total{result="stored"}"#),
        101_000
    );
}

#[test]
fn the_defaults_are_the_documented_ones_and_the_config_file_sets_the_limits() {
    let help = std::process::Command::new(common::BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    for (flag, default) in [
        ("--project-events-per-minute", "600000"),
        ("--machine-events-per-minute", "1000"),
        ("--new-machines-per-minute", "10000"),
    ] {
        let after = help
            .split(flag)
            .nth(1)
            .unwrap_or_else(|| panic!("no {flag}: {help}"));
        let shown = after.split("[default: ").nth(1).unwrap_or_default();
        assert!(shown.starts_with(&format!("{default}]")), "{flag}: {after}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        "machine-events-per-minute = 2\nnew_machines_per_minute = 50\n",
    )
    .unwrap();
    let c = Collector::start_with(&["--config", file.to_str().unwrap()]);
    assert_eq!(send(&c, &c.write_token, &[("a", 2)]).status, 200);
    assert_limited(
        &send(&c, &c.write_token, &[("a", 1)]),
        "limit of 2 events a minute",
    );
    // A flag wins over the file.
    let c = Collector::start_with(&[
        "--config",
        file.to_str().unwrap(),
        "--machine-events-per-minute",
        "3",
    ]);
    assert_eq!(send(&c, &c.write_token, &[("a", 3)]).status, 200);
    assert_eq!(send(&c, &c.write_token, &[("a", 1)]).status, 429);
}

/// The way out of a leaked token, with the collector running: a new write key for the
/// project, shipped to the agents, then the old one revoked.
#[test]
fn a_leaked_token_is_rotated_away_while_serving() {
    let c = Collector::start();
    let old = c.write_token.clone();
    assert_eq!(send(&c, &old, &[("a", 1)]).status, 200);

    let out = c.cli(&["keys", "create-write-key", "default"]);
    let new = out.lines().last().unwrap().to_string();
    assert!(new.starts_with("aw_") && new != old, "{out}");
    until("the new token is accepted", || {
        send(&c, &new, &[("a", 1)]).status == 200
    });
    assert_eq!(
        send(&c, &old, &[("a", 1)]).status,
        200,
        "both work until the old is revoked"
    );

    c.cli(&["keys", "revoke", &old]);
    until("the old token is refused", || {
        send(&c, &old, &[("a", 1)]).status == 401
    });
    let a = send(&c, &old, &[("a", 1)]);
    assert_eq!(a.json()["code"], "revoked_token", "{}", a.body);
    assert!(a.detail().contains("revoked"), "{}", a.body);
    assert_eq!(send(&c, &new, &[("b", 1)]).status, 200);
    let projects: Vec<_> = c.export().iter().map(|e| e["project"].clone()).collect();
    assert!(projects.iter().all(|p| p == "default"), "{projects:?}");
}

/// A request admitted by the limits but not stored (here: every fdatasync fails, injected
/// with strace, so no commit becomes durable) gives back what it took: a sender retrying
/// through a 503 is not rate limited for it too.
#[test]
fn a_request_answered_503_spends_nothing_of_its_limits() {
    if !common::require(std::path::Path::new("/usr/bin/strace").exists(), "strace") {
        return;
    }
    let c = Collector::start_with_fdatasync_fault(
        "error=EIO",
        &[
            "--machine-events-per-minute",
            "5",
            "--project-events-per-minute",
            "5",
            "--new-machines-per-minute",
            "1",
        ],
    );
    // Each a whole minute's worth of every limit: without the refund, the second would be
    // refused.
    for attempt in 0..3 {
        let a = send(&c, &c.write_token, &[("r", 5)]);
        assert_eq!(a.status, 503, "attempt {attempt}: {}", a.body);
        assert_eq!(a.json()["code"], "unavailable", "{}", a.body);
    }
    for limit in ["machine_events", "project_events", "new_machines"] {
        let series = format!("anonstats_rate_limited_total{{limit=\"{limit}\"}}");
        assert_eq!(metric(&c, &series), 0, "{series}");
    }
}
