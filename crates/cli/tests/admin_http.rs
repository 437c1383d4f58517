//! The admin surface over HTTP: what a page on another (or a sibling) origin can make a
//! logged-in browser do, the session cookie's attributes, and who may read `/metrics`.

mod common;

use common::{Answer, BIN, Collector, request};
use serde_json::{Value, json};
use std::process::Command;

/// Logs in with the admin token as the dashboard does; returns the `Cookie` header value.
fn login(c: &Collector) -> (Answer, String) {
    let body = json!({"token": c.admin_token}).to_string();
    let a = request(
        "POST",
        &c.url("/api/v1/session"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "login: {}", a.body);
    let cookie = a
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    (a, cookie)
}

fn assert_415(a: &Answer, what: &str) {
    assert_eq!(a.status, 415, "{what}: {}", a.body);
    assert!(
        a.detail().contains("application/json"),
        "{what}: the detail names the Content-Type: {}",
        a.body
    );
}

/// The bodies a cross-site form or a `no-cors` fetch can send without a preflight.
const SIMPLE_TYPES: &[Option<&str>] = &[
    None,
    Some("text/plain"),
    Some("text/plain;charset=UTF-8"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=x"),
];

#[test]
fn every_admin_write_needs_a_json_content_type() {
    let c = Collector::start();
    let (_, cookie) = login(&c);
    let events = || {
        common::admin_sql(&c, "SELECT COUNT(*) FROM events")[0][0]
            .as_u64()
            .unwrap()
    };
    let ev = json!({"api_key": c.write_token, "event": "START", "distinct_id": "victim"});
    assert_eq!(common::post_json(&c.url("/e/"), &ev).status, 200);

    // Every POST, PUT, PATCH and DELETE of the admin API the OpenAPI document lists, and
    // the log-in (capture, which it lists too, takes no session).
    let doc = request("GET", &c.url("/api/v1/openapi.json"), &[], None).json();
    let mut writes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            if method != "get" {
                writes.push((method.to_uppercase(), path.replace("{id}", "victim")));
            }
        }
    }
    writes.sort();
    assert_eq!(
        writes,
        [
            ("DELETE".into(), "/api/v1/machines/victim".into()),
            ("DELETE".into(), "/api/v1/session".into()),
            ("POST".into(), "/api/v1/session".into()),
            ("POST".into(), "/api/v1/sql".into()),
        ] as [(String, String); 4]
    );
    let body_of = |path: &str| match path {
        "/api/v1/session" => json!({"token": c.admin_token}).to_string(),
        _ => json!({"sql": "SELECT 1"}).to_string(),
    };
    for (method, path) in &writes {
        for kind in SIMPLE_TYPES {
            let body = body_of(path);
            let mut headers = vec![("cookie", cookie.as_str())];
            if let Some(k) = kind {
                headers.push(("content-type", k));
            }
            let a = request(method, &c.url(path), &headers, Some(body.as_bytes()));
            assert_415(&a, &format!("{method} {path} with {kind:?}"));
            assert!(
                a.header("set-cookie").is_none(),
                "{method} {path}: no cookie"
            );
        }
    }
    // Nothing was done: the machine's event is there and the session still works.
    assert_eq!(events(), 1);
    let still = request(
        "GET",
        &c.url("/api/v1/projects"),
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!(
        still.status, 200,
        "the session is still open: {}",
        still.body
    );

    // With the right Content-Type (parameters allowed) each is done.
    let json_ct = [
        ("cookie", cookie.as_str()),
        ("content-type", "application/json; charset=utf-8"),
    ];
    let body = json!({"sql": "SELECT COUNT(*) FROM events"}).to_string();
    let a = request(
        "POST",
        &c.url("/api/v1/sql"),
        &json_ct,
        Some(body.as_bytes()),
    );
    assert_eq!(
        (a.status, a.json()["rows"].clone()),
        (200, json!([[1]])),
        "{}",
        a.body
    );
    let a = request("DELETE", &c.url("/api/v1/machines/victim"), &json_ct, None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(events(), 0);
    let a = request("DELETE", &c.url("/api/v1/session"), &json_ct, None);
    assert_eq!(a.status, 204, "{}", a.body);
    let gone = request(
        "GET",
        &c.url("/api/v1/projects"),
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!(gone.status, 401);
    // Reading stays a plain GET.
    let auth = format!("Bearer {}", c.admin_token);
    let a = request(
        "GET",
        &c.url("/api/v1/projects"),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(a.status, 200);
}

fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[test]
fn the_session_cookie_is_secure_when_the_public_url_is_https() {
    let plain = Collector::start();
    let (a, _) = login(&plain);
    let attrs = cookie_attributes(a.header("set-cookie").unwrap());
    assert!(attrs.contains(&"httponly".into()), "{attrs:?}");
    assert!(attrs.contains(&"samesite=strict".into()), "{attrs:?}");
    assert!(!attrs.contains(&"secure".into()), "plain http: {attrs:?}");
    drop(plain);

    let http = Collector::start_with(&["--public-url", "http://stats.example.org"]);
    let (a, _) = login(&http);
    let attrs = cookie_attributes(a.header("set-cookie").unwrap());
    assert!(
        !attrs.contains(&"secure".into()),
        "http public URL: {attrs:?}"
    );
    drop(http);

    // From the TOML file, as every other setting.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anonstats.toml");
    std::fs::write(&file, "public-url = \"https://stats.example.org/\"\n").unwrap();
    let https = Collector::start_with(&["--config", file.to_str().unwrap()]);
    let (a, cookie) = login(&https);
    let attrs = cookie_attributes(a.header("set-cookie").unwrap());
    assert!(
        attrs.contains(&"secure".into()),
        "https public URL: {attrs:?}"
    );
    assert!(attrs.contains(&"httponly".into()), "{attrs:?}");
    let out = request(
        "DELETE",
        &https.url("/api/v1/session"),
        &[("cookie", &cookie), ("content-type", "application/json")],
        None,
    );
    assert_eq!(out.status, 204);
    let attrs = cookie_attributes(out.header("set-cookie").unwrap());
    assert!(
        attrs.contains(&"secure".into()),
        "the expiring cookie too: {attrs:?}"
    );

    // Something that is not an http(s) URL is refused at start, saying why.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "stats.example.org",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--public-url"), "{err}");
}

fn metrics(c: &Collector, headers: &[(&str, &str)]) -> Answer {
    request("GET", &c.url("/metrics"), headers, None)
}

#[test]
fn metrics_are_for_admins_unless_made_public() {
    let c = Collector::start();
    let a = metrics(&c, &[]);
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(!a.body.contains("anonstats_"), "{}", a.body);
    let a = metrics(&c, &[("authorization", "Bearer aa_not_a_token")]);
    assert_eq!(a.status, 401, "{}", a.body);
    // A write token is public: it opens nothing here.
    let write = format!("Bearer {}", c.write_token);
    assert_eq!(metrics(&c, &[("authorization", &write)]).status, 401);

    let auth = format!("Bearer {}", c.admin_token);
    let a = metrics(&c, &[("authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("anonstats_requests_total"), "{}", a.body);
    assert!(a.header("content-type").unwrap().starts_with("text/plain"));
    let (_, cookie) = login(&c);
    assert_eq!(metrics(&c, &[("cookie", &cookie)]).status, 200);
    drop(c);

    let open = Collector::start_with(&["--metrics-public"]);
    let a = metrics(&open, &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("anonstats_requests_total"));
    let v: Value = request("GET", &open.url("/healthz"), &[], None).json();
    assert_eq!(v["status"], "ok");
}
