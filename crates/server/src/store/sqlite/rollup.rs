//! Rollups of the stored events (folded in by the writer, see writer.rs), so that
//! insights read days x buckets rows instead of raw events:
//! - `rollup_events`: events per (project, event, hour);
//! - `rollup_props`: events, first and last time and set size per (project, property,
//!   day, event, value), event '' = any, with the distinct machines in
//!   `rollup_prop_machines`;
//! - `rollup_machines`: distinct machines per (project, event, day), event '' = any.

mod replace;

pub(super) use replace::{Rows, Values, replace_touched};

use super::spans;
use crate::rollup::{Dims, dims};
use crate::sketch::{MachineSet, machine_hash};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, OptionalExtension, params};
use rustc_hash::FxHashMap as HashMap;

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The rollup tables keyed by hour, whose rows erasure and retention remove by hour.
pub(super) const ROLLUP_HOUR_TABLES: [&str; 2] = ["rollup_events", "rollup_machine_hours"];

/// The rollup tables keyed by day, whose rows erasure and retention remove by day.
pub(super) const ROLLUP_DAY_TABLES: [&str; 4] = [
    "rollup_props",
    "rollup_prop_machines",
    "rollup_machines",
    "rollup_pairs",
];

#[derive(Default)]
pub(super) struct PropAgg {
    pub count: i64,
    pub machines: MachineSet,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl PropAgg {
    /// The sum of many, with one union of their sets.
    pub fn sum(parts: &[&PropAgg]) -> PropAgg {
        PropAgg {
            count: parts.iter().map(|p| p.count).sum(),
            machines: MachineSet::union(parts.iter().map(|p| &p.machines)),
            first_ms: parts.iter().map(|p| p.first_ms).min().unwrap_or_default(),
            last_ms: parts.iter().map(|p| p.last_ms).max().unwrap_or_default(),
        }
    }

    pub fn add(&mut self, other: &PropAgg) {
        if self.count == 0 {
            (self.first_ms, self.last_ms) = (other.first_ms, other.last_ms);
        }
        self.count += other.count;
        self.machines.merge(&other.machines);
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
    }
}

/// Per value, per property, per event: nested so that the hot path looks keys up by
/// `&str` and allocates only for a key it has not seen before. (FxHash: the keys are
/// ours, not an attacker's choice of collisions worth a slower hash.)
type PropMaps = HashMap<String, HashMap<String, HashMap<String, PropAgg>>>;

/// Events alike in project, day, event name and every (property, value) pair, counted
/// together: a machine sends the same properties again and again, so most events only
/// add to a combination already seen, and each pair's rows are updated once per
/// combination at the fold instead of once per event.
pub(super) struct Combo {
    pub project: i64,
    pub day: i64,
    pub event: String,
    pub dims: Dims,
    pub agg: PropAgg,
}

/// Rollup rows accumulated in memory as events are committed, and written at once when
/// the writer folds.
#[derive(Default)]
pub(super) struct Agg {
    /// (project, hour) -> event.
    events: HashMap<(i64, i64), HashMap<String, i64>>,
    /// By a hash of what makes them alike.
    combos: HashMap<u64, Vec<Combo>>,
    /// (project, day) -> event ('' = any).
    machines: HashMap<(i64, i64), HashMap<String, MachineSet>>,
    /// (project, hour) -> event ('' = any).
    hour_machines: HashMap<(i64, i64), HashMap<String, MachineSet>>,
}

/// The entry of `key`, allocating the key only the first time it is seen.
pub(super) fn slot<'a, V: Default, S: std::hash::BuildHasher>(
    map: &'a mut std::collections::HashMap<String, V, S>,
    key: &str,
) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("the key was inserted above")
}

impl Agg {
    pub fn add(&mut self, project: i64, event: &str, distinct_id: &str, ts_ms: i64, dims: Dims) {
        use std::hash::{BuildHasher, Hash, Hasher};
        if crate::rollup::is_ci(&dims) {
            return;
        }
        let day = ts_ms.div_euclid(DAY_MS);
        let machine = machine_hash(distinct_id);
        let hour = ts_ms.div_euclid(HOUR_MS);
        *slot(self.events.entry((project, hour)).or_default(), event) += 1;
        for machines in [
            self.machines.entry((project, day)).or_default(),
            self.hour_machines.entry((project, hour)).or_default(),
        ] {
            for scope in [event, ""] {
                slot(machines, scope).insert(machine);
            }
        }
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        (project, day, event).hash(&mut h);
        dims.hash(&mut h);
        let alike = self.combos.entry(h.finish()).or_default();
        let at = match alike.iter().position(|c| {
            (c.project, c.day, c.event.as_str(), &c.dims) == (project, day, event, &dims)
        }) {
            Some(i) => i,
            None => {
                alike.push(Combo {
                    project,
                    day,
                    event: event.to_string(),
                    dims,
                    agg: PropAgg::default(),
                });
                alike.len() - 1
            }
        };
        let agg = &mut alike[at].agg;
        if agg.count == 0 {
            (agg.first_ms, agg.last_ms) = (ts_ms, ts_ms);
        }
        agg.count += 1;
        agg.machines.insert(machine);
        agg.first_ms = agg.first_ms.min(ts_ms);
        agg.last_ms = agg.last_ms.max(ts_ms);
    }

    /// (project, day) -> event -> property -> value, from the combinations, with each
    /// day's rows merged over every event as event '' (capture refuses empty event
    /// names): the rows questions about all events read instead of one per event.
    fn props(&self) -> HashMap<(i64, i64), PropMaps> {
        let mut props: HashMap<(i64, i64), PropMaps> = HashMap::default();
        for c in self.combos.values().flatten() {
            let by_prop = slot(props.entry((c.project, c.day)).or_default(), &c.event);
            for (prop, value) in c.dims.iter() {
                slot(slot(by_prop, prop), value).add(&c.agg);
            }
        }
        // Merged from the rows of each event, far fewer than the combinations when
        // events come from many machines.
        for by_event in props.values_mut() {
            let mut any: HashMap<String, HashMap<String, PropAgg>> = HashMap::default();
            for by_prop in by_event.values() {
                for (prop, by_value) in by_prop {
                    let any = slot(&mut any, prop);
                    for (value, agg) in by_value {
                        slot(any, value).add(agg);
                    }
                }
            }
            by_event.insert(String::new(), any);
        }
        props
    }

    pub fn flush(self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO rollup_events (project_id, event, hour, count) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (project_id, event, hour) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((project, hour), by_event) in &self.events {
            for (event, count) in by_event {
                stmt.execute(params![project, event, hour, count])?;
            }
        }
        let mut counts = conn.prepare_cached(
            "INSERT INTO rollup_props
             (project_id, prop, day, event, value, count, first_ms, last_ms, machine_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (project_id, prop, day, event, value) DO UPDATE SET
               count = count + excluded.count,
               first_ms = min(first_ms, excluded.first_ms),
               last_ms = max(last_ms, excluded.last_ms),
               machine_count = excluded.machine_count",
        )?;
        let mut sets = MachineSets::new(
            conn,
            "SELECT machines FROM rollup_prop_machines
             WHERE project_id = ?1 AND prop = ?2 AND day = ?3 AND event = ?4 AND value = ?5",
            "INSERT OR REPLACE INTO rollup_prop_machines (project_id, prop, day, event, value, machines)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let today = spans::today();
        for ((project, day), by_event) in &self.props() {
            if *day < today {
                spans::invalidate(conn, *project, *day)?;
            }
            for (event, by_prop) in by_event {
                for (prop, by_value) in by_prop {
                    for (value, a) in by_value {
                        let machines =
                            sets.add(params![project, prop, day, event, value], &a.machines)?;
                        counts.execute(params![
                            project,
                            prop,
                            day,
                            event,
                            value,
                            a.count,
                            a.first_ms,
                            a.last_ms,
                            machines as i64
                        ])?;
                    }
                }
            }
        }
        super::pairs::flush(conn, self.combos.values().flatten())?;
        // Hours keep each set's size beside it: an hourly series reads one set per hour.
        for (table, time, columns, values, by_time) in [
            ("rollup_machines", "day", "", "", &self.machines),
            (
                "rollup_machine_hours",
                "hour",
                ", machine_count",
                ", sketch_count(?4)",
                &self.hour_machines,
            ),
        ] {
            let mut sets = MachineSets::new(
                conn,
                &format!(
                    "SELECT machines FROM {table} WHERE project_id = ?1 AND event = ?2 AND {time} = ?3"
                ),
                &format!(
                    "INSERT OR REPLACE INTO {table} (project_id, event, {time}, machines{columns})
                     VALUES (?1, ?2, ?3, ?4{values})"
                ),
            )?;
            for ((project, t), by_event) in by_time {
                for (event, set) in by_event {
                    sets.add(params![project, event, t], set)?;
                }
            }
        }
        Ok(())
    }
}

/// Merges sets into stored ones, writing a row only when its set gained a machine.
struct MachineSets<'c> {
    read: rusqlite::CachedStatement<'c>,
    write: rusqlite::CachedStatement<'c>,
}

impl<'c> MachineSets<'c> {
    fn new(conn: &'c Connection, read: &str, write: &str) -> rusqlite::Result<Self> {
        Ok(MachineSets {
            read: conn.prepare_cached(read)?,
            write: conn.prepare_cached(write)?,
        })
    }

    /// Merges `set` into the stored one; returns the size of the result.
    fn add(&mut self, key: &[&dyn rusqlite::ToSql], set: &MachineSet) -> rusqlite::Result<u64> {
        let stored: Option<Vec<u8>> = self.read.query_row(key, |r| r.get(0)).optional()?;
        let merged = match stored {
            None => set.clone(),
            Some(bytes) => {
                let mut s = MachineSet::from_bytes(&bytes);
                if !s.merge(set) {
                    return Ok(s.count());
                }
                s
            }
        };
        let blob = merged.to_bytes();
        let mut values: Vec<&dyn rusqlite::ToSql> = key.to_vec();
        values.push(&blob);
        self.write.execute(values.as_slice())?;
        Ok(merged.count())
    }
}

/// A number kept in `meta`, when it is there.
pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// The sequence number up to which the rollups count events (see writer.rs).
pub(super) fn folded_upto(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'rollup_seq'", [], |r| {
        r.get(0)
    })
}

pub(super) fn set_folded_upto(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'rollup_seq'", [seq])?;
    Ok(())
}

/// Adds to `agg` what the stored events matching `filter` (SQL over `events`) add to the
/// rollups.
pub(super) fn count_events(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
    agg: &mut Agg,
) -> rusqlite::Result<()> {
    count_events_at(conn, filter, params, &|_| true, None, agg)
}

/// [`count_events`] of the events whose time (Unix ms) `at` also keeps; with `only`, of
/// each event only the (property, value)s among those, so that only the rows they add
/// to are counted.
pub(super) fn count_events_at(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
    at: &dyn Fn(i64) -> bool,
    only: Option<&Values>,
    agg: &mut Agg,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT project_id, event, distinct_id, ts_ms, properties FROM events WHERE {filter}"
    ))?;
    let mut rows = stmt.query(params)?;
    while let Some(row) = rows.next()? {
        if !at(row.get(3)?) {
            continue;
        }
        let event: String = row.get(1)?;
        let distinct_id: String = row.get(2)?;
        let props: String = row.get(4)?;
        let props = anonstats_wire::Properties::parse(&props).unwrap_or_default();
        let ts: i64 = row.get(3)?;
        let mut dims = dims(&event, &props);
        if crate::rollup::is_ci(&dims) {
            continue;
        }
        if let Some(only) = only {
            let day = ts.div_euclid(DAY_MS);
            let mut kept = Dims::default();
            for (p, v) in dims.iter().filter(|(p, v)| only.has(day, p, v)) {
                kept.push(p, v);
            }
            dims = kept;
        }
        agg.add(row.get(0)?, &event, &distinct_id, ts, dims);
    }
    Ok(())
}

/// Recomputes a project's rollups for whole days from its raw events, after events were
/// removed from them. Only events the rollups already counted are counted again; the
/// writer folds in the ones after them.
pub(super) fn rebuild_days(conn: &Connection, project: i64, days: &[i64]) -> rusqlite::Result<()> {
    let folded = folded_upto(conn)?;
    let mut agg = Agg::default();
    for &day in days {
        for table in ROLLUP_HOUR_TABLES {
            conn.execute(
                &format!("DELETE FROM {table} WHERE project_id = ?1 AND hour >= ?2 AND hour < ?3"),
                params![project, day * 24, (day + 1) * 24],
            )?;
        }
        for table in ROLLUP_DAY_TABLES {
            conn.execute(
                &format!("DELETE FROM {table} WHERE project_id = ?1 AND day = ?2"),
                params![project, day],
            )?;
        }
        spans::invalidate(conn, project, day)?;
        count_events(
            conn,
            "project_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND seq <= ?4",
            params![project, day * DAY_MS, (day + 1) * DAY_MS, folded],
            &mut agg,
        )?;
    }
    agg.flush(conn)
}

/// SQL functions over stored machine sets: `sketch_count(s)`, `sketch_merge(a, b)` and
/// the aggregate `sketch_union(s)`.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("sketch_count", 1, flags, |ctx| {
        Ok(blob_set(ctx, 0)?.count() as i64)
    })?;
    conn.create_aggregate_function("sketch_union", 1, flags, Union)?;
    conn.create_scalar_function("sketch_merge", 2, flags, |ctx| {
        let mut set = blob_set(ctx, 0)?;
        if let Some(other) = ctx.get_raw(1).as_blob_or_null()? {
            set.merge_bytes(other);
        }
        Ok(set.to_bytes())
    })?;
    Ok(())
}

fn blob_set(ctx: &Context<'_>, i: usize) -> rusqlite::Result<MachineSet> {
    Ok(match ctx.get_raw(i).as_blob_or_null()? {
        Some(b) => MachineSet::from_bytes(b),
        None => MachineSet::default(),
    })
}

struct Union;

impl Aggregate<MachineSet, Vec<u8>> for Union {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<MachineSet> {
        Ok(MachineSet::default())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut MachineSet) -> rusqlite::Result<()> {
        acc.merge(&blob_set(ctx, 0)?);
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<MachineSet>) -> rusqlite::Result<Vec<u8>> {
        Ok(acc.unwrap_or_default().to_bytes())
    }
}
