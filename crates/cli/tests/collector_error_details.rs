//! Each 4xx `detail` of the collector names the field, parameter or command that fixes it;
//! these are the exact words.

mod common;

use common::{Answer, Collector, post_json, request};
use serde_json::json;

fn get(c: &Collector, path: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    request("GET", &c.url(path), &[("authorization", &auth)], None)
}

fn capture(c: &Collector, token: &str) -> Answer {
    post_json(
        &c.url("/e/"),
        &json!({"api_key": token, "event": "START", "distinct_id": "m"}),
    )
}

#[test]
fn api_refusals_name_what_fixes_them() {
    let c = Collector::start();
    let admin = c.admin_token.clone();

    let a = get(&c, "/api/v1/insights/trend", "aa_not_a_token");
    assert_eq!(a.status, 401);
    assert_eq!(
        a.detail(),
        "admin or viewer token is unknown or revoked: `anonstats keys list` on the collector \
         shows the tokens, `anonstats keys create-admin` or `create-viewer` makes one"
    );

    let a = get(&c, "/api/v1/insights/trend?project=nope", &admin);
    assert_eq!(a.status, 404);
    assert_eq!(
        a.detail(),
        "no project named \"nope\": give `project` one of \"default\" (GET /api/v1/projects \
         lists them)"
    );

    let a = get(&c, "/api/v1/insights/breakdown", &admin);
    assert_eq!(a.status, 400);
    assert_eq!(
        a.detail(),
        "`property` is required, e.g. property=product_version (GET /api/v1/properties lists \
         the properties seen)"
    );

    let a = get(&c, "/api/v1/insights/versions?interval=hour", &admin);
    assert_eq!(a.status, 400);
    assert_eq!(
        a.detail(),
        "`interval` hour is not offered for shares: use day, week or month"
    );
}

#[test]
fn unknown_routes_and_methods_say_where_the_routes_are_described() {
    let c = Collector::start();
    let a = get(&c, "/api/v1/insight/trend", &c.admin_token);
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["type"], "validation_error", "{a:?}");
    assert_eq!(
        a.detail(),
        "no route GET /api/v1/insight/trend; every route is described at /api/v1/openapi.json"
    );
    let a = request("DELETE", &c.url("/healthz"), &[], None);
    assert_eq!(a.status, 405);
    assert_eq!(
        a.detail(),
        "/healthz does not take DELETE; every route and its methods are described at \
         /api/v1/openapi.json"
    );
}

#[test]
fn capture_refusals_name_what_fixes_them() {
    let c = Collector::start();
    let a = capture(&c, "aw_not_a_token");
    assert_eq!(a.status, 401);
    assert_eq!(
        a.detail(),
        "project token is not known to this collector: send a write token of one of its \
         projects (`anonstats keys list` on the collector shows them)"
    );

    let revoked = c.cli(&["keys", "create-write-key", "default"]);
    let revoked = revoked
        .lines()
        .last()
        .expect("the token")
        .trim()
        .to_string();
    c.cli(&["keys", "revoke", &revoked]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let a = loop {
        // The collector sees key changes within a moment.
        let a = capture(&c, &revoked);
        if a.status != 200 || std::time::Instant::now() > until {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(a.status, 401);
    assert_eq!(
        a.detail(),
        "project token has been revoked: send another write token of its project \
         (`anonstats keys create-write-key PROJECT` on the collector makes one)"
    );

    let big = "x".repeat(3 << 20);
    let a = request(
        "POST",
        &c.url("/e/"),
        &[("content-type", "application/json")],
        Some(big.as_bytes()),
    );
    assert_eq!(a.status, 413);
    assert_eq!(
        a.detail(),
        "request body is larger than the 2 MB limit of this endpoint: split the events over \
         several requests, or send them gzipped"
    );
}

/// `anonstats serve ARGS` that fails at start; returns its stderr.
fn serve_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(args)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_start_failures_name_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let err = serve_fails(&["--listen", &addr]);
    assert!(
        err.ends_with(&format!(
            "anonstats: cannot listen on {addr}: Address already in use (os error 98); give \
             --listen a free HOST:PORT (port 0 picks one)\n"
        )),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let present = dir.path().join("empty.pem");
    std::fs::write(&present, "").unwrap();
    let (m, p) = (missing.to_str().unwrap(), present.to_str().unwrap());
    let err = serve_fails(&["--listen", "127.0.0.1:0", "--tls-cert", m, "--tls-key", p]);
    assert!(
        err.contains(&format!(
            "cannot serve TLS: the certificate file {m} (--tls-cert) cannot be read"
        )),
        "{err}"
    );
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let good = dir.path().join("cert.pem");
    std::fs::write(&good, cert.cert.pem()).unwrap();
    let g = good.to_str().unwrap();
    let err = serve_fails(&["--listen", "127.0.0.1:0", "--tls-cert", g, "--tls-key", m]);
    assert!(
        err.contains(&format!(
            "cannot serve TLS: the key file {m} (--tls-key) cannot be read"
        )),
        "{err}"
    );
}

#[test]
fn migrate_from_a_dir_without_a_store_names_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = dir.path().display().to_string();
    let out = std::process::Command::new(common::BIN)
        .args([
            "migrate",
            "--from",
            &from,
            "--to",
            "clickhouse://127.0.0.1:1/x",
        ])
        .output()
        .expect("run migrate");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "anonstats: no store at {from} ({from}/anonstats.db is missing); pass --from with \
             the data dir `anonstats serve` uses\n"
        )
    );
}
