#!/usr/bin/env bash
# Overload: the collector's capacity with 64 connections sending batches of 100, then
# far more work than it can commit (768 connections sending batches of 1000) for 60 s,
# then the first load again. Capture must answer every request, only with 200 and 503
# (each 503 with Retry-After), stay under 300 MB resident, and be back at full throughput
# at once.
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
pid=$(cat "$work/data/anonstats.lock")

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
load() { "$BIN/loadgen" --url "http://$addr/batch/" --token "$token" "$@"; }

before=$(load --batch 100 --connections 64 --duration 10 --warmup 2)

# Peak resident memory, sampled while the overload runs, with what it is made of
# (anonymous memory, mapped files, shared memory: SQLite's WAL index).
peak=0
( while kill -0 "$serve" 2>/dev/null; do
    awk '/^(Rss|Anonymous|Pss_File|Pss_Shmem):/ {printf "%s %s ", $1, $2} END {print ""}' \
        "/proc/$pid/smaps_rollup" 2>/dev/null || true
    sleep 0.5
  done ) >"$work/rss" &
sampler=$!
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$pid/stat"; }
cpu_before=$(cpu)
load_over=$(cut -d' ' -f1-3 /proc/loadavg)
over=$(load --batch 1000 --connections "$OVER_CONNECTIONS" --duration "$DURATION" --warmup 0 --threads 2)
cpu_over=$(awk -v a="$(cpu)" -v b="$cpu_before" -v d="$DURATION" 'BEGIN {printf "%.0f", 100 * (a - b) / d}')
kill "$sampler" 2>/dev/null || true
peak_line=$(sort -n -k2 "$work/rss" | tail -n 1)
peak=$(awk '{print $2}' <<<"$peak_line")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

after=$(load --batch 100 --connections 64 --duration 5 --warmup 0)

# Requests that got no answer at all (a connection reset or closed under them).
unanswered() { echo $(( $(field errors "$1") - $(field shed "$1") - $(field other_status "$1") )); }
echo "| phase | events/s | 200 p99 ms | 200 max ms | 503 | 503 without Retry-After | other statuses | no answer |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for phase in before over after; do
  line=${!phase}
  echo "| $phase | $(field eps "$line") | $(field p99_ms "$line") | $(field max_ms "$line") | $(field shed "$line") | $(field shed_without_retry_after "$line") | $(field other_status "$line") | $(unanswered "$line") |"
done
echo
echo "peak RSS during the overload: $((hwm / 1024)) MB (VmHWM; sampled peak $((peak / 1024)) MB: $peak_line kB)"
echo "collector CPU during the overload: ${cpu_over}% of one core; load average when it began: $load_over"
ratio=$(awk -v a="$(field eps "$after")" -v b="$(field eps "$before")" 'BEGIN {printf "%.2f", a / b}')
echo "throughput in the 5 s after the overload: ${ratio}x of before"

fail=0
for phase in before over after; do
  line=${!phase}
  [[ $(field other_status "$line") == 0 ]] || { echo "FAIL: $phase: answers other than 200 and 503"; fail=1; }
  [[ $(field shed_without_retry_after "$line") == 0 ]] || { echo "FAIL: $phase: a 503 without Retry-After"; fail=1; }
  [[ $(unanswered "$line") == 0 ]] || { echo "FAIL: $phase: requests the collector did not answer"; fail=1; }
done
((hwm < 300 * 1024)) || { echo "FAIL: peak RSS over 300 MB"; fail=1; }
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.8)}' || { echo "FAIL: throughput did not recover"; fail=1; }
exit $fail
