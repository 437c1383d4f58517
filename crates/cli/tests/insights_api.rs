//! The insights API on hand-built data sets whose answers are known, checked against
//! the same questions answered by SQL over the raw events.

mod common;

use common::{Collector, admin_get, admin_sql, post_json, request};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
/// 2024-03-01T00:00:00Z, a Friday.
const MAR1: i64 = 1_709_251_200_000;
const RANGE: &str = "from=2024-03-01&to=2024-03-11";

fn os(m: usize) -> &'static str {
    match m {
        0..=5 => "Debian",
        6..=8 => "Ubuntu",
        _ => "Alpine",
    }
}

/// m0..m4 move to 2.0 on 6 March; everyone else stays on 1.0.
fn version(m: usize, day: i64) -> &'static str {
    if m <= 4 && day >= 5 { "2.0" } else { "1.0" }
}

fn ev(event: &str, m: usize, ts: i64, extra: Value) -> Value {
    let mut props = json!({"host_os_name": os(m), "product_version": version(m, (ts - MAR1) / DAY),
        "system_architecture": "x86_64"});
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"event": event, "distinct_id": format!("m{m}"), "timestamp": rfc3339(ts), "properties": props})
}

/// Ten machines over 1-10 March 2024: START at 10:00 and EXIT at 12:00 every day (m9 only
/// on 3 March), six Debian machines crash at one site on 7 March, one Ubuntu machine at
/// another, six fail to connect to the cloud with E42 on 2 March.
fn dataset() -> Vec<Value> {
    let mut out = Vec::new();
    for day in 0..10 {
        let base = MAR1 + day * DAY;
        for m in 0..10 {
            if m == 9 && day != 2 {
                continue;
            }
            out.push(ev("START", m, base + 10 * 3_600_000, json!({})));
            out.push(ev("EXIT", m, base + 12 * 3_600_000, json!({})));
        }
    }
    let crash = |m: usize, f: &str, file: &str, line: u32| {
        ev(
            "FATAL",
            m,
            MAR1 + 6 * DAY + 11 * 3_600_000 + m as i64 * 1000,
            json!({"fatal_function": f, "fatal_file": file, "fatal_line": line}),
        )
    };
    for m in 0..6 {
        out.push(crash(m, "f_main", "main.c", 10));
        out.push(ev(
            "CLOUD_CONNECT_FAIL",
            m,
            MAR1 + DAY + 9 * 3_600_000,
            json!({"error_code": "E42"}),
        ));
    }
    out.push(crash(6, "f_rare", "rare.c", 3));
    out
}

fn load(c: &Collector) -> usize {
    let events = dataset();
    for chunk in events.chunks(50) {
        let a = post_json(
            &c.url("/batch/"),
            &json!({"api_key": c.write_token, "batch": chunk}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    events.len()
}

fn series(v: &Value, name: &str) -> Vec<u64> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[name].as_u64().unwrap())
        .collect()
}

fn rows(v: &Value) -> Vec<(String, u64, u64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
                r["machines"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn sql_u64(c: &Collector, sql: &str) -> Vec<u64> {
    admin_sql(c, sql)
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .collect()
}

#[test]
fn insights_have_the_known_answers_and_equal_sql_over_raw_events() {
    let c = Collector::start();
    let total = load(&c);

    // Trend per day, week and hour.
    let t = admin_get(&c, &format!("/api/v1/insights/trend?event=START&{RANGE}"));
    assert_eq!(series(&t, "count"), [9, 9, 10, 9, 9, 9, 9, 9, 9, 9]);
    assert_eq!(t["source"], "rollup");
    let raw = sql_u64(
        &c,
        &format!(
            "SELECT ts_ms / 86400000, COUNT(*) FROM events WHERE event = 'START' AND ts_ms >= {MAR1} AND ts_ms < {} GROUP BY 1 ORDER BY 1",
            MAR1 + 10 * DAY
        ),
    );
    assert_eq!(
        series(&t, "count"),
        raw,
        "the rollup equals SQL over the raw events"
    );
    let w = admin_get(
        &c,
        &format!("/api/v1/insights/trend?event=START&interval=week&{RANGE}"),
    );
    assert_eq!(
        series(&w, "count"),
        [28, 63],
        "weeks start on Monday: 26 Feb (1-3 March) and 4 March"
    );
    assert_eq!(w["series"][0]["t"], "2024-02-26T00:00:00.000Z");
    let h = admin_get(
        &c,
        "/api/v1/insights/trend?interval=hour&from=2024-03-07&to=2024-03-08",
    );
    let hours = series(&h, "count");
    assert_eq!(hours.len(), 24);
    assert_eq!((hours[10], hours[11], hours[12]), (9, 7, 9));
    let all = admin_get(
        &c,
        &format!("/api/v1/insights/trend?{RANGE}&interval=month"),
    );
    assert_eq!(series(&all, "count"), [total as u64]);

    // The k floor: Alpine runs on m9 alone, so a filter on it would be m9's activity.
    let alone = admin_get(
        &c,
        &format!("/api/v1/insights/trend?filter=host_os_name=Alpine&{RANGE}"),
    );
    assert_eq!(alone["series"], json!([]), "{alone}");
    assert_eq!(
        alone["folded"],
        json!({"reason": "the filter host_os_name=Alpine matches fewer than k=5 machines in this range", "k": 5})
    );
    // Debian runs on 6 machines, but the unfiltered trend less Debian's would be the 4
    // others: one of the two is folded.
    let f = admin_get(
        &c,
        &format!("/api/v1/insights/trend?event=START&filter=host_os_name=Debian&{RANGE}"),
    );
    assert_eq!(f["series"], json!([]), "{f}");
    assert_eq!(
        f["folded"]["reason"],
        "without the filter host_os_name=Debian the answer would add events of fewer than k=5 machines, so the two answers together would single them out"
    );
    // (m9 sent no cloud failures: the cloud page under that filter is empty, not folded.)
    for path in ["active", "crashes", "breakdown?property=product_version"] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let a = admin_get(
            &c,
            &format!("/api/v1/insights/{path}{sep}filter=host_os_name=Alpine&{RANGE}"),
        );
        assert_eq!(a["folded"], alone["folded"], "{path}: {a}");
        for list in ["series", "sites", "codes", "rows"] {
            assert!(a.get(list).is_none_or(|l| l == &json!([])), "{path}: {a}");
        }
    }

    let four = admin_get(
        &c,
        &format!(
            "/api/v1/insights/trend?filter=host_os_name=Debian&filter=product_version=2.0&filter=system_architecture=x86_64&filter=a=b&{RANGE}"
        ),
    );
    assert_eq!(
        four["folded"]["reason"],
        "at most 3 filters can be combined; this question has 4"
    );
    let doc = admin_get(&c, "/api/v1/openapi.json");
    assert_eq!(
        doc["components"]["schemas"]["Folded"]["required"],
        json!(["reason", "k"])
    );

    // Filters: two from the rollups, three from the raw events. Debian on 2.0 is m0-m4;
    // every 2.0 machine runs Debian, and Debian on 1.0 is 6 machines: no difference
    // isolates fewer than k.
    let f2 = admin_get(
        &c,
        &format!(
            "/api/v1/insights/trend?event=START&filter=host_os_name=Debian&filter=product_version=2.0&{RANGE}"
        ),
    );
    assert_eq!(series(&f2, "count"), [0, 0, 0, 0, 0, 5, 5, 5, 5, 5]);
    assert_eq!(f2["source"], "rollup");
    let f3 = admin_get(
        &c,
        &format!(
            "/api/v1/insights/trend?event=START&filter=host_os_name=Debian&filter=product_version=2.0&filter=system_architecture=x86_64&{RANGE}"
        ),
    );
    assert_eq!(series(&f3, "count"), series(&f2, "count"));
    assert_eq!(f3["source"], "events");

    // Active installs.
    let a = admin_get(&c, &format!("/api/v1/insights/active?{RANGE}"));
    assert_eq!(series(&a, "machines"), [9, 9, 10, 9, 9, 9, 9, 9, 9, 9]);
    let aw = admin_get(
        &c,
        &format!("/api/v1/insights/active?interval=week&{RANGE}"),
    );
    assert_eq!(series(&aw, "machines"), [10, 9]);
    let raw = sql_u64(&c, "SELECT 0, COUNT(DISTINCT distinct_id) FROM events");
    let am = admin_get(
        &c,
        &format!("/api/v1/insights/active?interval=month&{RANGE}"),
    );
    assert_eq!(series(&am, "machines"), raw);
    let af = admin_get(
        &c,
        &format!("/api/v1/insights/active?interval=week&filter=product_version=2.0&{RANGE}"),
    );
    assert_eq!(series(&af, "machines"), [0, 5]);

    // Breakdown with the k-anonymity floor (k = 5): Ubuntu (3) and Alpine (1) fold.
    let b = admin_get(
        &c,
        &format!("/api/v1/insights/breakdown?property=host_os_name&event=START&{RANGE}"),
    );
    assert_eq!(
        rows(&b),
        [("Debian".into(), 60, 6), ("other".into(), 31, 4)]
    );
    let raw = admin_sql(&c, "SELECT json_extract(properties, '$.host_os_name') AS os, COUNT(*), COUNT(DISTINCT distinct_id)
        FROM events WHERE event = 'START' GROUP BY os ORDER BY os");
    assert_eq!(
        raw,
        vec![
            vec![json!("Alpine"), json!(1), json!(1)],
            vec![json!("Debian"), json!(60), json!(6)],
            vec![json!("Ubuntu"), json!(30), json!(3)]
        ],
        "raw SQL is not folded"
    );
    let bf = admin_get(
        &c,
        &format!(
            "/api/v1/insights/breakdown?property=product_version&event=START&filter=host_os_name=Debian&{RANGE}"
        ),
    );
    assert_eq!(rows(&bf), []);
    assert_eq!(bf["folded"]["reason"], f["folded"]["reason"]);

    // Version adoption per week: shares of the week's machines.
    let v = admin_get(
        &c,
        &format!("/api/v1/insights/versions?interval=week&{RANGE}"),
    );
    let second = &v["series"][1];
    assert_eq!(second["machines"], 9);
    let shares: Vec<(String, u64)> = second["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["value"].as_str().unwrap().to_string(),
                x["machines"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shares, [("1.0".to_string(), 9), ("2.0".to_string(), 5)]);

    // System shares.
    let s = admin_get(&c, &format!("/api/v1/insights/systems?{RANGE}"));
    assert_eq!(s["properties"]["system_architecture"][0]["machines"], 10);
    assert_eq!(s["properties"]["system_architecture"][0]["share"], 1.0);
    let one = admin_get(
        &c,
        &format!("/api/v1/insights/systems?property=system_architecture&{RANGE}"),
    );
    let names: Vec<&String> = one["properties"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["system_architecture"]);
    assert_eq!(
        one["properties"]["system_architecture"],
        s["properties"]["system_architecture"]
    );
    let auth = format!("Bearer {}", c.admin_token);
    let bad = request(
        "GET",
        &c.url(&format!(
            "/api/v1/insights/systems?property=hostname&{RANGE}"
        )),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"hostname\" is not a system property")),
        "{}",
        bad.body
    );

    // Crash sites: the rare one is seen on one machine and folds.
    let cr = admin_get(&c, &format!("/api/v1/insights/crashes?{RANGE}"));
    let sites = cr["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    assert_eq!(
        (
            sites[0]["function"].as_str(),
            sites[0]["file"].as_str(),
            sites[0]["line"].as_str()
        ),
        (Some("f_main"), Some("main.c"), Some("10"))
    );
    assert_eq!(
        (sites[0]["count"].as_u64(), sites[0]["machines"].as_u64()),
        (Some(6), Some(6))
    );
    // m5 alone crashed on 1.0: its version folds.
    assert_eq!(sites[0]["versions"], json!(["2.0", "other"]));
    assert_eq!(
        admin_sql(
            &c,
            "SELECT json_extract(properties, '$.product_version'), COUNT(DISTINCT distinct_id) FROM events
             WHERE event = 'FATAL' AND json_extract(properties, '$.fatal_function') = 'f_main' GROUP BY 1 ORDER BY 1"
        ),
        vec![vec![json!("1.0"), json!(1)], vec![json!("2.0"), json!(5)]],
        "raw SQL stays unfolded"
    );
    assert_eq!(sites[0]["first_seen"], "2024-03-07T11:00:00.000Z");
    assert_eq!(sites[0]["last_seen"], "2024-03-07T11:00:05.000Z");
    assert_eq!(
        (sites[1]["function"].as_str(), sites[1]["count"].as_u64()),
        (Some("other"), Some(1))
    );

    // Cloud failures by code.
    let cl = admin_get(&c, &format!("/api/v1/insights/cloud?{RANGE}"));
    assert_eq!(
        series(
            &json!({"series": cl["events"]["CLOUD_CONNECT_FAIL"]}),
            "count"
        ),
        [0, 6, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        cl["codes"],
        json!([{"t": "2024-03-02T00:00:00.000Z", "code": "E42", "count": 6, "machines": 6}])
    );

    // Properties: distinct counts and k-safe examples.
    let p = admin_get(&c, &format!("/api/v1/properties?{RANGE}"));
    let os_prop = p["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "host_os_name")
        .unwrap();
    assert_eq!(os_prop["distinct_values"], 3);
    assert_eq!(os_prop["examples"], json!(["Debian"]));
}

#[test]
fn erasure_removes_a_machine_from_events_and_every_insight() {
    let c = Collector::start();
    load(&c);
    let auth = format!("Bearer {}", c.admin_token);
    let a = request(
        "DELETE",
        &c.url("/api/v1/machines/m0"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["deleted_events"], 22);
    assert_eq!(
        admin_sql(&c, "SELECT COUNT(*) FROM events WHERE distinct_id = 'm0'"),
        vec![vec![json!(0)]]
    );
    let t = admin_get(&c, &format!("/api/v1/insights/trend?event=START&{RANGE}"));
    assert_eq!(series(&t, "count"), [8, 8, 9, 8, 8, 8, 8, 8, 8, 8]);
    let a = admin_get(
        &c,
        &format!("/api/v1/insights/active?interval=week&{RANGE}"),
    );
    assert_eq!(series(&a, "machines"), [9, 8]);
    let cr = admin_get(&c, &format!("/api/v1/insights/crashes?{RANGE}"));
    assert_eq!(
        (
            cr["sites"][0]["count"].as_u64(),
            cr["sites"][0]["machines"].as_u64()
        ),
        (Some(5), Some(5))
    );
    // The CLI erases the same way, while the collector runs.
    let out = c.cli(&["erase", "--machine", "m1"]);
    assert!(out.contains("22"), "{out}");
    let cr = admin_get(&c, &format!("/api/v1/insights/crashes?{RANGE}"));
    assert_eq!(
        cr["sites"][0]["function"], "other",
        "4 machines left: under k, folded"
    );
}

#[test]
fn retention_purges_old_events_and_their_rollups() {
    let c = Collector::start_with(&["--retention-days", "30"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = |days_ago: i64| -> Value {
        let ts = now - days_ago * DAY;
        json!({"event": "START", "distinct_id": format!("d{days_ago}"), "timestamp": rfc3339(ts)})
    };
    let batch: Vec<Value> = [40, 35, 2, 1].iter().map(|d| at(*d)).collect();
    assert_eq!(
        post_json(
            &c.url("/batch/"),
            &json!({"api_key": c.write_token, "batch": batch})
        )
        .status,
        200
    );
    let mut c = c;
    // Retention runs at start: the restart applies it to what was just sent, a day at a
    // time (the two old events are on two days), so the count reaches 2 only once the
    // last of those days is gone.
    c.restart();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts = sql_u64(&c, "SELECT 0, COUNT(*) FROM events");
        if counts == [2] {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "retention left {counts:?} events"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Unfiltered: two machines are fewer than k, so `event=START` would be folded.
    let t = admin_get(&c, "/api/v1/insights/trend?interval=month&from=2000-01-01");
    assert_eq!(
        series(&t, "count").iter().sum::<u64>(),
        2,
        "rollups follow the raw events"
    );
    let a = admin_get(&c, "/api/v1/insights/active?interval=month&from=2000-01-01");
    assert_eq!(series(&a, "machines").iter().sum::<u64>(), 2);
}

/// RFC 3339 of Unix milliseconds, without a date library.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn ci_runs_are_left_out_unless_asked_for() {
    let c = Collector::start();
    load(&c);
    // Five CI runners start every day of the range.
    let ci: Vec<Value> = (0..10)
        .flat_map(|day| {
            (0..5).map(move |m| {
                json!({"event": "START", "distinct_id": format!("ci{m}"),
                    "timestamp": rfc3339(MAR1 + day * DAY + 8 * 3_600_000),
                    "properties": {"product_version": "3.0-ci", "is_ci": true}})
            })
        })
        .collect();
    let a = post_json(
        &c.url("/batch/"),
        &json!({"api_key": c.write_token, "batch": ci}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let trend = |extra: &str| {
        admin_get(
            &c,
            &format!("/api/v1/insights/trend?event=START&{RANGE}{extra}"),
        )
    };
    let t = trend("");
    assert_eq!(series(&t, "count"), [9, 9, 10, 9, 9, 9, 9, 9, 9, 9]);
    assert_eq!(t["source"], "rollup");
    let t = trend("&ci=exclude");
    assert_eq!(series(&t, "count"), [9, 9, 10, 9, 9, 9, 9, 9, 9, 9]);
    let t = trend("&ci=include");
    assert_eq!(
        series(&t, "count"),
        [14, 14, 15, 14, 14, 14, 14, 14, 14, 14]
    );
    assert_eq!(t["source"], "events");
    // A filter on is_ci asks for CI runs by name.
    let t = trend("&filter=is_ci=true");
    assert_eq!(series(&t, "count"), [5; 10]);
    let active = |extra: &str| {
        let a = admin_get(&c, &format!("/api/v1/insights/active?{RANGE}{extra}"));
        series(&a, "machines")
    };
    assert_eq!(active("")[2], 10);
    assert_eq!(active("&ci=include")[2], 15);
    let versions = |extra: &str| {
        let b = admin_get(
            &c,
            &format!("/api/v1/insights/breakdown?property=product_version&{RANGE}{extra}"),
        );
        rows(&b).into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    assert!(!versions("").contains(&"3.0-ci".to_string()));
    assert!(versions("&ci=include").contains(&"3.0-ci".to_string()));
    let auth = format!("Bearer {}", c.admin_token);
    let bad = request(
        "GET",
        &c.url(&format!("/api/v1/insights/trend?{RANGE}&ci=yes")),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.detail().contains("not one of include, exclude"),
        "{}",
        bad.detail()
    );
}
