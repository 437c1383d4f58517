#!/usr/bin/env bash
# Installs the anonstats collector as a systemd service.
#
#   ./install-collector.sh [--binary PATH] [--root DIR] [--prefix DIR] [--listen ADDR]
#                          [--admin-listen ADDR] [--public-url URL] [--base-path PATH]
#   ./install-collector.sh --uninstall [--purge] [--root DIR] [--prefix DIR]
#
#   --binary PATH        install this built anonstats (default: cargo build --release here)
#   --root DIR           install into DIR as if it were / (a chroot, an image, a test)
#   --prefix DIR         binary, completions and man page under DIR (default /usr/local)
#   --listen, --admin-listen, --public-url, --base-path
#                        written to /etc/anonstats/collector.toml (a new file only; an
#                        existing one is kept as it is)
#   --uninstall          remove the service, binary, config, completions and man page;
#                        the data in /var/lib/anonstats and the anonstats user stay
#   --purge              with --uninstall: also remove the data and the anonstats user
#
# It installs: PREFIX/bin/anonstats; the unit /etc/systemd/system/anonstats.service,
# which runs `anonstats serve --config /etc/anonstats/collector.toml` as the system user
# anonstats; the data dir /var/lib/anonstats (0700, that user's); completions for bash,
# zsh and fish; the man page anonstats(1). Then: systemctl enable --now anonstats
set -euo pipefail

ROOT=/
PREFIX=/usr/local
BINARY=
UNINSTALL=
PURGE=
SETTINGS=()

usage() { sed -n '2,23s/^# \{0,1\}//p' "$0"; }
die() { echo "install-collector.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --listen|--admin-listen|--public-url|--base-path)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$2" in *'"'*|*'\\'*) die "$1: the value may not contain \" or \\" ;; esac
      SETTINGS+=("${1#--} = \"$2\""); shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1'; run ./install-collector.sh --help for the options" ;;
  esac
done
[ -z "$PURGE" ] || [ -n "$UNINSTALL" ] || die "--purge goes with --uninstall"
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
ROOT=$(cd "$ROOT" 2>/dev/null && pwd) || die "--root: no directory $ROOT"
R=${ROOT%/}   # "" for the real system, so "$R/etc" is /etc

USER_NAME=anonstats
DATA=/var/lib/anonstats
CONFIG=/etc/anonstats/collector.toml
UNIT=/etc/systemd/system/anonstats.service
SYSUSERS=/usr/lib/sysusers.d/anonstats.conf
TMPFILES=/usr/lib/tmpfiles.d/anonstats.conf
BIN="$PREFIX/bin/anonstats"
COMPLETIONS=(
  "bash:$PREFIX/share/bash-completion/completions/anonstats"
  "zsh:$PREFIX/share/zsh/site-functions/_anonstats"
  "fish:$PREFIX/share/fish/vendor_completions.d/anonstats.fish"
)
MAN="$PREFIX/share/man/man1/anonstats.1"
ROOT_OPT=()
[ -z "$R" ] || ROOT_OPT=(--root "$ROOT")
# systemctl only on the running system, never into another root.
live_systemd() { [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ -n "$UNINSTALL" ]; then
  if live_systemd; then
    systemctl disable --now anonstats.service 2>/dev/null || true
  fi
  rm -f "$R$UNIT" "$R$BIN" "$R$MAN" "$R$CONFIG" "$R$SYSUSERS" "$R$TMPFILES"
  for c in "${COMPLETIONS[@]}"; do rm -f "$R${c#*:}"; done
  # The agent's files may share /etc/anonstats; the directory goes only when empty.
  rmdir "$R/etc/anonstats" 2>/dev/null || true
  live_systemd && systemctl daemon-reload
  if [ -n "$PURGE" ]; then
    rm -rf "$R$DATA"
    userdel "${ROOT_OPT[@]}" "$USER_NAME" 2>/dev/null || true
    groupdel "${ROOT_OPT[@]}" "$USER_NAME" 2>/dev/null || true
    echo "removed the anonstats collector, its data ($DATA) and the $USER_NAME user"
  else
    echo "removed the anonstats collector; its data stays in $DATA (owned by the $USER_NAME user);"
    echo "remove both with: $0 --uninstall --purge"
  fi
  exit 0
fi

if [ -z "$BINARY" ]; then
  command -v cargo >/dev/null || die "cargo not found; install Rust, or pass --binary PATH to a built anonstats"
  SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  (cd "$SRC" && cargo build --quiet --release --locked -p anonstats) \
    || die "cargo build failed (see above); fix the build or pass --binary PATH"
  BINARY="$SRC/target/release/anonstats"
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable file; give the path of a built anonstats binary"
"$BINARY" --version >/dev/null 2>&1 || die "$BINARY does not run here; build it for this machine"
for tool in systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null || die "$tool not found: this installer is for systemd systems (see the Dockerfile otherwise)"
done

mkdir -p "$R$PREFIX/bin" "$R/etc/anonstats" "$R/etc/systemd/system" \
  "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d" "$R$(dirname "$MAN")" \
  || die "cannot create directories under $ROOT; run as root or choose another --root"
install -m 0755 "$BINARY" "$R$BIN.new"
mv -f "$R$BIN.new" "$R$BIN"

# The user and the data dir, declared for systemd so that the same lines also recreate
# them at boot (e.g. on an image whose /var starts empty).
cat >"$R$SYSUSERS" <<EOF
u $USER_NAME - "anonstats collector" $DATA
EOF
cat >"$R$TMPFILES" <<EOF
d $DATA 0700 $USER_NAME $USER_NAME -
EOF
systemd-sysusers "${ROOT_OPT[@]}" "$R$SYSUSERS" >/dev/null
systemd-tmpfiles --create "${ROOT_OPT[@]}" "$R$TMPFILES"
# A data dir made by an older install keeps its files but gets the tight mode.
chmod 0700 "$R$DATA"

if [ -e "$R$CONFIG" ]; then
  echo "kept the existing $CONFIG"
else
  {
    echo "# The collector's settings, read by \`anonstats serve --config $CONFIG\`."
    echo "# Keys are serve's long option names (anonstats serve --help, man anonstats);"
    echo "# flags and ANONSTATS_* variables win over this file. After a change:"
    echo "# systemctl restart anonstats"
    echo "data-dir = \"$DATA\""
    have() { printf '%s\n' "${SETTINGS[@]}" | grep -q "^$1 = "; }
    have listen || echo 'listen = "127.0.0.1:9470"'
    [ ${#SETTINGS[@]} -eq 0 ] || printf '%s\n' "${SETTINGS[@]}"
    have admin-listen || echo '# admin-listen = "127.0.0.1:9471"'
    have public-url || echo '# public-url = "https://stats.example.org"'
    have base-path || echo '# base-path = "/stats"'
    echo '# retention-days = 400'
  } >"$R$CONFIG.new"
  # It may come to hold a ClickHouse password: root writes it, the service reads it.
  chmod 0640 "$R$CONFIG.new"
  chgrp "$(awk -F: -v u="$USER_NAME" '$1 == u { print $3 }' "$R/etc/group")" "$R$CONFIG.new"
  mv -f "$R$CONFIG.new" "$R$CONFIG"
fi

cat >"$R$UNIT" <<EOF
[Unit]
Description=anonstats collector (anonymous usage statistics)
Documentation=man:anonstats(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
User=$USER_NAME
Group=$USER_NAME
ExecStart=$BIN serve --config $CONFIG
# serve finishes the requests in flight on SIGTERM (for up to 30 s).
KillSignal=SIGTERM
TimeoutStopSec=45s
Restart=on-failure
RestartSec=2s
# One descriptor per connection (--max-connections, 10,000 by default).
LimitNOFILE=16384
StateDirectory=anonstats
StateDirectoryMode=0700
UMask=0077

NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$DATA
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
CapabilityBoundingSet=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
EOF
chmod 0644 "$R$UNIT"

for c in "${COMPLETIONS[@]}"; do
  shell=${c%%:*} file=$R${c#*:}
  mkdir -p "$(dirname "$file")"
  "$R$BIN" completions "$shell" >"$file"
done
"$R$BIN" man >"$R$MAN"

live_systemd && systemctl daemon-reload
echo "installed the anonstats collector in $ROOT: $BIN, $UNIT, $CONFIG, data in $DATA"
echo "start it with: systemctl enable --now anonstats"
