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

source "$(dirname "$0")/../under-load.sh"

sql() { "$BIN/anonstats" sql --data-dir "$DATA" --timeout-secs 600 --format csv "$1" | tail -n 1; }
machine=$(sql "SELECT distinct_id FROM events GROUP BY distinct_id ORDER BY COUNT(*) DESC LIMIT 1")
events=$(sql "SELECT COUNT(*) FROM events WHERE distinct_id = '$machine'")
days=$(sql "SELECT COUNT(DISTINCT ts_ms / 86400000) FROM events WHERE distinct_id = '$machine'")
echo "machine $machine: $events events on $days days"

admin=$("$BIN/anonstats" keys create-admin --data-dir "$DATA" | tail -n 1)
export ANONSTATS_LOG=${ANONSTATS_LOG:-info,anonstats_server::store::sqlite::rollup=debug}
serve_data

erase() {
  local start=$(date +%s.%N)
  curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $admin" \
    -H "Content-Type: application/json" \
    "http://$url/api/v1/machines/$machine" >"$log.status"
  echo "$(date +%s.%N) - $start" | bc >"$log.secs"
}
erase &
eraser=$!
echo
erasing() { kill -0 "$eraser" 2>/dev/null; }
send_while erasing
wait $eraser
echo
echo "DELETE answered $(cat "$log.status") after $(cat "$log.secs") s"
grep -o -e "planned an erasure.*" -e "erased a machine.*" -e "rollup rows of an erasure.*" "$log" | tail -n 3 || true
echo "left: $(sql "SELECT COUNT(*) FROM events WHERE distinct_id = '$machine'") events of $machine"
rm -f "$log.status" "$log.secs"
