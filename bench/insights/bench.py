#!/usr/bin/env python3
"""Insight latency of a running collector against DuckDB over a Parquet export of the
same events, with a check that both give the same answers.

    bench.py --url http://127.0.0.1:9470 --token aa_... --parquet events.parquet \
             [--runs 20] [--duck-runs 5] [--json results.json]

For each insight and each range (the dashboard's default 30 days and 90 days), the API is
called `--warmup` times, then `--runs` times (median and p95 reported; 3 times when a
warm-up call took over --api-slow seconds); the DuckDB query that answers the same question
is run once to warm up, then `--duck-runs` times (median), unless the warm-up run alone took
longer than --duck-slow seconds (then that one run is reported); a DuckDB query still running
after --duck-timeout seconds is interrupted and reported as more than that. Counts must agree exactly; machine counts within the API's documented accuracy
(exact up to 512 machines per bucket, HyperLogLog above: typical error 1.6%, flagged
beyond --tolerance, by default four times that: over thousands of buckets, some land
three standard errors off).
"""
import argparse
import datetime as dt
import threading
import http.client
import json
import statistics
import sys
import time
import urllib.parse

import duckdb

# Properties the collector never rolls up (unique per event) and its derived crash site.
PER_EVENT = {"$insert_id", "$time", "$timestamp", "$sent_at", "$uuid", "uuid", "timestamp",
             "distinct_id", "$distinct_id", "fatal_message", "action_data"}
SYSTEM_PROPERTIES = ["host_os_name", "host_os_id", "system_kernel_name", "system_kernel_version",
                     "system_architecture", "system_virtualization", "system_container"]
CLOUD_EVENTS = ["CLOUD_BUILD_FAIL", "CLOUD_UNAVAILABLE", "CLOUD_CONNECT_FAIL"]
DAY_MS = 86_400_000
OTHER = "other"


def iso(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Api:
    def __init__(self, url, token):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def get(self, path, params):
        q = urllib.parse.urlencode(params, doseq=True)
        t0 = time.perf_counter()
        self.conn.request("GET", f"/api/v1/{path}?{q}", headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            raise SystemExit(f"GET {path}?{q}: {r.status} {body[:300]!r}")
        return json.loads(body), ms


class Checker:
    def __init__(self, tolerance):
        self.tolerance = tolerance
        self.problems = []
        self.max_err = 0.0
        self.compared = 0

    def count(self, what, api, duck):
        self.compared += 1
        if api != duck:
            self.problems.append(f"{what}: count API {api} != DuckDB {duck}")

    def machines(self, what, api, duck):
        self.compared += 1
        if duck <= 512:
            if api != duck:
                self.problems.append(f"{what}: machines API {api} != DuckDB {duck} (exact below 513)")
            return
        err = abs(api - duck) / duck
        self.max_err = max(self.max_err, err)
        if err > self.tolerance:
            self.problems.append(f"{what}: machines API {api} vs DuckDB {duck} ({err:.2%})")

    def missing(self, what):
        self.problems.append(what)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--parquet", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--duck-runs", type=int, default=5)
    ap.add_argument("--duck-slow", type=float, default=5.0)
    ap.add_argument("--duck-timeout", type=float, default=120.0,
                    help="interrupt a DuckDB query after this many seconds (reported as '>')")
    ap.add_argument("--api-slow", type=float, default=1.0,
                    help="an insight whose warm-up call took longer than this many seconds is timed 3 times")
    ap.add_argument("--tolerance", type=float, default=0.065)
    ap.add_argument("--today", help="UTC date the ranges end with (default: today)")
    ap.add_argument("--only", help="comma-separated insight names")
    ap.add_argument("--ranges", default="30,90")
    ap.add_argument("--api-only", action="store_true", help="time the API only (no DuckDB, no check)")
    ap.add_argument("--json")
    args = ap.parse_args()

    api = Api(args.url, args.token)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET enable_progress_bar = false")
    db.execute(f"CREATE VIEW ev AS SELECT event, distinct_id, epoch_ms(timestamp) AS ts, properties "
               f"FROM read_parquet('{args.parquet}')")
    t0 = time.perf_counter()
    total = db.execute("SELECT count(*), sum(length(properties)) FROM ev").fetchone()[0]
    print(f"DuckDB {duckdb.__version__}: {total} events in {args.parquet} "
          f"(first full read {time.perf_counter() - t0:.1f} s)", flush=True)

    today = dt.date.fromisoformat(args.today) if args.today else dt.datetime.now(dt.timezone.utc).date()
    results = []
    checker = Checker(args.tolerance)

    def timed(fn):
        """Runs fn() under the DuckDB timeout: (rows or None when interrupted, ms)."""
        timer = threading.Timer(args.duck_timeout, db.interrupt)
        timer.start()
        t = time.perf_counter()
        try:
            rows = fn()
        except duckdb.InterruptException:
            rows = None
        finally:
            timer.cancel()
        return rows, (time.perf_counter() - t) * 1000

    def duck(fn):
        rows, first = timed(fn)
        if rows is None or first > args.duck_slow * 1000:
            return rows, [first]
        times = []
        for _ in range(args.duck_runs):
            rows, ms = timed(fn)
            times.append(ms)
        return rows, times

    for days in [int(x) for x in args.ranges.split(",")]:
        frm = today - dt.timedelta(days=days - 1)
        to = today + dt.timedelta(days=1)
        from_ms = int(dt.datetime(frm.year, frm.month, frm.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
        to_ms = int(dt.datetime(to.year, to.month, to.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
        rng = {"from": frm.isoformat(), "to": to.isoformat()}
        where = "ts >= $from AND ts < $to"
        p = {"from": from_ms, "to": to_ms}
        day_b = "(ts // 86400000) * 86400000"
        # Weeks start on Monday (1970-01-01 was a Thursday), as the API's buckets.
        week_b = "((ts // 86400000) - ((ts // 86400000) + 3) % 7) * 86400000"

        def series_check(name, api_series, field, duck_rows, kind):
            got = {r[0]: r[1] for r in duck_rows}
            for pt in api_series:
                t = int(dt.datetime.fromisoformat(pt["t"].replace("Z", "+00:00")).timestamp() * 1000)
                d = got.pop(t, 0)
                (checker.count if kind == "count" else checker.machines)(f"{name} [{days}d] {pt['t']}", pt[field], d)
            for t, v in got.items():
                checker.missing(f"{name} [{days}d]: DuckDB bucket {iso(t)} ({v}) not in the API's series")

        def groups_check(name, api_rows, duck_rows, value_key="value"):
            # API rows are k-folded (top N with >= k machines, the rest as "other");
            # compare each named row, and the total of all rows.
            got = {r[0]: (r[1], r[2]) for r in duck_rows if r[0] is not None}
            for row in api_rows:
                v = row[value_key]
                if v == OTHER and v not in got:
                    continue
                if v not in got:
                    checker.missing(f"{name} [{days}d]: value {v!r} not in DuckDB's answer")
                    continue
                c, m = got[v]
                checker.count(f"{name} [{days}d] {v!r}", row["count"], c)
                checker.machines(f"{name} [{days}d] {v!r}", row["machines"], m)
            checker.count(f"{name} [{days}d] total", sum(r["count"] for r in api_rows),
                          sum(r[1] for r in duck_rows if r[0] is not None))

        def insight_trend(params, event, flt):
            sql = f"SELECT {day_b} b, count(*) FROM ev WHERE {where} AND event = $event"
            prm = dict(p, event=event)
            if flt:
                sql += " AND json_extract_string(properties, '$.' || $prop) = $value"
                prm.update(prop=flt[0], value=flt[1])
            return sql + " GROUP BY b", prm

        def check_trend(name):
            def f(api_json, rows):
                series_check(name, api_json["series"], "count", rows, "count")
            return f

        cases = []
        sql, prm = insight_trend(None, "START", None)
        cases.append(("trend", "trend, day, event=START", "insights/trend",
                      dict(rng, interval="day", event="START"), sql, prm, check_trend("trend")))
        sql, prm = insight_trend(None, "START", ("host_os_name", "Ubuntu"))
        cases.append(("trend_filter", "trend, day, event=START, filter host_os_name=Ubuntu", "insights/trend",
                      dict(rng, interval="day", event="START", filter="host_os_name=Ubuntu"), sql, prm,
                      check_trend("trend+filter")))

        sql = (f"SELECT v, count(*), count(DISTINCT distinct_id) FROM "
               f"(SELECT json_extract_string(properties, '$.host_os_name') v, distinct_id FROM ev WHERE {where}) "
               f"GROUP BY v")
        cases.append(("breakdown", "breakdown of host_os_name", "insights/breakdown",
                      dict(rng, property="host_os_name"), sql, p,
                      lambda a, rows: groups_check("breakdown", a["rows"], rows)))

        # Under filters: from the pair rollups.
        x86 = "json_extract_string(properties, '$.system_architecture') = 'x86_64'"
        sql = (f"SELECT {day_b} b, count(*) FROM ev WHERE {where} AND {x86} "
               f"AND json_extract_string(properties, '$.host_os_name') = 'Ubuntu' GROUP BY b")
        cases.append(("trend_two_filters", "trend, day, filters host_os_name, architecture", "insights/trend",
                      dict(rng, interval="day", filter=["host_os_name=Ubuntu", "system_architecture=x86_64"]),
                      sql, p, check_trend("trend+2 filters")))
        sql = (f"SELECT v, count(*), count(DISTINCT distinct_id) FROM "
               f"(SELECT json_extract_string(properties, '$.host_os_name') v, distinct_id FROM ev "
               f"WHERE {where} AND {x86}) GROUP BY v")
        cases.append(("breakdown_filter", "breakdown of host_os_name, filter architecture",
                      "insights/breakdown", dict(rng, property="host_os_name", filter="system_architecture=x86_64"),
                      sql, p, lambda a, rows: groups_check("breakdown+filter", a["rows"], rows)))
        sql = (f"SELECT v, count(*), count(DISTINCT distinct_id) FROM "
               f"(SELECT json_extract_string(properties, '$.system_kernel_version') v, distinct_id FROM ev "
               f"WHERE {where} AND {x86}) GROUP BY v")
        cases.append(("breakdown_kernel_filter", "breakdown of system_kernel_version, filter architecture",
                      "insights/breakdown",
                      dict(rng, property="system_kernel_version", filter="system_architecture=x86_64"),
                      sql, p, lambda a, rows: groups_check("breakdown kernel+filter", a["rows"], rows)))
        hour_b = "(ts // 3600000) * 3600000"
        for interval, b in (("hour", hour_b), ("day", day_b), ("week", week_b)):
            sql = f"SELECT {b} b, count(DISTINCT distinct_id) FROM ev WHERE {where} GROUP BY b"
            cases.append((f"active_{interval}", f"active machines, {interval}", "insights/active",
                          dict(rng, interval=interval), sql, p,
                          (lambda n: lambda a, rows: series_check(n, a["series"], "machines", rows, "machines"))(
                              f"active/{interval}")))

        # versions: per week, machines on each product_version and all machines.
        sql = (f"SELECT b, v, count(*), count(DISTINCT distinct_id) FROM "
               f"(SELECT {week_b} b, json_extract_string(properties, '$.product_version') v, distinct_id "
               f"FROM ev WHERE {where}) GROUP BY GROUPING SETS ((b, v), (b))")

        def check_versions(a, rows):
            totals = [(r[0], r[3]) for r in rows if r[1] is None]
            series_check("versions/machines", a["series"], "machines", totals, "machines")
            for pt in a["series"]:
                t = int(dt.datetime.fromisoformat(pt["t"].replace("Z", "+00:00")).timestamp() * 1000)
                groups_check(f"versions {pt['t']}", pt["values"],
                             [(r[1], r[2], r[3]) for r in rows if r[0] == t and r[1] is not None])
        cases.append(("versions", "versions, week", "insights/versions", dict(rng, interval="week"),
                      sql, p, check_versions))

        cols = ", ".join(f"json_extract_string(properties, '$.{k}') AS {k}" for k in SYSTEM_PROPERTIES)
        sets = ", ".join(f"({k})" for k in SYSTEM_PROPERTIES)
        sel = ", ".join(f"GROUPING({k}) = 0" for k in SYSTEM_PROPERTIES)
        sql = (f"SELECT [{sel}] AS which, [{', '.join(SYSTEM_PROPERTIES)}] AS vals, count(*), "
               f"count(DISTINCT distinct_id) FROM (SELECT {cols}, distinct_id FROM ev WHERE {where}) "
               f"GROUP BY GROUPING SETS ({sets})")

        def check_systems(a, rows):
            for i, prop in enumerate(SYSTEM_PROPERTIES):
                mine = [(r[1][i], r[2], r[3]) for r in rows if r[0][i]]
                groups_check(f"systems/{prop}", a["properties"][prop], mine)
        cases.append(("systems", "systems (7 breakdowns)", "insights/systems", rng, sql, p, check_systems))

        sql = (f"SELECT f, fi, l, count(*), count(DISTINCT distinct_id), min(ts), max(ts), list(DISTINCT pv) "
               f"FROM (SELECT coalesce(json_extract_string(properties, '$.fatal_function'), '') f, "
               f"coalesce(json_extract_string(properties, '$.fatal_file'), '') fi, "
               f"coalesce(json_extract_string(properties, '$.fatal_line'), '') l, "
               f"coalesce(json_extract_string(properties, '$.product_version'), '') pv, distinct_id, ts "
               f"FROM ev WHERE {where} AND event = 'FATAL') GROUP BY f, fi, l")

        def check_crashes(a, rows):
            got = {(r[0], r[1], r[2]): r for r in rows}
            for s in a["sites"]:
                key = (s["function"], s["file"], s["line"])
                if s["function"] == OTHER and key not in got:
                    continue
                r = got.get(key)
                if not r:
                    checker.missing(f"crashes [{days}d]: site {key} not in DuckDB's answer")
                    continue
                checker.count(f"crashes [{days}d] {key}", s["count"], r[3])
                checker.machines(f"crashes [{days}d] {key}", s["machines"], r[4])
                checker.count(f"crashes [{days}d] {key} first_seen", s["first_seen"], iso(r[5]))
                checker.count(f"crashes [{days}d] {key} last_seen", s["last_seen"], iso(r[6]))
                checker.count(f"crashes [{days}d] {key} versions", sorted(s["versions"]), sorted(r[7]))
            checker.count(f"crashes [{days}d] total", sum(s["count"] for s in a["sites"]), sum(r[3] for r in rows))
        cases.append(("crashes", "crash sites", "insights/crashes", rng, sql, p, check_crashes))
        cases.append(("crashes_filter", "crash sites, filter architecture", "insights/crashes",
                      dict(rng, filter="system_architecture=x86_64"),
                      sql.replace("AND event = 'FATAL')", f"AND event = 'FATAL' AND {x86})"), p,
                      check_crashes))

        sql = (f"SELECT b, event, json_extract_string(properties, '$.error_code') code, count(*), "
               f"count(DISTINCT distinct_id) FROM (SELECT {day_b} b, event, properties, distinct_id FROM ev "
               f"WHERE {where} AND event IN ('CLOUD_BUILD_FAIL', 'CLOUD_UNAVAILABLE', 'CLOUD_CONNECT_FAIL')) "
               f"GROUP BY GROUPING SETS ((b, event), (b, code))")

        def check_cloud(a, rows):
            for e in CLOUD_EVENTS:
                series_check(f"cloud/{e}", a["events"][e], "count",
                             [(r[0], r[3]) for r in rows if r[1] == e], "count")
            by_t = {}
            for c in a["codes"]:
                by_t.setdefault(c["t"], []).append(dict(c, value=c["code"]))
            for t, api_rows in by_t.items():
                ms = int(dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
                groups_check(f"cloud codes {t}", api_rows,
                             [(r[2], r[3], r[4]) for r in rows if r[0] == ms and r[1] is None])
        cases.append(("cloud", "cloud (3 trends + error codes by day)", "insights/cloud",
                      dict(rng, interval="day"), sql, p, check_cloud))
        cases.append(("cloud_filter", "cloud, filter architecture", "insights/cloud",
                      dict(rng, interval="day", filter="system_architecture=x86_64"),
                      sql.replace("'CLOUD_CONNECT_FAIL'))", f"'CLOUD_CONNECT_FAIL') AND {x86})"), p,
                      check_cloud))

        # properties: every property's number of distinct values and of events. DuckDB
        # must first learn the keys (a scan of json_keys), then extract them all.
        def properties_sql():
            keys = [r[0] for r in db.execute(
                "SELECT DISTINCT unnest(json_keys(properties)) FROM ev").fetchall()]
            keys = sorted(k for k in keys if k not in PER_EVENT)
            paths = ", ".join("'$.\"" + k.replace("'", "''") + "\"'" for k in keys)
            names = ", ".join("'" + k.replace("'", "''") + "'" for k in keys)
            return (f"SELECT k, count(DISTINCT v), count(v) FROM (SELECT unnest([{names}]) k, "
                    f"unnest(json_extract_string(properties, [{paths}])) v FROM ev WHERE {where}) "
                    f"WHERE length(v) <= 200 GROUP BY k")

        def check_properties(a, rows):
            got = {r[0]: r for r in rows if r[2] > 0}
            for prop in a["properties"]:
                r = got.pop(prop["name"], None)
                if not r:
                    checker.missing(f"properties [{days}d]: {prop['name']} not in DuckDB's answer")
                    continue
                checker.count(f"properties [{days}d] {prop['name']} distinct values", prop["distinct_values"], r[1])
                checker.count(f"properties [{days}d] {prop['name']} events", prop["events"], r[2])
            for name in got:
                checker.missing(f"properties [{days}d]: DuckDB has {name}, the API not")
        cases.append(("properties", "properties (names, distinct values, events)", "properties", rng,
                      properties_sql, p, check_properties))

        only = set(args.only.split(",")) if args.only else None
        for key, label, path, params, sql, prm, check in cases:
            if only and key not in only:
                continue
            slow = False
            for _ in range(args.warmup):
                _, ms = api.get(path, params)
                if ms > args.api_slow * 1000:
                    slow = True
                    break
            api_times = []
            for _ in range(min(args.runs, 3) if slow else args.runs):
                body, ms = api.get(path, params)
                api_times.append(ms)
            if args.api_only:
                rows, dtimes = None, [float("nan")]
            elif callable(sql):
                # Key discovery is part of the DuckDB answer: timed with the query.
                rows, dtimes = duck(lambda: db.execute(sql(), prm).fetchall())
            else:
                rows, dtimes = duck(lambda: db.execute(sql, prm).fetchall())
            interrupted = rows is None and not args.api_only
            before = len(checker.problems)
            if rows is not None:
                check(body, rows)
            res = {
                "insight": key, "label": label, "days": days, "path": path, "params": params,
                "api_median_ms": statistics.median(api_times), "api_p95_ms": pct(api_times, 95),
                "api_runs": len(api_times), "source": body.get("source"),
                "duck_median_ms": statistics.median(dtimes), "duck_runs": len(dtimes),
                "duck_interrupted": interrupted,
                "disagreements": len(checker.problems) - before,
            }
            results.append(res)
            print(f"{days:>3}d {label:<52} API median {res['api_median_ms']:8.1f} ms  p95 {res['api_p95_ms']:8.1f} ms"
                  f"   DuckDB median {'>' if interrupted else ' '}{res['duck_median_ms']:9.1f} ms ({len(dtimes)} run{'s' if len(dtimes) > 1 else ''})"
                  f"   disagreements {res['disagreements']}", flush=True)

    print(f"\ncompared {checker.compared} numbers; largest machine-count error above 512: {checker.max_err:.2%}")
    if checker.problems:
        print(f"{len(checker.problems)} disagreements:")
        for p_ in checker.problems[:200]:
            print("  " + p_)
    else:
        print("no disagreement")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "problems": checker.problems, "max_machine_error": checker.max_err,
                       "compared": checker.compared, "events": total, "duckdb": duckdb.__version__}, f, indent=1)
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
