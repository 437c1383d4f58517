//! Group commit: one thread owns the write connection, drains every queued request,
//! inserts them in one transaction and answers each once the commit is on disk.

use super::rollup::Agg;
use crate::metrics::Metrics;
use crate::store::{Inserted, NewEvent, StoreError};
use rusqlite::{Connection, params};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub(super) struct Job {
    pub events: Vec<NewEvent>,
    /// What the events add to the rollups, counted by the request's task so that the one
    /// writer thread only merges.
    pub rollup: Agg,
    pub reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// Stop draining once this many events are in one transaction, so that one commit
/// never holds up the first waiters for long.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

/// Copy the write-ahead log into the database file once roughly this much event data
/// was committed since the last copy (SQLite's own default is every 4 MB of log).
const CHECKPOINT_AFTER_BYTES: usize = 16 << 20;

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
    fn start(conn: Connection) -> std::io::Result<Self> {
        // One request may wait: asking again while one waits adds nothing.
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("anonstats-checkpoint".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    checkpoint(&conn);
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

pub(super) fn run(
    mut conn: Connection,
    checkpoint_conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
) {
    // SQLite's automatic checkpoint runs inside COMMIT, so every request of that group
    // would wait for it; a thread of its own checkpoints instead.
    for (pragma, value) in [("wal_autocheckpoint", 0), ("cache_size", -WRITER_CACHE_KIB)] {
        if let Err(e) = conn.pragma_update(None, pragma, value) {
            tracing::warn!(error = %e, pragma, "cannot tune the writer connection");
        }
    }
    let checkpointer = match Checkpointer::start(checkpoint_conn) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints itself");
            None
        }
    };
    let mut since_checkpoint = 0usize;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut total = jobs[0].events.len();
        while total < MAX_EVENTS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let bytes: usize = jobs
            .iter()
            .flat_map(|j| &j.events)
            .map(|e| 64 + e.event.len() + e.distinct_id.len() + e.properties.len())
            .sum();
        match commit(&mut conn, &mut jobs) {
            Ok(outcomes) => {
                since_checkpoint += bytes;
                metrics.commit(jobs.len(), total);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the requests in it are answered with an error");
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        // Requests that arrive meanwhile queue up and go into the next, larger commit.
        if since_checkpoint >= CHECKPOINT_AFTER_BYTES {
            since_checkpoint = 0;
            match &checkpointer {
                Some(c) => c.ask(),
                None => checkpoint(&conn),
            }
        }
    }
    if let Some(c) = checkpointer {
        c.finish();
    }
    checkpoint(&conn);
}

/// Copies committed pages from the log into the database file without waiting for readers.
fn checkpoint(conn: &Connection) {
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    if let Err(e) = done {
        tracing::warn!(error = %e, "checkpoint failed; the log keeps the data and the next one retries");
    }
}

fn commit(conn: &mut Connection, jobs: &mut [Job]) -> rusqlite::Result<Vec<Inserted>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rollups = Agg::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
             (project_id, uuid, event, distinct_id, ts_ms, received_ms, properties)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for job in jobs.iter_mut() {
            let mut out = Inserted::default();
            let mut stored = Vec::new();
            for e in &job.events {
                let n = insert.execute(params![
                    e.project_id,
                    e.uuid.as_bytes(),
                    e.event,
                    e.distinct_id,
                    e.timestamp_ms,
                    e.received_ms,
                    e.properties
                ])?;
                if n == 1 {
                    out.stored += 1;
                    stored.push(e);
                } else {
                    out.duplicates += 1;
                }
            }
            if out.duplicates == 0 {
                rollups.merge(std::mem::take(&mut job.rollup));
            } else {
                // Rare: the request's rollup counted its duplicates too; count again
                // from the stored events alone.
                for e in stored {
                    let props = serde_json::from_str(&e.properties).unwrap_or_default();
                    let dims = crate::rollup::dims(&e.event, &props);
                    rollups.add(
                        e.project_id,
                        &e.event,
                        &e.distinct_id,
                        e.timestamp_ms,
                        &dims,
                    );
                }
            }
            outcomes.push(out);
        }
    }
    // Duplicates were skipped above, so rollups count exactly the stored events.
    rollups.flush(&tx)?;
    tx.commit()?;
    Ok(outcomes)
}
