//! Every route of the collector, as the route table the router is built from lists them,
//! tried with every kind of credential through the real `anonstats serve`: each answer
//! has the status this file expects, a refused request writes nothing and reads nothing,
//! and a viewer never sees a raw event. A route added to the table without an entry here
//! fails the test.

mod common;

use anonstats_server::http::table;
use common::{Answer, Collector, admin_sql, request};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Who may call a route, as this test states it (independent of the server's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Sending events: a valid write token in the request.
    Capture,
    /// Sending events with PostHog's capture V1: a valid write token as a Bearer token.
    CaptureV1,
    /// Anyone (feature flags, the dashboard's files, health, the API description).
    Anyone,
    /// The dashboard's log-in: an admin or viewer token in the body.
    LogIn,
    /// The dashboard's log-out: anyone, 204.
    LogOut,
    /// Insights and what the dashboard reads: viewers and admins.
    Viewers,
    /// Raw events, SQL, erasure, metrics: admins only; a viewer gets 403.
    Admins,
}

const CAPTURE_PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];
const FLAG_PATHS: &[&str] = &["/array/{token}/config", "/decide", "/flags"];

/// The matrix: every route and who may call it.
fn matrix() -> BTreeMap<(String, String), Rule> {
    let mut m = BTreeMap::new();
    let mut add = |method: &str, path: &str, rule| {
        assert!(
            m.insert((method.to_string(), path.to_string()), rule)
                .is_none(),
            "{method} {path} twice in the matrix"
        );
    };
    for path in CAPTURE_PATHS {
        for p in [path.to_string(), format!("{path}/")] {
            add("GET", &p, Rule::Capture);
            add("POST", &p, Rule::Capture);
        }
    }
    for p in ["/i/v1/analytics/events", "/i/v1/analytics/events/"] {
        add("POST", p, Rule::CaptureV1);
    }
    for path in FLAG_PATHS {
        let paths = if path.contains('{') {
            vec![path.to_string()]
        } else {
            vec![path.to_string(), format!("{path}/")]
        };
        for p in paths {
            add("GET", &p, Rule::Anyone);
            add("POST", &p, Rule::Anyone);
        }
    }
    for path in [
        "/",
        "/dashboard/{*path}",
        "/static/anonstats.js",
        "/static/anonstats.mjs",
        "/healthz",
        "/api/v1/openapi.json",
    ] {
        add("GET", path, Rule::Anyone);
    }
    add("POST", "/api/v1/session", Rule::LogIn);
    add("DELETE", "/api/v1/session", Rule::LogOut);
    for path in [
        "/api/v1/session",
        "/api/v1/projects",
        "/api/v1/insights/trend",
        "/api/v1/insights/breakdown",
        "/api/v1/insights/active",
        "/api/v1/insights/versions",
        "/api/v1/insights/systems",
        "/api/v1/insights/crashes",
        "/api/v1/insights/cloud",
        "/api/v1/properties",
    ] {
        add("GET", path, Rule::Viewers);
    }
    add("GET", "/metrics", Rule::Admins);
    add("GET", "/api/v1/events/recent", Rule::Admins);
    add("POST", "/api/v1/sql", Rule::Admins);
    add("DELETE", "/api/v1/machines/{id}", Rule::Admins);
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    None,
    Malformed,
    ForgedSession,
    Write,
    RevokedWrite,
    OtherProjectWrite,
    Viewer,
    Admin,
    RevokedAdmin,
    AdminSession,
    ViewerSession,
}

const CREDS: [Cred; 11] = [
    Cred::None,
    Cred::Malformed,
    Cred::ForgedSession,
    Cred::Write,
    Cred::RevokedWrite,
    Cred::OtherProjectWrite,
    Cred::Viewer,
    Cred::Admin,
    Cred::RevokedAdmin,
    Cred::AdminSession,
    Cred::ViewerSession,
];

fn expected(rule: Rule, cred: Cred) -> u16 {
    use Cred::*;
    match rule {
        Rule::Capture | Rule::CaptureV1 => match cred {
            Write | OtherProjectWrite => 200,
            _ => 401,
        },
        Rule::Anyone => 200,
        Rule::LogOut => 204,
        Rule::LogIn => match cred {
            Viewer | Admin => 200,
            // No token in the body: the request says nothing to check.
            None | ForgedSession | AdminSession | ViewerSession => 400,
            _ => 401,
        },
        Rule::Viewers => match cred {
            Viewer | Admin | AdminSession | ViewerSession => 200,
            _ => 401,
        },
        Rule::Admins => match cred {
            Admin | AdminSession => 200,
            Viewer | ViewerSession => 403,
            _ => 401,
        },
    }
}

/// What only raw data holds: a machine id and a value seen on one machine (under the
/// k-anonymity floor), so that no insight may show them.
const SECRET_MACHINE: &str = "matrix-secret-machine";
const SECRET_VALUE: &str = "matrix-rare-value";
const VICTIM: &str = "matrix-victim";

struct Tokens {
    write: String,
    revoked_write: String,
    other_write: String,
    viewer: String,
    revoked_admin: String,
}

fn last_line(out: &str) -> String {
    out.lines().last().expect("a token").trim().to_string()
}

fn send(c: &Collector, token: &str, event: Value) {
    let body = json!({"api_key": token, "batch": [event]});
    let a = common::post_json(&c.url("/batch/"), &body);
    assert_eq!(a.status, 200, "{}", a.body);
}

fn victim_events(c: &Collector) -> u64 {
    let sql = format!("SELECT count(*) FROM events WHERE distinct_id = '{VICTIM}'");
    admin_sql(c, &sql)[0][0].as_u64().expect("a count")
}

/// Logs in with `token`; returns the session's `Cookie` value.
fn session(c: &Collector, token: &str) -> String {
    let body = json!({ "token": token }).to_string();
    let a = request(
        "POST",
        &c.url("/api/v1/session"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "log-in: {}", a.body);
    a.header("set-cookie")
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request: `cred` presented as a client of that route would present it.
struct Attempt {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// The uuid of the event a capture request carries.
    uuid: Option<String>,
    /// The session a session credential opened, to check that log-out closes it.
    cookie: Option<String>,
}

fn attempt(c: &Collector, t: &Tokens, method: &str, path: &str, rule: Rule, cred: Cred) -> Attempt {
    let admin = c.admin_token.as_str();
    let token: Option<&str> = match cred {
        Cred::Malformed => Some("not-a-token"),
        Cred::Write => Some(&t.write),
        Cred::RevokedWrite => Some(&t.revoked_write),
        Cred::OtherProjectWrite => Some(&t.other_write),
        Cred::Viewer => Some(&t.viewer),
        Cred::Admin => Some(admin),
        Cred::RevokedAdmin => Some(&t.revoked_admin),
        Cred::None | Cred::ForgedSession | Cred::AdminSession | Cred::ViewerSession => None,
    };
    let cookie = match cred {
        Cred::AdminSession => Some(session(c, admin)),
        Cred::ViewerSession => Some(session(c, &t.viewer)),
        Cred::ForgedSession => Some(format!("anonstats_session={}", "ab".repeat(32))),
        _ => None,
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(v) = &cookie {
        headers.push(("cookie".into(), v.clone()));
    }
    let path = path
        .replace("{token}", &t.write)
        .replace("{*path}", "app.js")
        .replace("{id}", VICTIM);
    let query = match path.as_str() {
        "/api/v1/insights/breakdown" => "?property=build_note",
        _ => "",
    };
    let mut url = c.url(&format!("{path}{query}"));
    let mut body = None;
    let mut uuid = None;
    match rule {
        // The token travels in the request, as an SDK sends it.
        Rule::Capture => {
            let id = uuid::Uuid::new_v4().to_string();
            let mut envelope = json!({"batch": [{"event": "MATRIX", "distinct_id": "matrix-sender",
                "uuid": id, "properties": {"route": path}}]});
            if let Some(t) = token {
                envelope["api_key"] = json!(t);
            }
            let text = envelope.to_string();
            if method == "GET" {
                url = format!("{url}?data={}", percent_encode(&text));
            } else {
                headers.push(("content-type".into(), "application/json".into()));
                body = Some(text.into_bytes());
            }
            uuid = Some(id);
        }
        Rule::CaptureV1 => {
            let id = uuid::Uuid::new_v4().to_string();
            let envelope = json!({"batch": [{"event": "MATRIX", "distinct_id": "matrix-sender",
                "uuid": id, "properties": {"route": path}}]});
            if let Some(t) = token {
                headers.push(("authorization".into(), format!("Bearer {t}")));
            }
            headers.push(("content-type".into(), "application/json".into()));
            body = Some(envelope.to_string().into_bytes());
            uuid = Some(id);
        }
        Rule::LogIn => {
            headers.push(("content-type".into(), "application/json".into()));
            let b = token.map_or(json!({}), |t| json!({ "token": t }));
            body = Some(b.to_string().into_bytes());
        }
        _ => {
            if let Some(t) = token {
                headers.push(("authorization".into(), format!("Bearer {t}")));
            }
            if method != "GET" {
                headers.push(("content-type".into(), "application/json".into()));
            }
            if path == "/api/v1/sql" {
                let q = "SELECT distinct_id, properties FROM events ORDER BY seq";
                body = Some(json!({ "sql": q }).to_string().into_bytes());
            } else if method == "POST" {
                body = Some(b"{}".to_vec());
            }
        }
    }
    Attempt {
        method: method.to_string(),
        url,
        headers,
        body,
        uuid,
        cookie,
    }
}

fn send_attempt(a: &Attempt) -> Answer {
    let headers: Vec<(&str, &str)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request(&a.method, &a.url, &headers, a.body.as_deref())
}

fn reveals_raw_data(a: &Answer) -> bool {
    a.body.contains(SECRET_MACHINE) || a.body.contains(SECRET_VALUE)
}

#[test]
fn every_route_with_every_credential_gives_its_status_and_touches_nothing_it_may_not() {
    let mut c = Collector::start();
    let default_write = c.write_token.clone();
    let other_write = last_line(&c.cli(&["keys", "create-project", "other"]));
    let revoked_write = last_line(&c.cli(&["keys", "create-write-key", "default"]));
    c.cli(&["keys", "revoke", &revoked_write]);
    let viewer = last_line(&c.cli(&["keys", "create-viewer"]));
    assert!(viewer.starts_with("av_"), "{viewer}");
    let revoked_admin = last_line(&c.cli(&["keys", "create-admin"]));
    c.cli(&["keys", "revoke", &revoked_admin]);
    let t = Tokens {
        write: default_write,
        revoked_write,
        other_write,
        viewer,
        revoked_admin,
    };
    // A fresh start loads every key at once, so no revocation waits for a refresh.
    c.restart();

    // The raw data a viewer must never read, next to common values it may.
    send(
        &c,
        &t.write,
        json!({"event": "START", "distinct_id": SECRET_MACHINE, "properties": {"build_note": SECRET_VALUE}}),
    );
    for i in 0..6 {
        send(
            &c,
            &t.write,
            json!({"event": "START", "distinct_id": format!("m-{i}"), "properties": {"build_note": "common"}}),
        );
    }

    // The route table is the router's: every route in it has an entry here, and the
    // other way round.
    let matrix = matrix();
    let served: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let listed: BTreeSet<(String, String)> = matrix.keys().cloned().collect();
    let unlisted: Vec<_> = served.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "routes without a matrix entry (say who may call each): {unlisted:?}"
    );
    let gone: Vec<_> = listed.difference(&served).collect();
    assert!(gone.is_empty(), "matrix entries for no route: {gone:?}");

    let mut failures = Vec::new();
    // uuid -> the project its event must be stored under, or None: not at all.
    let mut captured: BTreeMap<String, Option<&str>> = BTreeMap::new();
    let mut tried = 0;
    for ((method, path), rule) in &matrix {
        for cred in CREDS {
            let erasing = path == "/api/v1/machines/{id}";
            if erasing && victim_events(&c) == 0 {
                send(
                    &c,
                    &t.write,
                    json!({"event": "START", "distinct_id": VICTIM}),
                );
            }
            let a = attempt(&c, &t, method, path, *rule, cred);
            let answer = send_attempt(&a);
            tried += 1;
            let want = expected(*rule, cred);
            let what = format!("{method} {path} with {cred:?}");
            if answer.status != want {
                failures.push(format!(
                    "{what}: {} (expected {want}): {}",
                    answer.status, answer.body
                ));
                continue;
            }
            let allowed = (200..300).contains(&want);
            if !allowed {
                // A refusal says why and carries nothing of the store.
                if answer.body.is_empty() || answer.json()["detail"].as_str().is_none() {
                    failures.push(format!(
                        "{what}: a refusal without a detail: {}",
                        answer.body
                    ));
                }
                if reveals_raw_data(&answer) {
                    failures.push(format!("{what}: the refusal carries raw data"));
                }
                if answer.header("set-cookie").is_some() {
                    failures.push(format!("{what}: a refusal set a cookie"));
                }
            }
            if want == 403 && !answer.detail().contains("viewer's credential") {
                failures.push(format!("{what}: 403 without saying why: {}", answer.body));
            }
            // A viewer reads no raw event, whatever the route.
            if matches!(cred, Cred::Viewer | Cred::ViewerSession) && reveals_raw_data(&answer) {
                failures.push(format!("{what}: a viewer read raw data: {}", answer.body));
            }
            if let Some(uuid) = a.uuid {
                let project = match (allowed, cred) {
                    (true, Cred::OtherProjectWrite) => Some("other"),
                    (true, _) => Some("default"),
                    (false, _) => None,
                };
                captured.insert(uuid, project);
            }
            if erasing {
                let left = victim_events(&c);
                if left != u64::from(!allowed) {
                    failures.push(format!("{what}: {left} events of the machine left"));
                }
            }
            match (*rule, allowed) {
                (Rule::LogIn, true) => {
                    let role = if cred == Cred::Viewer {
                        "viewer"
                    } else {
                        "admin"
                    };
                    if answer.json()["role"] != role || answer.header("set-cookie").is_none() {
                        failures.push(format!("{what}: not a {role}'s session: {}", answer.body));
                    }
                }
                (Rule::LogOut, _) => {
                    if let Some(cookie) = &a.cookie {
                        let after = request(
                            "GET",
                            &c.url("/api/v1/session"),
                            &[("cookie", cookie)],
                            None,
                        );
                        if cookie.contains(&"ab".repeat(32)) || after.status == 401 {
                            continue;
                        }
                        failures.push(format!("{what}: the session is still open"));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} attempts went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Admins read what viewers may not: the raw data is there to be refused.
    let auth = format!("Bearer {}", c.admin_token);
    let recent = request(
        "GET",
        &c.url("/api/v1/events/recent?limit=1000"),
        &[("authorization", &auth)],
        None,
    );
    assert!(reveals_raw_data(&recent), "{}", recent.body);

    // Every accepted event is stored once, under its token's project; no refused one is.
    let stored: Vec<Value> = c.export();
    for (uuid, project) in &captured {
        let copies: Vec<&Value> = stored.iter().filter(|e| e["uuid"] == *uuid).collect();
        match project {
            Some(p) => assert!(
                copies.len() == 1 && copies[0]["project"] == *p,
                "{uuid} must be stored once in {p}: {copies:?}"
            ),
            None => assert!(copies.is_empty(), "a refused event was stored: {copies:?}"),
        }
    }
    let accepted = captured.values().filter(|p| p.is_some()).count();
    let matrix_events = stored.iter().filter(|e| e["event"] == "MATRIX").count();
    assert_eq!(matrix_events, accepted, "only accepted events are stored");
    assert!(accepted > 0 && accepted < captured.len());
    eprintln!(
        "{tried} attempts on {} routes, {} credentials; {accepted} of {} capture attempts stored",
        matrix.len(),
        CREDS.len(),
        captured.len()
    );

    // A path outside the table is no route, whoever asks.
    for cred in [Cred::None, Cred::Admin] {
        let a = attempt(&c, &t, "GET", "/api/v1/nothing", Rule::Viewers, cred);
        assert_eq!(send_attempt(&a).status, 404, "{cred:?}");
    }
}

/// The API description lists exactly the table's `/api/v1/` routes (itself aside), and
/// says which answer 403 to a viewer.
#[test]
fn the_openapi_document_describes_the_routes_and_their_roles() {
    let c = Collector::start();
    let doc = request("GET", &c.url("/api/v1/openapi.json"), &[], None).json();
    let mut documented = BTreeMap::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let responses: BTreeSet<String> = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect();
            documented.insert((method.to_uppercase(), path.clone()), responses);
        }
    }
    let matrix = matrix();
    let api: BTreeSet<(String, String)> = matrix
        .keys()
        .filter(|(_, p)| {
            (p.starts_with("/api/v1/") && p != "/api/v1/openapi.json")
                || p == "/i/v1/analytics/events"
        })
        .cloned()
        .collect();
    let keys: BTreeSet<(String, String)> = documented.keys().cloned().collect();
    assert_eq!(keys, api, "the OpenAPI document and the route table differ");
    for (route, responses) in &documented {
        match matrix[route] {
            Rule::Admins => assert!(
                responses.contains("403") && responses.contains("401"),
                "{route:?} must document 401 and 403: {responses:?}"
            ),
            Rule::Viewers | Rule::CaptureV1 => assert!(
                responses.contains("401") && !responses.contains("403"),
                "{route:?}: {responses:?}"
            ),
            _ => {}
        }
    }
}

/// On ClickHouse too: a viewer made with `keys --store clickhouse://...` sits beside the
/// admins there, reads insights from a collector on that store, is refused raw data, and
/// is refused everything once revoked.
#[test]
fn a_viewer_on_clickhouse_reads_insights_and_is_refused_raw_data() {
    let Some(url) = common::clickhouse::env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = common::clickhouse::unique_db("viewer");
    let store = format!("clickhouse://{}/{db}", url.trim_start_matches("http://"));
    let c = Collector::start_with(&["--store", &store]);
    let keys = |args: &[&str]| c.cli(&[&["keys", "--store", &store][..], args].concat());
    let viewer = last_line(&keys(&["create-viewer"]));
    assert!(viewer.starts_with("av_"), "{viewer}");
    let hashes = common::clickhouse::ch(
        &url,
        &format!("SELECT prefix, hash FROM {db}.admin_tokens FORMAT TSV"),
    );
    assert!(hashes.contains(&viewer[..11]), "{hashes}");
    assert!(
        !hashes.contains(&viewer),
        "only the hash is stored: {hashes}"
    );
    let list = keys(&["list"]);
    let (_, viewers) = list.split_once("VIEWER TOKENS").expect(&list);
    assert!(viewers.contains(&viewer[..11]), "{list}");

    let auth = format!("Bearer {viewer}");
    let as_viewer = |method: &str, path: &str| {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let body = json!({"sql": "SELECT 1"}).to_string();
        request(method, &c.url(path), &headers, Some(body.as_bytes()))
    };
    assert_eq!(as_viewer("GET", "/api/v1/insights/trend").status, 200);
    for (method, path) in [("POST", "/api/v1/sql"), ("GET", "/api/v1/events/recent")] {
        let a = as_viewer(method, path);
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert!(a.detail().contains("viewer's credential"), "{}", a.body);
    }
    assert!(keys(&["revoke", &viewer]).contains("revoked viewer token"));
    assert_eq!(as_viewer("GET", "/api/v1/insights/trend").status, 401);
    drop(c);
    common::clickhouse::ch(&url, &format!("DROP DATABASE IF EXISTS {db}"));
}
