//! Erasure's rewrite of the rollup rows a machine's events added to: the rows recounted
//! without the machine put in place of the stored ones, and every other row left alone.

use super::super::{pairs, spans};
use super::{Agg, DAY_MS, PropMaps, count_events_at, folded_upto, slot};
use crate::sketch::MachineSet;
use rusqlite::{Connection, params};
use rustc_hash::FxHashMap as HashMap;

/// The (property, value)s each day's events of an [`Agg`] have.
#[derive(Default)]
pub(in crate::store::sqlite) struct Values(
    HashMap<i64, HashMap<String, std::collections::HashSet<String>>>,
);

impl Values {
    pub fn of(agg: &Agg) -> Values {
        let mut values = Values::default();
        for c in agg.combos.values().flatten() {
            let day = values.0.entry(c.day).or_default();
            for (prop, value) in c.dims.iter() {
                slot(day, prop).insert(value.to_owned());
            }
        }
        values
    }

    /// Whether every (property, value) of every day of `agg` is among these.
    pub fn cover(&self, agg: &Agg) -> bool {
        agg.combos
            .values()
            .flatten()
            .all(|c| c.dims.iter().all(|(p, v)| self.has(c.day, p, v)))
    }

    pub(super) fn has(&self, day: i64, prop: &str, value: &str) -> bool {
        self.0
            .get(&day)
            .and_then(|d| d.get(prop))
            .is_some_and(|v| v.contains(value))
    }
}

/// Puts `counted` (the rows of the events of `days` up to sequence number `upto`,
/// without the removed ones, counted with only the (property, value)s `only` of
/// `touched`) plus what the events after it up to the rollup mark add in place of the
/// rollup rows that `touched` (what the removed events added) adds to; of those, the rows
/// no other event adds to are removed. Every other row of the days stays as it is.
pub(in crate::store::sqlite) fn replace_touched(
    conn: &Connection,
    project: i64,
    days: &[i64],
    mut counted: Rows,
    upto: i64,
    only: &Values,
    touched: &Agg,
) -> rusqlite::Result<()> {
    let folded = folded_upto(conn)?;
    let mut since = Agg::default();
    // By sequence number: the few events since `upto`, not every event of the days.
    count_events_at(
        conn,
        "seq > ?1 AND seq <= ?2 AND +project_id = ?3",
        params![upto, folded, project],
        &|ts| days.binary_search(&ts.div_euclid(DAY_MS)).is_ok(),
        Some(only),
        &mut since,
    )?;
    counted.add(since.into_rows());
    for &day in days {
        spans::invalidate(conn, project, day)?;
    }
    let started = std::time::Instant::now();
    counted.replace(conn, touched)?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "rollup rows of an erasure written"
    );
    Ok(())
}

/// The rows an [`Agg`] adds up to, keyed as they are stored. Erasure expands its
/// recount into these while it plans, so that under the write lock it only adds what
/// the few events since add.
pub(in crate::store::sqlite) struct Rows {
    events: HashMap<(i64, i64), HashMap<String, i64>>,
    machines: HashMap<(i64, i64), HashMap<String, MachineSet>>,
    hour_machines: HashMap<(i64, i64), HashMap<String, MachineSet>>,
    props: HashMap<(i64, i64), PropMaps>,
    pairs: pairs::OwnedRows,
}

impl Agg {
    /// Reads the stored rows that [`Rows::replace`] rewrites when `self` is what was
    /// touched, sets and all, so that their pages are in memory by the time it runs
    /// under the write lock.
    pub fn warm(&self, conn: &Connection) -> rusqlite::Result<()> {
        let read = |sql: &str, key: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<()> {
            conn.prepare_cached(sql)?.query(key)?.next()?;
            Ok(())
        };
        for ((project, hour), by_event) in &self.events {
            for event in by_event.keys() {
                read(
                    "SELECT * FROM rollup_events WHERE project_id = ?1 AND event = ?2 AND hour = ?3",
                    params![project, event, hour],
                )?;
            }
        }
        for (table, time, touched) in [
            ("rollup_machines", "day", &self.machines),
            ("rollup_machine_hours", "hour", &self.hour_machines),
        ] {
            let sql = format!(
                "SELECT * FROM {table} WHERE project_id = ?1 AND event = ?2 AND {time} = ?3"
            );
            for ((project, t), by_event) in touched {
                for event in by_event.keys() {
                    read(&sql, params![project, event, t])?;
                }
            }
        }
        let props = ["rollup_props", "rollup_prop_machines"].map(|table| {
            format!(
                "SELECT * FROM {table} WHERE project_id = ?1 AND prop = ?2 AND day = ?3
                 AND event = ?4 AND value = ?5"
            )
        });
        for ((project, day), by_event) in &self.props() {
            for (event, by_prop) in by_event {
                for (prop, by_value) in by_prop {
                    for value in by_value.keys() {
                        for sql in &props {
                            read(sql, params![project, prop, day, event, value])?;
                        }
                    }
                }
            }
        }
        pairs::warm(conn, self.combos.values().flatten())
    }

    /// The rows this adds up to.
    pub fn into_rows(self) -> Rows {
        Rows {
            props: self.props(),
            pairs: pairs::owned_rows(self.combos.values().flatten()),
            events: self.events,
            machines: self.machines,
            hour_machines: self.hour_machines,
        }
    }
}

impl Rows {
    /// Adds the rows of `other` to these.
    pub fn add(&mut self, other: Rows) {
        for (key, by_event) in other.events {
            for (event, n) in by_event {
                *self
                    .events
                    .entry(key)
                    .or_default()
                    .entry(event)
                    .or_default() += n;
            }
        }
        for (mine, theirs) in [
            (&mut self.machines, other.machines),
            (&mut self.hour_machines, other.hour_machines),
        ] {
            for (key, by_event) in theirs {
                for (event, set) in by_event {
                    mine.entry(key)
                        .or_default()
                        .entry(event)
                        .or_default()
                        .merge(&set);
                }
            }
        }
        for (key, by_event) in other.props {
            let mine = self.props.entry(key).or_default();
            for (event, by_prop) in by_event {
                let mine = mine.entry(event).or_default();
                for (prop, by_value) in by_prop {
                    let mine = mine.entry(prop).or_default();
                    for (value, agg) in by_value {
                        mine.entry(value).or_default().add(&agg);
                    }
                }
            }
        }
        for (key, agg) in other.pairs {
            self.pairs.entry(key).or_default().add(&agg);
        }
    }

    /// Writes the rows of `self` in place of the stored rows that `touched` adds to, and
    /// removes those of them that `self` has none for.
    pub fn replace(&self, conn: &Connection, touched: &Agg) -> rusqlite::Result<()> {
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO rollup_events (project_id, event, hour, count)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut delete = conn.prepare_cached(
            "DELETE FROM rollup_events WHERE project_id = ?1 AND event = ?2 AND hour = ?3",
        )?;
        for (key @ (project, hour), by_event) in &touched.events {
            for event in by_event.keys() {
                match self.events.get(key).and_then(|m| m.get(event)) {
                    Some(n) => put.execute(params![project, event, hour, n])?,
                    None => delete.execute(params![project, event, hour])?,
                };
            }
        }
        for (table, time, columns, values, mine, theirs) in [
            (
                "rollup_machines",
                "day",
                "",
                "",
                &self.machines,
                &touched.machines,
            ),
            (
                "rollup_machine_hours",
                "hour",
                ", machine_count",
                ", sketch_count(?4)",
                &self.hour_machines,
                &touched.hour_machines,
            ),
        ] {
            let mut put = conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {table} (project_id, event, {time}, machines{columns})
                 VALUES (?1, ?2, ?3, ?4{values})"
            ))?;
            let mut delete = conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE project_id = ?1 AND event = ?2 AND {time} = ?3"
            ))?;
            for (key @ (project, t), by_event) in theirs {
                for event in by_event.keys() {
                    match mine.get(key).and_then(|m| m.get(event)) {
                        Some(set) => put.execute(params![project, event, t, set.to_bytes()])?,
                        None => delete.execute(params![project, event, t])?,
                    };
                }
            }
        }
        let mut counts = conn.prepare_cached(
            "INSERT OR REPLACE INTO rollup_props
             (project_id, prop, day, event, value, count, first_ms, last_ms, machine_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut sets = conn.prepare_cached(
            "INSERT OR REPLACE INTO rollup_prop_machines (project_id, prop, day, event, value, machines)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let delete = |table: &str| {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE project_id = ?1 AND prop = ?2 AND day = ?3
                 AND event = ?4 AND value = ?5"
            ))
        };
        let mut deletes = [delete("rollup_props")?, delete("rollup_prop_machines")?];
        for (key @ (project, day), by_event) in &touched.props() {
            for (event, by_prop) in by_event {
                for (prop, by_value) in by_prop {
                    for value in by_value.keys() {
                        let counted = self
                            .props
                            .get(key)
                            .and_then(|m| m.get(event))
                            .and_then(|m| m.get(prop))
                            .and_then(|m| m.get(value));
                        match counted {
                            Some(a) => {
                                let n = a.machines.count() as i64;
                                counts.execute(params![
                                    project, prop, day, event, value, a.count, a.first_ms,
                                    a.last_ms, n
                                ])?;
                                sets.execute(params![
                                    project,
                                    prop,
                                    day,
                                    event,
                                    value,
                                    a.machines.to_bytes()
                                ])?;
                            }
                            None => {
                                for delete in &mut deletes {
                                    delete.execute(params![project, prop, day, event, value])?;
                                }
                            }
                        }
                    }
                }
            }
        }
        pairs::replace(conn, &self.pairs, touched.combos.values().flatten())
    }
}
