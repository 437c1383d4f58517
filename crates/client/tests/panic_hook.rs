//! The panic hook turns a panic into FATAL with process, thread, function, file and line.

use anonstats_client::{Client, Mode};

fn crash_in_named_function() {
    let config: Option<u8> = std::env::var("ANONSTATS_NO_SUCH_VARIABLE").ok().map(|_| 1);
    config.expect("the configuration is gone");
}

#[test]
fn panic_becomes_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder()
        .product("hooked", "1.0")
        .config_dir(dir.path())
        .state_dir(dir.path().join("state"))
        .env(|_| None)
        .mode(Mode::Local)
        .build()
        .unwrap();
    let chained = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = chained.clone();
    std::panic::set_hook(Box::new(move |_| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst)
    }));
    assert!(client.install_panic_hook());
    assert!(!client.install_panic_hook(), "installs once");

    let t = std::thread::Builder::new()
        .name("crash-thread".into())
        .spawn(crash_in_named_function)
        .unwrap();
    assert!(t.join().is_err());
    assert!(
        chained.load(std::sync::atomic::Ordering::SeqCst),
        "previous hook ran"
    );

    let log = std::fs::read_to_string(dir.path().join("state/hooked/local-events.ndjson")).unwrap();
    let fatal: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let p = &fatal["properties"];
    assert_eq!(fatal["event"], "FATAL");
    assert_eq!(p["fatal_thread"], "crash-thread");
    assert_eq!(p["fatal_function"], "panic_hook::crash_in_named_function");
    assert_eq!(p["fatal_file"], "crates/client/tests/panic_hook.rs");
    assert_eq!(p["fatal_line"], 7);
    assert_eq!(p["fatal_message"], "the configuration is gone");
    assert!(!p["fatal_process"].as_str().unwrap().is_empty());
    let expected = "7@crates/client/tests/panic_hook.rs:panic_hook::crash_in_named_function/0";
    assert_eq!(p["action_data"], expected);
    assert_eq!(
        p["action_result"],
        format!("{}:crash-thread", p["fatal_process"].as_str().unwrap())
    );

    // The explicit macro captures the enclosing function.
    anonstats_client::fatal!(client, "disk {} is full", "/var");
    let log = std::fs::read_to_string(dir.path().join("state/hooked/local-events.ndjson")).unwrap();
    let fatal: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        fatal["properties"]["fatal_function"],
        "panic_hook::panic_becomes_fatal"
    );
    // An absolute path is masked (see docs/DATA.md).
    assert_eq!(fatal["properties"]["fatal_message"], "disk <path> is full");
}

/// Runs as a child of [`panic_text_is_scrubbed_before_it_is_written`] only.
#[test]
fn scrub_child() {
    let Ok(dir) = std::env::var("ANONSTATS_TEST_SCRUB_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let client = Client::builder()
        .product("hooked", "1.0")
        .config_dir(&dir)
        .state_dir(dir.join("state"))
        .env(|_| None)
        .mode(Mode::Local)
        .build()
        .unwrap();
    assert!(client.install_panic_hook());
    let home = std::env::var("HOME").unwrap();
    let t = std::thread::Builder::new()
        .name("sync-zedtester".into())
        .spawn(move || {
            panic!(
                "open {home}/work/secret-project/keys.pem for zedtester@example.com from \
                 [2001:db8::7]:443 and 192.0.2.10, request 9f8e7d6c-5b4a-4321-8fed-cba987654321"
            )
        })
        .unwrap();
    assert!(t.join().is_err());
    // The explicit macro's message too.
    anonstats_client::fatal!(client, "user zedtester: id 12345678 at 0xdeadbeef12");
}

#[test]
fn panic_text_is_scrubbed_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "scrub_child", "--nocapture", "--test-threads=1"])
        .env("ANONSTATS_TEST_SCRUB_DIR", dir.path())
        .env("HOME", "/home/zedtester")
        .env("USER", "zedtester")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("192.0.2.10"), "the real panic: {stderr}");
    let log = std::fs::read_to_string(dir.path().join("state/hooked/local-events.ndjson")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fatals: Vec<_> = events.iter().filter(|e| e["event"] == "FATAL").collect();
    assert_eq!(fatals.len(), 2, "{log}");
    let p = &fatals[0]["properties"];
    assert_eq!(
        p["fatal_message"],
        "open <path:keys.pem> for <email> from [<ip>]:443 and <ip>, request <uuid>"
    );
    assert_eq!(p["fatal_thread"], "sync-<user>");
    assert_eq!(p["fatal_file"], "crates/client/tests/panic_hook.rs");
    let p = &fatals[1]["properties"];
    assert_eq!(p["fatal_message"], "user <user>: id <n> at <hex>");
    for secret in [
        "zedtester",
        "/home",
        "secret-project",
        "2001:db8",
        "192.0.2.10",
        "9f8e7d6c",
        "12345678",
        "deadbeef",
    ] {
        assert!(!log.contains(secret), "{secret:?} in {log}");
    }
}
