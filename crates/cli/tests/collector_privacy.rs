//! What the privacy filter removes never reaches the disk, and the peer address is
//! neither stored nor logged.

mod common;

use common::{Collector, all_bytes, contains, post_json};
use serde_json::json;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;

/// Sends a raw HTTP request from the loopback address `from`, so the test knows the
/// peer address the collector sees.
fn post_from(from: &str, url: &str, body: &str) -> String {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    write!(
        stream,
        "POST /batch/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

const SECRETS: &[&str] = &[
    "198.51.100.77",
    "secret-host-4242",
    "Paris-Secret-City",
    "alice@example.org",
    "10.9.8.7",
    "private-path-xyz",
    "Mozilla/5.0 SecretAgent",
    "https://referrer.example/private",
];

#[test]
fn identifying_values_and_peer_address_are_nowhere_in_the_data_dir_or_logs() {
    let mut c = Collector::start();
    let props = json!({
        "$ip": "198.51.100.77", "hostname": "secret-host-4242", "$geoip_city_name": "Paris-Secret-City",
        "email": "alice@example.org", "$current_url": "http://10.9.8.7:19999/private-path-xyz",
        "$pathname": "/private-path-xyz", "$host": "10.9.8.7:19999", "$raw_user_agent": "Mozilla/5.0 SecretAgent",
        "$referrer": "https://referrer.example/private", "$set": {"email": "alice@example.org"},
        "product_version": "v1.2.3-kept"
    });
    let body = json!({"api_key": c.write_token, "batch": (0..50).map(|i| json!({
        "event": "START", "distinct_id": format!("m{i}"), "properties": props
    })).collect::<Vec<_>>()})
    .to_string();
    let answer = post_from("127.0.0.2", &c.url, &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    c.stop();

    let exported = c.export();
    assert_eq!(exported.len(), 50);
    let p = &exported[0]["properties"];
    assert_eq!(p["product_version"], "v1.2.3-kept");
    assert_eq!(p["$current_url"], "masked");
    assert!(p.get("$ip").is_none() && p.get("hostname").is_none() && p.get("$set").is_none());

    let data = all_bytes(&c.data_dir());
    assert!(
        contains(&data, "v1.2.3-kept"),
        "the check reads the real files"
    );
    for secret in SECRETS.iter().chain(&["127.0.0.2"]) {
        assert!(!contains(&data, secret), "{secret:?} is in the data dir");
    }
    let log = std::fs::read(&c.stderr_log).unwrap();
    assert!(
        !contains(&log, "127.0.0.2"),
        "the peer address is in the log"
    );
}

#[test]
fn allowlist_keeps_only_listed_properties() {
    let c = Collector::start();
    c.cli(&[
        "keys",
        "allowlist",
        "default",
        "--property",
        "product_version,action",
    ]);
    let ev = json!({"api_key": c.write_token, "event": "START", "distinct_id": "m",
        "properties": {"product_version": "1", "action": "START", "system_kernel_name": "Linux", "$ip": "1.2.3.4"}});
    // The key cache picks the change up within its refresh interval, or at once when it
    // meets a token it does not know: such a request makes it reload before it answers,
    // so the allowlist applies from the next request on, instead of after a guessed time.
    let unknown = json!({"api_key": "aw_unknown", "event": "probe", "distinct_id": "m"});
    assert_eq!(post_json(&c.url("/e/"), &unknown).status, 401);
    assert_eq!(post_json(&c.url("/e/"), &ev).status, 200);
    let p = &c.export()[0]["properties"];
    assert_eq!(p, &json!({"product_version": "1", "action": "START"}));
    let metrics = common::admin_metrics(&c);
    assert!(
        metrics.contains("anonstats_properties_dropped_total{property=\"allowlist\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("anonstats_properties_dropped_total{property=\"$ip\"} 1"),
        "{metrics}"
    );
}

/// What the crashing child's message and paths carry; none of it may be stored.
const CRASH_SECRETS: &[&str] = &[
    "/home/zedtester",
    "zedtester",
    "secret-project",
    "203.0.113.45",
    "carol@example.org",
    "7d3f9a2e-41b8-4c55-9e0a-2b6c8d1e5f73",
    "db7.prod.example.net",
];

/// Runs as a child of [`panic_in_a_child_reaches_the_collector_scrubbed`] only: a program
/// with the panic hook that crashes with identifying text in its message.
#[test]
fn crash_child() {
    let Ok(url) = std::env::var("ANONSTATS_TEST_CRASH_URL") else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var("ANONSTATS_TEST_CRASH_DIR").unwrap());
    let client = anonstats_client::Client::builder()
        .product("crashy", "1.0")
        .endpoint(url)
        .token(std::env::var("ANONSTATS_TEST_CRASH_TOKEN").unwrap())
        .config_dir(dir.join("etc"))
        .state_dir(dir.join("state"))
        .env(|_| None)
        .mode(anonstats_client::Mode::On)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(client.install_panic_hook());
    let home = std::env::var("HOME").unwrap();
    let config = std::env::var("ANONSTATS_NO_SUCH_VARIABLE").ok();
    config.unwrap_or_else(|| {
        panic!(
            "cannot load {home}/secret-project/db.toml for zedtester from 203.0.113.45 \
             (owner carol@example.org, run 7d3f9a2e-41b8-4c55-9e0a-2b6c8d1e5f73, db db7.prod.example.net:5432)"
        )
    });
}

fn stored_fatal(c: &Collector) -> serde_json::Value {
    let events = c.export();
    let fatal = events
        .iter()
        .find(|e| e["event"] == "FATAL")
        .unwrap_or_else(|| panic!("no FATAL stored: {events:?}"));
    fatal["properties"].clone()
}

#[test]
fn panic_in_a_child_reaches_the_collector_scrubbed() {
    let mut c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("ANONSTATS_TEST_CRASH_URL", &c.url)
        .env("ANONSTATS_TEST_CRASH_TOKEN", &c.write_token)
        .env("ANONSTATS_TEST_CRASH_DIR", dir.path())
        .env("HOME", "/home/zedtester")
        .env("USER", "zedtester")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child panics: {stderr}");
    assert!(stderr.contains("203.0.113.45"), "the real panic: {stderr}");

    let p = stored_fatal(&c);
    let message = p["fatal_message"].as_str().unwrap();
    assert_eq!(
        message,
        "cannot load <path:db.toml> for <user> from <ip> (owner <email>, run <uuid>, db <host>:5432)"
    );
    assert_eq!(p["fatal_file"], "crates/cli/tests/collector_privacy.rs");
    let metrics = common::admin_metrics(&c);
    assert!(
        !metrics.contains("anonstats_properties_scrubbed_total{property=\"fatal_message\"}"),
        "the agent scrubbed it already: {metrics}"
    );
    c.stop();
    let data = all_bytes(&c.data_dir());
    assert!(contains(&data, "db.toml"), "the check reads the real files");
    for secret in CRASH_SECRETS {
        assert!(!contains(&data, secret), "{secret:?} is in the data dir");
    }
}

#[test]
fn cli_fatal_is_scrubbed_before_it_is_sent() {
    let c = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = std::process::Command::new(common::BIN)
        .args([
            "send",
            "--wait",
            "FATAL",
            "zedtester-daemon:worker",
            "42@/home/zedtester/secret-project/src/main.c:load_config/2",
            "--endpoint",
            &c.url,
            "--token",
            &c.write_token,
            "--product-name",
            "cli-crashy",
            "--product-version",
            "1.0",
            "--config-dir",
        ])
        .arg(dir.path().join("etc"))
        .arg("--state-dir")
        .arg(&state)
        .env("HOME", "/home/zedtester")
        .env("USER", "zedtester")
        .env_remove("ANONSTATS_MODE")
        .env_remove("DO_NOT_TRACK")
        .env_remove("DISABLE_TELEMETRY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = stored_fatal(&c);
    assert_eq!(p["fatal_file"], "secret-project/src/main.c");
    assert_eq!(
        p["action_data"],
        "42@secret-project/src/main.c:load_config/2"
    );
    assert_eq!(p["fatal_process"], "<user>-daemon");
    assert_eq!(p["action_result"], "<user>-daemon:worker");
}

#[test]
fn hand_made_fatal_is_scrubbed_on_arrival_and_counted() {
    let mut c = Collector::start();
    // What an old agent or a hand-written curl could send.
    let body = format!(
        r#"{{"api_key": "{}", "batch": [{{"event": "FATAL", "distinct_id": "m1", "properties": {{
            "action": "FATAL",
            "action_result": "billing-198.51.100.23:worker",
            "action_data": "9@/home/mallory/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs:serde::de::fail/0",
            "fatal_process": "billing-198.51.100.23",
            "fatal_thread": "req-123456789",
            "fatal_function": "serde::de::fail",
            "fatal_file": "/home/mallory/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.1/src/de.rs",
            "fatal_line": 9,
            "fatal_message": "GET https://mallory:pw@api.example.com/x from 198.51.100.23 for mallory@example.org failed",
            "product_version": "hand-made-1"
        }}}}, {{"event": "CLOUD_BUILD_FAIL", "distinct_id": "m1", "properties": {{
            "action": "CLOUD_BUILD_FAIL", "action_data": "cannot write /home/mallory/build.log",
            "product_version": "hand-made-1"
        }}}}]}}"#,
        c.write_token
    );
    let answer = common::request(
        "POST",
        &c.url("/batch/"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let p = stored_fatal(&c);
    assert_eq!(
        p["fatal_message"],
        "GET <url:https> from <ip> for <email> failed"
    );
    assert_eq!(p["fatal_file"], "serde-1.0.1/src/de.rs");
    assert_eq!(
        p["action_data"],
        "9@serde-1.0.1/src/de.rs:serde::de::fail/0"
    );
    assert_eq!(p["fatal_process"], "billing-<ip>");
    assert_eq!(p["action_result"], "billing-<ip>:worker");
    assert_eq!(p["fatal_thread"], "req-<n>");
    assert_eq!(
        p["fatal_function"], "serde::de::fail",
        "clean values are kept"
    );
    assert_eq!(p["fatal_line"], 9);

    let metrics = common::admin_metrics(&c);
    for (property, n) in [
        ("fatal_message", 1),
        ("fatal_file", 1),
        ("fatal_process", 1),
        ("fatal_thread", 1),
        ("action_result", 1),
        ("action_data", 2),
    ] {
        let line = format!("anonstats_properties_scrubbed_total{{property=\"{property}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line:?} not in {metrics}");
    }
    assert!(!metrics.contains("anonstats_properties_scrubbed_total{property=\"fatal_function\"}"));
    c.stop();
    let data = all_bytes(&c.data_dir());
    assert!(
        contains(&data, "hand-made-1"),
        "the check reads the real files"
    );
    for secret in [
        "mallory",
        "198.51.100.23",
        "example.org",
        "123456789",
        "/home",
    ] {
        assert!(!contains(&data, secret), "{secret:?} is in the data dir");
    }
}
