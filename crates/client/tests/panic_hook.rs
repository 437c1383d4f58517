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

    let log = std::fs::read_to_string(dir.path().join("state/local-events.ndjson")).unwrap();
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
    let log = std::fs::read_to_string(dir.path().join("state/local-events.ndjson")).unwrap();
    let fatal: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        fatal["properties"]["fatal_function"],
        "panic_hook::panic_becomes_fatal"
    );
    assert_eq!(fatal["properties"]["fatal_message"], "disk /var is full");
}
