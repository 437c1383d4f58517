#!/usr/bin/env bash
# Ingest benchmark: the real collector (SQLite WAL, 200 only after the commit is synced)
# against a bare axum handler, and against that handler made durable (each body appended
# to a file and synced before the answer), on this machine, in one run.
#
#   bench/ingest/run.sh            # 10 s per scenario after 2 s of warm-up
#   DURATION=20 CONNECTIONS=128 MACHINES=100000 bench/ingest/run.sh
#
# Prints a markdown table. Exits non-zero when any request failed or when the number of
# events the collector stored differs from the number it acknowledged.
set -euo pipefail
# A load generator is not a fleet: its few machines send far past the rate limits, which
# are off so that what is measured is the collector's capacity (their check still runs).
export ANONSTATS_PROJECT_EVENTS_PER_MINUTE=0 ANONSTATS_MACHINE_EVENTS_PER_MINUTE=0 \
    ANONSTATS_NEW_MACHINES_PER_MINUTE=0

cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
# Worker threads of the load generator: the client gets at most this many cores, the
# same for every target.
CLIENT_THREADS=${CLIENT_THREADS:-1}
BATCH=${BATCH:-100}
# Distinct machines the events come from.
MACHINES=${MACHINES:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# ANONSTATS_BENCH_BIN: a directory of binaries built elsewhere (anonstats, loadgen, ...),
# to measure another build, e.g. before and after a change.
BIN=${ANONSTATS_BENCH_BIN:-$CARGO_TARGET_DIR/release}
[[ -n ${ANONSTATS_BENCH_BIN:-} ]] || cargo build --release --quiet -p anonstats -p anonstats-bench-ingest

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for "listening on http://ADDR" in a server's stdout and prints ADDR.
addr_of() {
    local out=$1 i
    for i in $(seq 1 100); do
        if grep -q '^listening on http://' "$out"; then
            sed -n 's|^listening on http://||p' "$out" | head -n1
            return 0
        fi
        sleep 0.1
    done
    echo "server did not start; its output:" >&2
    cat "$out" "$out.err" >&2 || true
    return 1
}

# CPU seconds (user + system) a process has used.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

"$BIN/anonstats" serve --data-dir "$work/data" --listen 127.0.0.1:0 \
    >"$work/collector.out" 2>"$work/collector.out.err" &
collector_pid=$!
pids+=("$collector_pid")
collector=$(addr_of "$work/collector.out")
token=$(sed -n 's/^write token: //p' "$work/data/initial-tokens.txt")
admin=$(sed -n 's/^admin token: //p' "$work/data/initial-tokens.txt")

"$BIN/bare" --listen 127.0.0.1:0 >"$work/bare.out" 2>"$work/bare.out.err" &
bare_pid=$!
pids+=("$bare_pid")
bare=$(addr_of "$work/bare.out")

# The floor of any durable acknowledgement: the same handler, answering once the body is
# appended to a file and synced, with group commit.
mkdir "$work/durable"
"$BIN/bare" --listen 127.0.0.1:0 --durable "$work/durable" >"$work/durable.out" 2>"$work/durable.out.err" &
durable_pid=$!
pids+=("$durable_pid")
durable=$(addr_of "$work/durable.out")

# Runs one scenario; prints the loadgen line with the server's CPU use appended.
scenario() {
    local pid=$1 url=$2 batch=$3 before after line
    before=$(cpu_of "$pid")
    line=$("$BIN/loadgen" --url "$url" --token "$token" --batch "$batch" \
        --connections "$CONNECTIONS" --threads "$CLIENT_THREADS" --machines "$MACHINES" \
        --duration "$DURATION" --warmup "$WARMUP")
    after=$(cpu_of "$pid")
    echo "$line server_cpu_pct=$(awk -v a="$after" -v b="$before" -v d="$DURATION" -v w="$WARMUP" \
        'BEGIN { printf "%.0f", 100 * (a - b) / (d + w) }')"
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

load=$(cut -d' ' -f1-3 /proc/loadavg)
fsync=$("$BIN/fsyncprobe" "$work")
a=$(scenario "$collector_pid" "http://$collector/batch/" "$BATCH")
b=$(scenario "$collector_pid" "http://$collector/e/" 1)
c=$(scenario "$bare_pid" "http://$bare/e/" 1)
d=$(scenario "$durable_pid" "http://$durable/e/" 1)

acked=$(( $(field acked_events "$a") + $(field acked_events "$b") ))
metric=$(curl -sf -H "Authorization: Bearer $admin" "http://$collector/metrics" | sed -n 's/^anonstats_events_total{result="stored"} //p')
exported=$("$BIN/anonstats" export --data-dir "$work/data" --format ndjson | wc -l)
errors=$(( $(field errors "$a") + $(field errors "$b") + $(field errors "$c") + $(field errors "$d") ))

percent_of_bare() { awk -v x="$(field rps "$1")" -v y="$(field rps "$c")" 'BEGIN { printf "%.0f", 100 * x / y }'; }

row() {
    local name=$1 line=$2
    printf '| %s | %s | %s | %s | %s | %s | %s | %s%% | %s%% |\n' "$name" \
        "$(field requests "$line")" "$(field rps "$line")" "$(field eps "$line")" \
        "$(field p50_ms "$line")" "$(field p99_ms "$line")" "$(field errors "$line")" \
        "$(field server_cpu_pct "$line")" "$(field client_cpu_pct "$line")"
}

echo
echo "$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); load average before: $load"
echo "fdatasync of a 4 KiB append in the data dir's file system: p50 $(field fsync_p50_ms "$fsync") ms, p99 $(field fsync_p99_ms "$fsync") ms"
echo "${CONNECTIONS} connections, ${CLIENT_THREADS} client thread(s), ${MACHINES} machines, ${DURATION} s measured after ${WARMUP} s warm-up"
echo
echo "| scenario | requests | requests/s | events/s | p50 ms | p99 ms | errors | server CPU | client CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
row "(a) collector \`/batch/\`, $BATCH events/request" "$a"
row "(b) collector \`/e/\`, 1 event/request" "$b"
row "(c) bare axum \`/e/\`, 1 event/request" "$c"
row "(d) bare axum \`/e/\`, body appended to a file and synced" "$d"
echo
echo "single-event requests/s, collector vs bare: $(percent_of_bare "$b")%"
echo "single-event requests/s, durable bare vs bare: $(percent_of_bare "$d")%"
echo "acknowledged events: $acked; stored (/metrics): $metric; exported: $exported"

if [[ "$errors" != 0 || "$acked" != "$metric" || "$acked" != "$exported" ]]; then
    echo "FAILED: errors or stored != acknowledged" >&2
    exit 1
fi
