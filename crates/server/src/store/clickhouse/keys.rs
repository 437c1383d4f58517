//! Projects and tokens in ClickHouse, so that collectors keep no state of their own.
//!
//! Each table is a `ReplacingMergeTree(version)`: a change inserts the whole row again
//! with a higher version, and reads use `FINAL`. The generation is the highest version of
//! any key table. Writes go to every node, reads to the primary. Creating projects is
//! meant for one administrator at a time: two collectors creating a project in the same
//! instant could pick the same id.

use super::http::{Client, Kind, lit, num};
use super::schema::Layout;
use crate::store::{PrivacyMode, Project, Role, SecretKey, StoreError, WriteKey};
use crate::tokens;
use serde::Deserialize;

pub struct Keys<'a> {
    pub primary: &'a Client,
    pub nodes: &'a [Client],
    pub layout: &'a Layout,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Deserialize)]
struct ProjectRow {
    #[serde(deserialize_with = "num")]
    id: i64,
    name: String,
    #[serde(deserialize_with = "num")]
    created_ms: i64,
    allowlist: String,
    has_allowlist: u8,
}

impl ProjectRow {
    fn project(self) -> Project {
        Project {
            id: self.id,
            name: self.name,
            created_ms: self.created_ms,
            privacy: if self.has_allowlist == 1 {
                PrivacyMode::Allowlist(serde_json::from_str(&self.allowlist).unwrap_or_default())
            } else {
                PrivacyMode::Denylist
            },
        }
    }
}

#[derive(Deserialize)]
struct TokenRow {
    token: String,
    #[serde(deserialize_with = "num")]
    project_id: i64,
    #[serde(deserialize_with = "num")]
    created_ms: i64,
    #[serde(deserialize_with = "num")]
    revoked_ms: i64,
}

#[derive(Deserialize)]
struct AdminRow {
    #[serde(deserialize_with = "num")]
    id: i64,
    hash: String,
    prefix: String,
    #[serde(deserialize_with = "num")]
    created_ms: i64,
    #[serde(deserialize_with = "num")]
    revoked_ms: i64,
}

#[derive(Deserialize)]
struct Prefix {
    prefix: String,
}

#[derive(Deserialize)]
struct One {
    #[serde(deserialize_with = "num")]
    v: i64,
}

impl Keys<'_> {
    pub fn generation(&self) -> Result<i64, StoreError> {
        let t = |n: &str| self.layout.table(n);
        let rows: Vec<One> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT max(v) AS v FROM (SELECT max(version) AS v FROM {} UNION ALL \
                 SELECT max(version) AS v FROM {} UNION ALL SELECT max(version) AS v FROM {})",
                t("projects"),
                t("write_tokens"),
                t("admin_tokens")
            ),
        )?;
        Ok(rows.first().map_or(0, |r| r.v))
    }

    /// A version above every existing one, and near the clock so that separate
    /// collectors rarely pick the same.
    fn next_version(&self) -> Result<i64, StoreError> {
        let now_us = chrono::Utc::now().timestamp_micros();
        Ok(now_us.max(self.generation()? + 1))
    }

    fn write(&self, table: &str, row: serde_json::Value) -> Result<(), StoreError> {
        let body = format!("{row}\n");
        for node in self.nodes {
            node.insert(&self.layout.table(table), body.as_bytes(), &[])?;
        }
        Ok(())
    }

    pub fn projects(&self) -> Result<Vec<Project>, StoreError> {
        let rows: Vec<ProjectRow> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT id, name, created_ms, allowlist, has_allowlist FROM {} FINAL ORDER BY id",
                self.layout.table("projects")
            ),
        )?;
        Ok(rows.into_iter().map(ProjectRow::project).collect())
    }

    fn project_named(&self, name: &str) -> Result<Project, StoreError> {
        self.projects()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no project named {name:?}; `anonstats keys list` shows them"
                ))
            })
    }

    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT token, project_id, created_ms, revoked_ms FROM {} FINAL ORDER BY project_id, created_ms, token",
                self.layout.table("write_tokens")
            ),
        )
    }

    fn admins(&self) -> Result<Vec<AdminRow>, StoreError> {
        self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT id, hash, prefix, created_ms, revoked_ms FROM {} FINAL ORDER BY id",
                self.layout.table("admin_tokens")
            ),
        )
    }

    pub fn write_keys(&self) -> Result<Vec<WriteKey>, StoreError> {
        let projects = self.projects()?;
        Ok(self
            .tokens()?
            .into_iter()
            .filter_map(|t| {
                let project = projects.iter().find(|p| p.id == t.project_id)?.clone();
                Some(WriteKey {
                    token: t.token,
                    project,
                    created_ms: t.created_ms,
                    revoked: t.revoked_ms != 0,
                })
            })
            .collect())
    }

    /// Admin and viewer tokens share `admin_tokens` and its ids; a row's role is the one
    /// its token's prefix names.
    pub fn secret_keys(&self) -> Result<Vec<SecretKey>, StoreError> {
        Ok(self
            .admins()?
            .into_iter()
            .filter_map(|a| {
                Some(SecretKey {
                    id: a.id,
                    role: Role::of(&a.prefix)?,
                    prefix: a.prefix,
                    created_ms: a.created_ms,
                    revoked: a.revoked_ms != 0,
                })
            })
            .collect())
    }

    fn put_project(&self, p: &Project) -> Result<(), StoreError> {
        let (allowlist, has) = match &p.privacy {
            PrivacyMode::Denylist => (String::new(), 0),
            PrivacyMode::Allowlist(names) => (serde_json::to_string(names).unwrap_or_default(), 1),
        };
        let version = self.next_version()?;
        self.write(
            "projects",
            serde_json::json!({"id": p.id, "name": p.name, "created_ms": p.created_ms,
                "allowlist": allowlist, "has_allowlist": has, "version": version}),
        )
    }

    fn put_token(
        &self,
        token: &str,
        project_id: i64,
        created_ms: i64,
        revoked_ms: i64,
    ) -> Result<(), StoreError> {
        let version = self.next_version()?;
        self.write(
            "write_tokens",
            serde_json::json!({"token": token, "project_id": project_id, "created_ms": created_ms,
                "revoked_ms": revoked_ms, "version": version}),
        )
    }

    fn put_admin(&self, a: &AdminRow) -> Result<(), StoreError> {
        let version = self.next_version()?;
        self.write(
            "admin_tokens",
            serde_json::json!({"id": a.id, "hash": a.hash, "prefix": a.prefix,
                "created_ms": a.created_ms, "revoked_ms": a.revoked_ms, "version": version}),
        )
    }

    pub fn create_project(&self, name: &str) -> Result<(Project, String), StoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(StoreError::Invalid(
                "a project name must be 1 to 100 characters".into(),
            ));
        }
        let existing = self.projects()?;
        if existing.iter().any(|p| p.name == name) {
            return Err(StoreError::Invalid(format!(
                "a project named {name:?} exists already; use `anonstats keys create-write-key {name}` for another token"
            )));
        }
        let project = Project {
            id: existing.iter().map(|p| p.id).max().unwrap_or(0) + 1,
            name: name.to_string(),
            created_ms: now_ms(),
            privacy: PrivacyMode::Denylist,
        };
        let token = tokens::new_write_token();
        // The token first: a project is visible only once its token is.
        self.put_token(&token, project.id, project.created_ms, 0)?;
        self.put_project(&project)?;
        Ok((project, token))
    }

    pub fn create_write_key(&self, project: &str) -> Result<String, StoreError> {
        let p = self.project_named(project)?;
        let token = tokens::new_write_token();
        self.put_token(&token, p.id, now_ms(), 0)?;
        Ok(token)
    }

    /// Copies a write token as it is (for migrations).
    pub fn import_write_key(&self, key: &WriteKey) -> Result<(), StoreError> {
        let revoked = if key.revoked { now_ms() } else { 0 };
        self.put_token(&key.token, key.project.id, key.created_ms, revoked)
    }

    /// Copies a project as it is (for migrations).
    pub fn import_project(&self, p: &Project) -> Result<(), StoreError> {
        self.put_project(p)
    }

    /// Copies an admin token's hash (for migrations).
    pub fn import_admin(
        &self,
        id: i64,
        hash: &[u8],
        prefix: &str,
        created_ms: i64,
        revoked: bool,
    ) -> Result<(), StoreError> {
        self.put_admin(&AdminRow {
            id,
            hash: hex::encode(hash),
            prefix: prefix.to_string(),
            created_ms,
            revoked_ms: if revoked { now_ms() } else { 0 },
        })
    }

    pub fn create_secret(&self, role: Role) -> Result<String, StoreError> {
        let token = tokens::new_secret(role);
        let id = self.admins()?.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        self.put_admin(&AdminRow {
            id,
            hash: hex::encode(tokens::hash_secret(&token)),
            prefix: tokens::secret_prefix(&token),
            created_ms: now_ms(),
            revoked_ms: 0,
        })?;
        Ok(token)
    }

    pub fn role_of(&self, token: &str) -> Result<Option<Role>, StoreError> {
        let rows: Vec<Prefix> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT prefix FROM {} FINAL WHERE hash = {} AND revoked_ms = 0 LIMIT 1",
                self.layout.table("admin_tokens"),
                lit(&hex::encode(tokens::hash_secret(token)))
            ),
        )?;
        Ok(rows.first().and_then(|r| Role::of(&r.prefix)))
    }

    pub fn revoke(&self, what: &str) -> Result<String, StoreError> {
        let what = what.trim();
        let now = now_ms();
        if what.starts_with(tokens::WRITE_PREFIX) {
            let Some(t) = self.tokens()?.into_iter().find(|t| t.token == what) else {
                return Err(not_found(what));
            };
            if t.revoked_ms == 0 {
                self.put_token(&t.token, t.project_id, t.created_ms, now)?;
            }
            return Ok(format!("revoked write token {what}"));
        }
        let admins = self.admins()?;
        let found: Vec<&AdminRow> = if what.len() > tokens::secret_prefix(what).len() {
            let hash = hex::encode(tokens::hash_secret(what));
            admins.iter().filter(|a| a.hash == hash).collect()
        } else if let Ok(id) = what.parse::<i64>() {
            admins.iter().filter(|a| a.id == id).collect()
        } else {
            admins.iter().filter(|a| a.prefix == what).collect()
        };
        match found.as_slice() {
            [] => Err(not_found(what)),
            [a] => {
                if a.revoked_ms == 0 {
                    self.put_admin(&AdminRow {
                        id: a.id,
                        hash: a.hash.clone(),
                        prefix: a.prefix.clone(),
                        created_ms: a.created_ms,
                        revoked_ms: now,
                    })?;
                }
                Ok(tokens::revoked_message(&a.prefix, a.id))
            }
            many => Err(StoreError::Invalid(format!(
                "{what:?} matches {} admin or viewer tokens; revoke by id (`anonstats keys list`)",
                many.len()
            ))),
        }
    }

    pub fn set_privacy(&self, project: &str, mode: PrivacyMode) -> Result<(), StoreError> {
        let mut p = self.project_named(project)?;
        p.privacy = mode;
        self.put_project(&p)
    }
}

fn not_found(what: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no write token, admin or viewer token, or token id matches {what:?}; `anonstats keys list` shows them"
    ))
}
