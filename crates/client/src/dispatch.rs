//! The background delivery thread.
//!
//! One thread per client, started with the first event. It takes every job queued at the
//! moment, adds (on its first round only) whatever earlier runs left in the spool, and sends
//! all of it as one batch under one deadline. Delivered spool files are removed; events that
//! could not be delivered stay in (or are put into) the spool.

use crate::Outcome;
use crate::delivery::Transport;
use crate::event::batch_body;
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
    let mut events = Vec::new();
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    if include_spool {
        for s in route.spool.load() {
            seen.insert(s.path.clone());
            events.push(s.event);
            files.push(s.path);
        }
    }
    for job in &jobs {
        match &job.spooled {
            Some(path) if seen.contains(path) => continue,
            Some(path) => {
                seen.insert(path.clone());
                files.push(path.clone());
            }
            None => {}
        }
        events.push(job.event.clone());
    }
    let body = batch_body(&route.token, &events);
    let outcome = match route.transport.post(&body, deadline) {
        Ok(()) => {
            route.spool.remove(&files);
            Outcome::Delivered(events.len())
        }
        Err(e) => {
            for job in jobs.iter().filter(|j| j.spooled.is_none()) {
                let uuid = job.event["uuid"].as_str().unwrap_or("");
                let _ = route.spool.put(uuid, &job.event, false);
            }
            Outcome::Spooled(format!(
                "{} not delivered to {}: {e}; kept in {} for the next start",
                plural(events.len()),
                route.transport.url(),
                route.spool.dir().display()
            ))
        }
    };
    for job in jobs {
        if let Some(done) = job.done {
            let _ = done.try_send(outcome.clone());
        }
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}
