//! Upgrades: a store written by the previous release's schema (user_version 11, write
//! tokens stored whole, admin tokens without name or expiry) is migrated in place when
//! `serve` opens it; its events, its write token and its admin token keep working, and no
//! write token is left whole in the file.

mod common;

use common::{Collector, admin_get, contains, post_json, store_bytes};
use serde_json::json;
use std::path::Path;

/// The previous release's schema, as its migrations left an empty store.
const SCHEMA_11: &str = include_str!("fixtures/schema-11.sql");
const OLD_WRITE: &str = "aw_5f1d2c3b4a5968778695a4b3c2d1e0f1";
const OLD_ADMIN: &str = "aa_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// SHA-256 of OLD_ADMIN, as that release stored it.
const OLD_ADMIN_HASH: &str = "f8c203aa5fca80ef6bfec15c24981573fc07333115ac5f82b60b8fad649d2734";
/// 2024-05-01T00:00:00Z and the days after it.
const T0: i64 = 1_714_521_600_000;

/// A store as the previous release left it: one project, its write token, an admin token
/// and events from five machines over three days, not yet counted in the rollups.
fn old_store(data_dir: &Path) {
    std::fs::create_dir_all(data_dir).unwrap();
    let conn = rusqlite::Connection::open(data_dir.join("anonstats.db")).unwrap();
    conn.execute_batch(SCHEMA_11).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO projects (id, name, created_ms) VALUES (1, 'default', {T0});
         INSERT INTO write_tokens (token, project_id, created_ms) VALUES ('{OLD_WRITE}', 1, {T0});
         INSERT INTO admin_tokens (hash, prefix, created_ms) VALUES (x'{OLD_ADMIN_HASH}', '{}', {T0});",
        &OLD_ADMIN[..11]
    ))
    .unwrap();
    let mut insert = conn
        .prepare(
            "INSERT INTO events (project_id, uuid, event, distinct_id, ts_ms, received_ms, properties)
             VALUES (1, ?1, 'START', ?2, ?3, ?3, ?4)",
        )
        .unwrap();
    for i in 0..15u8 {
        let uuid = [i; 16].to_vec();
        let machine = format!("machine-{}", i % 5);
        let ts = T0 + i64::from(i / 5) * 86_400_000 + 3_600_000;
        insert
            .execute(rusqlite::params![
                uuid,
                machine,
                ts,
                r#"{"product_version":"1.0","host_os_name":"Debian"}"#
            ])
            .unwrap();
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 11);
    drop(insert);
    drop(conn);
    assert!(
        contains(&store_bytes(data_dir), OLD_WRITE),
        "the old store holds its write token whole"
    );
}

#[test]
fn a_store_of_the_previous_schema_is_migrated_in_place_and_keeps_working() {
    let mut c = Collector::start_prepared(&[], &[], old_store);
    assert!(
        c.write_token.is_empty() && !c.data_dir().join("initial-tokens.txt").exists(),
        "an existing store gets no new project or tokens"
    );

    // The schema is the current one, and the write token is no longer in the file.
    let conn = rusqlite::Connection::open_with_flags(
        c.data_dir().join("anonstats.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 12);
    drop(conn);
    assert!(
        !contains(&store_bytes(&c.data_dir()), OLD_WRITE),
        "the migrated store still holds the write token whole"
    );

    // The agents' token still sends, the admin token still reads.
    let sent = post_json(
        &c.url("/e/"),
        &json!({"api_key": OLD_WRITE, "event": "START", "distinct_id": "machine-9",
                "timestamp": "2024-05-03T12:00:00Z", "properties": {"product_version": "1.1"}}),
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    c.admin_token = OLD_ADMIN.to_string();
    let trend = admin_get(
        &c,
        "/api/v1/insights/trend?from=2024-05-01&to=2024-05-04&interval=day&event=START",
    );
    let counts: Vec<i64> = trend["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{trend}"))
        .iter()
        .map(|p| p[1].as_i64().or_else(|| p["count"].as_i64()).unwrap_or(-1))
        .collect();
    assert_eq!(counts, [5, 5, 6], "old events and the new one: {trend}");
    assert_eq!(c.export().len(), 16);

    // Its keys are listed as any others: by prefix, the admin token unnamed.
    let list = c.cli(&["keys", "list"]);
    assert!(
        list.contains(&OLD_WRITE[..11]) && !list.contains(OLD_WRITE),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(&OLD_ADMIN[..11]) && l.contains("expires never")),
        "{list}"
    );
}
