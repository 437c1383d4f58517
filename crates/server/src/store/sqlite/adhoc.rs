//! Ad-hoc read-only SQL for admins: a read-only connection, an authorizer that allows
//! reading and nothing else, a row cap and a time limit.

use crate::insights::{SqlLimits, SqlResult};
use crate::store::StoreError;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use std::time::Instant;

/// Pragmas that only read.
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "table_list",
    "foreign_key_list",
];

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name } => {
            let f = function_name.to_ascii_lowercase();
            // File access and extension loading are writes in disguise.
            if f.contains("load_extension")
                || f.contains("writefile")
                || f.contains("readfile")
                || f.starts_with("fts3_tokenizer")
            {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value: None,
        } if READ_PRAGMAS.contains(&pragma_name) => Authorization::Allow,
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } if READ_PRAGMAS.contains(&pragma_name) => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

pub(super) fn run(
    conn: &mut Connection,
    sql: &str,
    limits: SqlLimits,
) -> Result<SqlResult, StoreError> {
    let refuse = |what: &str| {
        StoreError::Invalid(format!(
            "{what}: only read-only queries (SELECT, WITH, EXPLAIN and read-only PRAGMAs such as table_info) are allowed"
        ))
    };
    conn.authorizer(Some(authorize))?;
    let deadline = Instant::now() + limits.timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline))?;

    let mut stmt = conn.prepare(sql).map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::AuthorizationForStatementDenied =>
        {
            refuse("the statement was refused")
        }
        rusqlite::Error::MultipleStatement => {
            StoreError::Invalid("send one statement at a time".into())
        }
        _ => StoreError::Invalid(format!("the query is not valid SQL: {e}")),
    })?;
    if !stmt.readonly() {
        return Err(refuse("the statement would write"));
    }
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let width = columns.len();
    let mut rows = stmt.query([]).map_err(|e| query_error(e, limits))?;
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(|e| query_error(e, limits))? {
        if out.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(f) => f.into(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)).into(),
            });
        }
        out.push(values);
    }
    Ok(SqlResult {
        columns,
        rows: out,
        truncated,
    })
}

fn query_error(e: rusqlite::Error, limits: SqlLimits) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            StoreError::Invalid(format!(
                "the query ran longer than the {} s limit and was stopped; narrow it down",
                limits.timeout.as_secs_f64()
            ))
        }
        _ => StoreError::Invalid(format!("the query failed: {e}")),
    }
}
