//! [`Client`]: the host-facing API.

use crate::builder::{Builder, Clock};
use crate::consent::{Consent, Mode, Recheck};
use crate::dispatch::{self, Dispatcher, Job};
use crate::event::{self, Event, FatalSite};
use crate::intake::{self, Intake, Refused};
use crate::spool::Spool;
use crate::status_file::{self, RunState, RunStatus};
use crate::{Error, detach, facts, local_log, machine_id};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What became of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Statistics are off: nothing was built, written or sent. Also under
    /// [`Mode::Crashes`] for an event that is not a crash report
    /// ([`event::is_crash_report`]).
    Off,
    /// Local mode: the event was appended to this log; nothing was sent.
    Logged(PathBuf),
    /// Handed to the client's own threads, which write it to the spool (or, in local mode,
    /// the log) and deliver it; or, after [`Client::spool_action`], spooled for a detached
    /// process to deliver. The host does not wait.
    Queued,
    /// Delivered, in a batch of this many events (0: an earlier batch took it along).
    Delivered(usize),
    /// Not delivered now; kept in the spool for the next start. The text says why.
    Spooled(String),
    /// Neither delivered nor kept: refused for good by the collector, dropped by a full
    /// spool, or not made at all. The text says why and what to do. Dropped events are
    /// counted; the next delivered event reports the count (`dropped_events`).
    Dropped(String),
}

pub(crate) struct Inner {
    pub consent: Consent,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Where the machine id and the run status for this client's endpoint are
    /// ([`crate::product::endpoint_dir`]; the state directory itself without an endpoint).
    pub id_dir: PathBuf,
    /// Set once the product's id of earlier versions was offered to this endpoint.
    pub claimed: OnceLock<()>,
    pub probe_root: PathBuf,
    pub timeout: Duration,
    pub product: Map<String, Value>,
    pub dispatcher: Option<Dispatcher>,
    pub base: OnceLock<Map<String, Value>>,
    /// Consent is decided again before each event, so that an opt-out made while the
    /// program runs stops it.
    pub recheck: Recheck,
    pub clock: Clock,
    /// The thread that does an event's file work, off the host's thread.
    pub intake: Intake,
}

/// Told the outcome of an event, when someone waits for it.
type Done = Option<SyncSender<Outcome>>;

fn reply(done: Done, outcome: Outcome) {
    if let Some(done) = done {
        let _ = done.try_send(outcome);
    }
}

/// After an opt-out: delete what waits to be sent (the spool, the count of dropped
/// events) and the local log.
pub(crate) fn forget(state_dir: &Path, spool: &Spool) {
    spool.purge();
    local_log::remove(state_dir);
}

/// [`forget`], but only touching the disk when there is something to delete (a client
/// that is off from the start writes nothing, removes nothing that is absent).
pub(crate) fn forget_if_present(state_dir: &Path, spool: &Spool) {
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let dropped = spool.dir().with_file_name(crate::spool::DROPPED_FILE);
    if exists(spool.dir())
        || exists(&dropped)
        || local_log::files(state_dir).iter().any(|p| exists(p))
    {
        forget(state_dir, spool);
    }
}

/// Sends anonymous statistics for a host program. Cheap to clone; every method returns
/// without panicking, and none blocks longer than the timeout.
///
/// ```no_run
/// use anonstats_client::Client;
/// let client = Client::builder()
///     .product("my-daemon", env!("CARGO_PKG_VERSION"))
///     .endpoint("https://stats.example.org")
///     .token("phc_project_write_token")
///     .config_dir("/etc/my-daemon")
///     .state_dir("/var/lib/my-daemon")
///     .build()?;
/// client.install_panic_hook();
/// client.start(); // in the background
/// // ... run ...
/// client.exit(); // waits at most the timeout
/// # Ok::<(), anonstats_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("consent", &self.inner.consent)
            .field("state_dir", &self.inner.state_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    /// A handle dropped by the host wakes the intake thread if events wait, so that they
    /// are written at once, not at the next drain ([`intake::DRAIN`]).
    fn drop(&mut self) {
        if !self.inner.intake.on_worker() {
            self.inner.intake.nudge();
        }
    }
}

/// Whether a caller waits for delivery, and whether the spool write is fsynced first.
/// `Spool` only writes the event to the spool (fsynced for FATAL), without its system
/// facts, which the delivering process adds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    Yes,
    Durable,
    Spool,
}

impl Client {
    /// Start configuring a client.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Client {
        Client {
            inner: Arc::new(inner),
        }
    }

    /// The consent decision: mode and the rule that made it. Made at the start and again
    /// now: an opt-out since then turns it off (an opt-in since then does not turn it on;
    /// that takes a new client).
    pub fn consent(&self) -> Consent {
        if self.inner.consent.mode != Mode::Off {
            let now = self.inner.recheck.decide();
            if now.mode == Mode::Off {
                return now;
            }
        }
        self.inner.consent.clone()
    }

    /// True when every event is sent (mode on, and still no opt-out); a dashboard script
    /// should run only then (under `crashes` it sends nothing: its events are usage).
    pub fn sends(&self) -> bool {
        self.consent().mode == Mode::On
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &std::path::Path {
        &self.inner.config_dir
    }

    /// Where the consent rules are read for this client: the machine's directory, the
    /// configuration directory and the product.
    pub fn scope(&self) -> &crate::consent::Scope {
        &self.inner.recheck.scope
    }

    /// The product's state directory (`<state root>/<product>/`).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.state_dir
    }

    /// The `distinct_id` this client sends: the machine id for its product and endpoint
    /// (each endpoint has its own, see [`crate::product`]). Reads, creates nothing; `None`
    /// before the first event made it.
    pub fn machine_id(&self) -> Option<uuid::Uuid> {
        let inner = &self.inner;
        machine_id::load(&inner.id_dir).or_else(|| {
            // Not claimed yet: the product's id of earlier versions goes to the first
            // endpoint that sends.
            (inner.id_dir != inner.state_dir)
                .then(|| machine_id::load(&inner.state_dir))
                .flatten()
        })
    }

    /// The directory of this client's machine id and run status, once it was offered the
    /// product's id of earlier versions. Runs where the event's work runs.
    fn id_dir(&self) -> &Path {
        let inner = &self.inner;
        inner
            .claimed
            .get_or_init(|| crate::product::claim_for_endpoint(&inner.state_dir, &inner.id_dir));
        &inner.id_dir
    }

    /// START, in the background. Marks the run in the status file; if the previous run never
    /// closed, reports it once as INCOMPLETE_SHUTDOWN first.
    pub fn start(&self) -> Outcome {
        self.start_with(Wait::No)
    }

    /// EXIT: closes the run and waits at most the timeout for delivery.
    pub fn exit(&self) -> Outcome {
        self.exit_with(Wait::Yes)
    }

    /// FATAL: closes the run, writes the event to the spool (fsynced), then sends it,
    /// waiting at most the timeout. See also [`fatal!`](crate::fatal!).
    pub fn fatal(&self, site: FatalSite) -> Outcome {
        self.fatal_with(site, Wait::Durable)
    }

    /// CLOUD_BUILD_FAIL, in the background; `detail` goes to `action_data`.
    pub fn cloud_build_fail(&self, detail: &str) -> Outcome {
        let p = event::action_properties(event::CLOUD_BUILD_FAIL, None, Some(detail));
        self.emit(event::CLOUD_BUILD_FAIL, p, Wait::No)
    }

    /// CLOUD_UNAVAILABLE, in the background; `detail` goes to `action_data`.
    pub fn cloud_unavailable(&self, detail: &str) -> Outcome {
        let p = event::action_properties(event::CLOUD_UNAVAILABLE, None, Some(detail));
        self.emit(event::CLOUD_UNAVAILABLE, p, Wait::No)
    }

    /// CLOUD_CONNECT_FAIL with an error code (`error_code` and `action_result`), in the background.
    pub fn cloud_connect_fail(&self, code: &str) -> Outcome {
        let (name, p) = action_event(event::CLOUD_CONNECT_FAIL, Some(code), None);
        self.emit(&name, p, Wait::No)
    }

    /// A custom event with the host's properties, in the background: it is written to the
    /// spool at the client's next drain (every 20 ms while events come), without waking
    /// any thread now; [`Client::sync`] waits for it. The client's own properties and the
    /// masks are added; the masks cannot be overridden.
    ///
    /// ```
    /// # let client = anonstats_client::Client::builder().mode(anonstats_client::Mode::Off).build().unwrap();
    /// let mut props = serde_json::Map::new();
    /// props.insert("collectors_enabled".into(), 12.into());
    /// client.capture("CONFIGURED", props);
    /// ```
    pub fn capture(&self, name: &str, properties: Map<String, Value>) -> Outcome {
        match valid_name(name) {
            Ok(()) => self.emit(name, properties, Wait::No),
            Err(e) => Outcome::Dropped(e.to_string()),
        }
    }

    /// Like [`Client::capture`], but waits at most the timeout for delivery.
    pub fn capture_and_wait(&self, name: &str, properties: Map<String, Value>) -> Outcome {
        match valid_name(name) {
            Ok(()) => self.emit(name, properties, Wait::Yes),
            Err(e) => Outcome::Dropped(e.to_string()),
        }
    }

    /// Wait at most the timeout until every event handed off before this call is in the
    /// spool (or the local log) and queued for delivery, so that a crash or an `exec` of
    /// the host right after loses none of them. [`Outcome::Queued`] once they are; the
    /// delivery itself goes on in the background.
    pub fn sync(&self) -> Outcome {
        self.hand_off(Wait::Yes, |_, done| reply(done, Outcome::Queued))
    }

    /// The reference script's form `ACTION [ACTION_RESULT [ACTION_DATA]]`, waiting at most
    /// the timeout. START, EXIT and FATAL keep the status file as their methods do; for
    /// FATAL, `PROCESS:THREAD` and `LINE@FILE:FUNCTION/ERRNO` are parsed into `fatal_*`.
    pub fn send_action(&self, action: &str, result: Option<&str>, data: Option<&str>) -> Outcome {
        self.action_with(action, result, data, Wait::Yes)
    }

    /// Like [`Client::send_action`], but only writes the event to the spool and returns
    /// ([`Outcome::Queued`]); [`Client::deliver_spool`] or
    /// [`Client::deliver_spool_detached`] sends it. The system facts are read by the
    /// delivering process, not here. Local mode logs the event as usual.
    pub fn spool_action(&self, action: &str, result: Option<&str>, data: Option<&str>) -> Outcome {
        self.action_with(action, result, data, Wait::Spool)
    }

    /// Deliver every spooled event now, oldest first, waiting at most the timeout in all
    /// (for the spool lock, which another process may hold, and for the collector).
    /// Delivered events leave the spool, as do those the collector refused for good
    /// (dropped and counted: [`Outcome::Dropped`]); the others stay for the next try
    /// ([`Outcome::Spooled`]).
    pub fn deliver_spool(&self) -> Outcome {
        if self.off() {
            return Outcome::Off;
        }
        match &self.inner.dispatcher {
            Some(d) => dispatch::deliver_spool(d.route(), Instant::now() + self.inner.timeout),
            None => Outcome::Delivered(0),
        }
    }

    /// Deliver the spool as [`Client::deliver_spool`] does, but in a detached process
    /// (see [`detach::spawn`]), so that the caller returns at once ([`Outcome::Queued`]).
    /// Meant for a process that exits right after, as `anonstats send` does.
    /// If another process is delivering the same spool, that one sends the events.
    /// Where no detached process can be made (the caller has other threads, or fork
    /// fails), it delivers in the foreground instead.
    pub fn deliver_spool_detached(&self) -> Outcome {
        let Some(d) = &self.inner.dispatcher else {
            return self.deliver_spool();
        };
        let route = d.route();
        if detach::spawn(|| {
            dispatch::deliver_spool(route, Instant::now());
        }) {
            Outcome::Queued
        } else {
            self.deliver_spool()
        }
    }

    /// The exact batch body [`Client::send_action`] would send for this action, without
    /// sending or writing anything (spooled events that would ride along are not shown).
    /// `None` when statistics are off. Before the machine id exists, a fresh random one is
    /// shown in its place.
    pub fn preview(&self, action: &str, result: Option<&str>, data: Option<&str>) -> Option<Value> {
        if self.withheld(action) || self.off() {
            return None;
        }
        let (name, mut props) = action_event(action, result, data);
        if action == event::FATAL {
            let site = FatalSite::from_reference(result.unwrap_or(""), data.unwrap_or(""));
            props = site.properties();
        }
        let id = self.machine_id().unwrap_or_else(uuid::Uuid::new_v4);
        let ev = self.build_event(&name, &id.to_string(), props, Wait::Yes);
        let mut ev = ev.to_json();
        if let Some(d) = &self.inner.dispatcher {
            // Sent first, this event would report the events dropped so far.
            let spool = &d.route().spool;
            let dropped = spool.dropped_count();
            if dropped > 0 && spool.is_empty() {
                ev["properties"][event::DROPPED_EVENTS] = dropped.into();
            }
        }
        let token = self
            .inner
            .dispatcher
            .as_ref()
            .map(|d| d.route().token.as_str());
        Some(event::batch_body(
            token.unwrap_or(""),
            &[ev],
            (self.inner.clock)(),
        ))
    }

    /// Report every panic as FATAL (see [`crate::fatal`] for how the function is found).
    /// Chains with the hook in place; installs once per process and returns false after.
    /// The panicking thread waits at most the timeout before the previous hook runs.
    pub fn install_panic_hook(&self) -> bool {
        if self.off() {
            return false;
        }
        crate::fatal::install(self.clone())
    }

    /// True when statistics are off: from the start, or since an opt-out made while the
    /// program runs, in which case what waited to be sent is deleted.
    fn off(&self) -> bool {
        if self.inner.consent.mode == Mode::Off {
            return true;
        }
        if !self.inner.recheck.opted_out() {
            return false;
        }
        let spool = match &self.inner.dispatcher {
            Some(d) => d.route().spool.clone(),
            None => Spool::new(
                self.inner.state_dir.join(crate::spool::DIR),
                crate::SpoolLimits::default(),
            ),
        };
        forget_if_present(&self.inner.state_dir, &spool);
        true
    }

    fn action_with(
        &self,
        action: &str,
        result: Option<&str>,
        data: Option<&str>,
        wait: Wait,
    ) -> Outcome {
        if let Err(e) = valid_name(action) {
            return Outcome::Dropped(e.to_string());
        }
        match action {
            event::START => return self.start_with(wait),
            event::EXIT => return self.exit_with(wait),
            event::FATAL => {
                let site = FatalSite::from_reference(result.unwrap_or(""), data.unwrap_or(""));
                let wait = if wait == Wait::Spool {
                    Wait::Spool
                } else {
                    Wait::Durable
                };
                return self.fatal_with(site, wait);
            }
            _ => {}
        }
        let (name, p) = action_event(action, result, data);
        self.emit(&name, p, wait)
    }

    fn exit_with(&self, wait: Wait) -> Outcome {
        self.hand_off(wait, move |c, done| {
            let _ = status_file::close(c.id_dir(), RunState::Exited);
            let p = event::action_properties(event::EXIT, None, None);
            c.emit_now(event::EXIT, p, wait, done);
        })
    }

    fn fatal_with(&self, site: FatalSite, wait: Wait) -> Outcome {
        self.hand_off(wait, move |c, done| {
            let _ = status_file::close(c.id_dir(), RunState::Fatal);
            c.emit_now(event::FATAL, site.properties(), wait, done);
        })
    }

    fn start_with(&self, wait: Wait) -> Outcome {
        self.hand_off(wait, move |c, done| c.start_now(wait, done))
    }

    fn emit(&self, name: &str, props: Map<String, Value>, wait: Wait) -> Outcome {
        if self.withheld(name) {
            return Outcome::Off;
        }
        let name = name.to_string();
        self.hand_off(wait, move |c, done| c.emit_now(&name, props, wait, done))
    }

    /// Run an event's `work` on the intake thread and wait for its outcome as `wait` says,
    /// at most the timeout in all. The host's thread only queues it. The work runs here
    /// instead when only spooling (`anonstats send`: the caller is the host), on one of
    /// the client's own threads (a panic there), or when no thread could be started.
    fn hand_off(&self, wait: Wait, work: impl FnOnce(&Client, Done) + Send + 'static) -> Outcome {
        if self.inner.consent.mode == Mode::Off {
            return Outcome::Off;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        // Consent is decided again where the work runs, before anything is touched.
        let work = move |c: &Client, done: Done| {
            if c.off() {
                reply(done, Outcome::Off)
            } else {
                work(c, done)
            }
        };
        let on_own_thread = self.inner.intake.on_worker()
            || self
                .inner
                .dispatcher
                .as_ref()
                .is_some_and(|d| d.on_worker());
        if wait == Wait::Spool || on_own_thread {
            work(self, Some(tx));
            return rx.try_recv().unwrap_or(Outcome::Queued);
        }
        let client = self.clone();
        let done = (wait != Wait::No).then(|| tx.clone());
        let task: intake::Task = Box::new(move || work(&client, done));
        match self.inner.intake.run(task, wait != Wait::No) {
            Ok(()) if wait == Wait::No => Outcome::Queued,
            Ok(()) => rx
                .recv_timeout(self.inner.timeout)
                .unwrap_or_else(|_| Outcome::Spooled(self.late())),
            Err(Refused::Full) => {
                if let Some(d) = &self.inner.dispatcher {
                    d.route().count_unqueued();
                }
                Outcome::Dropped(format!(
                    "{} events already wait to be written to {}; this one was dropped and \
                     counted (dropped_events)",
                    intake::QUEUE,
                    self.inner.state_dir.display()
                ))
            }
            Err(Refused::NoThread(task)) => {
                task();
                rx.try_recv().unwrap_or(Outcome::Queued)
            }
        }
    }

    /// True when this event is not sent because only crash reports are (mode crashes).
    fn withheld(&self, name: &str) -> bool {
        self.inner.consent.mode == Mode::Crashes && !event::is_crash_report(name)
    }

    /// What a waiting caller is told when the timeout passed first.
    fn late(&self) -> String {
        let ms = self.inner.timeout.as_millis();
        match &self.inner.dispatcher {
            Some(d) => format!(
                "not delivered to {} within {ms} ms; delivery goes on in the background, and \
                 what is not delivered is kept in {} for the next start",
                d.route().transport.url(),
                d.route().spool.dir().display()
            ),
            None => format!(
                "not written to {} within {ms} ms",
                local_log::path(&self.inner.state_dir).display()
            ),
        }
    }

    fn start_now(&self, wait: Wait, done: Done) {
        let id = match machine_id::load_or_create(self.id_dir()) {
            Ok(id) => id.to_string(),
            Err(e) => return reply(done, Outcome::Dropped(e.to_string())),
        };
        let start = self.build_event(
            event::START,
            &id,
            event::action_properties(event::START, None, None),
            wait,
        );
        let run = RunStatus {
            state: RunState::Running,
            start_uuid: start.uuid.to_string(),
            pid: std::process::id(),
            started: start.timestamp.clone(),
        };
        if let Ok(Some(previous)) = status_file::begin(self.id_dir(), &run) {
            // The unfinished run is named by its START's uuid; its pid would only add a
            // value unique to one machine and run.
            let p = event::action_properties(
                event::INCOMPLETE_SHUTDOWN,
                None,
                Some(&previous.start_uuid),
            );
            let ev = self.build_event(event::INCOMPLETE_SHUTDOWN, &id, p, wait);
            if self.withheld(event::START) {
                // Only the crash report goes; the caller is told what became of it.
                return self.deliver(ev, wait, done);
            }
            let earlier = if wait == Wait::Spool {
                Wait::Spool
            } else {
                Wait::No
            };
            self.deliver(ev, earlier, None);
        }
        if self.withheld(event::START) {
            // The run status is kept all the same: a run that ends without EXIT is a crash.
            return reply(done, Outcome::Off);
        }
        self.deliver(start, wait, done)
    }

    fn emit_now(&self, name: &str, props: Map<String, Value>, wait: Wait, done: Done) {
        if self.withheld(name) {
            return reply(done, Outcome::Off);
        }
        match machine_id::load_or_create(self.id_dir()) {
            Ok(id) => {
                let ev = self.build_event(name, &id.to_string(), props, wait);
                self.deliver(ev, wait, done)
            }
            Err(e) => reply(done, Outcome::Dropped(e.to_string())),
        }
    }

    /// The event with the product's properties and, unless only spooled for a delivering
    /// process to complete, the system facts; its free text scrubbed ([`crate::scrub`]).
    fn build_event(
        &self,
        name: &str,
        distinct_id: &str,
        props: Map<String, Value>,
        wait: Wait,
    ) -> Event {
        let later = wait == Wait::Spool && self.inner.dispatcher.is_some();
        let mut all = if later {
            self.inner.product.clone()
        } else {
            self.base().clone()
        };
        all.extend(props);
        crate::scrub::properties(&mut all);
        event::apply_masks(&mut all);
        Event::at(name, distinct_id, all, (self.inner.clock)())
    }

    fn base(&self) -> &Map<String, Value> {
        self.inner.base.get_or_init(|| {
            let mut m = facts::system_properties(&self.inner.probe_root);
            m.extend(self.inner.product.clone());
            m
        })
    }

    /// Log the event (local mode), or spool it and hand it to the delivery thread, which
    /// tells `done` the outcome.
    fn deliver(&self, ev: Event, wait: Wait, done: Done) {
        let json = ev.to_json();
        let Some(dispatcher) = &self.inner.dispatcher else {
            return reply(
                done,
                match local_log::append(&self.inner.state_dir, &json) {
                    Ok(path) => Outcome::Logged(path),
                    Err(e) => Outcome::Dropped(e.to_string()),
                },
            );
        };
        let spool = &dispatcher.route().spool;
        if wait == Wait::Spool {
            let durable = ev.name == event::FATAL;
            return reply(
                done,
                match spool.put(&ev.uuid.to_string(), &json, durable) {
                    Ok(_) => Outcome::Queued,
                    Err(e) => Outcome::Dropped(e.to_string()),
                },
            );
        }
        let spooled = spool
            .put(&ev.uuid.to_string(), &json, wait == Wait::Durable)
            .ok();
        let job = Job {
            event: json,
            spooled,
            done,
        };
        if dispatcher.on_worker() {
            // A panic on the delivery thread itself: deliver here, it cannot wait for itself.
            dispatcher.deliver_now(vec![job], false);
        } else if let Err(job) = dispatcher.submit(job) {
            dispatcher.deliver_now(vec![job], false);
        }
    }
}

/// Name and properties for an action in the reference form.
fn action_event(
    action: &str,
    result: Option<&str>,
    data: Option<&str>,
) -> (String, Map<String, Value>) {
    let mut p = event::action_properties(action, result, data);
    if action == event::CLOUD_CONNECT_FAIL {
        p.insert("error_code".into(), result.unwrap_or("").into());
    }
    (action.to_string(), p)
}

fn valid_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(Error::InvalidEventName(name.to_string()));
    }
    Ok(())
}
