//! posthog-rs from crates.io, built with its `capture-v1` feature, against the collector:
//! every body compression it offers, and a per-event verdict for each event it sent.
//! The sender is a workspace of its own (tests/sdk/posthog_rs), built here on first run.

mod common;

use common::Collector;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

#[test]
fn posthog_rs_capture_v1_events_are_stored_in_every_compression() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = root.join("tests/sdk/posthog_rs/Cargo.toml");
    // Its own target directory: its dependencies are none of the workspace's.
    let target = root.join("target/sdk-posthog-rs");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        build.status.success(),
        "building the posthog-rs sender: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let c = Collector::start();
    let out = Command::new(target.join("debug/posthog-rs-v1-sender"))
        .args([&c.url, &c.write_token])
        .output()
        .expect("run the sender");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the sender prints JSON");
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "the SDK reported errors"
    );
    let sent = report["sent"].as_array().unwrap();
    let (bad, good): (Vec<&Value>, Vec<&Value>) = sent.iter().partition(|s| s["bad"] == true);
    assert_eq!((good.len(), bad.len()), (50, 1));
    let results = report["results"].as_object().unwrap();
    for s in &good {
        assert_eq!(results[s["uuid"].as_str().unwrap()][0], "ok", "{s}");
    }
    let dropped = &results[bad[0]["uuid"].as_str().unwrap()];
    assert_eq!(dropped[0], "drop", "{dropped}");
    assert!(
        dropped[1].as_str().unwrap().contains("control character"),
        "{dropped}"
    );

    let exported: HashMap<String, Value> = c
        .export()
        .into_iter()
        .map(|e| (e["uuid"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(exported.len(), good.len(), "exactly the good events");
    for s in good {
        let e = &exported[s["uuid"].as_str().unwrap()];
        assert_eq!(e["event"], "sdk_event");
        assert_eq!(e["properties"]["tag"], s["tag"]);
        assert_eq!(e["properties"]["i"], s["i"]);
        assert_eq!(e["properties"]["$lib"], "posthog-rs", "{e}");
    }
}
