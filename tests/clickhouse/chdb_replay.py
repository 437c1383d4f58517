#!/usr/bin/env python3
"""Replays the SQL log of the ClickHouse store in chdb (a current ClickHouse, in process).

The store, run against Debian's ClickHouse 18.16 with a SQL log, records every statement
it sent and the answer of every read. This script sends the same statements, in the same
order, to chdb and checks that every read answers the same. So the schema, the inserts,
the mutations and every insight query are shown to work, with equal results, on 18.16
and on a current release.

Usage: chdb_replay.py SQL_LOG.jsonl
"""

import json
import sys
import time

from chdb import session


def normalize(value):
    """Arrays whose order ClickHouse does not define (groupUniqArray) compare sorted."""
    if isinstance(value, list):
        items = [normalize(v) for v in value]
        try:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        except TypeError:
            return items
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    return value


def parse(sql, text):
    text = text.strip()
    if not text:
        return []
    if sql.rstrip().endswith("FORMAT JSONCompact"):
        doc = json.loads(text)
        return {"columns": [m["name"] for m in doc["meta"]], "data": normalize(doc["data"])}
    rows = [normalize(json.loads(line)) for line in text.splitlines() if line.strip()]
    return rows


def wait_mutations(s):
    deadline = time.time() + 60
    while time.time() < deadline:
        left = str(s.query("SELECT count() FROM system.mutations WHERE is_done = 0", "CSV")).strip()
        if left == "0":
            return
        time.sleep(0.05)
    raise SystemExit("chdb: mutations did not finish within 60 s")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    s = session.Session()
    counts = {"ddl": 0, "insert": 0, "select": 0, "mutation": 0, "poll": 0}
    failures = []
    with open(sys.argv[1], encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    for i, e in enumerate(entries):
        kind, sql = e["kind"], e["sql"]
        counts[kind] = counts.get(kind, 0) + 1
        try:
            got = str(s.query(sql))
        except Exception as err:  # noqa: BLE001 - report every failing statement
            failures.append(f"#{i} {kind} failed in chdb: {err}\n  {sql[:300]}")
            continue
        if kind == "mutation":
            wait_mutations(s)
        if kind == "select" and e.get("result") is not None:
            want = parse(sql, e["result"])
            have = parse(sql, got)
            if want != have:
                failures.append(
                    f"#{i} answers differ\n  sql: {sql[:400]}\n  18.16: {str(want)[:600]}\n  chdb:  {str(have)[:600]}"
                )
    version = str(s.query("SELECT version()", "CSV")).strip()
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    if failures:
        print(f"chdb {version}: {len(failures)} of {len(entries)} statements failed or differ")
        print("\n".join(failures[:20]))
        sys.exit(1)
    print(f"chdb {version}: replayed {len(entries)} statements ({summary}); every answer equals 18.16's")


if __name__ == "__main__":
    main()
