#!/usr/bin/env bash
# Random-token flood: what valid senders get (32 connections, batches of 100) alone, and
# while 256 more connections send single events with tokens no collector knows, 10,000
# requests a second in all (FLOOD_RATE=0: as fast as they are answered). Valid senders
# must keep at least 90% of their throughput.
#
#   bench/token-flood/run.sh          # DURATION=10 FLOOD_RATE=10000
set -euo pipefail
# A load generator is not a fleet: its few machines send far past the rate limits, which
# are off so that what is measured is the collector's capacity (their check still runs).
export ANONSTATS_PROJECT_EVENTS_PER_MINUTE=0 ANONSTATS_MACHINE_EVENTS_PER_MINUTE=0 \
    ANONSTATS_NEW_MACHINES_PER_MINUTE=0
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
FLOOD_RATE=${FLOOD_RATE:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# ANONSTATS_BENCH_BIN: a directory of binaries built elsewhere (anonstats, loadgen, ...),
# to measure another build, e.g. before and after a change.
BIN=${ANONSTATS_BENCH_BIN:-$CARGO_TARGET_DIR/release}
[[ -n ${ANONSTATS_BENCH_BIN:-} ]] || cargo build --release --quiet -p anonstats -p anonstats-bench-ingest

work=$(mktemp -d)
cleanup() { kill "$serve" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/anonstats" serve --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
serve=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's|^listening on http://||p' "$work/out")
token=$(sed -n 's|^write token: ||p' "$work/data/initial-tokens.txt")
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
valid() { "$BIN/loadgen" --url "http://$addr/batch/" --token "$token" --batch 100 --connections 32 --duration "$DURATION"; }

load_alone=$(cut -d' ' -f1-3 /proc/loadavg)
alone=$(valid)
load_flooded=$(cut -d' ' -f1-3 /proc/loadavg)
"$BIN/loadgen" --url "http://$addr/e/" --random-tokens --batch 1 --connections 256 \
  --rate "$FLOOD_RATE" --duration "$((DURATION + 4))" --warmup 0 >"$work/flood" 2>/dev/null &
flood=$!
flooded=$(valid)
wait "$flood" || true
# The flood's requests are all refused (401), so loadgen counts them as errors.
guesses=$(awk -v e="$(field errors "$(cat "$work/flood")")" -v d="$((DURATION + 4))" 'BEGIN {printf "%.0f", e / d}')
ratio=$(awk -v a="$(field eps "$flooded")" -v b="$(field eps "$alone")" 'BEGIN {printf "%.2f", a / b}')
echo "| | valid events/s | valid p99 ms | unknown-token requests/s | load average |"
echo "|---|---:|---:|---:|---|"
echo "| alone | $(field eps "$alone") | $(field p99_ms "$alone") | 0 | $load_alone |"
echo "| during the flood | $(field eps "$flooded") | $(field p99_ms "$flooded") | $guesses | $load_flooded |"
echo
echo "valid senders kept ${ratio}x of their throughput"
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.9)}' || { echo "FAIL: under 90%"; exit 1; }
