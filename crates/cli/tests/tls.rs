//! TLS end to end: the real `anonstats send` to the real `anonstats serve --tls-cert
//! --tls-key`, with a CA made here. A certificate for another name, or one no trusted CA
//! signed, is refused, and the event stays spooled; bad certificate files stop both sides
//! at start, naming the file; a stalled handshake holds its connection slot no longer
//! than the header timeout.

mod agent_common;
mod common;

use agent_common::{anonstats, files_under, send_args, strs, tool_present};
use common::Collector;
use common::proxy::TestCa;
use rcgen::{CertificateParams, KeyPair};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn tls_collector(cert: &Path, key: &Path, extra: &[&str]) -> Collector {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let c = Collector::start_with(&args);
    assert!(c.url.starts_with("https://127.0.0.1:"), "{}", c.url);
    c
}

/// The arguments of `anonstats send ACTION` to `c`, with its write token.
fn send_to(c: &Collector, action: &str, dir: &Path) -> Vec<String> {
    let mut args = send_args(action, &c.url, dir);
    let token = args.iter().position(|a| a == "--token").unwrap() + 1;
    args[token] = c.write_token.clone();
    args
}

/// `anonstats send --wait ACTION` to `c` with `extra` arguments.
fn send_wait(c: &Collector, dir: &Path, action: &str, extra: &[&str]) -> Output {
    let mut args = send_to(c, action, dir);
    args.insert(1, "--wait".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    anonstats(&strs(&args), &[])
}

/// The events sent to `c` from `dir` are still spooled, and `c` stored none.
fn kept_not_stored(c: &Collector, dir: &Path, events: usize) {
    let state = dir.join("state");
    assert_eq!(spooled(&state).len(), events, "the events are kept");
    assert_eq!(c.export().len(), 0);
}

/// A send that failed saying each of `says`, for `what` it was refused; its stderr.
fn refused(out: &Output, what: &str, says: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{what} was accepted");
    assert!(says.iter().all(|s| err.contains(s)), "{err}");
    err
}

/// Events waiting in the spool under a state dir.
fn spooled(state: &Path) -> Vec<PathBuf> {
    files_under(state)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.components().any(|c| c.as_os_str() == "spool"))
        .collect()
}

fn stored(c: &Collector, event: &str) -> usize {
    c.export().iter().filter(|e| e["event"] == event).count()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn send_over_https_with_the_ca_file_stores_the_event() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("server", &["127.0.0.1", "localhost"]);
    let c = tls_collector(&cert, &key, &[]);
    let dir = tempfile::tempdir().unwrap();

    let out = send_wait(
        &c,
        dir.path(),
        "START",
        &["--ca-file", ca.ca_file().to_str().unwrap()],
    );
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    assert_eq!(stored(&c, "START"), 1);
    assert!(spooled(&dir.path().join("state")).is_empty());

    // The same from the agent's configuration file, with no flag but the action.
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("anonstats.toml"),
        format!(
            "endpoint = \"{}\"\ntoken = \"{}\"\nproduct-name = \"tls-test\"\n\
             product-version = \"1\"\nstate-dir = \"{}\"\nca-file = \"{}\"\n",
            c.url,
            c.write_token,
            dir.path().join("state-file").display(),
            ca.ca_file().display()
        ),
    )
    .unwrap();
    let out = anonstats(
        &[
            "send",
            "--wait",
            "EXIT",
            "--config-dir",
            etc.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    assert_eq!(stored(&c, "EXIT"), 1);

    // And from ANONSTATS_CA_FILE.
    let mut args = send_to(&c, "CUSTOM", dir.path());
    args.insert(1, "--wait".into());
    let out = anonstats(
        &strs(&args),
        &[("ANONSTATS_CA_FILE", ca.ca_file().to_str().unwrap())],
    );
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    assert_eq!(stored(&c, "CUSTOM"), 1);
}

#[test]
fn a_detached_send_over_https_is_delivered() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("server", &["127.0.0.1"]);
    let c = tls_collector(&cert, &key, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = send_to(&c, "START", dir.path());
    args.extend(["--ca-file".into(), ca.ca_file().display().to_string()]);
    let out = anonstats(&strs(&args), &[]);
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    agent_common::wait_detached(&dir.path().join("state"), Duration::from_secs(20));
    assert_eq!(stored(&c, "START"), 1);
    assert!(spooled(&dir.path().join("state")).is_empty());
}

#[test]
fn a_certificate_for_another_host_is_refused_and_the_event_stays_spooled() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("other", &["stats.example.org"]);
    let c = tls_collector(&cert, &key, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = send_wait(
        &c,
        dir.path(),
        "START",
        &["--ca-file", ca.ca_file().to_str().unwrap()],
    );
    refused(
        &out,
        "a wrong-host certificate",
        &["certificate did not verify", "not valid for name"],
    );
    kept_not_stored(&c, dir.path(), 1);
}

#[test]
fn a_self_signed_certificate_is_refused_without_its_ca_file() {
    let ca = TestCa::new();
    let (cert, key) = ca.self_signed("self", &["127.0.0.1"]);
    let c = tls_collector(&cert, &key, &[]);
    let dir = tempfile::tempdir().unwrap();
    // The system's roots, as on any machine.
    let out = send_wait(&c, dir.path(), "START", &[]);
    refused(
        &out,
        "a self-signed certificate",
        &["certificate did not verify", "--ca-file"],
    );
    // A CA file of another CA does not help either.
    let out = send_wait(
        &c,
        dir.path(),
        "CHECK",
        &["--ca-file", ca.ca_file().to_str().unwrap()],
    );
    refused(
        &out,
        "a certificate of another CA",
        &["certificate did not verify"],
    );
    kept_not_stored(&c, dir.path(), 2);
}

#[test]
fn an_unusable_ca_file_is_an_error_at_start_naming_the_file() {
    let ca = TestCa::new();
    let (_, key) = ca.server_cert("server", &["127.0.0.1"]);
    let garbage = ca.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let broken = ca.dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = ca.dir.path().join("missing.pem");
    let dir = tempfile::tempdir().unwrap();
    for (file, why) in [
        (&missing, "cannot be read"),
        (&garbage, "holds no certificate"),
        (&key, "holds no certificate"),
        (&broken, "holds a certificate that cannot be read"),
    ] {
        let mut args = send_args("START", "https://127.0.0.1:9", dir.path());
        args.insert(1, "--wait".into());
        args.extend(["--ca-file".into(), file.display().to_string()]);
        let out = anonstats(&strs(&args), &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{}: accepted", file.display());
        assert!(
            err.contains(&file.display().to_string()) && err.contains(why),
            "{}: {err}",
            file.display()
        );
    }
    assert!(spooled(&dir.path().join("state")).is_empty());
}

/// `anonstats serve ARGS` that must fail at start; returns its stderr.
fn serve_fails(args: &[&str], data: &Path) -> String {
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve {args:?} started");
    assert!(!data.exists(), "serve {args:?} created its data dir");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unusable_certificate_files_stop_serve_at_start_naming_the_file() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("server", &["127.0.0.1"]);
    let (_, other_key) = ca.server_cert("other", &["127.0.0.1"]);
    let data = ca.dir.path().join("data");
    let missing = ca.dir.path().join("missing.crt");
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let err = serve_fails(
        &["--tls-cert", missing.to_str().unwrap(), "--tls-key", k],
        &data,
    );
    assert!(
        err.contains("missing.crt") && err.contains("cannot be read"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", k, "--tls-key", k], &data);
    assert!(
        err.contains("server.key") && err.contains("holds no certificate"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", c, "--tls-key", c], &data);
    assert!(
        err.contains("server.crt") && err.contains("holds no private key"),
        "{err}"
    );
    let err = serve_fails(
        &["--tls-cert", c, "--tls-key", other_key.to_str().unwrap()],
        &data,
    );
    assert!(
        err.contains("other.key") && err.contains("cannot be used with the certificate"),
        "{err}"
    );
    let err = serve_fails(&["--tls-cert", c], &data);
    assert!(err.contains("--tls-key"), "{err}");
}

fn client(ca: &TestCa) -> ureq::Agent {
    ca.client()
}

#[test]
fn the_dashboard_and_api_work_over_tls_and_the_session_cookie_is_secure() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("server", &["127.0.0.1"]);
    // From serve's configuration file, as every other setting.
    let file = ca.dir.path().join("serve.toml");
    std::fs::write(
        &file,
        format!(
            "tls-cert = \"{}\"\ntls-key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let c = Collector::start_with(&["--config", file.to_str().unwrap()]);
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let agent = client(&ca);

    let mut page = agent.get(c.url("/")).call().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.body_mut().read_to_string().unwrap().contains("<html"));

    let login = agent
        .post(c.url("/api/v1/session"))
        .header("content-type", "application/json")
        .send(serde_json::json!({"token": c.admin_token}).to_string())
        .unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    let attrs: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.contains(&"secure".into()), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    let mut trend = agent
        .get(c.url("/api/v1/insights/trend"))
        .header("cookie", cookie)
        .call()
        .unwrap();
    assert_eq!(
        trend.status(),
        200,
        "{}",
        trend.body_mut().read_to_string().unwrap()
    );

    // A browser-side capture over TLS, by another TLS stack (curl, OpenSSL).
    if tool_present("curl") {
        let body =
            serde_json::json!({"api_key": c.write_token, "event": "PAGEVIEW", "distinct_id": "d1"});
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(ca.ca_file())
            .args([
                "-H",
                "content-type: application/json",
                "-d",
                &body.to_string(),
            ])
            .arg(c.url("/e/"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl: {}", stderr(&out));
        assert_eq!(stored(&c, "PAGEVIEW"), 1);
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null"])
            .arg(c.url("/healthz"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "curl trusted the test CA without --cacert"
        );
    }
}

#[test]
fn a_stalled_handshake_holds_its_slot_no_longer_than_the_header_timeout() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("server", &["127.0.0.1"]);
    let c = tls_collector(
        &cert,
        &key,
        &["--max-connections", "1", "--header-timeout-secs", "1"],
    );
    let addr = c.url.trim_start_matches("https://").to_string();
    // Takes the only slot and stalls the handshake after one byte of a ClientHello.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(&[0x16]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    // The collector closes it once the header timeout has passed (0 bytes: end of stream).
    let n = stalled
        .read(&mut buf)
        .expect("closed by the collector, not timed out here");
    assert_eq!(n, 0, "the collector answered a stalled handshake");
    // The slot is free again: a real request is served.
    let answer = client(&ca).get(c.url("/healthz")).call().unwrap();
    assert_eq!(answer.status(), 200);
}

#[test]
fn opted_out_an_https_endpoint_and_its_ca_file_are_never_touched() {
    if !tool_present("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("never-read.pem");
    let log = dir.path().join("strace.log");
    let mut args = send_args("START", "https://127.0.0.1:9", dir.path());
    args.extend(["--ca-file".into(), ca_file.display().to_string()]);
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%network,%file", "-o"])
        .arg(&log)
        .arg(common::BIN)
        .args(&args)
        .env("DISABLE_TELEMETRY", "1")
        .env_remove("ANONSTATS_CA_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let trace = std::fs::read_to_string(&log).unwrap();
    let bad: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("socket(") || l.contains("connect(") || l.contains("never-read.pem"))
        .filter(|l| !l.contains("execve("))
        .collect();
    assert!(
        bad.is_empty(),
        "opted out, send touched:\n{}",
        bad.join("\n")
    );
    assert!(!dir.path().join("state").exists());
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = TestCa::new();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (cert, key) = ca.write("expired", &cert.pem(), &key.serialize_pem());
    let c = tls_collector(&cert, &key, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = send_wait(
        &c,
        dir.path(),
        "START",
        &["--ca-file", ca.ca_file().to_str().unwrap()],
    );
    refused(
        &out,
        "an expired certificate",
        &["certificate did not verify", "expired"],
    );
    assert_eq!(spooled(&dir.path().join("state")).len(), 1);
}
