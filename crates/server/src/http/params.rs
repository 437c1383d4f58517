//! Query parameters of the insights API, turned into a [`Scope`].

use super::error::ApiError;
use crate::insights::{DAY_MS, HOUR_MS, Interval, Scope};
use crate::store::Project;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

/// Parsed query string: repeated keys are kept in order.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .filter(|v| !v.is_empty())
    }

    pub fn interval(&self) -> Result<Interval, ApiError> {
        match self.get("interval") {
            None => Ok(Interval::Day),
            Some(v) => Interval::parse(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "interval {v:?} is not one of hour, day, week, month"
                ))
            }),
        }
    }

    pub fn limit(&self, default: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit {v:?} is not a number from 1 to 1000"))
                }),
        }
    }

    /// The project named by `project` (default "default"), the range and filters.
    pub fn scope(
        &self,
        projects: &[Project],
        align: Interval,
        now_ms: i64,
    ) -> Result<Scope, ApiError> {
        let name = self.get("project").unwrap_or("default");
        let project = projects.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<String> = projects
                .iter()
                .take(20)
                .map(|p| format!("{:?}", p.name))
                .collect();
            ApiError::NotFound(format!(
                "no project named {name:?}: give `project` one of {} (GET /api/v1/projects \
                     lists them)",
                names.join(", ")
            ))
        })?;
        let unit = if align == Interval::Hour {
            HOUR_MS
        } else {
            DAY_MS
        };
        let to = match self.get("to") {
            Some(v) => time(v, "to")?,
            None => now_ms,
        };
        let from = match self.get("from") {
            Some(v) => time(v, "from")?,
            None => to - 29 * DAY_MS,
        };
        // Whole hours or UTC days: the rollups' resolution. `to` is rounded up so the
        // hour or day it falls in is included.
        let from_ms = from.div_euclid(unit) * unit;
        let to_ms = (to.div_euclid(unit)
            + i64::from(to.rem_euclid(unit) != 0 || self.get("to").is_none()))
            * unit;
        if to_ms <= from_ms {
            return Err(ApiError::BadRequest("`from` must be before `to`".into()));
        }
        let mut filters = Vec::new();
        for f in self.0.iter().filter(|(k, _)| k == "filter").map(|(_, v)| v) {
            let (prop, value) = f.split_once('=').ok_or_else(|| {
                ApiError::BadRequest(format!("filter {f:?} is not of the form property=value"))
            })?;
            filters.push((prop.to_string(), value.to_string()));
        }
        // CI runs are left out unless asked for, or filtered on by name.
        let include_ci = match self.get("ci") {
            None | Some("exclude") => filters.iter().any(|(p, _)| p == crate::rollup::IS_CI),
            Some("include") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "ci {other:?} is not one of include, exclude (CI runs are left out by default)"
                )));
            }
        };
        Ok(Scope {
            project_id: project.id,
            from_ms,
            to_ms,
            events: self.all("event").map(str::to_string).collect(),
            filters,
            include_ci,
        })
    }
}

/// RFC 3339, or a date meaning its midnight UTC.
pub fn time(v: &str, name: &str) -> Result<i64, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    anonstats_wire::parse_timestamp_ms(v).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`{name}` {v:?} is not a date (2024-05-01) or an RFC 3339 time"
        ))
    })
}

/// Every bucket start in [from, to), so that series have a point for empty buckets too.
pub fn buckets(interval: Interval, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let start = DateTime::<Utc>::from_timestamp_millis(from_ms).unwrap_or_default();
    let mut t = match interval {
        Interval::Hour => from_ms.div_euclid(HOUR_MS) * HOUR_MS,
        Interval::Day => from_ms.div_euclid(DAY_MS) * DAY_MS,
        Interval::Week => {
            let day = start.date_naive()
                - Duration::days(i64::from(start.weekday().num_days_from_monday()));
            day.and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
                .timestamp_millis()
        }
        Interval::Month => start
            .date_naive()
            .with_day(1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis(),
    };
    let mut out = Vec::new();
    while t < to_ms && out.len() < 100_000 {
        out.push(t);
        t = match interval {
            Interval::Hour => t + HOUR_MS,
            Interval::Day => t + DAY_MS,
            Interval::Week => t + 7 * DAY_MS,
            Interval::Month => {
                let d = DateTime::<Utc>::from_timestamp_millis(t)
                    .unwrap_or_default()
                    .date_naive();
                let next = if d.month() == 12 {
                    NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
                };
                next.and_then(|n| n.and_hms_opt(0, 0, 0))
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis()
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let from = time("2024-02-28", "from").unwrap();
        let to = time("2024-04-02", "to").unwrap();
        let weeks = buckets(Interval::Week, from, to);
        assert_eq!(
            anonstats_wire::format_rfc3339_ms(weeks[0]),
            "2024-02-26T00:00:00.000Z"
        );
        let months: Vec<String> = buckets(Interval::Month, from, to)
            .into_iter()
            .map(anonstats_wire::format_rfc3339_ms)
            .collect();
        assert_eq!(
            months,
            [
                "2024-02-01T00:00:00.000Z",
                "2024-03-01T00:00:00.000Z",
                "2024-04-01T00:00:00.000Z"
            ]
        );
    }
}
