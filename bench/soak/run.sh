#!/usr/bin/env bash
# Long runs of the proofs that CI runs small: SIGKILL during load (TRIALS restarts, 50 by
# default) and the trace that every 200 follows a sync of its log (ROUNDS runs).
#
#   bench/soak/run.sh            # TRIALS=50 ROUNDS=10
set -euo pipefail
cd "$(dirname "$0")/../.."
TRIALS=${TRIALS:-50}
ROUNDS=${ROUNDS:-10}
start=$(date +%s)
ANONSTATS_CRASH_TRIALS=$TRIALS cargo test -q --release -p anonstats --test collector_durability \
  killed_during_load -- --nocapture 2>&1 | grep -E "SEED|test result"
echo "kill during load: $TRIALS SIGKILLs and restarts, every acknowledged uuid stored once ($(( $(date +%s) - start )) s)"
start=$(date +%s)
for i in $(seq "$ROUNDS"); do
  cargo test -q --release -p anonstats --test collector_ack_after_sync 2>&1 | grep -q "test result: ok" \
    || { echo "ack after sync: round $i failed"; exit 1; }
done
echo "ack after sync: $ROUNDS traced runs of 240 requests, no 200 before its sync ($(( $(date +%s) - start )) s)"
