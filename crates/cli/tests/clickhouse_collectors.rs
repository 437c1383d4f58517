//! Collectors on ClickHouse, as real processes: two collectors ingesting concurrently
//! into a two-shard cluster answer alike, a ClickHouse server killed during ingest costs
//! 503s but no acknowledged event, and neither does a collector killed during ingest.
//!
//! Needs the servers scripts/test.sh starts: ANONSTATS_TEST_CLICKHOUSE (one server) and
//! ANONSTATS_TEST_CLICKHOUSE_CLUSTER (comma-separated HTTP URLs of the cluster `anonstats`).
//! Outside CI a missing server skips the test (saying why); in CI it fails.

mod common;

use common::clickhouse::{ch, env_or_skip, unique_db};
use common::{BIN, request};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A collector process on ClickHouse.
struct ChCollector {
    child: Child,
    url: String,
    write_token: Option<String>,
    admin_token: Option<String>,
    _log: tempfile::NamedTempFile,
    /// Holds nothing but initial-tokens.txt, on the first start of a new store.
    _dir: tempfile::TempDir,
}

impl ChCollector {
    fn start(args: &[&str]) -> ChCollector {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env("ANONSTATS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start anonstats serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut write_token, mut admin_token, mut url) = (None, None, String::new());
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if let Some(t) = line.strip_prefix("write token: ") {
                write_token = Some(t.to_string());
            } else if let Some(t) = line.strip_prefix("admin token: ") {
                admin_token = Some(t.to_string());
            } else if let Some(u) = line.strip_prefix("listening on ") {
                url = u.to_string();
                break;
            }
        }
        assert!(
            !url.is_empty(),
            "serve ended before listening: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        std::thread::spawn(move || for _ in lines {});
        if let Some((write, admin)) = common::initial_tokens(dir.path()) {
            write_token = Some(write);
            admin_token = Some(admin);
        }
        ChCollector {
            child,
            url,
            write_token,
            admin_token,
            _log: log,
            _dir: dir,
        }
    }

    fn get(&self, path: &str, admin: &str) -> Value {
        let auth = format!("Bearer {admin}");
        let a = request(
            "GET",
            &format!("{}{path}", self.url),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        a.json()
    }
}

impl Drop for ChCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one batch; returns the HTTP status.
fn send(url: &str, token: &str, events: &[Value]) -> u16 {
    let body = json!({"api_key": token, "batch": events}).to_string();
    request(
        "POST",
        &format!("{url}/batch/"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .status
}

fn ev(uuid: &str, machine: &str, version: &str, ts: &str) -> Value {
    json!({"event": "START", "distinct_id": machine, "uuid": uuid, "timestamp": ts,
        "properties": {"product_version": version}})
}

#[test]
fn two_collectors_on_two_shards_answer_with_the_union() {
    let Some(nodes) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE_CLUSTER") else {
        return;
    };
    let urls: Vec<&str> = nodes.split(',').collect();
    assert!(
        urls.len() >= 2,
        "ANONSTATS_TEST_CLICKHOUSE_CLUSTER lists two nodes"
    );
    let db = unique_db("shards");
    let store = |u: &str| format!("{}/{db}", u.replacen("http://", "clickhouse://", 1));
    let common = [
        "--clickhouse-cluster",
        "anonstats",
        "--clickhouse-nodes",
        nodes.as_str(),
    ];
    let a = ChCollector::start(&[&["--store", &store(urls[0])][..], &common[..]].concat());
    let b = ChCollector::start(&[&["--store", &store(urls[1])][..], &common[..]].concat());
    let token = a
        .write_token
        .clone()
        .expect("first start prints a write token");
    let admin = a
        .admin_token
        .clone()
        .expect("first start prints an admin token");
    assert!(
        b.write_token.is_none(),
        "the second collector finds the project in ClickHouse"
    );

    // 60 machines; A hears machines 0..40, B machines 20..60 (20 heard by both), and the
    // events of machines 30..35 reach both collectors with the same uuids.
    let mut expected: HashMap<String, (String, String)> = HashMap::new();
    let mut for_a = Vec::new();
    let mut for_b = Vec::new();
    for m in 0..60 {
        for day in 0..3 {
            for which in 0..2 {
                let uuid = format!(
                    "01900000-0000-7000-8000-{:06}{:02}{:02}{:02}",
                    m, day, which, 0
                );
                let ts = format!("2024-03-0{}T{:02}:00:00Z", day + 1, m % 24);
                let version = ["1.0", "1.1", "2.0"][m % 3];
                let e = ev(&uuid, &format!("machine-{m}"), version, &ts);
                expected.insert(uuid, (format!("machine-{m}"), version.to_string()));
                let to_a = m < 40 && (m < 20 || which == 0) || (30..35).contains(&m);
                let to_b = m >= 20 && (m >= 40 || which == 1) || (30..35).contains(&m);
                if to_a {
                    for_a.push(e.clone());
                }
                if to_b {
                    for_b.push(e);
                }
            }
        }
    }
    let (ua, ub) = (a.url.clone(), b.url.clone());
    let (ta, tb) = (token.clone(), token.clone());
    let ha = std::thread::spawn(move || {
        for_a
            .chunks(7)
            .map(|c| send(&ua, &ta, c))
            .collect::<Vec<_>>()
    });
    let hb = std::thread::spawn(move || {
        for_b
            .chunks(5)
            .map(|c| send(&ub, &tb, c))
            .collect::<Vec<_>>()
    });
    let statuses: Vec<u16> = [ha.join().expect("sender a"), hb.join().expect("sender b")].concat();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every batch acknowledged: {statuses:?}"
    );

    let total = expected.len() as u64;
    let machines: HashSet<&String> = expected.values().map(|(m, _)| m).collect();
    let range = "from=2024-03-01&to=2024-03-04";
    for c in [&a, &b] {
        let trend = c.get(
            &format!("/api/v1/insights/trend?interval=day&{range}"),
            &admin,
        );
        let sum: u64 = trend["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|p| p["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sum, total, "every event once, from {}", c.url);
        let active = c.get(
            &format!("/api/v1/insights/active?interval=month&{range}"),
            &admin,
        );
        let m: u64 = active["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|p| p["machines"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(m, machines.len() as u64, "distinct machines from {}", c.url);
        let bd = c.get(
            &format!("/api/v1/insights/breakdown?property=product_version&{range}"),
            &admin,
        );
        for row in bd["rows"].as_array().expect("rows") {
            let v = row["value"].as_str().unwrap_or_default();
            let want = expected.values().filter(|(_, ver)| ver == v).count() as u64;
            assert_eq!(row["count"].as_u64(), Some(want), "{v} from {}", c.url);
        }
    }
    assert_eq!(
        a.get(
            &format!("/api/v1/insights/breakdown?property=product_version&{range}"),
            &admin
        ),
        b.get(
            &format!("/api/v1/insights/breakdown?property=product_version&{range}"),
            &admin
        )
    );
    // Both shards hold a share, and together everything (duplicates collapsed by FINAL).
    let shares: Vec<u64> = urls
        .iter()
        .map(|u| {
            ch(u, &format!("SELECT count() FROM {db}.events_local FINAL"))
                .trim()
                .parse()
                .expect("count")
        })
        .collect();
    assert!(
        shares.iter().all(|n| *n > 0),
        "rows on every shard: {shares:?}"
    );
    assert_eq!(shares.iter().sum::<u64>(), total, "shards: {shares:?}");

    // Erasure through one collector reaches every shard.
    let auth = format!("Bearer {admin}");
    let erased = request(
        "DELETE",
        &format!("{}/api/v1/machines/machine-31", b.url),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.json()["deleted_events"], 6);
    let left: u64 = ch(
        urls[0],
        &format!("SELECT count() FROM {db}.events FINAL WHERE distinct_id = 'machine-31'"),
    )
    .trim()
    .parse()
    .expect("count");
    assert_eq!(left, 0);
    drop((a, b));
    for u in &urls {
        ch(u, &format!("DROP DATABASE IF EXISTS {db}"));
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clickhouse.sh")
}

fn instance(cmd: &[&str]) {
    let out = Command::new("bash")
        .arg(script())
        .args(cmd)
        .output()
        .expect("run clickhouse.sh");
    assert!(
        out.status.success(),
        "clickhouse.sh {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn server_pid(name: &str) -> Option<String> {
    let out = Command::new("bash")
        .arg(script())
        .args(["status", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("pid=").map(str::to_string))
}

#[test]
fn a_killed_clickhouse_costs_503s_but_no_acknowledged_event() {
    if env_or_skip("ANONSTATS_TEST_CLICKHOUSE").is_none() {
        return;
    }
    // A server of its own, so that killing it disturbs no other test.
    const NAME: &str = "chkill";
    const HTTP: &str = "18126";
    instance(&["start", NAME, HTTP, "19006", "--interserver-port", "20006"]);
    let node = format!("http://127.0.0.1:{HTTP}");
    let db = unique_db("kill");
    let c = ChCollector::start(&["--store", &format!("clickhouse://127.0.0.1:{HTTP}/{db}")]);
    let token = c.write_token.clone().expect("write token");

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let unavailable = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (url, token, acked, unavailable, stop, counter) = (
            c.url.clone(),
            token.clone(),
            acked.clone(),
            unavailable.clone(),
            stop.clone(),
            counter.clone(),
        );
        senders.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut pending: Option<Vec<Value>> = None;
            while Instant::now() < deadline && !(stop.load(Ordering::SeqCst) && pending.is_none()) {
                let batch = pending.take().unwrap_or_else(|| {
                    (0..10)
                        .map(|_| {
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            ev(
                                &format!("01900000-0000-7000-8000-{n:012}"),
                                &format!("m-{t}-{}", n % 17),
                                "1.0",
                                "2024-03-01T10:00:00Z",
                            )
                        })
                        .collect()
                });
                match send(&url, &token, &batch) {
                    200 => acked.lock().expect("lock").extend(
                        batch
                            .iter()
                            .filter_map(|e| e["uuid"].as_str().map(str::to_string)),
                    ),
                    503 => {
                        // As a real client does: the same events again, a little later.
                        unavailable.fetch_add(1, Ordering::SeqCst);
                        pending = Some(batch);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
        }));
    }
    // Each step waits for what it needs, not for a guessed time: events acknowledged
    // before the kill, 503s while ClickHouse is down, acknowledgements after the restart.
    let wait_until = |what: &str, f: &dyn Fn() -> bool| {
        let until = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_until("events acknowledged before the kill", &|| {
        acked.lock().expect("lock").len() >= 200
    });
    let pid = server_pid(NAME).expect("server pid");
    let killed = Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let before_kill = acked.lock().expect("lock").len();
    let unavailable_before = unavailable.load(Ordering::SeqCst);
    wait_until("503s while ClickHouse is down", &|| {
        unavailable.load(Ordering::SeqCst) > unavailable_before + 4
    });
    // Requests answered before the kill reached the collector may still be counted now;
    // after several 503s every sender has met the outage.
    let before_restart = acked.lock().expect("lock").len();
    assert!(before_restart >= before_kill);
    instance(&["start", NAME, HTTP, "19006", "--interserver-port", "20006"]);
    wait_until("ingest resumed after the restart", &|| {
        acked.lock().expect("lock").len() >= before_restart + 200
    });
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        unavailable.load(Ordering::SeqCst) > 0,
        "some requests got 503 while ClickHouse was down"
    );
    assert!(
        acked.len() > before_restart,
        "ingest resumed after the restart"
    );

    let rows = ch(
        &node,
        &format!("SELECT toString(uuid) AS u FROM {db}.events FINAL FORMAT TabSeparated"),
    );
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for u in rows.lines() {
        *seen.entry(u).or_default() += 1;
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|u| !seen.contains_key(u.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    assert!(seen.values().all(|n| *n == 1), "every event once");
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "no event acknowledged twice");
    eprintln!(
        "{} events acknowledged, {} requests answered 503 while ClickHouse was down, none lost",
        acked.len(),
        unavailable.load(Ordering::SeqCst)
    );
    drop(c);
    ch(&node, &format!("DROP DATABASE IF EXISTS {db}"));
    instance(&["stop", NAME]);
}

/// The collector, not ClickHouse, killed with SIGKILL at random moments under load and
/// restarted (as `collector_durability` does on the embedded store): every uuid answered
/// 200 is stored, once, as the store reads it (`FINAL` collapses the copies that resends
/// after a kill leave).
#[test]
fn a_collector_on_clickhouse_killed_during_load_keeps_every_acknowledged_event_once() {
    let Some(node) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = unique_db("ckill");
    let host = node.trim_start_matches("http://");
    let mut c = common::Collector::start_with(&["--store", &format!("clickhouse://{host}/{db}")]);
    let acked = common::killed_during_load(&mut c);
    let rows = ch(
        &node,
        &format!("SELECT toString(uuid) FROM {db}.events FINAL FORMAT TabSeparated"),
    );
    let stored: Vec<String> = rows.lines().map(String::from).collect();
    common::assert_stored_once(&acked, &stored);
    eprintln!("{} acknowledged events, each stored once", acked.len());
    drop(c);
    ch(&node, &format!("DROP DATABASE IF EXISTS {db}"));
}
