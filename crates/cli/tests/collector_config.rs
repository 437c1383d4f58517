//! `serve --config FILE`: settings from TOML, under flags and environment variables.

mod common;

use common::{BIN, Collector, admin_get, post_json};
use serde_json::json;
use std::process::Command;

#[test]
fn settings_come_from_the_file_unless_a_flag_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anonstats.toml");
    // The harness passes --listen and --data-dir as flags: they win over the file's.
    std::fs::write(
        &file,
        "k_anonymity = 1\nlisten = \"127.0.0.1:1\"\ndata-dir = \"/nonexistent/anonstats\"\n",
    )
    .unwrap();
    let c = Collector::start_with(&["--config", file.to_str().unwrap()]);
    let ev = json!({"api_key": c.write_token, "event": "START", "distinct_id": "only-one",
        "properties": {"host_os_name": "Rare OS"}});
    assert_eq!(post_json(&c.url("/e/"), &ev).status, 200);
    let b = admin_get(&c, "/api/v1/insights/breakdown?property=host_os_name");
    assert_eq!(b["k"], 1, "k from the file");
    assert_eq!(
        b["rows"][0]["value"], "Rare OS",
        "with k = 1 a single machine is not folded"
    );
}

#[test]
fn unknown_settings_and_bad_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("lisen = 5\n", "unknown setting `lisen`"),
        ("listen = [1]\n", "must be a string, number or boolean"),
        ("listen = \n", "is not valid TOML"),
    ];
    for (text, want) in cases {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent.toml")
    );
}
