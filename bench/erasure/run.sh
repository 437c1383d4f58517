#!/usr/bin/env bash
# Erasure under load: erases the machine with the most events from a large data set (the
# one bench/insights/run.sh leaves in WORK) while single events keep arriving, and
# reports how long the erasure took, how long it held the write lock, and what capture
# answered meanwhile, 10 s at a time. The data set loses that machine.
#
#   CARGO_TARGET_DIR=/work/target-insights WORK=/tmp/anonstats-insights bench/erasure/run.sh
#
# Environment: WORK [/tmp/anonstats-insights] (its data/), CONNECTIONS [4] senders.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/anonstats-insights}
CONNECTIONS=${CONNECTIONS:-4}
DATA=$WORK/data
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --quiet -p anonstats -p anonstats-bench-ingest)
BIN=$CARGO_TARGET_DIR/release
[[ -f $DATA/anonstats.db ]] || { echo "no data set in $DATA (run bench/insights/run.sh first)" >&2; exit 1; }

sql() { "$BIN/anonstats" sql --data-dir "$DATA" --timeout-secs 600 --format csv "$1" | tail -n 1; }
machine=$(sql "SELECT distinct_id FROM events GROUP BY distinct_id ORDER BY COUNT(*) DESC LIMIT 1")
events=$(sql "SELECT COUNT(*) FROM events WHERE distinct_id = '$machine'")
days=$(sql "SELECT COUNT(DISTINCT ts_ms / 86400000) FROM events WHERE distinct_id = '$machine'")
echo "machine $machine: $events events on $days days"

token=$("$BIN/anonstats" keys create-write-key default --data-dir "$DATA" | tail -n 1)
admin=$("$BIN/anonstats" keys create-admin --data-dir "$DATA" | tail -n 1)
log=$(mktemp)
ANONSTATS_LOG=${ANONSTATS_LOG:-info,anonstats_server::store::sqlite::rollup=debug} \
  "$BIN/anonstats" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q '^listening on' "$log" && break; sleep 0.1; done
url=$(sed -n 's|^listening on http://||p' "$log" | head -n 1)

erase() {
  local start=$(date +%s.%N)
  curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $admin" \
    "http://$url/api/v1/machines/$machine" >"$log.status"
  echo "$(date +%s.%N) - $start" | bc >"$log.secs"
}
erase &
eraser=$!
echo
echo "| seconds | requests | errors | p50 ms | p99 ms | max ms |"
echo "|---:|---:|---:|---:|---:|---:|"
t=0
while kill -0 $eraser 2>/dev/null; do
  line=$("$BIN/loadgen" --url "http://$url/e/" --token "$token" --batch 1 --connections "$CONNECTIONS" \
    --machines 1000 --duration 10 --warmup 0)
  t=$((t + 10))
  f() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
  echo "| $t | $(f requests) | $(f errors) | $(f p50_ms) | $(f p99_ms) | $(f max_ms) |"
done
wait $eraser
echo
echo "DELETE answered $(cat "$log.status") after $(cat "$log.secs") s"
grep -o -e "planned an erasure.*" -e "erased a machine.*" -e "rollup rows of an erasure.*" "$log" | tail -n 3 || true
echo "left: $(sql "SELECT COUNT(*) FROM events WHERE distinct_id = '$machine'") events of $machine"
rm -f "$log.status" "$log.secs"
