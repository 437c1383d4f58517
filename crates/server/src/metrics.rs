//! Counters and histograms, rendered in Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Why a request was refused; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Invalid,
    TooLarge,
    MissingToken,
    MixedTokens,
    UnknownToken,
    RevokedToken,
    RateLimited,
    Overloaded,
    DiskFull,
    Unavailable,
}

impl Reject {
    pub const ALL: [Reject; 10] = [
        Reject::Invalid,
        Reject::TooLarge,
        Reject::MissingToken,
        Reject::MixedTokens,
        Reject::UnknownToken,
        Reject::RevokedToken,
        Reject::RateLimited,
        Reject::Overloaded,
        Reject::DiskFull,
        Reject::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Invalid => "invalid",
            Reject::TooLarge => "too_large",
            Reject::MissingToken => "missing_token",
            Reject::MixedTokens => "mixed_tokens",
            Reject::UnknownToken => "unknown_token",
            Reject::RevokedToken => "revoked_token",
            Reject::RateLimited => "rate_limited",
            Reject::Overloaded => "overloaded",
            Reject::DiskFull => "disk_full",
            Reject::Unavailable => "unavailable",
        }
    }
}

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The buckets, sum and count, each with `labels` (`key="value",` pairs, each
    /// followed by a comma) before `le`.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {total}");
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Which admin API routes a latency is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// What viewers read: the insights, projects, properties, the session.
    Insight,
    /// Raw events, SQL, erasure.
    Admin,
}

impl RouteClass {
    pub const ALL: [RouteClass; 2] = [RouteClass::Insight, RouteClass::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Insight => "insight",
            RouteClass::Admin => "admin",
        }
    }
}

/// Latency buckets of the admin API: from a rollup read (a millisecond) to SQL at its
/// timeout (10 s by default) and an erasure of a large machine.
const API_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A store's ingest queue: the requests waiting for the writer, with their events and
/// bytes, against the bound in requests past which capture answers 503.
#[derive(Debug, Default)]
pub struct QueueDepth {
    requests: AtomicUsize,
    events: AtomicUsize,
    bytes: AtomicUsize,
    bound: AtomicUsize,
}

/// One request in a [`QueueDepth`]; it leaves when the writer takes it, or when dropped.
#[derive(Debug)]
pub struct Queued {
    queue: Arc<QueueDepth>,
    events: usize,
    bytes: usize,
    left: bool,
}

impl QueueDepth {
    pub fn set_bound(&self, requests: usize) {
        self.bound.store(requests, Relaxed);
    }

    /// A request of `events` events and `bytes` bytes enters the queue.
    pub fn enter(self: &Arc<Self>, events: usize, bytes: usize) -> Queued {
        self.requests.fetch_add(1, Relaxed);
        self.events.fetch_add(events, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        Queued {
            queue: self.clone(),
            events,
            bytes,
            left: false,
        }
    }

    /// (requests, events, bytes) waiting now.
    pub fn depth(&self) -> (usize, usize, usize) {
        (
            self.requests.load(Relaxed),
            self.events.load(Relaxed),
            self.bytes.load(Relaxed),
        )
    }
}

impl Queued {
    /// The writer took the request.
    pub fn leave(&mut self) {
        if !std::mem::replace(&mut self.left, true) {
            self.queue.requests.fetch_sub(1, Relaxed);
            self.queue.events.fetch_sub(self.events, Relaxed);
            self.queue.bytes.fetch_sub(self.bytes, Relaxed);
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Runs of a job that removes events (retention, erasure).
#[derive(Debug, Default)]
struct Runs {
    ok: AtomicU64,
    failed: AtomicU64,
    removed: AtomicU64,
    /// Unix seconds of the last run with each result; 0 before the first.
    last_ok: AtomicI64,
    last_failed: AtomicI64,
}

impl Runs {
    fn ran(&self, removed: Option<u64>) {
        let now = chrono::Utc::now().timestamp();
        match removed {
            Some(n) => {
                self.removed.fetch_add(n, Relaxed);
                self.ok.fetch_add(1, Relaxed);
                self.last_ok.store(now, Relaxed);
            }
            None => {
                self.failed.fetch_add(1, Relaxed);
                self.last_failed.store(now, Relaxed);
            }
        }
    }

    fn render(&self, out: &mut String, job: &str, what: &str) {
        let _ = writeln!(
            out,
            "# HELP anonstats_{job}_runs_total Runs of {what}, by result.\n\
             # TYPE anonstats_{job}_runs_total counter\n\
             anonstats_{job}_runs_total{{result=\"ok\"}} {}\n\
             anonstats_{job}_runs_total{{result=\"failed\"}} {}",
            self.ok.load(Relaxed),
            self.failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP anonstats_{job}_last_run_timestamp_seconds When the last run of {what} with each result ended (Unix seconds; 0: none since start).\n\
             # TYPE anonstats_{job}_last_run_timestamp_seconds gauge\n\
             anonstats_{job}_last_run_timestamp_seconds{{result=\"ok\"}} {}\n\
             anonstats_{job}_last_run_timestamp_seconds{{result=\"failed\"}} {}",
            self.last_ok.load(Relaxed),
            self.last_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP anonstats_{job}_events_removed_total Events removed by {what}.\n\
             # TYPE anonstats_{job}_events_removed_total counter\n\
             anonstats_{job}_events_removed_total {}",
            self.removed.load(Relaxed)
        );
    }
}

/// What `/metrics` shows of the store itself ([`crate::store::EventStore::vitals`]).
#[derive(Debug, Clone, Default)]
pub struct StoreVitals {
    /// Bytes on disk by part: a file of the embedded store, a table of ClickHouse.
    pub size_bytes: Vec<(String, u64)>,
    /// How long the oldest stored event the rollups do not count yet has waited
    /// (zero when they count every one, or the store has no rollups).
    pub rollup_lag: std::time::Duration,
}

impl StoreVitals {
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP anonstats_store_size_bytes Bytes the store takes on disk, by part (the embedded store's database and log files; ClickHouse's tables, summed over nodes).\n\
             # TYPE anonstats_store_size_bytes gauge"
        );
        for (part, bytes) in &self.size_bytes {
            let _ = writeln!(
                out,
                "anonstats_store_size_bytes{{part=\"{}\"}} {bytes}",
                part.replace('"', "\\\"")
            );
        }
        let _ = writeln!(
            out,
            "# HELP anonstats_rollup_lag_seconds How far the insights rollups trail the stored events: how long the oldest event they do not count yet has waited (0 when they count all; ClickHouse answers from the events).\n\
             # TYPE anonstats_rollup_lag_seconds gauge\n\
             anonstats_rollup_lag_seconds {}",
            self.rollup_lag.as_secs_f64()
        );
    }
}

/// The capture admission bound ([`crate::admission`]) and the store's queue, as gauges.
pub fn render_queues(
    out: &mut String,
    in_flight: &crate::admission::Admission,
    store: &QueueDepth,
) {
    let (events, bytes) = in_flight.in_flight();
    let bounds = in_flight.bounds();
    let (s_requests, s_events, s_bytes) = store.depth();
    let _ = writeln!(
        out,
        "# HELP anonstats_queue_depth What waits in each ingest queue now, by unit: capture work in flight (read, decoded or waiting for its commit), and the requests queued for the store's writer.\n\
         # TYPE anonstats_queue_depth gauge\n\
         anonstats_queue_depth{{queue=\"in_flight\",unit=\"events\"}} {events}\n\
         anonstats_queue_depth{{queue=\"in_flight\",unit=\"bytes\"}} {bytes}\n\
         anonstats_queue_depth{{queue=\"store\",unit=\"requests\"}} {s_requests}\n\
         anonstats_queue_depth{{queue=\"store\",unit=\"events\"}} {s_events}\n\
         anonstats_queue_depth{{queue=\"store\",unit=\"bytes\"}} {s_bytes}"
    );
    let _ = writeln!(
        out,
        "# HELP anonstats_queue_bound The depth past which capture answers 503, by queue and unit (--queue-events, --queue-mb, --queue).\n\
         # TYPE anonstats_queue_bound gauge\n\
         anonstats_queue_bound{{queue=\"in_flight\",unit=\"events\"}} {}\n\
         anonstats_queue_bound{{queue=\"in_flight\",unit=\"bytes\"}} {}\n\
         anonstats_queue_bound{{queue=\"store\",unit=\"requests\"}} {}",
        bounds.events,
        bounds.bytes,
        store.bound.load(Relaxed)
    );
}

/// `anonstats_build_info`: the release, and the commit when the build was given one
/// (`ANONSTATS_COMMIT=$(git rev-parse --short HEAD) cargo build`).
pub fn render_build_info(out: &mut String) {
    let version = env!("CARGO_PKG_VERSION");
    let commit = option_env!("ANONSTATS_COMMIT")
        .filter(|c| !c.is_empty())
        .map(|c| format!(",commit=\"{}\"", c.replace(['"', '\\'], "")))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP anonstats_build_info The collector's release (and commit, when built with ANONSTATS_COMMIT); always 1.\n\
         # TYPE anonstats_build_info gauge\n\
         anonstats_build_info{{version=\"{version}\"{commit}}} 1"
    );
}

pub struct Metrics {
    requests_accepted: AtomicU64,
    requests_rejected: [AtomicU64; Reject::ALL.len()],
    events_stored: AtomicU64,
    events_duplicate: AtomicU64,
    events_rejected: [AtomicU64; Reject::ALL.len()],
    /// Properties removed by the privacy filter, by property name (bounded: the
    /// denylist and masks are fixed) or "allowlist".
    properties_dropped: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Free-text properties the privacy filter scrubbed, by property name (bounded:
    /// `anonstats_scrub::PROPERTIES`).
    properties_scrubbed: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    pub latency: Histogram,
    commit_events: Histogram,
    commit_requests: Histogram,
    /// Admin API latency, by [`RouteClass`].
    api_latency: [Histogram; RouteClass::ALL.len()],
    /// The store writer's queue (set by the store when its writer starts).
    pub store_queue: Arc<QueueDepth>,
    retention: Runs,
    erasure: Runs,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_accepted: AtomicU64::new(0),
            requests_rejected: Default::default(),
            events_stored: AtomicU64::new(0),
            events_duplicate: AtomicU64::new(0),
            events_rejected: Default::default(),
            properties_dropped: Default::default(),
            properties_scrubbed: Default::default(),
            latency: Histogram::new(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            commit_events: Histogram::new(&[1.0, 10.0, 100.0, 1000.0, 10000.0, 50000.0]),
            commit_requests: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
            ]),
            api_latency: RouteClass::ALL.map(|_| Histogram::new(API_BOUNDS)),
            store_queue: Arc::default(),
            retention: Runs::default(),
            erasure: Runs::default(),
        }
    }
}

impl Metrics {
    pub fn accepted(&self, stored: usize, duplicates: usize) {
        self.requests_accepted.fetch_add(1, Relaxed);
        self.events_stored.fetch_add(stored as u64, Relaxed);
        self.events_duplicate.fetch_add(duplicates as u64, Relaxed);
    }

    /// A refused request; `events` is how many it carried when that is known.
    pub fn rejected(&self, reason: Reject, events: usize) {
        let i = Reject::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.requests_rejected[i].fetch_add(1, Relaxed);
        self.events_rejected[i].fetch_add(events as u64, Relaxed);
    }

    /// One admin API request of `class` took `seconds`, from its arrival to its answer.
    pub fn api_request(&self, class: RouteClass, seconds: f64) {
        let i = RouteClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        self.api_latency[i].observe(seconds);
    }

    /// A retention run removed this many events, or failed (`None`).
    pub fn retention_ran(&self, removed: Option<u64>) {
        self.retention.ran(removed);
    }

    /// An erasure removed this many events, or failed (`None`).
    pub fn erasure_ran(&self, removed: Option<u64>) {
        self.erasure.ran(removed);
    }

    /// Events refused one by one within a request that was answered (capture V1).
    pub fn events_refused(&self, reason: Reject, events: usize) {
        let i = Reject::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.events_rejected[i].fetch_add(events as u64, Relaxed);
    }

    pub fn commit(&self, requests: usize, events: usize) {
        self.commit_requests.observe(requests as f64);
        self.commit_events.observe(events as f64);
    }

    /// What the privacy filter removed and scrubbed in one request.
    pub fn filtered(&self, edits: &crate::privacy::Edits) {
        for (list, counts) in [
            (&self.properties_dropped, &edits.dropped),
            (&self.properties_scrubbed, &edits.scrubbed),
        ] {
            if counts.is_empty() {
                continue;
            }
            let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
            for (name, n) in counts {
                *list.entry((*name).to_string()).or_default() += n;
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP anonstats_requests_total Capture requests by result and reason."
        );
        let _ = writeln!(out, "# TYPE anonstats_requests_total counter");
        let _ = writeln!(
            out,
            "anonstats_requests_total{{result=\"accepted\"}} {}",
            self.requests_accepted.load(Relaxed)
        );
        for (r, c) in Reject::ALL.iter().zip(&self.requests_rejected) {
            let _ = writeln!(
                out,
                "anonstats_requests_total{{result=\"rejected\",reason=\"{}\"}} {}",
                r.as_str(),
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP anonstats_events_total Events by result (rejected ones by reason, where the request was decoded)."
        );
        let _ = writeln!(out, "# TYPE anonstats_events_total counter");
        let _ = writeln!(
            out,
            "anonstats_events_total{{result=\"stored\"}} {}",
            self.events_stored.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "anonstats_events_total{{result=\"duplicate\"}} {}",
            self.events_duplicate.load(Relaxed)
        );
        for (r, c) in Reject::ALL.iter().zip(&self.events_rejected) {
            let _ = writeln!(
                out,
                "anonstats_events_total{{result=\"rejected\",reason=\"{}\"}} {}",
                r.as_str(),
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP anonstats_properties_dropped_total Properties removed or masked by the privacy filter."
        );
        let _ = writeln!(out, "# TYPE anonstats_properties_dropped_total counter");
        for (name, n) in self
            .properties_dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "anonstats_properties_dropped_total{{property=\"{}\"}} {n}",
                name.replace('"', "\\\"")
            );
        }
        let _ = writeln!(
            out,
            "# HELP anonstats_properties_scrubbed_total Free-text properties (crash and action reports) whose identifying parts the privacy filter masked."
        );
        let _ = writeln!(out, "# TYPE anonstats_properties_scrubbed_total counter");
        for (name, n) in self
            .properties_scrubbed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "anonstats_properties_scrubbed_total{{property=\"{}\"}} {n}",
                name.replace('"', "\\\"")
            );
        }
        self.latency.render(
            &mut out,
            "anonstats_request_duration_seconds",
            "Capture request latency, from body read to answer.",
        );
        self.commit_events.render(
            &mut out,
            "anonstats_commit_batch_events",
            "Events per group commit.",
        );
        self.commit_requests.render(
            &mut out,
            "anonstats_commit_batch_requests",
            "Requests per group commit.",
        );
        let name = "anonstats_api_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Admin API latency by route class (insight: what viewers read; admin: raw events, SQL, erasure), from arrival to answer.\n# TYPE {name} histogram"
        );
        for (class, h) in RouteClass::ALL.iter().zip(&self.api_latency) {
            h.render_series(&mut out, name, &format!("class=\"{}\",", class.as_str()));
        }
        self.retention
            .render(&mut out, "retention", "retention (--retention-days)");
        self.erasure
            .render(&mut out, "erasure", "erasure of one machine's events");
        out
    }
}
