//! Insights: the questions a maintainer asks every morning, answered from the rollups
//! where they can be, and made k-anonymous before anyone sees them.

pub mod floor;

use crate::store::{StoreError, StoredEvent};
use serde::{Deserialize, Serialize};

/// Bucket width of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            _ => None,
        }
    }
}

/// Which events a question is about.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub project_id: i64,
    /// Inclusive, Unix ms, aligned to whole hours (hourly series) or UTC days.
    pub from_ms: i64,
    /// Exclusive, aligned like `from_ms`.
    pub to_ms: i64,
    /// Event names; empty means every event.
    pub events: Vec<String>,
    /// Property equality filters, all of which must hold.
    pub filters: Vec<(String, String)>,
    /// Count the events of CI runs (`is_ci = true`) too; by default they are left out,
    /// since test runs are not usage. The property list leaves them out always.
    pub include_ci: bool,
}

/// Where an answer was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rollup,
    Events,
}

/// Events and distinct machines of one property value, optionally in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Bucket start (Unix ms); 0 when the question has no time axis.
    pub bucket_ms: i64,
    pub value: String,
    pub count: u64,
    pub machines: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrashSite {
    pub function: String,
    pub file: String,
    pub line: String,
    pub count: u64,
    pub machines: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertySummary {
    pub name: String,
    pub distinct_values: u64,
    pub events: u64,
    /// The most frequent values seen on at least k machines.
    pub examples: Vec<String>,
}

/// Limits of an ad-hoc SQL query.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    pub max_rows: usize,
    pub timeout: std::time::Duration,
    /// Most memory the query may take in the engine: ClickHouse's `max_memory_usage`;
    /// SQLite runs inside the collector and gets at most 64 MiB of it.
    pub max_memory: u64,
    /// Largest answer, in bytes of its JSON text.
    pub max_answer: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_rows: 10_000,
            timeout: std::time::Duration::from_secs(10),
            max_memory: 1 << 30,
            max_answer: 16 << 20,
        }
    }
}

impl SqlLimits {
    /// The refusal of an answer past `max_answer`.
    pub fn answer_too_large(&self) -> StoreError {
        StoreError::Invalid(format!(
            "the answer is larger than {} MB; select fewer rows or narrower columns (LIMIT, substr)",
            self.max_answer >> 20
        ))
    }

    /// The refusal of a query that needed more than `memory` bytes.
    pub fn memory_exceeded(memory: u64) -> StoreError {
        StoreError::Invalid(format!(
            "the query needed more than {} MB of memory and was stopped; narrow it down",
            memory >> 20
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when the row cap cut the result short.
    pub truncated: bool,
}

/// The questions every store answers alike (the conformance suite checks it).
pub trait InsightStore: Send + Sync + 'static {
    /// Event counts per bucket; buckets without events are absent.
    fn trend(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError>;
    /// Counts and distinct machines per value of `property`, per bucket when `over` is set.
    fn breakdown(
        &self,
        scope: &Scope,
        property: &str,
        over: Option<Interval>,
    ) -> Result<(Vec<Group>, Source), StoreError>;
    /// Distinct machines per bucket.
    fn active(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError>;
    /// FATAL events grouped by function, file and line.
    fn crash_sites(&self, scope: &Scope) -> Result<Vec<CrashSite>, StoreError>;
    /// Every property seen in the range.
    fn properties(&self, scope: &Scope, k: u64) -> Result<Vec<PropertySummary>, StoreError>;
    /// The newest events, newest first, after the given sequence number when set.
    fn recent(&self, project_id: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;
    /// Removes every event of one machine and its share of the rollups; returns how many.
    fn erase_machine(&self, project_id: i64, distinct_id: &str) -> Result<u64, StoreError>;
    /// Removes every event before `cutoff_ms` (aligned down to a UTC day) and its rollups.
    fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
    /// Runs one read-only query.
    fn sql(&self, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError>;
}

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The value that folded groups are reported under.
pub const OTHER: &str = "other";

/// Folds every group seen on fewer than `k` machines, and every group past the `top`
/// largest, into one "other" group per bucket. Groups are ordered by machines, then
/// events, then value.
pub fn fold(groups: Vec<Group>, k: u64, top: usize) -> Vec<Group> {
    fold_where(groups, k, top, |_| true)
}

/// [`fold`], also folding every group for which `named` is false.
pub fn fold_where(
    groups: Vec<Group>,
    k: u64,
    top: usize,
    named: impl Fn(&Group) -> bool,
) -> Vec<Group> {
    let mut by_bucket: std::collections::BTreeMap<i64, Vec<Group>> = Default::default();
    for g in groups {
        by_bucket.entry(g.bucket_ms).or_default().push(g);
    }
    let mut out = Vec::new();
    for (bucket_ms, mut gs) in by_bucket {
        gs.sort_by(|a, b| {
            b.machines
                .cmp(&a.machines)
                .then(b.count.cmp(&a.count))
                .then(a.value.cmp(&b.value))
        });
        let mut other = Group {
            bucket_ms,
            value: OTHER.to_string(),
            count: 0,
            machines: 0,
        };
        let mut kept = 0;
        for g in gs {
            if g.machines >= k && kept < top && g.value != OTHER && named(&g) {
                kept += 1;
                out.push(g);
            } else {
                other.count += g.count;
                // Machines of folded groups may overlap; their sum is an upper bound.
                other.machines += g.machines;
            }
        }
        if other.count > 0 {
            out.push(other);
        }
    }
    out
}

/// Folds crash sites seen on fewer than `k` machines into one "other" site.
pub fn fold_crashes(sites: Vec<CrashSite>, k: u64, top: usize) -> Vec<CrashSite> {
    fold_crashes_where(sites, k, top, |_| true)
}

/// [`fold_crashes`], also folding every site for which `named` is false.
pub fn fold_crashes_where(
    mut sites: Vec<CrashSite>,
    k: u64,
    top: usize,
    named: impl Fn(&CrashSite) -> bool,
) -> Vec<CrashSite> {
    sites.sort_by(|a, b| b.count.cmp(&a.count).then(b.machines.cmp(&a.machines)));
    let mut out = Vec::new();
    let mut other: Option<CrashSite> = None;
    for s in sites {
        if s.machines >= k && out.len() < top && named(&s) {
            out.push(s);
            continue;
        }
        let o = other.get_or_insert_with(|| CrashSite {
            function: OTHER.into(),
            file: String::new(),
            line: String::new(),
            count: 0,
            machines: 0,
            first_seen_ms: s.first_seen_ms,
            last_seen_ms: s.last_seen_ms,
            versions: Vec::new(),
        });
        o.count += s.count;
        o.machines += s.machines;
        o.first_seen_ms = o.first_seen_ms.min(s.first_seen_ms);
        o.last_seen_ms = o.last_seen_ms.max(s.last_seen_ms);
    }
    out.extend(other);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(value: &str, count: u64, machines: u64) -> Group {
        Group {
            bucket_ms: 0,
            value: value.into(),
            count,
            machines,
        }
    }

    #[test]
    fn folds_small_and_tail_groups() {
        let out = fold(
            vec![g("a", 100, 50), g("b", 9, 4), g("c", 30, 10), g("d", 20, 6)],
            5,
            2,
        );
        assert_eq!(
            out,
            vec![g("a", 100, 50), g("c", 30, 10), g("other", 29, 10)]
        );
    }
}
