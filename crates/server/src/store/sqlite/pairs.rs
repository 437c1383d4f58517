//! Rollups of two property values at a time, for the properties of
//! [`crate::rollup::PAIRED`] (and, for any event, each of them with one of
//! [`crate::rollup::PAIRED_ANY_EVENT`]): `rollup_pairs` holds events and distinct machines
//! per (project, prop_a = value_a, prop_b = value_b, day, event), prop_a < prop_b, with
//! event '' for any event; `rollup_pair_spans` merges the any-event rows over the spans of days
//! that spans.rs compacts. A breakdown under one filter, and a trend or machine count
//! under two, read these rows instead of every raw event of the range.

use super::query::{Where, day_bucket, day_range};
use super::rollup::{Combo, PropAgg};
use super::spans;
use crate::insights::{Interval, Scope};
use crate::rollup::{FATAL_SITE, PAIRED, PAIRED_ANY_EVENT};
use crate::store::StoreError;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params, params_from_iter};
use rustc_hash::FxHashMap;

/// (project, prop_a, value_a, prop_b, value_b, day, event)
type Key<'k> = (i64, &'k str, &'k str, &'k str, &'k str, i64, &'k str);

/// The pair rows the combinations add up to.
fn rows<'a>(combos: impl Iterator<Item = &'a Combo>) -> FxHashMap<Key<'a>, PropAgg> {
    // (project, day, event, the paired (property, value)s, sorted)
    type Tuple<'k> = (i64, i64, &'k str, Vec<(&'k str, &'k str)>);
    // Combinations differ in many more properties than the paired ones: gathered by
    // their paired values first, each tuple of them is split into pairs once.
    let mut tuples: FxHashMap<Tuple<'a>, Vec<&'a PropAgg>> = FxHashMap::default();
    for c in combos {
        let mut paired: Vec<(&str, &str)> = c
            .dims
            .iter()
            .filter(|(prop, _)| PAIRED.binary_search(prop).is_ok() || any_event_only(prop))
            .collect();
        paired.sort_unstable();
        tuples
            .entry((c.project, c.day, c.event.as_str(), paired))
            .or_default()
            .push(&c.agg);
    }
    // Each set is summed from its parts at once: adding them one by one into sorted sets
    // of hundreds of machines moved most of each set on every insert.
    let tuples: Vec<(Tuple<'a>, PropAgg)> = tuples
        .into_iter()
        .map(|(tuple, parts)| (tuple, PropAgg::sum(&parts)))
        .collect();
    let mut rows: FxHashMap<Key<'a>, Vec<&PropAgg>> = FxHashMap::default();
    for ((project, day, event, paired), agg) in &tuples {
        for (i, (pa, va)) in paired.iter().enumerate() {
            for (pb, vb) in &paired[i + 1..] {
                // Each event's row, and the row of any event ('').
                let events = match (any_event_only(pa), any_event_only(pb)) {
                    (false, false) => &[*event, ""][..],
                    (true, true) => &[],
                    _ => &[""],
                };
                for &event in events {
                    let key = (*project, *pa, *va, *pb, *vb, *day, event);
                    rows.entry(key).or_default().push(agg);
                }
            }
        }
    }
    rows.into_iter()
        .map(|(key, parts)| (key, PropAgg::sum(&parts)))
        .collect()
}

/// The columns of a pair row as [`put`] binds them.
const INSERT: &str = "INTO rollup_pairs
    (project_id, prop_a, value_a, prop_b, value_b, day, event, count, first_ms, last_ms, machines)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Runs an insert of [`INSERT`]'s columns for one row.
fn put(stmt: &mut rusqlite::Statement<'_>, key: Key<'_>, agg: &PropAgg) -> rusqlite::Result<()> {
    let (project, pa, va, pb, vb, day, event) = key;
    stmt.execute(params![
        project,
        pa,
        va,
        pb,
        vb,
        day,
        event,
        agg.count,
        agg.first_ms,
        agg.last_ms,
        agg.machines.to_bytes()
    ])?;
    Ok(())
}

/// Writes what the combinations add to the pair rows.
pub(super) fn flush<'a>(
    conn: &Connection,
    combos: impl Iterator<Item = &'a Combo>,
) -> rusqlite::Result<()> {
    // Added to a stored row in place: one statement, and its index entry stays.
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT {INSERT}
         ON CONFLICT (project_id, day, prop_a, value_a, prop_b, value_b, event) DO UPDATE SET
           count = count + excluded.count,
           first_ms = min(first_ms, excluded.first_ms),
           last_ms = max(last_ms, excluded.last_ms),
           machines = sketch_merge(machines, excluded.machines)"
    ))?;
    for (key, agg) in rows(combos) {
        put(&mut upsert, key, &agg)?;
    }
    Ok(())
}

/// A [`Key`] with values of its own, to keep apart from the combinations it came from.
pub(super) type OwnedKey = (i64, String, String, String, String, i64, String);

fn owned((project, pa, va, pb, vb, day, event): Key<'_>) -> OwnedKey {
    let text = |s: &str| s.to_owned();
    (
        project,
        text(pa),
        text(va),
        text(pb),
        text(vb),
        day,
        text(event),
    )
}

pub(super) type OwnedRows = FxHashMap<OwnedKey, PropAgg>;

/// The pair rows the combinations add up to.
pub(super) fn owned_rows<'a>(combos: impl Iterator<Item = &'a Combo>) -> OwnedRows {
    rows(combos)
        .into_iter()
        .map(|(key, agg)| (owned(key), agg))
        .collect()
}

/// Puts the `counted` rows in place of the stored ones that `touched` adds to, and
/// removes those that `counted` has none for.
pub(super) fn replace<'a>(
    conn: &Connection,
    counted: &OwnedRows,
    touched: impl Iterator<Item = &'a Combo>,
) -> rusqlite::Result<()> {
    let mut write = conn.prepare_cached(&format!("INSERT OR REPLACE {INSERT}"))?;
    let mut delete = conn.prepare_cached(&format!("DELETE FROM rollup_pairs WHERE {AT_KEY}"))?;
    for key in rows(touched).into_keys() {
        match counted.get(&owned(key)) {
            Some(agg) => put(&mut write, key, agg)?,
            None => {
                let (project, pa, va, pb, vb, day, event) = key;
                delete.execute(params![project, pa, va, pb, vb, day, event])?;
            }
        }
    }
    Ok(())
}

/// Reads the stored rows that the combinations add to, set and all (see
/// `Agg::warm`).
pub(super) fn warm<'a>(
    conn: &Connection,
    combos: impl Iterator<Item = &'a Combo>,
) -> rusqlite::Result<()> {
    let mut read = conn.prepare_cached(&format!("SELECT * FROM rollup_pairs WHERE {AT_KEY}"))?;
    for (project, pa, va, pb, vb, day, event) in rows(combos).into_keys() {
        read.query(params![project, pa, va, pb, vb, day, event])?
            .next()?;
    }
    Ok(())
}

/// One pair row, by the parameters of a [`Key`].
const AT_KEY: &str = "project_id = ?1 AND prop_a = ?2 AND value_a = ?3 AND prop_b = ?4
    AND value_b = ?5 AND day = ?6 AND event = ?7";

fn any_event_only(prop: &str) -> bool {
    PAIRED_ANY_EVENT.contains(&prop)
}

/// The properties paired since schema version 10; pairs of the others are counted from
/// the day in `meta.pairs_from_day`, these from `meta.all_pairs_from_day`.
const PAIRED_SINCE_10: [&str; 3] = [FATAL_SITE, "error_code", "system_kernel_version"];

/// Whether the pair rows can answer for the scope with these two properties: both
/// paired (one of them, for any event, may be paired for any event only), and the range
/// within the days the rows count.
pub(super) fn can_answer(
    conn: &Connection,
    scope: &Scope,
    props: [&str; 2],
) -> Result<bool, StoreError> {
    let paired = match props.map(|p| (PAIRED.contains(&p), any_event_only(p))) {
        [(true, _), (true, _)] => true,
        [(true, _), (_, true)] | [(_, true), (true, _)] => scope.events.is_empty(),
        _ => false,
    };
    if !paired {
        return Ok(false);
    }
    let from = if props.iter().all(|p| !PAIRED_SINCE_10.contains(p)) {
        "pairs_from_day"
    } else {
        "all_pairs_from_day"
    };
    let from = super::rollup::meta(conn, from)?;
    Ok(from.is_some_and(|from| day_range(scope).0 >= from))
}

/// A pair row as [`visit`] hands it over.
pub(super) struct Row<'a> {
    /// The first day it covers.
    pub day: i64,
    /// The value of the property that is not fixed.
    pub value: &'a str,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The machine set as stored.
    pub machines: &'a [u8],
}

/// Hands `f` each row of the scope's days and events where `fixed` holds (and `other`
/// has `other_value`, when given); rows of one value are the caller's to add up. A row
/// covers one day, or for any event a compacted span of days that lies within one
/// bucket of `over`.
pub(super) fn visit(
    conn: &Connection,
    scope: &Scope,
    over: Option<Interval>,
    fixed: (&str, &str),
    other: &str,
    other_value: Option<&str>,
    mut f: impl FnMut(Row<'_>),
) -> Result<(), StoreError> {
    let (fixed_prop, fixed_value) = fixed;
    // Which side of the pair each property is on.
    let (fixed_side, other_side) = if fixed_prop < other {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let mut w = Where::new(scope.project_id);
    w.push(
        &format!("prop_{fixed_side} = ? AND value_{fixed_side} = ? AND prop_{other_side} = ?"),
        [
            Sql::Text(fixed_prop.to_string()),
            Sql::Text(fixed_value.to_string()),
            Sql::Text(other.to_string()),
        ],
    );
    if let Some(v) = other_value {
        w.push(
            &format!("value_{other_side} = ?"),
            [Sql::Text(v.to_string())],
        );
    }
    // With only prop_a known, the primary key would narrow the rows to every pair of
    // prop_a on the day (thousands, with the kernel version's), each read with its set;
    // the planner has no statistics to know that, so the index on b is named.
    let by_b = |table: &str| {
        if fixed_side == "b" && other_value.is_none() {
            format!("{table} INDEXED BY {table}_b")
        } else {
            table.to_string()
        }
    };
    // Runs `sql` with the parameters of `w` and then `last`; the rows' first column is
    // their first day.
    let mut read = |sql: &str, w: &Where, last: &[i64]| -> Result<(), StoreError> {
        let mut stmt = conn.prepare_cached(sql)?;
        let params = w
            .params
            .iter()
            .cloned()
            .chain(last.iter().map(|&n| Sql::Integer(n)));
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            let (value, machines) = (r.get_ref(1)?, r.get_ref(5)?);
            let (Ok(value), Ok(machines)) = (value.as_str(), machines.as_blob()) else {
                continue;
            };
            f(Row {
                day: r.get(0)?,
                value,
                count: r.get(2)?,
                first_ms: r.get(3)?,
                last_ms: r.get(4)?,
                machines,
            });
        }
        Ok(())
    };
    let (from, to) = day_range(scope);
    let mut days = Vec::new();
    if scope.events.is_empty() && !matches!(over, Some(Interval::Hour | Interval::Day)) {
        let done = spans::done_within(conn, scope.project_id, from, to)?;
        let sql = format!(
            "SELECT start, value_{other_side}, count, first_ms, last_ms, machines FROM {}
             WHERE {} AND span = ? AND start = ?",
            by_b("rollup_pair_spans"),
            w.clause()
        );
        let mut d = from;
        while d < to {
            let end = day_bucket(over, d).1.min(to);
            let plan = spans::plan(&done, d, end);
            for (span, start) in plan.spans {
                if span < MIN_SPAN {
                    days.push((start, start + span));
                } else {
                    read(&sql, &w, &[span, start])?;
                }
            }
            days.extend(plan.days);
            d = end;
        }
    } else {
        days.push((from, to));
    }
    // Day by day: the rows are keyed by day first, then by values.
    w.events_or_any(&scope.events);
    let sql = format!(
        "SELECT day, value_{other_side}, count, first_ms, last_ms, machines FROM {}
         WHERE {} AND day = ?",
        by_b("rollup_pairs"),
        w.clause()
    );
    for day in days.into_iter().flat_map(|(a, b)| a..b) {
        read(&sql, &w, &[day])?;
    }
    Ok(())
}

/// The shortest span the pair rows are compacted over; single days are read from the day
/// rows themselves.
const MIN_SPAN: i64 = 2;

/// A span's pair rows by (prop_a, value_a, prop_b, value_b).
pub(super) type SpanRows = FxHashMap<(String, String, String, String), PropAgg>;

/// The any-event pair rows of the `span` days from `start` merged as `plan` reads them:
/// from the shorter spans compacted already and the day rows where there are none.
pub(super) fn merge_span(
    conn: &Connection,
    project: i64,
    span: i64,
    plan: &spans::Plan,
) -> rusqlite::Result<SpanRows> {
    let mut merged = SpanRows::default();
    if span < MIN_SPAN {
        return Ok(merged);
    }
    let mut add = |rows: &mut rusqlite::Rows<'_>| -> rusqlite::Result<()> {
        while let Some(r) = rows.next()? {
            let mut row = PropAgg {
                count: r.get(4)?,
                first_ms: r.get(5)?,
                last_ms: r.get(6)?,
                ..PropAgg::default()
            };
            row.machines.merge_bytes(r.get_ref(7)?.as_blob()?);
            let values = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            merged.entry(values).or_default().add(&row);
        }
        Ok(())
    };
    let columns = "prop_a, value_a, prop_b, value_b, count, first_ms, last_ms, machines";
    let mut days = plan.days.clone();
    for &(s, st) in &plan.spans {
        if s < MIN_SPAN {
            days.push((st, st + s));
            continue;
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {columns} FROM rollup_pair_spans WHERE project_id = ?1 AND span = ?2 AND start = ?3"
        ))?;
        add(&mut stmt.query(params![project, s, st])?)?;
    }
    for (a, b) in days {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {columns} FROM rollup_pairs
             WHERE project_id = ?1 AND day >= ?2 AND day < ?3 AND event = ''"
        ))?;
        add(&mut stmt.query(params![project, a, b])?)?;
    }
    Ok(merged)
}

/// Writes a span's merged pair rows.
pub(super) fn write_span(
    conn: &Connection,
    project: i64,
    span: i64,
    start: i64,
    merged: SpanRows,
) -> rusqlite::Result<()> {
    let mut write = conn.prepare_cached(
        "INSERT OR REPLACE INTO rollup_pair_spans
         (project_id, span, start, prop_a, value_a, prop_b, value_b, count, first_ms, last_ms,
          machines)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for ((pa, va, pb, vb), agg) in merged {
        write.execute(params![
            project,
            span,
            start,
            pa,
            va,
            pb,
            vb,
            agg.count,
            agg.first_ms,
            agg.last_ms,
            agg.machines.to_bytes()
        ])?;
    }
    Ok(())
}
