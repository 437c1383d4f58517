//! Raw data commands on the real binary: export (NDJSON, CSV, Parquet), sql, erase, gen.

mod common;

#[path = "raw_data/rows.rs"]
mod rows;

use common::{BIN, Collector, post_json, request};
use rows::{csv_rows, ndjson_rows, parquet_rows};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn run(c: &Collector, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .expect("run anonstats")
}

fn send(c: &Collector, events: Value) {
    let body = json!({"api_key": c.write_token, "batch": events});
    let answer = post_json(&c.url("/batch/"), &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn csv_and_parquet_exports_hold_the_same_events_as_ndjson() {
    let c = Collector::start();
    send(
        &c,
        json!([
            {"event": "START", "distinct_id": "m-1", "timestamp": "2024-05-01T10:00:00.123Z",
             "properties": {"product_version": "1.2.3", "note": "comma, \"quote\"\nnew line"}},
            {"event": "FATAL", "distinct_id": "m-2", "timestamp": "2024-05-02T11:30:00Z",
             "properties": {"fatal_function": "main", "fatal_line": 7, "ok": true, "ü": "ñ ✓"}},
            {"event": "EXIT", "distinct_id": "m-1", "timestamp": "2024-05-03T00:00:00Z",
             "properties": {}}
        ]),
    );
    let ndjson = ndjson_rows(&c);
    assert_eq!(ndjson.len(), 3);

    let csv = c.cli(&["export", "--format", "csv"]);
    assert_eq!(csv_rows(&csv), ndjson);

    let file = c.dir.path().join("events.parquet");
    let out = run(
        &c,
        &[
            "export",
            "--format",
            "parquet",
            "--output",
            file.to_str().expect("path"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--output leaves stdout alone");
    assert!(!c.dir.path().join("events.parquet.partial").exists());
    let (rows, groups) = parquet_rows(&file);
    assert_eq!(rows, ndjson);
    assert_eq!(groups, 1);

    // Parquet to a pipe is fine; --output works for the text formats too.
    let piped = run(&c, &["export", "--format", "parquet"]);
    assert!(piped.status.success());
    assert!(piped.stdout.starts_with(b"PAR1") && piped.stdout.ends_with(b"PAR1"));
    let csv_file = c.dir.path().join("events.csv");
    let out = run(
        &c,
        &[
            "export",
            "--format",
            "csv",
            "-o",
            csv_file.to_str().expect("path"),
        ],
    );
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&csv_file).expect("csv file"), csv);

    // Filters apply to every format alike.
    let one = c.cli(&[
        "export",
        "--format",
        "csv",
        "--from",
        "2024-05-02",
        "--to",
        "2024-05-03",
    ]);
    assert_eq!(csv_rows(&one), ndjson[1..2].to_vec());
}

fn sql_err(c: &Collector, query: &str, extra: &[&str]) -> String {
    let mut args = vec!["sql", query];
    args.extend_from_slice(extra);
    let out = run(c, &args);
    assert!(!out.status.success(), "{query:?} was not refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sql_answers_reads_and_refuses_everything_else() {
    let c = Collector::start();
    send(
        &c,
        json!([{"event": "START", "distinct_id": "a", "properties": {"product_version": "9"}},
               {"event": "START", "distinct_id": "b", "properties": {"product_version": "9"}}]),
    );
    let table = c.cli(&[
        "sql",
        "SELECT event, count(*) AS n FROM events GROUP BY event",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "event | n");
    assert_eq!(lines[2], "START | 2");
    assert_eq!(lines[3], "(1 row)");
    let j: Value = serde_json::from_str(&c.cli(&[
        "sql",
        "SELECT json_extract(properties, '$.product_version') AS v FROM events",
        "--format",
        "json",
    ]))
    .expect("json");
    assert_eq!(j["columns"], json!(["v"]));
    assert_eq!(j["rows"], json!([["9"], ["9"]]));
    assert_eq!(j["truncated"], false);
    let csv = c.cli(&[
        "sql",
        "SELECT distinct_id FROM events ORDER BY 1",
        "--format",
        "csv",
        "--max-rows",
        "1",
    ]);
    assert_eq!(csv, "distinct_id\na\n");

    let read_only = "only read-only queries";
    for (query, what) in [
        (
            "INSERT INTO meta (key, value) VALUES ('x', 1)",
            "INSERT would change stored data",
        ),
        (
            "UPDATE events SET event = 'x'",
            "UPDATE would change stored data",
        ),
        ("DELETE FROM events", "DELETE would change stored data"),
        (
            "ATTACH DATABASE 'other.db' AS other",
            "ATTACH would open or close another database file",
        ),
        (
            "PRAGMA journal_mode=delete",
            "PRAGMA journal_mode would change a setting",
        ),
        ("DROP TABLE events", "DROP would change the schema"),
        ("CREATE TABLE t (x)", "CREATE would change the schema"),
    ] {
        let err = sql_err(&c, query, &[]);
        assert!(
            err.contains(what) && err.contains(read_only),
            "{query}: {err}"
        );
    }
    let err = sql_err(&c, "SELECT 1; SELECT 2", &[]);
    assert!(err.contains("send one statement at a time"), "{err}");
    let err = sql_err(
        &c,
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
        &["--timeout-secs", "0.5"],
    );
    assert!(
        err.contains("ran longer than the 0.5 s limit and was stopped")
            && err.contains("--timeout-secs"),
        "{err}"
    );
    // Nothing was changed, and the collector still takes events.
    assert_eq!(c.export().len(), 2);
    assert!(!c.data_dir().join("other.db").exists());
    send(&c, json!([{"event": "EXIT", "distinct_id": "a"}]));
    assert_eq!(c.export().len(), 3);

    let missing = Command::new(BIN)
        .args(["sql", "SELECT 1", "--data-dir"])
        .arg(c.dir.path().join("nowhere"))
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no store at "));
    assert!(!c.dir.path().join("nowhere").exists());
}

fn active_machines(c: &Collector) -> u64 {
    let auth = format!("Bearer {}", c.admin_token);
    let a = request(
        "GET",
        &c.url("/api/v1/insights/active?interval=day"),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["machines"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn erase_removes_one_machine_from_events_and_insights() {
    let c = Collector::start();
    let events: Vec<Value> = ["keep-1", "keep-2", "gone", "gone"]
        .iter()
        .map(
            |m| json!({"event": "START", "distinct_id": m, "properties": {"product_version": "1"}}),
        )
        .collect();
    send(&c, Value::Array(events));
    assert_eq!(active_machines(&c), 3);

    let out = c.cli(&["erase", "--machine", "gone"]);
    assert!(out.contains("removed 2 events"), "{out}");
    let left: Vec<String> = c
        .export()
        .iter()
        .map(|e| e["distinct_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(left, ["keep-1", "keep-2"]);
    assert_eq!(active_machines(&c), 2);

    let again = c.cli(&["erase", "--machine", "gone", "--project", "default"]);
    assert!(again.contains("removed 0 events"), "{again}");
    let out = run(&c, &["erase", "--machine", "x", "--project", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no project named \"nope\""));
}

#[test]
fn gen_writes_n_events_over_m_machines_with_rollups() {
    let mut c = Collector::start();
    // gen writes through a writer of its own, so serve lets go of the data dir meanwhile.
    c.stop();
    // 70 000 events: more than one Parquet row group.
    let out = c.cli(&[
        "gen",
        "--events",
        "70000",
        "--machines",
        "40",
        "--days",
        "7",
        "--seed",
        "9",
    ]);
    assert!(
        out.contains("generated 70000 events over 40 machines"),
        "{out}"
    );
    assert!(out.contains("events/s"), "{out}");
    c.restart();
    let j: Value = serde_json::from_str(&c.cli(&[
        "sql",
        "SELECT count(*), count(DISTINCT distinct_id), min(ts_ms), max(ts_ms) FROM events",
        "--format",
        "json",
    ]))
    .expect("json");
    let row = &j["rows"][0];
    assert_eq!(row[0], 70_000);
    assert_eq!(row[1], 40);
    let span = row[3].as_i64().unwrap_or(0) - row[2].as_i64().unwrap_or(0);
    assert!(span > 6 * 86_400_000 && span <= 7 * 86_400_000, "{span}");
    // The rollups count exactly the stored events.
    let j: Value = serde_json::from_str(&c.cli(&[
        "sql",
        "SELECT (SELECT sum(count) FROM rollup_events), (SELECT count(*) FROM events WHERE event = 'FATAL'),
                (SELECT sum(count) FROM rollup_props WHERE prop = '$fatal_site' AND event = 'FATAL')",
        "--format",
        "json",
    ]))
    .expect("json");
    assert_eq!(j["rows"][0][0], 70_000);
    assert!(j["rows"][0][1].as_u64().unwrap_or(0) > 100);
    assert_eq!(j["rows"][0][1], j["rows"][0][2]);
    let auth = format!("Bearer {}", c.admin_token);
    let crashes = request(
        "GET",
        &c.url("/api/v1/insights/crashes?from=2000-01-01"),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(crashes.status, 200, "{}", crashes.body);
    let sites = crashes.json()["sites"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let counted: u64 = sites.iter().map(|s| s["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(
        json!(counted),
        j["rows"][0][1],
        "every FATAL is in the crash sites"
    );
    assert!(sites.len() > 1, "{}", crashes.body);

    let file = c.dir.path().join("gen.parquet");
    c.cli(&[
        "export",
        "--format",
        "parquet",
        "--output",
        file.to_str().expect("path"),
    ]);
    let (rows, groups) = parquet_rows(&file);
    assert_eq!(rows.len(), 70_000);
    assert_eq!(groups, 2);

    // Same seed and end: the same events, so a second run stores nothing new.
    let end = "2024-06-01";
    let dir = tempfile::tempdir().expect("dir");
    let generate = |d: &Path| {
        let out = Command::new(BIN)
            .args([
                "gen",
                "--events",
                "500",
                "--machines",
                "10",
                "--seed",
                "3",
                "--end",
                end,
                "--data-dir",
            ])
            .arg(d)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = generate(dir.path());
    assert!(
        first.contains("initial-tokens.txt")
            && common::initial_tokens(dir.path()).is_some_and(|(_, a)| a.starts_with("aa_")),
        "a new store gets an admin token: {first}"
    );
    assert!(generate(dir.path()).contains("500 were already stored"));

    let bad = run(&c, &["gen", "--events", "5", "--machines", "10"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("every machine sends at least one event")
    );
    // gen holds its events to the times the collector accepts.
    let before = c.export().len();
    let early = run(
        &c,
        &[
            "gen",
            "--events",
            "50",
            "--machines",
            "5",
            "--end",
            "2000-01-10",
        ],
    );
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains(
            "--end 2000-01-10 and --days 30 give events from 1999-12-11T00:00:00.000Z to \
             2000-01-10T00:00:00.000Z, outside the accepted time range, \
             2000-01-01T00:00:00.000Z to 2099-12-31T23:59:59.999Z"
        ),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    assert_eq!(c.export().len(), before, "nothing was generated");
}

/// A sender that pretty-prints its JSON over many lines still gets one whole JSON object
/// per NDJSON line in the export: properties are stored compactly.
#[test]
fn ndjson_export_is_one_object_per_line_whatever_the_senders_layout() {
    let c = Collector::start();
    let body = format!(
        "{{\n  \"api_key\": \"{}\",\n  \"batch\": [\n    {{\n      \"event\": \"START\",\n      \"distinct_id\": \"m-1\",\n      \"properties\": {{\n        \"list\": [\n          1,\n          2\n        ],\n        \"nested\": {{\n          \"a\": {{ \"b\": [ \"x  y\" ] }}\n        }},\n\t\t\"text\": \"two  spaces\"\r\n      }}\n    }}\n  ]\n}}\n",
        c.write_token
    );
    let a = request(
        "POST",
        &c.url("/batch/"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let out = run(&c, &["export", "--format", "ndjson"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one event, one line: {text}");
    let e: Value = serde_json::from_str(lines[0]).expect("the line is one JSON object");
    assert_eq!(
        e["properties"],
        json!({"list": [1, 2], "nested": {"a": {"b": ["x  y"]}}, "text": "two  spaces"})
    );
}
