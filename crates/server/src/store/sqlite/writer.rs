//! Group commit: one thread owns the write connection, drains every queued request and
//! inserts them in one transaction; a second thread answers each request once its commit
//! is on disk, while the writer goes on with the next group.
//!
//! What committed events add to the rollups is kept in memory and folded in at most
//! `fold_after` later (sooner once [`FOLD_EVENTS`] events wait, and before any insight is
//! read), in the transaction of a commit, with the sequence number the rollups count up
//! to (`meta.rollup_seq`). Folding many commits at once writes each rollup row once
//! instead of once per commit. The events past that mark are counted again from the
//! table after a crash, and whenever another connection changed the database meanwhile
//! (erasure, retention, compaction, keys), so the rollups always equal the events.

use super::rollup::{self, Agg};
use crate::metrics::Metrics;
use crate::store::{Inserted, NewEvent, StoreError};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(super) struct Job {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Inserted, StoreError>>,
    /// Its place in the queue's depth, left when the writer takes it.
    pub queued: crate::metrics::Queued,
}

pub(super) enum Msg {
    Insert(Job),
    /// Fold everything committed into the rollups, then answer.
    Settle(Sender<()>),
}

/// Stop draining once this many events are in one transaction, so that one commit
/// never holds up the first waiters for long.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

/// Fold as soon as this many committed events wait, whatever their age.
const FOLD_EVENTS: usize = 200_000;

/// Copy the write-ahead log into the database file once roughly this much event data
/// was committed since the last copy (SQLite's own default is every 4 MB of log).
const CHECKPOINT_AFTER_BYTES: usize = 16 << 20;

/// How long a checkpoint that holds writers back waits for readers before it gives up,
/// and how long until it tries again.
const CHECKPOINT_PATIENCE: Duration = Duration::from_millis(200);
const RESTART_RETRY: Duration = Duration::from_secs(30);

/// Past this size the log is made to start over (and is cut back to it).
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// Page cache of the writer connection (negative: KiB), so the tails of the table and
/// its indexes stay in memory between commits.
const WRITER_CACHE_KIB: i64 = 64 << 10;

/// Copies the log into the database file on its own thread and connection, so that
/// commits go on meanwhile.
struct Checkpointer {
    ask: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(conn: Connection, wal: std::path::PathBuf) -> std::io::Result<Self> {
        // A RESTART holds writers back while it waits for readers of older snapshots (a
        // long export, query or erasure plan): it gives up soon and is asked again later,
        // rather than holding up every commit for as long.
        if let Err(e) = conn.busy_timeout(CHECKPOINT_PATIENCE) {
            tracing::warn!(error = %e, "cannot bound how long a checkpoint waits");
        }
        // One request may wait: asking again while one waits adds nothing.
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("anonstats-checkpoint".into())
            .spawn(move || {
                let mut gave_up: Option<Instant> = None;
                while asked.recv().is_ok() {
                    // A passive checkpoint runs beside the writer, but the log starts over
                    // only when one finishes with nothing new behind it, which never
                    // happens under steady ingest; past a size, hold the writer briefly
                    // so that the log starts over. Not again soon after one gave up: the
                    // reader it waited for is likely still there.
                    let long = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
                    let rested = gave_up.is_none_or(|t| t.elapsed() >= RESTART_RETRY);
                    if long && rested {
                        let done = checkpoint(&conn, "RESTART");
                        gave_up = (!done).then(Instant::now);
                    } else {
                        checkpoint(&conn, "PASSIVE");
                    }
                }
            })?;
        Ok(Checkpointer { ask, thread })
    }

    fn ask(&self) {
        let _ = self.ask.try_send(());
    }

    fn finish(self) {
        drop(self.ask);
        let _ = self.thread.join();
    }
}

/// Commits that may wait for the sync thread.
const SYNC_QUEUE: usize = 256;

type Answer = (oneshot::Sender<Result<Inserted, StoreError>>, Inserted);

/// Makes commits durable on a thread of its own: the writer commits without waiting for
/// the disk (`synchronous = NORMAL`) and goes on with the next group, while this thread
/// flushes the write-ahead log with one `fdatasync` for every commit made before it
/// began, and only then answers their requests.
pub(super) struct Syncer {
    send: Option<std::sync::mpsc::SyncSender<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    pub fn start(wal: std::path::PathBuf) -> std::io::Result<Self> {
        // Bounded, so that a stalled disk holds up the writer too, whose full queue then
        // sheds new requests instead of commits piling up behind the sync.
        let (send, recv) = std::sync::mpsc::sync_channel::<Vec<Answer>>(SYNC_QUEUE);
        let thread = std::thread::Builder::new()
            .name("anonstats-sync".into())
            .spawn(move || {
                let mut log: Option<std::fs::File> = None;
                while let Ok(first) = recv.recv() {
                    let mut answers = first;
                    while let Ok(more) = recv.try_recv() {
                        answers.extend(more);
                    }
                    let synced = sync(&mut log, &wal);
                    for (reply, outcome) in answers {
                        let answer = match &synced {
                            Ok(()) => Ok(outcome),
                            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                                Err(StoreError::DiskFull)
                            }
                            Err(e) => Err(StoreError::Unavailable(format!(
                                "cannot make the commit durable: {e}"
                            ))),
                        };
                        let _ = reply.send(answer);
                    }
                }
            })?;
        Ok(Syncer {
            send: Some(send),
            thread: Some(thread),
        })
    }

    /// Answers these requests once what is committed now is on disk.
    fn answer(&self, answers: Vec<Answer>) {
        if let Some(send) = &self.send {
            let _ = send.send(answers);
        }
    }

    /// Answers what waits and stops.
    fn finish(&mut self) {
        self.send.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sync(log: &mut Option<std::fs::File>, path: &std::path::Path) -> std::io::Result<()> {
    if log.is_none() {
        *log = Some(std::fs::File::open(path)?);
    }
    let result = log.as_ref().map_or(Ok(()), |f| f.sync_data());
    if result.is_err() {
        // Open the log afresh next time.
        *log = None;
    }
    result
}

/// Copies committed pages from the log into the database file; `PASSIVE` without
/// waiting for anyone, `RESTART` holding writers until the log can start over. Returns
/// whether it finished.
fn checkpoint(conn: &Connection, mode: &str) -> bool {
    let busy = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(0)
    });
    match busy {
        Ok(busy) => busy == 0,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint failed; the log keeps the data and the next one retries");
            false
        }
    }
}

pub(super) struct Writer {
    pub conn: Connection,
    /// The write-ahead log's path.
    pub wal: std::path::PathBuf,
    pub syncer: Syncer,
    pub metrics: Arc<Metrics>,
    /// Set while committed events wait to be folded, so readers know to settle first.
    pub unfolded: Arc<AtomicBool>,
    /// When the oldest of them was committed, for `/metrics`.
    pub unfolded_since: Arc<std::sync::Mutex<Option<Instant>>>,
    pub fold_after: Duration,
}

/// The fold state: the rollups count events up to `folded`; `pending` holds what the
/// events after it add, unless `recount` says to count them from the table instead.
struct Fold {
    folded: i64,
    committed: i64,
    /// The next event's sequence number. Given here rather than by SQLite, which would
    /// reuse the numbers of deleted last rows, so numbers past `folded` are always new.
    next_seq: i64,
    pending: Agg,
    pending_events: usize,
    since: Option<Instant>,
    recount: bool,
    /// `PRAGMA data_version` when the last fold ran; it changes only when another
    /// connection commits.
    data_version: i64,
}

impl Writer {
    pub fn run(mut self, checkpoint_conn: Connection, rx: Receiver<Msg>) {
        // SQLite's automatic checkpoint runs inside COMMIT, so every request of that group
        // would wait for it; a thread of its own checkpoints instead.
        for (pragma, value) in [
            ("wal_autocheckpoint", 0),
            ("cache_size", -WRITER_CACHE_KIB),
            ("journal_size_limit", WAL_RESTART_BYTES as i64),
        ] {
            if let Err(e) = self.conn.pragma_update(None, pragma, value) {
                tracing::warn!(error = %e, pragma, "cannot tune the writer connection");
            }
        }
        // The syncer makes each commit durable before it is answered.
        if let Err(e) = self.conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::error!(error = %e, "cannot hand syncing to the sync thread; the writer stops");
            return;
        }
        let checkpointer = match Checkpointer::start(checkpoint_conn, self.wal.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints itself");
                None
            }
        };
        let mut fold = match self.recover() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the rollup mark; the writer stops");
                return;
            }
        };
        self.fold_alone(&mut fold);
        self.publish_lag(&fold);
        let mut since_checkpoint = 0usize;
        loop {
            let msg = match fold.since {
                Some(t) => match rx.recv_timeout(self.fold_after.saturating_sub(t.elapsed())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            let mut jobs = Vec::new();
            let mut settles = Vec::new();
            let mut total = 0;
            let mut next = msg;
            loop {
                match next {
                    Some(Msg::Insert(mut job)) => {
                        job.queued.leave();
                        total += job.events.len();
                        jobs.push(job);
                    }
                    Some(Msg::Settle(reply)) => settles.push(reply),
                    None => {}
                }
                if total >= MAX_EVENTS_PER_COMMIT || !settles.is_empty() {
                    break;
                }
                next = match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break,
                };
            }
            let due = !settles.is_empty()
                || fold.pending_events + total >= FOLD_EVENTS
                || fold.since.is_some_and(|t| t.elapsed() >= self.fold_after);
            if jobs.is_empty() {
                if due {
                    self.fold_alone(&mut fold);
                }
            } else {
                since_checkpoint += self.insert(&mut fold, jobs, total, due);
            }
            // Before the answers: whoever settled sees no lag.
            self.publish_lag(&fold);
            for reply in settles {
                let _ = reply.send(());
            }
            // Requests that arrive meanwhile queue up and go into the next, larger commit.
            if since_checkpoint >= CHECKPOINT_AFTER_BYTES {
                since_checkpoint = 0;
                match &checkpointer {
                    Some(c) => c.ask(),
                    None => {
                        checkpoint(&self.conn, "PASSIVE");
                    }
                }
            }
        }
        self.fold_alone(&mut fold);
        self.syncer.finish();
        if let Some(c) = checkpointer {
            c.finish();
        }
        checkpoint(&self.conn, "PASSIVE");
    }

    fn publish_lag(&self, fold: &Fold) {
        *self
            .unfolded_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = fold.since;
    }

    /// Where the rollups stand: events stored past the mark (a crash before their fold)
    /// are counted from the table at the first fold.
    fn recover(&self) -> rusqlite::Result<Fold> {
        let folded = rollup::folded_upto(&self.conn)?;
        let committed: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok(Fold {
            folded,
            committed,
            next_seq: committed.max(folded) + 1,
            pending: Agg::default(),
            pending_events: 0,
            since: None,
            recount: committed > folded,
            data_version: data_version(&self.conn)?,
        })
    }

    /// Commits one group of requests, folding when `fold_now`, and answers each request;
    /// returns roughly how many bytes of events it wrote.
    fn insert(
        &mut self,
        fold: &mut Fold,
        mut jobs: Vec<Job>,
        total: usize,
        fold_now: bool,
    ) -> usize {
        let bytes: usize = jobs
            .iter()
            .flat_map(|j| &j.events)
            .map(|e| 64 + e.event.len() + e.distinct_id.len() + e.properties.len())
            .sum();
        let outcome = (|| {
            // Immediate: a deferred transaction would take a read snapshot first, and the
            // upgrade to writing fails at once, without waiting, when a checkpoint holds
            // writers back meanwhile.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Number after whatever the file holds: rows that reached it some other way
            // (a restored copy, a tool) must not take the numbers given next. The largest
            // rowid is one descent of the table's b-tree.
            let last: i64 =
                tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            fold.next_seq = fold.next_seq.max(last + 1);
            let outcomes = insert_events(&tx, &mut jobs, &mut fold.next_seq, &mut fold.pending)?;
            let upto = fold.next_seq - 1;
            let version = if fold_now {
                Some(fold_into(&tx, fold, upto)?)
            } else {
                None
            };
            tx.commit()?;
            Ok::<_, rusqlite::Error>((outcomes, version, upto))
        })();
        match outcome {
            Ok((outcomes, version, upto)) => {
                fold.committed = upto;
                fold.pending_events += total;
                fold.since.get_or_insert_with(Instant::now);
                if let Some(v) = version {
                    fold.done(v);
                }
                self.unfolded
                    .store(fold.committed > fold.folded, Ordering::SeqCst);
                self.metrics.commit(jobs.len(), total);
                let answers = jobs
                    .into_iter()
                    .zip(outcomes)
                    .map(|(job, outcome)| (job.reply, outcome))
                    .collect();
                self.syncer.answer(answers);
                bytes
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the requests in it are answered with an error");
                // What was merged may count events that were not stored.
                fold.recount = true;
                let error = StoreError::commit_failed(e);
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
                0
            }
        }
    }

    /// Folds what waits in a transaction of its own.
    fn fold_alone(&mut self, fold: &mut Fold) {
        if fold.committed <= fold.folded && !fold.recount {
            fold.since = None;
            self.unfolded.store(false, Ordering::SeqCst);
            return;
        }
        let done = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version = fold_into(&tx, fold, fold.committed)?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(version)
        })();
        match done {
            Ok(v) => fold.done(v),
            Err(e) => {
                tracing::error!(error = %e, "folding into the rollups failed; it is retried");
                fold.recount = true;
            }
        }
        self.unfolded
            .store(fold.committed > fold.folded, Ordering::SeqCst);
    }
}

impl Fold {
    /// After the commit that folded: everything up to `committed` is counted.
    fn done(&mut self, data_version: i64) {
        self.folded = self.committed;
        self.pending_events = 0;
        self.since = None;
        self.recount = false;
        self.data_version = data_version;
    }
}

/// Writes what the events up to `upto` add into the rollups within `tx` and moves the
/// mark there; returns the data version to compare with at the next fold. On error the
/// pending rows are gone, and the caller recounts.
fn fold_into(tx: &Transaction<'_>, fold: &mut Fold, upto: i64) -> rusqlite::Result<i64> {
    let version = data_version(tx)?;
    let pending = std::mem::take(&mut fold.pending);
    let agg = if fold.recount || version != fold.data_version {
        let mut counted = Agg::default();
        let range = params![fold.folded, upto];
        rollup::count_events(tx, "seq > ?1 AND seq <= ?2", range, &mut counted)?;
        counted
    } else {
        pending
    };
    let started = std::time::Instant::now();
    agg.flush(tx)?;
    rollup::set_folded_upto(tx, upto)?;
    tracing::debug!(
        upto,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "folded into the rollups"
    );
    Ok(version)
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// Inserts the jobs' events numbered from `next_seq` on, adding what each stored one
/// adds to the rollups to `pending` (duplicates add nothing); returns each job's outcome.
fn insert_events(
    tx: &Transaction<'_>,
    jobs: &mut [Job],
    next_seq: &mut i64,
    pending: &mut Agg,
) -> rusqlite::Result<Vec<Inserted>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut insert = tx.prepare_cached(
        // Only a uuid the project already has is a duplicate; any other conflict is an
        // error that fails the commit rather than an event dropped under a 200.
        "INSERT INTO events
         (seq, project_id, uuid, event, distinct_id, ts_ms, received_ms, properties)
         VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (project_id, uuid) DO NOTHING",
    )?;
    for job in jobs {
        let mut out = Inserted::default();
        for e in &mut job.events {
            let n = insert.execute(params![
                e.project_id,
                e.uuid.as_bytes(),
                e.event,
                e.distinct_id,
                e.timestamp_ms,
                e.received_ms,
                e.properties,
                *next_seq
            ])?;
            if n == 1 {
                out.stored += 1;
                *next_seq += 1;
                pending.add(
                    e.project_id,
                    &e.event,
                    &e.distinct_id,
                    e.timestamp_ms,
                    std::mem::take(&mut e.dims),
                );
            } else {
                out.duplicates += 1;
            }
        }
        outcomes.push(out);
    }
    Ok(outcomes)
}
