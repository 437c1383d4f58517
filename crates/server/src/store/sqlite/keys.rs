//! Projects and tokens in the embedded store. Every token is stored as its SHA-256 and
//! listed prefix only. Admin and viewer tokens share one table (`admin_tokens`) and its
//! ids; a row's role is the one its token's prefix names.

use crate::store::{
    LastAdmin, NewSecret, PrivacyMode, Project, Role, SecretKey, StoreError, WriteKey,
    last_admin_error,
};
use crate::tokens;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn bump(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'keys_generation'",
        [],
    )?;
    Ok(())
}

fn project_of(row: &Row<'_>, at: usize) -> rusqlite::Result<Project> {
    let allowlist: Option<String> = row.get(at + 3)?;
    Ok(Project {
        id: row.get(at)?,
        name: row.get(at + 1)?,
        created_ms: row.get(at + 2)?,
        privacy: match allowlist {
            None => PrivacyMode::Denylist,
            Some(json) => PrivacyMode::Allowlist(serde_json::from_str(&json).unwrap_or_default()),
        },
    })
}

const PROJECT_COLS: &str = "p.id, p.name, p.created_ms, p.allowlist";

pub fn generation(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT value FROM meta WHERE key = 'keys_generation'",
        [],
        |r| r.get(0),
    )?)
}

pub fn projects(conn: &Connection) -> Result<Vec<Project>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROJECT_COLS} FROM projects p ORDER BY p.id"
    ))?;
    let rows = stmt.query_map([], |r| project_of(r, 0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn project_named(conn: &Connection, name: &str) -> Result<Project, StoreError> {
    conn.query_row(
        &format!("SELECT {PROJECT_COLS} FROM projects p WHERE p.name = ?1"),
        [name],
        |r| project_of(r, 0),
    )
    .optional()?
    .ok_or_else(|| {
        StoreError::NotFound(format!(
            "no project named {name:?}; `anonstats keys list` shows them"
        ))
    })
}

pub fn write_keys(conn: &Connection) -> Result<Vec<WriteKey>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT w.hash, w.prefix, w.created_ms, w.revoked_ms IS NOT NULL, {PROJECT_COLS}
         FROM write_tokens w JOIN projects p ON p.id = w.project_id ORDER BY p.id, w.created_ms, w.id"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(WriteKey {
            hash: r.get(0)?,
            prefix: r.get(1)?,
            created_ms: r.get(2)?,
            revoked: r.get(3)?,
            project: project_of(r, 4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const SECRET_COLS: &str = "id, prefix, name, created_ms, expires_ms, revoked_ms IS NOT NULL";

fn secret_of_row(r: &Row<'_>) -> rusqlite::Result<Option<SecretKey>> {
    let prefix: String = r.get(1)?;
    let Some(role) = Role::of(&prefix) else {
        return Ok(None);
    };
    Ok(Some(SecretKey {
        id: r.get(0)?,
        role,
        prefix,
        name: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        revoked: r.get(5)?,
    }))
}

pub fn secret_keys(conn: &Connection) -> Result<Vec<SecretKey>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SECRET_COLS} FROM admin_tokens ORDER BY id"
    ))?;
    let rows = stmt.query_map([], secret_of_row)?;
    // Only this module writes the table, always with a role's prefix.
    Ok(rows
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?)
}

/// The row of an admin or viewer token, given whole.
pub fn secret_of(conn: &Connection, token: &str) -> Result<Option<SecretKey>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SECRET_COLS} FROM admin_tokens WHERE hash = ?1"),
            [tokens::hash_secret(token)],
            secret_of_row,
        )
        .optional()?
        .flatten())
}

/// Admin tokens that work now, but `except`.
fn other_working_admins(conn: &Connection, except: i64) -> Result<usize, StoreError> {
    let now = now_ms();
    Ok(secret_keys(conn)?
        .iter()
        .filter(|k| k.role == Role::Admin && k.id != except && k.active(now))
        .count())
}

pub fn property_names(conn: &Connection, project_id: i64) -> Result<Vec<String>, StoreError> {
    // The rollups hold every scalar property of the events they count; the names are read
    // by skipping from one to the next along the primary key, not by reading every row.
    // Events committed but not yet counted (at most a fold interval's) are read whole.
    let mut stmt = conn.prepare(
        "WITH RECURSIVE p(prop) AS (
             SELECT MIN(prop) FROM rollup_props WHERE project_id = ?1
             UNION ALL
             SELECT (SELECT MIN(prop) FROM rollup_props WHERE project_id = ?1 AND prop > p.prop)
             FROM p WHERE p.prop IS NOT NULL)
         SELECT prop FROM p WHERE prop IS NOT NULL AND prop != ?2
         UNION
         SELECT j.key FROM events e, json_each(e.properties) j
         WHERE e.project_id = ?1
           AND e.seq > (SELECT value FROM meta WHERE key = 'rollup_seq')
         ORDER BY 1",
    )?;
    let rows = stmt.query_map(params![project_id, crate::rollup::FATAL_SITE], |r| {
        r.get::<_, String>(0)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn create_project(conn: &mut Connection, name: &str) -> Result<(Project, String), StoreError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(StoreError::Invalid(
            "a project name must be 1 to 100 characters".into(),
        ));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM projects WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?;
    if exists {
        return Err(StoreError::Invalid(format!(
            "a project named {name:?} exists already; use `anonstats keys create-write-key {name}` for another token"
        )));
    }
    let created = now_ms();
    tx.execute(
        "INSERT INTO projects (name, created_ms) VALUES (?1, ?2)",
        params![name, created],
    )?;
    let id = tx.last_insert_rowid();
    let token = insert_write_token(&tx, id, created)?;
    bump(&tx)?;
    tx.commit()?;
    let project = Project {
        id,
        name: name.to_string(),
        created_ms: created,
        privacy: PrivacyMode::Denylist,
    };
    Ok((project, token))
}

pub fn create_write_key(conn: &mut Connection, project: &str) -> Result<String, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let p = project_named(&tx, project)?;
    let token = insert_write_token(&tx, p.id, now_ms())?;
    bump(&tx)?;
    tx.commit()?;
    Ok(token)
}

/// A new write token of the project; only its hash and prefix are written.
fn insert_write_token(
    conn: &Connection,
    project_id: i64,
    created_ms: i64,
) -> Result<String, StoreError> {
    let token = tokens::new_write_token();
    conn.execute(
        "INSERT INTO write_tokens (hash, prefix, project_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![
            tokens::hash_secret(&token),
            tokens::secret_prefix(&token),
            project_id,
            created_ms
        ],
    )?;
    Ok(token)
}

pub fn create_secret(
    conn: &mut Connection,
    role: Role,
    new: &NewSecret,
) -> Result<String, StoreError> {
    let token = tokens::new_secret(role);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO admin_tokens (hash, prefix, name, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tokens::hash_secret(&token),
            tokens::secret_prefix(&token),
            new.name,
            now_ms(),
            new.expires_ms
        ],
    )?;
    bump(&tx)?;
    tx.commit()?;
    Ok(token)
}

pub fn revoke(conn: &mut Connection, what: &str, last: LastAdmin) -> Result<String, StoreError> {
    let what = what.trim();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let done = if what.starts_with(tokens::WRITE_PREFIX) {
        // Whole, or by the prefix `keys list` shows.
        let ids: Vec<(i64, String)> = if what.len() > tokens::secret_prefix(what).len() {
            tx.prepare("SELECT id, prefix FROM write_tokens WHERE hash = ?1")?
                .query_map([tokens::hash_secret(what)], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        } else {
            tx.prepare("SELECT id, prefix FROM write_tokens WHERE prefix = ?1")?
                .query_map([what], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        if ids.len() > 1 {
            return Err(StoreError::Invalid(format!(
                "{what:?} matches {} write tokens; give the whole token",
                ids.len()
            )));
        }
        match ids.first() {
            Some((id, prefix)) => {
                tx.execute(
                    "UPDATE write_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
                    params![id, now],
                )?;
                Some(format!("revoked write token {prefix}…"))
            }
            None => None,
        }
    } else {
        // An admin or viewer token whole, by its listed prefix, or by its id.
        let id: Option<i64> = if what.len() > tokens::secret_prefix(what).len() {
            tx.query_row(
                "SELECT id FROM admin_tokens WHERE hash = ?1",
                [tokens::hash_secret(what)],
                |r| r.get(0),
            )
            .optional()?
        } else if let Ok(id) = what.parse::<i64>() {
            Some(id)
        } else {
            let ids: Vec<i64> = tx
                .prepare("SELECT id FROM admin_tokens WHERE prefix = ?1")?
                .query_map([what], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if ids.len() > 1 {
                return Err(StoreError::Invalid(format!(
                    "{what:?} matches {} admin or viewer tokens; revoke by id (`anonstats keys list`)",
                    ids.len()
                )));
            }
            ids.first().copied()
        };
        if let Some(id) = id {
            let target = secret_keys(&tx)?.into_iter().find(|k| k.id == id);
            if let Some(k) = target
                && k.role == Role::Admin
                && k.active(now)
                && last == LastAdmin::Keep
                && other_working_admins(&tx, id)? == 0
            {
                return Err(last_admin_error(id));
            }
        }
        match id {
            Some(id) => {
                let prefix: Option<String> = tx
                    .query_row(
                        "UPDATE admin_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1
                         RETURNING prefix",
                        params![id, now],
                        |r| r.get(0),
                    )
                    .optional()?;
                prefix.map(|p| tokens::revoked_message(&p, id))
            }
            None => None,
        }
    };
    let Some(message) = done else {
        return Err(StoreError::NotFound(format!(
            "no write token, admin or viewer token, or token id matches {what:?}; `anonstats keys list` shows them"
        )));
    };
    bump(&tx)?;
    tx.commit()?;
    Ok(message)
}

pub fn set_privacy(
    conn: &mut Connection,
    project: &str,
    mode: &PrivacyMode,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let p = project_named(&tx, project)?;
    let allowlist = match mode {
        PrivacyMode::Denylist => None,
        PrivacyMode::Allowlist(names) => Some(serde_json::to_string(names).unwrap_or_default()),
    };
    tx.execute(
        "UPDATE projects SET allowlist = ?2 WHERE id = ?1",
        params![p.id, allowlist],
    )?;
    bump(&tx)?;
    tx.commit()?;
    Ok(())
}
