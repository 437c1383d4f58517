//! `anonstats keys` while the collector runs: tokens are created, listed by prefix only
//! (the store keeps only their hashes), named, expire, and stop working once revoked;
//! the last admin token is kept unless forced; allowlists are edited name by name.

mod common;

use common::{BIN, Collector, contains, post_json, request, store_bytes};
use serde_json::json;
use std::process::Command;

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
        !list.contains(&c.write_token) && list.contains(&c.write_token[..11]),
        "write tokens are listed by prefix too: {list}"
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

/// Runs `anonstats keys ARGS --data-dir DIR`; (success, stdout, stderr).
fn keys(c: &Collector, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .expect("run keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn send(c: &Collector, token: &str, props: serde_json::Value) -> common::Answer {
    post_json(
        &c.url("/e/"),
        &json!({"api_key": token, "event": "START", "distinct_id": "m-1", "properties": props}),
    )
}

#[test]
fn write_tokens_are_stored_only_hashed_listed_by_prefix_and_revoked_by_it() {
    let c = Collector::start();
    let made = c.cli(&["keys", "create-write-key", "default"]);
    let second = made.lines().last().unwrap().to_string();
    assert!(second.starts_with("aw_"), "{made}");
    assert_eq!(send(&c, &second, json!({})).status, 200, "works at once");
    assert_eq!(send(&c, &c.write_token, json!({})).status, 200);

    // Neither token is in the database or its log (only initial-tokens.txt has the first).
    let bytes = store_bytes(&c.data_dir());
    for t in [&c.write_token, &second] {
        assert!(!contains(&bytes, t), "{t} is stored whole");
    }

    let (ok, out, err) = keys(&c, &["revoke", &second[..11]]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("revoked write token {}", &second[..11])),
        "{out}"
    );
    // A token the cache does not know makes it reload the keys before it answers.
    send(&c, "aw_unknown", json!({}));
    let refused = send(&c, &second, json!({}));
    assert_eq!(refused.status, 401);
    assert!(refused.detail().contains("revoked"), "{}", refused.body);
    assert_eq!(
        send(&c, &c.write_token, json!({})).status,
        200,
        "the other goes on"
    );
    let list = c.cli(&["keys", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&second[..11]) && l.contains("revoked")),
        "{list}"
    );
}

#[test]
fn admin_tokens_are_named_expire_and_an_expired_one_is_refused_saying_so() {
    let c = Collector::start();
    let (ok, out, err) = keys(
        &c,
        &["create-admin", "--name", "grafana", "--expires", "30d"],
    );
    assert!(ok, "{err}");
    let grafana = out.lines().last().unwrap().to_string();
    assert_eq!(api_status(&c, &grafana), 200);
    let list = c.cli(&["keys", "list"]);
    let line = list
        .lines()
        .find(|l| l.contains(&grafana[..11]))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("grafana") && line.contains("active"),
        "{line}"
    );
    assert!(
        line.contains("created 20") && line.contains("expires 20"),
        "{line}"
    );
    let initial = list
        .lines()
        .find(|l| l.contains(&c.admin_token[..11]))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        initial.contains("initial") && initial.contains("expires never"),
        "{initial}"
    );

    // A time in the past, or nonsense, is refused before anything is made.
    for bad in ["2001-01-01", "soon"] {
        let (ok, _, err) = keys(&c, &["create-admin", "--expires", bad]);
        assert!(!ok && err.contains("--expires"), "{bad}: {err}");
    }

    // A token that expires in two seconds: refused once that time has passed, with a
    // 401 that says it expired (waited for by asking, not by sleeping a guess).
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let at_text = {
        let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        anonstats_wire::format_rfc3339_ms(secs * 1000 + 1000)
    };
    let (ok, out, err) = keys(
        &c,
        &["create-admin", "--name", "brief", "--expires", &at_text],
    );
    assert!(ok, "{err}");
    let brief = out.lines().last().unwrap().to_string();
    let auth = format!("Bearer {brief}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        let a = request(
            "GET",
            &c.url("/api/v1/projects"),
            &[("authorization", &auth)],
            None,
        );
        if a.status != 200 {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "still accepted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(answer.detail().contains("expired at"), "{}", answer.body);
    let list = c.cli(&["keys", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&brief[..11]) && l.contains("expired")),
        "{list}"
    );
}

#[test]
fn the_last_admin_token_that_works_is_kept_unless_forced() {
    let c = Collector::start();
    let (ok, _, err) = keys(&c, &["revoke", &c.admin_token[..11]]);
    assert!(!ok, "the only admin token was revoked");
    assert!(
        err.contains("last admin token") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(api_status(&c, &c.admin_token), 200, "it still works");

    // With a second one it may go, and then that one is the last.
    let second = c
        .cli(&["keys", "create-admin"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let (ok, _, err) = keys(&c, &["revoke", &c.admin_token]);
    assert!(ok, "{err}");
    let (ok, _, err) = keys(&c, &["revoke", &second]);
    assert!(!ok && err.contains("last admin token"), "{err}");
    let (ok, out, err) = keys(&c, &["revoke", &second, "--force"]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked admin token"), "{out}");
    assert_eq!(api_status(&c, &second), 401);
}

#[test]
fn allowlists_are_edited_name_by_name_and_unseen_names_are_warned_about() {
    let c = Collector::start();
    let probe = || {
        // A token the cache does not know makes it reload the keys before the next answer.
        post_json(
            &c.url("/e/"),
            &json!({"api_key": "aw_unknown", "event": "x", "distinct_id": "m"}),
        );
    };
    let props = json!({"product_version": "1.0", "action": "START", "host_os_name": "Debian"});
    assert_eq!(send(&c, &c.write_token, props.clone()).status, 200);

    // A name no event has, such as a typo, is warned about (and still added).
    let (ok, out, err) = keys(
        &c,
        &["allowlist", "add", "default", "product_version", "acton"],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("\"acton\"") && err.contains("check its spelling"),
        "{err}"
    );
    assert!(
        !err.contains("\"product_version\""),
        "a seen name is not warned about: {err}"
    );
    assert!(
        out.contains("product_version") && out.contains("acton"),
        "{out}"
    );

    // add adds: the list grows instead of being replaced.
    let (ok, _, err) = keys(&c, &["allowlist", "add", "default", "action"]);
    assert!(ok, "{err}");
    let (ok, out, err) = keys(&c, &["allowlist", "remove", "default", "acton"]);
    assert!(ok, "{err}");
    let (ok, shown, err) = keys(&c, &["allowlist", "show", "default"]);
    assert!(ok, "{err}");
    assert_eq!(out, shown);
    let names: Vec<&str> = shown.lines().skip(1).map(str::trim).collect();
    assert_eq!(names, ["product_version", "action"], "{shown}");

    probe();
    assert_eq!(send(&c, &c.write_token, props.clone()).status, 200);
    let events = c.export();
    assert_eq!(
        events.last().unwrap()["properties"],
        json!({"product_version": "1.0", "action": "START"}),
        "only the listed properties are kept"
    );

    // The older form still replaces the whole list, with a warning that it is deprecated.
    let (ok, _, err) = keys(&c, &["allowlist", "default", "--property", "host_os_name"]);
    assert!(ok, "{err}");
    assert!(err.contains("deprecated"), "{err}");
    let (_, shown, _) = keys(&c, &["allowlist", "show", "default"]);
    assert_eq!(
        shown.lines().skip(1).map(str::trim).collect::<Vec<_>>(),
        ["host_os_name"]
    );

    let (ok, _, err) = keys(&c, &["allowlist", "clear", "default"]);
    assert!(ok, "{err}");
    let (_, shown, _) = keys(&c, &["allowlist", "show", "default"]);
    assert!(shown.contains("no allowlist"), "{shown}");
    // A project that does not exist is named in the error.
    let (ok, _, err) = keys(&c, &["allowlist", "show", "nope"]);
    assert!(!ok && err.contains("no project named \"nope\""), "{err}");
}

/// The same key management on ClickHouse, through the real CLI and a collector on it.
#[test]
fn on_clickhouse_keys_are_named_expire_keep_the_last_admin_and_edit_allowlists() {
    use common::clickhouse::{ch, env_or_skip, unique_db};
    let Some(url) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let db = unique_db("keys");
    let store = format!("{}/{db}", url.replacen("http://", "clickhouse://", 1));
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(serve.stdout.take().unwrap()));
    let curl = loop {
        let line = lines.next().expect("serve ended").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (write, admin) = common::initial_tokens(dir.path()).expect("tokens");
    let keys = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("keys")
            .args(args)
            .args(["--store", &store])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let status = |token: &str| {
        let auth = format!("Bearer {token}");
        request(
            "GET",
            &format!("{curl}/api/v1/projects"),
            &[("authorization", &auth)],
            None,
        )
    };
    let send = |token: &str, props: serde_json::Value| {
        post_json(
            &format!("{curl}/e/"),
            &json!({"api_key": token, "event": "START", "distinct_id": "m-1", "properties": props}),
        )
    };

    // The last admin token is kept unless forced.
    let (ok, _, err) = keys(&["revoke", &admin[..11]]);
    assert!(!ok && err.contains("last admin token"), "{err}");
    assert_eq!(status(&admin).status, 200);

    // A named token that expires in two seconds is refused, saying so, once it has.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = anonstats_wire::format_rfc3339_ms((secs + 3) * 1000);
    let (ok, out, err) = keys(&["create-admin", "--name", "brief", "--expires", &at]);
    assert!(ok, "{err}");
    let brief = out.lines().last().unwrap().to_string();
    let list = keys(&["list"]).1;
    assert!(
        list.lines()
            .any(|l| l.contains(&brief[..11]) && l.contains("brief")),
        "{list}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let refused = loop {
        let a = status(&brief);
        if a.status != 200 {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "still accepted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(refused.status, 401);
    assert!(refused.detail().contains("expired at"), "{}", refused.body);

    // Allowlists: a name no event has is warned about.
    assert_eq!(send(&write, json!({"product_version": "1.0"})).status, 200);
    let (ok, out, err) = keys(&["allowlist", "add", "default", "product_version", "prodcut"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("\"prodcut\"") && !err.contains("\"product_version\""),
        "{err}"
    );
    assert!(out.contains("product_version"), "{out}");

    // A write token revoked by its listed prefix is refused.
    let (ok, _, err) = keys(&["revoke", &write[..11]]);
    assert!(ok, "{err}");
    send("aw_unknown", json!({}));
    assert_eq!(send(&write, json!({})).status, 401);

    let _ = serve.kill();
    let _ = serve.wait();
    ch(&url, &format!("DROP DATABASE {db}"));
}
