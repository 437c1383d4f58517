#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, starts what they need, runs
# every test. Usage: scripts/test.sh [extra cargo-nextest/cargo-test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# System packages the tests drive for real.
APT_PACKAGES=(strace)
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

log "cargo tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc -q
else
  cargo test --workspace --no-fail-fast "$@"
fi
