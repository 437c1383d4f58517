//! The background delivery thread, and delivery of the spool.
//!
//! One thread per client, started with the first event. It takes every job queued at the
//! moment, adds (on its first round only) whatever earlier runs left in the spool, and sends
//! all of it under one deadline, in batches of at most [`MAX_BATCH_EVENTS`] events and
//! [`MAX_BATCH_BYTES`] bytes. Delivered spool files are removed; events the collector refused
//! for good (a bad token, a malformed or too large batch) are dropped and counted; the
//! others stay in (or are put into) the spool. Consent is checked again before every
//! round: after an opt-out nothing more is sent and the spool is deleted.

use crate::Outcome;
use crate::builder::Clock;
use crate::consent::Recheck;
use crate::delivery::{DeliveryError, Transport};
use crate::event::{DROPPED_EVENTS, batch_body};
use crate::spool::{Spool, SpoolLock};
use crate::{facts, local_log};
use serde_json::Value;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// At most this many events per request.
pub const MAX_BATCH_EVENTS: usize = 100;
/// At most this many bytes of events per request (the collector takes 1 MB per event and
/// 20 MB per `/batch` request); an event larger than this goes alone.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// One event to deliver.
pub(crate) struct Job {
    pub event: Value,
    /// Its spool file, when it was written there first.
    pub spooled: Option<PathBuf>,
    /// Told the outcome, when someone waits.
    pub done: Option<SyncSender<Outcome>>,
}

/// Where delivery goes and how long it may take.
pub(crate) struct Route {
    pub transport: Transport,
    pub token: String,
    pub timeout: Duration,
    pub spool: Spool,
    /// Root the system facts are read from, for events spooled without them.
    pub probe_root: PathBuf,
    /// The product's state directory (for the receipts, and the local log deleted on
    /// opt-out).
    pub state_dir: PathBuf,
    /// Consent, decided again before each round.
    pub recheck: Recheck,
    /// Dates each request (`sent_at`).
    pub clock: Clock,
    /// Events dropped before they reached the spool (the client's queue was full), not yet
    /// in the spool's count.
    pub unqueued: AtomicU64,
}

impl Route {
    /// One more event dropped before it reached the spool.
    pub fn count_unqueued(&self) {
        self.unqueued.fetch_add(1, Ordering::Relaxed);
    }

    /// Move the events dropped before the spool into its count (under the lock, as every
    /// change of the count is), so that the next delivered event reports them.
    fn settle_unqueued(&self, lock: &SpoolLock) {
        let n = self.unqueued.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.spool.drop_events(lock, std::iter::empty(), n);
        }
    }

    /// True when an opt-out was made since the client started; what waited is deleted.
    fn opted_out(&self) -> bool {
        if !self.recheck.opted_out() {
            return false;
        }
        crate::client::forget(&self.state_dir, &self.spool);
        true
    }
}

pub(crate) struct Dispatcher {
    route: std::sync::Arc<Route>,
    queue: OnceLock<Option<SyncSender<Job>>>,
    worker: OnceLock<ThreadId>,
}

impl Dispatcher {
    pub fn new(route: Route) -> Dispatcher {
        Dispatcher {
            route: std::sync::Arc::new(route),
            queue: OnceLock::new(),
            worker: OnceLock::new(),
        }
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// True on the delivery thread itself (which must not wait for itself).
    pub fn on_worker(&self) -> bool {
        self.worker.get() == Some(&std::thread::current().id())
    }

    /// Queue a job, waiting while the queue is full (the caller is the intake thread, so
    /// the wait reaches the host only as a full intake queue); `Err` if the delivery
    /// thread could not be started.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel(crate::intake::QUEUE);
            let route = self.route.clone();
            std::thread::Builder::new()
                .name("anonstats-send".into())
                .spawn(move || run(&route, rx))
                .ok()
                .map(|handle| {
                    let _ = self.worker.set(handle.thread().id());
                    tx
                })
        });
        match queue {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Deliver on the calling thread (used where the delivery thread is not available).
    pub fn deliver_now(&self, jobs: Vec<Job>, include_spool: bool) {
        deliver(&self.route, jobs, include_spool);
    }
}

fn run(route: &Route, rx: Receiver<Job>) {
    let mut first_round = true;
    while let Ok(job) = rx.recv() {
        let mut jobs = vec![job];
        jobs.extend(rx.try_iter());
        deliver(route, jobs, first_round);
        first_round = false;
    }
}

/// One event of a round: what is sent, and its spool file if it has one.
struct Item {
    event: Value,
    file: Option<PathBuf>,
}

/// Where a job's event went in a round.
enum Place {
    /// Sent as this item.
    Item(usize),
    /// Not sent in this round; this is its outcome.
    Settled(Outcome),
}

fn deliver(route: &Route, jobs: Vec<Job>, include_spool: bool) {
    let deadline = Instant::now() + route.timeout;
    // Spooled events are sent and removed under the spool lock, so that a process delivering
    // the same spool (`anonstats send`) never sends them too. Without the lock, only this
    // round's own events go.
    let lock = route.spool.lock_until(deadline);
    if route.opted_out() {
        tell(jobs, |_| Outcome::Off);
        return;
    }
    if let Some(lock) = &lock {
        route.settle_unqueued(lock);
    }
    let mut spooled = Vec::new();
    if include_spool && lock.is_some() {
        spooled = load_with_facts(route);
    }
    let mut items: Vec<Item> = spooled
        .iter()
        .map(|s| Item {
            event: s.event.clone(),
            file: Some(s.path.clone()),
        })
        .collect();
    let mut index: HashMap<PathBuf, usize> = spooled
        .iter()
        .enumerate()
        .map(|(i, s)| (s.path.clone(), i))
        .collect();
    // A job's spool file is written before the job is queued, so by now an earlier round
    // that read the spool may have sent it and removed its file, or the spool, full, may
    // have dropped it unsent: the record of dropped events tells which.
    let places: Vec<Place> = jobs
        .iter()
        .map(|job| match &job.spooled {
            Some(path) if index.contains_key(path) => Place::Item(index[path]),
            Some(path) if !path.exists() => Place::Settled(if route.spool.was_dropped(path) {
                Outcome::Dropped(full(route))
            } else {
                Outcome::Delivered(0)
            }),
            file => {
                if let Some(path) = file {
                    index.insert(path.clone(), items.len());
                }
                items.push(Item {
                    event: job.event.clone(),
                    file: file.clone(),
                });
                Place::Item(items.len() - 1)
            }
        })
        .collect();
    let mut results = send_items(route, lock.as_ref(), &items, deadline);
    if route.opted_out() {
        // Nothing is kept after an opt-out (and the spool is gone).
        for r in &mut results {
            if !matches!(r, Outcome::Delivered(_)) {
                *r = Outcome::Off;
            }
        }
    }
    let mut files: Vec<Option<PathBuf>> = items.iter().map(|i| i.file.clone()).collect();
    for ((item, result), file) in items.iter().zip(&results).zip(&mut files) {
        let keep = match result {
            Outcome::Spooled(_) => true,
            // Refused for good, and without the lock it cannot be counted: put it where
            // the process holding the lock will try it, and count it when refused again.
            Outcome::Dropped(_) => lock.is_none(),
            _ => false,
        };
        if keep && item.file.is_none() {
            let uuid = item.event["uuid"].as_str().unwrap_or("");
            *file = route.spool.put(uuid, &item.event, false).ok();
        }
    }
    keep_facts(route, &spooled, &results);
    if let Some(lock) = &lock {
        route.spool.trim(lock, None);
    }
    drop(lock);
    // What was kept, the spool may have had to drop to stay in its bounds.
    for (result, file) in results.iter_mut().zip(&files) {
        if matches!(result, Outcome::Spooled(_))
            && file.as_ref().is_some_and(|f| route.spool.was_dropped(f))
        {
            *result = Outcome::Dropped(full(route));
        }
    }
    let mut places = places.into_iter();
    tell(jobs, |_| match places.next() {
        Some(Place::Item(i)) => results[i].clone(),
        Some(Place::Settled(outcome)) => outcome,
        None => Outcome::Delivered(0),
    });
}

/// Tell every waiting job its outcome.
fn tell(jobs: Vec<Job>, mut outcome: impl FnMut(&Job) -> Outcome) {
    for job in jobs {
        let o = outcome(&job);
        if let Some(done) = job.done {
            let _ = done.try_send(o);
        }
    }
}

/// The spool was full and dropped an event unsent.
fn full(route: &Route) -> String {
    let limits = route.spool.limits();
    format!(
        "the spool in {} was full (at most {} events, {} bytes), so the oldest events were \
         dropped unsent; the next delivered event reports how many (dropped_events)",
        route.spool.dir().display(),
        limits.max_files,
        limits.max_bytes
    )
}

/// Batches of at most [`MAX_BATCH_EVENTS`] events and [`MAX_BATCH_BYTES`] bytes, in order.
fn batches(items: &[Item]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let size = serde_json::to_vec(&item.event).map_or(0, |b| b.len());
        if i > start && (i - start >= MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

/// Send `items` in batches, oldest first, before `deadline`; the outcome of each item.
/// Consent is checked again between batches: after an opt-out the rest is not sent
/// ([`Outcome::Off`]) and the spool is deleted.
///
/// Delivered batches leave the spool. A batch refused for good is dropped and counted
/// (only under the lock; without it the files stay for the process holding it). After a
/// failure that may pass (no connection, no answer, 5xx, 429) nothing more is tried and
/// the rest is kept. Under the lock, the first event of each batch carries the count of
/// events dropped so far (`dropped_events`), and the count is taken off once the batch
/// is acknowledged.
fn send_items(
    route: &Route,
    lock: Option<&SpoolLock>,
    items: &[Item],
    deadline: Instant,
) -> Vec<Outcome> {
    let mut out = vec![Outcome::Delivered(0); items.len()];
    let mut failed: Option<String> = None;
    for (n, range) in batches(items).into_iter().enumerate() {
        if let Some(why) = &failed {
            for o in &mut out[range] {
                *o = Outcome::Spooled(why.clone());
            }
            continue;
        }
        if n > 0 && route.opted_out() {
            for o in &mut out[range.start..] {
                *o = Outcome::Off;
            }
            break;
        }
        let batch = &items[range.clone()];
        let mut events: Vec<Value> = batch.iter().map(|i| i.event.clone()).collect();
        let carried = lock.map_or(0, |_| route.spool.dropped_count());
        if carried > 0
            && let Some(props) = events[0]
                .get_mut("properties")
                .and_then(Value::as_object_mut)
        {
            props.insert(DROPPED_EVENTS.into(), carried.into());
        }
        let body = batch_body(&route.token, &events, (route.clock)());
        let files = batch.iter().filter_map(|i| i.file.as_ref());
        let answer = route.transport.post(&body, deadline);
        keep_receipts(route, &body, &answer, deadline);
        let outcome = match answer {
            Ok(_) => {
                route.spool.remove(files);
                if let Some(lock) = lock {
                    route.spool.settle_dropped(lock, carried);
                }
                Outcome::Delivered(batch.len())
            }
            Err(e) if e.refused() => {
                if let Some(lock) = lock {
                    let unspooled = batch.iter().filter(|i| i.file.is_none()).count();
                    route.spool.drop_events(lock, files, unspooled as u64);
                }
                Outcome::Dropped(refused(route, batch.len(), &e))
            }
            Err(e) => {
                let why = kept(route, &e);
                failed = Some(why.clone());
                Outcome::Spooled(why)
            }
        };
        for o in &mut out[range] {
            *o = outcome.clone();
        }
    }
    out
}

/// Keep a receipt of each event of a request that left the machine (anything but a
/// failure to connect): the body as sent and the collector's answer.
fn keep_receipts(
    route: &Route,
    body: &Value,
    answer: &Result<String, DeliveryError>,
    deadline: Instant,
) {
    let url = route.transport.url();
    // In words, then exactly what came back (status and the start of the body).
    let (accepted, answer) = match answer {
        Ok(reply) => (true, format!("accepted: {reply}")),
        Err(DeliveryError::Connect(_)) => return,
        Err(e @ DeliveryError::Status(status, text)) => {
            (false, format!("{}: HTTP {status} {text}", e.explain(url)))
        }
        Err(e) => (false, e.explain(url)),
    };
    let sent = local_log::Sent {
        url,
        body,
        accepted,
        answer,
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    local_log::record(&route.state_dir, &sent, wait.max(Duration::from_millis(50)));
}

/// A spooled event, and whether its system facts were added just now.
struct Loaded {
    path: PathBuf,
    event: Value,
    filled: bool,
}

/// The spool, oldest first, every event with its system facts (probed once, only when
/// some event was spooled without them).
fn load_with_facts(route: &Route) -> Vec<Loaded> {
    let mut facts = None;
    let mut out = Vec::new();
    // Under crashes nothing else leaves, not even what was spooled under another level.
    let crashes_only = route.recheck.decide().mode == crate::Mode::Crashes;
    for s in route.spool.load() {
        let name = s.event.get("event").and_then(Value::as_str).unwrap_or("");
        if crashes_only && !crate::event::is_crash_report(name) {
            route.spool.remove([&s.path]);
            continue;
        }
        let mut event = s.event;
        let mut filled = false;
        if let Some(props) = event.get_mut("properties").and_then(Value::as_object_mut)
            && !facts::present(props)
        {
            let facts = facts.get_or_insert_with(|| facts::system_properties(&route.probe_root));
            facts::add_missing(props, facts);
            filled = true;
        }
        out.push(Loaded {
            path: s.path,
            event,
            filled,
        });
    }
    out
}

/// After a failed delivery: keep the facts added to spooled events that stay, so that they
/// describe the system as it was when the event was made, not when it is finally delivered.
/// `results` are the outcomes of the first items of the round, the spooled ones.
fn keep_facts(route: &Route, spooled: &[Loaded], results: &[Outcome]) {
    for (s, result) in spooled.iter().zip(results) {
        if s.filled && matches!(result, Outcome::Spooled(_)) {
            let _ = route.spool.rewrite(&s.path, &s.event);
        }
    }
}

/// Not delivered, and kept for the next try.
fn kept(route: &Route, e: &DeliveryError) -> String {
    format!(
        "{}; kept in the spool ({}) for the next start",
        e.explain(route.transport.url()),
        route.spool.dir().display()
    )
}

/// Refused for good, and dropped.
fn refused(route: &Route, n: usize, e: &DeliveryError) -> String {
    format!(
        "{}; {} dropped, as it would be refused again",
        e.explain(route.transport.url()),
        plural(n)
    )
}

/// At most this many rounds of [`deliver_spool`]: events spooled meanwhile by other
/// processes are picked up, but a steady stream of them cannot keep one process busy.
const MAX_ROUNDS: usize = 8;

/// Deliver what waits in the spool, oldest first, in batches, under the spool lock;
/// delivered files are removed, those refused for good are dropped (and counted), the rest
/// stays for the next try. When another process holds the lock past `lock_deadline`, this
/// leaves the spool to it. After an opt-out, the spool is deleted instead ([`Outcome::Off`]).
///
/// After each round the lock is released and the spool looked at again: an event spooled
/// while the lock was held may belong to a process that found the lock taken and left.
pub(crate) fn deliver_spool(route: &Route, lock_deadline: Instant) -> Outcome {
    let deadline = Instant::now() + route.timeout;
    let mut delivered = 0;
    let mut dropped: Option<String> = None;
    for round in 0..MAX_ROUNDS {
        let lock_deadline = if round == 0 {
            lock_deadline
        } else {
            Instant::now()
        };
        let Some(lock) = route.spool.lock_until(lock_deadline) else {
            return busy(route, delivered);
        };
        if route.opted_out() {
            return Outcome::Off;
        }
        route.settle_unqueued(&lock);
        let spooled = load_with_facts(route);
        if spooled.is_empty() {
            break;
        }
        let items: Vec<Item> = spooled
            .iter()
            .map(|s| Item {
                event: s.event.clone(),
                file: Some(s.path.clone()),
            })
            .collect();
        let results = send_items(route, Some(&lock), &items, deadline);
        keep_facts(route, &spooled, &results);
        route.spool.trim(&lock, None);
        drop(lock);
        let mut kept = None;
        let mut off = false;
        for result in results {
            match result {
                Outcome::Delivered(_) => delivered += 1,
                Outcome::Spooled(why) => kept = Some(why),
                Outcome::Dropped(why) => dropped = Some(why),
                Outcome::Off => off = true,
                _ => {}
            }
        }
        if off {
            return Outcome::Off;
        }
        if let Some(why) = kept {
            return Outcome::Spooled(why);
        }
        if route.spool.is_empty() {
            break;
        }
    }
    match dropped {
        Some(why) => Outcome::Dropped(why),
        None => Outcome::Delivered(delivered),
    }
}

/// The lock is held by another process, which delivers the spool.
fn busy(route: &Route, delivered: usize) -> Outcome {
    if delivered > 0 {
        return Outcome::Delivered(delivered);
    }
    Outcome::Spooled(format!(
        "another process is delivering the events in {}; they wait there until it has",
        route.spool.dir().display()
    ))
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(n: usize, pad: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                event: json!({"event": "E", "uuid": i.to_string(), "p": "x".repeat(pad)}),
                file: None,
            })
            .collect()
    }

    #[test]
    fn batches_stop_at_100_events_or_1_mib() {
        assert!(batches(&[]).is_empty());
        assert_eq!(batches(&items(250, 0)), [0..100, 100..200, 200..250]);
        // 300 KB each: three fit in 1 MiB, the fourth starts a new batch.
        assert_eq!(batches(&items(7, 300_000)), [0..3, 3..6, 6..7]);
        // An event larger than a batch goes alone (and the collector says if it is too big).
        let mut big = items(1, 0);
        big.extend(items(1, 2 << 20));
        big.extend(items(1, 0));
        assert_eq!(batches(&big), [0..1, 1..2, 2..3]);
    }
}
