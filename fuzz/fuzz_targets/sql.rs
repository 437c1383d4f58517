//! The read-only SQL endpoint's guards (SQLite): whatever the query, the store is left as
//! it was (no commit seen by another connection, no file created or grown in the data
//! dir, the rows still there), an answer has at most the row cap, and a refusal is the
//! caller's error (400), never the store's.
#![no_main]

use anonstats_server::insights::{InsightStore, SqlLimits};
use anonstats_server::store::sqlite::SqliteStore;
use anonstats_server::store::{KeyStore, StoreError};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: SqliteStore,
    /// Another connection to the same file.
    watcher: std::sync::Mutex<rusqlite::Connection>,
}

/// What the watcher sees: SQLite's count of commits by other connections, the rows
/// kept, and the schema.
fn state(watcher: &rusqlite::Connection) -> (i64, i64, String) {
    watcher
        .query_row(
            "SELECT (SELECT data_version FROM pragma_data_version),
                    (SELECT count(*) FROM projects),
                    (SELECT group_concat(sql) FROM sqlite_schema)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("state")
}

fn files(path: &PathBuf) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(path)
        .expect("data dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            // The WAL index (-shm) is shared memory that readers may map.
            let len = if name.ends_with("-shm") {
                0
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
            (name, len)
        })
        .collect();
    out.sort();
    out
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let store = SqliteStore::open(&path).expect("open");
    store.create_project("fuzz").expect("project");
    let watcher = std::sync::Mutex::new(store.reader().expect("reader"));
    Fixture {
        _dir: dir,
        path,
        store,
        watcher,
    }
});

fn limits() -> SqlLimits {
    SqlLimits {
        max_rows: 50,
        timeout: Duration::from_secs(2),
        ..SqlLimits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let f = &*FIXTURE;
    let before = (state(&f.watcher.lock().unwrap()), files(&f.path));
    match f.store.sql(sql, limits()) {
        Ok(result) => {
            assert!(result.rows.len() <= limits().max_rows);
            assert!(result.rows.iter().all(|r| r.len() == result.columns.len()));
        }
        Err(StoreError::Invalid(detail)) => assert!(!detail.is_empty()),
        Err(e) => panic!("{sql:?} failed as the store's error: {e}"),
    }
    let after = (state(&f.watcher.lock().unwrap()), files(&f.path));
    assert_eq!(before, after, "{sql:?} changed the store");
});
