//! Ad-hoc read-only SQL on ClickHouse: `readonly=2` (reads only, settings allowed), a
//! time limit, and a row cap.

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
    let sql = sql.trim().trim_end_matches(';').trim_end();
    if sql.is_empty() {
        return Err(StoreError::Invalid("the query is empty".into()));
    }
    if sql.contains(';') && !sql.contains('\'') {
        return Err(StoreError::Invalid("send one statement at a time".into()));
    }
    let timeout = limits.timeout.as_secs().max(1).to_string();
    let cap = (limits.max_rows + 1).to_string();
    let settings = [
        ("readonly", "2"),
        ("max_execution_time", timeout.as_str()),
        ("max_result_rows", cap.as_str()),
        ("result_overflow_mode", "break"),
    ];
    // On its own line, so that a trailing comment in the query cannot swallow it.
    let text = client
        .text(
            Kind::Select,
            &format!("{sql}\nFORMAT JSONCompact"),
            &settings,
        )
        .map_err(|e| match e {
            StoreError::Backend(m) => {
                let refused = m.contains("Code: 164") || m.contains("readonly");
                if refused {
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
        })?;
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
