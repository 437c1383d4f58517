//! Rate limits on capture. The write token ships inside every agent, so anyone can send
//! with it; these bound what one sender can do with it: events per minute per project and
//! per machine (`distinct_id`), and new machines per minute per project, so that rotating
//! ids does not escape the machine limit. Past a limit capture answers 429 with
//! `Retry-After`; that is a different answer from the 503 of a full queue
//! ([`crate::admission`]): this sender sent too much, not the collector has too much to do.
//!
//! Each limit is a GCRA (generic cell rate algorithm, as in the `governor` crate): one
//! "theoretical arrival time" per key and no timers. A limit of N a minute lets up to N
//! through at once and refills at N a minute.
//!
//! A request is decided whole: every limit it touches is checked before any is charged,
//! and it is stored whole or refused whole. PostHog SDKs resend the whole batch after a
//! 429, so storing the part under the limit would store that part again at the resend.
//! (`governor` charges each key as it checks it: a batch refused for one machine would
//! still spend its other machines' and its project's budget; hence this small module.)
//!
//! Memory is bounded by construction. A machine is remembered by a 64-bit keyed hash of
//! (project, distinct_id), 16 bytes with its state however long the id, in two
//! generations of at most [`GENERATION`] entries: when the newer fills, the older is
//! dropped. So at most twice [`GENERATION`] machines (about 18 MB) are held whatever is
//! sent, and the [`GENERATION`] most recently seen are always remembered. A flood of
//! random ids can only push out the oldest, and only as fast as the new-machine limit
//! lets ids in: an id that limit refuses is not remembered. The key of the hash is
//! random, so no sender can choose ids that collide.

use rustc_hash::FxHashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const MINUTE: u64 = 60_000_000_000;

/// Machines per generation: 7/8 of 2^19, the most a table of 2^19 slots holds before it
/// doubles (17 bytes a slot, 8.9 MB a generation).
pub const GENERATION: usize = (1 << 19) / 8 * 7;

/// Each limit, per minute; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub project_events: u32,
    pub machine_events: u32,
    pub new_machines: u32,
}

impl Limits {
    /// Far above what a fleet sends (an agent sends a few events a day, at most 100 at a
    /// time): 600 000 events a minute per project is 10 000 a second, a tenth of what two
    /// cores commit, which is 80 times what a million machines with ten events a day
    /// each send at their peak. 1 000 events a minute per machine covers ten full batches of
    /// a spool at once; 10 000 new machines a minute is 14 million a day.
    pub const DEFAULT: Limits = Limits {
        project_events: 600_000,
        machine_events: 1_000,
        new_machines: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which limit refused a request; the `limit` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ProjectEvents,
    MachineEvents,
    NewMachines,
}

impl Limit {
    pub const ALL: [Limit; 3] = [
        Limit::ProjectEvents,
        Limit::MachineEvents,
        Limit::NewMachines,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ProjectEvents => "project_events",
            Limit::MachineEvents => "machine_events",
            Limit::NewMachines => "new_machines",
        }
    }
}

/// A refused request: which limit, how much it allows, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}; nothing was stored; retry in {} s", what(*.limit, *.per_minute), self.retry_after_secs())]
pub struct Limited {
    pub limit: Limit,
    pub per_minute: u32,
    pub retry_after: Duration,
}

fn what(limit: Limit, n: u32) -> String {
    match limit {
        Limit::ProjectEvents => format!(
            "this project sent more than its limit of {n} events a minute (serve --project-events-per-minute)"
        ),
        Limit::MachineEvents => format!(
            "a machine (distinct_id) in this request sent more than its limit of {n} events a minute (serve --machine-events-per-minute)"
        ),
        Limit::NewMachines => format!(
            "this project received more than its limit of {n} new machines (distinct_id) a minute (serve --new-machines-per-minute); machines it has seen go on"
        ),
    }
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64
    }
}

/// What an admitted request took, given back by [`RateLimiter::refund`] when it is not
/// stored after all (a full queue, a full disk), so that a sender retrying through an
/// overload is not rate limited for it too.
#[derive(Debug)]
pub struct Charge {
    project: i64,
    events: u64,
    new_machines: u64,
    machines: Vec<(u64, u64)>,
}

pub struct RateLimiter {
    limits: Limits,
    generation: usize,
    hasher: RandomState,
    epoch: Instant,
    state: Mutex<State>,
    refused: [AtomicU64; Limit::ALL.len()],
}

#[derive(Default)]
struct State {
    projects: FxHashMap<i64, Cells>,
    machines: Generations,
}

/// A project's arrival times, in nanoseconds since the limiter started.
#[derive(Default, Clone, Copy)]
struct Cells {
    events: u64,
    new_machines: u64,
}

/// Machines by hash, with their arrival time: the newer generation and the older.
#[derive(Default)]
struct Generations {
    newer: FxHashMap<u64, u64>,
    older: FxHashMap<u64, u64>,
}

impl Generations {
    fn get(&self, machine: u64) -> Option<u64> {
        self.newer
            .get(&machine)
            .or_else(|| self.older.get(&machine))
            .copied()
    }

    fn set(&mut self, machine: u64, tat: u64, generation: usize) {
        if self.newer.insert(machine, tat).is_none() {
            self.older.remove(&machine);
            if self.newer.len() >= generation {
                self.older = std::mem::take(&mut self.newer);
            }
        }
    }

    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

/// `n` more arrivals at `now` on a cell due at `tat`, at `per_minute` (0: no limit) with
/// up to a minute's worth at once: the cell's new time, or how long until they would
/// pass. A cell that owes nothing takes any `n`, and owes it after, so a request larger
/// than a minute's worth is slowed, not refused for ever.
fn take(tat: u64, now: u64, n: u64, per_minute: u32) -> Result<u64, u64> {
    if per_minute == 0 || n == 0 {
        return Ok(tat);
    }
    let cost = n.saturating_mul(MINUTE / u64::from(per_minute));
    let due = tat.max(now).saturating_add(cost);
    if tat <= now || due <= now + MINUTE {
        Ok(due)
    } else if cost <= MINUTE {
        Err(due - MINUTE - now)
    } else {
        Err(tat - now)
    }
}

fn give_back(tat: &mut u64, n: u64, per_minute: u32) {
    if per_minute > 0 {
        *tat = tat.saturating_sub(n.saturating_mul(MINUTE / u64::from(per_minute)));
    }
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        RateLimiter::with_generation(limits, GENERATION)
    }

    fn with_generation(limits: Limits, generation: usize) -> Self {
        RateLimiter {
            limits,
            generation,
            hasher: RandomState::new(),
            epoch: Instant::now(),
            state: Mutex::default(),
            refused: Default::default(),
        }
    }

    /// Admits a request of `project` carrying events of these distinct ids (one per
    /// event), or says which limit refuses it; a refused request changes nothing.
    pub fn admit<'a>(
        &self,
        project: i64,
        distinct_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Charge, Limited> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let admitted = self.admit_at(project, distinct_ids, now);
        if let Err(l) = &admitted {
            let i = Limit::ALL.iter().position(|x| *x == l.limit).unwrap_or(0);
            self.refused[i].fetch_add(1, Relaxed);
        }
        admitted
    }

    fn admit_at<'a>(
        &self,
        project: i64,
        distinct_ids: impl IntoIterator<Item = &'a str>,
        now: u64,
    ) -> Result<Charge, Limited> {
        let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
        let mut events = 0;
        for id in distinct_ids {
            *counts
                .entry(self.hasher.hash_one((project, id)))
                .or_default() += 1;
            events += 1;
        }
        let limits = self.limits;
        let refused = |limit, per_minute, wait| Limited {
            limit,
            per_minute,
            retry_after: Duration::from_nanos(wait),
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut machines = Vec::with_capacity(counts.len());
        let mut new_machines = 0;
        for (&machine, &n) in &counts {
            let tat = state.machines.get(machine).unwrap_or_else(|| {
                new_machines += 1;
                0
            });
            let due = take(tat, now, n, limits.machine_events)
                .map_err(|w| refused(Limit::MachineEvents, limits.machine_events, w))?;
            machines.push((machine, due));
        }
        let cells = state.projects.get(&project).copied().unwrap_or_default();
        let next = Cells {
            new_machines: take(cells.new_machines, now, new_machines, limits.new_machines)
                .map_err(|w| refused(Limit::NewMachines, limits.new_machines, w))?,
            events: take(cells.events, now, events, limits.project_events)
                .map_err(|w| refused(Limit::ProjectEvents, limits.project_events, w))?,
        };
        state.projects.insert(project, next);
        for &(machine, due) in &machines {
            state.machines.set(machine, due, self.generation);
        }
        Ok(Charge {
            project,
            events,
            new_machines,
            machines: machines.iter().map(|&(m, _)| (m, counts[&m])).collect(),
        })
    }

    /// Gives back what a request took when it was not stored after all.
    pub fn refund(&self, charge: Charge) {
        let limits = self.limits;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cells) = state.projects.get_mut(&charge.project) {
            give_back(&mut cells.events, charge.events, limits.project_events);
            give_back(
                &mut cells.new_machines,
                charge.new_machines,
                limits.new_machines,
            );
        }
        for (machine, n) in charge.machines {
            if let Some(mut tat) = state.machines.get(machine) {
                give_back(&mut tat, n, limits.machine_events);
                state.machines.set(machine, tat, self.generation);
            }
        }
    }

    /// How many machines are remembered now.
    pub fn machines(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.machines.len()
    }

    /// The limits' figures, in Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP anonstats_rate_limited_total Capture requests refused with 429, by the limit they passed.\n# TYPE anonstats_rate_limited_total counter"
        );
        for (limit, n) in Limit::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "anonstats_rate_limited_total{{limit=\"{}\"}} {}",
                limit.as_str(),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP anonstats_rate_limit_machines Machines the rate limits remember (at most {}).\n# TYPE anonstats_rate_limit_machines gauge\nanonstats_rate_limit_machines {}",
            2 * self.generation,
            self.machines()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limiter(project_events: u32, machine_events: u32, new_machines: u32) -> RateLimiter {
        RateLimiter::new(Limits {
            project_events,
            machine_events,
            new_machines,
        })
    }

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn admit(l: &RateLimiter, ids: &[String], now: u64) -> Result<Charge, Limited> {
        l.admit_at(1, ids.iter().map(String::as_str), now)
    }

    #[test]
    fn a_machine_gets_a_minutes_worth_at_once_then_its_rate() {
        let l = limiter(0, 60, 0);
        let one = vec!["m".to_string()];
        for _ in 0..60 {
            admit(&l, &one, 0).unwrap();
        }
        let refused = admit(&l, &one, 0).unwrap_err();
        assert_eq!(refused.limit, Limit::MachineEvents);
        assert_eq!(refused.retry_after_secs(), 1, "{refused:?}");
        assert!(
            refused.to_string().contains("limit of 60 events a minute"),
            "{refused}"
        );
        admit(&l, &one, SEC).unwrap();
        assert!(admit(&l, &one, SEC).is_err());
        // Another machine has its own budget.
        admit(&l, &["n".to_string()], SEC).unwrap();
    }

    #[test]
    fn a_batch_is_decided_whole_and_a_refusal_charges_nothing() {
        let l = limiter(0, 10, 0);
        let mut batch = vec!["a".to_string(); 5];
        batch.extend(vec!["b".to_string(); 11]);
        admit(&l, &vec!["b".to_string(); 5], 0).unwrap();
        // b is over: the batch is refused, and a was not charged for it.
        assert_eq!(
            admit(&l, &batch, 0).unwrap_err().limit,
            Limit::MachineEvents
        );
        admit(&l, &vec!["a".to_string(); 10], 0).unwrap();
        assert!(admit(&l, &["a".to_string()], 0).is_err());
    }

    #[test]
    fn a_batch_larger_than_a_minutes_worth_passes_once_then_waits_its_cost() {
        let l = limiter(0, 10, 0);
        let big = vec!["m".to_string(); 30];
        admit(&l, &big, 0).unwrap();
        let refused = admit(&l, &["m".to_string()], 0).unwrap_err();
        // 30 events at 10 a minute: 3 minutes owed, of which 1 may be ahead.
        assert_eq!(refused.retry_after, Duration::from_secs(126));
        admit(&l, &["m".to_string()], 126 * SEC).unwrap();
    }

    #[test]
    fn the_project_limit_counts_every_machine() {
        let l = limiter(100, 0, 0);
        admit(&l, &ids("m", 100), 0).unwrap();
        let refused = admit(&l, &ids("x", 1), 0).unwrap_err();
        assert_eq!(refused.limit, Limit::ProjectEvents);
        assert_eq!(refused.retry_after, Duration::from_millis(600));
        // Another project is not touched.
        l.admit_at(2, ["x"], 0).unwrap();
    }

    #[test]
    fn new_machines_past_the_cap_are_refused_while_known_ones_go_on() {
        let l = limiter(0, 0, 10);
        let known = ids("known", 10);
        admit(&l, &known, 0).unwrap();
        let refused = admit(&l, &ids("new", 1), 0).unwrap_err();
        assert_eq!(refused.limit, Limit::NewMachines);
        assert!(refused.to_string().contains("machines it has seen go on"));
        for _ in 0..100 {
            admit(&l, &known, 0).unwrap();
        }
        // A request with one new id among known ones is refused whole.
        let mut mixed = known.clone();
        mixed.push("new".into());
        assert_eq!(admit(&l, &mixed, 0).unwrap_err().limit, Limit::NewMachines);
        admit(&l, &ids("new", 1), 6 * SEC).unwrap();
    }

    #[test]
    fn a_refund_gives_back_what_was_taken() {
        let l = limiter(10, 10, 10);
        let batch = ids("m", 10);
        let charge = admit(&l, &batch, 0).unwrap();
        assert!(admit(&l, &ids("x", 1), 0).is_err());
        l.refund(charge);
        admit(&l, &batch, 0).unwrap();
    }

    fn remembers(l: &RateLimiter, id: &str) -> bool {
        let state = l.state.lock().unwrap();
        state.machines.get(l.hasher.hash_one((1i64, id))).is_some()
    }

    #[test]
    fn a_flood_of_random_ids_holds_at_most_two_generations_and_keeps_the_recent() {
        let l = RateLimiter::with_generation(Limits::DEFAULT, 1000);
        let known = vec!["known".to_string()];
        let mut most = 0;
        for i in 0..50 {
            admit(&l, &ids(&format!("flood{i}-"), 100), i * SEC).unwrap();
            most = most.max(l.machines());
            // A machine that keeps sending is remembered: fewer than a generation of new
            // ids come between its sends.
            if i % 5 == 0 {
                admit(&l, &known, i * SEC).unwrap();
            }
        }
        assert!(most <= 2000, "{most} machines held");
        assert!(l.machines() >= 1000);
        assert!(remembers(&l, "known"));
        assert!(remembers(&l, "flood49-99"));
        assert!(!remembers(&l, "flood0-0"), "the oldest were not dropped");
    }

    #[test]
    fn ids_the_new_machine_limit_refuses_are_not_remembered() {
        let l = limiter(0, 0, 100);
        for i in 0..1000 {
            let _ = admit(&l, &ids(&format!("r{i}-"), 10), 0);
        }
        assert_eq!(l.machines(), 100);
    }
}
