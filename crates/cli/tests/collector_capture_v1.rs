//! PostHog's capture V1 against the real collector: `POST /i/v1/analytics/events` with
//! the write token as a Bearer token, bodies plain or gzip, deflate, brotli or zstd, and
//! an answer per event keyed by its uuid: `ok` (stored, now or before), `drop` (refused
//! for good, with the reason) or `retry` (not stored for a passing reason, with
//! `Retry-After`), so that a sender resends only what failed.

mod common;

use common::{Answer, Collector, admin_sql, request};
use serde_json::{Value, json};
use std::io::Write;

const V1: &str = "/i/v1/analytics/events";

fn event(uuid: &str, name: &str, machine: &str) -> Value {
    json!({"uuid": uuid, "event": name, "distinct_id": machine,
        "timestamp": "2026-01-02T03:04:05Z", "options": {}, "properties": {"k": "v"}})
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn post(c: &Collector, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    request("POST", &c.url(path), headers, Some(body))
}

/// A V1 request as an SDK sends it: Bearer token, JSON, the try's headers.
fn send(c: &Collector, token: &str, encoding: Option<&str>, body: &[u8]) -> Answer {
    let auth = format!("Bearer {token}");
    let request_id = uuid();
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("posthog-attempt", "1"),
        ("posthog-request-id", request_id.as_str()),
        ("posthog-sdk-info", "test/1.0"),
    ];
    if let Some(e) = encoding {
        headers.push(("content-encoding", e));
    }
    let a = post(c, V1, &headers, body);
    if a.status == 200 {
        assert_eq!(a.header("posthog-request-id"), Some(request_id.as_str()));
    }
    a
}

fn send_json(c: &Collector, body: &Value) -> Answer {
    send(c, &c.write_token, None, body.to_string().as_bytes())
}

/// The verdict of each uuid: (`result`, `details`).
fn results(a: &Answer) -> Vec<(String, String, Option<String>)> {
    assert_eq!(a.status, 200, "{}", a.body);
    let mut out: Vec<_> = a.json()["results"]
        .as_object()
        .unwrap_or_else(|| panic!("no results: {}", a.body))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["result"].as_str().unwrap().to_string(),
                v["details"].as_str().map(str::to_string),
            )
        })
        .collect();
    out.sort();
    out
}

/// How many stored events carry `uuid` (the store keeps uuids as bytes: read the export).
fn stored(c: &Collector, uuid: &str) -> usize {
    c.export().iter().filter(|e| e["uuid"] == uuid).count()
}

fn total(c: &Collector) -> u64 {
    admin_sql(c, "SELECT count(*) FROM events")[0][0]
        .as_u64()
        .expect("a count")
}

fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
            }
            out
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        other => panic!("no encoder for {other}"),
    }
}

#[test]
fn capture_v1_stores_events_in_every_encoding() {
    let c = Collector::start();
    for encoding in [
        None,
        Some("gzip"),
        Some("deflate"),
        Some("br"),
        Some("zstd"),
    ] {
        let ids = [uuid(), uuid()];
        let body = json!({"created_at": "2026-01-02T03:04:06Z",
            "batch": [event(&ids[0], "v1_event", "m1"), event(&ids[1], "v1_event", "m2")]})
        .to_string();
        let sent = match encoding {
            None => body.into_bytes(),
            Some(e) => compress(e, body.as_bytes()),
        };
        let a = send(&c, &c.write_token, encoding, &sent);
        let mut want: Vec<_> = ids
            .iter()
            .map(|u| (u.clone(), "ok".to_string(), None))
            .collect();
        want.sort();
        assert_eq!(results(&a), want, "{encoding:?}");
        assert!(a.header("retry-after").is_none(), "{encoding:?}");
        let exported = c.export();
        for u in &ids {
            let n = exported.iter().filter(|e| e["uuid"] == u.as_str()).count();
            assert_eq!(n, 1, "{encoding:?}: {u}");
        }
    }
    // The trailing-slash form, and the event as stored.
    let id = uuid();
    let body = json!({"batch": [event(&id, "slash", "m3")]}).to_string();
    let auth = format!("Bearer {}", c.write_token);
    let a = post(
        &c,
        &format!("{V1}/"),
        &[("authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(results(&a), [(id.clone(), "ok".into(), None)]);
    let e = c
        .export()
        .into_iter()
        .find(|e| e["uuid"] == id.as_str())
        .expect("exported");
    assert_eq!(
        (e["event"].as_str(), e["distinct_id"].as_str()),
        (Some("slash"), Some("m3"))
    );
    assert_eq!(e["properties"]["k"], "v");
    assert_eq!(total(&c), 11);

    // A body that inflates past the batch limit is refused, not inflated.
    let bomb = compress("zstd", &vec![b' '; 30 << 20]);
    let a = send(&c, &c.write_token, Some("zstd"), &bomb);
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.detail().contains("larger than"), "{}", a.body);
    let a = send(&c, &c.write_token, Some("br"), b"not brotli");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.detail().contains("not valid brotli"), "{}", a.body);
}

#[test]
fn capture_v1_needs_a_valid_bearer_token() {
    let c = Collector::start();
    let revoked = c
        .cli(&["keys", "create-write-key", "default"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    c.cli(&["keys", "revoke", &revoked]);
    let id = uuid();
    let body = json!({"batch": [event(&id, "e", "m")]}).to_string();
    let body = body.as_bytes();
    let basic = format!("Basic {}", c.write_token);
    let in_body = json!({"api_key": c.write_token, "batch": [event(&id, "e", "m")]}).to_string();
    for (what, headers, body, says) in [
        ("no Authorization", vec![], body, "no Authorization header"),
        (
            "the token in the body only",
            vec![],
            in_body.as_bytes(),
            "no Authorization header",
        ),
        (
            "another scheme",
            vec![("authorization", basic.as_str())],
            body,
            "not a Bearer token",
        ),
        (
            "an empty Bearer",
            vec![("authorization", "Bearer ")],
            body,
            "not a Bearer token",
        ),
        (
            "an unknown token",
            vec![("authorization", "Bearer phc_nope")],
            body,
            "not known",
        ),
    ] {
        let a = post(&c, V1, &headers, body);
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        assert!(a.detail().contains(says), "{what}: {}", a.body);
        assert_eq!(a.json()["type"], "authentication_error", "{what}");
    }
    let a = send(&c, &revoked, None, body);
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.detail().contains("revoked"), "{}", a.body);
    assert_eq!(stored(&c, &id), 0);
    // The scheme's case is free (RFC 6750).
    let lower = format!("bearer {}", c.write_token);
    let a = post(&c, V1, &[("authorization", &lower)], body);
    assert_eq!(results(&a), [(id.clone(), "ok".into(), None)]);
}

#[test]
fn capture_v1_answers_each_event_and_stores_only_the_good_ones() {
    let c = Collector::start();
    let (good, bad, big, twice, before) = (uuid(), uuid(), uuid(), uuid(), uuid());
    // One stored before, through the V0 endpoint.
    let a = common::post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": [event(&before, "earlier", "m")]}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let mut oversized = event(&big, "big", "m");
    oversized["properties"]["blob"] = json!("x".repeat(1_100_000));
    let batch = json!({"batch": [
        event(&good, "fine", "m"),
        json!({"uuid": bad, "distinct_id": "m"}),
        oversized,
        event(&before, "earlier", "m"),
        event(&twice, "fine", "m"),
    ]});
    let a = send_json(&c, &batch);
    let r = results(&a);
    let verdict = |u: &str| r.iter().find(|v| v.0 == u).cloned().expect(u);
    assert_eq!(verdict(&good).1, "ok");
    assert_eq!(verdict(&before).1, "ok", "a uuid already stored is ok");
    assert_eq!(verdict(&twice).1, "ok");
    let (_, result, details) = verdict(&bad);
    assert_eq!(result, "drop");
    assert!(details.unwrap().contains("missing event name"));
    let (_, result, details) = verdict(&big);
    assert_eq!(result, "drop");
    assert!(details.unwrap().contains("the limit per event"));
    assert!(a.header("retry-after").is_none());
    for (u, n) in [(&good, 1), (&bad, 0), (&big, 0), (&before, 1), (&twice, 1)] {
        assert_eq!(stored(&c, u), n, "{u}");
    }
    assert_eq!(total(&c), 3);

    // A resend of the same batch (a retry whose answer was lost) stores nothing twice.
    let again = results(&send_json(&c, &batch));
    assert_eq!(again, r);
    assert_eq!(total(&c), 3);

    // What cannot be answered per event refuses the request.
    let one = uuid();
    for (body, says) in [
        (
            json!({"batch": [event(&one, "a", "m"), event(&one, "b", "m")]}),
            "more than one event",
        ),
        (
            json!({"batch": [{"event": "a", "distinct_id": "m"}]}),
            "has no `uuid`",
        ),
        (
            json!([event(&one, "a", "m")]),
            "a capture V1 body is an object",
        ),
    ] {
        let a = send_json(&c, &body);
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(a.detail().contains(says), "{body}: {}", a.body);
    }
    // Malformed try headers and a body that is not JSON are refused before any event.
    let auth = format!("Bearer {}", c.write_token);
    let body = json!({"batch": [event(&one, "a", "m")]}).to_string();
    for (header, value, status, says) in [
        ("posthog-attempt", "0", 400, "PostHog-Attempt"),
        ("posthog-request-id", "r-1", 400, "PostHog-Request-Id"),
        (
            "posthog-request-timestamp",
            "soon",
            400,
            "PostHog-Request-Timestamp",
        ),
        ("content-type", "text/plain", 415, "application/json"),
        (
            "content-encoding",
            "lz4",
            400,
            "unsupported compression `lz4`",
        ),
    ] {
        let a = post(
            &c,
            V1,
            &[("authorization", &auth), (header, value)],
            body.as_bytes(),
        );
        assert_eq!(a.status, status, "{header}: {}", a.body);
        assert!(a.detail().contains(says), "{header}: {}", a.body);
    }
    assert_eq!(stored(&c, &one), 0);
}

#[test]
fn capture_v1_answers_retry_with_retry_after_past_a_rate_limit() {
    let c = Collector::start_with(&["--machine-events-per-minute", "3"]);
    let ids: Vec<String> = (0..3).map(|_| uuid()).collect();
    let batch = |ids: &[String]| json!({"batch": ids.iter().map(|u| event(u, "load", "busy")).collect::<Vec<_>>()});
    assert!(
        results(&send_json(&c, &batch(&ids)))
            .iter()
            .all(|v| v.1 == "ok")
    );

    // Past the limit the good events are to be resent later; the bad one never.
    let (later, bad) = (uuid(), uuid());
    let mut body = batch(std::slice::from_ref(&later));
    body["batch"]
        .as_array_mut()
        .unwrap()
        .push(json!({"uuid": bad, "event": "load"}));
    let a = send_json(&c, &body);
    let r = results(&a);
    let verdict = |u: &str| r.iter().find(|v| v.0 == u).cloned().expect(u);
    assert_eq!(
        verdict(&later),
        (later.clone(), "retry".into(), Some("rate_limited".into()))
    );
    assert_eq!(verdict(&bad).1, "drop");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", a.headers));
    assert!(retry >= 1, "Retry-After: {retry}");
    assert_eq!(stored(&c, &later), 0);
    let metrics = common::admin_metrics(&c);
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"anonstats_events_total{result="rejected",reason="rate_limited"} 1"#),
        "{metrics}"
    );
}

#[test]
fn capture_v1_answers_503_with_retry_after_when_the_collector_sheds_load() {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    // 1 MB may be in flight; a slow sender holds nearly all of it with a body it has not
    // finished, so a batch that announces its size is shed before its body is read: the
    // whole request is answered 503 with Retry-After, and the SDK resends the batch.
    let c = Collector::start_with(&["--queue-mb", "1"]);
    let batch = |ids: &[String], bad: &str| {
        let mut events: Vec<Value> = ids
            .iter()
            .map(|u| {
                let mut e = event(u, "load", "m");
                e["properties"]["pad"] = json!("p".repeat(1000));
                e
            })
            .collect();
        events.push(json!({"uuid": bad, "distinct_id": "m"}));
        json!({ "batch": events })
    };
    let fresh = || -> (Vec<String>, String) { ((0..3).map(|_| uuid()).collect(), uuid()) };
    let size = batch(&fresh().0, &uuid()).to_string().len();
    let addr = c
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let open_slow = || {
        let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            slow,
            "POST /batch/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
        )
        .unwrap();
        slow.write_all(&vec![b' '; (1 << 20) - size - 100]).unwrap();
        slow.set_nonblocking(true).unwrap();
        slow
    };
    let mut slow = open_slow();

    // Until the slow body is all read, batches are stored; then they are shed. A batch in
    // flight while the slow body arrives may get the slow sender shed instead (it has an
    // answer then): it sends again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ids, bad, a) = loop {
        let (ids, bad) = fresh();
        let a = send_json(&c, &batch(&ids, &bad));
        if a.status == 503 {
            break (ids, bad, a);
        }
        results(&a);
        assert!(Instant::now() < deadline, "never shed: {}", a.body);
        let mut answer = [0u8; 64];
        if std::io::Read::read(&mut slow, &mut answer).is_ok_and(|n| n > 0) {
            slow = open_slow();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(a.json()["code"], "overloaded", "{}", a.body);
    assert_eq!(a.header("retry-after"), Some("1"));
    for u in &ids {
        assert_eq!(stored(&c, u), 0);
    }
    // Once the slow sender is gone, the resend is stored, and the bad event dropped.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = send_json(&c, &batch(&ids, &bad));
        if a.status == 200 {
            let r = results(&a);
            assert_eq!(r.iter().filter(|v| v.1 == "ok").count(), 3, "{r:?}");
            assert_eq!(r.iter().find(|v| v.0 == bad).unwrap().1, "drop");
            break;
        }
        assert_eq!(a.status, 503, "{}", a.body);
        assert!(Instant::now() < deadline, "never stored: {}", a.body);
        std::thread::sleep(Duration::from_millis(20));
    }
    for u in &ids {
        assert_eq!(stored(&c, u), 1);
    }
}
