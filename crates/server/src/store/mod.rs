//! Storage behind two traits: [`EventStore`] (events in, events out) and [`KeyStore`]
//! (projects, write tokens, admin and viewer tokens). The embedded SQLite store implements
//! both.

pub mod clickhouse;
pub mod sqlite;

pub use crate::tokens::Role;
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Too much is queued: the caller should retry shortly (503 + Retry-After).
    #[error("the collector is overloaded; retry in a moment")]
    Overloaded,
    /// The disk under the store is full: nothing of the request was stored (503).
    #[error("the collector's disk is full: nothing was stored; retry later")]
    DiskFull,
    /// The storage backend cannot be reached or is shutting down (503).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Backend(String),
    /// Another process writes to the same data dir.
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The store was written by a newer release, whose schema this one does not know.
    #[error(
        "{path} was written by a newer anonstats (schema version {found}; this one knows \
         versions up to {known}): run that release or a later one, or restore a backup \
         this one made"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    /// A command that reads a store was pointed at a directory without one.
    #[error(
        "no store at {0}; pass --data-dir with the directory `anonstats serve` uses, or \
         --config with serve's config file (or set ANONSTATS_DATA_DIR)"
    )]
    NoStore(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::DiskFull;
        }
        StoreError::Backend(e.to_string())
    }
}

impl StoreError {
    /// A commit that failed: a full disk says so, anything else leaves the store
    /// unavailable for now.
    pub fn commit_failed(e: rusqlite::Error) -> Self {
        match StoreError::from(e) {
            StoreError::Backend(text) => StoreError::Unavailable(text),
            other => other,
        }
    }
}

/// An event that passed decoding and the privacy filter.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub project_id: i64,
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    /// The filtered properties as a JSON object text.
    pub properties: String,
    /// What the event adds to the rollups ([`crate::rollup::dims`]).
    pub dims: crate::rollup::Dims,
}

impl NewEvent {
    /// Roughly what the event holds in memory, in bytes.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.event.len()
            + self.distinct_id.len()
            + 2 * self.properties.len()
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub project_id: i64,
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    pub timestamp_ms: i64,
    pub properties: String,
}

/// What one insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    pub stored: usize,
    /// Events whose uuid the project already had.
    pub duplicates: usize,
}

/// Which stored events an export streams.
#[derive(Debug, Clone, Default)]
pub struct ExportQuery {
    pub project_id: Option<i64>,
    /// Inclusive lower bound, Unix milliseconds.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub to_ms: Option<i64>,
}

pub trait EventStore: Send + Sync + 'static {
    /// Stores the events durably; resolves only once they are committed.
    fn insert(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Inserted, StoreError>>;

    /// Streams matching events in time order to `each` (blocking).
    fn export(
        &self,
        query: &ExportQuery,
        each: &mut dyn FnMut(StoredEvent) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError>;

    /// What `/metrics` shows of the store: its size on disk and how far its rollups
    /// trail (blocking; figures that cost a query are cached).
    fn vitals(&self) -> crate::metrics::StoreVitals {
        crate::metrics::StoreVitals::default()
    }
}

/// How a project filters properties before storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyMode {
    /// Drop the default denylist of identifying properties, keep the rest.
    Denylist,
    /// Keep only these properties (after the denylist).
    Allowlist(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub created_ms: i64,
    pub privacy: PrivacyMode,
}

/// A write token as the key listing shows it: its hash and first characters, never the
/// token itself (only its hash is stored).
#[derive(Debug, Clone)]
pub struct WriteKey {
    /// SHA-256 of the token ([`crate::tokens::hash_secret`]).
    pub hash: Vec<u8>,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub project: Project,
    pub created_ms: i64,
    pub revoked: bool,
}

/// An admin or viewer token as the key listing shows it: never the token itself.
#[derive(Debug, Clone)]
pub struct SecretKey {
    pub id: i64,
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// What the person who made it called it ("" when unnamed).
    pub name: String,
    pub created_ms: i64,
    /// When it stops working (Unix milliseconds); `None`: never.
    pub expires_ms: Option<i64>,
    pub revoked: bool,
}

impl SecretKey {
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// Whether it grants anything at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        !self.revoked && !self.expired_at(now_ms)
    }
}

/// What to make an admin or viewer token with.
#[derive(Debug, Clone, Default)]
pub struct NewSecret {
    pub name: String,
    pub expires_ms: Option<i64>,
}

/// What a presented admin or viewer token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Valid(Role),
    /// It was valid until this time (Unix milliseconds).
    Expired(i64),
    /// Revoked, or never made.
    Unknown,
}

/// Whether revoking an admin token may leave none that works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastAdmin {
    Keep,
    /// `keys revoke --force`.
    MayRevoke,
}

/// The refusal to revoke the only admin token that still works.
pub fn last_admin_error(id: i64) -> StoreError {
    StoreError::Invalid(format!(
        "admin token {id} is the last admin token that works: without one, nobody can read raw \
         events, run SQL, erase or scrape /metrics; make another with `anonstats keys \
         create-admin` first, or pass --force"
    ))
}

pub trait KeyStore: Send + Sync + 'static {
    /// A number that changes whenever any key or project changes.
    fn generation(&self) -> Result<i64, StoreError>;
    fn projects(&self) -> Result<Vec<Project>, StoreError>;
    /// Every write token, revoked ones included.
    fn write_keys(&self) -> Result<Vec<WriteKey>, StoreError>;
    /// Every admin and viewer token, revoked ones included.
    fn secret_keys(&self) -> Result<Vec<SecretKey>, StoreError>;
    /// Creates a project and its first write token.
    fn create_project(&self, name: &str) -> Result<(Project, String), StoreError>;
    /// Adds a write token to an existing project.
    fn create_write_key(&self, project: &str) -> Result<String, StoreError>;
    /// Creates an admin or viewer token; only its hash is kept, beside the other's.
    fn create_secret(&self, role: Role, new: &NewSecret) -> Result<String, StoreError>;
    /// Creates an unnamed admin token that never expires.
    fn create_admin(&self) -> Result<String, StoreError> {
        self.create_secret(Role::Admin, &NewSecret::default())
    }
    /// The stored row of this admin or viewer token, revoked or expired ones included.
    fn secret_of(&self, token: &str) -> Result<Option<SecretKey>, StoreError>;
    /// What this admin or viewer token is now.
    fn secret_state(&self, token: &str) -> Result<SecretState, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        Ok(match self.secret_of(token)? {
            Some(k) if k.revoked => SecretState::Unknown,
            Some(k) if k.expired_at(now) => SecretState::Expired(k.expires_ms.unwrap_or(now)),
            Some(k) => SecretState::Valid(k.role),
            None => SecretState::Unknown,
        })
    }
    /// The role of this admin or viewer token, if it exists, is not revoked and has not
    /// expired.
    fn role_of(&self, token: &str) -> Result<Option<Role>, StoreError> {
        Ok(match self.secret_state(token)? {
            SecretState::Valid(role) => Some(role),
            _ => None,
        })
    }
    /// Revokes a write token (whole or by its listed prefix), or an admin or viewer token
    /// given whole, by prefix or by id. The last admin token that works is kept unless
    /// `last` says it may go.
    fn revoke(&self, token_or_id: &str, last: LastAdmin) -> Result<String, StoreError>;
    fn set_privacy(&self, project: &str, mode: PrivacyMode) -> Result<(), StoreError>;
    /// The property names seen in the project's stored events (of the rollups, and of
    /// the newest events), to warn about an allowlist name that matches none.
    fn property_names(&self, project_id: i64) -> Result<Vec<String>, StoreError>;
}
