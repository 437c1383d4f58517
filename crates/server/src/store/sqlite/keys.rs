//! Projects and tokens in the embedded store. Admin and viewer tokens share one table
//! (`admin_tokens`) and its ids; a row's role is the one its token's prefix names.

use crate::store::{PrivacyMode, Project, Role, SecretKey, StoreError, WriteKey};
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
        "SELECT w.token, w.created_ms, w.revoked_ms IS NOT NULL, {PROJECT_COLS}
         FROM write_tokens w JOIN projects p ON p.id = w.project_id ORDER BY p.id, w.created_ms"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(WriteKey {
            token: r.get(0)?,
            created_ms: r.get(1)?,
            revoked: r.get(2)?,
            project: project_of(r, 3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn secret_keys(conn: &Connection) -> Result<Vec<SecretKey>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, prefix, created_ms, revoked_ms IS NOT NULL FROM admin_tokens ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let prefix: String = r.get(1)?;
        let (id, created_ms, revoked) = (r.get(0)?, r.get(2)?, r.get(3)?);
        Ok(Role::of(&prefix).map(|role| SecretKey {
            id,
            role,
            prefix,
            created_ms,
            revoked,
        }))
    })?;
    // Only this module writes the table, always with a role's prefix.
    Ok(rows
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?)
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
    let token = tokens::new_write_token();
    tx.execute(
        "INSERT INTO write_tokens (token, project_id, created_ms) VALUES (?1, ?2, ?3)",
        params![token, id, created],
    )?;
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
    let token = tokens::new_write_token();
    tx.execute(
        "INSERT INTO write_tokens (token, project_id, created_ms) VALUES (?1, ?2, ?3)",
        params![token, p.id, now_ms()],
    )?;
    bump(&tx)?;
    tx.commit()?;
    Ok(token)
}

pub fn create_secret(conn: &mut Connection, role: Role) -> Result<String, StoreError> {
    let token = tokens::new_secret(role);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO admin_tokens (hash, prefix, created_ms) VALUES (?1, ?2, ?3)",
        params![
            tokens::hash_secret(&token),
            tokens::secret_prefix(&token),
            now_ms()
        ],
    )?;
    bump(&tx)?;
    tx.commit()?;
    Ok(token)
}

pub fn role_of(conn: &Connection, token: &str) -> Result<Option<Role>, StoreError> {
    let prefix: Option<String> = conn
        .query_row(
            "SELECT prefix FROM admin_tokens WHERE hash = ?1 AND revoked_ms IS NULL",
            [tokens::hash_secret(token)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(prefix.as_deref().and_then(Role::of))
}

pub fn revoke(conn: &mut Connection, what: &str) -> Result<String, StoreError> {
    let what = what.trim();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let done = if what.starts_with(tokens::WRITE_PREFIX) {
        let n = tx.execute(
            "UPDATE write_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE token = ?1",
            params![what, now],
        )?;
        (n == 1).then(|| format!("revoked write token {what}"))
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
