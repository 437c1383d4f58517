//! Counters and histograms, rendered in Prometheus text format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
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
        out
    }
}
