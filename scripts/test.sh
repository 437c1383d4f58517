#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, starts what they need, runs
# every test. Usage: scripts/test.sh [extra cargo-nextest/cargo-test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# System packages the tests drive for real.
APT_PACKAGES=(strace chromium nginx systemd)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "python packages (tests/requirements.txt)"
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt 2>&1 | grep -v "Running pip as the 'root' user" || true

# --- ClickHouse (docs/SCALING.md): Debian's clickhouse-server, one server for the
# conformance suite and the kill test, and the two-shard cluster `anonstats`. The tests
# read the URLs below; without them they skip outside CI and fail in CI.
log "ClickHouse (scripts/clickhouse.sh)"
if scripts/clickhouse.sh install && scripts/clickhouse.sh start chsingle 18125 19005 --interserver-port 20005 \
    && scripts/clickhouse.sh start-cluster; then
  export ANONSTATS_TEST_CLICKHOUSE=http://127.0.0.1:18125
  export ANONSTATS_TEST_CLICKHOUSE_CLUSTER=http://127.0.0.1:18123,http://127.0.0.1:18124
elif [ -n "${CI:-}" ]; then
  echo "ClickHouse could not be installed or started" >&2
  exit 1
else
  echo "ClickHouse tests will be skipped: clickhouse-server could not be installed or started"
fi

log "cargo tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc -q
else
  cargo test --workspace --no-fail-fast "$@"
fi

# --- fuzzing (fuzz/, scripts/fuzz.sh): a short, seeded run of every target from its seed
# corpus; long runs and their figures are in docs/RELIABILITY.md.
log "fuzzing (scripts/fuzz.sh, 15 s per target)"
FUZZ_SEED=1 scripts/fuzz.sh 15

# --- browser tests (tests/browser): anonstats.js, the demo agent's dashboard, posthog-js
# and CORS in headless Chromium against the real binaries. In CI a missing part fails.
log "browser tests (tests/browser)"
if command -v npm >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then
  cargo build -q -p anonstats -p anonstats-client --bins --example demo-agent
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)
elif [ -n "${CI:-}" ]; then
  echo "browser tests cannot run: npm or /usr/bin/chromium is missing" >&2
  exit 1
else
  echo "browser tests skipped: npm or /usr/bin/chromium is missing"
fi
