#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz and libFuzzer) for a bounded time, starting
# from the seed corpus in fuzz/seeds. Installs cargo-fuzz when it is missing. The stable
# toolchain builds the targets: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz
# passes.
#
# Usage: scripts/fuzz.sh [seconds per target] [target...]
#   FUZZ_RUNS=N       stop each target after N executions (the time still bounds it)
#   FUZZ_SEED=N       libFuzzer's random seed (CI fixes it, so that a run is repeatable)
#   FUZZ_SANITIZER=   address (the default) or none
# A crash stops the script with libFuzzer's report; its input is in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(decode lz64 event privacy sql scrub)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

sanitizer=${FUZZ_SANITIZER:-address}
cd fuzz
echo "== building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -O --sanitizer "$sanitizer"

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [ -n "${FUZZ_RUNS:-}" ]; then args+=(-runs="$FUZZ_RUNS"); fi
  if [ -n "${FUZZ_SEED:-}" ]; then args+=(-seed="$FUZZ_SEED"); fi
  if [ -f "dicts/$t.dict" ]; then args+=(-dict="dicts/$t.dict"); fi
  echo "== fuzz $t (at most ${seconds} s)"
  # New inputs go to corpus/ (not kept in git); seeds/ stays as committed.
  status=0
  cargo fuzz run -O --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" \
    >"corpus/$t.log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "corpus/$t.log" || true
  if ((status != 0)); then
    tail -n 40 "corpus/$t.log" >&2
    echo "fuzz target $t failed (exit $status): fuzz/corpus/$t.log, input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
