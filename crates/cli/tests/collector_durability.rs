//! Every acknowledged event survives, exactly once, across concurrent senders and a
//! hard kill.

mod common;

use common::{BIN, Collector, agent, post_json, require};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn concurrent_senders_then_kill_and_restart_keep_exactly_the_acknowledged_events() {
    let mut c = Collector::start();
    let acked = Arc::new(AtomicUsize::new(0));
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let (url, token, acked) = (url.clone(), c.write_token.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut sent = 0;
                let mut batch_no = 0;
                while sent < 10_000 {
                    // Mixed sizes: single events and batches up to 200.
                    let size = [1, 7, 50, 200][batch_no % 4].min(10_000 - sent);
                    let batch: Vec<_> = (0..size)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}-{}", (sent + i) % 100), "properties": {"n": sent + i}}))
                        .collect();
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    let resp = agent.post(&url).header("content-type", "application/json").send(body.as_bytes());
                    if resp.is_ok_and(|r| r.status().as_u16() == 200) {
                        acked.fetch_add(size, Ordering::SeqCst);
                    }
                    sent += size;
                    batch_no += 1;
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0);
    // No graceful shutdown: what was acknowledged must already be on disk.
    c.kill();
    c.restart();
    assert_eq!(c.export().len(), acked);
}

#[test]
fn sigterm_finishes_requests_in_flight_and_loses_no_acknowledged_event() {
    let mut c = Collector::start();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = c.url("/batch/");
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (url, token, acked, stop) = (url.clone(), c.write_token.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let batch: Vec<_> = (0..20)
                        .map(|i| json!({"event": "load", "distinct_id": format!("t{t}-{}", (n + i) % 100), "properties": {"n": n + i}}))
                        .collect();
                    n += 20;
                    let body = json!({"api_key": token, "batch": batch}).to_string();
                    match agent.post(&url).send(body.as_bytes()) {
                        Ok(r) if r.status().as_u16() == 200 => {
                            acked.fetch_add(20, Ordering::SeqCst);
                        }
                        // Refused or cut off once the collector stops: not acknowledged.
                        _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    // Stop under load: once some requests were acknowledged, not after a guessed time.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < 400 {
        assert!(
            std::time::Instant::now() < until,
            "no load reached the collector"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.stop();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert!(acked > 0);
    assert_eq!(
        c.export().len(),
        acked,
        "exactly the acknowledged events were committed"
    );
}

#[test]
fn events_killed_before_the_rollups_counted_them_are_counted_at_the_next_start() {
    // Rollups fold committed events in at most ten minutes: long enough that the kill
    // below comes first.
    let mut c = Collector::start_with(&["--rollup-fold-ms", "600000"]);
    let versions = ["1.0", "1.1", "2.0"];
    let mut expected: std::collections::BTreeMap<
        String,
        (u64, std::collections::BTreeSet<String>),
    > = Default::default();
    for b in 0..6 {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let (machine, version) = (format!("m{}", (b * 50 + i) % 40), versions[i % 3]);
                let e = expected.entry(version.to_string()).or_default();
                e.0 += 1;
                e.1.insert(machine.clone());
                json!({"event": "START", "distinct_id": machine, "properties": {"product_version": version}})
            })
            .collect();
        let a = common::post_json(
            &c.url("/batch/"),
            &json!({"api_key": c.write_token, "batch": batch}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    c.kill();
    let behind = c.cli(&[
        "sql",
        "--format",
        "csv",
        "SELECT (SELECT value FROM meta WHERE key = 'rollup_seq') || '/' || (SELECT MAX(seq) FROM events)",
    ]);
    assert!(
        behind.trim_end().ends_with("0/300"),
        "the rollups should not count the events yet: {behind}"
    );
    c.restart();
    let got = common::admin_get(
        &c,
        "/api/v1/insights/breakdown?property=product_version&range=7",
    );
    let mut rows: Vec<(String, u64, u64)> = got["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap_or_default().to_string(),
                r["count"].as_u64().unwrap_or_default(),
                r["machines"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    rows.sort();
    let expected: Vec<(String, u64, u64)> = expected
        .into_iter()
        .map(|(v, (n, machines))| (v, n, machines.len() as u64))
        .collect();
    assert_eq!(rows, expected);
}

/// A second process writing into the data dir of a running collector would store rows
/// under sequence numbers the collector is about to give, and the collector would then
/// answer 200 for events it silently dropped. Every writer takes the data dir alone.
#[test]
fn a_data_dir_in_use_is_refused_by_every_other_writer_and_the_collector_keeps_what_it_acknowledges()
{
    let c = Collector::start();
    let pid = c.pid();
    let in_use = format!("in use by pid {pid}");
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["gen", "--events", "100", "--machines", "10", "--days", "1"],
    ] {
        let mut child = std::process::Command::new(common::BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(c.data_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run anonstats");
        // A writer that was let in runs on (serve) or writes (gen): either way it is not
        // refused at once.
        let status = common::wait_timeout(&mut child, std::time::Duration::from_secs(30));
        let _ = child.kill();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "anonstats {args:?} ran beside serve ({status:?}): {stderr}"
        );
        assert!(
            stderr.contains(&in_use),
            "anonstats {args:?} did not say why: {stderr}"
        );
    }
    let batch: Vec<_> = (0..10)
        .map(|i| json!({"event": "after", "distinct_id": "m", "properties": {"n": i}}))
        .collect();
    let answer = common::post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": batch}),
    );
    assert_eq!(answer.status, 200, "{}", answer.detail());
    let stored = c.export().iter().filter(|e| e["event"] == "after").count();
    assert_eq!(stored, 10, "acknowledged events were not stored");
}

/// The lines of an `strace -f` log with every call split by a thread switch put back
/// together (`<unfinished ...>` and `<... resumed>`).
fn whole_calls(log: &str) -> Vec<String> {
    let mut pending: std::collections::HashMap<String, String> = Default::default();
    let mut out = Vec::new();
    for line in log.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), start.to_string());
        } else if let Some(at) = rest.find("resumed>") {
            let start = pending.remove(pid).unwrap_or_default();
            out.push(format!("{start}{}", &rest[at + "resumed>".len()..]));
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

/// Starts `serve` under strace on `data`, captures one event, stops it; returns the
/// calls traced.
fn traced_serve(data: &std::path::Path, log: &std::path::Path) -> Vec<String> {
    use std::io::BufRead as _;
    let mut tracer = std::process::Command::new("strace")
        .args(["-f", "-qq", "-s", "40", "-o"])
        .arg(log)
        .args([
            "-e",
            "trace=openat,mkdir,mkdirat,fsync,fdatasync,write,writev,sendto,sendmsg",
        ])
        .arg(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start strace");
    let mut lines = std::io::BufReader::new(tracer.stdout.take().expect("stdout")).lines();
    let (mut url, mut token) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("stdout");
        if let Some(t) = line.strip_prefix("write token: ") {
            token = t.to_string();
        } else if let Some(u) = line.strip_prefix("listening on ") {
            url = u.to_string();
            break;
        }
    }
    assert!(!url.is_empty(), "serve did not start under strace");
    std::thread::spawn(move || for _ in lines {});
    if let Some((write, _)) = common::initial_tokens(data) {
        token = write;
    }
    if token.is_empty() {
        let out = std::process::Command::new(BIN)
            .args(["keys", "create-project", "second", "--data-dir"])
            .arg(data)
            .output()
            .expect("create a project");
        token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a token")
            .to_string();
    }
    let a = post_json(
        &format!("{url}/e/"),
        &json!({"api_key": token, "event": "START", "distinct_id": "m"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // Stop the traced collector itself (stopping strace would only detach it).
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tracer.id()))
        .expect("strace's children");
    let serve = children
        .split_whitespace()
        .next()
        .expect("the traced serve")
        .to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve])
        .status();
    let status = common::wait_timeout(&mut tracer, std::time::Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "serve under strace: {status:?}"
    );
    whole_calls(&std::fs::read_to_string(log).expect("strace log"))
}

/// Where in `calls` the log file was created, `dir` was first synced after that,
/// `parent` was first synced, and the first 200 was written.
fn sync_order(
    calls: &[String],
    dir: &std::path::Path,
    parent: &std::path::Path,
) -> [Option<usize>; 4] {
    let (dir, parent) = (dir.display().to_string(), parent.display().to_string());
    let wal = format!("\"{dir}/anonstats.db-wal\"");
    // What each descriptor was opened on, as the calls go.
    let mut fds: std::collections::HashMap<String, String> = Default::default();
    let [
        mut wal_created,
        mut dir_synced,
        mut parent_synced,
        mut first_200,
    ] = [None; 4];
    for (i, call) in calls.iter().enumerate() {
        if call.starts_with("openat(") {
            let path = call.split('"').nth(1).unwrap_or("").to_string();
            let fd = call.rsplit_once(" = ").map(|(_, r)| r.trim());
            if let Some(fd) = fd.filter(|r| !r.starts_with('-')) {
                fds.insert(fd.to_string(), path);
            }
            if call.contains(&wal) && call.contains("O_CREAT") && wal_created.is_none() {
                wal_created = Some(i);
            }
        } else if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            let fd = call.split(['(', ')']).nth(1).unwrap_or("");
            match fds.get(fd) {
                Some(p) if *p == dir && wal_created.is_some() && dir_synced.is_none() => {
                    dir_synced = Some(i)
                }
                Some(p) if *p == parent && parent_synced.is_none() => parent_synced = Some(i),
                _ => {}
            }
        } else if call.contains("HTTP/1.1 200") && first_200.is_none() {
            first_200 = Some(i);
        }
    }
    [wal_created, dir_synced, parent_synced, first_200]
}

/// A new data dir, the database file and its write-ahead log are created with a
/// directory fsync after them, before the first event is acknowledged, so that a power
/// loss cannot take back an acknowledged event by taking back a file's name: on a first
/// start the data dir (after the log exists) and its parent; at a restart, which makes
/// the log again, the data dir.
#[test]
fn the_data_dir_is_synced_after_the_log_is_created_and_before_the_first_200() {
    let strace = std::process::Command::new("strace").arg("-V").output();
    if !require(strace.is_ok_and(|o| o.status.success()), "strace") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let parent = tmp.path().join("parent");
    std::fs::create_dir(&parent).expect("parent dir");
    let data = parent.join("data");
    for run in ["first start", "restart"] {
        let log = tmp.path().join(format!("strace-{run}.log"));
        let calls = traced_serve(&data, &log);
        let shown = || {
            calls
                .iter()
                .filter(|c| !c.starts_with("write("))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        };
        let [wal_created, dir_synced, parent_synced, first_200] =
            sync_order(&calls, &data, &parent);
        let first_200 = first_200.unwrap_or_else(|| panic!("{run}: no 200:\n{}", shown()));
        let wal_created = wal_created
            .unwrap_or_else(|| panic!("{run}: the log file was not created:\n{}", shown()));
        let dir_synced = dir_synced.unwrap_or_else(|| {
            panic!(
                "{run}: the data dir was not synced after the log file was created:\n{}",
                shown()
            )
        });
        assert!(
            wal_created < dir_synced && dir_synced < first_200,
            "{run}: log created at call {wal_created}, data dir synced at {dir_synced}, \
             first 200 at {first_200}:\n{}",
            shown()
        );
        if run == "first start" {
            let parent_synced = parent_synced.unwrap_or_else(|| {
                panic!("the new data dir's parent was not synced:\n{}", shown())
            });
            assert!(parent_synced < first_200, "{}", shown());
        }
        assert!(
            !data.join("anonstats.db-wal").exists(),
            "a clean stop removes the log, so the restart makes it again"
        );
    }
}

/// SIGKILL at a moment chosen at random while eight senders send batches and single
/// events, restart, three times over (`ANONSTATS_CRASH_TRIALS`; see
/// [`common::killed_during_load`]). Every uuid answered 200 is stored exactly once.
#[test]
fn killed_during_load_three_times_every_acknowledged_uuid_is_stored_exactly_once() {
    let mut c = Collector::start();
    let acked = common::killed_during_load(&mut c);
    let stored: Vec<String> = c
        .export()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    common::assert_stored_once(&acked, &stored);
}
