#!/usr/bin/env bash
# Retention under load: starts the collector with --retention-days on a large data set (the
# one bench/insights/run.sh leaves in WORK) while single events keep arriving, and reports
# what capture answered meanwhile, 10 s at a time, and how long each day's purge held the
# write lock. The data set loses the days before the cutoff.
#
#   CARGO_TARGET_DIR=/work/target-insights WORK=/tmp/anonstats-insights DAYS=88 bench/retention/run.sh
#
# Environment: WORK [/tmp/anonstats-insights] (its data/), DAYS [88] retention in days,
# CONNECTIONS [4] senders.
set -euo pipefail

DAYS=${DAYS:-88}
source "$(dirname "$0")/../under-load.sh"

export ANONSTATS_LOG=info,anonstats_server::store::sqlite::erasure=debug
serve_data --retention-days "$DAYS"

# Until retention has run, and 10 s more.
retention_pending() { [[ $t -lt 20 ]] || ! grep -q -e 'retention ran' -e 'retention failed' "$log"; }
send_while retention_pending
echo
grep -o -e 'purged the days before.*' -e 'retention ran.*' -e 'retention failed.*' "$log"
