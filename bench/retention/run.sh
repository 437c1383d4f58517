#!/usr/bin/env bash
# Retention under load: starts the collector with --retention-days on a large data set (the
# one bench/insights/run.sh leaves in WORK) while single events keep arriving, and reports
# what capture answered meanwhile, 10 s at a time, and how long each day's purge held the
# write lock. The data set loses the days before the cutoff.
#
#   CARGO_TARGET_DIR=/work/target-insights WORK=/tmp/anonstats-insights DAYS=88 bench/retention/run.sh
#
# Environment: WORK [/tmp/anonstats-insights] (its data/), DAYS [88] retention in days,
# CONNECTIONS [4] senders.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/anonstats-insights}
DAYS=${DAYS:-88}
CONNECTIONS=${CONNECTIONS:-4}
DATA=$WORK/data
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --quiet -p anonstats -p anonstats-bench-ingest)
BIN=$CARGO_TARGET_DIR/release
[[ -f $DATA/anonstats.db ]] || { echo "no data set in $DATA (run bench/insights/run.sh first)" >&2; exit 1; }

token=$("$BIN/anonstats" keys create-write-key default --data-dir "$DATA" | tail -n 1)
log=$(mktemp)
ANONSTATS_LOG=info,anonstats_server::store::sqlite::erasure=debug \
  "$BIN/anonstats" serve --data-dir "$DATA" --listen 127.0.0.1:0 --retention-days "$DAYS" >"$log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q '^listening on' "$log" && break; sleep 0.1; done
url=$(sed -n 's|^listening on http://||p' "$log" | head -n 1)

echo "| seconds | requests | errors | p50 ms | p99 ms | max ms |"
echo "|---:|---:|---:|---:|---:|---:|"
t=0
# Until retention has run, and 10 s more.
while [[ $t -lt 20 ]] || ! grep -q -e 'retention ran' -e 'retention failed' "$log"; do
  line=$("$BIN/loadgen" --url "http://$url/e/" --token "$token" --batch 1 --connections "$CONNECTIONS" \
    --machines 1000 --duration 10 --warmup 0)
  t=$((t + 10))
  f() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
  echo "| $t | $(f requests) | $(f errors) | $(f p50_ms) | $(f p99_ms) | $(f max_ms) |"
done
echo
grep -o -e 'purged the days before.*' -e 'retention ran.*' -e 'retention failed.*' "$log"
