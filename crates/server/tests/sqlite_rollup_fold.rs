//! The embedded store folds committed events into its rollups in batches. Whatever
//! happens while events wait to be folded (erasure, retention, compaction, late events),
//! insights must still equal the same questions asked of the raw events.

mod conformance;

use anonstats_server::insights::{InsightStore, Interval, Scope, SqlLimits};
use anonstats_server::metrics::Metrics;
use anonstats_server::store::EventStore;
use anonstats_server::store::sqlite::SqliteStore;
use conformance::{DAY, T0, batches};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A store whose writer would wait an hour before folding on its own.
fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path())
        .expect("open")
        .with_fold_after(Duration::from_secs(3600));
    let store = Arc::new(store);
    store
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    (dir, store)
}

fn insert_all(store: &SqliteStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for batch in batches() {
        rt.block_on(store.insert(batch)).expect("insert");
    }
}

fn rows(store: &SqliteStore, sql: &str) -> Vec<Vec<Value>> {
    let limits = SqlLimits {
        max_rows: 10_000,
        timeout: Duration::from_secs(10),
        ..SqlLimits::default()
    };
    store.sql(sql, limits).expect("sql").rows
}

/// Trend, breakdown and active machines from the rollups against raw SQL.
fn assert_rollups_equal_events(store: &SqliteStore, when: &str) {
    let scope = Scope {
        project_id: 1,
        from_ms: T0 - 7 * DAY,
        to_ms: T0 + 14 * DAY,
        ..Default::default()
    };
    let (trend, _) = store.trend(&scope, Interval::Day).expect("trend");
    let raw = rows(
        store,
        "SELECT ts_ms / 86400000 * 86400000, COUNT(*) FROM events WHERE project_id = 1
         GROUP BY 1 ORDER BY 1",
    );
    let raw: Vec<(i64, u64)> = raw
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    assert_eq!(trend, raw, "trend {when}");

    let (mut groups, _) = store
        .breakdown(&scope, "product_version", None)
        .expect("breakdown");
    groups.sort_by(|a, b| a.value.cmp(&b.value));
    let got: Vec<(String, u64, u64)> = groups
        .into_iter()
        .map(|g| (g.value, g.count, g.machines))
        .collect();
    let raw = rows(
        store,
        "SELECT json_extract(properties, '$.product_version') AS v, COUNT(*),
                COUNT(DISTINCT distinct_id)
         FROM events WHERE project_id = 1 AND v IS NOT NULL GROUP BY v ORDER BY v",
    );
    let raw: Vec<(String, u64, u64)> = raw
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_u64().unwrap(),
                r[2].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, raw, "breakdown {when}");

    let (active, _) = store.active(&scope, Interval::Day).expect("active");
    let raw = rows(
        store,
        "SELECT ts_ms / 86400000 * 86400000, COUNT(DISTINCT distinct_id) FROM events
         WHERE project_id = 1 GROUP BY 1 ORDER BY 1",
    );
    let raw: Vec<(i64, u64)> = raw
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    assert_eq!(active, raw, "active {when}");
}

#[test]
fn erasure_while_events_wait_to_be_folded() {
    let (_dir, store) = store();
    insert_all(&store);
    let erased = store.erase_machine(1, "m-5").expect("erase");
    assert!(erased > 0);
    assert_rollups_equal_events(&store, "after erasure");
    store.close();
}

#[test]
fn retention_while_events_wait_to_be_folded() {
    let (_dir, store) = store();
    insert_all(&store);
    let purged = store.purge_before(T0 + 3 * DAY).expect("purge");
    assert!(purged > 0);
    assert_rollups_equal_events(&store, "after retention");
    store.close();
}

#[test]
fn compaction_and_late_events_while_others_wait() {
    let (_dir, store) = store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut all = batches();
    // The last batch resends to the first days; hold it back until they are compacted.
    let late = all.pop().expect("batches");
    for batch in all {
        rt.block_on(store.insert(batch)).expect("insert");
    }
    assert_rollups_equal_events(&store, "after the first fold");
    assert!(store.compact().expect("compact") > 0);
    rt.block_on(store.insert(late)).expect("insert");
    // Compaction by another connection while events wait, then a fold.
    store.compact().expect("compact");
    assert_rollups_equal_events(&store, "after late events");
    // And the same once the collector restarts and reads what is on disk.
    store.close();
    let dir = _dir;
    let again = Arc::new(SqliteStore::open(dir.path()).expect("reopen"));
    again
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    assert_rollups_equal_events(&again, "after a restart");
    again.close();
}

/// A reader that keeps an old snapshot (a long export, query or erasure plan) holds up the
/// checkpoint that makes the log start over; commits must go on meanwhile.
#[test]
fn commits_go_on_while_a_long_read_keeps_an_old_snapshot() {
    let (dir, store) = store();
    let reader = rusqlite::Connection::open(dir.path().join("anonstats.db")).expect("reader");
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("a snapshot");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let pad = "x".repeat(2000);
    let mut n = 0u128;
    // About 100 MB of log, past the size at which the checkpointer makes it start over.
    for batch in 0..50 {
        let events = (0..1000)
            .map(|i| {
                n += 1;
                let props = serde_json::json!({"pad": pad, "product_version": "1.0"});
                conformance::event(1, n, "START", &format!("m-{i}"), T0 + i * 1000, props)
            })
            .collect();
        let started = std::time::Instant::now();
        if let Err(e) = rt.block_on(store.insert(events)) {
            panic!("batch {batch} was refused: {e}");
        }
        // Not held up for as long as a connection waits on a lock (10 s).
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "batch {batch} waited {took:?}"
        );
    }
    reader.execute_batch("COMMIT").expect("commit");
    store.close();
}
