//! The background delivery thread.
//!
//! One thread per client, started with the first event. It takes every job queued at the
//! moment, adds (on its first round only) whatever earlier runs left in the spool, and sends
//! all of it as one batch under one deadline. Delivered spool files are removed; events that
//! could not be delivered stay in (or are put into) the spool.

use crate::Outcome;
use crate::delivery::{DeliveryError, Transport};
use crate::event::batch_body;
use crate::facts;
use crate::spool::Spool;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

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
}

pub(crate) struct Dispatcher {
    route: std::sync::Arc<Route>,
    queue: OnceLock<Option<Sender<Job>>>,
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

    /// Queue a job; false if the delivery thread could not be started.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
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

fn deliver(route: &Route, jobs: Vec<Job>, include_spool: bool) {
    let deadline = Instant::now() + route.timeout;
    // Spooled events are sent and removed under the spool lock, so that a process delivering
    // the same spool (`anonstats send`) never sends them too. Without the lock, only this
    // round's own events go.
    let lock = route.spool.lock_until(deadline);
    let mut spooled = Vec::new();
    if include_spool && lock.is_some() {
        spooled = load_with_facts(route);
    }
    let mut seen: HashSet<PathBuf> = spooled.iter().map(|s| s.path.clone()).collect();
    let mut events: Vec<Value> = spooled.iter().map(|s| s.event.clone()).collect();
    let mut files: Vec<PathBuf> = seen.iter().cloned().collect();
    // A job's spool file is written before the job is queued, so an earlier round that
    // read the spool may have sent it already, and removed its file.
    let mut sent_before = 0;
    for job in &jobs {
        match &job.spooled {
            Some(path) if seen.contains(path) => continue,
            Some(path) if !path.exists() => {
                sent_before += 1;
                continue;
            }
            Some(path) => {
                seen.insert(path.clone());
                files.push(path.clone());
            }
            None => {}
        }
        events.push(job.event.clone());
    }
    let body = batch_body(&route.token, &events);
    let outcome = if events.is_empty() {
        Outcome::Delivered(sent_before)
    } else {
        match route.transport.post(&body, deadline) {
            Ok(()) => {
                route.spool.remove(&files);
                Outcome::Delivered(events.len())
            }
            Err(e) => {
                for job in jobs.iter().filter(|j| j.spooled.is_none()) {
                    let uuid = job.event["uuid"].as_str().unwrap_or("");
                    let _ = route.spool.put(uuid, &job.event, false);
                }
                keep_facts(route, &spooled);
                Outcome::Spooled(not_delivered(route, events.len(), &e))
            }
        }
    };
    drop(lock);
    for job in jobs {
        if let Some(done) = job.done {
            let _ = done.try_send(outcome.clone());
        }
    }
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
    for s in route.spool.load() {
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

/// After a failed delivery: keep the facts added to spooled events, so that they describe
/// the system as it was when the event was made, not when it is finally delivered.
fn keep_facts(route: &Route, spooled: &[Loaded]) {
    for s in spooled.iter().filter(|s| s.filled) {
        let _ = route.spool.rewrite(&s.path, &s.event);
    }
}

fn not_delivered(route: &Route, n: usize, e: &DeliveryError) -> String {
    format!(
        "{} not delivered to {}: {e}; kept in {} for the next start",
        plural(n),
        route.transport.url(),
        route.spool.dir().display()
    )
}

/// At most this many rounds of [`deliver_spool`]: events spooled meanwhile by other
/// processes are picked up, but a steady stream of them cannot keep one process busy.
const MAX_ROUNDS: usize = 8;

/// Deliver what waits in the spool, oldest first, in one batch per round, under the spool
/// lock; delivered files are removed, the rest stays for the next try. When another process
/// holds the lock past `lock_deadline`, this leaves the spool to it.
///
/// After each round the lock is released and the spool looked at again: an event spooled
/// while the lock was held may belong to a process that found the lock taken and left.
pub(crate) fn deliver_spool(route: &Route, lock_deadline: Instant) -> Outcome {
    let deadline = Instant::now() + route.timeout;
    let mut delivered = 0;
    for round in 0..MAX_ROUNDS {
        let lock_deadline = if round == 0 {
            lock_deadline
        } else {
            Instant::now()
        };
        let Some(lock) = route.spool.lock_until(lock_deadline) else {
            return busy(route, delivered);
        };
        let spooled = load_with_facts(route);
        if spooled.is_empty() {
            break;
        }
        let events: Vec<Value> = spooled.iter().map(|s| s.event.clone()).collect();
        match route
            .transport
            .post(&batch_body(&route.token, &events), deadline)
        {
            Ok(()) => {
                route.spool.remove(spooled.iter().map(|s| &s.path));
                delivered += events.len();
            }
            Err(e) => {
                keep_facts(route, &spooled);
                return Outcome::Spooled(not_delivered(route, events.len(), &e));
            }
        }
        drop(lock);
        if route.spool.is_empty() {
            break;
        }
    }
    Outcome::Delivered(delivered)
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
