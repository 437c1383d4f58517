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
    pub reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// Stop draining once this many events are in one transaction, so that one commit
/// never holds up the first waiters for long.
const MAX_EVENTS_PER_COMMIT: usize = 50_000;

pub(super) fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
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
        match commit(&mut conn, &jobs) {
            Ok(outcomes) => {
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
    }
}

fn commit(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<Vec<Inserted>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rollups = Agg::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
             (project_id, uuid, event, distinct_id, ts_ms, received_ms, properties)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for job in jobs {
            let mut out = Inserted::default();
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
                    rollups.add(
                        e.project_id,
                        &e.event,
                        &e.distinct_id,
                        e.timestamp_ms,
                        &e.dims,
                    );
                } else {
                    out.duplicates += 1;
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
