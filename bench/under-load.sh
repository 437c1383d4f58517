# Shared by bench/erasure and bench/retention, which source it: the large data set that
# bench/insights/run.sh leaves in WORK, the collector serving it, and single events sent
# to it meanwhile, 10 s at a time.
#
# Environment: WORK [/tmp/anonstats-insights] (its data/), CONNECTIONS [4] senders.
# Sets ROOT, DATA and BIN, after building.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/tmp/anonstats-insights}
CONNECTIONS=${CONNECTIONS:-4}
DATA=$WORK/data
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --quiet -p anonstats -p anonstats-bench-ingest)
BIN=$CARGO_TARGET_DIR/release
[[ -f $DATA/anonstats.db ]] || { echo "no data set in $DATA (run bench/insights/run.sh first)" >&2; exit 1; }

# Starts `anonstats serve` on DATA with these further arguments, its output in $log;
# sets serve (its pid), url, and token (a new write key of the default project).
serve_data() {
  token=$("$BIN/anonstats" keys create-write-key default --data-dir "$DATA" | tail -n 1)
  log=$(mktemp)
  "$BIN/anonstats" serve --data-dir "$DATA" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  serve=$!
  trap 'kill $serve 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 600); do grep -q '^listening on' "$log" && break; sleep 0.1; done
  url=$(sed -n 's|^listening on http://||p' "$log" | head -n 1)
}

# Sends single events for 10 s at a time as long as the command given succeeds, and
# prints what capture answered as a table row each time; t is the seconds so far.
send_while() {
  echo "| seconds | requests | errors | p50 ms | p99 ms | max ms |"
  echo "|---:|---:|---:|---:|---:|---:|"
  t=0
  while "$@"; do
    local line
    line=$("$BIN/loadgen" --url "http://$url/e/" --token "$token" --batch 1 \
      --connections "$CONNECTIONS" --machines 1000 --duration 10 --warmup 0)
    t=$((t + 10))
    f() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    echo "| $t | $(f requests) | $(f errors) | $(f p50_ms) | $(f p99_ms) | $(f max_ms) |"
  done
}
