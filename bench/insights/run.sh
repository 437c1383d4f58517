#!/usr/bin/env bash
# Insights at 10M events: generate the data set, report the store's and the rollups' sizes,
# time every insight through the admin API against DuckDB over a Parquet export of the same
# events (and check that the answers agree), then time the dashboard's Overview.
#
#   CARGO_TARGET_DIR=/work/target-insights bench/insights/run.sh
#
# Environment (defaults in brackets):
#   EVENTS [10000000] MACHINES [100000] DAYS [90] SEED [1]   what `anonstats gen` writes
#   WORK [/tmp/anonstats-insights]   data dir, Parquet file, logs and results.json
#   REUSE [0]      1: keep a data set (and export) that a previous run finished in WORK
#   ANONSTATS_BIN  use this binary instead of building one
#   RUNS [20]      API calls timed per insight (after 3 warm-up calls)
#   DUCK_RUNS [5]  DuckDB runs per query (after one warm-up run)
#   DUCK_TIMEOUT [120]  seconds after which a DuckDB query is interrupted
#   OVERVIEW_RUNS [7]   dashboard Overview loads (skipped without Chromium or node_modules)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=${EVENTS:-10000000}
MACHINES=${MACHINES:-100000}
DAYS=${DAYS:-90}
SEED=${SEED:-1}
WORK=${WORK:-/tmp/anonstats-insights}
REUSE=${REUSE:-0}
RUNS=${RUNS:-20}
DUCK_RUNS=${DUCK_RUNS:-5}
DUCK_TIMEOUT=${DUCK_TIMEOUT:-120}
OVERVIEW_RUNS=${OVERVIEW_RUNS:-7}
DUCKDB_VERSION=2.0.0

say() { printf '\n== %s\n' "$*"; }

if [[ -n ${ANONSTATS_BIN:-} ]]; then
  BIN=$ANONSTATS_BIN
else
  say "build (release)"
  (cd "$ROOT" && cargo build --release -p anonstats)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/anonstats
fi
mkdir -p "$WORK"
DATA=$WORK/data
PARQUET=$WORK/events.parquet

say "machine"
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(free -g | awk '/Mem:/ {print $2 " GiB RAM"}')"
echo "before: $(uptime)"

if [[ $REUSE == 1 && -f $WORK/gen.done ]]; then
  say "reusing the data set in $DATA"
  cat "$WORK/gen.done"
else
  say "gen: $EVENTS events, $MACHINES machines, $DAYS days, seed $SEED"
  rm -rf "$DATA" "$PARQUET" "$WORK/gen.done"
  echo "load before gen: $(uptime)"
  start=$(date +%s.%N)
  "$BIN" gen --data-dir "$DATA" --events "$EVENTS" --machines "$MACHINES" --days "$DAYS" --seed "$SEED" \
    2>&1 | tr '\r' '\n' | grep -v '▕' | tee "$WORK/gen.log"
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc)
  printf 'gen of %s events took %.0f s (%.0f events/s); load after: %s\n' "$EVENTS" "$secs" \
    "$(echo "$EVENTS / $secs" | bc -l)" "$(uptime)" | tee "$WORK/gen.done"
fi

say "sizes"
ls -l "$DATA"
du -sh "$DATA"
sql() { "$BIN" sql --data-dir "$DATA" --timeout-secs 600 --max-rows 100000 "$@"; }
sql "SELECT name, SUM(pgsize) AS bytes, COUNT(*) AS pages FROM dbstat GROUP BY name ORDER BY bytes DESC" \
  || echo "(dbstat not available)"
for t in events rollup_events rollup_props rollup_prop_machines rollup_machines rollup_pairs rollup_pair_spans rollup_machine_hours; do
  printf '%s rows: ' "$t"
  sql --format csv "SELECT COUNT(*) FROM $t" | tail -1
done
sql "SELECT (SELECT COUNT(*) FROM rollup_prop_machines WHERE substr(machines, 1, 1) = x'01') AS dense_sets,
            (SELECT COUNT(*) FROM rollup_prop_machines WHERE substr(machines, 1, 1) = x'00') AS exact_sets,
            (SELECT SUM(length(machines)) FROM rollup_prop_machines) AS set_bytes"

if [[ ! -s $PARQUET || $REUSE != 1 ]]; then
  say "export Parquet"
  start=$(date +%s.%N)
  "$BIN" export --data-dir "$DATA" --format parquet --output "$PARQUET" 2>&1 | tr '\r' '\n' | grep -v '▕' || true
  printf 'export took %.0f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
fi
ls -l "$PARQUET"

python3 -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION')" 2>/dev/null \
  || pip install --quiet "duckdb==$DUCKDB_VERSION"

TOKEN=$("$BIN" keys create-admin --data-dir "$DATA" | tail -1 | tr -d '[:space:]')
say "serve"
"$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
URL=
for _ in $(seq 1 600); do
  URL=$(grep -o 'listening on http://[^ ]*' "$WORK/serve.log" | sed 's/listening on //; s#/$##' || true)
  [[ -n $URL ]] && break
  kill -0 $SERVE 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.1
done
[[ -n $URL ]] || { echo "serve did not start"; cat "$WORK/serve.log"; exit 1; }
echo "$URL"

say "insights: API vs DuckDB over Parquet (load: $(uptime | sed 's/.*load average: //'))"
status=0
python3 "$ROOT/bench/insights/bench.py" --url "$URL" --token "$TOKEN" --parquet "$PARQUET" \
  --runs "$RUNS" --duck-runs "$DUCK_RUNS" --duck-timeout "$DUCK_TIMEOUT" --json "$WORK/results.json" || status=$?
echo "load after: $(uptime)"

say "dashboard Overview (range=30)"
if [[ -d $ROOT/tests/browser/node_modules/playwright-core && -x ${CHROMIUM_BIN:-/usr/bin/chromium} ]]; then
  node "$ROOT/bench/insights/overview.mjs" "$URL" "$TOKEN" "$OVERVIEW_RUNS" || status=$?
else
  echo "skipped: needs Chromium and tests/browser/node_modules (npm ci in tests/browser)"
fi
echo "load after: $(uptime)"
exit $status
