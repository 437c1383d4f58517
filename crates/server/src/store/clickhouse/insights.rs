//! Insights over ClickHouse: every answer is computed from the raw events with `FINAL`
//! (one row per uuid), and distinct machines with `uniqExact(distinct_id)`, so counts are
//! exact at any size. Property values come from the `dim_keys`/`dim_values` arrays written
//! at ingest from the same [`crate::rollup::dims`] the embedded store's rollups use, so
//! both stores bucket values alike. The most used properties also have a column of their
//! own (`d_<name>`, see [`super::schema::INDEXED_DIMS`]); questions on them read that
//! column instead of the arrays.

use super::ClickHouseStore;
use super::http::{Kind, lit, num};
use super::schema::Layout;
use super::writer::ts_seconds;
use crate::insights::{
    CrashSite, Group, InsightStore, Interval, PropertySummary, Scope, Source, SqlLimits, SqlResult,
};
use crate::rollup::FATAL_SITE;
use crate::store::{StoreError, StoredEvent};
use serde::Deserialize;

/// SQL for the bucket start, in Unix seconds, of the event time `ts` (UTC).
fn bucket(interval: Option<Interval>) -> &'static str {
    match interval {
        None => "toInt64(0)",
        Some(Interval::Hour) => "toInt64(toUnixTimestamp(toStartOfHour(ts, 'UTC')))",
        Some(Interval::Day) => "toInt64(toUInt32(toDate(ts, 'UTC'))) * 86400",
        Some(Interval::Week) => "toInt64(toUInt32(toMonday(ts, 'UTC'))) * 86400",
        Some(Interval::Month) => "toInt64(toUInt32(toStartOfMonth(ts, 'UTC'))) * 86400",
    }
}

/// The value of property `p` ('' when absent; test with [`has_dim`]).
fn dim(layout: &Layout, p: &str) -> String {
    match layout.dim_column(p) {
        Some(c) => format!("assumeNotNull({c})"),
        None => format!("dim_values[indexOf(dim_keys, {})]", lit(p)),
    }
}

/// Whether the event has property `p`.
fn has_dim(layout: &Layout, p: &str) -> String {
    match layout.dim_column(p) {
        Some(c) => format!("isNotNull({c})"),
        None => format!("has(dim_keys, {})", lit(p)),
    }
}

/// Whether property `p` has value `v`.
fn dim_is(layout: &Layout, p: &str, v: &str) -> String {
    match layout.dim_column(p) {
        Some(c) => format!("{c} = {}", lit(v)),
        None => format!(
            "arrayExists((fk, fv) -> fk = {} AND fv = {}, dim_keys, dim_values)",
            lit(p),
            lit(v)
        ),
    }
}

/// The WHERE clause of a scope over raw events.
fn scope_where(layout: &Layout, scope: &Scope) -> String {
    let mut w = vec![
        format!("project_id = {}", scope.project_id),
        format!(
            "ts >= toDateTime({}) AND ts <= toDateTime({})",
            ts_seconds(scope.from_ms),
            ts_seconds(scope.to_ms)
        ),
        format!("ts_ms >= {} AND ts_ms < {}", scope.from_ms, scope.to_ms),
    ];
    if !scope.events.is_empty() {
        let names: Vec<String> = scope.events.iter().map(|e| lit(e)).collect();
        w.push(format!("event IN ({})", names.join(", ")));
    }
    for (p, v) in &scope.filters {
        w.push(dim_is(layout, p, v));
    }
    if !scope.include_ci {
        w.push(format!(
            "NOT ({})",
            dim_is(layout, crate::rollup::IS_CI, "true")
        ));
    }
    w.join(" AND ")
}

#[derive(Deserialize)]
struct Point {
    #[serde(deserialize_with = "num")]
    b: i64,
    #[serde(deserialize_with = "num")]
    c: i64,
}

#[derive(Deserialize)]
struct GroupRow {
    #[serde(deserialize_with = "num")]
    b: i64,
    v: String,
    #[serde(deserialize_with = "num")]
    c: i64,
    #[serde(deserialize_with = "num")]
    m: i64,
}

#[derive(Deserialize)]
struct SiteRow {
    site: String,
    #[serde(deserialize_with = "num")]
    c: i64,
    #[serde(deserialize_with = "num")]
    m: i64,
    #[serde(deserialize_with = "num")]
    first: i64,
    #[serde(deserialize_with = "num")]
    last: i64,
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct PropRow {
    k: String,
    v: String,
    #[serde(deserialize_with = "num")]
    c: i64,
    #[serde(deserialize_with = "num")]
    m: i64,
}

#[derive(Deserialize)]
pub(super) struct EventRow {
    #[serde(deserialize_with = "num")]
    pub project_id: i64,
    pub uuid: String,
    pub event: String,
    pub distinct_id: String,
    #[serde(deserialize_with = "num")]
    pub ts_ms: i64,
    pub properties: String,
}

impl EventRow {
    pub fn stored(self) -> Result<StoredEvent, StoreError> {
        Ok(StoredEvent {
            project_id: self.project_id,
            uuid: uuid::Uuid::parse_str(&self.uuid)
                .map_err(|e| StoreError::Backend(format!("bad uuid from ClickHouse: {e}")))?,
            event: self.event,
            distinct_id: self.distinct_id,
            timestamp_ms: self.ts_ms,
            properties: self.properties,
        })
    }
}

pub(super) const EVENT_SELECT: &str =
    "project_id, toString(uuid) AS uuid, event, distinct_id, ts_ms, properties";

fn u(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl ClickHouseStore {
    fn series(&self, sql: &str) -> Result<Vec<(i64, u64)>, StoreError> {
        let rows: Vec<Point> = self.primary.rows(Kind::Select, sql)?;
        Ok(rows.into_iter().map(|p| (p.b * 1000, u(p.c))).collect())
    }
}

impl InsightStore for ClickHouseStore {
    fn trend(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError> {
        let sql = format!(
            "SELECT {} AS b, count() AS c FROM {} FINAL WHERE {} GROUP BY b ORDER BY b",
            bucket(Some(interval)),
            self.layout.events(),
            scope_where(&self.layout, scope)
        );
        Ok((self.series(&sql)?, Source::Events))
    }

    fn breakdown(
        &self,
        scope: &Scope,
        property: &str,
        over: Option<Interval>,
    ) -> Result<(Vec<Group>, Source), StoreError> {
        let sql = format!(
            "SELECT {} AS b, {} AS v, count() AS c, uniqExact(distinct_id) AS m FROM {} FINAL \
             WHERE {} AND {} GROUP BY b, v ORDER BY b, v",
            bucket(over),
            dim(&self.layout, property),
            self.layout.events(),
            scope_where(&self.layout, scope),
            has_dim(&self.layout, property)
        );
        let rows: Vec<GroupRow> = self.primary.rows(Kind::Select, &sql)?;
        let groups = rows
            .into_iter()
            .map(|r| Group {
                bucket_ms: r.b * 1000,
                value: r.v,
                count: u(r.c),
                machines: u(r.m),
            })
            .collect();
        Ok((groups, Source::Events))
    }

    fn active(
        &self,
        scope: &Scope,
        interval: Interval,
    ) -> Result<(Vec<(i64, u64)>, Source), StoreError> {
        let sql = format!(
            "SELECT {} AS b, uniqExact(distinct_id) AS c FROM {} FINAL WHERE {} GROUP BY b ORDER BY b",
            bucket(Some(interval)),
            self.layout.events(),
            scope_where(&self.layout, scope)
        );
        Ok((self.series(&sql)?, Source::Events))
    }

    fn crash_sites(&self, scope: &Scope) -> Result<Vec<CrashSite>, StoreError> {
        let fatal = Scope {
            events: vec!["FATAL".into()],
            ..scope.clone()
        };
        let sql = format!(
            "SELECT crash_site AS site, count() AS c, uniqExact(distinct_id) AS m, min(ts_ms) AS first, \
             max(ts_ms) AS last, groupUniqArray(crash_version) AS versions FROM {} FINAL \
             WHERE {} AND has(dim_keys, {}) GROUP BY site ORDER BY site",
            self.layout.events(),
            scope_where(&self.layout, &fatal),
            lit(FATAL_SITE)
        );
        let rows: Vec<SiteRow> = self.primary.rows(Kind::Select, &sql)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let parts: Vec<String> = serde_json::from_str(&r.site).unwrap_or_default();
                let [function, file, line] = <[String; 3]>::try_from(parts).unwrap_or_default();
                let mut versions = r.versions;
                versions.sort();
                CrashSite {
                    function,
                    file,
                    line,
                    count: u(r.c),
                    machines: u(r.m),
                    first_seen_ms: r.first,
                    last_seen_ms: r.last,
                    versions,
                }
            })
            .collect())
    }

    fn properties(&self, scope: &Scope, k: u64) -> Result<Vec<PropertySummary>, StoreError> {
        let unfiltered = Scope {
            filters: vec![],
            include_ci: false,
            ..scope.clone()
        };
        let sql = format!(
            "SELECT k, v, count() AS c, uniqExact(distinct_id) AS m FROM \
             (SELECT dim_keys, dim_values, distinct_id FROM {} FINAL WHERE {}) \
             ARRAY JOIN dim_keys AS k, dim_values AS v WHERE k != {} \
             GROUP BY k, v ORDER BY k, c DESC, v",
            self.layout.events(),
            scope_where(&self.layout, &unfiltered),
            lit(FATAL_SITE)
        );
        let rows: Vec<PropRow> = self.primary.rows(Kind::Select, &sql)?;
        let mut out: Vec<PropertySummary> = Vec::new();
        for r in rows {
            if out.last().is_none_or(|p| p.name != r.k) {
                out.push(PropertySummary {
                    name: r.k.clone(),
                    distinct_values: 0,
                    events: 0,
                    examples: vec![],
                });
            }
            if let Some(p) = out.last_mut() {
                p.distinct_values += 1;
                p.events += u(r.c);
                if u(r.m) >= k && p.examples.len() < 5 {
                    p.examples.push(r.v);
                }
            }
        }
        Ok(out)
    }

    fn recent(&self, project_id: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        // The newest rows that survive deduplication, found with FINAL over the narrow
        // key columns only; then their other columns, without FINAL, by (event, uuid, seq).
        let events = self.layout.events();
        let sql = format!(
            "SELECT {EVENT_SELECT} FROM (SELECT project_id, uuid, event, distinct_id, ts_ms, properties, seq \
             FROM {events} PREWHERE project_id = {project_id} AND (event, uuid, seq) GLOBAL IN \
             (SELECT event, uuid, seq FROM {events} FINAL WHERE project_id = {project_id} ORDER BY seq DESC LIMIT {limit}) \
             ORDER BY seq DESC LIMIT 1 BY event, uuid LIMIT {limit}) ORDER BY seq DESC"
        );
        let rows: Vec<EventRow> = self.primary.rows(Kind::Select, &sql)?;
        rows.into_iter().map(EventRow::stored).collect()
    }

    fn erase_machine(&self, project_id: i64, distinct_id: &str) -> Result<u64, StoreError> {
        let cond = format!(
            "project_id = {project_id} AND distinct_id = {}",
            lit(distinct_id)
        );
        let n = self.count_where(&cond)?;
        if n > 0 {
            self.mutate(&format!("DELETE WHERE {cond}"))?;
        }
        Ok(n)
    }

    fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let cutoff = cutoff_ms.div_euclid(crate::insights::DAY_MS) * crate::insights::DAY_MS;
        let n = self.count_where(&format!("ts_ms < {cutoff}"))?;
        if n > 0 {
            self.drop_months_before(cutoff)?;
            if self.count_where(&format!("ts_ms < {cutoff}"))? > 0 {
                self.mutate(&format!("DELETE WHERE ts_ms < {cutoff}"))?;
            }
        }
        Ok(n)
    }

    fn sql(&self, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
        super::adhoc::run(&self.primary, sql, limits)
    }
}

#[derive(Deserialize)]
pub(super) struct Count {
    #[serde(deserialize_with = "num")]
    pub n: i64,
}

impl ClickHouseStore {
    /// Events (one per uuid) matching a condition.
    pub(super) fn count_where(&self, cond: &str) -> Result<u64, StoreError> {
        let rows: Vec<Count> = self.primary.rows(
            Kind::Select,
            &format!(
                "SELECT count() AS n FROM {} FINAL WHERE {cond}",
                self.layout.events()
            ),
        )?;
        Ok(rows.first().map_or(0, |r| u(r.n)))
    }
}
