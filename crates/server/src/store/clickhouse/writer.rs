//! Batched inserts: requests queue their events; a few writer threads each take what
//! arrives within a short linger (or up to a batch size), send it as one
//! `INSERT ... FORMAT JSONEachRow`, and answer every waiting request once ClickHouse has
//! answered 200. Any failure answers them all `Unavailable`: nothing is acknowledged that
//! ClickHouse did not confirm, and a resend is collapsed by uuid.

use super::http::Client;
use crate::metrics::Metrics;
use crate::rollup::FATAL_SITE;
use crate::store::{Inserted, NewEvent, StoreError};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(super) struct Job {
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Inserted, StoreError>>,
    /// Its place in the queue's depth, left when a writer takes it.
    pub queued: crate::metrics::Queued,
}

/// How the writers batch.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// How long a batch waits for more requests after its first.
    pub linger: Duration,
    /// A batch is sent at once when it holds this many events.
    pub max_events: usize,
    /// Inserts that may run at the same time.
    pub writers: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            linger: Duration::from_millis(20),
            max_events: 10_000,
            writers: 2,
        }
    }
}

/// Insertion order across the process: microseconds, strictly increasing.
#[derive(Default)]
pub struct Seq(AtomicU64);

impl Seq {
    pub fn next(&self) -> u64 {
        let now = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(cur + 1);
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// The version that makes ReplacingMergeTree keep the first copy of an event.
pub fn version_of(seq: u64) -> u64 {
    (1u64 << 62).saturating_sub(seq)
}

#[derive(Serialize)]
struct Row<'a> {
    project_id: i64,
    uuid: String,
    event: &'a str,
    distinct_id: &'a str,
    ts: i64,
    ts_ms: i64,
    received_ms: i64,
    seq: u64,
    ver: u64,
    properties: &'a str,
    dim_keys: Vec<&'a str>,
    dim_values: Vec<&'a str>,
    crash_site: String,
    crash_version: String,
}

/// Seconds for the `DateTime` column, kept inside its range (1970 to 2106).
pub fn ts_seconds(ms: i64) -> i64 {
    ms.div_euclid(1000).clamp(0, i64::from(u32::MAX))
}

/// Appends one event as a JSONEachRow line.
pub fn encode(out: &mut Vec<u8>, e: &NewEvent, seq: u64) {
    let mut crash_site = String::new();
    let mut crash_version = String::new();
    if let Some(site) = e.dims.get(FATAL_SITE) {
        let parts: Vec<String> = serde_json::from_str(site).unwrap_or_default();
        if let [f, file, line, version] = parts.as_slice() {
            crash_site = serde_json::json!([f, file, line]).to_string();
            crash_version = version.clone();
        }
    }
    let row = Row {
        project_id: e.project_id,
        uuid: e.uuid.hyphenated().to_string(),
        event: &e.event,
        distinct_id: &e.distinct_id,
        ts: ts_seconds(e.timestamp_ms),
        ts_ms: e.timestamp_ms,
        received_ms: e.received_ms,
        seq,
        ver: version_of(seq),
        properties: &e.properties,
        dim_keys: e.dims.iter().map(|(k, _)| k).collect(),
        dim_values: e.dims.iter().map(|(_, v)| v).collect(),
        crash_site,
        crash_version,
    };
    // Serialising plain strings and numbers cannot fail.
    if serde_json::to_writer(&mut *out, &row).is_ok() {
        out.push(b'\n');
    }
}

pub(super) fn run(
    rx: Arc<Mutex<Receiver<Job>>>,
    client: Client,
    table: String,
    settings: Vec<(&'static str, &'static str)>,
    batching: Batching,
    seq: Arc<Seq>,
    metrics: Arc<Metrics>,
) {
    loop {
        let jobs = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(mut first) = rx.recv() else {
                return;
            };
            first.queued.leave();
            let mut total = first.events.len();
            let mut jobs = vec![first];
            let deadline = Instant::now() + batching.linger;
            while total < batching.max_events {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(mut job) => {
                        job.queued.leave();
                        total += job.events.len();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            jobs
        };
        let mut body = Vec::new();
        let mut seen: HashSet<(i64, uuid::Uuid)> = HashSet::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let mut out = Inserted::default();
            for e in &job.events {
                // A uuid twice in one batch is stored once, the first copy.
                if seen.insert((e.project_id, e.uuid)) {
                    encode(&mut body, e, seq.next());
                    out.stored += 1;
                } else {
                    out.duplicates += 1;
                }
            }
            outcomes.push(out);
        }
        let total: usize = outcomes.iter().map(|o| o.stored).sum();
        let result = if body.is_empty() {
            Ok(())
        } else {
            client.insert(&table, &body, &settings)
        };
        match result {
            Ok(()) => {
                metrics.commit(jobs.len(), total);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = jobs.len(), events = total, "insert into ClickHouse failed; the requests are answered 503");
                // Unavailable already, whatever ClickHouse said: the sender may retry.
                let m = match e {
                    StoreError::Unavailable(m) | StoreError::Backend(m) => m,
                    other => other.to_string(),
                };
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Unavailable(m.clone())));
                }
            }
        }
    }
}
