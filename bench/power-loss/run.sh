#!/usr/bin/env bash
# Power loss at length: RUNS traced runs of the collector under load (10 by default), each
# cut at CUTS points (500 by default) and replayed twice, keeping only what had been
# synced (collector_power_loss). Then the same with every fdatasync skipped, which must
# lose acknowledged uuids.
#
#   bench/power-loss/run.sh            # RUNS=10 CUTS=500
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-10}
CUTS=${CUTS:-500}
start=$(date +%s)
POWER_LOSS_RUNS=$RUNS POWER_LOSS_CUTS=$CUTS cargo test -q --release -p anonstats \
  --test collector_power_loss every_uuid -- --nocapture 2>&1 | grep -E "cuts of|panicked|test result"
echo "power loss: $RUNS traced runs x $CUTS cuts ($(( $(date +%s) - start )) s)"
start=$(date +%s)
POWER_LOSS_CUTS=$CUTS cargo test -q --release -p anonstats --test collector_power_loss \
  syncs_are_skipped -- --nocapture 2>&1 | grep -E "lost|panicked|test result"
echo "skipped syncs: caught ($(( $(date +%s) - start )) s)"
