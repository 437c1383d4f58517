//! The embedded store's schema, created or upgraded when the database is opened.

use rusqlite::Connection;

/// Each entry upgrades the schema by one version; `user_version` records how far it got.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL,
    -- NULL: default denylist; otherwise a JSON array of the allowed property names.
    allowlist   TEXT
);
CREATE TABLE write_tokens (
    token       TEXT PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE TABLE admin_tokens (
    id          INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE TABLE meta (
    key         TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('keys_generation', 0);
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL,
    uuid        BLOB NOT NULL,
    event       TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    properties  TEXT NOT NULL
);
CREATE UNIQUE INDEX events_uuid ON events (project_id, uuid);
CREATE INDEX events_time ON events (project_id, ts_ms);
"#,
    r#"
CREATE INDEX events_machine ON events (project_id, distinct_id);
CREATE INDEX events_event_time ON events (project_id, event, ts_ms);
CREATE TABLE rollup_events (
    project_id  INTEGER NOT NULL,
    event       TEXT NOT NULL,
    hour        INTEGER NOT NULL,   -- Unix hours (UTC)
    count       INTEGER NOT NULL,
    PRIMARY KEY (project_id, event, hour)
) WITHOUT ROWID;
CREATE TABLE rollup_props (
    project_id  INTEGER NOT NULL,
    prop        TEXT NOT NULL,
    day         INTEGER NOT NULL,   -- Unix days (UTC)
    event       TEXT NOT NULL,
    value       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    PRIMARY KEY (project_id, prop, day, event, value)
) WITHOUT ROWID;
CREATE INDEX rollup_props_day ON rollup_props (project_id, day);
-- Machine sets apart from the counts: a set is rewritten only when a new machine joins
-- it, while counts change with every event.
CREATE TABLE rollup_prop_machines (
    project_id  INTEGER NOT NULL,
    prop        TEXT NOT NULL,
    day         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    value       TEXT NOT NULL,
    machines    BLOB NOT NULL,      -- a machine set (see sketch.rs)
    PRIMARY KEY (project_id, prop, day, event, value)
) WITHOUT ROWID;
CREATE INDEX rollup_prop_machines_day ON rollup_prop_machines (project_id, day);
CREATE VIEW rollup_props_full AS
    SELECT * FROM rollup_props JOIN rollup_prop_machines USING (project_id, prop, day, event, value);
CREATE TABLE rollup_machines (
    project_id  INTEGER NOT NULL,
    event       TEXT NOT NULL,      -- '' = any event
    day         INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, event, day)
) WITHOUT ROWID;
"#,
    r#"
-- rollup_props merged over every event and over spans of 1 to 64 days (spans.rs).
CREATE TABLE rollup_spans (
    project_id  INTEGER NOT NULL,
    span        INTEGER NOT NULL,   -- days
    start       INTEGER NOT NULL,   -- first Unix day
    prop        TEXT NOT NULL,
    value       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    machine_count INTEGER NOT NULL,
    PRIMARY KEY (project_id, span, start, prop, value)
) WITHOUT ROWID;
-- The sets apart, so that questions about counts never read their pages.
CREATE TABLE rollup_span_machines (
    project_id  INTEGER NOT NULL,
    span        INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    prop        TEXT NOT NULL,
    value       TEXT NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, span, start, prop, value)
) WITHOUT ROWID;
-- The spans compacted so far; a span without events has no rows but may be done.
CREATE TABLE rollup_spans_done (
    project_id  INTEGER NOT NULL,
    span        INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    PRIMARY KEY (project_id, start, span)
) WITHOUT ROWID;
"#,
    // Every index on events is paid for by every insert; these two served only erasure
    // (now a scan) and raw queries that the rollups answer instead.
    r#"
DROP INDEX IF EXISTS events_machine;
DROP INDEX IF EXISTS events_event_time;
"#,
    // The sequence number up to which the rollups count events (writer.rs).
    r#"
INSERT OR IGNORE INTO meta (key, value) SELECT 'rollup_seq', COALESCE(MAX(seq), 0) FROM events;
"#,
    // The size of each row's machine set beside its counts; NULL for rows written before.
    r#"
ALTER TABLE rollup_props ADD COLUMN machine_count INTEGER;
DROP VIEW rollup_props_full;
CREATE VIEW rollup_props_full AS
    SELECT * FROM rollup_props JOIN rollup_prop_machines USING (project_id, prop, day, event, value);
"#,
    // Each day's property rows also merged over every event, as event '' (the name capture
    // refuses), so that questions about all events read one row per value and day.
    r#"
INSERT INTO rollup_props (project_id, prop, day, event, value, count, first_ms, last_ms)
    SELECT project_id, prop, day, '', value, SUM(count), MIN(first_ms), MAX(last_ms)
    FROM rollup_props WHERE event != '' GROUP BY project_id, prop, day, value;
INSERT INTO rollup_prop_machines (project_id, prop, day, event, value, machines)
    SELECT project_id, prop, day, '', value, sketch_union(machines)
    FROM rollup_prop_machines WHERE event != '' GROUP BY project_id, prop, day, value;
DELETE FROM rollup_spans;
DELETE FROM rollup_span_machines;
DELETE FROM rollup_spans_done;
"#,
    // Two properties' values at a time (pairs.rs), prop_a < prop_b; counted from the day
    // after the newest event stored before this table existed.
    r#"
CREATE TABLE rollup_pairs (
    project_id  INTEGER NOT NULL,
    prop_a      TEXT NOT NULL,
    value_a     TEXT NOT NULL,
    prop_b      TEXT NOT NULL,
    value_b     TEXT NOT NULL,
    day         INTEGER NOT NULL,
    event       TEXT NOT NULL,      -- '' = any event
    count       INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, prop_a, value_a, prop_b, value_b, day, event)
) WITHOUT ROWID;
CREATE INDEX rollup_pairs_b ON rollup_pairs (project_id, prop_a, prop_b, value_b, day);
CREATE INDEX rollup_pairs_day ON rollup_pairs (project_id, day);
INSERT OR REPLACE INTO meta (key, value)
    SELECT 'pairs_from_day', COALESCE(MAX(ts_ms) / 86400000 + 1, -1000000000) FROM events;
"#,
    // Distinct machines per hour; counted from the hour after the newest event stored
    // before this table existed.
    r#"
CREATE TABLE rollup_machine_hours (
    project_id  INTEGER NOT NULL,
    event       TEXT NOT NULL,      -- '' = any event
    hour        INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    machine_count INTEGER NOT NULL,
    PRIMARY KEY (project_id, event, hour)
) WITHOUT ROWID;
INSERT OR REPLACE INTO meta (key, value)
    SELECT 'machine_hours_from', COALESCE(MAX(ts_ms) / 3600000 + 1, -1000000000000) FROM events;
"#,
    // The pair rows keyed by day first, so that a fold writes into the few pages of its
    // days rather than into every value's range of the table, with their first and last
    // time (in rows written before, the bounds of their day). The any-event pair rows merged over spans of 2
    // to 64 days, compacted with the property spans (spans.rs); those are compacted again
    // so that both cover the same spans. The pairs added here (the kernel version's, the
    // crash site's and the error code's) are counted from the day after the newest event.
    r#"
CREATE TABLE rollup_pairs_by_day (
    project_id  INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    prop_a      TEXT NOT NULL,
    value_a     TEXT NOT NULL,
    prop_b      TEXT NOT NULL,
    value_b     TEXT NOT NULL,
    event       TEXT NOT NULL,      -- '' = any event
    count       INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, day, prop_a, value_a, prop_b, value_b, event)
) WITHOUT ROWID;
INSERT INTO rollup_pairs_by_day
    SELECT project_id, day, prop_a, value_a, prop_b, value_b, event, count,
        day * 86400000, day * 86400000 + 86399999, machines
    FROM rollup_pairs;
DROP TABLE rollup_pairs;
ALTER TABLE rollup_pairs_by_day RENAME TO rollup_pairs;
CREATE INDEX rollup_pairs_b ON rollup_pairs (project_id, day, prop_a, prop_b, value_b);
CREATE TABLE rollup_pair_spans (
    project_id  INTEGER NOT NULL,
    span        INTEGER NOT NULL,   -- days
    start       INTEGER NOT NULL,   -- first Unix day
    prop_a      TEXT NOT NULL,
    value_a     TEXT NOT NULL,
    prop_b      TEXT NOT NULL,
    value_b     TEXT NOT NULL,
    count       INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, span, start, prop_a, value_a, prop_b, value_b)
) WITHOUT ROWID;
CREATE INDEX rollup_pair_spans_b ON rollup_pair_spans (project_id, span, start, prop_a, prop_b, value_b);
DELETE FROM rollup_spans;
DELETE FROM rollup_span_machines;
DELETE FROM rollup_spans_done;
INSERT OR REPLACE INTO meta (key, value)
    SELECT 'all_pairs_from_day', COALESCE(MAX(ts_ms) / 86400000 + 1, -1000000000) FROM events;
-- The few events asked about on their own (query.rs, RARE_EVENTS).
CREATE INDEX events_rare ON events (project_id, ts_ms)
    WHERE event IN ('CLOUD_BUILD_FAIL', 'CLOUD_CONNECT_FAIL', 'CLOUD_UNAVAILABLE', 'FATAL');
"#,
    // A span's sets carry its counts too, so that a question that needs both reads one
    // table instead of walking two side by side. Spans are compacted again.
    r#"
DROP TABLE rollup_span_machines;
CREATE TABLE rollup_span_machines (
    project_id  INTEGER NOT NULL,
    span        INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    prop        TEXT NOT NULL,
    value       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    machine_count INTEGER NOT NULL,
    machines    BLOB NOT NULL,
    PRIMARY KEY (project_id, span, start, prop, value)
) WITHOUT ROWID;
DELETE FROM rollup_spans_done;
"#,
    // Write tokens kept as their SHA-256 and listed prefix, like admin tokens, so the file
    // no longer holds one that works (`token_hash` is registered by `migrate`). Admin and
    // viewer tokens get a name and an optional expiry.
    r#"
CREATE TABLE write_tokens_hashed (
    id          INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
INSERT INTO write_tokens_hashed (hash, prefix, project_id, created_ms, revoked_ms)
    SELECT token_hash(token), substr(token, 1, 11), project_id, created_ms, revoked_ms
    FROM write_tokens ORDER BY created_ms, rowid;
DROP TABLE write_tokens;
ALTER TABLE write_tokens_hashed RENAME TO write_tokens;
ALTER TABLE admin_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE admin_tokens ADD COLUMN expires_ms INTEGER;
UPDATE meta SET value = value + 1 WHERE key = 'keys_generation';
"#,
];

/// The version whose migration hashes the write tokens.
const HASHED_WRITE_TOKENS: i64 = 12;

/// Connection settings every connection uses: WAL so readers never block the writer,
/// and `synchronous = FULL` so a commit is on disk before it returns.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// The schema version this release writes.
pub fn version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The schema version the store records.
pub fn stored_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let flags = rusqlite::functions::FunctionFlags::SQLITE_UTF8
        | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("token_hash", 1, flags, |ctx| {
        Ok(crate::tokens::hash_secret(&ctx.get::<String>(0)?))
    })?;
    let before = stored_version(conn)?;
    // Deleted rows are overwritten with zeros, not only unlinked, so that no plaintext
    // write token is left in a free page of the file.
    let hashing = before < HASHED_WRITE_TOKENS && before > 0;
    if hashing {
        conn.pragma_update(None, "secure_delete", true)?;
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    if hashing {
        // The zeroed pages go from the log into the database file, and the log is emptied.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store as a release with the first `version` migrations left it.
    fn store_at(version: usize) -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        super::super::rollup::register_functions(&conn).expect("functions");
        let tx = conn.transaction().expect("transaction");
        for sql in &MIGRATIONS[..version] {
            tx.execute_batch(sql).expect("migration");
        }
        tx.pragma_update(None, "user_version", version as i64)
            .expect("version");
        tx.commit().expect("commit");
        conn
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn spans_of_a_schema_10_store_are_compacted_again_with_their_counts() {
        let mut conn = store_at(10);
        conn.execute_batch(
            "INSERT INTO rollup_span_machines (project_id, span, start, prop, value, machines)
                 VALUES (1, 2, 0, 'product_version', '1.0', x'00');
             INSERT INTO rollup_spans_done (project_id, span, start) VALUES (1, 2, 0);",
        )
        .expect("a compacted span of schema 10");
        migrate(&mut conn).expect("migrate");
        // No span counts as compacted, so reads take the day rows until the compactor
        // has written each span again, sets and counts together.
        assert_eq!(count(&conn, "rollup_spans_done"), 0);
        assert_eq!(count(&conn, "rollup_span_machines"), 0);
        conn.execute(
            "INSERT INTO rollup_span_machines
             (project_id, span, start, prop, value, count, first_ms, last_ms, machine_count, machines)
             VALUES (1, 2, 0, 'product_version', '1.0', 3, 0, 1, 1, x'00')",
            [],
        )
        .expect("a span row of schema 11");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
