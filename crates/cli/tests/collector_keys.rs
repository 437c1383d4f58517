//! `anonstats keys` while the collector runs: admin and viewer tokens are created,
//! listed by prefix only, and stop working once revoked.

mod common;

use common::{Collector, request};

fn api_status(c: &Collector, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    request(
        "GET",
        &c.url("/api/v1/projects"),
        &[("authorization", &auth)],
        None,
    )
    .status
}

#[test]
fn admin_tokens_are_created_listed_and_revoked_while_serving() {
    let c = Collector::start();
    assert_eq!(api_status(&c, &c.admin_token), 200);
    let out = c.cli(&["keys", "create-admin"]);
    let token = out.lines().last().unwrap().to_string();
    assert!(token.starts_with("aa_"), "{out}");
    assert_eq!(
        api_status(&c, &token),
        200,
        "a new admin token works at once"
    );

    let list = c.cli(&["keys", "list"]);
    assert!(
        !list.contains(&token),
        "listings never show an admin token whole"
    );
    assert!(list.contains(&token[..11]), "they show its prefix: {list}");
    assert!(
        list.contains(&c.write_token),
        "write tokens are public and listed whole"
    );

    let revoked = c.cli(&["keys", "revoke", &token[..11]]);
    assert!(revoked.contains("revoked admin token"), "{revoked}");
    assert_eq!(api_status(&c, &token), 401);
    assert_eq!(
        api_status(&c, &c.admin_token),
        200,
        "other admin tokens keep working"
    );
    let list = c.cli(&["keys", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&token[..11]) && l.contains("revoked")),
        "{list}"
    );

    // Nothing matches: a clear error, non-zero exit.
    let out = std::process::Command::new(common::BIN)
        .args(["keys", "revoke", "aa_nothing", "--data-dir"])
        .arg(c.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no write token, admin or viewer token, or token id matches")
    );
}

#[test]
fn viewer_tokens_are_created_listed_apart_and_revoked_while_serving() {
    let c = Collector::start();
    let out = c.cli(&["keys", "create-viewer"]);
    let viewer = out.lines().last().unwrap().to_string();
    assert!(viewer.starts_with("av_") && viewer.len() == 67, "{out}");
    assert_eq!(
        api_status(&c, &viewer),
        200,
        "a new viewer token works at once"
    );

    let list = c.cli(&["keys", "list"]);
    assert!(!list.contains(&viewer), "never listed whole: {list}");
    let (admins, viewers) = list.split_once("VIEWER TOKENS").expect(&list);
    assert!(viewers.contains(&viewer[..11]), "{list}");
    assert!(
        !admins.contains(&viewer[..11]),
        "not among the admins: {list}"
    );
    assert!(admins.contains(&c.admin_token[..11]), "{list}");

    // A dashboard session opened with it ends with it.
    let body = serde_json::json!({ "token": viewer }).to_string();
    let login = request(
        "POST",
        &c.url("/api/v1/session"),
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(login.json()["role"], "viewer", "{}", login.body);
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let in_session = || {
        request(
            "GET",
            &c.url("/api/v1/projects"),
            &[("cookie", &cookie)],
            None,
        )
        .status
    };
    assert_eq!(in_session(), 200);

    let revoked = c.cli(&["keys", "revoke", &viewer[..11]]);
    assert!(revoked.contains("revoked viewer token"), "{revoked}");
    assert_eq!(api_status(&c, &viewer), 401);
    assert_eq!(in_session(), 401, "the session ends with its token");
    let list = c.cli(&["keys", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&viewer[..11]) && l.contains("revoked")),
        "{list}"
    );
}

/// `anonstats keys list | head -0`, `sql ... | head`: a reader that goes away ends the
/// command quietly, without a panic.
#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let c = Collector::start();
    for args in [
        vec!["keys", "list"],
        vec![
            "sql",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 200000) SELECT i FROM n",
            "--max-rows",
            "200000",
        ],
        vec!["export", "--format", "csv"],
    ] {
        let mut child = std::process::Command::new(common::BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(c.data_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // Ended by SIGPIPE (13), as `cat` is, or done before it wrote.
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(13),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}
