//! What `/metrics` tells an operator: queue depth against its bound, store size,
//! retention and erasure runs, rollup lag, admin API latency and the build; scraped from
//! a real collector, on SQLite and on ClickHouse. The Grafana dashboard in docs/ names
//! only metrics a scrape holds.

mod common;

use common::clickhouse::{env_or_skip, unique_db};
use common::{Collector, post_json, request};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One scrape, parsed: each family's TYPE and HELP, and every sample by its series.
struct Scrape {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    /// `name{labels}` (or `name`) -> value.
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape {
            types: BTreeMap::new(),
            helps: BTreeMap::new(),
            samples: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                s.types.insert(name.into(), kind.into());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                s.helps.insert(name.into(), help.into());
            } else {
                assert!(!line.starts_with('#'), "unknown comment line {line:?}");
                let (series, value) = line.rsplit_once(' ').expect("series value");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {line:?}"));
                s.samples.insert(series.into(), value);
            }
        }
        s
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}; have {:?}", self.samples.keys()))
    }

    /// The samples of a family (`name` and its `_bucket`, `_sum`, `_count` series).
    fn family(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(k, _)| {
                let base = k.split('{').next().unwrap_or_default();
                base == name
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| base == format!("{name}{suffix}"))
            })
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }

    /// Every family is declared once with HELP and TYPE, before any of its samples is
    /// shown, and every sample belongs to a declared family.
    fn assert_well_formed(&self) {
        for name in self.types.keys() {
            assert!(self.helps.contains_key(name), "{name} has no HELP");
        }
        for series in self.samples.keys() {
            let base = series.split('{').next().unwrap_or_default();
            let declared = self.types.contains_key(base)
                || ["_bucket", "_sum", "_count"].iter().any(|s| {
                    base.strip_suffix(s)
                        .is_some_and(|n| self.types.get(n).is_some_and(|t| t == "histogram"))
                });
            assert!(declared, "{series} has no TYPE line");
        }
    }
}

fn scrape(c: &Collector) -> Scrape {
    let s = Scrape::parse(&common::admin_metrics(c));
    s.assert_well_formed();
    s
}

/// Scrapes until `ready` holds (each new family appears at once, but runs and lags
/// change with the collector's own threads).
fn scrape_until(c: &Collector, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(c);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < until, "never {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The families every collector shows, and their types.
const NEW_FAMILIES: &[(&str, &str)] = &[
    ("anonstats_queue_depth", "gauge"),
    ("anonstats_queue_bound", "gauge"),
    ("anonstats_store_size_bytes", "gauge"),
    ("anonstats_rollup_lag_seconds", "gauge"),
    ("anonstats_retention_runs_total", "counter"),
    ("anonstats_retention_last_run_timestamp_seconds", "gauge"),
    ("anonstats_retention_events_removed_total", "counter"),
    ("anonstats_erasure_runs_total", "counter"),
    ("anonstats_erasure_last_run_timestamp_seconds", "gauge"),
    ("anonstats_erasure_events_removed_total", "counter"),
    ("anonstats_api_request_duration_seconds", "histogram"),
    ("anonstats_build_info", "gauge"),
];

fn batch(c: &Collector, events: &[Value]) {
    let a = post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": events}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
}

fn admin(c: &Collector, method: &str, path: &str) -> common::Answer {
    let auth = format!("Bearer {}", c.admin_token);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    request(method, &c.url(path), &headers, None)
}

/// Ingest, an insight, SQL, an erasure: then every family holds what happened. Returns
/// the scrapes from before and after.
fn exercise_and_check(c: &Collector, store_parts: &[&str]) -> (Scrape, Scrape) {
    let before = scrape(c);
    for (name, kind) in NEW_FAMILIES {
        assert_eq!(
            before.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name} is not declared as a {kind}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    let info = before
        .family("anonstats_build_info")
        .into_iter()
        .next()
        .expect("a build_info sample");
    assert!(
        info.0
            .starts_with(&format!("anonstats_build_info{{version=\"{version}\"")),
        "{info:?}"
    );
    assert_eq!(info.1, 1.0);
    for (unit, bound) in [("events", 200_000.0), ("bytes", (64 << 20) as f64)] {
        assert_eq!(
            before.get(&format!(
                "anonstats_queue_bound{{queue=\"in_flight\",unit=\"{unit}\"}}"
            )),
            bound,
            "the --queue-events / --queue-mb defaults"
        );
    }
    assert_eq!(
        before.get("anonstats_queue_bound{queue=\"store\",unit=\"requests\"}"),
        4096.0,
        "the --queue default"
    );

    let events: Vec<Value> = (0..20)
        .map(|i| json!({"event": "START", "distinct_id": format!("m{}", i % 4)}))
        .collect();
    batch(c, &events);
    let trend = admin(c, "GET", "/api/v1/insights/trend?interval=day");
    assert_eq!(trend.status, 200, "{}", trend.body);
    let bad = admin(c, "GET", "/api/v1/insights/trend?interval=fortnight");
    assert_eq!(bad.status, 400, "a refusal is timed too");
    common::admin_sql(c, "SELECT 1");
    let erased = admin(c, "DELETE", "/api/v1/machines/m1");
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.json()["deleted_events"], 5);

    let after = scrape_until(c, "the commit's queue emptied", |s| {
        s.get("anonstats_queue_depth{queue=\"in_flight\",unit=\"events\"}") == 0.0
    });
    for unit in ["requests", "events", "bytes"] {
        assert_eq!(
            after.get(&format!(
                "anonstats_queue_depth{{queue=\"store\",unit=\"{unit}\"}}"
            )),
            0.0,
            "nothing waits for the writer once every request was answered"
        );
    }
    assert_eq!(
        after.get("anonstats_api_request_duration_seconds_count{class=\"insight\"}")
            - before.get("anonstats_api_request_duration_seconds_count{class=\"insight\"}"),
        2.0,
        "the trend and the refused trend"
    );
    assert_eq!(
        after.get("anonstats_api_request_duration_seconds_count{class=\"admin\"}")
            - before.get("anonstats_api_request_duration_seconds_count{class=\"admin\"}"),
        2.0,
        "the SQL and the erasure"
    );
    let inf =
        after.get("anonstats_api_request_duration_seconds_bucket{class=\"admin\",le=\"+Inf\"}");
    let sum = after.get("anonstats_api_request_duration_seconds_sum{class=\"admin\"}");
    assert!(inf >= 2.0 && sum > 0.0, "inf {inf}, sum {sum}");
    // Buckets are cumulative.
    let mut by_le: Vec<(f64, f64)> = after
        .family("anonstats_api_request_duration_seconds")
        .into_iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(
                "anonstats_api_request_duration_seconds_bucket{class=\"insight\",le=\"",
            )?;
            let le = le.trim_end_matches("\"}");
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                },
                v,
            ))
        })
        .collect();
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    let buckets: Vec<f64> = by_le.into_iter().map(|(_, v)| v).collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    for le in ["0.001", "60", "+Inf"] {
        after.get(&format!(
            "anonstats_api_request_duration_seconds_bucket{{class=\"insight\",le=\"{le}\"}}"
        ));
    }

    assert_eq!(
        after.get("anonstats_erasure_runs_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(after.get("anonstats_erasure_events_removed_total"), 5.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let last = after.get("anonstats_erasure_last_run_timestamp_seconds{result=\"ok\"}");
    assert!(
        (now - 600.0..=now + 5.0).contains(&last),
        "erasure last ran at {last}, now is {now}"
    );
    assert_eq!(
        after.get("anonstats_erasure_last_run_timestamp_seconds{result=\"failed\"}"),
        0.0
    );
    let lag = after.get("anonstats_rollup_lag_seconds");
    assert!((0.0..600.0).contains(&lag), "rollup lag {lag}");
    let sizes = after.family("anonstats_store_size_bytes");
    for part in store_parts {
        let series = format!("anonstats_store_size_bytes{{part=\"{part}\"}}");
        assert!(
            sizes.iter().any(|(k, v)| *k == series && *v > 0.0),
            "{series} missing or 0 in {sizes:?}"
        );
    }
    (before, after)
}

#[test]
fn sqlite_metrics_show_queues_size_runs_lag_latency_and_build() {
    let mut c = Collector::start_with(&["--retention-days", "30"]);
    let (_, s) = exercise_and_check(&c, &["anonstats.db", "anonstats.db-wal"]);
    assert_eq!(
        s.get("anonstats_rollup_lag_seconds"),
        0.0,
        "the insight read folded every event in, and none came after"
    );
    let db = std::fs::metadata(c.data_dir().join("anonstats.db"))
        .unwrap()
        .len() as f64;
    assert_eq!(
        s.get("anonstats_store_size_bytes{part=\"anonstats.db\"}"),
        db,
        "the database file's size"
    );
    // Retention ran at start, on an empty store.
    let s = scrape_until(&c, "retention ran at start", |s| {
        s.get("anonstats_retention_runs_total{result=\"ok\"}") >= 1.0
    });
    assert_eq!(s.get("anonstats_retention_events_removed_total"), 0.0);

    // Two events of 2020 and one of now; retention at the next start removes the two.
    batch(
        &c,
        &[
            json!({"event": "START", "distinct_id": "old1", "timestamp": "2020-01-15T00:00:00Z"}),
            json!({"event": "START", "distinct_id": "old2", "timestamp": "2020-02-15T00:00:00Z"}),
            json!({"event": "START", "distinct_id": "new"}),
        ],
    );
    c.restart();
    let s = scrape_until(&c, "retention removed the old events", |s| {
        s.get("anonstats_retention_runs_total{result=\"ok\"}") >= 1.0
    });
    assert_eq!(s.get("anonstats_retention_events_removed_total"), 2.0);
    assert!(s.get("anonstats_retention_last_run_timestamp_seconds{result=\"ok\"}") > 1.6e9);
    assert_eq!(
        s.get("anonstats_retention_runs_total{result=\"failed\"}"),
        0.0
    );
}

#[test]
fn rollup_lag_grows_while_events_wait_to_be_folded_and_drops_once_they_are() {
    // Events wait up to ten minutes before the rollups count them, unless read.
    let c = Collector::start_with(&["--rollup-fold-ms", "600000"]);
    batch(&c, &[json!({"event": "START", "distinct_id": "m"})]);
    let first = scrape_until(&c, "the rollups trailed", |s| {
        s.get("anonstats_rollup_lag_seconds") > 0.0
    })
    .get("anonstats_rollup_lag_seconds");
    scrape_until(&c, "the lag grew", |s| {
        s.get("anonstats_rollup_lag_seconds") > first
    });
    // An insight folds them in before it answers.
    assert_eq!(admin(&c, "GET", "/api/v1/insights/trend").status, 200);
    assert_eq!(scrape(&c).get("anonstats_rollup_lag_seconds"), 0.0);
}

#[test]
fn clickhouse_metrics_show_queues_size_runs_lag_latency_and_build() {
    let Some(host) = env_or_skip("ANONSTATS_TEST_CLICKHOUSE") else {
        return;
    };
    let host = host.trim_start_matches("http://").to_string();
    let db = unique_db("metrics");
    let c = Collector::start_with(&[
        "--store",
        &format!("clickhouse://{host}/{db}"),
        "--retention-days",
        "30",
    ]);
    // The sizes are read at most once a minute: the first scrape read them before the
    // events, so only the tables that existed then are asked for.
    let (before, s) = exercise_and_check(&c, &[]);
    assert!(
        !s.family("anonstats_store_size_bytes").is_empty(),
        "no table sizes from system.parts"
    );
    assert_eq!(
        before.family("anonstats_store_size_bytes"),
        s.family("anonstats_store_size_bytes"),
        "system.parts is read once a minute, not at every scrape"
    );
    assert_eq!(s.get("anonstats_rollup_lag_seconds"), 0.0);
    scrape_until(&c, "retention ran at start", |s| {
        s.get("anonstats_retention_runs_total{result=\"ok\"}") >= 1.0
    });
    common::clickhouse::ch(&format!("http://{host}"), &format!("DROP DATABASE {db}"));
}

#[test]
fn the_queue_depth_rises_while_the_disk_stalls_and_stays_within_its_bound() {
    if !common::require(std::path::Path::new("/usr/bin/strace").exists(), "strace") {
        return;
    }
    // The sync thread's 3rd fdatasync takes 10 s: nothing is acknowledged meanwhile.
    let c = Collector::start_with_fdatasync_fault(
        "delay_enter=10000000:when=3",
        // Room for two of the four requests of 1000 events below.
        &["--queue-events", "2500"],
    );
    let url = c.url("/batch/");
    // Two commits pass before the stall.
    for _ in 0..2 {
        batch(&c, &[json!({"event": "warm", "distinct_id": "w"})]);
    }
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (url, token) = (url.clone(), c.write_token.clone());
            std::thread::spawn(move || {
                let events: Vec<Value> = (0..1000)
                    .map(|i| json!({"event": "load", "distinct_id": format!("t{t}-{i}")}))
                    .collect();
                let body = json!({"api_key": token, "batch": events});
                post_json(&url, &body).status
            })
        })
        .collect();
    let s = scrape_until(&c, "capture work waited for the stalled disk", |s| {
        s.get("anonstats_queue_depth{queue=\"in_flight\",unit=\"events\"}") >= 2000.0
    });
    let depth = s.get("anonstats_queue_depth{queue=\"in_flight\",unit=\"events\"}");
    let bound = s.get("anonstats_queue_bound{queue=\"in_flight\",unit=\"events\"}");
    eprintln!("in flight while the disk stalls: {depth} events of a bound of {bound}");
    assert_eq!(bound, 2500.0, "--queue-events");
    assert!(
        depth <= bound,
        "{depth} events in flight past a bound of {bound}"
    );
    assert!(s.get("anonstats_queue_depth{queue=\"in_flight\",unit=\"bytes\"}") > 0.0);
    let statuses: Vec<u16> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)) && statuses.contains(&503),
        "past the bound requests are shed: {statuses:?}"
    );
    let s = scrape_until(&c, "the queue drained after the stall", |s| {
        s.get("anonstats_queue_depth{queue=\"in_flight\",unit=\"events\"}") == 0.0
    });
    assert_eq!(
        s.get("anonstats_queue_depth{queue=\"store\",unit=\"requests\"}"),
        0.0
    );
}

/// Every `expr` of every panel of the dashboard.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut exprs);
    exprs
}

/// Every metric name the dashboard's queries use.
fn dashboard_metrics(dashboard: &Value) -> Vec<String> {
    let mut names: Vec<String> = dashboard_exprs(dashboard)
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("anonstats_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_a_collector_serves() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/anonstats.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/grafana/anonstats.json"))
            .expect("the dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(dashboard["title"].is_string());
    let used = dashboard_metrics(&dashboard);
    assert!(used.len() >= 10, "{used:?}");
    // Every series that exists only once something happened: a rate limit, a property
    // dropped, a commit.
    let c = Collector::start_with(&["--retention-days", "30"]);
    batch(
        &c,
        &[json!({"event": "START", "distinct_id": "m", "properties": {"$ip": "1.2.3.4"}})],
    );
    let s = scrape(&c);
    let served: std::collections::BTreeSet<&str> = s
        .samples
        .keys()
        .map(|k| k.split('{').next().unwrap_or_default())
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !served.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not serve: {missing:?}"
    );
    // Each query's brackets pair up, and each label it selects on is one the metric has
    // (`instance` is Prometheus's own).
    for e in dashboard_exprs(&dashboard) {
        let mut open = Vec::new();
        for ch in e.chars() {
            match ch {
                '(' | '{' | '[' => open.push(ch),
                ')' | '}' | ']' => {
                    let want = match ch {
                        ')' => '(',
                        '}' => '{',
                        _ => '[',
                    };
                    assert_eq!(open.pop(), Some(want), "unbalanced {ch:?} in {e}");
                }
                _ => {}
            }
        }
        assert!(open.is_empty(), "unclosed {open:?} in {e}");
        let mut rest = e.as_str();
        while let Some(at) = rest.find("anonstats_") {
            rest = &rest[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            rest = after;
            let Some(selector) = after.strip_prefix('{') else {
                continue;
            };
            let selector = &selector[..selector.find('}').expect("closed selector")];
            for matcher in selector.split(',') {
                let label = matcher
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if label == "instance" {
                    continue;
                }
                assert!(
                    s.samples
                        .keys()
                        .any(|k| k.split('{').next() == Some(name)
                            && k.contains(&format!("{label}=\""))),
                    "{name} has no label {label:?} (in {e})"
                );
            }
        }
    }
    // Each panel's datasource is the one the import asks for.
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert_eq!(inputs[0]["pluginId"], "prometheus");
}
