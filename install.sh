#!/usr/bin/env bash
# Installs the `anonstats` binary into a prefix.
#
#   ./install.sh [--binary PATH] [--prefix DIR] [--config-dir DIR] [--disable-telemetry]
#
#   --binary PATH         install this prebuilt binary (default: build it with
#                         `cargo install --path crates/cli`)
#   --prefix DIR          install into DIR/bin (default /usr/local)
#   --config-dir DIR      configuration directory (default /etc/anonstats); the opt-out
#                         file lives there
#   --disable-telemetry   opt out of anonymous statistics: creates
#                         DIR/.opt-out-from-anonymous-statistics. A non-empty
#                         DISABLE_TELEMETRY in the environment does the same.
set -euo pipefail

PREFIX=/usr/local
CONFIG_DIR=/etc/anonstats
BINARY=
DISABLE=
[ -n "${DISABLE_TELEMETRY:-}" ] && DISABLE=1

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --config-dir) [ $# -ge 2 ] || die "--config-dir needs a directory"; CONFIG_DIR=$2; shift 2 ;;
    --disable-telemetry) DISABLE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1'; run ./install.sh --help for the options" ;;
  esac
done

BIN_DIR="$PREFIX/bin"
mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR; choose another --prefix or run as a user who may write there"

if [ -n "$BINARY" ]; then
  [ -x "$BINARY" ] || die "$BINARY is not an executable file; give the path of a built anonstats binary"
  install -m 0755 "$BINARY" "$BIN_DIR/anonstats.new"
  mv -f "$BIN_DIR/anonstats.new" "$BIN_DIR/anonstats"
else
  command -v cargo >/dev/null || die "cargo not found; install Rust, or pass --binary PATH to a built anonstats"
  SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  cargo install --quiet --locked --force --path "$SRC/crates/cli" --root "$PREFIX" \
    || die "cargo install failed (see above); fix the build or pass --binary PATH"
fi

if [ -n "$DISABLE" ]; then
  mkdir -p "$CONFIG_DIR" || die "cannot create $CONFIG_DIR; choose another --config-dir"
  touch "$CONFIG_DIR/.opt-out-from-anonymous-statistics" \
    || die "cannot create $CONFIG_DIR/.opt-out-from-anonymous-statistics"
  echo "anonymous statistics are off: created $CONFIG_DIR/.opt-out-from-anonymous-statistics"
else
  echo "anonymous statistics: $("$BIN_DIR/anonstats" status --config-dir "$CONFIG_DIR")"
  echo "to opt out: $BIN_DIR/anonstats opt-out --config-dir $CONFIG_DIR (or set DISABLE_TELEMETRY=1)"
fi
echo "installed $BIN_DIR/anonstats"
