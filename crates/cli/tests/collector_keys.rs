//! `anonstats keys` while the collector runs: admin tokens are created, listed by prefix
//! only, and stop working once revoked.

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
            .contains("no write token, admin token or admin id matches")
    );
}
