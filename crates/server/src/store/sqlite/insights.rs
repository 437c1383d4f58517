//! Insights over the embedded store: rollups when the question allows, raw events
//! otherwise (hourly machine counts, several property filters at once).

use super::SqliteStore;
use super::query::{
    Where, bucket, day_bucket, day_range, days, hours, json_path, one_value, prop_text, raw_scope,
};
use super::rollup::{DAY_MS, HOUR_MS, slot};
use super::{pairs, spans};
use crate::insights::{
    CrashSite, Group, InsightStore, Interval, PropertySummary, Scope, Source, SqlLimits, SqlResult,
};
use crate::rollup::FATAL_SITE;
use crate::sketch::MachineSet;
use crate::store::{StoreError, StoredEvent};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params, params_from_iter};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Hands `f` the rollup rows `sel` asks for over the days `[from, to)` and the scope's
/// events; rows of one value are the caller's to add up.
fn prop_rows(
    conn: &Connection,
    scope: &Scope,
    sel: spans::Select<'_>,
    from: i64,
    to: i64,
    mut f: impl FnMut(spans::Row<'_>),
) -> Result<(), StoreError> {
    if scope.events.is_empty() {
        return Ok(spans::visit(conn, scope.project_id, sel, from, to, f)?);
    }
    let mut w = Where::new(scope.project_id);
    w.push(
        "day >= ? AND day < ?",
        [Sql::Integer(from), Sql::Integer(to)],
    );
    w.events(&scope.events, "event");
    if let Some(p) = sel.prop {
        w.push("prop = ?", [Sql::Text(p.to_string())]);
    }
    if let Some(v) = sel.value {
        w.push("value = ?", [Sql::Text(v.to_string())]);
    }
    let (columns, table) = spans::day_columns(&sel);
    let sql = format!("SELECT {columns} FROM {table} WHERE {}", w.clause());
    union_rows(conn, &sql, &w, |r| {
        f(spans::row(r)?);
        Ok(())
    })
}

/// Runs `sql` and hands each row to `f`. Grouping machine sets here rather than with
/// SQL's GROUP BY keeps their blobs out of SQLite's sorter, which copies every row it
/// groups (4 KiB for a dense set) and spills to temporary files once past its cache.
fn union_rows(
    conn: &Connection,
    sql: &str,
    w: &Where,
    mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params_from_iter(w.params.iter()))?;
    while let Some(r) = rows.next()? {
        f(r)?;
    }
    Ok(())
}

fn series(conn: &Connection, sql: &str, w: &Where) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params_from_iter(w.params.iter()), |r| {
        Ok((r.get::<_, i64>(0)? * 1000, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Events and machines per bucket start (Unix ms).
type Buckets = BTreeMap<i64, (u64, MachineSet)>;

/// The scope's events and machines per bucket of `interval` where its two filters hold,
/// when the pair rollups answer for them.
fn two_filters(
    conn: &Connection,
    scope: &Scope,
    interval: Interval,
) -> Result<Option<Buckets>, StoreError> {
    let [(p1, v1), (p2, v2)] = scope.filters.as_slice() else {
        return Ok(None);
    };
    if scope.include_ci {
        return Ok(None);
    }
    if p1 == p2 || interval == Interval::Hour || !pairs::can_answer(conn, scope, [p1, p2])? {
        return Ok(None);
    }
    let mut by = Buckets::new();
    let over = Some(interval);
    pairs::visit(conn, scope, over, (p1, v1), p2, Some(v2), |r| {
        let b = by.entry(day_bucket(over, r.day).0 * DAY_MS).or_default();
        b.0 += r.count as u64;
        b.1.merge_bytes(r.machines);
    })?;
    Ok(Some(by))
}

impl InsightStore for SqliteStore {
    fn trend(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError> {
        let conn = self.settled_reader()?;
        if let Some(by) = two_filters(&conn, scope, interval)? {
            let series = by.into_iter().map(|(b, (n, _))| (b, n)).collect();
            return Ok((series, Source::Rollup));
        }
        // The rollups leave CI runs out; with them, the raw events answer.
        let ci = scope.include_ci;
        match (scope.filters.as_slice(), interval) {
            ([], _) if !ci => {
                let mut w = Where::new(scope.project_id);
                w.push("hour >= ? AND hour < ?", hours(scope));
                w.events(&scope.events, "event");
                let b = bucket(Some(interval), "hour * 3600");
                let sql = format!(
                    "SELECT {b} AS b, SUM(count) FROM rollup_events WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Rollup))
            }
            ([(prop, value)], Interval::Day | Interval::Week | Interval::Month) if !ci => {
                let w = one_value(scope, prop, value);
                let b = bucket(Some(interval), "day * 86400");
                let sql = format!(
                    "SELECT {b} AS b, SUM(count) FROM rollup_props WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Rollup))
            }
            _ => {
                let w = raw_scope(scope)?;
                let b = bucket(Some(interval), "ts_ms / 1000");
                let sql = format!(
                    "SELECT {b} AS b, COUNT(*) FROM events WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Events))
            }
        }
    }

    fn breakdown(
        &self,
        scope: &Scope,
        property: &str,
        over: Option<Interval>,
    ) -> Result<(Vec<Group>, Source), StoreError> {
        let conn = self.settled_reader()?;
        let from_rollups = over != Some(Interval::Hour)
            && !scope.include_ci
            && match scope.filters.as_slice() {
                [] => true,
                [(prop, _)] => pairs::can_answer(&conn, scope, [prop, property])?,
                _ => false,
            };
        let (sql, w, source) = if from_rollups {
            let mut groups: FxHashMap<i64, FxHashMap<String, (u64, MachineSet)>> =
                FxHashMap::default();
            // Sets as stored: a dense one is merged without decoding it first.
            let mut add = |b: i64, value: &str, count: i64, machines: &[u8]| {
                let entry = slot(groups.entry(b).or_default(), value);
                entry.0 += count as u64;
                entry.1.merge_bytes(machines);
            };
            match scope.filters.as_slice() {
                [(prop, value)] if prop != property => {
                    pairs::visit(&conn, scope, over, (prop, value), property, None, |r| {
                        add(day_bucket(over, r.day).0, r.value, r.count, r.machines)
                    })?
                }
                // No filter, or one on the property itself.
                filters => {
                    let (from, to) = day_range(scope);
                    let mut d = from;
                    while d < to {
                        let (b, next) = day_bucket(over, d);
                        let end = next.min(to);
                        let sel = spans::Select {
                            prop: Some(property),
                            value: filters.first().map(|(_, v)| v.as_str()),
                            sets: true,
                        };
                        prop_rows(&conn, scope, sel, d, end, |r| {
                            add(b, r.value, r.count, r.stored_machines.unwrap_or_default())
                        })?;
                        d = end;
                    }
                }
            }
            let groups = groups
                .into_iter()
                .flat_map(|(b, values)| {
                    values
                        .into_iter()
                        .map(move |(value, (count, machines))| Group {
                            bucket_ms: b * 86_400_000,
                            value,
                            count,
                            machines: machines.count(),
                        })
                })
                .collect();
            return Ok((groups, Source::Rollup));
        } else {
            let w = raw_scope(scope)?;
            let text = prop_text(&json_path(property)?);
            let b = bucket(over, "ts_ms / 1000");
            let sql = format!(
                "SELECT b, v, COUNT(*), COUNT(DISTINCT distinct_id) FROM
                   (SELECT {b} AS b, {text} AS v, distinct_id FROM events WHERE {})
                 WHERE v IS NOT NULL GROUP BY b, v",
                w.clause()
            );
            (sql, w, Source::Events)
        };
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(w.params.iter()), |r| {
            Ok(Group {
                bucket_ms: r.get::<_, i64>(0)? * 1000,
                value: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                machines: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok((rows.collect::<Result<_, _>>()?, source))
    }

    fn active(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError> {
        let conn = self.settled_reader()?;
        if let Some(by) = two_filters(&conn, scope, interval)? {
            let series = by.into_iter().map(|(b, (_, m))| (b, m.count())).collect();
            return Ok((series, Source::Rollup));
        }
        let b = bucket(Some(interval), "day * 86400");
        let hours_counted = super::rollup::meta(&conn, "machine_hours_from")?
            .is_some_and(|from| scope.from_ms.div_euclid(HOUR_MS) >= from);
        // The rollups leave CI runs out; with them, the raw events answer.
        let ci = scope.include_ci;
        match (scope.filters.as_slice(), interval) {
            ([], Interval::Hour) if hours_counted && !ci => {
                let mut w = Where::new(scope.project_id);
                w.push("hour >= ? AND hour < ?", hours(scope));
                w.events_or_any(&scope.events);
                // One row per hour unless several events are asked for.
                let machines = if scope.events.len() > 1 {
                    "sketch_count(sketch_union(machines))"
                } else {
                    "MAX(machine_count)"
                };
                let sql = format!(
                    "SELECT hour * 3600 AS b, {machines}
                     FROM rollup_machine_hours WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Rollup))
            }
            ([], Interval::Day | Interval::Week | Interval::Month) if !ci => {
                let mut w = Where::new(scope.project_id);
                w.push("day >= ? AND day < ?", days(scope));
                w.events_or_any(&scope.events);
                let sql = format!(
                    "SELECT {b} AS b, sketch_count(sketch_union(machines)) FROM rollup_machines
                     WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Rollup))
            }
            ([(prop, value)], Interval::Day | Interval::Week | Interval::Month) if !ci => {
                let w = one_value(scope, prop, value);
                let sql = format!(
                    "SELECT {b} AS b, sketch_count(sketch_union(machines)) FROM rollup_prop_machines
                     WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Rollup))
            }
            _ => {
                let w = raw_scope(scope)?;
                let b = bucket(Some(interval), "ts_ms / 1000");
                let sql = format!(
                    "SELECT {b} AS b, COUNT(DISTINCT distinct_id) FROM events WHERE {} GROUP BY b ORDER BY b",
                    w.clause()
                );
                Ok((series(&conn, &sql, &w)?, Source::Events))
            }
        }
    }

    fn crash_sites(&self, scope: &Scope) -> Result<Vec<CrashSite>, StoreError> {
        let conn = self.settled_reader()?;
        let mut sites: BTreeMap<(String, String, String), (CrashSite, MachineSet)> =
            BTreeMap::new();
        let mut add = |site: &str, count: u64, machines: MachineSet, first: i64, last: i64| {
            let parts: Vec<String> = serde_json::from_str(site).unwrap_or_default();
            let [function, file, line, version] =
                <[String; 4]>::try_from(parts).unwrap_or_default();
            let entry = sites
                .entry((function.clone(), file.clone(), line.clone()))
                .or_insert_with(|| {
                    let s = CrashSite {
                        function,
                        file,
                        line,
                        count: 0,
                        machines: 0,
                        first_seen_ms: first,
                        last_seen_ms: last,
                        versions: vec![],
                    };
                    (s, MachineSet::default())
                });
            entry.0.count += count;
            entry.0.first_seen_ms = entry.0.first_seen_ms.min(first);
            entry.0.last_seen_ms = entry.0.last_seen_ms.max(last);
            if !entry.0.versions.contains(&version) {
                entry.0.versions.push(version);
            }
            entry.1.merge(&machines);
        };
        // Only FATAL events have a crash site, so every event's rows are FATAL's.
        let any_event = Scope {
            events: vec![],
            ..scope.clone()
        };
        let one_paired = match scope.filters.as_slice() {
            [(prop, value)]
                if prop != FATAL_SITE
                    && !scope.include_ci
                    && pairs::can_answer(&conn, &any_event, [prop, FATAL_SITE])? =>
            {
                Some((prop, value))
            }
            _ => None,
        };
        if let Some((prop, value)) = one_paired {
            pairs::visit(
                &conn,
                &any_event,
                None,
                (prop, value),
                FATAL_SITE,
                None,
                |r| {
                    let machines = MachineSet::from_bytes(r.machines);
                    add(r.value, r.count as u64, machines, r.first_ms, r.last_ms)
                },
            )?;
        } else if scope.filters.is_empty() && !scope.include_ci {
            let (from, to) = day_range(scope);
            let sel = spans::Select {
                prop: Some(FATAL_SITE),
                value: None,
                sets: true,
            };
            prop_rows(&conn, &any_event, sel, from, to, |r| {
                add(r.value, r.count as u64, r.machines(), r.first_ms, r.last_ms)
            })?;
        } else {
            let fatal = Scope {
                events: vec!["FATAL".into()],
                ..scope.clone()
            };
            let w = raw_scope(&fatal)?;
            let sql = format!(
                "SELECT event, distinct_id, ts_ms, properties FROM events WHERE {}",
                w.clause()
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(w.params.iter()))?;
            while let Some(r) = rows.next()? {
                let props: String = r.get(3)?;
                let props = anonstats_wire::Properties::parse(&props).unwrap_or_default();
                let dims = crate::rollup::dims("FATAL", &props);
                let Some(site) = dims.get(FATAL_SITE) else {
                    continue;
                };
                let mut m = MachineSet::default();
                m.insert(crate::sketch::machine_hash(&r.get::<_, String>(1)?));
                let ts: i64 = r.get(2)?;
                add(site, 1, m, ts, ts);
            }
        }
        Ok(sites
            .into_values()
            .map(|(mut s, m)| {
                s.machines = m.count();
                s.versions.sort();
                s
            })
            .collect())
    }

    fn properties(&self, scope: &Scope, k: u64) -> Result<Vec<PropertySummary>, StoreError> {
        let conn = self.settled_reader()?;
        // Counts first, without machine sets: a value is seen on at least k machines
        // when one row says so. Sets are read only for the values that may become
        // examples and that no row settles.
        let mut by_prop: FxHashMap<String, FxHashMap<String, (u64, bool)>> = FxHashMap::default();
        let (from, to) = day_range(scope);
        prop_rows(&conn, scope, spans::Select::default(), from, to, |r| {
            if r.prop == FATAL_SITE {
                return;
            }
            let entry = slot(slot(&mut by_prop, r.prop), r.value);
            entry.0 += r.count as u64;
            entry.1 |= r.machine_count.is_some_and(|n| n >= k);
        })?;
        let mut groups: Vec<((String, String), (u64, bool))> = by_prop
            .into_iter()
            .flat_map(|(p, values)| values.into_iter().map(move |(v, t)| ((p.clone(), v), t)))
            .collect();
        // By property, then the most frequent values first.
        groups.sort_by(|((pa, va), (ca, _)), ((pb, vb), (cb, _))| {
            pa.cmp(pb).then(cb.cmp(ca)).then(va.cmp(vb))
        });
        let mut examples = 0;
        for i in 0..groups.len() {
            if i == 0 || groups[i].0.0 != groups[i - 1].0.0 {
                examples = 0;
            }
            let ((prop, value), (_, proven)) = &mut groups[i];
            if examples >= 5 {
                continue;
            }
            if !*proven {
                let mut seen = MachineSet::default();
                let sel = spans::Select {
                    prop: Some(prop),
                    value: Some(value),
                    sets: true,
                };
                prop_rows(&conn, scope, sel, from, to, |r| {
                    seen.merge(&r.machines());
                })?;
                *proven = seen.count() >= k;
            }
            examples += usize::from(*proven);
        }
        let mut out: Vec<PropertySummary> = Vec::new();
        for ((name, value), (count, proven)) in groups {
            if out.last().is_none_or(|p| p.name != name) {
                out.push(PropertySummary {
                    name,
                    distinct_values: 0,
                    events: 0,
                    examples: vec![],
                });
            }
            if let Some(p) = out.last_mut() {
                p.distinct_values += 1;
                p.events += count;
                if proven && p.examples.len() < 5 {
                    p.examples.push(value);
                }
            }
        }
        Ok(out)
    }

    fn recent(&self, project_id: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader()?;
        // `+project_id` keeps the planner on the table's own order (newest last) instead
        // of an index on project_id that would sort every event of the project.
        let mut stmt = conn.prepare(
            "SELECT project_id, uuid, event, distinct_id, ts_ms, properties FROM events
             WHERE +project_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![project_id, limit as i64], |r| {
            let uuid: Vec<u8> = r.get(1)?;
            Ok(StoredEvent {
                project_id: r.get(0)?,
                uuid: Uuid::from_slice(&uuid).unwrap_or_default(),
                event: r.get(2)?,
                distinct_id: r.get(3)?,
                timestamp_ms: r.get(4)?,
                properties: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn erase_machine(&self, project_id: i64, distinct_id: &str) -> Result<u64, StoreError> {
        super::erasure::erase_machine(self, project_id, distinct_id)
    }

    fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        super::erasure::purge_before(self, cutoff_ms)
    }

    fn sql(&self, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
        self.settle()?;
        super::adhoc::run(&mut self.reader()?, sql, limits)
    }
}
