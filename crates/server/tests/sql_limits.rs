//! The memory and answer caps of ad-hoc SQL hold on both stores: a query that needs
//! more memory than `max_memory`, or answers more than `max_answer`, is refused with a
//! message that says which limit it met. On ClickHouse the query also cannot lift the
//! caps with its own SETTINGS. ClickHouse needs ANONSTATS_TEST_CLICKHOUSE (skipped
//! outside CI when it is missing).

use anonstats_server::insights::{InsightStore, SqlLimits};
use anonstats_server::store::StoreError;
use anonstats_server::store::clickhouse::{ClickHouseStore, Config};
use anonstats_server::store::sqlite::SqliteStore;

fn small() -> SqlLimits {
    SqlLimits {
        max_memory: 16 << 20,
        max_answer: 1 << 20,
        ..SqlLimits::default()
    }
}

fn refusal(store: &dyn InsightStore, sql: &str, limits: SqlLimits) -> String {
    match store.sql(sql, limits) {
        Err(StoreError::Invalid(m)) => m,
        other => panic!("{sql}: not refused: {:?}", other.map(|r| r.rows.len())),
    }
}

fn clickhouse() -> Option<(String, String, ClickHouseStore)> {
    let url = match std::env::var("ANONSTATS_TEST_CLICKHOUSE") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var_os("CI").is_some() => {
            panic!("ANONSTATS_TEST_CLICKHOUSE is not set: CI must run ClickHouse")
        }
        _ => {
            eprintln!("skipped: ANONSTATS_TEST_CLICKHOUSE is not set");
            return None;
        }
    };
    let db = format!("anonstats_sqllimits_{}", std::process::id());
    let base = url.replacen("http://", "clickhouse://", 1);
    let store = ClickHouseStore::open(Config::new(&format!("{base}/{db}"))).expect("open");
    Some((url, db, store))
}

#[test]
fn clickhouse_caps_memory_and_answer_size() {
    let Some((url, db, store)) = clickhouse() else {
        return;
    };
    let m = refusal(
        &store,
        "SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 20000000)",
        small(),
    );
    assert!(m.contains("needed more than 16 MB of memory"), "{m}");
    // Within the default cap the same query answers.
    let r = store
        .sql(
            "SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 20000000)",
            SqlLimits::default(),
        )
        .expect("within the default cap");
    assert_eq!(r.rows, vec![vec![serde_json::json!(20_000_000)]]);
    let m = refusal(
        &store,
        "SELECT length(groupArray(number)) FROM (SELECT number FROM system.numbers LIMIT 20000000) SETTINGS max_memory_usage = 0",
        small(),
    );
    assert!(m.contains("may not change settings"), "{m}");
    let answer_only = SqlLimits {
        max_answer: 1 << 20,
        ..SqlLimits::default()
    };
    let m = refusal(
        &store,
        "SELECT arrayStringConcat(arrayMap(x -> 'xxxxxxxxxx', range(10000))) FROM system.numbers LIMIT 50",
        answer_only,
    );
    assert!(m.contains("the answer is larger than 1 MB"), "{m}");
    let r = store
        .sql(
            "SELECT arrayStringConcat(arrayMap(x -> 'xxxxxxxxxx', range(10000))) FROM system.numbers LIMIT 5",
            answer_only,
        )
        .expect("under the answer cap");
    assert_eq!(r.rows.len(), 5);
    store.close();
    let _ = std::process::Command::new("curl")
        .args([
            "-sf",
            "--data-binary",
            &format!("DROP DATABASE IF EXISTS {db}"),
            &url,
        ])
        .status();
}

#[test]
fn sqlite_caps_memory_and_answer_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open");
    let aggregates: Vec<String> = (0..8)
        .map(|i| format!("length(group_concat(hex(randomblob(200)) || '{i}'))"))
        .collect();
    let sql = format!(
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 9000) SELECT {} FROM r",
        aggregates.join(" + ")
    );
    let m = refusal(&store, &sql, small());
    assert!(m.contains("needed more than 16 MB of memory"), "{m}");
    // 8 x 3.6 MB fits within the default 64 MB.
    let r = store
        .sql(&sql, SqlLimits::default())
        .expect("within the cap");
    assert_eq!(r.rows.len(), 1);
    let m = refusal(
        &store,
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 50) SELECT zeroblob(100000) FROM r",
        small(),
    );
    assert!(m.contains("the answer is larger than 1 MB"), "{m}");
    let m = refusal(&store, "SELECT length(randomblob(5e6))", small());
    assert!(m.contains("larger than the 4 MB limit"), "{m}");
    store.close();
}
