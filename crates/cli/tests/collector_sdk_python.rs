//! The stock `posthog` Python SDK from PyPI against the collector.

mod common;

use common::{Collector, require};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;

fn posthog_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import posthog"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `tests/sdk/SCRIPT` against the collector; its JSON report, the SDK's errors none.
fn run_sdk(c: &Collector, script: &str) -> Value {
    let script = format!("{}/../../tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([script.as_str(), &c.url, &c.write_token])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "the SDK reported errors"
    );
    report
}

#[test]
fn posthog_python_single_and_batched_events_are_exported_with_all_properties() {
    if !require(
        posthog_installed(),
        "python3 with the posthog package (pip install posthog)",
    ) {
        return;
    }
    let c = Collector::start();
    let report = run_sdk(&c, "posthog_python.py");
    let sent = report["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 105);

    let exported: HashMap<String, Value> = c
        .export()
        .into_iter()
        .map(|e| (e["uuid"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(
        exported.len(),
        sent.len(),
        "exactly the events the SDK sent"
    );
    for s in sent {
        let e = &exported[s["uuid"].as_str().unwrap()];
        let i = s["i"].as_i64().unwrap();
        assert_eq!(e["event"], "sdk_event");
        assert_eq!(e["distinct_id"], format!("machine-{}", i % 3));
        let p = &e["properties"];
        assert_eq!(p["tag"], s["tag"]);
        assert_eq!(p["i"], i);
        assert_eq!(p["nested"], serde_json::json!({"list": [1, 2, 3]}));
        assert_eq!(p["$lib"], "posthog-python");
        assert!(p.get("$ip").is_none(), "$ip is dropped: {p}");
    }
}

#[test]
fn posthog_python_capture_v1_events_are_stored_and_refused_ones_dropped() {
    if !require(
        posthog_installed(),
        "python3 with the posthog package (pip install -r tests/requirements.txt)",
    ) {
        return;
    }
    let c = Collector::start();
    let report = run_sdk(&c, "posthog_python_v1.py");
    let sent = report["sent"].as_array().unwrap();
    let (bad, good): (Vec<&Value>, Vec<&Value>) = sent.iter().partition(|s| s["bad"] == true);
    assert_eq!((good.len(), bad.len()), (145, 1));
    // The SDK was told, per event, which one is refused and why.
    let drops = report["drops"].as_array().unwrap();
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(drops[0][0], bad[0]["uuid"]);
    assert!(
        drops[0][1].as_str().unwrap().contains("control character"),
        "{drops:?}"
    );

    let exported: HashMap<String, Value> = c
        .export()
        .into_iter()
        .map(|e| (e["uuid"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(exported.len(), good.len(), "exactly the good events");
    for s in good {
        let e = &exported[s["uuid"].as_str().unwrap()];
        let i = s["i"].as_i64().unwrap();
        assert_eq!(e["event"], "sdk_event");
        assert_eq!(e["distinct_id"], format!("machine-{}", i % 3));
        let p = &e["properties"];
        assert_eq!(p["tag"], s["tag"]);
        assert_eq!(p["i"], i);
        assert_eq!(p["nested"], serde_json::json!({"list": [1, 2, 3]}));
        assert_eq!(p["$lib"], "posthog-python", "from PostHog-Sdk-Info: {p}");
        assert!(p.get("$ip").is_none(), "$ip is dropped: {p}");
    }
}
