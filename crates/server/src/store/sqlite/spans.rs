//! Compacted property rollups: the per-day, per-event rows of `rollup_props` merged over
//! every event and over aligned spans of 1, 7 and 28 days, so that a question about 90
//! days reads a handful of spans instead of 90 days x events of rows.
//!
//! Only spans that ended before today (UTC) are compacted, by a background pass; an event
//! that arrives late for a compacted day removes the spans holding that day in its own
//! commit, and the next pass builds them again. Reads use a span when it is compacted
//! and the day rows otherwise, so answers are the same either way: counts add, first and
//! last take the minimum and maximum, and machine sets merge in any order to one result.

use super::rollup::DAY_MS;
use crate::sketch::MachineSet;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rustc_hash::FxHashMap as HashMap;
use std::collections::HashSet;

/// Span lengths in days, longest first. Each divides the next, so spans nest.
pub const SPANS: [i64; 3] = [28, 7, 1];

/// Spans start on Mondays (Unix day 4, 1970-01-05, was one), so that 7-day spans are
/// the weeks that weekly series bucket by.
const MONDAY: i64 = 4;

/// The first day of the `span`-day span holding `day`.
pub fn span_start(span: i64, day: i64) -> i64 {
    day - (day - MONDAY).rem_euclid(span)
}

/// The current UTC day.
pub fn today() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    ms.div_euclid(DAY_MS)
}

/// One property value's rollup over some days and every event.
pub struct Row<'a> {
    pub prop: &'a str,
    pub value: &'a str,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The stored machine set, decoded on demand.
    pub machines: &'a [u8],
}

impl Row<'_> {
    pub fn machines(&self) -> MachineSet {
        MachineSet::from_bytes(self.machines)
    }
}

/// Where to read the days `[from, to)` from: compacted spans `(span, start)`, and runs
/// of days `[a, b)` that no compacted span covers.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub spans: Vec<(i64, i64)>,
    pub days: Vec<(i64, i64)>,
}

/// Covers `[from, to)` greedily with the longest compacted spans that fit.
pub fn plan(done: &HashSet<(i64, i64)>, from: i64, to: i64) -> Plan {
    let mut p = Plan::default();
    let mut d = from;
    while d < to {
        let span = SPANS
            .iter()
            .copied()
            .find(|&s| span_start(s, d) == d && d + s <= to && done.contains(&(s, d)));
        match span {
            Some(s) => {
                p.spans.push((s, d));
                d += s;
            }
            None => {
                match p.days.last_mut() {
                    Some((_, end)) if *end == d => *end += 1,
                    _ => p.days.push((d, d + 1)),
                }
                d += 1;
            }
        }
    }
    p
}

/// The compacted spans of a project that lie within `[from, to)`.
fn done_within(
    conn: &Connection,
    project: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<HashSet<(i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT span, start FROM rollup_spans_done
         WHERE project_id = ?1 AND start >= ?2 AND start < ?3",
    )?;
    let rows = stmt.query_map(params![project, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Hands `f` the rollup rows of `prop` (every property when `None`) over the days
/// `[from, to)` and every event. A property value may come in several rows (one per
/// span or per event and day); the caller adds them up.
pub fn visit(
    conn: &Connection,
    project: i64,
    prop: Option<&str>,
    from: i64,
    to: i64,
    mut f: impl FnMut(Row<'_>),
) -> rusqlite::Result<()> {
    let plan = plan(&done_within(conn, project, from, to)?, from, to);
    let by_prop = if prop.is_some() {
        "AND prop = ?4"
    } else {
        "AND ?4 IS NULL"
    };
    let mut spans = conn.prepare_cached(&format!(
        "SELECT prop, value, count, first_ms, last_ms, machines FROM rollup_spans
         WHERE project_id = ?1 AND span = ?2 AND start = ?3 {by_prop}"
    ))?;
    for (span, start) in plan.spans {
        let mut rows = spans.query(params![project, span, start, prop])?;
        while let Some(r) = rows.next()? {
            f(row(r)?);
        }
    }
    let mut days = conn.prepare_cached(&format!(
        "SELECT prop, value, count, first_ms, last_ms, machines FROM rollup_props_full
         WHERE project_id = ?1 AND day >= ?2 AND day < ?3 {by_prop}"
    ))?;
    for (a, b) in plan.days {
        let mut rows = days.query(params![project, a, b, prop])?;
        while let Some(r) = rows.next()? {
            f(row(r)?);
        }
    }
    Ok(())
}

pub fn row<'r>(r: &'r rusqlite::Row<'_>) -> rusqlite::Result<Row<'r>> {
    Ok(Row {
        prop: r.get_ref(0)?.as_str()?,
        value: r.get_ref(1)?.as_str()?,
        count: r.get(2)?,
        first_ms: r.get(3)?,
        last_ms: r.get(4)?,
        machines: r.get_ref(5)?.as_blob()?,
    })
}

/// Removes the compacted spans that hold `day`, because its day rows changed.
pub fn invalidate(conn: &Connection, project: i64, day: i64) -> rusqlite::Result<()> {
    let mut rows = conn.prepare_cached(
        "DELETE FROM rollup_spans WHERE project_id = ?1 AND span = ?2 AND start = ?3",
    )?;
    let mut done = conn.prepare_cached(
        "DELETE FROM rollup_spans_done WHERE project_id = ?1 AND span = ?2 AND start = ?3",
    )?;
    for span in SPANS {
        let start = span_start(span, day);
        if done.execute(params![project, span, start])? > 0 {
            rows.execute(params![project, span, start])?;
        }
    }
    Ok(())
}

/// Removes every compacted span that starts before `day`, after the days before it were
/// purged (the spans straddling `day` are compacted again from what is left).
pub fn invalidate_before(conn: &Connection, day: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM rollup_spans WHERE start < ?1", [day])?;
    conn.execute("DELETE FROM rollup_spans_done WHERE start < ?1", [day])?;
    Ok(())
}

/// Compacts every span that ended before `today` and is not compacted yet; returns how
/// many it compacted. Each span is one short transaction, so ingest waits for at most one.
/// `stop` is asked between spans.
pub fn compact(
    conn: &mut Connection,
    today: i64,
    stop: &dyn Fn() -> bool,
) -> rusqlite::Result<usize> {
    let mut built = 0;
    for (project, day) in data_days(conn, today)? {
        for span in SPANS.iter().rev() {
            if stop() {
                return Ok(built);
            }
            let start = span_start(*span, day);
            if start + span <= today && compact_one(conn, project, *span, start)? {
                built += 1;
            }
        }
    }
    Ok(built)
}

/// Every (project, day) before `today` that has rollup rows, found by seeking from one
/// key to the next rather than reading the whole index.
fn data_days(conn: &Connection, today: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut next_project =
        conn.prepare_cached("SELECT MIN(project_id) FROM rollup_props WHERE project_id > ?1")?;
    let mut next_day = conn.prepare_cached(
        "SELECT MIN(day) FROM rollup_props WHERE project_id = ?1 AND day > ?2 AND day < ?3",
    )?;
    let mut out = Vec::new();
    let mut project = i64::MIN;
    while let Some(p) = next_project.query_row([project], |r| r.get::<_, Option<i64>>(0))? {
        let mut day = i64::MIN;
        while let Some(d) =
            next_day.query_row(params![p, day, today], |r| r.get::<_, Option<i64>>(0))?
        {
            out.push((p, d));
            day = d;
        }
        project = p;
    }
    Ok(out)
}

/// Compacts one span unless it already is; returns whether it did.
fn compact_one(
    conn: &mut Connection,
    project: i64,
    span: i64,
    start: i64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done = tx
        .query_row(
            "SELECT 1 FROM rollup_spans_done WHERE project_id = ?1 AND span = ?2 AND start = ?3",
            params![project, span, start],
            |_| Ok(()),
        )
        .optional()?;
    if done.is_some() {
        return Ok(false);
    }
    let mut merged: HashMap<(String, String), (i64, i64, i64, MachineSet)> = HashMap::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT prop, value, count, first_ms, last_ms, machines FROM rollup_props_full
             WHERE project_id = ?1 AND day >= ?2 AND day < ?3",
        )?;
        let mut rows = stmt.query(params![project, start, start + span])?;
        while let Some(r) = rows.next()? {
            let r = row(r)?;
            let key = (r.prop.to_owned(), r.value.to_owned());
            let e = merged
                .entry(key)
                .or_insert_with(|| (0, i64::MAX, i64::MIN, MachineSet::default()));
            e.0 += r.count;
            e.1 = e.1.min(r.first_ms);
            e.2 = e.2.max(r.last_ms);
            e.3.merge(&r.machines());
        }
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO rollup_spans
             (project_id, span, start, prop, value, count, first_ms, last_ms, machines)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for ((prop, value), (count, first, last, machines)) in &merged {
            insert.execute(params![
                project,
                span,
                start,
                prop,
                value,
                count,
                first,
                last,
                machines.to_bytes()
            ])?;
        }
    }
    tx.execute(
        "INSERT INTO rollup_spans_done (project_id, span, start) VALUES (?1, ?2, ?3)",
        params![project, span, start],
    )?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_start_on_mondays_and_nest() {
        // 2024-01-01 was a Monday: Unix day 19723.
        assert_eq!(span_start(7, 19723), 19723);
        assert_eq!(span_start(7, 19729), 19723);
        assert_eq!(span_start(7, 19730), 19730);
        assert_eq!(span_start(1, 19725), 19725);
        assert_eq!((span_start(28, 19730) - MONDAY) % 28, 0);
        assert_eq!((span_start(28, 19730) - span_start(7, 19730)) % 7, 0);
    }

    #[test]
    fn plans_use_the_longest_compacted_spans() {
        let m = span_start(28, 19800);
        let done: HashSet<(i64, i64)> =
            [(28, m), (7, m + 28), (1, m + 35), (1, m - 1), (7, m + 42)].into();
        // From the day before the 28-day span to the middle of the week after it.
        let p = plan(&done, m - 2, m + 38);
        assert_eq!(p.spans, vec![(1, m - 1), (28, m), (7, m + 28), (1, m + 35)]);
        assert_eq!(p.days, vec![(m - 2, m - 1), (m + 36, m + 38)]);
        // A span that does not fit in the range is not used.
        let p = plan(&done, m + 42, m + 45);
        assert!(p.spans.is_empty());
        assert_eq!(p.days, vec![(m + 42, m + 45)]);
    }
}
