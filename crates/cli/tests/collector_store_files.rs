//! The embedded store's files: only their owner can read them, and a store written by a
//! newer release is refused, not opened.

mod common;

use common::{BIN, Collector};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_dir_and_every_database_file_are_the_owners_alone() {
    let mut c = Collector::start();
    let a = common::post_json(
        &c.url("/batch/"),
        &serde_json::json!({"api_key": c.write_token, "event": "e", "distinct_id": "m"}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let data = c.data_dir();
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in ["anonstats.db", "anonstats.db-wal", "anonstats.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    c.stop();
    // `gen` makes a store of its own the same way.
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("made/by/gen");
    let out = Command::new(BIN)
        .args(["gen", "--events", "10", "--machines", "2", "--data-dir"])
        .arg(&gen_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in [
        &gen_dir,
        &dir.path().join("made/by"),
        &dir.path().join("made"),
    ] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&gen_dir.join("anonstats.db")), 0o600);
}

#[test]
fn a_store_written_by_a_newer_release_is_refused_with_both_versions() {
    let mut c = Collector::start();
    c.stop();
    let db = c.data_dir().join("anonstats.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ours: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "user_version", ours + 1).unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["export", "--format", "ndjson"],
        vec!["keys", "list"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(c.data_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} opened a newer store");
        let want = format!(
            "was written by a newer anonstats (schema version {}; this one knows versions up to {ours})",
            ours + 1
        );
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the store was changed");
}
