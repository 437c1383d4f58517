//! Projects and tokens in ClickHouse, so that collectors keep no state of their own.
//!
//! Each table is a `ReplacingMergeTree(version)`: a change inserts the whole row again
//! with a higher version, and reads use `FINAL`. The generation is the highest version of
//! any key table. Writes go to every node, reads to the primary. Creating projects is
//! meant for one administrator at a time: two collectors creating a project in the same
//! instant could pick the same id.

use super::http::{Client, Kind, lit, num};
use super::schema::Layout;
use crate::store::{
    LastAdmin, NewSecret, PrivacyMode, Project, Role, SecretKey, StoreError, WriteKey,
    last_admin_error,
};
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
    /// The token's SHA-256 in hex (or, before the upgrade, the token itself).
    token: String,
    prefix: String,
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
    name: String,
    #[serde(deserialize_with = "num")]
    created_ms: i64,
    /// 0: never.
    #[serde(deserialize_with = "num")]
    expires_ms: i64,
    #[serde(deserialize_with = "num")]
    revoked_ms: i64,
}

impl AdminRow {
    fn key(&self) -> Option<SecretKey> {
        Some(SecretKey {
            id: self.id,
            role: Role::of(&self.prefix)?,
            prefix: self.prefix.clone(),
            name: self.name.clone(),
            created_ms: self.created_ms,
            expires_ms: (self.expires_ms != 0).then_some(self.expires_ms),
            revoked: self.revoked_ms != 0,
        })
    }
}

#[derive(Deserialize)]
struct Name {
    name: String,
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
                "SELECT token, prefix, project_id, created_ms, revoked_ms FROM {} FINAL ORDER BY project_id, created_ms, token",
                self.layout.table("write_tokens")
            ),
        )
    }

    fn admins(&self) -> Result<Vec<AdminRow>, StoreError> {
        self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT id, hash, prefix, name, created_ms, expires_ms, revoked_ms FROM {} FINAL ORDER BY id",
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
                    hash: hex::decode(&t.token).ok()?,
                    prefix: t.prefix,
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
        Ok(self.admins()?.iter().filter_map(AdminRow::key).collect())
    }

    /// Replaces every write token stored whole by its hash and prefix, on every node,
    /// and waits until no node returns a whole one. Existing agents keep working: the
    /// cache looks tokens up by hash.
    pub fn hash_plaintext_tokens(&self) -> Result<usize, StoreError> {
        let table = self.layout.table("write_tokens");
        let plain = format!("startsWith(token, {})", lit(tokens::WRITE_PREFIX));
        let rows: Vec<TokenRow> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT token, prefix, project_id, created_ms, revoked_ms FROM {table} FINAL WHERE {plain}"
            ),
        )?;
        if rows.is_empty() {
            return Ok(0);
        }
        for t in &rows {
            self.put_token(
                &hex::encode(tokens::hash_secret(&t.token)),
                &tokens::secret_prefix(&t.token),
                t.project_id,
                t.created_ms,
                t.revoked_ms,
            )?;
        }
        for node in self.nodes {
            node.execute(
                Kind::Mutation,
                &format!("ALTER TABLE {table} DELETE WHERE {plain}"),
            )?;
        }
        for node in self.nodes {
            super::wait_for_mutations(
                node,
                &self.layout.db,
                "write_tokens",
                std::time::Duration::from_secs(600),
            )?;
        }
        Ok(rows.len())
    }

    pub fn property_names(&self, project_id: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<Name> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT DISTINCT arrayJoin(dim_keys) AS name FROM {} WHERE project_id = {project_id} \
                 ORDER BY name",
                self.layout.events()
            ),
        )?;
        Ok(rows
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n != crate::rollup::FATAL_SITE)
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

    /// Writes a write token's row; `hash` is the token's SHA-256 in hex.
    fn put_token(
        &self,
        hash: &str,
        prefix: &str,
        project_id: i64,
        created_ms: i64,
        revoked_ms: i64,
    ) -> Result<(), StoreError> {
        let version = self.next_version()?;
        self.write(
            "write_tokens",
            serde_json::json!({"token": hash, "prefix": prefix, "project_id": project_id,
                "created_ms": created_ms, "revoked_ms": revoked_ms, "version": version}),
        )
    }

    fn new_write_token(&self, project_id: i64, created_ms: i64) -> Result<String, StoreError> {
        let token = tokens::new_write_token();
        self.put_token(
            &hex::encode(tokens::hash_secret(&token)),
            &tokens::secret_prefix(&token),
            project_id,
            created_ms,
            0,
        )?;
        Ok(token)
    }

    fn put_admin(&self, a: &AdminRow) -> Result<(), StoreError> {
        let version = self.next_version()?;
        self.write(
            "admin_tokens",
            serde_json::json!({"id": a.id, "hash": a.hash, "prefix": a.prefix, "name": a.name,
                "created_ms": a.created_ms, "expires_ms": a.expires_ms,
                "revoked_ms": a.revoked_ms, "version": version}),
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
        // The token first: a project is visible only once its token is.
        let token = self.new_write_token(project.id, project.created_ms)?;
        self.put_project(&project)?;
        Ok((project, token))
    }

    pub fn create_write_key(&self, project: &str) -> Result<String, StoreError> {
        let p = self.project_named(project)?;
        self.new_write_token(p.id, now_ms())
    }

    /// Copies a write token's hash as it is (for migrations).
    pub fn import_write_key(&self, key: &WriteKey) -> Result<(), StoreError> {
        let revoked = if key.revoked { now_ms() } else { 0 };
        self.put_token(
            &hex::encode(&key.hash),
            &key.prefix,
            key.project.id,
            key.created_ms,
            revoked,
        )
    }

    /// Copies a project as it is (for migrations).
    pub fn import_project(&self, p: &Project) -> Result<(), StoreError> {
        self.put_project(p)
    }

    /// Copies an admin or viewer token's hash, name and expiry (for migrations).
    pub fn import_admin(&self, key: &SecretKey, hash: &[u8]) -> Result<(), StoreError> {
        self.put_admin(&AdminRow {
            id: key.id,
            hash: hex::encode(hash),
            prefix: key.prefix.clone(),
            name: key.name.clone(),
            created_ms: key.created_ms,
            expires_ms: key.expires_ms.unwrap_or(0),
            revoked_ms: if key.revoked { now_ms() } else { 0 },
        })
    }

    pub fn create_secret(&self, role: Role, new: &NewSecret) -> Result<String, StoreError> {
        let token = tokens::new_secret(role);
        let id = self.admins()?.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        self.put_admin(&AdminRow {
            id,
            hash: hex::encode(tokens::hash_secret(&token)),
            prefix: tokens::secret_prefix(&token),
            name: new.name.clone(),
            created_ms: now_ms(),
            expires_ms: new.expires_ms.unwrap_or(0),
            revoked_ms: 0,
        })?;
        Ok(token)
    }

    pub fn secret_of(&self, token: &str) -> Result<Option<SecretKey>, StoreError> {
        let rows: Vec<AdminRow> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT id, hash, prefix, name, created_ms, expires_ms, revoked_ms FROM {} FINAL \
                 WHERE hash = {} LIMIT 1",
                self.layout.table("admin_tokens"),
                lit(&hex::encode(tokens::hash_secret(token)))
            ),
        )?;
        Ok(rows.first().and_then(AdminRow::key))
    }

    pub fn revoke(&self, what: &str, last: LastAdmin) -> Result<String, StoreError> {
        let what = what.trim();
        let now = now_ms();
        if what.starts_with(tokens::WRITE_PREFIX) {
            // Whole, or by the prefix `keys list` shows.
            let found: Vec<TokenRow> = if what.len() > tokens::secret_prefix(what).len() {
                let hash = hex::encode(tokens::hash_secret(what));
                self.tokens()?
                    .into_iter()
                    .filter(|t| t.token == hash)
                    .collect()
            } else {
                self.tokens()?
                    .into_iter()
                    .filter(|t| t.prefix == what)
                    .collect()
            };
            let t = match found.as_slice() {
                [] => return Err(not_found(what)),
                [t] => t,
                many => {
                    return Err(StoreError::Invalid(format!(
                        "{what:?} matches {} write tokens; give the whole token",
                        many.len()
                    )));
                }
            };
            if t.revoked_ms == 0 {
                self.put_token(&t.token, &t.prefix, t.project_id, t.created_ms, now)?;
            }
            return Ok(format!("revoked write token {}…", t.prefix));
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
                let working = |k: &AdminRow| {
                    k.key()
                        .is_some_and(|k| k.role == Role::Admin && k.active(now))
                };
                if last == LastAdmin::Keep
                    && working(a)
                    && !admins.iter().any(|o| o.id != a.id && working(o))
                {
                    return Err(last_admin_error(a.id));
                }
                if a.revoked_ms == 0 {
                    self.put_admin(&AdminRow {
                        id: a.id,
                        hash: a.hash.clone(),
                        prefix: a.prefix.clone(),
                        name: a.name.clone(),
                        created_ms: a.created_ms,
                        expires_ms: a.expires_ms,
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
