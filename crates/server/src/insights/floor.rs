//! The k floor: the one way the admin API reads insights, so that no answer describes a
//! set of machines smaller than k that its filters, its events or one of its list
//! entries could name. docs/SECURITY.md states the rule and its limits.
//!
//! - **Population**: a question with `filter=` or `event=` is answered only when at least
//!   k machines sent its events in the range.
//! - **Differencing**: dropping any of its filters (down to none) must add no events or
//!   events of at least k machines; otherwise the two answers, both exact, would subtract
//!   to the activity of fewer than k machines.
//! - **Lists**: every named entry (a value of a breakdown, a crash site, a site's version)
//!   is seen on at least k machines and passes the same differencing check against the
//!   lists without the filters; the others are folded into "other".
//!
//! Raw SQL, the newest events and erasure are not folded: they are for admins, who own
//! the raw data, and are passed through as they are.

use super::{
    CrashSite, Group, InsightStore, Interval, OTHER, PropertySummary, Scope, Source, SqlLimits,
    SqlResult, fold_crashes_where, fold_where,
};
use crate::rollup::FATAL_SITE;
use crate::store::{StoreError, StoredEvent};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Most filters one question may combine: the differencing check asks every subset of
/// them, 3 filters make 12 breakdowns.
pub const MAX_FILTERS: usize = 3;

/// Why (part of) an answer was withheld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Folded {
    pub reason: String,
    pub k: u64,
}

/// An answer and, when the floor withheld it, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// Empty when the whole answer was folded.
    pub value: T,
    pub source: Source,
    pub folded: Option<Folded>,
}

/// Folded groups, and every group's machines before folding, summed per bucket.
pub type Shares = (Vec<Group>, HashMap<i64, u64>);

/// The insights of a store, with the k floor applied to every answer.
pub struct KFloor {
    store: Arc<dyn InsightStore>,
    k: u64,
}

/// Events and distinct machines of one scope over its whole range.
#[derive(Debug, Clone, Copy)]
struct Cell {
    count: u64,
    machines: u64,
}

/// Count and a lower bound of the machines that one question adds over another.
struct Step {
    /// Filters present in the larger question (a bit per filter).
    mask: usize,
    /// Machines that certainly sent events the larger question has and the smaller not.
    added_at_least: u64,
    /// Events the larger question has and the smaller not.
    added_events: u64,
}

fn with_filters(scope: &Scope, mask: usize) -> Scope {
    Scope {
        filters: scope
            .filters
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f.clone())
            .collect(),
        ..scope.clone()
    }
}

fn describe(filters: &[(String, String)], mask: usize) -> String {
    let named: Vec<String> = filters
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, (p, v))| format!("{p}={v}"))
        .collect();
    named.join(" and ")
}

impl KFloor {
    pub fn new(store: Arc<dyn InsightStore>, k: u64) -> Self {
        KFloor { store, k }
    }

    pub fn k(&self) -> u64 {
        self.k
    }

    fn folded<T: Default>(&self, reason: String) -> Answer<T> {
        Answer {
            value: T::default(),
            source: Source::Rollup,
            folded: Some(Folded { reason, k: self.k }),
        }
    }

    /// Why the question must be folded as a whole, if it must.
    fn refusal(&self, scope: &Scope) -> Result<Option<String>, StoreError> {
        let k = self.k;
        let n = scope.filters.len();
        if n > MAX_FILTERS {
            return Ok(Some(format!(
                "at most {MAX_FILTERS} filters can be combined; this question has {n}"
            )));
        }
        if n == 0 {
            if scope.events.is_empty() {
                return Ok(None);
            }
            let machines = self.machines_at_least(scope)?;
            return Ok((machines > 0 && machines < k).then(|| {
                format!(
                    "the events {} were sent by fewer than k={k} machines in this range",
                    scope.events.join(", ")
                )
            }));
        }
        // The breakdown of filter i's property under the filters of `mask` (i not in it):
        // its group of filter i's value is the cell of `mask` with i; its other groups
        // are machines that the question with i leaves out.
        let full = (1usize << n) - 1;
        let mut splits: HashMap<(usize, usize), Vec<Group>> = HashMap::new();
        for mask in 0..full {
            for i in (0..n).filter(|i| mask & (1 << i) == 0) {
                let s = with_filters(scope, mask);
                let groups = self.store.breakdown(&s, &scope.filters[i].0, None)?.0;
                splits.insert((mask, i), groups);
            }
        }
        let cell = |mask: usize| -> Cell {
            let i = usize::BITS as usize - 1 - mask.leading_zeros() as usize;
            splits[&(mask & !(1 << i), i)]
                .iter()
                .find(|g| g.value == scope.filters[i].1)
                .map_or(
                    Cell {
                        count: 0,
                        machines: 0,
                    },
                    |g| Cell {
                        count: g.count,
                        machines: g.machines,
                    },
                )
        };
        let whole = cell(full);
        // No machine at all is no one to single out, and leaves nothing to subtract.
        if whole.count == 0 {
            return Ok(None);
        }
        if whole.machines < k {
            return Ok(Some(format!(
                "the filter {} matches fewer than k={k} machines in this range",
                describe(&scope.filters, full)
            )));
        }
        let unfiltered = with_filters(scope, 0);
        let unfiltered = Cell {
            count: self
                .store
                .trend(&unfiltered, Interval::Month)?
                .0
                .iter()
                .map(|p| p.1)
                .sum(),
            machines: self.machines_at_least(&unfiltered)?,
        };
        for mask in 0..full {
            let smaller = if mask == 0 { unfiltered } else { cell(mask) };
            let mut step = Step {
                mask,
                added_events: smaller.count.saturating_sub(whole.count),
                added_at_least: smaller.machines.saturating_sub(whole.machines),
            };
            for i in (0..n).filter(|i| mask & (1 << i) == 0) {
                let left_out = splits[&(mask, i)]
                    .iter()
                    .filter(|g| g.value != scope.filters[i].1)
                    .map(|g| g.machines)
                    .max()
                    .unwrap_or(0);
                step.added_at_least = step.added_at_least.max(left_out);
            }
            if step.added_events > 0 && step.added_at_least < k {
                let dropped = describe(&scope.filters, full & !step.mask);
                return Ok(Some(format!(
                    "without the filter {dropped} the answer would add events of fewer than \
                     k={k} machines, so the two answers together would single them out"
                )));
            }
        }
        Ok(None)
    }

    /// A lower bound of the distinct machines of a scope over its range: the most in any
    /// one month (machines are counted per bucket, and a range spans a few months).
    fn machines_at_least(&self, scope: &Scope) -> Result<u64, StoreError> {
        Ok(self
            .store
            .active(scope, Interval::Month)?
            .0
            .iter()
            .map(|p| p.1)
            .max()
            .unwrap_or(0))
    }

    /// The scopes with fewer filters, each of which could be asked beside this one.
    fn smaller(scope: &Scope) -> impl Iterator<Item = Scope> + '_ {
        let full = (1usize << scope.filters.len()) - 1;
        (0..full).map(move |mask| with_filters(scope, mask))
    }

    /// Whether a list entry seen as `(count, machines)` here differs from its cell in
    /// each smaller question by no events or by events of at least k machines.
    fn stands_apart(
        &self,
        cell: (u64, u64),
        smaller: &[HashMap<String, (u64, u64)>],
        key: &str,
    ) -> bool {
        smaller.iter().all(|cells| {
            let (count, machines) = cells.get(key).copied().unwrap_or(cell);
            count == cell.0 || machines.saturating_sub(cell.1) >= self.k
        })
    }

    /// Event counts per bucket.
    pub fn trend(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<Answer<Vec<(i64, u64)>>, StoreError> {
        if let Some(reason) = self.refusal(scope)? {
            return Ok(self.folded(reason));
        }
        let (value, source) = self.store.trend(scope, interval)?;
        Ok(Answer {
            value,
            source,
            folded: None,
        })
    }

    /// Distinct machines per bucket.
    pub fn active(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<Answer<Vec<(i64, u64)>>, StoreError> {
        if let Some(reason) = self.refusal(scope)? {
            return Ok(self.folded(reason));
        }
        let (value, source) = self.store.active(scope, interval)?;
        Ok(Answer {
            value,
            source,
            folded: None,
        })
    }

    /// Groups per value of `property` (per bucket when `over` is set), the `top` largest
    /// that pass the floor by name and the rest as "other". Also returns the machines of
    /// every group before folding, summed per bucket, for shares.
    pub fn breakdown(
        &self,
        scope: &Scope,
        property: &str,
        over: Option<Interval>,
        top: usize,
    ) -> Result<Answer<Shares>, StoreError> {
        if let Some(reason) = self.refusal(scope)? {
            return Ok(self.folded(reason));
        }
        let (groups, source) = self.store.breakdown(scope, property, over)?;
        let key = |g: &Group| format!("{}\u{0}{}", g.bucket_ms, g.value);
        let smaller = Self::smaller(scope)
            .map(|s| {
                Ok(self
                    .store
                    .breakdown(&s, property, over)?
                    .0
                    .iter()
                    .map(|g| (key(g), (g.count, g.machines)))
                    .collect())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut totals: HashMap<i64, u64> = HashMap::new();
        for g in &groups {
            *totals.entry(g.bucket_ms).or_default() += g.machines;
        }
        let value = fold_where(groups, self.k, top, |g| {
            self.stands_apart((g.count, g.machines), &smaller, &key(g))
        });
        Ok(Answer {
            value: (value, totals),
            source,
            folded: None,
        })
    }

    /// FATAL events per crash site; sites and each site's versions below the floor fold.
    pub fn crash_sites(
        &self,
        scope: &Scope,
        top: usize,
    ) -> Result<Answer<Vec<CrashSite>>, StoreError> {
        if let Some(reason) = self.refusal(scope)? {
            return Ok(self.folded(reason));
        }
        let site_key = |c: &CrashSite| format!("{}\u{0}{}\u{0}{}", c.function, c.file, c.line);
        let sites = self.store.crash_sites(scope)?;
        let smaller_sites = Self::smaller(scope)
            .map(|s| {
                Ok(self
                    .store
                    .crash_sites(&s)?
                    .iter()
                    .map(|c| (site_key(c), (c.count, c.machines)))
                    .collect())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // A site's versions: the crash site rollup is [function, file, line, version].
        let version_key = |g: &Group| {
            let parts: Vec<String> = serde_json::from_str(&g.value).unwrap_or_default();
            parts.join("\u{0}")
        };
        let fatal = Scope {
            events: vec![],
            ..scope.clone()
        };
        let versions = self.store.breakdown(&fatal, FATAL_SITE, None)?.0;
        let smaller_versions = Self::smaller(&fatal)
            .map(|s| {
                Ok(self
                    .store
                    .breakdown(&s, FATAL_SITE, None)?
                    .0
                    .iter()
                    .map(|g| (version_key(g), (g.count, g.machines)))
                    .collect())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let shown: HashSet<String> = versions
            .iter()
            .filter(|g| {
                g.machines >= self.k
                    && self.stands_apart((g.count, g.machines), &smaller_versions, &version_key(g))
            })
            .map(version_key)
            .collect();
        let mut value = fold_crashes_where(sites, self.k, top, |c| {
            self.stands_apart((c.count, c.machines), &smaller_sites, &site_key(c))
        });
        for site in value.iter_mut() {
            let before = site.versions.len();
            let key = site_key(site);
            site.versions
                .retain(|v| shown.contains(&format!("{key}\u{0}{v}")));
            if site.versions.len() < before {
                site.versions.push(OTHER.into());
            }
        }
        Ok(Answer {
            value,
            source: Source::Rollup,
            folded: None,
        })
    }

    /// Every property seen in the range, with examples seen on at least k machines.
    pub fn properties(&self, scope: &Scope) -> Result<Vec<PropertySummary>, StoreError> {
        self.store.properties(scope, self.k)
    }

    /// The newest events, as stored: raw data for admins, not folded.
    pub fn recent(&self, project_id: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.recent(project_id, limit)
    }

    /// One read-only query over the raw tables: for admins, not folded.
    pub fn sql(&self, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
        self.store.sql(sql, limits)
    }

    /// Removes every event of one machine; returns how many.
    pub fn erase_machine(&self, project_id: i64, distinct_id: &str) -> Result<u64, StoreError> {
        self.store.erase_machine(project_id, distinct_id)
    }
}
