//! The embedded store's writer numbers events itself; rows that reached the file some
//! other way must never make it drop an event it then acknowledges.

mod conformance;

use anonstats_server::metrics::Metrics;
use anonstats_server::store::EventStore;
use anonstats_server::store::sqlite::{DB_FILE, SqliteStore};
use conformance::{T0, event};
use serde_json::json;
use std::sync::Arc;

#[test]
fn rows_stored_by_another_connection_never_swallow_new_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open");
    store
        .start_writer(Arc::new(Metrics::default()), 64)
        .expect("writer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let first = (0..3)
        .map(|n| event(1, n, "START", "a", T0, json!({})))
        .collect();
    assert_eq!(rt.block_on(store.insert(first)).expect("insert").stored, 3);

    // Another connection stores rows past the writer's last number.
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("second connection");
    other
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    for seq in 4..=8 {
        other
            .execute(
                "INSERT INTO events (seq, project_id, uuid, event, distinct_id, ts_ms, received_ms, properties)
                 VALUES (?1, 1, randomblob(16), 'OTHER', 'b', ?2, ?2, '{}')",
                rusqlite::params![seq, T0],
            )
            .expect("insert beside the writer");
    }

    let next = (100..110)
        .map(|n| event(1, n, "EXIT", "a", T0, json!({})))
        .collect();
    let inserted = rt.block_on(store.insert(next)).expect("insert");
    assert_eq!((inserted.stored, inserted.duplicates), (10, 0));
    let stored: i64 = other
        .query_row(
            "SELECT COUNT(*) FROM events WHERE event = 'EXIT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 10, "an acknowledged event is missing");

    // A real duplicate is still recognised as one.
    let again = (100..102)
        .map(|n| event(1, n, "EXIT", "a", T0, json!({})))
        .collect();
    let inserted = rt.block_on(store.insert(again)).expect("insert");
    assert_eq!((inserted.stored, inserted.duplicates), (0, 2));
    store.close();
}
