#!/usr/bin/env python3
"""Markdown table of a results.json written by bench.py: one row per insight, both ranges."""
import json
import sys

GOAL_MS = 50
r = json.load(open(sys.argv[1]))
rows = {}
for x in r["results"]:
    rows.setdefault(x["label"], {})[x["days"]] = x


def cell(x):
    duck = f"{'>' if x['duck_interrupted'] else ''}{x['duck_median_ms']:,.0f}"
    if x["duck_runs"] == 1:
        duck += " (1 run)"
    api = f"{x['api_median_ms']:,.1f} / {x['api_p95_ms']:,.1f}"
    if x["api_runs"] < 20:
        api += f" ({x['api_runs']} runs)"
    met = "yes" if x["api_median_ms"] < GOAL_MS and x["api_median_ms"] < x["duck_median_ms"] else (
        "no" if x["api_median_ms"] >= x["duck_median_ms"] else "no (> 50 ms)")
    return api, duck, met


print("| insight | 30 d: anonstats median / p95 ms | 30 d: DuckDB median ms | 90 d: anonstats median / p95 ms | 90 d: DuckDB median ms | goal met (30 d / 90 d) |")
print("|---|---:|---:|---:|---:|---|")
for label, by in rows.items():
    a = cell(by[30]) if 30 in by else ("", "", "")
    b = cell(by[90]) if 90 in by else ("", "", "")
    print(f"| {label} | {a[0]} | {a[1]} | {b[0]} | {b[1]} | {a[2]} / {b[2]} |")
print()
print(f"{r['events']} events; {r['compared']} numbers compared, {len(r['problems'])} disagreements; "
      f"largest machine-count error above 512 machines: {r['max_machine_error']:.2%}")
