#!/usr/bin/env bash
# Overload: the collector's capacity with 64 connections sending batches of 100, then
# far more work than it can commit (768 connections sending batches of 1000) for 60 s,
# then the first load again. Capture must answer only 200 and 503 (each 503 with
# Retry-After), stay under 300 MB resident, and be back at full throughput at once.
#
#   bench/overload/run.sh                 # DURATION=60 OVER_CONNECTIONS=768
#
# Prints a markdown table; exits non-zero when a promise does not hold.
set -euo pipefail
# A load generator is not a fleet: its few machines send far past the rate limits, which
# are off so that what is measured is the collector's capacity (their check still runs).
export ANONSTATS_PROJECT_EVENTS_PER_MINUTE=0 ANONSTATS_MACHINE_EVENTS_PER_MINUTE=0 \
    ANONSTATS_NEW_MACHINES_PER_MINUTE=0

cd "$(dirname "$0")/../.."
DURATION=${DURATION:-60}
OVER_CONNECTIONS=${OVER_CONNECTIONS:-768}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release
cargo build --release --quiet -p anonstats -p anonstats-bench-ingest

work=$(mktemp -d)
cleanup() { kill "$serve" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/anonstats" serve --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
serve=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's|^listening on http://||p' "$work/out")
token=$(sed -n 's|^write token: ||p' "$work/data/initial-tokens.txt")
pid=$(cat "$work/data/anonstats.lock")

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
load() { "$BIN/loadgen" --url "http://$addr/batch/" --token "$token" "$@"; }

before=$(load --batch 100 --connections 64 --duration 10 --warmup 2)

# Peak resident memory, sampled while the overload runs.
peak=0
( while kill -0 "$serve" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    echo "$rss"; sleep 0.5
  done ) >"$work/rss" &
sampler=$!
over=$(load --batch 1000 --connections "$OVER_CONNECTIONS" --duration "$DURATION" --warmup 0 --threads 2)
kill "$sampler" 2>/dev/null || true
peak=$(sort -n "$work/rss" | tail -n 1)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

after=$(load --batch 100 --connections 64 --duration 5 --warmup 0)

echo "| phase | events/s | 200 p99 ms | 200 max ms | 503 | 503 without Retry-After | other statuses |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for phase in before over after; do
  line=${!phase}
  echo "| $phase | $(field eps "$line") | $(field p99_ms "$line") | $(field max_ms "$line") | $(field shed "$line") | $(field shed_without_retry_after "$line") | $(field other_status "$line") |"
done
echo
echo "peak RSS during the overload: $((hwm / 1024)) MB (VmHWM; sampled VmRSS peak $((peak / 1024)) MB)"
ratio=$(awk -v a="$(field eps "$after")" -v b="$(field eps "$before")" 'BEGIN {printf "%.2f", a / b}')
echo "throughput in the 5 s after the overload: ${ratio}x of before"

fail=0
for phase in before over after; do
  line=${!phase}
  [[ $(field other_status "$line") == 0 ]] || { echo "FAIL: $phase: answers other than 200 and 503"; fail=1; }
  [[ $(field shed_without_retry_after "$line") == 0 ]] || { echo "FAIL: $phase: a 503 without Retry-After"; fail=1; }
done
((hwm < 300 * 1024)) || { echo "FAIL: peak RSS over 300 MB"; fail=1; }
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.8)}' || { echo "FAIL: throughput did not recover"; fail=1; }
exit $fail
