//! The conformance suite run once on the embedded SQLite store and once on ClickHouse
//! (`ANONSTATS_TEST_CLICKHOUSE=http://127.0.0.1:PORT`); the ClickHouse run must answer
//! exactly as SQLite does. The SQL the ClickHouse store sent is then replayed in chdb (a
//! current ClickHouse) by tests/clickhouse/chdb_replay.py, which checks every answer.

mod conformance;

use anonstats_server::metrics::Metrics;
use anonstats_server::store::clickhouse::{ClickHouseStore, Config};
use anonstats_server::store::sqlite::SqliteStore;
use conformance::{Backend, Transcript, check_known, ci_runs, conformance, edge_times, time_edges};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// How the embedded store answers in a run of the suite.
#[derive(Clone, Copy, PartialEq)]
enum Rollups {
    /// As it does by default.
    Days,
    /// With its rollups compacted after every write, so that answers come from
    /// compacted spans wherever they can.
    Compacted,
    /// Without the pair rollups and the machines per hour, so that what they would
    /// answer comes from raw events.
    RawFallbacks,
}

fn sqlite_transcript(mode: Rollups) -> Transcript {
    let compact = mode == Rollups::Compacted;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open sqlite"));
    if mode == Rollups::RawFallbacks {
        let db = rusqlite::Connection::open(dir.path().join("anonstats.db")).expect("open db");
        db.execute(
            "UPDATE meta SET value = 1000000000000
             WHERE key IN ('pairs_from_day', 'all_pairs_from_day', 'machine_hours_from')",
            [],
        )
        .expect("counted only from a time far ahead");
    }
    store
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    let compacted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let after_write: Option<Box<dyn Fn()>> = compact.then(|| {
        let (store, compacted) = (store.clone(), compacted.clone());
        Box::new(move || {
            let n = store.compact().expect("compact");
            compacted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }) as Box<dyn Fn()>
    });
    let t = conformance(&Backend {
        events: store.clone(),
        keys: store.clone(),
        insights: store.clone(),
        after_write,
    });
    store.close();
    if compact {
        assert!(
            compacted.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "nothing was compacted"
        );
    }
    t
}

/// The ClickHouse HTTP URL the tests use, or None (skip) outside CI.
pub fn clickhouse_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("{var} is not set: CI must run ClickHouse (scripts/test.sh starts it)");
            }
            eprintln!(
                "skipped: {var} is not set (run scripts/test.sh, or scripts/clickhouse.sh start chsingle 18125 19005 and set {var}=http://127.0.0.1:18125)"
            );
            None
        }
    }
}

fn unique_db(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("anonstats_{tag}_{}_{nanos}", std::process::id())
}

#[test]
fn sqlite_store_conforms() {
    let t = sqlite_transcript(Rollups::Days);
    check_known(&t);
}

fn assert_same(a: &Transcript, b: &Transcript) {
    assert_eq!(a.0.len(), b.0.len());
    for ((label, x), (_, y)) in a.0.iter().zip(&b.0) {
        assert_eq!(x, y, "{label}");
    }
}

#[test]
fn compacted_rollups_answer_as_day_rows_do() {
    assert_same(
        &sqlite_transcript(Rollups::Days),
        &sqlite_transcript(Rollups::Compacted),
    );
}

#[test]
fn pair_and_hourly_rollups_answer_as_raw_events_do() {
    assert_same(
        &sqlite_transcript(Rollups::Days),
        &sqlite_transcript(Rollups::RawFallbacks),
    );
}

#[test]
fn clickhouse_store_answers_as_sqlite_does() {
    let Some(url) = clickhouse_url("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let expected = sqlite_transcript(Rollups::Days);
    let db = unique_db("conf");
    let base = url
        .trim_end_matches('/')
        .replacen("http://", "clickhouse://", 1);
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = log_dir.path().join("sql.jsonl");
    let mut config = Config::new(&format!("{base}/{db}"));
    config.sql_log = Some(log.clone());
    let store = Arc::new(ClickHouseStore::open(config).expect("open clickhouse"));
    store
        .start_writer(Arc::new(Metrics::default()))
        .expect("writer");
    let got = conformance(&Backend {
        events: store.clone(),
        keys: store.clone(),
        insights: store.clone(),
        after_write: None,
    });
    store.close();
    let mut diffs = Vec::new();
    assert_eq!(got.0.len(), expected.0.len(), "same number of answers");
    for ((label, want), (_, have)) in expected.0.iter().zip(&got.0) {
        if want != have {
            diffs.push(format!(
                "--- {label}\nsqlite:     {want}\nclickhouse: {have}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} answers differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    drop_db(&url, &db);
    replay_in_chdb(&log);
}

fn drop_db(url: &str, db: &str) {
    let _ = ureq_post(url, &format!("DROP DATABASE IF EXISTS {db}"));
}

fn ureq_post(url: &str, sql: &str) -> Result<(), String> {
    let status = Command::new("curl")
        .args(["-sf", "--data-binary", sql, url])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{status}"))
    }
}

/// Replays every statement the store sent in chdb and compares every answer.
fn replay_in_chdb(log: &std::path::Path) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clickhouse/chdb_replay.py");
    let probe = Command::new("python3").args(["-c", "import chdb"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with chdb is required in CI (pip install -r tests/requirements.txt)");
        }
        eprintln!("chdb replay skipped: python3 cannot import chdb (pip install chdb)");
        return;
    }
    let out = Command::new("python3")
        .arg(&script)
        .arg(log)
        .output()
        .expect("run chdb_replay.py");
    assert!(
        out.status.success(),
        "chdb replay failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// The first and last milliseconds the collector accepts are stored, exported and
/// bucketed alike by both stores.
#[test]
fn edges_of_the_accepted_time_range_round_trip_on_both_stores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(SqliteStore::open(dir.path()).expect("open sqlite"));
    sqlite
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    let expected = time_edges(&Backend {
        events: sqlite.clone(),
        keys: sqlite.clone(),
        insights: sqlite.clone(),
        after_write: None,
    });
    sqlite.close();
    let exported = expected.get("export everything");
    for ts in edge_times() {
        assert!(
            exported.contains(&format!("timestamp_ms: {ts},")),
            "{ts} in {exported}"
        );
    }
    assert!(
        expected
            .get("export first week count")
            .contains("Ok(\n    2,")
    );
    assert!(
        expected
            .get("export last week count")
            .contains("Ok(\n    2,")
    );

    let Some(url) = clickhouse_url("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = unique_db("edges");
    let base = url
        .trim_end_matches('/')
        .replacen("http://", "clickhouse://", 1);
    let store = Arc::new(
        ClickHouseStore::open(Config::new(&format!("{base}/{db}"))).expect("open clickhouse"),
    );
    store
        .start_writer(Arc::new(Metrics::default()))
        .expect("writer");
    let got = time_edges(&Backend {
        events: store.clone(),
        keys: store.clone(),
        insights: store.clone(),
        after_write: None,
    });
    store.close();
    drop_db(&url, &db);
    assert_same(&expected, &got);
}

/// The numbers [`conformance::ci_runs`] must give on every store.
fn check_ci_runs(t: &Transcript) {
    let day = |n: u64| format!("{n}");
    // 13 events in real use (12 START, 1 FATAL); 6 more from CI.
    for tag in ["default", "default version"] {
        assert_eq!(t.get(&format!("{tag} trend Day")), day(13), "{tag}");
        assert_eq!(t.get(&format!("{tag} trend Hour")), day(13), "{tag}");
    }
    assert_eq!(t.get("include trend Day"), day(19));
    assert_eq!(t.get("include trend Hour"), day(19));
    // The CI runs report another version; filtered on 2.0 only its FATALs differ.
    assert_eq!(t.get("include version trend Day"), day(16));
    assert_eq!(t.get("default two trend Day"), day(0));
    let active = t.get("default active Day");
    assert!(active.contains("6,") && !active.contains("9,"), "{active}");
    assert!(
        t.get("include active Day").contains("9,"),
        "{}",
        t.get("include active Day")
    );
    let breakdown = t.get("default breakdown");
    assert!(!breakdown.contains("2.0-ci"), "{breakdown}");
    assert!(t.get("include breakdown").contains("2.0-ci"));
    let sites = t.get("default crash sites");
    assert!(
        sites.contains("1,\n        1,"),
        "one FATAL on one machine: {sites}"
    );
    let sites = t.get("include crash sites");
    assert!(
        sites.contains("4,\n        4,"),
        "four FATALs on four machines: {sites}"
    );
    assert!(!t.get("property names, CI or not").contains("is_ci"));
}

fn sqlite_ci_runs(mode: Rollups) -> Transcript {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open sqlite"));
    if mode == Rollups::RawFallbacks {
        let db = rusqlite::Connection::open(dir.path().join("anonstats.db")).expect("open db");
        db.execute(
            "UPDATE meta SET value = 1000000000000
             WHERE key IN ('pairs_from_day', 'all_pairs_from_day', 'machine_hours_from')",
            [],
        )
        .expect("counted only from a time far ahead");
    }
    store
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    let t = ci_runs(&Backend {
        events: store.clone(),
        keys: store.clone(),
        insights: store.clone(),
        after_write: None,
    });
    store.close();
    t
}

#[test]
fn ci_runs_are_left_out_by_default_and_counted_when_asked_on_both_stores() {
    let expected = sqlite_ci_runs(Rollups::Days);
    check_ci_runs(&expected);
    assert_same(&expected, &sqlite_ci_runs(Rollups::RawFallbacks));
    let Some(url) = clickhouse_url("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = unique_db("ci");
    let base = url
        .trim_end_matches('/')
        .replacen("http://", "clickhouse://", 1);
    let store = Arc::new(
        ClickHouseStore::open(Config::new(&format!("{base}/{db}"))).expect("open clickhouse"),
    );
    store
        .start_writer(Arc::new(Metrics::default()))
        .expect("writer");
    let got = ci_runs(&Backend {
        events: store.clone(),
        keys: store.clone(),
        insights: store.clone(),
        after_write: None,
    });
    store.close();
    drop_db(&url, &db);
    assert_same(&expected, &got);
}
