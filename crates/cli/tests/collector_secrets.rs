//! Secrets of a new store: the first start writes its tokens to
//! `<data dir>/initial-tokens.txt` (mode 0600) and prints them only when stdout is a
//! terminal, so a service manager's log never holds them; write tokens are stored only
//! as hashes on both stores, and ClickHouse key tables written before are migrated.

mod common;

use common::clickhouse::{ch, env_or_skip, unique_db};
use common::{BIN, initial_tokens, post_json, request, wait_timeout};
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `serve ARGS` with stdout piped (no terminal) and stderr to `log`; returns the
/// process, its URL and what stdout printed up to the listening line.
fn serve(args: &[&str], data: &Path, log: &Path) -> (Child, String, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .env("ANONSTATS_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let url = loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            panic!("serve ended before listening: {printed}");
        }
        printed.push_str(&line);
        if let Some(u) = line.trim().strip_prefix("listening on ") {
            break u.to_string();
        }
    };
    // What it prints later is read at the end.
    child.stdout = Some(lines.into_inner());
    (child, url, printed)
}

/// Stops with SIGTERM and returns the rest of stdout.
fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut rest);
    }
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    rest
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn admin_status(url: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    request(
        "GET",
        &format!("{url}/api/v1/projects"),
        &[("authorization", &auth)],
        None,
    )
    .status
}

fn send_status(url: &str, token: &str) -> u16 {
    post_json(
        &format!("{url}/e/"),
        &json!({"api_key": token, "event": "START", "distinct_id": "m-1"}),
    )
    .status
}

#[test]
fn a_first_start_without_a_terminal_prints_no_token_and_writes_them_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let (child, url, printed) = serve(&[], &data, &log);
    let file = data.join("initial-tokens.txt");
    assert_eq!(mode(&file), 0o600, "readable only by the service's user");
    let (write, admin) = initial_tokens(&data).expect("both tokens in the file");
    assert!(write.starts_with("aw_") && admin.starts_with("aa_"));
    assert!(
        printed.contains(&format!("are in {}", file.display())),
        "the log says where they are: {printed}"
    );
    // The tokens in the file work.
    assert_eq!(send_status(&url, &write), 200);
    assert_eq!(admin_status(&url, &admin), 200);

    let rest = stop(child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [("stdout", format!("{printed}{rest}")), ("stderr", stderr)] {
        for t in [&write, &admin] {
            assert!(!text.contains(t.as_str()), "{what} holds a token: {text}");
        }
        assert!(
            !text.contains("aw_") && !text.contains("aa_"),
            "{what}: {text}"
        );
    }
    // Neither token is in the database or its log.
    let bytes = common::store_bytes(&data);
    assert!(!common::contains(&bytes, &write) && !common::contains(&bytes, &admin));

    // A second start makes nothing new and leaves the file as it was.
    let before = std::fs::read(&file).unwrap();
    let (child, _, printed) = serve(&[], &data, &log);
    assert!(!printed.contains("created project"), "{printed}");
    stop(child);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_first_start_on_a_terminal_prints_the_tokens_too() {
    if !common::require(Path::new("/usr/bin/script").exists(), "script (util-linux)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cmd = format!(
        "{BIN} serve --listen 127.0.0.1:0 --data-dir {}",
        data.display()
    );
    // `script` runs it on a pseudo-terminal and copies what it prints to our pipe.
    let mut child = Command::new("/usr/bin/script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let (write, admin) = initial_tokens(&data).expect("the file is written too");
    assert!(
        printed.contains(&format!("write token: {write}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("admin token: {admin}")),
        "{printed}"
    );
    let pid = std::fs::read_to_string(data.join("anonstats.lock")).unwrap();
    let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
    drop(child.stdin.take());
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).is_some());
}

/// ClickHouse: a first start stores no token whole, and key tables written by the
/// previous release (write tokens whole, admin tokens without name or expiry) are
/// migrated when a collector opens them; the old tokens keep working.
#[test]
fn clickhouse_keys_hold_no_write_token_and_old_key_tables_are_migrated() {
    let Some(url) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let store = |db: &str| format!("{}/{db}", url.replacen("http://", "clickhouse://", 1));

    // A new store.
    let db = unique_db("secrets");
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let (child, curl, _) = serve(&["--store", &store(&db)], &data, &log);
    let (write, admin) = initial_tokens(&data).expect("tokens in the file");
    assert_eq!(send_status(&curl, &write), 200);
    assert_eq!(admin_status(&curl, &admin), 200);
    let keys = ch(&url, &format!("SELECT * FROM {db}.write_tokens FORMAT TSV"));
    assert!(!keys.contains(&write), "{keys}");
    assert!(keys.contains(&write[..11]), "the prefix is kept: {keys}");
    stop(child);
    ch(&url, &format!("DROP DATABASE {db}"));

    // Key tables as the previous release made them.
    let db = unique_db("oldkeys");
    let old_write = "aw_00112233445566778899aabbccddeeff";
    let old_admin = "aa_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let old_admin_hash = "f8c203aa5fca80ef6bfec15c24981573fc07333115ac5f82b60b8fad649d2734";
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!(
            "CREATE TABLE {db}.projects (id Int64, name String, created_ms Int64, \
             allowlist String, has_allowlist UInt8, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        ),
        format!(
            "CREATE TABLE {db}.write_tokens (token String, project_id Int64, \
             created_ms Int64, revoked_ms Int64, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY token"
        ),
        format!(
            "CREATE TABLE {db}.admin_tokens (id Int64, hash String, prefix String, \
             created_ms Int64, revoked_ms Int64, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        ),
        format!("INSERT INTO {db}.projects VALUES (1, 'default', 1714521600000, '', 0, 1)"),
        format!("INSERT INTO {db}.write_tokens VALUES ('{old_write}', 1, 1714521600000, 0, 2)"),
        format!(
            "INSERT INTO {db}.admin_tokens VALUES (1, '{old_admin_hash}', '{}', 1714521600000, 0, 3)",
            &old_admin[..11]
        ),
    ] {
        ch(&url, &sql);
    }
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let (child, curl, printed) = serve(&["--store", &store(&db)], &data, &log);
    assert!(!printed.contains("created project"), "{printed}");
    assert_eq!(
        send_status(&curl, old_write),
        200,
        "the agents' token still works"
    );
    assert_eq!(
        admin_status(&curl, old_admin),
        200,
        "the admin token still works"
    );
    let keys = ch(&url, &format!("SELECT * FROM {db}.write_tokens FORMAT TSV"));
    assert!(
        !keys.contains(old_write),
        "a write token is still stored whole: {keys}"
    );
    assert!(keys.contains(&old_write[..11]), "{keys}");
    stop(child);
    // `keys` sees the migrated tables as any others.
    let out = Command::new(BIN)
        .args(["keys", "--store", &store(&db), "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        list.contains(&old_write[..11]) && !list.contains(old_write),
        "{list}"
    );
    assert!(list.contains(&old_admin[..11]), "{list}");
    ch(&url, &format!("DROP DATABASE {db}"));
}
