//! Ad-hoc read-only SQL on ClickHouse, under `readonly=1`: reads only, no table function
//! (`url()`, `file()`, `remote()`, ... would reach the network or the server's disk), and
//! no `SET` or `SETTINGS` in the query, so the time limit, the row cap and the memory cap
//! sent beside it as URL parameters hold. Checked on 18.16 over HTTP and on a current
//! release (docs/clickhouse-dialect.md).

use super::http::{Client, Kind};
use crate::insights::{SqlLimits, SqlResult};
use crate::store::StoreError;
use serde::Deserialize;

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
struct Compact {
    meta: Vec<Meta>,
    data: Vec<Vec<serde_json::Value>>,
}

pub(super) fn run(client: &Client, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
    let sql = one_statement(sql)?;
    if first_word(sql).eq_ignore_ascii_case("set") {
        // With FORMAT appended it would be a syntax error; say what is wrong instead.
        return Err(settings_refused());
    }
    let timeout = limits.timeout.as_secs().max(1).to_string();
    let cap = (limits.max_rows + 1).to_string();
    let memory = limits.max_memory.to_string();
    let settings = [
        ("readonly", "1"),
        ("max_execution_time", timeout.as_str()),
        ("max_result_rows", cap.as_str()),
        ("result_overflow_mode", "break"),
        ("max_memory_usage", memory.as_str()),
    ];
    // On its own line, so that a trailing comment in the query cannot swallow it.
    // The answer's JSON text, plus its header and statistics.
    let answer_cap = limits.max_answer as u64 + 64 * 1024;
    let text = client
        .text_capped(
            Kind::Select,
            &format!("{sql}\nFORMAT JSONCompact"),
            &settings,
            answer_cap,
        )
        .map_err(|e| match e {
            // ClickHouse's memory limit reads as "busy" to the writers; here it is ours.
            StoreError::Unavailable(m) if m.contains("Code: 241") => {
                SqlLimits::memory_exceeded(limits.max_memory)
            }
            StoreError::Backend(m) => {
                let refused = m.contains("Code: 164") || m.contains("readonly");
                if m.contains("Table functions are forbidden")
                    || (refused && table_function(sql))
                {
                    StoreError::Invalid(
                        "table functions (url, file, remote, numbers, ...) are not allowed: they reach outside the stored data; read tables (system.numbers instead of numbers())".into(),
                    )
                } else if m.contains("SET query") || m.contains("Cannot modify") {
                    settings_refused()
                } else if refused {
                    StoreError::Invalid(format!("only read-only queries are allowed: {m}"))
                } else if m.contains("Code: 159") {
                    StoreError::Invalid(format!(
                        "the query ran longer than the {} s limit and was stopped; narrow it down",
                        limits.timeout.as_secs_f64()
                    ))
                } else {
                    StoreError::Invalid(format!("the query failed: {m}"))
                }
            }
            other => other,
        })?
        .ok_or_else(|| limits.answer_too_large())?;
    if text.trim().is_empty() {
        return Ok(SqlResult {
            columns: vec![],
            rows: vec![],
            truncated: false,
        });
    }
    let parsed: Compact = serde_json::from_str(&text)
        .map_err(|e| StoreError::Backend(format!("unexpected answer from ClickHouse: {e}")))?;
    let mut rows = parsed.data;
    let truncated = rows.len() > limits.max_rows;
    rows.truncate(limits.max_rows);
    Ok(SqlResult {
        columns: parsed.meta.into_iter().map(|m| m.name).collect(),
        rows,
        truncated,
    })
}

fn settings_refused() -> StoreError {
    StoreError::Invalid(
        "the query may not change settings (SET, SETTINGS): its time, row and memory limits are the collector's".into(),
    )
}

/// The first word of the query, past comments.
fn first_word(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The query without a trailing `;`, once it is known to hold one statement: a `;`
/// inside quotes or comments does not count, one with more SQL after it does.
fn one_statement(sql: &str) -> Result<&str, StoreError> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut end = None;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err(StoreError::Invalid(
                                "the query ends inside a quoted string or name".into(),
                            ));
                        }
                        Some(b'\\') => i += 2,
                        Some(&c) if c == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while !(bytes.get(i) == Some(&b'*') && bytes.get(i + 1) == Some(&b'/')) {
                    if i >= bytes.len() {
                        return Err(StoreError::Invalid(
                            "the query ends inside a comment".into(),
                        ));
                    }
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                end.get_or_insert(i);
            }
            c if !c.is_ascii_whitespace() && end.is_some() => {
                return Err(StoreError::Invalid("send one statement at a time".into()));
            }
            _ => {}
        }
        i += 1;
    }
    let sql = sql[..end.unwrap_or(sql.len())].trim();
    if sql.is_empty() {
        return Err(StoreError::Invalid("the query is empty".into()));
    }
    Ok(sql)
}

/// Whether the query calls something in its FROM: a current ClickHouse refuses table
/// functions with a plain "Cannot execute query in readonly mode".
fn table_function(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.split("from").skip(1).any(|after| {
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        !name.is_empty()
            && after.trim_start()[name.len()..]
                .trim_start()
                .starts_with('(')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match one_statement(sql) {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn one_statement_looks_past_quotes_and_comments() {
        for (sql, want) in [
            ("SELECT 1", "SELECT 1"),
            ("SELECT 1;", "SELECT 1"),
            ("  SELECT 1 ;  \n ", "SELECT 1"),
            ("SELECT ';'", "SELECT ';'"),
            ("SELECT 'it''s; ok';", "SELECT 'it''s; ok'"),
            ("SELECT 'a\\';b'", "SELECT 'a\\';b'"),
            ("SELECT `a;b` FROM t", "SELECT `a;b` FROM t"),
            ("SELECT \"a;\" FROM t", "SELECT \"a;\" FROM t"),
            ("SELECT 1 -- ; x", "SELECT 1 -- ; x"),
            ("SELECT 1; -- after", "SELECT 1"),
            ("SELECT 1 /* ; */", "SELECT 1 /* ; */"),
            ("SELECT 1; /* after */", "SELECT 1"),
        ] {
            assert_eq!(one_statement(sql).expect(sql), want, "{sql}");
        }
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT 'a'; SELECT 2",
            "SELECT ';'; DROP TABLE events",
            "SELECT 1 /* ; */; SELECT 2",
            "SELECT 1;;SELECT 2",
            "SELECT 1 -- x\n; SELECT 2",
        ] {
            assert_eq!(refused(sql), "send one statement at a time", "{sql}");
        }
        assert!(refused("SELECT 'open").contains("inside a quoted"));
        assert!(refused("SELECT \"open").contains("inside a quoted"));
        assert!(refused("SELECT 1 /* open").contains("inside a comment"));
        assert!(refused("SELECT 1 /* open *").contains("inside a comment"));
        assert_eq!(refused(" ; "), "the query is empty");
    }

    #[test]
    fn the_first_word_is_found_past_comments() {
        assert_eq!(first_word("SET max_memory_usage = 0"), "SET");
        assert_eq!(first_word(" -- x\n /* y */ set\tx = 1"), "set");
        assert_eq!(first_word("SELECT 1"), "SELECT");
        assert_eq!(first_word("(SELECT 1)"), "");
    }

    #[test]
    fn table_functions_are_recognised_after_from() {
        assert!(table_function("SELECT * FROM url('x', CSV, 'a String')"));
        assert!(table_function("select 1 from numbers (3)"));
        assert!(!table_function("SELECT * FROM events"));
        assert!(!table_function(
            "SELECT count() FROM system.numbers LIMIT 3"
        ));
    }
}
