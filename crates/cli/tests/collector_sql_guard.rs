//! The admin SQL endpoint is read-only and bounded, through the real collector: on
//! ClickHouse no table function reaches the network or the disk and a query cannot
//! change its own limits; on SQLite no query can make the collector hold more than a
//! bounded amount of memory.
//!
//! The ClickHouse cases need ANONSTATS_TEST_CLICKHOUSE (scripts/test.sh starts the
//! server); outside CI they are skipped when it is missing, in CI they fail.

mod common;

use common::clickhouse::{ch, env_or_skip, unique_db};
use common::{Answer, Collector, request};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn sql(c: &Collector, query: &str) -> Answer {
    let auth = format!("Bearer {}", c.admin_token);
    let body = json!({ "sql": query }).to_string();
    request(
        "POST",
        &c.url("/api/v1/sql"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
}

/// The start of a long text, for messages.
fn head(s: &str) -> String {
    s.chars().take(300).collect()
}

fn refused(c: &Collector, query: &str, says: &str) {
    let a = sql(c, query);
    assert_eq!(a.status, 400, "{}: {}", head(query), head(&a.body));
    assert!(a.detail().contains(says), "{}: {}", head(query), a.detail());
}

/// A local HTTP server that counts the connections made to it (each is answered with a
/// one-line CSV, so that a query reading it would finish).
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    fn start() -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in socket.incoming() {
                let Ok(mut stream) = stream else { continue };
                // Counted before the answer, so before the query that connected can end.
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nleaked\n");
            }
        });
        Listener { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[test]
fn clickhouse_sql_reaches_no_table_function_and_cannot_change_its_limits() {
    let Some(node) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = unique_db("sqlguard");
    let store = format!("{}/{db}", node.replacen("http://", "clickhouse://", 1));
    let c = Collector::start_with(&["--store", &store]);
    let listener = Listener::start();

    let url = format!(
        "SELECT * FROM url('http://127.0.0.1:{}/x', CSV, 'a String')",
        listener.port
    );
    let a = sql(&c, &url);
    assert_eq!(
        listener.connections(),
        0,
        "url() connected out: {}",
        head(&a.body)
    );
    assert_eq!(a.status, 400, "{}", head(&a.body));
    assert!(a.detail().contains("table functions"), "{}", a.detail());

    for query in [
        "SELECT * FROM file('anonstats.csv', CSV, 'a String')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM numbers(3)",
    ] {
        refused(&c, query, "table functions");
    }
    // The limits are the collector's: a query's own SETTINGS are refused before it runs
    // (had it run, it would outlast the collector's 10 s limit).
    refused(
        &c,
        "SELECT count() FROM system.numbers WHERE sipHash64(number) = 7 SETTINGS max_execution_time = 12",
        "the query may not change settings",
    );
    refused(
        &c,
        "SELECT number FROM system.numbers LIMIT 5 SETTINGS max_result_rows = 1000000, readonly = 0",
        "the query may not change settings",
    );
    refused(
        &c,
        "SET max_memory_usage = 0",
        "the query may not change settings",
    );
    // One statement, whatever quotes it holds.
    for query in [
        "SELECT 'a'; SELECT 2",
        "SELECT ';'; DROP TABLE events",
        "SELECT \"x;\" FROM (SELECT 1 AS `x;`); SELECT 2",
        "SELECT 1 /* ; */; SELECT 2",
    ] {
        refused(&c, query, "send one statement at a time");
    }
    refused(
        &c,
        "SELECT 1 /* unclosed",
        "the query ends inside a comment",
    );
    refused(&c, "SELECT 'unclosed", "the query ends inside a quoted");
    // Reads still work, with semicolons inside quotes and comments and one at the end.
    for (query, want) in [
        ("SELECT ';' AS s", json!([[";"]])),
        (
            "SELECT 'it''s; fine' AS s -- ; trailing comment",
            json!([["it's; fine"]]),
        ),
        ("SELECT 'a\\';b' AS s;", json!([["a';b"]])),
        ("SELECT count() AS n FROM system.one;  ", json!([[1]])),
    ] {
        let a = sql(&c, query);
        assert_eq!(a.status, 200, "{query}: {}", head(&a.body));
        assert_eq!(a.json()["rows"], want, "{query}");
    }
    assert_eq!(listener.connections(), 0);
    ch(&node, &format!("DROP DATABASE IF EXISTS {db}"));
}

fn send_events(c: &Collector, n: usize) {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            json!({"event": "START", "distinct_id": format!("m{i}"),
            "properties": {"product_version": "1.0", "pad": "x".repeat(200)}})
        })
        .collect();
    let body = json!({"api_key": c.write_token, "batch": batch}).to_string();
    let a = request(
        "POST",
        &c.url("/batch/"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", head(&a.body));
}

#[test]
fn sqlite_sql_cannot_make_the_collector_hold_much_memory() {
    let c = Collector::start();
    for _ in 0..5 {
        send_events(&c, 2000);
    }
    let baseline = c.peak_rss();
    for (query, says) in [
        ("SELECT length(randomblob(2e9))", "larger than the 4 MB"),
        ("SELECT randomblob(1e9)", "larger than the 4 MB"),
        (
            "SELECT length(group_concat(properties)) FROM events, (SELECT 1 UNION ALL SELECT 2)",
            "larger than the 4 MB",
        ),
        (
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 2000) \
             SELECT length(group_concat(hex(randomblob(3000))) || group_concat(hex(randomblob(3000)))) FROM r",
            "larger than the 4 MB",
        ),
        // Wide rows: each value within the limit, the answer far past it.
        (
            "SELECT zeroblob(3e6), zeroblob(3e6), zeroblob(3e6), zeroblob(3e6) FROM events",
            "the answer is larger than",
        ),
        (
            "SELECT properties, properties, properties, properties, properties, properties, properties, properties FROM events",
            "the answer is larger than",
        ),
    ] {
        refused(&c, query, says);
    }
    // Many values held at once, each within the limit.
    let wide: Vec<String> = (0..40).map(|_| "zeroblob(3e6)".to_string()).collect();
    refused(
        &c,
        &format!("SELECT {}", wide.join(", ")),
        "too many columns",
    );
    // Aggregates, each within the value limit, that add up past the memory limit.
    let aggregates: Vec<String> = (0..30)
        .map(|i| format!("length(group_concat(hex(randomblob(200)) || '{i}'))"))
        .collect();
    refused(
        &c,
        &format!(
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 9000) SELECT {} FROM r",
            aggregates.join(" + ")
        ),
        "memory",
    );

    // `anonstats sql` has the same bounds.
    for (query, says) in [
        ("SELECT length(randomblob(5e6))", "larger than the 4 MB"),
        (
            &format!("SELECT {}", wide.join(", ")) as &str,
            "too many columns",
        ),
        (
            "SELECT properties, properties, properties, properties, properties, properties, properties, properties FROM events",
            "the answer is larger than 16 MB",
        ),
    ] {
        let out = std::process::Command::new(common::BIN)
            .args(["sql", query, "--data-dir"])
            .arg(c.data_dir())
            .output()
            .expect("run anonstats sql");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{}: {err}",
            head(query)
        );
    }

    // The collector is up, takes events, answers reads, and stayed small.
    send_events(&c, 10);
    let a = sql(&c, "SELECT count(*) FROM events");
    assert_eq!(a.status, 200, "{}", head(&a.body));
    assert_eq!(a.json()["rows"], json!([[10_010]]));
    let peak = c.peak_rss();
    eprintln!(
        "peak RSS: {} MB before the queries, {} MB after",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + (200 << 20),
        "peak RSS grew from {} MB to {} MB",
        baseline >> 20,
        peak >> 20
    );
}
