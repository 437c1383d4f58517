#!/usr/bin/env bash
# Idle and slow clients: what normal senders (32 connections, batches of 100) get alone,
# and while 10,000 idle connections, 200 clients sending their headers a byte a second
# and 200 sending their bodies a byte a second hold the collector's connections (each
# reopened as soon as the collector closes it). The collector runs with its defaults
# (at most 10,000 connections, 10 s header timeout, 60 s body timeout).
#
#   bench/idle-connections/run.sh     # IDLE=10000 SLOW_HEADERS=200 SLOW_BODIES=200 DURATION=20
#
# Prints a markdown table and what happened to the slow clients; exits non-zero when the
# normal senders' p99 during the attack passes twice their p99 alone plus 50 ms, when
# their throughput falls under 90%, or when slow clients were not cut off.
set -euo pipefail
# A load generator is not a fleet: its few machines send far past the rate limits, which
# are off so that what is measured is the collector's capacity (their check still runs).
export ANONSTATS_PROJECT_EVENTS_PER_MINUTE=0 ANONSTATS_MACHINE_EVENTS_PER_MINUTE=0 \
    ANONSTATS_NEW_MACHINES_PER_MINUTE=0
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-20}
IDLE=${IDLE:-10000}
SLOW_HEADERS=${SLOW_HEADERS:-200}
SLOW_BODIES=${SLOW_BODIES:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${ANONSTATS_BENCH_BIN:-$CARGO_TARGET_DIR/release}
[[ -n ${ANONSTATS_BENCH_BIN:-} ]] || cargo build --release --quiet -p anonstats -p anonstats-bench-ingest
# The attacker's sockets, the collector's own and the senders' (the collector raises
# its own limit for its connection cap).
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= IDLE + SLOW_HEADERS + SLOW_BODIES + 1000 )) ||
    { echo "the open-file limit $(ulimit -n) is too low for $IDLE idle connections" >&2; exit 2; }

work=$(mktemp -d)
cleanup() {
    kill "${attack:-}" 2>/dev/null || true
    kill "$serve" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$BIN/anonstats" serve --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
serve=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's|^listening on http://||p' "$work/out")
token=$(sed -n 's|^write token: ||p' "$work/out")
pid=$(cat "$work/data/anonstats.lock")
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
senders() { "$BIN/loadgen" --url "http://$addr/batch/" --token "$token" --batch 100 --connections 32 --duration "$DURATION"; }
open_fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }

load_alone=$(cut -d' ' -f1-3 /proc/loadavg)
alone=$(senders)

# The attack lasts past the body timeout, so that the slow bodies' 408s are seen.
attack_secs=$((DURATION + 70))
python3 bench/idle-connections/attack.py "$addr" "$attack_secs" "$IDLE" "$SLOW_HEADERS" "$SLOW_BODIES" \
    >"$work/attack" &
attack=$!
# The senders start once the attackers hold their connections.
want=$((IDLE * 9 / 10))
for _ in $(seq 300); do (($(open_fds) >= want)) && break; sleep 0.1; done
held=$(open_fds)
load_attacked=$(cut -d' ' -f1-3 /proc/loadavg)
attacked=$(senders)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
wait "$attack"
attack=
result=$(cat "$work/attack")

echo "| | events/s | p50 ms | p99 ms | max ms | errors | load average |"
echo "|---|---:|---:|---:|---:|---:|---|"
echo "| alone | $(field eps "$alone") | $(field p50_ms "$alone") | $(field p99_ms "$alone") | $(field max_ms "$alone") | $(field errors "$alone") | $load_alone |"
echo "| beside $IDLE idle, $SLOW_HEADERS slow-header and $SLOW_BODIES slow-body connections | $(field eps "$attacked") | $(field p50_ms "$attacked") | $(field p99_ms "$attacked") | $(field max_ms "$attacked") | $(field errors "$attacked") | $load_attacked |"
echo
echo "collector descriptors when the senders began: $held; peak RSS $((rss / 1024)) MB"
for kind in idle slow_headers slow_bodies; do
    echo "$kind: peak open $(field "${kind}_peak" "$result"), closed by the collector $(field "${kind}_closed" "$result") times, after median $(field "${kind}_closed_after_median_s" "$result") s (max $(field "${kind}_closed_after_max_s" "$result") s), answers $(field "${kind}_answers" "$result"), failed connects $(field "${kind}_connect_errors" "$result")"
done

fail=0
awk -v a="$(field p99_ms "$attacked")" -v b="$(field p99_ms "$alone")" 'BEGIN {exit !(a <= 2 * b + 50)}' ||
    { echo "FAIL: p99 beside the attack over twice the p99 alone plus 50 ms"; fail=1; }
awk -v a="$(field eps "$attacked")" -v b="$(field eps "$alone")" 'BEGIN {exit !(a >= 0.9 * b)}' ||
    { echo "FAIL: throughput beside the attack under 90%"; fail=1; }
(($(field idle_closed "$result") > 0)) || { echo "FAIL: no idle connection was closed"; fail=1; }
(($(field slow_headers_closed "$result") > 0)) || { echo "FAIL: no slow-header client was cut off"; fail=1; }
[[ $(field slow_bodies_answers "$result") == *408* ]] || { echo "FAIL: no slow body was answered 408"; fail=1; }
exit $fail
