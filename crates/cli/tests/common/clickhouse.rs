//! Helpers of the tests that need a ClickHouse server.

use super::request;

/// The value of `var`, which scripts/test.sh sets once ClickHouse runs. In CI its absence
/// fails the test; elsewhere the test is skipped with the reason printed.
pub fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: CI must run ClickHouse (scripts/test.sh starts it)")
        }
        _ => {
            eprintln!("skipped: {var} is not set (scripts/test.sh starts ClickHouse and sets it)");
            None
        }
    }
}

/// A database name no other test run uses.
pub fn unique_db(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("anonstats_{tag}_{}_{nanos}", std::process::id())
}

/// Runs one statement on a ClickHouse node and returns the answer's text.
pub fn ch(url: &str, sql: &str) -> String {
    let a = request(
        "POST",
        &format!("{url}/?output_format_json_quote_64bit_integers=0"),
        &[],
        Some(sql.as_bytes()),
    );
    assert_eq!(a.status, 200, "{sql}: {}", a.body);
    a.body
}
