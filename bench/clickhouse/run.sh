#!/usr/bin/env bash
# ClickHouse benchmark, on this machine, in one run:
#  1. ingest: events/s through the collector (`serve --store clickhouse://...`, 200 only after
#     ClickHouse confirmed the insert) beside a direct `INSERT ... FORMAT JSONEachRow` of the
#     same rows in batches of the same size (ClickHouse's own ceiling);
#  2. insights at N events: `anonstats gen` into the embedded store, `anonstats migrate` into
#     ClickHouse, then the latency of each insight through the admin API of a collector on
#     each store.
#
#   bench/clickhouse/run.sh                       # N=10000000 events, 100000 machines
#   N=1000000 MACHINES=20000 DURATION=10 bench/clickhouse/run.sh
#
# Needs a ClickHouse server: CH=http://127.0.0.1:18125 by default (scripts/clickhouse.sh
# start chsingle 18125 19005). Prints markdown; exits non-zero on any failed request or
# count mismatch.
set -euo pipefail
# A load generator is not a fleet: its few machines send far past the rate limits, which
# are off so that what is measured is the collector's capacity (their check still runs).
export ANONSTATS_PROJECT_EVENTS_PER_MINUTE=0 ANONSTATS_MACHINE_EVENTS_PER_MINUTE=0 \
    ANONSTATS_NEW_MACHINES_PER_MINUTE=0

cd "$(dirname "$0")/../.."
CH=${CH:-http://127.0.0.1:18125}
N=${N:-10000000}
MACHINES=${MACHINES:-100000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
BATCH=${BATCH:-100}
RUNS=${RUNS:-5}
WORK_PARENT=${WORK_PARENT:-/tmp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release

cargo build --release --quiet -p anonstats -p anonstats-bench-ingest

work=$(mktemp -d "$WORK_PARENT/anonstats-chbench.XXXXXX")
db_ingest=bench_ingest_$$
db_direct=bench_direct_$$
db_insights=bench_insights_$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "$db_ingest" "$db_direct" "$db_insights"; do
        curl -sf "$CH/" --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

q() { curl -sSf "$CH/?output_format_json_quote_64bit_integers=0" --data-binary "$1"; }
curl -sf "$CH/ping" >/dev/null || { echo "no ClickHouse at $CH" >&2; exit 1; }

addr_of() {
    local out=$1 i
    for i in $(seq 1 600); do
        if grep -q '^listening on http://' "$out"; then
            sed -n 's|^listening on http://||p' "$out" | head -n1
            return 0
        fi
        sleep 0.1
    done
    echo "server did not start:" >&2
    cat "$out" "$out.err" >&2 || true
    return 1
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ClickHouse $(q 'SELECT version()') at $CH"

# --- 1. ingest -------------------------------------------------------------------------
"$BIN/anonstats" serve --listen 127.0.0.1:0 --data-dir "$work/unused" \
    --store "clickhouse://${CH#http://}/$db_ingest" >"$work/ch.out" 2>"$work/ch.out.err" &
pids+=($!)
collector=$(addr_of "$work/ch.out")
token=$(sed -n 's/^write token: //p' "$work/unused/initial-tokens.txt")

a=$("$BIN/loadgen" --url "http://$collector/batch/" --token "$token" --batch "$BATCH" \
    --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --machines 10000)
b=$("$BIN/loadgen" --url "http://$collector/e/" --token "$token" --batch 1 \
    --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --machines 10000)
acked=$(( $(field acked_events "$a") + $(field acked_events "$b") ))
stored=$(q "SELECT count() FROM $db_ingest.events FINAL")

# The same rows, inserted directly: 10,000 rows per INSERT (the collector's batch size),
# two at a time (its two writers).
q "CREATE DATABASE $db_direct" >/dev/null
q "CREATE TABLE $db_direct.events AS $db_ingest.events" >/dev/null
q "SELECT * FROM $db_ingest.events FORMAT JSONEachRow" >"$work/rows.json"
rows=$(wc -l <"$work/rows.json")
split -l 10000 "$work/rows.json" "$work/chunk."
start=$(date +%s.%N)
ls "$work"/chunk.* | xargs -P 2 -I{} curl -sSf \
    "$CH/?query=INSERT%20INTO%20$db_direct.events%20FORMAT%20JSONEachRow" --data-binary @{} -o /dev/null
end=$(date +%s.%N)
direct_eps=$(awk -v n="$rows" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
rm -f "$work"/chunk.* "$work/rows.json"

echo
echo "### Ingest ($CONNECTIONS connections, $DURATION s after $WARMUP s warm-up)"
echo
echo "| path | events/s | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| collector \`/batch/\`, $BATCH events/request | $(field eps "$a") | $(field rps "$a") | $(field p50_ms "$a") | $(field p99_ms "$a") | $(field errors "$a") |"
echo "| collector \`/e/\`, 1 event/request | $(field eps "$b") | $(field rps "$b") | $(field p50_ms "$b") | $(field p99_ms "$b") | $(field errors "$b") |"
echo "| direct \`INSERT ... FORMAT JSONEachRow\`, 10k rows/insert, 2 at a time | $direct_eps | | | | 0 |"
echo
echo "acknowledged: $acked; in ClickHouse (FINAL): $stored"
if [[ "$acked" != "$stored" || "$(field errors "$a")" != 0 || "$(field errors "$b")" != 0 ]]; then
    echo "FAILED: errors, or stored != acknowledged" >&2
    exit 1
fi

# --- 2. insights at N events --------------------------------------------------------------
t0=$(date +%s)
"$BIN/anonstats" gen --data-dir "$work/sqlite" --events "$N" --machines "$MACHINES" --days 30 >"$work/gen.out"
t1=$(date +%s)
"$BIN/anonstats" migrate --from "$work/sqlite" --to "clickhouse://${CH#http://}/$db_insights" --quiet --batch 100000 | tee "$work/migrate.out" >&2
t2=$(date +%s)
q "OPTIMIZE TABLE $db_insights.events FINAL" >/dev/null || true
t3=$(date +%s)

"$BIN/anonstats" serve --listen 127.0.0.1:0 --data-dir "$work/sqlite" >"$work/s.out" 2>"$work/s.out.err" &
pids+=($!)
s_addr=$(addr_of "$work/s.out")
"$BIN/anonstats" serve --listen 127.0.0.1:0 --data-dir "$work/unused" \
    --store "clickhouse://${CH#http://}/$db_insights" >"$work/c.out" 2>"$work/c.out.err" &
pids+=($!)
c_addr=$(addr_of "$work/c.out")
# gen's first start made an admin token only if it printed one; make one for the bench.
admin=$("$BIN/anonstats" keys --data-dir "$work/sqlite" create-admin 2>/dev/null | grep -o 'aa_[0-9a-f]*' | head -n1)
# The ClickHouse store holds the hashes migrate copied; refresh them with this new token.
"$BIN/anonstats" migrate --from "$work/sqlite" --to "clickhouse://${CH#http://}/$db_insights" --quiet >/dev/null
sleep 0.5

# median of RUNS timings (ms) of GET $2 on $1
timed() {
    local addr=$1 path=$2 i
    for i in $(seq 1 "$RUNS"); do
        curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $admin" "http://$addr$path" ||
            { echo "FAILED: $path on $addr" >&2; exit 1; }
    done | sort -n | awk '{ a[NR] = $1 } END { printf "%.0f", 1000 * a[int((NR + 1) / 2)] }'
}

echo
echo "### Insights at $N events, $MACHINES machines, 30 days (median of $RUNS, ms)"
echo
echo "gen into SQLite: $((t1 - t0)) s; migrate into ClickHouse: $((t2 - t1)) s; OPTIMIZE FINAL: $((t3 - t2)) s"
echo
echo "| insight | SQLite | ClickHouse |"
echo "|---|---:|---:|"
for path in \
    "/api/v1/insights/trend?interval=day" \
    "/api/v1/insights/trend?interval=hour" \
    "/api/v1/insights/active?interval=day" \
    "/api/v1/insights/active?interval=month" \
    "/api/v1/insights/breakdown?property=product_version" \
    "/api/v1/insights/breakdown?property=host_os_name&filter=system_architecture=x86_64" \
    "/api/v1/insights/versions" \
    "/api/v1/insights/systems" \
    "/api/v1/insights/crashes" \
    "/api/v1/insights/cloud" \
    "/api/v1/properties" \
    "/api/v1/events/recent"; do
    echo "| \`$path\` | $(timed "$s_addr" "$path") | $(timed "$c_addr" "$path") |"
done
grep -E '^events in|counts' "$work/migrate.out"
