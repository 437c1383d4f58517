#!/usr/bin/env bash
# Installs the `anonstats` binary into a prefix.
#
#   ./install.sh [--binary PATH] [--prefix DIR] [--config-dir DIR] [--disable-telemetry]
#                [--endpoint URL] [--token T] [--product-name N] [--product-version V]
#
#   --binary PATH         install this prebuilt binary (default: build it with
#                         `cargo install --path crates/cli`)
#   --prefix DIR          install into DIR/bin (default /usr/local)
#   --config-dir DIR      configuration directory (default /etc/anonstats): the opt-out
#                         file and anonstats.toml live there, and the installed
#                         anonstats reads them there
#   --disable-telemetry   opt out of anonymous statistics: creates
#                         DIR/.opt-out-from-anonymous-statistics. A non-empty
#                         DISABLE_TELEMETRY in the environment does the same.
#   --endpoint, --token, --product-name, --product-version
#                         written to DIR/anonstats.toml, so that `anonstats status`,
#                         `show START` and `send START` need no flags
set -euo pipefail

PREFIX=/usr/local
CONFIG_DIR=/etc/anonstats
BINARY=
DISABLE=
SETTINGS=()
PRODUCT=
[ -n "${DISABLE_TELEMETRY:-}" ] && DISABLE=1

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --config-dir) [ $# -ge 2 ] || die "--config-dir needs a directory"; CONFIG_DIR=$2; shift 2 ;;
    --disable-telemetry) DISABLE=1; shift ;;
    --endpoint|--token|--product-name|--product-version)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$2" in *'"'*|*'\\'*) die "$1: the value may not contain \" or \\" ;; esac
      [ "$1" = --product-name ] && PRODUCT=$2
      SETTINGS+=("${1#--} = \"$2\""); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1'; run ./install.sh --help for the options" ;;
  esac
done

BIN_DIR="$PREFIX/bin"
mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR; choose another --prefix or run as a user who may write there"

if [ -z "$BINARY" ]; then
  command -v cargo >/dev/null || die "cargo not found; install Rust, or pass --binary PATH to a built anonstats"
  SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  BUILD=$(mktemp -d)
  trap 'rm -rf "$BUILD"' EXIT
  cargo install --quiet --locked --force --path "$SRC/crates/cli" --root "$BUILD" \
    || die "cargo install failed (see above); fix the build or pass --binary PATH"
  BINARY="$BUILD/bin/anonstats"
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable file; give the path of a built anonstats binary"
if [ "$CONFIG_DIR" = /etc/anonstats ]; then
  install -m 0755 "$BINARY" "$BIN_DIR/anonstats.new"
  mv -f "$BIN_DIR/anonstats.new" "$BIN_DIR/anonstats"
else
  # The binary reads /etc/anonstats unless told otherwise: a wrapper tells it where the
  # configuration this installer wrote is.
  LIBEXEC="$PREFIX/libexec/anonstats"
  mkdir -p "$LIBEXEC" || die "cannot create $LIBEXEC; choose another --prefix"
  install -m 0755 "$BINARY" "$LIBEXEC/anonstats.new"
  mv -f "$LIBEXEC/anonstats.new" "$LIBEXEC/anonstats"
  quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
  cat >"$BIN_DIR/anonstats.new" <<WRAPPER
#!/bin/sh
# Installed by anonstats' install.sh: the agent's configuration is in $CONFIG_DIR.
ANONSTATS_CONFIG_DIR=\${ANONSTATS_CONFIG_DIR:-$(quote "$CONFIG_DIR")}
export ANONSTATS_CONFIG_DIR
exec $(quote "$LIBEXEC/anonstats") "\$@"
WRAPPER
  chmod 0755 "$BIN_DIR/anonstats.new"
  mv -f "$BIN_DIR/anonstats.new" "$BIN_DIR/anonstats"
fi

if [ ${#SETTINGS[@]} -gt 0 ]; then
  CONFIG_FILE="$CONFIG_DIR/anonstats.toml"
  mkdir -p "$CONFIG_DIR" || die "cannot create $CONFIG_DIR; choose another --config-dir"
  if [ -e "$CONFIG_FILE" ]; then
    echo "kept the existing $CONFIG_FILE; edit it to change the settings"
  else
    { echo "# Settings of anonymous statistics, read by anonstats and the products that use it."
      printf '%s\n' "${SETTINGS[@]}"; } >"$CONFIG_FILE.new" && mv -f "$CONFIG_FILE.new" "$CONFIG_FILE" \
      || die "cannot write $CONFIG_FILE"
    echo "wrote $CONFIG_FILE"
  fi
fi

if [ -n "$DISABLE" ]; then
  mkdir -p "$CONFIG_DIR" || die "cannot create $CONFIG_DIR; choose another --config-dir"
  touch "$CONFIG_DIR/.opt-out-from-anonymous-statistics" \
    || die "cannot create $CONFIG_DIR/.opt-out-from-anonymous-statistics"
  echo "anonymous statistics are off: created $CONFIG_DIR/.opt-out-from-anonymous-statistics"
else
  echo "anonymous statistics: $("$BIN_DIR/anonstats" status)"
  echo "to opt out: $BIN_DIR/anonstats opt-out --config-dir $CONFIG_DIR (or set DISABLE_TELEMETRY=1)"
  if [ -n "$PRODUCT" ]; then
    echo "to opt out of $PRODUCT only: $BIN_DIR/anonstats opt-out --config-dir $CONFIG_DIR --product $PRODUCT"
  fi
  echo "to see what was sent: $BIN_DIR/anonstats log"
fi
echo "installed $BIN_DIR/anonstats"
