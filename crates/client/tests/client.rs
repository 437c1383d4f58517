//! The client against a recording collector, in local mode, and opted out.

mod common;

use anonstats_client::{Client, Mode, Outcome};
use common::Recorder;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn builder(dir: &Path, url: &str) -> anonstats_client::Builder {
    Client::builder()
        .product("test-daemon", "9.9.9")
        .release_channel("nightly")
        .endpoint(url)
        .token("tok")
        .config_dir(dir.join("etc"))
        .system_dir(dir.join("etc"))
        .state_dir(dir.join("state"))
        .env(no_env)
}

fn wait_for(rec: &Recorder, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while rec.events().len() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn start_and_exit_are_delivered_with_masks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let client = builder(dir.path(), &rec.url).build().unwrap();
    assert_eq!(client.start(), Outcome::Queued);
    wait_for(&rec, 1);
    assert_eq!(client.exit(), Outcome::Delivered(1));
    assert_eq!(rec.names(), ["START", "EXIT"]);
    let body = &rec.bodies.lock().unwrap()[0];
    assert_eq!(body["api_key"], "tok");
    let e = &body["batch"][0];
    let id = client.machine_id().expect("made by START");
    assert_eq!(e["distinct_id"], id.to_string());
    let p = &e["properties"];
    assert_eq!(p["$ip"], "127.0.0.1");
    assert_eq!(p["$current_url"], "agent backend");
    assert_eq!(p["product_name"], "test-daemon");
    assert_eq!(p["product_version"], "9.9.9");
    assert_eq!(p["release_channel"], "nightly");
    assert_eq!(p["action"], "START");
    assert!(
        p["system_kernel_name"].is_string(),
        "probe facts are included"
    );
    // Delivered events leave nothing in the spool.
    let spool = dir.path().join("state/test-daemon/spool");
    assert_eq!(std::fs::read_dir(spool).unwrap().count(), 0);
}

#[test]
fn a_captured_event_arrives_without_any_other_call() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let client = builder(dir.path(), &rec.url).build().unwrap();
    // Queued without waking the client's thread: it is taken at the next drain.
    let mut props = serde_json::Map::new();
    props.insert("dashboard".into(), "overview".into());
    assert_eq!(client.capture("CONFIGURED", props), Outcome::Queued);
    let until = Instant::now() + Duration::from_secs(30);
    while rec.names().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rec.names(), ["CONFIGURED"]);
    drop(client);
}

#[test]
fn undelivered_events_go_first_at_the_next_start_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port once the listener is dropped.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let down = builder(dir.path(), &dead)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let site = anonstats_client::FatalSite::from_reference("p:t", "1@f.rs:f/0");
    assert!(matches!(down.fatal(site), Outcome::Spooled(_)));
    assert!(started.elapsed() < Duration::from_millis(900));

    // Another endpoint gets none of it: the FATAL was made for the one that was down.
    let other = Recorder::start();
    let elsewhere = builder(dir.path(), &other.url).build().unwrap();
    assert_eq!(
        elsewhere.send_action("START", None, None),
        Outcome::Delivered(1)
    );
    assert_eq!(elsewhere.exit(), Outcome::Delivered(1));
    assert_eq!(other.names(), ["START", "EXIT"]);

    let rec = Recorder::at(dead.trim_start_matches("http://"));
    let up = builder(dir.path(), &dead).build().unwrap();
    assert_eq!(up.send_action("START", None, None), Outcome::Delivered(2));
    assert_eq!(rec.names(), ["FATAL", "START"]);
    assert_eq!(rec.bodies.lock().unwrap().len(), 1, "one batch");
    assert_eq!(up.exit(), Outcome::Delivered(1));
    assert_eq!(rec.names(), ["FATAL", "START", "EXIT"]);
}

#[test]
fn an_event_the_spool_already_delivered_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let client = builder(dir.path(), &rec.url).build().unwrap();
    // The delivery thread's first round waits for the spool lock, held here, while a
    // second event is spooled and queued behind it: that round reads both from the spool.
    let spool = anonstats_client::spool::Spool::new(
        dir.path().join("state/test-daemon/spool"),
        anonstats_client::SpoolLimits::default(),
    );
    let lock = spool.try_lock().expect("the spool is free");
    assert_eq!(client.start(), Outcome::Queued);
    std::thread::scope(|s| {
        let custom = s.spawn(|| client.send_action("CUSTOM_A", None, None));
        while spool.load().len() < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        drop(lock);
        assert!(matches!(custom.join().unwrap(), Outcome::Delivered(_)));
    });
    assert_eq!(client.exit(), Outcome::Delivered(1));
    assert_eq!(rec.names(), ["START", "CUSTOM_A", "EXIT"]);
}

#[test]
fn a_run_without_exit_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let first = builder(dir.path(), &rec.url).build().unwrap();
    first.send_action("START", None, None);
    drop(first); // killed: no EXIT

    let second = builder(dir.path(), &rec.url).build().unwrap();
    second.send_action("START", None, None);
    second.exit();
    let third = builder(dir.path(), &rec.url).build().unwrap();
    third.send_action("START", None, None);
    assert_eq!(
        rec.names(),
        ["START", "INCOMPLETE_SHUTDOWN", "START", "EXIT", "START"]
    );
    let events = rec.events();
    assert_eq!(events[1]["properties"]["action_data"], events[0]["uuid"]);
}

#[test]
fn local_mode_logs_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let client = builder(dir.path(), &rec.url)
        .mode(Mode::Local)
        .build()
        .unwrap();
    // START is written by the client's thread; EXIT waits until it is written.
    assert_eq!(client.start(), Outcome::Queued);
    assert!(matches!(client.exit(), Outcome::Logged(_)));
    let log =
        std::fs::read_to_string(dir.path().join("state/test-daemon/local-events.ndjson")).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(rec.events().is_empty());
    assert!(!dir.path().join("state/test-daemon/spool").exists());
}

#[test]
fn opted_out_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    type Env = fn(&str) -> Option<OsString>;
    let cases: [Env; 2] = [
        |n| (n == "DISABLE_TELEMETRY").then(|| "0".into()),
        |n| (n == "DO_NOT_TRACK").then(|| "1".into()),
    ];
    for env in cases {
        // No endpoint, token or product: none is needed when off.
        let c = Client::builder()
            .state_dir(&state)
            .config_dir(dir.path())
            .env(env)
            .build()
            .unwrap();
        assert_eq!(c.consent().mode, Mode::Off);
        assert_eq!(c.start(), Outcome::Off);
        assert_eq!(c.capture("X", Default::default()), Outcome::Off);
        assert_eq!(c.exit(), Outcome::Off);
        assert!(!c.install_panic_hook());
        assert_eq!(c.preview("START", None, None), None);
    }
    std::fs::write(dir.path().join(".opt-out-from-anonymous-statistics"), "").unwrap();
    let c = Client::builder()
        .state_dir(&state)
        .config_dir(dir.path())
        .env(no_env)
        .build()
        .unwrap();
    assert_eq!(c.send_action("START", None, None), Outcome::Off);
    assert!(!state.exists());
}

#[test]
fn missing_settings_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = Client::builder()
        .config_dir(dir.path())
        .env(no_env)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("product"), "{err}");
    let err = builder(dir.path(), "localhost:80").build().unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}

#[test]
fn custom_events_and_cloud_codes() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let client = builder(dir.path(), &rec.url).build().unwrap();
    let mut props = serde_json::Map::new();
    props.insert("$ip".into(), "10.0.0.1".into());
    props.insert("plugins".into(), 3.into());
    assert_eq!(
        client.capture_and_wait("CONFIGURED", props),
        Outcome::Delivered(1)
    );
    assert_eq!(
        client.send_action("CLOUD_CONNECT_FAIL", Some("504"), None),
        Outcome::Delivered(1)
    );
    let events = rec.events();
    assert_eq!(events[0]["properties"]["plugins"], 3);
    assert_eq!(events[0]["properties"]["$ip"], "127.0.0.1");
    assert_eq!(events[1]["properties"]["error_code"], "504");
    assert!(matches!(
        client.capture("", Default::default()),
        Outcome::Dropped(_)
    ));
}

/// Waits for `what` with a deadline.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let limit = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_event_the_full_spool_dropped_is_reported_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::gated();
    let limits = anonstats_client::SpoolLimits {
        max_files: 3,
        max_bytes: 1 << 20,
    };
    let client = builder(dir.path(), &rec.url)
        .timeout(Duration::from_secs(8))
        .spool_limits(limits)
        .build()
        .unwrap();
    let spool =
        anonstats_client::spool::Spool::new(dir.path().join("state/test-daemon/spool"), limits);
    // START is on its way and held by the collector; meanwhile EXIT and three more events
    // are spooled, one more than the spool keeps, so the oldest waiting one (EXIT) goes.
    assert_eq!(client.start(), Outcome::Queued);
    until("START posted", || rec.requests() == 1);
    std::thread::scope(|s| {
        let exit = s.spawn(|| client.exit());
        until("EXIT spooled", || spool.load().len() == 2);
        for i in 0..3 {
            let name = format!("LATER_{i}");
            assert_eq!(client.capture(&name, Default::default()), Outcome::Queued);
        }
        assert_eq!(client.sync(), Outcome::Queued);
        rec.release();
        let outcome = exit.join().unwrap();
        assert!(matches!(outcome, Outcome::Dropped(_)), "{outcome:?}");
    });
    until("the later events posted", || rec.requests() == 2);
    assert_eq!(rec.names(), ["START", "LATER_0", "LATER_1", "LATER_2"]);
    let events = rec.events();
    assert_eq!(events[1]["properties"]["dropped_events"], 1);
    assert!(events[0]["properties"].get("dropped_events").is_none());
    assert!(events[2]["properties"].get("dropped_events").is_none());

    // Once acknowledged, the count starts again from zero.
    assert_eq!(
        client.capture_and_wait("AFTER", Default::default()),
        Outcome::Delivered(1)
    );
    let after = rec.events().pop().unwrap();
    assert!(
        after["properties"].get("dropped_events").is_none(),
        "{after}"
    );
}

#[test]
fn an_opt_out_while_running_stops_events_and_deletes_what_waited() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/test-daemon");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let on = builder(dir.path(), &dead)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(matches!(
        on.send_action("START", None, None),
        Outcome::Spooled(_)
    ));
    let local = builder(dir.path(), &dead)
        .mode(Mode::Local)
        .build()
        .unwrap();
    assert!(matches!(
        local.send_action("START", None, None),
        Outcome::Logged(_)
    ));
    assert!(state.join("spool").exists() && state.join("local-events.ndjson").exists());

    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/.opt-out-from-anonymous-statistics"),
        "",
    )
    .unwrap();
    assert_eq!(on.consent().mode, Mode::Off);
    assert!(!on.sends());
    assert_eq!(on.exit(), Outcome::Off);
    assert_eq!(local.exit(), Outcome::Off);
    assert!(!state.join("spool").exists(), "the spool is deleted");
    assert!(
        !state.join("local-events.ndjson").exists(),
        "the log is deleted"
    );
}

#[test]
fn a_backlog_goes_out_in_batches_of_at_most_100_events() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::gated();
    let client = builder(dir.path(), &rec.url)
        .timeout(Duration::from_secs(10))
        .spool_limits(anonstats_client::SpoolLimits {
            max_files: 1000,
            max_bytes: 8 << 20,
        })
        .build()
        .unwrap();
    // While START is held by the collector, 250 more events queue up behind it.
    assert_eq!(client.start(), Outcome::Queued);
    until("START posted", || rec.requests() == 1);
    for i in 0..250 {
        let name = format!("QUEUED_{i}");
        assert_eq!(client.capture(&name, Default::default()), Outcome::Queued);
    }
    assert_eq!(client.sync(), Outcome::Queued);
    rec.release();
    until("the backlog posted", || rec.events().len() == 251);
    let sizes: Vec<usize> = rec
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["batch"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [1, 100, 100, 50]);
    let expected: Vec<String> = std::iter::once("START".to_string())
        .chain((0..250).map(|i| format!("QUEUED_{i}")))
        .collect();
    assert_eq!(rec.names(), expected, "in order, each once");
}

#[test]
fn events_dropped_for_one_endpoint_are_reported_to_that_endpoint_only() {
    let dir = tempfile::tempdir().unwrap();
    // A's collector is down (nothing listens there until it comes back below).
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let limits = anonstats_client::SpoolLimits {
        max_files: 1,
        max_bytes: 1 << 20,
    };
    let a = builder(dir.path(), &format!("http://{down}"))
        .timeout(Duration::from_millis(500))
        .spool_limits(limits)
        .build()
        .unwrap();
    // The spool keeps one event: the second drops the first, which is counted.
    for name in ["A_FIRST", "A_SECOND"] {
        let outcome = a.capture_and_wait(name, Default::default());
        assert!(matches!(outcome, Outcome::Spooled(_)), "{outcome:?}");
    }
    let ledger = dir.path().join("state/test-daemon/spool-dropped.json");
    until("the drop counted", || ledger.exists());

    // The same product reporting to another collector does not report A's loss there.
    let rec_b = Recorder::start();
    let b = builder(dir.path(), &rec_b.url)
        .spool_limits(limits)
        .build()
        .unwrap();
    let outcome = b.capture_and_wait("B_EVENT", Default::default());
    assert!(matches!(outcome, Outcome::Delivered(_)), "{outcome:?}");
    let at_b = rec_b.events();
    assert_eq!(rec_b.names(), ["B_EVENT"]);
    assert!(
        at_b[0]["properties"].get("dropped_events").is_none(),
        "{}",
        at_b[0]
    );

    // A's collector, back, is told of both: its second event went too, to make room for
    // B's (the spool's bounds are the product's).
    let rec_a = Recorder::at(&down);
    let outcome = a.capture_and_wait("A_BACK", Default::default());
    assert!(matches!(outcome, Outcome::Delivered(_)), "{outcome:?}");
    let reported: Vec<u64> = rec_a
        .events()
        .iter()
        .filter_map(|e| e["properties"]["dropped_events"].as_u64())
        .collect();
    assert_eq!(reported, [2], "{:?}", rec_a.events());
}
