//! SQL for insights: time buckets, property paths, and WHERE clauses over the rollups
//! and the raw events.

use super::rollup::{DAY_MS, HOUR_MS};
use crate::insights::{Interval, Scope};
use crate::rollup::MAX_VALUE_LEN;
use crate::store::StoreError;
use chrono::Datelike;
use rusqlite::types::Value as Sql;

/// SQL for the start (Unix seconds) of the bucket holding the Unix-seconds expression `s`.
pub(super) fn bucket(interval: Option<Interval>, s: &str) -> String {
    match interval {
        None => "0".into(),
        Some(Interval::Hour) => format!("(({s}) / 3600) * 3600"),
        Some(Interval::Day) => format!("(({s}) / 86400) * 86400"),
        // Weeks start on Monday; 1970-01-01 was a Thursday.
        Some(Interval::Week) => format!("((({s}) / 86400) - ((({s}) / 86400) + 3) % 7) * 86400"),
        Some(Interval::Month) => {
            format!("CAST(strftime('%s', ({s}), 'unixepoch', 'start of month') AS INTEGER)")
        }
    }
}

/// SQL for a property's bucket text in the raw `properties` JSON, as
/// [`crate::rollup::value_text`] computes it at ingest.
pub(super) fn prop_text(path: &str) -> String {
    let v = format!("json_extract(properties, {path})");
    format!(
        "(CASE json_type(properties, {path})
            WHEN 'text' THEN CASE WHEN length(CAST({v} AS BLOB)) <= {MAX_VALUE_LEN} THEN {v} END
            WHEN 'integer' THEN CAST({v} AS TEXT)
            WHEN 'real' THEN CAST({v} AS TEXT)
            WHEN 'true' THEN 'true'
            WHEN 'false' THEN 'false' END)"
    )
}

/// The SQL string literal of a property's JSON path.
pub(super) fn json_path(property: &str) -> Result<String, StoreError> {
    if property.contains('"') || property.is_empty() {
        return Err(StoreError::Invalid(format!(
            "property name {property:?} is not supported"
        )));
    }
    Ok(format!("'$.\"{}\"'", property.replace('\'', "''")))
}

/// The events the partial index `events_rare` holds: few among the others, and asked
/// about on their own (crash sites, cloud failures), so that raw questions about them
/// read only their rows of the range.
pub(super) const RARE_EVENTS: [&str; 4] = [
    "CLOUD_BUILD_FAIL",
    "CLOUD_CONNECT_FAIL",
    "CLOUD_UNAVAILABLE",
    "FATAL",
];

/// The index's condition as schema.rs declares it: SQLite uses a partial index only for a
/// query that repeats its condition.
const RARE_EVENTS_TERM: &str =
    "event IN ('CLOUD_BUILD_FAIL', 'CLOUD_CONNECT_FAIL', 'CLOUD_UNAVAILABLE', 'FATAL')";

/// A WHERE clause under construction with its parameters.
pub(super) struct Where {
    sql: Vec<String>,
    pub(super) params: Vec<Sql>,
}

impl Where {
    pub(super) fn new(project: i64) -> Self {
        Where {
            sql: vec!["project_id = ?".into()],
            params: vec![Sql::Integer(project)],
        }
    }
    pub(super) fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Sql>) {
        self.sql.push(clause.into());
        self.params.extend(values);
    }
    pub(super) fn events(&mut self, events: &[String], column: &str) {
        if !events.is_empty() {
            let marks = vec!["?"; events.len()].join(", ");
            self.push(
                &format!("{column} IN ({marks})"),
                events.iter().map(|e| Sql::Text(e.clone())),
            );
        }
    }
    /// The rows of the given events, or the rows kept for any event (event '') in the
    /// rollups that keep one.
    pub(super) fn events_or_any(&mut self, events: &[String]) {
        if events.is_empty() {
            self.push("event = ''", []);
        } else {
            self.events(events, "event");
        }
    }
    pub(super) fn raw_filters(&mut self, filters: &[(String, String)]) -> Result<(), StoreError> {
        for (prop, value) in filters {
            self.push(
                &format!("{} = ?", prop_text(&json_path(prop)?)),
                [Sql::Text(value.clone())],
            );
        }
        Ok(())
    }
    pub(super) fn clause(&self) -> String {
        self.sql.join(" AND ")
    }
}

/// The bucket holding `day` (its first day; 0 without a time axis) and the first day of
/// the next bucket, as [`bucket`] buckets in SQL.
pub(super) fn day_bucket(interval: Option<Interval>, day: i64) -> (i64, i64) {
    match interval {
        None => (0, i64::MAX),
        Some(Interval::Hour | Interval::Day) => (day, day + 1),
        Some(Interval::Week) => {
            // Weeks start on Monday; Unix day 4 (1970-01-05) was one.
            let start = day - (day - 4).rem_euclid(7);
            (start, start + 7)
        }
        Some(Interval::Month) => {
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .unwrap_or_default()
                .date_naive();
            let first = date.with_day(1).unwrap_or(date);
            let next = first + chrono::Months::new(1);
            let epoch = chrono::DateTime::UNIX_EPOCH.date_naive();
            ((first - epoch).num_days(), (next - epoch).num_days())
        }
    }
}

/// The scope's range in Unix days, `[from, to)`.
pub(super) fn day_range(scope: &Scope) -> (i64, i64) {
    (
        scope.from_ms.div_euclid(DAY_MS),
        scope.to_ms.div_euclid(DAY_MS),
    )
}

pub(super) fn days(scope: &Scope) -> [Sql; 2] {
    let (from, to) = day_range(scope);
    [Sql::Integer(from), Sql::Integer(to)]
}

/// The scope's range in Unix hours, `[from, to)`.
pub(super) fn hours(scope: &Scope) -> [Sql; 2] {
    [
        Sql::Integer(scope.from_ms.div_euclid(HOUR_MS)),
        Sql::Integer(scope.to_ms.div_euclid(HOUR_MS)),
    ]
}

/// The rollup rows of one property value over the scope's days and events.
pub(super) fn one_value(scope: &Scope, prop: &str, value: &str) -> Where {
    let mut w = Where::new(scope.project_id);
    w.push(
        "prop = ? AND value = ?",
        [Sql::Text(prop.to_string()), Sql::Text(value.to_string())],
    );
    w.push("day >= ? AND day < ?", days(scope));
    w.events_or_any(&scope.events);
    w
}

pub(super) fn raw_scope(scope: &Scope) -> Result<Where, StoreError> {
    let mut w = Where::new(scope.project_id);
    w.push(
        "ts_ms >= ? AND ts_ms < ?",
        [Sql::Integer(scope.from_ms), Sql::Integer(scope.to_ms)],
    );
    w.events(&scope.events, "event");
    if !scope.events.is_empty()
        && scope
            .events
            .iter()
            .all(|e| RARE_EVENTS.contains(&e.as_str()))
    {
        w.push(RARE_EVENTS_TERM, []);
    }
    w.raw_filters(&scope.filters)?;
    if !scope.include_ci {
        let ci = prop_text(&json_path(crate::rollup::IS_CI)?);
        w.push(&format!("{ci} IS NOT 'true'"), []);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn raw_questions_about_rare_events_read_their_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::rollup::register_functions(&conn).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let term = RARE_EVENTS.map(|e| format!("'{e}'")).join(", ");
        assert_eq!(RARE_EVENTS_TERM, format!("event IN ({term})"));
        let plan = |events: &[&str]| {
            let scope = Scope {
                project_id: 1,
                from_ms: 0,
                to_ms: 1,
                events: events.iter().map(|e| e.to_string()).collect(),
                filters: vec![("product_version".into(), "1.0".into())],
                include_ci: false,
            };
            let w = raw_scope(&scope).unwrap();
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT * FROM events WHERE {}",
                w.clause()
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(w.params.iter()), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        assert!(
            plan(&["FATAL"]).contains("events_rare"),
            "{}",
            plan(&["FATAL"])
        );
        let cloud = crate::http::api::CLOUD_EVENTS;
        assert!(plan(cloud).contains("events_rare"), "{}", plan(cloud));
        assert!(!plan(&["START"]).contains("events_rare"));
        assert!(!plan(&["FATAL", "START"]).contains("events_rare"));
    }

    #[test]
    fn day_buckets_equal_the_sql_buckets() {
        let conn = Connection::open_in_memory().unwrap();
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            let sql = format!("SELECT {}", bucket(Some(interval), "?1 * 86400"));
            for day in 19_700..19_800 {
                let want: i64 = conn.query_row(&sql, [day], |r| r.get(0)).unwrap();
                let (start, next) = day_bucket(Some(interval), day);
                assert_eq!(start * 86_400, want, "{interval:?} of day {day}");
                assert!(start <= day && day < next);
                let after: i64 = conn.query_row(&sql, [next], |r| r.get(0)).unwrap();
                assert_eq!(after, next * 86_400, "{interval:?} after day {day}");
            }
        }
    }
}
