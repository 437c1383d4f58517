//! Capture endpoints, body forms, compressions, errors and dedupe, against the real binary.

mod common;

use base64::Engine as _;
use common::{Collector, post_json, request};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;

const PATHS: &[&str] = &["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in pairs {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&urlencode(v));
    }
    s
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Sender<'a> {
    c: &'a Collector,
    sent: HashSet<String>,
    n: usize,
}

impl Sender<'_> {
    fn event(&mut self, how: &str) -> Value {
        self.n += 1;
        let uuid = format!("00000000-0000-4000-8000-{:012}", self.n);
        self.sent.insert(uuid.clone());
        json!({"event": "case", "distinct_id": "m1", "uuid": uuid, "properties": {"how": how}})
    }

    fn ok(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        how: &str,
    ) {
        let a = request(method, &self.c.url(path), headers, body);
        assert_eq!(a.status, 200, "{how} via {method} {path}: {}", a.body);
        assert_eq!(a.json(), json!({"status": 1}), "{how}");
    }
}

#[test]
fn every_endpoint_body_form_and_compression_is_stored() {
    let c = Collector::start();
    let mut s = Sender {
        c: &c,
        sent: HashSet::new(),
        n: 0,
    };
    let t = c.write_token.clone();
    let json_ct = [("content-type", "application/json")];
    let form_ct = [("content-type", "application/x-www-form-urlencoded")];

    for base in PATHS {
        for path in [base.to_string(), format!("{base}/")] {
            // single event with the token at the top
            let mut e = s.event("single");
            e["api_key"] = json!(t);
            s.ok(
                "POST",
                &path,
                &json_ct,
                Some(e.to_string().as_bytes()),
                "single",
            );
            // an array, the token in the properties as posthog-js puts it
            let mut a = s.event("array");
            a["properties"]["token"] = json!(t);
            let mut b = s.event("array");
            b["token"] = json!(t);
            s.ok(
                "POST",
                &path,
                &json_ct,
                Some(json!([a, b]).to_string().as_bytes()),
                "array",
            );
            // the batch envelope
            let env = json!({"api_key": t, "batch": [s.event("envelope"), s.event("envelope")]});
            s.ok(
                "POST",
                &path,
                &json_ct,
                Some(env.to_string().as_bytes()),
                "envelope",
            );
            // data= form field, plain JSON and base64
            let mut e = s.event("form-json");
            e["token"] = json!(t);
            s.ok(
                "POST",
                &path,
                &form_ct,
                Some(form(&[("data", &e.to_string())]).as_bytes()),
                "form json",
            );
            let mut e = s.event("form-base64");
            e["token"] = json!(t);
            let body = form(&[("data", &b64(e.to_string().as_bytes()))]);
            s.ok(
                "POST",
                &path,
                &form_ct,
                Some(body.as_bytes()),
                "form base64",
            );
            // GET ?data=
            let mut e = s.event("get");
            e["token"] = json!(t);
            let q = format!("{path}?data={}", urlencode(&b64(e.to_string().as_bytes())));
            s.ok("GET", &q, &[], None, "get data");
        }
    }

    let env =
        |how: &str, s: &mut Sender| json!({"api_key": t, "batch": [s.event(how)]}).to_string();
    // gzip: by query, by header, by form field name, by magic bytes alone; gzip-js.
    let body = gzip(env("gzip-query", &mut s).as_bytes());
    s.ok(
        "POST",
        "/batch/?compression=gzip",
        &[],
        Some(&body),
        "gzip query",
    );
    let body = gzip(env("gzip-js", &mut s).as_bytes());
    s.ok(
        "POST",
        "/e/?compression=gzip-js&ver=1.0",
        &[("content-type", "text/plain")],
        Some(&body),
        "gzip-js",
    );
    let body = gzip(env("gzip-header", &mut s).as_bytes());
    s.ok(
        "POST",
        "/i/v0/e/",
        &[("content-encoding", "gzip")],
        Some(&body),
        "gzip header",
    );
    let body = gzip(env("gzip-magic", &mut s).as_bytes());
    s.ok("POST", "/capture/", &[], Some(&body), "gzip magic");
    // lz64: form field data + compression field, and compression in the query.
    let packed = lz_str::compress_to_base64(&env("lz64-form", &mut s));
    let body = form(&[("data", &packed), ("compression", "lz64")]);
    s.ok("POST", "/e/", &form_ct, Some(body.as_bytes()), "lz64 form");
    let packed = lz_str::compress_to_base64(&env("lz64-query", &mut s));
    let body = form(&[("data", &packed)]);
    s.ok(
        "POST",
        "/e/?compression=lz64",
        &form_ct,
        Some(body.as_bytes()),
        "lz64 query",
    );
    // base64 named in the query (raw body) and as a form field; GET with base64 in query.
    let body = b64(env("base64-query", &mut s).as_bytes());
    s.ok(
        "POST",
        "/e/?compression=base64",
        &[("content-type", "text/plain")],
        Some(body.as_bytes()),
        "base64",
    );
    let body = form(&[
        ("data", &b64(env("base64-form", &mut s).as_bytes())),
        ("compression", "base64"),
    ]);
    s.ok(
        "POST",
        "/track",
        &form_ct,
        Some(body.as_bytes()),
        "base64 form",
    );
    let q = format!(
        "/e?compression=base64&data={}",
        urlencode(&b64(env("base64-get", &mut s).as_bytes()))
    );
    s.ok("GET", &q, &[], None, "base64 get");
    // gzip inside a form field's base64 (older clients)
    let inner = b64(&gzip(env("gzip-in-base64", &mut s).as_bytes()));
    s.ok(
        "POST",
        "/e/",
        &form_ct,
        Some(form(&[("data", &inner)]).as_bytes()),
        "gzip in base64",
    );

    let stored: HashSet<String> = c
        .export()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stored, s.sent,
        "every acknowledged event is exported exactly"
    );
    let exported = c.export();
    let one = exported
        .iter()
        .find(|e| e["properties"]["how"] == "lz64-form")
        .unwrap();
    assert_eq!(one["event"], "case");
    assert_eq!(one["distinct_id"], "m1");
    assert!(one["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(one["project"], "default");
}

#[test]
fn errors_have_status_and_exact_detail_and_store_nothing() {
    let mut c = Collector::start();
    let t = c.write_token.clone();
    let ok_event = json!({"event": "e", "distinct_id": "d", "api_key": t});
    // (path, body, headers, status, detail)
    type Case<'a> = (&'a str, Vec<u8>, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/e/", b"{\"api_key\":".to_vec(), &[], 400, "body is not valid JSON"),
        ("/e/?compression=base64", b"@@not base64@@".to_vec(), &[], 400, "base64"),
        ("/e/", vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4], &[], 400, "payload is not valid gzip"),
        ("/e/?compression=gzip", b"plain".to_vec(), &[], 400, "gzip magic bytes"),
        ("/e/?compression=lz64", b"data=%21%21%21".to_vec(), &[], 400, "lz64 payload"),
        ("/e/?compression=brotli", b"{}".to_vec(), &[], 400, "payload is not valid brotli"),
        ("/e/?compression=snappy", b"{}".to_vec(), &[], 400, "unsupported compression `snappy`"),
        ("/e/", json!({"distinct_id": "d", "api_key": t}).to_string().into_bytes(), &[], 400, "event 0: missing event name"),
        ("/e/", json!({"event": "e", "api_key": t}).to_string().into_bytes(), &[], 400, "event 0: missing distinct_id"),
        ("/e/", json!({"event": 1, "distinct_id": "d", "api_key": t}).to_string().into_bytes(), &[], 400, "`event` must be a string"),
        ("/batch/", json!({"api_key": t, "batch": [ok_event, {"event": "e", "distinct_id": "d", "properties": "x"}]}).to_string().into_bytes(), &[], 400, "event 1: `properties` must be an object"),
        ("/e/", json!({"event": "e", "distinct_id": "d", "api_key": t, "timestamp": "Tuesday"}).to_string().into_bytes(), &[], 400, "not an ISO 8601 date"),
        ("/e/", json!({"event": "e", "distinct_id": "d", "api_key": t, "uuid": "x"}).to_string().into_bytes(), &[], 400, "`uuid` is not a UUID"),
        ("/e/", json!({"event": "e", "distinct_id": "d"}).to_string().into_bytes(), &[], 401, "no project token"),
        ("/e/", json!({"event": "e", "distinct_id": "d", "api_key": "aw_nope"}).to_string().into_bytes(), &[], 401, "project token is not known"),
        ("/batch/", json!({"api_key": t, "batch": [{"event": "e", "distinct_id": "d", "token": "aw_other"}]}).to_string().into_bytes(), &[], 401, "more than one project token"),
    ];
    for (path, body, headers, status, detail) in &cases {
        let a = request("POST", &c.url(path), headers, Some(body));
        assert_eq!(
            a.status,
            *status,
            "{path} {}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            a.body
        );
        assert!(
            a.detail().contains(detail),
            "{path}: want {detail:?} in {:?}",
            a.detail()
        );
        assert!(a.json()["type"].is_string() && a.json()["code"].is_string());
    }

    // 413: a request over 2 MB, a batch over 20 MB, a gzip bomb, an event over 1 MB.
    let pad = |n: usize| json!({"event": "e", "distinct_id": "d", "api_key": t, "properties": {"p": "x".repeat(n)}});
    let a = post_json(&c.url("/e/"), &pad(2_200_000));
    assert_eq!(
        (a.status, a.detail().contains("2 MB limit")),
        (413, true),
        "{}",
        a.body
    );
    let big_batch =
        json!({"api_key": t, "batch": (0..22).map(|_| pad(990_000)).collect::<Vec<_>>()});
    let a = post_json(&c.url("/batch/"), &big_batch);
    assert_eq!(
        (a.status, a.detail().contains("20 MB limit")),
        (413, true),
        "{}",
        a.body
    );
    let bomb = gzip(&vec![b' '; 50_000_000]);
    let a = request("POST", &c.url("/e/"), &[], Some(&bomb));
    assert_eq!(
        (
            a.status,
            a.detail()
                .contains("decoded payload is larger than the 2 MB limit")
        ),
        (413, true),
        "{}",
        a.body
    );
    let a = post_json(
        &c.url("/batch/"),
        &json!({"api_key": t, "batch": [pad(10), pad(1_100_000)]}),
    );
    assert_eq!(
        (
            a.status,
            a.detail()
                .contains("event 1 is 1.0 MB; the limit per event is 1 MB")
        ),
        (413, true),
        "{}",
        a.body
    );

    // A revoked token stops working while the collector runs.
    let other = c
        .cli(&["keys", "create-project", "second"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let send = |tok: &str| {
        post_json(
            &c.url("/e/"),
            &json!({"event": "e", "distinct_id": "d", "api_key": tok}),
        )
    };
    assert_eq!(
        send(&other).status,
        200,
        "a new project's token works at once"
    );
    c.cli(&["keys", "revoke", &other]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = send(&other);
    while last.status == 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        last = send(&other);
    }
    assert_eq!(last.status, 401);
    assert!(last.detail().contains("revoked"), "{}", last.body);

    // Nothing from the rejected requests was stored: only the accepted ones.
    let accepted = c.export().len();
    let metrics = common::admin_metrics(&c);
    let stored: usize = metrics
        .lines()
        .find(|l| l.starts_with("anonstats_events_total{result=\"stored\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(accepted, stored);
    assert!(
        accepted <= 6,
        "only the probes for the revoked token were accepted, got {accepted}"
    );
    assert!(
        metrics.contains("anonstats_requests_total{result=\"rejected\",reason=\"too_large\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("anonstats_request_duration_seconds_bucket"));
    assert!(metrics.contains("anonstats_commit_batch_events_count"));
    c.stop();
}

#[test]
fn duplicates_by_uuid_are_stored_once_per_project() {
    let c = Collector::start();
    let other = c
        .cli(&["keys", "create-project", "p2"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let uuid = "11111111-2222-4333-8444-555555555555";
    let ev = |tok: &str| json!({"event": "e", "distinct_id": "d", "uuid": uuid, "api_key": tok});
    for _ in 0..3 {
        assert_eq!(post_json(&c.url("/e/"), &ev(&c.write_token)).status, 200);
    }
    // twice in one batch
    let batch =
        json!({"api_key": c.write_token, "batch": [ev(&c.write_token), ev(&c.write_token)]});
    assert_eq!(post_json(&c.url("/batch/"), &batch).status, 200);
    assert_eq!(post_json(&c.url("/e/"), &ev(&other)).status, 200);
    let all = c.export();
    assert_eq!(all.len(), 2, "{all:?}");
    // The rollups count what was stored, not what was sent.
    let t = common::admin_get(&c, "/api/v1/insights/trend?interval=month");
    let total: u64 = t["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1);
    let projects: HashSet<&str> = all.iter().map(|e| e["project"].as_str().unwrap()).collect();
    assert_eq!(projects, HashSet::from(["default", "p2"]));
    let metrics = common::admin_metrics(&c);
    assert!(
        metrics.contains("anonstats_events_total{result=\"duplicate\"} 4"),
        "{metrics}"
    );
}

#[test]
fn cors_flags_health() {
    let c = Collector::start();
    for path in ["/e/", "/batch", "/i/v0/e/"] {
        let a = request(
            "OPTIONS",
            &c.url(path),
            &[
                ("origin", "http://other.example:8080"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            None,
        );
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("http://other.example:8080")
        );
        assert!(
            a.header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST"))
        );
    }
    let a = request(
        "POST",
        &c.url("/e/"),
        &[("origin", "http://x.test")],
        Some(b"{}"),
    );
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://x.test")
    );
    for path in [
        "/decide/?v=3",
        "/flags/?v=2",
        "/decide",
        "/array/aw_x/config",
    ] {
        let a = request("POST", &c.url(path), &[], Some(b"{}"));
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["featureFlags"], json!({}));
        assert!(
            a.json()["supportedCompression"]
                .as_array()
                .unwrap()
                .contains(&json!("gzip-js"))
        );
    }
    let h = request("GET", &c.url("/healthz"), &[], None);
    assert_eq!((h.status, h.json()["status"].clone()), (200, json!("ok")));
}

/// Event times outside 2000-01-01 .. 2099-12-31 (and sums that would overflow) are
/// answered 400 naming the field, and nothing of the request is stored; the edges of the
/// range are stored exactly.
#[test]
fn times_outside_the_accepted_range_are_refused_and_the_edges_kept() {
    const RANGE: &str = "2000-01-01T00:00:00.000Z to 2099-12-31T23:59:59.999Z";
    let c = Collector::start();
    let t = c.write_token.clone();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let ev = |extra: Value| {
        let mut e = json!({"event": "e", "distinct_id": "d", "api_key": t});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    // A day before 2000-01-01, whatever the time now.
    let before_2000 = now_ms() - 946_684_800_000 + 86_400_000;
    // (path, body, detail)
    let cases: Vec<(&str, Value, String)> = vec![
        (
            "/e/",
            ev(json!({"offset": i64::MAX})),
            format!(
                "event 0: `offset` 9223372036854775807 puts the event outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/",
            ev(json!({"offset": i64::MIN})),
            format!(
                "event 0: `offset` -9223372036854775808 puts the event outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/",
            ev(json!({"offset": before_2000})),
            format!(
                "event 0: `offset` {before_2000} puts the event outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/",
            ev(json!({"timestamp": "1999-12-31T23:59:59.999Z"})),
            format!(
                "event 0: `timestamp` \"1999-12-31T23:59:59.999Z\" is outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/",
            ev(json!({"timestamp": "1970-01-01T00:00:00Z"})),
            format!(
                "event 0: `timestamp` \"1970-01-01T00:00:00Z\" is outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/batch/",
            json!({"api_key": t, "batch": [ev(json!({})), ev(json!({"timestamp": "2100-01-01T00:00:00.000Z"}))]}),
            format!(
                "event 1: `timestamp` \"2100-01-01T00:00:00.000Z\" is outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/?_=-9223372036854775808",
            ev(json!({"timestamp": "2024-01-01T00:00:00Z"})),
            format!(
                "event 0: `timestamp` \"2024-01-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/e/?_=9223372036854775807",
            ev(json!({"timestamp": "2024-01-01T00:00:00Z"})),
            format!(
                "event 0: `timestamp` \"2024-01-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"
            ),
        ),
        (
            "/batch/",
            json!({"api_key": t, "sent_at": "2000-01-01T00:00:00Z", "batch": [ev(json!({"timestamp": "2099-06-01T00:00:00Z"}))]}),
            format!(
                "event 0: `timestamp` \"2099-06-01T00:00:00Z\", corrected by the send time, is outside the accepted time range, {RANGE}"
            ),
        ),
    ];
    for (path, body, detail) in &cases {
        let a = request(
            "POST",
            &c.url(path),
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(a.status, 400, "{path} {body}: {}", a.body);
        assert_eq!(&a.detail(), detail, "{path} {body}");
    }
    assert_eq!(c.export(), Vec::<Value>::new(), "nothing was stored");

    // The edges themselves are stored as sent.
    let edges = ["2000-01-01T00:00:00.000Z", "2099-12-31T23:59:59.999Z"];
    let batch = json!({"api_key": t, "batch": edges.iter().map(|ts| ev(json!({"timestamp": ts}))).collect::<Vec<_>>()});
    let a = post_json(&c.url("/batch/"), &batch);
    assert_eq!(a.status, 200, "{}", a.body);
    let stored: Vec<String> = c
        .export()
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, edges);
}

/// An lz64 payload is held to the 2 MB limit in bytes of its text: three events of
/// 300 000 three-byte characters each (2.7 MB in all, but only 0.9 million UTF-16 units)
/// are refused.
#[test]
fn lz64_payloads_are_limited_in_bytes_not_utf16_units() {
    let c = Collector::start();
    let ev = json!({"event": "e", "distinct_id": "d", "properties": {"p": "€".repeat(300_000)}});
    let payload = json!({"api_key": c.write_token, "batch": [ev, ev, ev]}).to_string();
    assert!(payload.len() > 2 * 1024 * 1024 && payload.encode_utf16().count() < 1024 * 1024);
    let body = form(&[("data", &lz_str::compress_to_base64(&payload))]);
    let a = request(
        "POST",
        &c.url("/e/?compression=lz64"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.detail(), "decoded payload is larger than the 2 MB limit");
    assert_eq!(c.export(), Vec::<Value>::new());
}
