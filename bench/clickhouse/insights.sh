#!/usr/bin/env bash
# Insight latency of an embedded store and its copy in ClickHouse, side by side, through
# each collector's admin API (median of RUNS requests, ms). The copy is made beforehand:
#
#   anonstats gen --data-dir D --events N --machines M --days 30
#   anonstats migrate --from D --to clickhouse://127.0.0.1:18125/DB
#   DATA=D STORE=clickhouse://127.0.0.1:18125/DB bench/clickhouse/insights.sh
#
# BIN (default $CARGO_TARGET_DIR/release/anonstats) is used as it is, not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA:?DATA=embedded data dir}" "${STORE:?STORE=clickhouse://HOST:PORT/DB}"
RUNS=${RUNS:-3}
BIN=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/anonstats}
ONLY=${ONLY:-both}   # both | clickhouse
work=$(mktemp -d /tmp/anonstats-chins.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

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

admin=$("$BIN" keys --data-dir "$DATA" create-admin 2>/dev/null | tail -n1)
"$BIN" migrate --from "$DATA" --to "$STORE" --quiet >/dev/null
if [ "$ONLY" = both ]; then
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" >"$work/s.out" 2>"$work/s.out.err" &
    pids+=($!)
    s_addr=$(addr_of "$work/s.out")
fi
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$work/unused" --store "$STORE" >"$work/c.out" 2>"$work/c.out.err" &
pids+=($!)
c_addr=$(addr_of "$work/c.out")
sleep 0.5

timed() {
    local addr=$1 path=$2 i
    curl -sf -o /dev/null -H "Authorization: Bearer $admin" "http://$addr$path" ||
        { echo "FAILED: $path on $addr" >&2; exit 1; }
    for i in $(seq 1 "$RUNS"); do
        curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $admin" "http://$addr$path" ||
            { echo "FAILED: $path on $addr" >&2; exit 1; }
    done | sort -n | awk '{ a[NR] = $1 } END { printf "%.0f", 1000 * a[int((NR + 1) / 2)] }'
}

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
    s=-
    [ "$ONLY" = both ] && s=$(timed "$s_addr" "$path")
    echo "| \`$path\` | $s | $(timed "$c_addr" "$path") |"
done
