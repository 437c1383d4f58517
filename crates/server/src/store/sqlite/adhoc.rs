//! Ad-hoc read-only SQL for admins: a read-only connection, an authorizer that allows
//! reading and nothing else, a row cap, a time limit, and bounds on memory (the query
//! runs inside the collector).

use crate::insights::{SqlLimits, SqlResult};
use crate::store::StoreError;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Largest string or blob a query may make or read (`SQLITE_LIMIT_LENGTH`); a stored
/// event is at most 1 MiB.
pub const MAX_VALUE: i32 = 4 << 20;
/// Most columns of a result (`SQLITE_LIMIT_COLUMN`): SQLite holds a whole row at once,
/// so one row takes at most `MAX_VALUE * MAX_COLUMNS`.
pub const MAX_COLUMNS: i32 = 32;
/// Most that SQLite's heap may grow while the query runs, whatever `max_memory` says
/// (aggregates, each within `MAX_VALUE`, add up).
const MAX_HEAP_GROWTH: u64 = 64 << 20;

/// Bytes SQLite holds in its heap, over every connection of the process.
fn sqlite_heap() -> u64 {
    // SAFETY: takes no argument and only reads SQLite's own counter.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

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
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE)?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS)?;
    let deadline = Instant::now() + limits.timeout;
    let memory = limits.max_memory.min(MAX_HEAP_GROWTH);
    let heap_cap = sqlite_heap().saturating_add(memory);
    let over_memory = Arc::new(AtomicBool::new(false));
    let flag = over_memory.clone();
    conn.progress_handler(
        1_000,
        Some(move || {
            if sqlite_heap() > heap_cap {
                flag.store(true, Ordering::Relaxed);
                return true;
            }
            Instant::now() > deadline
        }),
    )?;
    let fail = |e: rusqlite::Error| {
        if over_memory.load(Ordering::Relaxed) {
            SqlLimits::memory_exceeded(memory)
        } else {
            query_error(e, limits)
        }
    };

    let mut stmt = conn.prepare(sql).map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::AuthorizationForStatementDenied =>
        {
            refuse("the statement was refused")
        }
        rusqlite::Error::MultipleStatement => {
            StoreError::Invalid("send one statement at a time".into())
        }
        rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("too many columns") => {
            StoreError::Invalid(format!(
                "the query asks for too many columns ({m}); at most {MAX_COLUMNS} are allowed"
            ))
        }
        _ => StoreError::Invalid(format!("the query is not valid SQL: {e}")),
    })?;
    if !stmt.readonly() {
        return Err(refuse("the statement would write"));
    }
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let width = columns.len();
    let mut rows = stmt.query([]).map_err(fail)?;
    let mut out = Vec::new();
    let mut truncated = false;
    // Bytes of the answer's JSON text so far, counted before each value is copied.
    let mut answer = 0usize;
    while let Some(row) = rows.next().map_err(fail)? {
        if out.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let value = row.get_ref(i)?;
            answer += match value {
                ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => 24,
                ValueRef::Text(t) => t.len() + 3,
                ValueRef::Blob(b) => 2 * b.len() + 6,
            };
            if answer > limits.max_answer {
                return Err(limits.answer_too_large());
            }
            values.push(match value {
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
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::TooBig => {
            StoreError::Invalid(format!(
                "a value in the query is larger than the {} MB limit (string or blob too big); narrow it down (substr, LIMIT)",
                MAX_VALUE >> 20
            ))
        }
        _ => StoreError::Invalid(format!("the query failed: {e}")),
    }
}
