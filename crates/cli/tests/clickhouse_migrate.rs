//! `anonstats migrate --from DATA_DIR --to clickhouse://...`, as real processes: an embedded
//! store filled by `anonstats gen` (plus extra keys) is copied into a fresh ClickHouse
//! database; the counts are printed and match, a collector on ClickHouse accepts the
//! migrated tokens and answers every insight as the embedded collector does, and running
//! the migration again (resumed, or from the start) copies nothing twice.
//!
//! Needs ANONSTATS_TEST_CLICKHOUSE (scripts/test.sh starts the server and sets it).
//! Outside CI a missing server skips the test (saying why); in CI it fails.

mod common;

use common::clickhouse::{ch, env_or_skip, unique_db};
use common::{BIN, request};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run anonstats")
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "anonstats {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

/// A `serve` process; its stdout is drained after the listening line.
struct Serve {
    child: Child,
    url: String,
    printed_tokens: bool,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anonstats serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut url, mut printed_tokens) = (String::new(), false);
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if line.starts_with("created project ") {
                printed_tokens = true;
            } else if let Some(u) = line.strip_prefix("listening on ") {
                url = u.to_string();
                break;
            }
        }
        assert!(!url.is_empty(), "serve {args:?} ended before listening");
        std::thread::spawn(move || for _ in lines {});
        Serve {
            child,
            url,
            printed_tokens,
        }
    }

    fn get(&self, path: &str, admin: &str) -> (u16, Value) {
        let auth = format!("Bearer {admin}");
        let a = request(
            "GET",
            &format!("{}{path}", self.url),
            &[("Authorization", &auth)],
            None,
        );
        let v = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        (a.status, v)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn migrate(from: &Path, to: &str, extra: &[&str]) -> (bool, String) {
    let from = from.to_string_lossy().into_owned();
    let out = run(&[
        &["migrate", "--quiet", "--from", &from, "--to", to][..],
        extra,
    ]
    .concat());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn events_in(url: &str, db: &str) -> u64 {
    ch(url, &format!("SELECT count() FROM {db}.events FINAL"))
        .trim()
        .parse()
        .expect("a count")
}

/// What an answer says, without the fields that name the store or how it answered.
fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["source", "accuracy", "took_ms", "store"] {
            o.remove(k);
        }
        for (_, inner) in o.iter_mut() {
            *inner = comparable(inner.take());
        }
    } else if let Some(a) = v.as_array_mut() {
        for inner in a.iter_mut() {
            *inner = comparable(inner.take());
        }
    }
    v
}

#[test]
fn migrate_copies_an_embedded_store_once_and_answers_alike() {
    let Some(url) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let url = url.trim_end_matches('/').to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data_s = data.to_string_lossy().into_owned();

    // The embedded store: generated events, the tokens gen made, and one more of each.
    let gen_out = stdout_of(&[
        "gen",
        "--data-dir",
        &data_s,
        "--events",
        "5000",
        "--machines",
        "200",
        "--seed",
        "3",
        "--end",
        "2024-03-31",
    ]);
    let gen_admin = gen_out
        .contains("initial-tokens.txt")
        .then(|| common::initial_tokens(&data).map(|(_, admin)| admin))
        .flatten();
    let admin = last_line(&stdout_of(&["keys", "--data-dir", &data_s, "create-admin"]));
    assert!(admin.starts_with("aa_"), "admin token: {admin}");
    let write = last_line(&stdout_of(&[
        "keys",
        "--data-dir",
        &data_s,
        "create-write-key",
        "default",
    ]));
    assert!(write.starts_with("aw_"), "write token: {write}");
    let second = last_line(&stdout_of(&[
        "keys",
        "--data-dir",
        &data_s,
        "create-project",
        "second",
    ]));
    assert!(second.starts_with("aw_"), "write token: {second}");

    let db = unique_db("migrate");
    let to = format!("{}/{db}", url.replacen("http://", "clickhouse://", 1));
    let (ok, out) = migrate(&data, &to, &[]);
    assert!(ok, "migrate failed:\n{out}");
    assert!(out.contains("copied 2 projects"), "{out}");
    assert!(out.contains("copied 5000 events"), "{out}");
    assert!(
        out.contains(&format!("events in {}: 5000", data.display())),
        "{out}"
    );
    assert!(out.contains(&format!("events in {to}: 5000")), "{out}");
    assert!(out.contains("the counts match"), "{out}");
    assert_eq!(events_in(&url, &db), 5000);

    // Again: resumes after the last event, copies nothing, the counts still match.
    let (ok, out) = migrate(&data, &to, &[]);
    assert!(ok, "second migrate failed:\n{out}");
    assert!(out.contains("0 of 5000 events left"), "{out}");
    assert!(out.contains("copied 0 events"), "{out}");
    assert!(out.contains("the counts match"), "{out}");
    assert_eq!(events_in(&url, &db), 5000);
    // From the start: every event is sent again and collapses onto its first copy.
    let (ok, out) = migrate(&data, &to, &["--restart", "--batch", "700"]);
    assert!(ok, "migrate --restart failed:\n{out}");
    assert!(out.contains("copied 5000 events"), "{out}");
    assert!(out.contains("the counts match"), "{out}");
    assert_eq!(events_in(&url, &db), 5000);
    assert_eq!(
        ch(
            &url,
            &format!("SELECT count() FROM {db}.projects FINAL FORMAT TSV")
        )
        .trim(),
        "2"
    );

    // Collectors on both stores; the one on ClickHouse finds the migrated keys.
    let embedded = Serve::start(&["--data-dir", &data_s]);
    let unused = dir.path().join("unused").to_string_lossy().into_owned();
    let on_ch = Serve::start(&["--data-dir", &unused, "--store", &to]);
    assert!(
        !on_ch.printed_tokens,
        "the ClickHouse collector found the migrated project and made no new tokens"
    );

    let range = "from=2024-02-25&to=2024-04-01";
    let questions = [
        format!("/api/v1/insights/trend?interval=day&{range}"),
        format!("/api/v1/insights/trend?interval=hour&{range}"),
        format!("/api/v1/insights/active?interval=day&{range}"),
        format!("/api/v1/insights/active?interval=month&{range}"),
        format!("/api/v1/insights/breakdown?property=product_version&{range}"),
        format!("/api/v1/insights/breakdown?property=host_os_name&interval=week&{range}"),
        format!(
            "/api/v1/insights/breakdown?property=host_os_name&filter=system_architecture=x86_64&{range}"
        ),
        format!("/api/v1/insights/versions?{range}"),
        format!("/api/v1/insights/systems?{range}"),
        format!("/api/v1/insights/crashes?{range}"),
        format!("/api/v1/insights/cloud?{range}"),
        format!("/api/v1/insights/trend?interval=day&project=second&{range}"),
    ];
    for q in &questions {
        let (s1, want) = embedded.get(q, &admin);
        let (s2, have) = on_ch.get(q, &admin);
        assert_eq!(s1, 200, "{q} on the embedded store: {want}");
        assert_eq!(s2, 200, "{q} on ClickHouse: {have}");
        assert_eq!(comparable(have), comparable(want), "{q}");
    }
    // Something was counted (the range holds the generated events).
    let (_, trend) = on_ch.get(&questions[0], &admin);
    let sum: u64 = trend["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sum, 5000, "{trend}");

    // Every migrated admin token works there, a wrong one doesn't.
    if let Some(a) = &gen_admin {
        assert_eq!(on_ch.get(&questions[0], a).0, 200, "gen's admin token");
    }
    assert_eq!(
        on_ch.get(&questions[0], "aa_0000000000000000").0,
        401,
        "an unknown admin token"
    );

    // The migrated write tokens are accepted, each for its own project.
    let send = |token: &str, uuid: &str| {
        let body = json!({"api_key": token, "batch": [{
            "event": "START",
            "uuid": uuid,
            "distinct_id": "migrated-check",
            "timestamp": "2024-03-30T12:00:00Z",
            "properties": {"product_version": "9.0"}
        }]})
        .to_string();
        request(
            "POST",
            &format!("{}/batch/", on_ch.url),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    let a = send(&write, "01900000-0000-7000-8000-00000000a001");
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(&second, "01900000-0000-7000-8000-00000000a002");
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(
        "aw_00000000000000000000000000000000",
        "01900000-0000-7000-8000-00000000a003",
    );
    assert_ne!(a.status, 200, "an unknown write token is refused");
    assert_eq!(events_in(&url, &db), 5002);
    let (_, second_trend) = on_ch.get(&questions[11], &admin);
    let n: u64 = second_trend["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| p["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(n, 1, "the second project's event: {second_trend}");

    drop(on_ch);
    let _ = ch(&url, &format!("DROP DATABASE IF EXISTS {db}"));
}
