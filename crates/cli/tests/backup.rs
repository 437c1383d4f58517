//! `anonstats backup --to FILE` on the real binaries: a copy taken while `serve` is
//! under load is one consistent snapshot (whole batches, a prefix of what was
//! acknowledged), and a collector restored from it as the README says answers the same
//! insights and exports the same events as the original. FILE is never half-written and
//! never replaced without `--force`; a ClickHouse store is refused with the engine's way.

mod common;

use anonstats_wire::format_rfc3339_ms;
use common::{BIN, Collector, admin_get, post_json, require};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;
const DAY: i64 = 86_400_000;
const PER_BATCH: usize = 40;

fn uuid(batch: usize, j: usize) -> String {
    format!("00000000-0000-4000-8000-{:06}{:06}", batch, j)
}

/// Batch `i`: 40 events on day `i`, from 12 machines over 3 versions and 2 systems; the
/// first 100 batches carry 8 KB of text per event, so that the store is tens of MB.
fn batch(token: &str, i: usize) -> Value {
    let pad = "p".repeat(if i < 100 { 8000 } else { 10 });
    let events: Vec<Value> = (0..PER_BATCH)
        .map(|j| {
            json!({"event": if j % 5 == 0 { "FATAL" } else { "START" },
                "distinct_id": format!("m{}", (i + j) % 12), "uuid": uuid(i, j),
                "timestamp": format_rfc3339_ms(T0 + i as i64 * DAY + j as i64 * 1000),
                "properties": {"product_version": format!("1.{}", (i + j) % 3),
                    "host_os_name": if j % 2 == 0 { "Debian" } else { "Fedora" },
                    "function": "main", "file": "main.c", "line": j % 4, "nested": {"n": [i, j]},
                    "pad": pad}})
        })
        .collect();
    json!({"api_key": token, "batch": events})
}

fn backup(c: &Collector, to: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["backup", "--to"])
        .arg(to)
        .arg("--data-dir")
        .arg(c.data_dir())
        .args(extra)
        .output()
        .expect("run anonstats backup")
}

/// A collector on a data dir restored from `copy` as the README says: the copy becomes
/// `anonstats.db` in an empty data dir. Its admin tokens are the original's.
fn restored(copy: &Path, admin_token: &str) -> Collector {
    let copy = copy.to_path_buf();
    let mut c = Collector::start_prepared(&[], &[], move |data| {
        std::fs::create_dir_all(data).expect("data dir");
        std::fs::copy(&copy, data.join("anonstats.db")).expect("copy the backup in");
    });
    c.admin_token = admin_token.to_string();
    c
}

/// Every insight the dashboard asks over the first `days` days.
fn insights(c: &Collector, days: usize) -> BTreeMap<String, Value> {
    let range = format!(
        "from={}&to={}",
        &format_rfc3339_ms(T0)[..10],
        &format_rfc3339_ms(T0 + days as i64 * DAY)[..10]
    );
    [
        "insights/trend?event=START",
        "insights/trend?event=FATAL&interval=week",
        "insights/trend?filter=host_os_name=Debian",
        "insights/breakdown?property=product_version",
        "insights/breakdown?property=host_os_name&interval=day",
        "insights/active",
        "insights/versions",
        "insights/systems",
        "insights/crashes",
        "properties",
    ]
    .iter()
    .map(|q| {
        let sep = if q.contains('?') { '&' } else { '?' };
        let path = format!("/api/v1/{q}{sep}{range}");
        (q.to_string(), admin_get(c, &path))
    })
    .collect()
}

#[test]
fn a_backup_taken_under_load_restores_to_the_same_insights_and_events() {
    let c = Collector::start();
    let capture = c.url("/batch/");
    // Enough stored that the copy takes many steps.
    for i in 0..100 {
        let a = post_json(&capture, &batch(&c.write_token, i));
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // One sender, one batch at a time: batch i is acknowledged before i + 1 is sent.
    let acked = Arc::new(AtomicUsize::new(100));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, token) = (acked.clone(), stop.clone(), c.write_token.clone());
        std::thread::spawn(move || {
            let mut i = 100;
            while !stop.load(Ordering::SeqCst) && i < 2000 {
                let a = post_json(&capture, &batch(&token, i));
                assert_eq!(a.status, 200, "{}", a.body);
                i += 1;
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the sender stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(102);
    let out = tempfile::tempdir().expect("temp dir");
    let file = out.path().join("anonstats-backup.db");
    let before = acked.load(Ordering::SeqCst);
    let b = backup(&c, &file, &[]);
    let after = acked.load(Ordering::SeqCst);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let said = String::from_utf8_lossy(&b.stdout).into_owned();
    // Load on both sides of the copy.
    wait_for(after + 2);
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    let total = acked.load(Ordering::SeqCst);
    assert_eq!(
        std::fs::read_dir(out.path()).expect("dir").count(),
        1,
        "only FILE is left"
    );

    let copy = restored(&file, &c.admin_token);
    let copied = copy.export();
    // Whole batches, and exactly those acknowledged before some moment of the copy: a
    // prefix of the batches.
    let mut per_batch: BTreeMap<usize, usize> = BTreeMap::new();
    for e in &copied {
        let u = e["uuid"].as_str().expect("uuid");
        *per_batch
            .entry(u[24..30].parse().expect("batch"))
            .or_default() += 1;
    }
    let n = per_batch.len();
    assert!(
        per_batch.values().all(|&k| k == PER_BATCH),
        "a batch was cut"
    );
    assert_eq!(
        per_batch.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    assert!(
        n >= before && n <= after + 1,
        "the copy holds {n} batches; {before} were acknowledged when it began, {after} when it ended"
    );
    assert!(
        said.contains(&format!("backed up {} events", n * PER_BATCH)),
        "{said}"
    );
    let mb: f64 = said
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("size");
    assert!(mb > 30.0, "the copy takes several steps: {said}");
    eprintln!(
        "{n} of {total} batches in the copy ({before} acknowledged when it began, {after} when it ended): {said}"
    );

    // The same events, field for field, as the original holds for those batches.
    let original: Vec<Value> = c
        .export()
        .into_iter()
        .filter(|e| {
            e["uuid"].as_str().unwrap()[24..30]
                .parse::<usize>()
                .unwrap()
                < n
        })
        .collect();
    assert_eq!(original.len(), copied.len());
    assert_eq!(original, copied);
    // The same answers over the days the copy holds.
    assert_eq!(insights(&c, n), insights(&copy, n));
    // The restored collector takes events and keys work.
    let a = post_json(&copy.url("/batch/"), &batch(&c.write_token, 5000));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(copy.export().len(), copied.len() + PER_BATCH);
}

#[test]
fn an_idle_backup_equals_the_original_in_every_answer() {
    let c = Collector::start();
    for i in 0..30 {
        let a = post_json(&c.url("/batch/"), &batch(&c.write_token, i));
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let out = tempfile::tempdir().expect("temp dir");
    let file = out.path().join("copy.db");
    let b = backup(&c, &file, &[]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let copy = restored(&file, &c.admin_token);
    assert_eq!(c.export(), copy.export());
    assert_eq!(insights(&c, 30), insights(&copy, 30));
}

#[test]
fn an_existing_file_is_kept_unless_forced_and_a_failed_copy_leaves_nothing() {
    let c = Collector::start();
    let a = post_json(&c.url("/batch/"), &batch(&c.write_token, 0));
    assert_eq!(a.status, 200, "{}", a.body);
    let out = tempfile::tempdir().expect("temp dir");
    let file = out.path().join("copy.db");
    std::fs::write(&file, "keep me").expect("write");
    let b = backup(&c, &file, &[]);
    assert!(!b.status.success());
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(err.contains("exists; pass --force to replace it"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
    let b = backup(&c, &file, &["--force"]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(String::from_utf8_lossy(&b.stdout).contains(&format!("backed up {PER_BATCH} events")));
    assert_eq!(
        std::fs::read(&file).expect("read")[..16],
        *b"SQLite format 3\0"
    );

    // A copy whose sync fails (strace makes every fsync fail) leaves neither FILE nor a
    // temp file behind.
    if require(Command::new("strace").arg("-V").output().is_ok(), "strace") {
        let failed = out.path().join("failed.db");
        let b = Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=fsync,fdatasync",
                "-e",
            ])
            .arg("inject=fsync,fdatasync:error=EIO")
            .arg(BIN)
            .args(["backup", "--to"])
            .arg(&failed)
            .arg("--data-dir")
            .arg(c.data_dir())
            .output()
            .expect("run under strace");
        assert!(!b.status.success(), "the backup succeeded without a sync");
        let err = String::from_utf8_lossy(&b.stderr);
        assert!(err.contains("cannot"), "{err}");
        let left: BTreeSet<String> = std::fs::read_dir(out.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, BTreeSet::from(["copy.db".to_string()]));
    }

    let b = Command::new(BIN)
        .args(["backup", "--to"])
        .arg(out.path().join("ch.db"))
        .args(["--store", "clickhouse://127.0.0.1:8123/anonstats"])
        .output()
        .expect("run");
    assert!(!b.status.success());
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("ALTER TABLE ... FREEZE") && err.contains("Backup and restore"),
        "{err}"
    );
    let b = Command::new(BIN)
        .args(["backup", "--to"])
        .arg(out.path().join("none.db"))
        .arg("--data-dir")
        .arg(out.path().join("nowhere"))
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&b.stderr).contains("no store at "));
    assert!(!out.path().join("none.db").exists());
}

/// The README's ClickHouse walk-through on the real 18.16 server: FREEZE every table,
/// copy the frozen parts into a new database's `detached/`, ATTACH PARTITION, and a
/// collector on the new database answers as the original does.
#[test]
fn a_clickhouse_store_is_restored_from_frozen_parts() {
    let Some(node) = common::clickhouse::env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    use common::clickhouse::{ch, unique_db};
    let (from, to) = (unique_db("bkfrom"), unique_db("bkto"));
    let store = |db: &str| format!("{}/{db}", node.replacen("http://", "clickhouse://", 1));
    let c = Collector::start_with(&["--store", &store(&from)]);
    for i in 0..40 {
        let a = post_json(&c.url("/batch/"), &batch(&c.write_token, i));
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let tables = [
        "events",
        "projects",
        "write_tokens",
        "admin_tokens",
        "checkpoints",
    ];
    let part = ch(
        &node,
        &format!(
            "SELECT path FROM system.parts WHERE database = '{from}' AND table = 'events' AND active LIMIT 1"
        ),
    );
    let data_path = part
        .split(&format!("data/{from}/"))
        .next()
        .expect("data path")
        .to_string();
    if !require(
        Path::new(&data_path).join("shadow").is_dir() || Path::new(&data_path).is_dir(),
        "ClickHouse's data path on this machine",
    ) {
        return;
    }
    // Each table: its CREATE statement and a FREEZE; then the table made anew in the new
    // database and the frozen parts from shadow/N attached to it.
    ch(&node, &format!("CREATE DATABASE {to}"));
    for table in tables {
        let create = ch(
            &node,
            &format!("SHOW CREATE TABLE {from}.{table} FORMAT TSVRaw"),
        );
        ch(
            &node,
            &create.replacen(&format!("{from}.{table}"), &format!("{to}.{table}"), 1),
        );
        ch(&node, &format!("ALTER TABLE {from}.{table} FREEZE"));
        // The parts, under whichever shadow/N this FREEZE made (none for an empty table).
        let shadow = std::fs::read_dir(format!("{data_path}shadow")).expect("shadow");
        let frozen: Vec<_> = shadow
            .flatten()
            .map(|n| n.path().join(format!("data/{from}/{table}")))
            .filter(|p| p.is_dir())
            .collect();
        let detached = format!("{data_path}data/{to}/{table}/detached");
        for dir in &frozen {
            for entry in std::fs::read_dir(dir).expect("frozen parts") {
                let status = Command::new("cp")
                    .args(["-a"])
                    .arg(entry.expect("part").path())
                    .arg(&detached)
                    .status()
                    .expect("cp");
                assert!(status.success());
            }
            // shadow/N/data/DB/TABLE: remove what this FREEZE made, up to shadow/N.
            let _ = std::fs::remove_dir_all(dir);
            for up in dir.ancestors().skip(1).take(3) {
                let _ = std::fs::remove_dir(up);
            }
        }
        let owner = format!("--reference={data_path}data/{to}/{table}");
        let status = Command::new("chown")
            .args(["-R", &owner, &detached])
            .status()
            .expect("chown");
        assert!(status.success());
        let partitions = ch(
            &node,
            &format!(
                "SELECT DISTINCT partition FROM system.parts WHERE database = '{from}' AND table = '{table}' AND active"
            ),
        );
        for p in partitions.lines().filter(|l| !l.is_empty()) {
            ch(
                &node,
                &format!("ALTER TABLE {to}.{table} ATTACH PARTITION {p}"),
            );
        }
    }
    let mut copy = Collector::start_with(&["--store", &store(&to)]);
    copy.admin_token = c.admin_token.clone();
    let events = |db: &str| {
        format!(
            "SELECT toString(uuid) AS u, event, distinct_id, ts_ms, received_ms, properties FROM {db}.events FINAL ORDER BY u"
        )
    };
    let original = common::admin_sql(&c, &events(&from));
    assert_eq!(original.len(), 40 * PER_BATCH);
    assert_eq!(original, common::admin_sql(&copy, &events(&to)));
    assert_eq!(insights(&c, 40), insights(&copy, 40));
    // The restored store takes events with the original's write token.
    let a = post_json(&copy.url("/batch/"), &batch(&c.write_token, 5000));
    assert_eq!(a.status, 200, "{}", a.body);
    drop((c, copy));
    ch(&node, &format!("DROP DATABASE IF EXISTS {from}"));
    ch(&node, &format!("DROP DATABASE IF EXISTS {to}"));
}
