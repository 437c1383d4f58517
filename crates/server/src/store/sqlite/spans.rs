//! Compacted property rollups: the per-day, per-event rows of `rollup_props` merged over
//! every event and over aligned spans of 1, 2, 4, ... 64 days, so that any range of days
//! reads at most two spans of each length (a handful for 90 days) instead of 90 days x
//! events of rows. The any-event pair rows are compacted with them (pairs.rs).
//!
//! Only spans that ended before today (UTC) are compacted, by a background pass; an event
//! that arrives late for a compacted day removes the spans holding that day in its own
//! commit, and the next pass builds them again. Reads use a span when it is compacted
//! and the day rows otherwise, so answers are the same either way: counts add, first and
//! last take the minimum and maximum, and machine sets merge in any order to one result.

use super::rollup::DAY_MS;
use crate::sketch::MachineSet;
use rusqlite::fallible_streaming_iterator::FallibleStreamingIterator;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rustc_hash::FxHashMap as HashMap;
use std::collections::HashSet;

/// Span lengths in days, longest first. Each divides the next, so spans nest.
pub const SPANS: [i64; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The day spans are aligned to (any would do).
const ORIGIN: i64 = 0;

/// The first day of the `span`-day span holding `day`.
pub fn span_start(span: i64, day: i64) -> i64 {
    day - (day - ORIGIN).rem_euclid(span)
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
    /// The machine set's size, where it is stored beside the counts.
    pub machine_count: Option<u64>,
    /// The stored machine set, when selected.
    pub stored_machines: Option<&'a [u8]>,
}

impl Row<'_> {
    /// The machine set (empty when not selected).
    pub fn machines(&self) -> MachineSet {
        self.stored_machines
            .map(MachineSet::from_bytes)
            .unwrap_or_default()
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
pub(super) fn done_within(
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

/// Which rollup rows to read: of one property or all, of one value or all, and with
/// their machine sets or without (then [`Row::machines`] is empty).
#[derive(Clone, Copy, Default)]
pub struct Select<'a> {
    pub prop: Option<&'a str>,
    pub value: Option<&'a str>,
    pub sets: bool,
}

impl Select<'_> {
    /// The WHERE clause's filters on `?4` (property) and `?5` (value), columns prefixed
    /// by `table`. Absent filters keep their parameter so that every query binds alike.
    pub fn filters(&self, table: &str) -> String {
        let prop = match self.prop {
            Some(_) => format!("AND {table}prop = ?4"),
            None => "AND ?4 IS NULL".into(),
        };
        let value = match self.value {
            Some(_) => format!("AND {table}value = ?5"),
            None => "AND ?5 IS NULL".into(),
        };
        format!("{prop} {value}")
    }
}

/// The columns [`row`] reads, from `rollup_props` or (with sets) `rollup_props_full`.
pub fn day_columns(sel: &Select<'_>) -> (&'static str, &'static str) {
    if sel.sets {
        (
            "prop, value, count, first_ms, last_ms, machine_count, machines",
            "rollup_props_full",
        )
    } else {
        (
            "prop, value, count, first_ms, last_ms, machine_count, NULL",
            "rollup_props",
        )
    }
}

/// Hands `f` the rollup rows `sel` asks for over the days `[from, to)` and every event.
/// A property value may come in several rows (one per span or per event and day); the
/// caller adds them up.
pub fn visit(
    conn: &Connection,
    project: i64,
    sel: Select<'_>,
    from: i64,
    to: i64,
    mut f: impl FnMut(Row<'_>),
) -> rusqlite::Result<()> {
    let plan = plan(&done_within(conn, project, from, to)?, from, to);
    let filters = sel.filters("");
    // A span's set table carries its counts; the day rows keep their sets apart.
    let span_table = if sel.sets {
        "rollup_span_machines"
    } else {
        "rollup_spans"
    };
    let mut span_rows = conn.prepare_cached(&format!(
        "SELECT prop, value, count, first_ms, last_ms, machine_count, {}
         FROM {span_table} WHERE project_id = ?1 AND span = ?2 AND start = ?3 {filters}",
        if sel.sets { "machines" } else { "NULL" }
    ))?;
    for (span, start) in plan.spans {
        let mut rows = span_rows.query(params![project, span, start, sel.prop, sel.value])?;
        while let Some(r) = rows.next()? {
            f(row(r)?);
        }
    }
    // With sets, the day rows are read in key order beside their sets' table, rather
    // than looking every set up by its key.
    let order = |key: &str| {
        if sel.sets {
            format!("ORDER BY {key}")
        } else {
            String::new()
        }
    };
    let mut day_counts = conn.prepare_cached(&format!(
        "SELECT prop, value, count, first_ms, last_ms, machine_count, NULL, day, event FROM rollup_props
         WHERE project_id = ?1 AND day >= ?2 AND day < ?3 AND event = '' {filters} {}",
        order("prop, day, event, value")
    ))?;
    let mut day_sets = conn.prepare_cached(&format!(
        "SELECT prop, day, event, value, machines FROM rollup_prop_machines
         WHERE project_id = ?1 AND day >= ?2 AND day < ?3 AND event = '' {filters}
         ORDER BY prop, day, event, value"
    ))?;
    for (a, b) in plan.days {
        let key = params![project, a, b, sel.prop, sel.value];
        let sets = if sel.sets {
            Some(day_sets.query(key)?)
        } else {
            None
        };
        walk(day_counts.query(key)?, sets, &mut f)?;
    }
    Ok(())
}

/// Hands `f` each row of `counts` ([`row`]'s columns, then the key's day and event),
/// with its set from `sets` (prop, day, event, value, machines) when given; both list
/// the same keys in the same order.
fn walk(
    mut counts: rusqlite::Rows<'_>,
    sets: Option<rusqlite::Rows<'_>>,
    f: &mut impl FnMut(Row<'_>),
) -> rusqlite::Result<()> {
    let Some(mut sets) = sets else {
        while let Some(r) = counts.next()? {
            f(row(r)?);
        }
        return Ok(());
    };
    // (prop, day, event, value): the order both are read in.
    fn key<'r>(
        r: &'r rusqlite::Row<'_>,
        at: [usize; 4],
    ) -> rusqlite::Result<(&'r str, i64, &'r str, &'r str)> {
        Ok((
            r.get_ref(at[0])?.as_str()?,
            r.get_ref(at[1])?.as_i64()?,
            r.get_ref(at[2])?.as_str()?,
            r.get_ref(at[3])?.as_str()?,
        ))
    }
    // The set cursor is advanced in place and read through `get`, so that its current
    // row is borrowed only while one count row is handed over.
    sets.advance()?;
    while let Some(c) = counts.next()? {
        let mut r = row(c)?;
        let at = key(c, [0, 7, 8, 1])?;
        while let Some(s) = sets.get() {
            if key(s, [0, 1, 2, 3])? >= at {
                break;
            }
            sets.advance()?;
        }
        if let Some(s) = sets.get()
            && key(s, [0, 1, 2, 3])? == at
        {
            r.stored_machines = Some(s.get_ref(4)?.as_blob()?);
        }
        f(r);
    }
    Ok(())
}

/// A row of `prop, value, count, first_ms, last_ms, machine_count, machines`.
pub fn row<'r>(r: &'r rusqlite::Row<'_>) -> rusqlite::Result<Row<'r>> {
    Ok(Row {
        prop: r.get_ref(0)?.as_str()?,
        value: r.get_ref(1)?.as_str()?,
        count: r.get(2)?,
        first_ms: r.get(3)?,
        last_ms: r.get(4)?,
        machine_count: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
        stored_machines: match r.get_ref(6)? {
            rusqlite::types::ValueRef::Blob(b) => Some(b),
            _ => None,
        },
    })
}

/// The tables of compacted spans, besides `rollup_spans_done`.
const SPAN_TABLES: [&str; 3] = ["rollup_spans", "rollup_span_machines", "rollup_pair_spans"];

/// How many times compacted spans were removed: a span merged from others is written
/// only if none was removed meanwhile.
const INVALIDATIONS: &str = "spans_invalidated";

fn invalidations(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(super::rollup::meta(conn, INVALIDATIONS)?.unwrap_or(0))
}

fn count_invalidation(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
    )?
    .execute([INVALIDATIONS])?;
    Ok(())
}

/// Marks the compacted spans that hold `day` as not compacted, because its day rows
/// changed. Their rows, never read while not compacted, are replaced when the span is
/// compacted again: deleting them here would cost the late event's fold or the erasure
/// that changed the day a write of every row of up to 64 days of spans.
pub fn invalidate(conn: &Connection, project: i64, day: i64) -> rusqlite::Result<()> {
    let mut done = conn.prepare_cached(
        "DELETE FROM rollup_spans_done WHERE project_id = ?1 AND span = ?2 AND start = ?3",
    )?;
    for span in SPANS {
        let start = span_start(span, day);
        if done.execute(params![project, span, start])? > 0 {
            count_invalidation(conn)?;
        }
    }
    Ok(())
}

/// Removes every compacted span of `project` that starts before `day`, after the days
/// before it were purged (the spans straddling `day` are compacted again from what is
/// left).
pub fn invalidate_before(conn: &Connection, project: i64, day: i64) -> rusqlite::Result<()> {
    for table in SPAN_TABLES {
        let mut delete = conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE project_id = ?1 AND span = ?2 AND start < ?3"
        ))?;
        for span in SPANS {
            delete.execute(params![project, span, day])?;
        }
    }
    conn.execute(
        "DELETE FROM rollup_spans_done WHERE project_id = ?1 AND start < ?2",
        params![project, day],
    )?;
    count_invalidation(conn)
}

/// Compacts every span that ended before `today` and is not compacted yet; returns how
/// many it compacted. Each span is one short transaction, so ingest waits for at most one.
/// Shorter spans come first, so that each longer one merges the two it is made of.
/// `stop` is asked between spans.
pub fn compact(
    conn: &mut Connection,
    today: i64,
    stop: &dyn Fn() -> bool,
) -> rusqlite::Result<usize> {
    let days = data_days(conn, today)?;
    let mut built = 0;
    for span in SPANS.iter().rev() {
        let starts: std::collections::BTreeSet<(i64, i64)> = days
            .iter()
            .map(|&(project, day)| (project, span_start(*span, day)))
            .filter(|&(_, start)| start + span <= today)
            .collect();
        for (project, start) in starts {
            if stop() {
                return Ok(built);
            }
            if compact_one(conn, project, *span, start)? {
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

/// Compacts one span unless it already is; returns whether it did. The rows are merged on
/// a snapshot first, so that ingest goes on meanwhile, and written under the write lock
/// unless a late event for one of the days removed a span they were merged from.
fn compact_one(
    conn: &mut Connection,
    project: i64,
    span: i64,
    start: i64,
) -> rusqlite::Result<bool> {
    let (merged, seen) = {
        let tx = conn.transaction()?;
        if is_done(&tx, project, span, start)? {
            return Ok(false);
        }
        (merge(&tx, project, span, start)?, invalidations(&tx)?)
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if is_done(&tx, project, span, start)? {
        return Ok(false);
    }
    // Day rows are read again only if they could have changed since.
    let merged = if merged.days_read || invalidations(&tx)? != seen {
        merge(&tx, project, span, start)?
    } else {
        merged
    };
    // What an earlier compaction of the span left.
    for table in SPAN_TABLES {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE project_id = ?1 AND span = ?2 AND start = ?3"
        ))?
        .execute(params![project, span, start])?;
    }
    let mut counts = tx.prepare_cached(
        "INSERT OR REPLACE INTO rollup_spans
         (project_id, span, start, prop, value, count, first_ms, last_ms, machine_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut sets = tx.prepare_cached(
        "INSERT OR REPLACE INTO rollup_span_machines
         (project_id, span, start, prop, value, count, first_ms, last_ms, machine_count, machines)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for ((prop, value), (count, first, last, machines)) in &merged.props {
        let n = machines.count() as i64;
        counts.execute(params![
            project, span, start, prop, value, count, first, last, n
        ])?;
        sets.execute(params![
            project,
            span,
            start,
            prop,
            value,
            count,
            first,
            last,
            n,
            machines.to_bytes()
        ])?;
    }
    drop((counts, sets));
    super::pairs::write_span(&tx, project, span, start, merged.pairs)?;
    tx.execute(
        "INSERT INTO rollup_spans_done (project_id, span, start) VALUES (?1, ?2, ?3)",
        params![project, span, start],
    )?;
    tx.commit()?;
    Ok(true)
}

fn is_done(conn: &Connection, project: i64, span: i64, start: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM rollup_spans_done WHERE project_id = ?1 AND span = ?2 AND start = ?3",
        )?
        .query_row(params![project, span, start], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A span's rows merged from the shorter spans and day rows.
struct Merged {
    /// Whether day rows were read, which change without invalidating any span.
    days_read: bool,
    /// (prop, value) -> (count, first_ms, last_ms, machines)
    props: HashMap<(String, String), (i64, i64, i64, MachineSet)>,
    pairs: super::pairs::SpanRows,
}

/// Merges a span's rows from the shorter spans already compacted, and the day rows where
/// there are none.
fn merge(conn: &Connection, project: i64, span: i64, start: i64) -> rusqlite::Result<Merged> {
    let plan = plan(
        &done_within(conn, project, start, start + span)?,
        start,
        start + span,
    );
    let mut props: HashMap<(String, String), (i64, i64, i64, MachineSet)> = HashMap::default();
    let sel = Select {
        sets: true,
        ..Select::default()
    };
    visit(conn, project, sel, start, start + span, |r| {
        let key = (r.prop.to_owned(), r.value.to_owned());
        let e = props
            .entry(key)
            .or_insert_with(|| (0, i64::MAX, i64::MIN, MachineSet::default()));
        e.0 += r.count;
        e.1 = e.1.min(r.first_ms);
        e.2 = e.2.max(r.last_ms);
        e.3.merge_bytes(r.stored_machines.unwrap_or_default());
    })?;
    let pairs = super::pairs::merge_span(conn, project, span, &plan)?;
    Ok(Merged {
        days_read: !plan.days.is_empty(),
        props,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_aligned_and_nest() {
        assert_eq!(span_start(8, 19720), 19720);
        assert_eq!(span_start(8, 19727), 19720);
        assert_eq!(span_start(8, 19728), 19728);
        assert_eq!(span_start(1, 19725), 19725);
        for day in 19700..19800 {
            for pair in SPANS.windows(2) {
                let (long, short) = (pair[0], pair[1]);
                let start = span_start(short, day);
                assert!(span_start(long, day) <= start, "spans nest");
                assert_eq!(start % short, 0);
            }
        }
    }

    #[test]
    fn plans_use_the_longest_compacted_spans() {
        let m = span_start(32, 19800);
        let done: HashSet<(i64, i64)> = [
            (32, m),
            (4, m + 32),
            (2, m + 36),
            (1, m + 38),
            (1, m - 1),
            (8, m + 40),
        ]
        .into();
        // From two days before the 32-day span to the middle of the 8 days after it.
        let p = plan(&done, m - 2, m + 44);
        assert_eq!(
            p.spans,
            vec![(1, m - 1), (32, m), (4, m + 32), (2, m + 36), (1, m + 38)]
        );
        assert_eq!(p.days, vec![(m - 2, m - 1), (m + 39, m + 44)]);
        // A span that does not fit in the range is not used.
        let p = plan(&done, m + 40, m + 45);
        assert!(p.spans.is_empty());
        assert_eq!(p.days, vec![(m + 40, m + 45)]);
        // Any range takes at most two spans of each length.
        let all: HashSet<(i64, i64)> = (19000..20000)
            .flat_map(|d| SPANS.iter().map(move |&s| (s, span_start(s, d))))
            .collect();
        for from in 19100..19200 {
            for len in [1, 7, 30, 90, 365] {
                let p = plan(&all, from, from + len);
                assert!(p.days.is_empty());
                assert!(
                    p.spans.len() <= 2 * SPANS.len(),
                    "{from}+{len}: {:?}",
                    p.spans
                );
            }
        }
    }
}
