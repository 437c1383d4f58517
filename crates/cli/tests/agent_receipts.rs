//! Receipts: `anonstats log` prints the last events that left the machine, when, the exact
//! JSON and the collector's answer, from each product's ledger; nothing is kept while
//! statistics are off, and an opt-out deletes the ledger. Real binary, real collector.

mod agent_common;
mod common;

use agent_common::{anonstats, strs};
use common::Collector;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn env(host: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "ANONSTATS_SYSTEM_DIR",
            host.join("etc").display().to_string(),
        ),
        (
            "ANONSTATS_CONFIG_DIR",
            host.join("etc").display().to_string(),
        ),
        (
            "ANONSTATS_STATE_DIR",
            host.join("state").display().to_string(),
        ),
    ]
}

fn run(host: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut all = env(host);
    all.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    anonstats(args, &all)
}

fn send(host: &Path, product: &str, action: &[&str], url: &str, token: &str) -> Output {
    let mut args: Vec<String> = vec!["send".into()];
    args.extend(action.iter().map(|a| a.to_string()));
    for (flag, value) in [
        ("--endpoint", url),
        ("--token", token),
        ("--product-name", product),
        ("--product-version", "3.1"),
        ("--timeout", "5"),
    ] {
        args.push(flag.into());
        args.push(value.into());
    }
    args.push("--wait".into());
    run(host, &strs(&args), &[])
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One entry of `anonstats log`: its header line and the event's JSON.
struct Shown {
    header: String,
    event: Value,
}

fn log(host: &Path, args: &[&str]) -> Vec<Shown> {
    let mut all = vec!["log"];
    all.extend(args);
    let out = run(host, &all, &[]);
    ok(&out);
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() % 2, 0, "a header and a JSON line each:\n{text}");
    lines
        .chunks(2)
        .map(|pair| Shown {
            header: pair[0].to_string(),
            event: serde_json::from_str(pair[1]).expect("the event's JSON"),
        })
        .collect()
}

fn ledger(host: &Path, product: &str) -> PathBuf {
    host.join("state").join(product).join("sent-events.ndjson")
}

#[test]
fn the_log_shows_the_json_the_collector_stored_and_its_answer() {
    let host = tempfile::tempdir().expect("temp dir");
    let h = host.path();
    let c = Collector::start();
    ok(&send(h, "mydaemon", &["START"], &c.url, &c.write_token));
    ok(&send(
        h,
        "mydaemon",
        &["CLOUD_CONNECT_FAIL", "E42"],
        &c.url,
        &c.write_token,
    ));
    let shown = log(h, &[]);
    let stored = c.export();
    assert_eq!(shown.len(), 2);
    assert_eq!(stored.len(), 2);
    for s in &stored {
        let uuid = s["uuid"].as_str().unwrap();
        let entry = shown
            .iter()
            .find(|e| e.event["uuid"] == uuid)
            .unwrap_or_else(|| panic!("no receipt of {uuid}"));
        assert!(
            // The collector's answer as it came.
            entry
                .header
                .contains("  mydaemon  accepted: HTTP 200 {\"status\":1}  ")
                && entry.header.ends_with(&format!("{}/batch/", c.url)),
            "{}",
            entry.header
        );
        assert_eq!(entry.event["event"], s["event"]);
        assert_eq!(entry.event["distinct_id"], s["distinct_id"]);
        // (The collector moves `timestamp` by the difference between its clock and the
        // request's `sent_at`, so that one is not compared.)
        // Every stored property is the one sent; what was sent and not stored is only what
        // the collector drops by rule (the `$ip` mask).
        let sent = entry.event["properties"].as_object().unwrap();
        let kept = s["properties"].as_object().unwrap();
        for (k, v) in kept {
            assert_eq!(sent.get(k), Some(v), "{k}");
        }
        let not_stored: Vec<&String> = sent.keys().filter(|k| !kept.contains_key(*k)).collect();
        assert_eq!(not_stored, ["$ip"], "{entry:?}", entry = entry.event);
    }
    // An answer that refused the events is a receipt too; a collector never reached is not.
    let refused = send(h, "mydaemon", &["EXIT"], &c.url, "aw_wrong");
    assert_eq!(refused.status.code(), Some(1));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let unreachable = send(h, "mydaemon", &["CUSTOM"], &dead, &c.write_token);
    assert_eq!(unreachable.status.code(), Some(1));
    let shown = log(h, &["--product", "mydaemon"]);
    assert_eq!(shown.len(), 3, "the unreachable collector left no receipt");
    let last = &shown[2];
    assert_eq!(last.event["event"], "EXIT");
    assert!(
        last.header.contains("refused the token (401)")
            && last.header.contains("HTTP 401 {\"code\":"),
        "{}",
        last.header
    );
    // A collector that took the request and never answered: the event may have left.
    let silent = agent_common::Silent::start();
    let mut args: Vec<String> = ["send", "SILENT", "--endpoint", &silent.url, "--token", "t"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--product-name", "mydaemon", "--timeout", "1", "--wait"].map(String::from));
    assert_eq!(run(h, &strs(&args), &[]).status.code(), Some(1));
    let shown = log(h, &["--product", "mydaemon"]);
    let last = shown.last().expect("a receipt");
    assert_eq!(last.event["event"], "SILENT");
    assert!(last.header.contains("no answer from"), "{}", last.header);
    // The receipts do not repeat the token.
    let text = std::fs::read_to_string(ledger(h, "mydaemon")).unwrap();
    assert!(!text.contains(&c.write_token));
}

#[test]
fn nothing_is_kept_when_off_and_an_opt_out_deletes_the_receipts() {
    let host = tempfile::tempdir().expect("temp dir");
    let h = host.path();
    let c = Collector::start();
    let args = |product: &str| -> Vec<String> {
        [
            "send",
            "START",
            "--endpoint",
            &c.url,
            "--token",
            &c.write_token,
            "--product-name",
            product,
            "--wait",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    ok(&run(h, &strs(&args("a")), &[("DISABLE_TELEMETRY", "1")]));
    assert!(!h.join("state").exists(), "nothing was written");
    assert!(log(h, &[]).is_empty());

    ok(&send(h, "a", &["START"], &c.url, &c.write_token));
    ok(&send(h, "b", &["START"], &c.url, &c.write_token));
    assert!(ledger(h, "a").exists() && ledger(h, "b").exists());
    // Per product: each ledger holds its own product's events.
    let only_b = log(h, &["--product", "b"]);
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].event["properties"]["product_name"], "b");
    // While statistics are off, the log shows nothing and deletes what was kept.
    let out = run(h, &["log"], &[("DO_NOT_TRACK", "1")]);
    ok(&out);
    assert!(out.stdout.is_empty());
    assert!(!ledger(h, "a").exists() && !ledger(h, "b").exists());

    ok(&send(h, "a", &["EXIT"], &c.url, &c.write_token));
    ok(&send(h, "b", &["EXIT"], &c.url, &c.write_token));
    ok(&run(h, &["opt-out", "--product", "a"], &[]));
    assert!(!ledger(h, "a").exists(), "a's opt-out deletes a's receipts");
    assert!(!h.join("state/a/spool").exists(), "and its spool");
    assert_eq!(log(h, &[]).len(), 1, "b's stay");
    ok(&run(h, &["opt-out"], &[]));
    assert!(
        !ledger(h, "b").exists(),
        "the machine's opt-out deletes them all"
    );
    assert!(log(h, &[]).is_empty());
    assert_eq!(c.export().len(), 4);
}
