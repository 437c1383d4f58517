//! 5xx answers tell a client the class of the error and a request id, never the store's
//! detail (node addresses, ClickHouse's reply, paths); the detail goes to the collector's
//! log once, under that request id.
//!
//! The ClickHouse cases need ANONSTATS_TEST_CLICKHOUSE (scripts/test.sh starts it): the
//! collector reaches it through a proxy in the test, which then refuses connections (the
//! server is unreachable) or answers every query with a ClickHouse error of its own.

mod common;

use common::clickhouse::{ch, env_or_skip, unique_db};
use common::{Answer, Collector, request};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FORWARD: u8 = 0;
const REFUSE: u8 = 1;
const GARBAGE: u8 = 2;

/// What the proxy answers in GARBAGE mode: a ClickHouse error naming internals.
const CH_SECRET: &str = "SECRET-CH-TEXT";
const CH_REPLY: &str = "Code: 1002. DB::Exception: SECRET-CH-TEXT: table anonstats.events on \
    chnode-7.internal:9000 is broken. (UNKNOWN_EXCEPTION) (version 24.3.1.1)\n";

/// A TCP proxy in front of a ClickHouse server that can be switched to refusing every
/// connection or to answering every request with [`CH_REPLY`].
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (m, o) = (mode.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                match m.load(Ordering::SeqCst) {
                    FORWARD => {
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let mut list = o.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    GARBAGE => {
                        std::thread::spawn(move || garbage(client));
                    }
                    _ => drop(client),
                }
            }
        });
        Proxy { port, mode, open }
    }

    /// Switches mode and cuts every forwarded connection, so no kept-alive one survives.
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Reads the request's head, answers 500 with [`CH_REPLY`] and closes.
fn garbage(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(
        s,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
         X-ClickHouse-Exception-Code: 1002\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{CH_REPLY}",
        CH_REPLY.len()
    );
    let _ = s.shutdown(Shutdown::Both);
}

/// A request id as the collector must make or accept it.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Checks a 5xx answer: the class of the error, a request id in header and body, none of
/// `secrets`; returns the request id.
fn check_5xx(a: &Answer, status: u16, class: &str, secrets: &[&str], what: &str) -> String {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    let body = a.json();
    assert_eq!(body["detail"], class, "{what}: {}", a.body);
    for s in secrets {
        assert!(
            !a.body.contains(s),
            "{what}: the answer carries {s:?}: {}",
            a.body
        );
    }
    let id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no request_id: {}", a.body))
        .to_string();
    assert!(sane(&id), "{what}: {id:?}");
    assert_eq!(a.header("x-request-id"), Some(id.as_str()), "{what}");
    id
}

/// The one log line that names `id`: waits for it, and checks it is the only one.
fn logged_once(c: &Collector, id: &str, what: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&c.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
        if !lines.is_empty() || Instant::now() > until {
            assert_eq!(lines.len(), 1, "{what}: lines naming {id}: {lines:#?}");
            assert_eq!(log.matches(id).count(), 1, "{what}: {id} once in the log");
            assert!(
                lines[0].contains("ERROR"),
                "{what}: at error level: {}",
                lines[0]
            );
            return lines[0].to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn capture(c: &Collector, headers: &[(&str, &str)]) -> Answer {
    let body = json!({"api_key": c.write_token, "batch": [
        {"event": "START", "distinct_id": "m1", "properties": {"product_version": "1"}}]})
    .to_string();
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    request("POST", &c.url("/batch/"), &h, Some(body.as_bytes()))
}

#[test]
fn an_unreachable_or_failing_clickhouse_is_not_described_to_clients() {
    let Some(node) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let proxy = Proxy::start(&node);
    let db = unique_db("errors");
    let store = format!("clickhouse://127.0.0.1:{}/{db}", proxy.port);
    let c = Collector::start_with(&["--store", &store]);
    let port = proxy.port.to_string();
    let auth = format!("Bearer {}", c.admin_token);
    let secrets = [
        port.as_str(),
        "127.0.0.1",
        "ClickHouse",
        "clickhouse",
        "refused",
        "reached",
        CH_SECRET,
        "DB::Exception",
        "chnode-7",
    ];
    // While ClickHouse answers: acknowledged, with a request id too.
    let ok = capture(&c, &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.header("x-request-id").is_some_and(sane));

    // Unreachable.
    proxy.set(REFUSE);
    let a = capture(&c, &[]);
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "capture",
    );
    assert!(a.header("retry-after").is_some());
    let line = logged_once(&c, &id, "capture");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "the detail: {line}"
    );
    assert!(
        line.contains("route=/batch/") && line.contains("status=503"),
        "{line}"
    );
    assert_eq!(
        line.matches("storage is unavailable").count(),
        1,
        "said once: {line}"
    );

    // A sane request id of the sender's is kept; anything else is replaced.
    let a = request(
        "GET",
        &c.url("/healthz"),
        &[("x-request-id", "probe-7.a_b:c")],
        None,
    );
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "healthz",
    );
    assert_eq!(id, "probe-7.a_b:c");
    assert_eq!(a.json()["status"], "error");
    let line = logged_once(&c, &id, "healthz");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "the detail: {line}"
    );
    let long = "x".repeat(300);
    for bad in ["two words", "a\"quote", long.as_str()] {
        let a = capture(&c, &[("x-request-id", bad)]);
        let id = check_5xx(
            &a,
            503,
            "storage is unavailable; retry later",
            &secrets,
            bad,
        );
        assert_ne!(id, bad);
        logged_once(&c, &id, bad);
    }
    let a = request(
        "GET",
        &c.url("/api/v1/projects"),
        &[("authorization", &auth)],
        None,
    );
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "admin",
    );
    logged_once(&c, &id, "admin");

    // ClickHouse answers with an error of its own.
    proxy.set(GARBAGE);
    let a = request(
        "GET",
        &c.url("/api/v1/insights/trend"),
        &[("authorization", &auth)],
        None,
    );
    let id = check_5xx(
        &a,
        500,
        "internal error",
        &secrets,
        "admin, ClickHouse error",
    );
    assert!(a.header("retry-after").is_none());
    let line = logged_once(&c, &id, "admin, ClickHouse error");
    assert!(line.contains(CH_SECRET), "the detail: {line}");
    let a = capture(&c, &[]);
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "capture, ClickHouse error",
    );
    let line = logged_once(&c, &id, "capture, ClickHouse error");
    assert!(line.contains(CH_SECRET), "the detail: {line}");
    assert_eq!(
        line.matches("storage is unavailable").count(),
        1,
        "said once: {line}"
    );
    let a = request("GET", &c.url("/healthz"), &[], None);
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "healthz, ClickHouse error",
    );
    logged_once(&c, &id, "healthz, ClickHouse error");

    // 4xx answers still say what the sender got wrong.
    let bad = request(
        "POST",
        &c.url("/batch/"),
        &[("content-type", "application/json")],
        Some(br#"{"api_key": "aw_unknown", "batch": [{"event": "e", "distinct_id": "d"}]}"#),
    );
    assert_eq!(bad.status, 401);
    assert!(bad.detail().contains("not known"), "{}", bad.body);

    // Back to normal.
    proxy.set(FORWARD);
    let until = Instant::now() + Duration::from_secs(10);
    while capture(&c, &[]).status != 200 {
        assert!(Instant::now() < until, "capture recovers");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(c);
    ch(&node, &format!("DROP DATABASE IF EXISTS {db}"));
}

/// The embedded store: every fdatasync fails (injected with strace), so no commit can be
/// made durable and capture answers 503; the detail (the I/O error) is in the log only.
#[test]
fn a_failing_disk_is_not_described_to_clients() {
    if !common::require(std::path::Path::new("/usr/bin/strace").exists(), "strace") {
        return;
    }
    let c = Collector::start_with_fdatasync_fault("error=EIO", &[]);
    let data = c.data_dir().display().to_string();
    let secrets = [data.as_str(), "Input/output", "os error", "durable", "sync"];
    let a = capture(&c, &[]);
    let id = check_5xx(
        &a,
        503,
        "storage is unavailable; retry later",
        &secrets,
        "capture",
    );
    let line = logged_once(&c, &id, "capture");
    assert!(line.contains("Input/output error"), "the detail: {line}");
    assert_eq!(
        line.matches("storage is unavailable").count(),
        1,
        "said once: {line}"
    );
    // Reading is not affected.
    let h = request("GET", &c.url("/healthz"), &[], None);
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(common::admin_metrics(&c).contains("reason=\"unavailable\""));
}
