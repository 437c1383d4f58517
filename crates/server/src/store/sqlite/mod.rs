//! The embedded store: one SQLite file in the data dir, in WAL mode, with full sync.

mod adhoc;
pub mod backup;
mod erasure;
mod insights;
mod keys;
mod lock;
mod pairs;
mod query;
mod rollup;
mod schema;
mod spans;
mod writer;

use crate::metrics::{Metrics, QueueDepth, StoreVitals};
use crate::store::{
    BoxFuture, EventStore, ExportQuery, Inserted, KeyStore, LastAdmin, NewEvent, NewSecret,
    PrivacyMode, Project, Role, SecretKey, StoreError, StoredEvent, WriteKey,
};
use rusqlite::{Connection, OpenFlags, params};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "anonstats.db";

pub struct SqliteStore {
    path: PathBuf,
    /// For keys and small reads; exports open their own connection.
    control: Mutex<Connection>,
    writer: RwLock<Option<SyncSender<writer::Msg>>>,
    /// Set while committed events wait for the writer to fold them into the rollups.
    unfolded: Arc<AtomicBool>,
    /// How long a committed event may wait to be folded into the rollups.
    fold_after: std::time::Duration,
    /// Since when the oldest committed event not yet folded waits (the writer sets it).
    unfolded_since: Arc<Mutex<Option<std::time::Instant>>>,
    /// The writer's queue, as `/metrics` shows it.
    queued: RwLock<Arc<QueueDepth>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Readers for insights, kept between questions.
    readers: Mutex<Vec<Connection>>,
    /// Held while this process may write events (see lock.rs).
    lock: Mutex<Option<std::fs::File>>,
    /// Dropping the sender stops the compactor.
    compactor: Mutex<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>>,
}

/// Page cache of each pooled reader (KiB).
const READER_CACHE_KIB: i64 = 64 << 10;

/// Readers kept between questions.
const READERS_KEPT: usize = 4;

/// A pooled reader; goes back to the pool when dropped.
struct PooledReader<'a> {
    conn: Option<Connection>,
    pool: &'a Mutex<Vec<Connection>>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READERS_KEPT {
            pool.extend(self.conn.take());
        }
    }
}

/// Flushes a directory's entries (the names of the files and dirs in it) to disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    // A relative path's last parent is "": the current dir.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("cannot sync dir {}: {e}", dir.display())))
}

/// How long committed events may wait to be folded into the rollups by default.
pub const DEFAULT_FOLD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the compactor looks for spans that ended since it last looked.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl SqliteStore {
    /// Opens the store in `data_dir`, which must hold one: commands that read or change
    /// a store create nothing in a mistyped directory.
    pub fn open_existing(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.join(DB_FILE).is_file() {
            return Err(StoreError::NoStore(data_dir.display().to_string()));
        }
        Self::open(data_dir)
    }

    /// Opens (creating when absent) the store in `data_dir`. Events can be inserted only
    /// after [`SqliteStore::start_writer`].
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        // The dirs this creates, outermost first: each one's name lives in its parent.
        let created: Vec<PathBuf> = data_dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        // The events and the write tokens are the owner's alone: the dirs made here are
        // 0700 and the database 0600 (SQLite gives its log and index files the database's
        // mode).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create data dir {}: {e}",
                    data_dir.display()
                ))
            })?;
        let path = data_dir.join(DB_FILE);
        let unavailable = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
        };
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| unavailable(&e))?;
        let mut conn = Connection::open(&path).map_err(|e| unavailable(&e))?;
        schema::configure(&conn)?;
        rollup::register_functions(&conn)?;
        let found = schema::stored_version(&conn)?;
        if found > schema::version() {
            return Err(StoreError::NewerSchema {
                path: path.display().to_string(),
                found,
                known: schema::version(),
            });
        }
        schema::migrate(&mut conn)?;
        // The database file and its log now exist; their names, and those of the dirs made
        // for them, must be on disk too before anything is acknowledged.
        sync_dir(data_dir)?;
        for dir in created.iter().rev() {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(SqliteStore {
            path,
            control: Mutex::new(conn),
            writer: RwLock::new(None),
            unfolded: Arc::new(AtomicBool::new(false)),
            fold_after: DEFAULT_FOLD_AFTER,
            unfolded_since: Arc::default(),
            queued: RwLock::default(),
            writer_thread: Mutex::new(None),
            compactor: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            lock: Mutex::new(None),
        })
    }

    /// Takes the data dir for this process's writer, or says which process has it.
    /// [`SqliteStore::start_writer`] takes it too; callers take it first to fail early.
    pub fn lock(&self) -> Result<(), StoreError> {
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if lock.is_none() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            *lock = Some(lock::take(dir)?);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long committed events may wait before the rollups count them (set before
    /// [`SqliteStore::start_writer`]; insights never see them waiting).
    pub fn with_fold_after(mut self, fold_after: std::time::Duration) -> Self {
        self.fold_after = fold_after;
        self
    }

    /// Makes the rollups count every event committed so far, so that what is read next
    /// agrees with the events. Cheap when nothing waits or no writer runs here.
    pub fn settle(&self) -> Result<(), StoreError> {
        if !self.unfolded.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(sender) = self
            .writer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Ok(());
        };
        let (reply, answer) = std::sync::mpsc::channel();
        if sender.send(writer::Msg::Settle(reply)).is_err() {
            return Ok(());
        }
        answer
            .recv()
            .map_err(|_| StoreError::Unavailable("the writer stopped before folding".into()))
    }

    /// Starts the group-commit writer; `queue` bounds how many requests may wait.
    pub fn start_writer(&self, metrics: Arc<Metrics>, queue: usize) -> Result<(), StoreError> {
        self.lock()?;
        let conn = Connection::open(&self.path)?;
        schema::configure(&conn)?;
        rollup::register_functions(&conn)?;
        let checkpoint_conn = Connection::open(&self.path)?;
        schema::configure(&checkpoint_conn)?;
        // The write-ahead log is made again at each start (SQLite deletes it when the last
        // connection closes) and the writer syncs its contents itself: its name in the
        // data dir is synced here, before the first commit can be acknowledged.
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        // Until the writer has looked, events from before a crash may wait to be folded.
        self.unfolded.store(true, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        metrics.store_queue.set_bound(queue.max(1));
        *self.queued.write().unwrap_or_else(|p| p.into_inner()) = metrics.store_queue.clone();
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let syncer = writer::Syncer::start(wal.clone())
            .map_err(|e| StoreError::Backend(format!("cannot start the sync thread: {e}")))?;
        let writer = writer::Writer {
            conn,
            wal,
            syncer,
            metrics,
            unfolded: self.unfolded.clone(),
            unfolded_since: self.unfolded_since.clone(),
            fold_after: self.fold_after,
        };
        let handle = std::thread::Builder::new()
            .name("anonstats-writer".into())
            .spawn(move || writer.run(checkpoint_conn, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        *self.writer.write().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        *self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Starts the thread that compacts rollups of past days (see spans.rs) now and then.
    /// A bulk load of past days compacts once at its end instead ([`SqliteStore::compact`]).
    pub fn start_compactor(&self) -> Result<(), StoreError> {
        let mut conn = Connection::open(&self.path)?;
        schema::configure(&conn)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("anonstats-compactor".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError::Timeout;
                let stop_asked = || {
                    !matches!(
                        stopped.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Empty)
                    )
                };
                loop {
                    match spans::compact(&mut conn, spans::today(), &stop_asked) {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(spans = n, "compacted rollups"),
                        Err(e) => {
                            tracing::warn!(error = %e, "compaction failed; it runs again later")
                        }
                    }
                    if stopped.recv_timeout(COMPACT_EVERY) != Err(Timeout) {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the compactor thread: {e}")))?;
        *self.compactor.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, handle));
        Ok(())
    }

    /// Compacts every rollup span that is due now, in this thread; returns how many.
    pub fn compact(&self) -> Result<usize, StoreError> {
        self.control(|c| Ok(spans::compact(c, spans::today(), &|| false)?))
    }

    /// Stops accepting inserts, lets the writer commit what is queued, and waits for it.
    pub fn close(&self) {
        let compactor = self
            .compactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, handle)) = compactor {
            drop(stop);
            let _ = handle.join();
        }
        self.writer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// A new read-only connection, for long reads that must not hold the control lock.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        rollup::register_functions(&conn)?;
        Ok(conn)
    }

    /// A reader for insights, which sees every committed event in the rollups. Readers
    /// are kept for the next question so that their page caches stay warm.
    fn settled_reader(&self) -> Result<PooledReader<'_>, StoreError> {
        self.settle()?;
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = self.reader()?;
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c
            }
        };
        Ok(PooledReader {
            conn: Some(conn),
            pool: &self.readers,
        })
    }

    fn control<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.control.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

impl EventStore for SqliteStore {
    fn insert(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        let sender = self
            .writer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let queue = self
            .queued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            let sender = sender
                .ok_or_else(|| StoreError::Unavailable("the collector is shutting down".into()))?;
            let (reply, answer) = oneshot::channel();
            let queued = queue.enter(events.len(), events.iter().map(NewEvent::size).sum());
            sender
                .try_send(writer::Msg::Insert(writer::Job {
                    events,
                    reply,
                    queued,
                }))
                .map_err(|e| match e {
                    TrySendError::Full(_) => StoreError::Overloaded,
                    TrySendError::Disconnected(_) => {
                        StoreError::Unavailable("the collector is shutting down".into())
                    }
                })?;
            answer.await.map_err(|_| {
                StoreError::Unavailable("the writer stopped before committing".into())
            })?
        })
    }

    fn export(
        &self,
        q: &ExportQuery,
        each: &mut dyn FnMut(StoredEvent) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(
            "SELECT project_id, uuid, event, distinct_id, ts_ms, properties FROM events
             WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR ts_ms >= ?2) AND (?3 IS NULL OR ts_ms < ?3)
             ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![q.project_id, q.from_ms, q.to_ms])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let uuid: Vec<u8> = row.get(1)?;
            each(StoredEvent {
                project_id: row.get(0)?,
                uuid: Uuid::from_slice(&uuid).map_err(|e| StoreError::Backend(e.to_string()))?,
                event: row.get(2)?,
                distinct_id: row.get(3)?,
                timestamp_ms: row.get(4)?,
                properties: row.get(5)?,
            })?;
            n += 1;
        }
        Ok(n)
    }

    fn vitals(&self) -> StoreVitals {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size_bytes = [self.path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                // The log is absent while no connection is open.
                Some((name, std::fs::metadata(p).map_or(0, |m| m.len())))
            })
            .collect();
        let since = *self
            .unfolded_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        StoreVitals {
            size_bytes,
            rollup_lag: since.map(|t| t.elapsed()).unwrap_or_default(),
        }
    }
}

impl KeyStore for SqliteStore {
    fn generation(&self) -> Result<i64, StoreError> {
        self.control(|c| keys::generation(c))
    }
    fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.control(|c| keys::projects(c))
    }
    fn write_keys(&self) -> Result<Vec<WriteKey>, StoreError> {
        self.control(|c| keys::write_keys(c))
    }
    fn secret_keys(&self) -> Result<Vec<SecretKey>, StoreError> {
        self.control(|c| keys::secret_keys(c))
    }
    fn create_project(&self, name: &str) -> Result<(Project, String), StoreError> {
        self.control(|c| keys::create_project(c, name))
    }
    fn create_write_key(&self, project: &str) -> Result<String, StoreError> {
        self.control(|c| keys::create_write_key(c, project))
    }
    fn create_secret(&self, role: Role, new: &NewSecret) -> Result<String, StoreError> {
        self.control(|c| keys::create_secret(c, role, new))
    }
    fn secret_of(&self, token: &str) -> Result<Option<SecretKey>, StoreError> {
        self.control(|c| keys::secret_of(c, token))
    }
    fn revoke(&self, what: &str, last: LastAdmin) -> Result<String, StoreError> {
        self.control(|c| keys::revoke(c, what, last))
    }
    fn set_privacy(&self, project: &str, mode: PrivacyMode) -> Result<(), StoreError> {
        self.control(|c| keys::set_privacy(c, project, &mode))
    }
    fn property_names(&self, project_id: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.settled_reader()?;
        keys::property_names(&conn, project_id)
    }
}
