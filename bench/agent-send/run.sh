#!/usr/bin/env bash
# Times `anonstats send` (which spools the event and leaves delivery to a detached process)
# and `anonstats send --wait` (which delivers before returning) against the reference shell
# script, all posting to the same local collector, and `anonstats send` opted out, with
# hyperfine; then the same two sends over TLS, to a second collector serving a certificate
# from a CA made here (openssl), verified against that CA alone (--ca-file) and against the
# system's roots with that CA added (the store read exactly as without SSL_CERT_FILE).
#
#   bench/agent-send/run.sh [PATH_TO_ANONSTATS]     (default: target/release/anonstats)
#
# Needs hyperfine, curl and openssl (apt-get install -y hyperfine curl openssl). Prints
# hyperfine's tables and writes bench/agent-send/results.md and results-tls.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/anonstats}"
[ -x "$BIN" ] || { echo "run.sh: $BIN not found; cargo build --release -p anonstats first, or pass its path" >&2; exit 2; }
command -v hyperfine > /dev/null || { echo "run.sh: hyperfine missing: apt-get install -y hyperfine" >&2; exit 2; }

WORK="$(mktemp -d)"
# The collector commits with a full fsync; on this kind of disk one costs about 4 ms and
# would dominate both sides. By default its data lives on tmpfs so that what is measured is
# the agent side; COLLECTOR_DATA_PARENT=/some/disk/dir measures with the disk.
DATA_PARENT="${COLLECTOR_DATA_PARENT:-/dev/shm}"
DATA="$(mktemp -d -p "$DATA_PARENT")"
SERVER_PID= TLS_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2> /dev/null
  [ -n "$TLS_PID" ] && kill "$TLS_PID" 2> /dev/null
  rm -rf "$WORK" "$DATA"
}
trap cleanup EXIT

mkfifo "$WORK/out"
"$BIN" serve --data-dir "$DATA/data" --listen 127.0.0.1:0 > "$WORK/out" 2> "$WORK/serve.log" &
SERVER_PID=$!
TOKEN= ENDPOINT=
while read -r line; do
  case "$line" in
    "listening on "*) ENDPOINT="${line#listening on }"; break ;;
  esac
done < "$WORK/out"
cat "$WORK/out" > /dev/null &
# A new store's tokens are in its data dir (stdout is no terminal here).
TOKEN=$(sed -n 's/^write token: //p' "$DATA/data/initial-tokens.txt")
[ -n "$TOKEN" ] && [ -n "$ENDPOINT" ] || { echo "run.sh: the collector did not start; see $WORK/serve.log" >&2; exit 1; }

unset DISABLE_TELEMETRY DO_NOT_TRACK ANONSTATS_MODE
export ENDPOINT TOKEN CONFIG_DIR="$WORK/etc" PRODUCT_VERSION=1.0.0
mkdir -p "$WORK/etc-off" && touch "$WORK/etc-off/.opt-out-from-anonymous-statistics"
SEND_WAIT="$BIN send --wait START --endpoint $ENDPOINT --token $TOKEN --product-name bench --product-version 1.0.0 --config-dir $WORK/etc --state-dir $WORK/state-wait"
SEND="$BIN send START --endpoint $ENDPOINT --token $TOKEN --product-name bench --product-version 1.0.0 --config-dir $WORK/etc --state-dir $WORK/state"
SEND_OFF="$BIN send START --endpoint $ENDPOINT --token $TOKEN --product-name bench --product-version 1.0.0 --config-dir $WORK/etc-off --state-dir $WORK/state-off"
SCRIPT="$HERE/reference-anonymous-statistics.sh START"

hyperfine -N --warmup 20 --runs "${RUNS:-300}" \
  --export-markdown "$HERE/results.md" \
  -n "anonstats send" "$SEND" \
  -n "anonstats send --wait" "$SEND_WAIT" \
  -n "reference script" "$SCRIPT" \
  -n "anonstats send (opted out)" "$SEND_OFF"

# Detached deliveries may still be running: wait (at most 10 s) for the spool to empty.
for _ in $(seq 100); do
  [ -z "$(ls "$WORK/state/bench/spool" 2> /dev/null)" ] && break
  sleep 0.1
done
echo "events left in the spool: $(ls "$WORK/state/bench/spool" "$WORK/state-wait/bench/spool" 2> /dev/null | grep -c json)"
stored=$("$BIN" export --data-dir "$DATA/data" --format ndjson | wc -l)
echo "events stored by the collector: $stored"
[ -z "$(ls -A "$WORK/state-off" 2> /dev/null)" ] && echo "opted out: state dir untouched"

# --- TLS: a CA and a certificate for 127.0.0.1, a second collector serving it.
command -v openssl > /dev/null || { echo "run.sh: openssl missing: TLS rows skipped" >&2; exit 0; }
TLS="$WORK/tls" && mkdir -p "$TLS"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -subj /CN=bench-ca -days 2 2> /dev/null
openssl req "${ec[@]}" -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj /CN=127.0.0.1 2> /dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$TLS/ext"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
  -out "$TLS/server.pem" -days 2 -extfile "$TLS/ext" 2> /dev/null
mkfifo "$WORK/out-tls"
"$BIN" serve --data-dir "$DATA/data-tls" --listen 127.0.0.1:0 --tls-cert "$TLS/server.pem" \
  --tls-key "$TLS/server.key" > "$WORK/out-tls" 2> "$WORK/serve-tls.log" &
TLS_PID=$!
TLS_TOKEN= TLS_ENDPOINT=
while read -r line; do
  case "$line" in
    "listening on "*) TLS_ENDPOINT="${line#listening on }"; break ;;
  esac
done < "$WORK/out-tls"
cat "$WORK/out-tls" > /dev/null &
TLS_TOKEN=$(sed -n 's/^write token: //p' "$DATA/data-tls/initial-tokens.txt")
# The system's store as rustls-native-certs reads it by default (the bundle file and the
# certificate directory), with the bench CA added to the bundle.
cat /etc/ssl/certs/ca-certificates.crt "$TLS/ca.pem" > "$TLS/system-plus-ca.pem"
ARGS="--endpoint $TLS_ENDPOINT --token $TLS_TOKEN --product-name bench --product-version 1.0.0 --config-dir $WORK/etc"
# Set for the whole run: only the system-roots command reads them.
SSL_CERT_FILE="$TLS/system-plus-ca.pem" SSL_CERT_DIR=/etc/ssl/certs \
  hyperfine -N --warmup 20 --runs "${RUNS:-300}" \
  --export-markdown "$HERE/results-tls.md" \
  -n "anonstats send (https, --ca-file)" "$BIN send START $ARGS --ca-file $TLS/ca.pem --state-dir $WORK/tls-state" \
  -n "anonstats send --wait (https, --ca-file)" "$BIN send --wait START $ARGS --ca-file $TLS/ca.pem --state-dir $WORK/tls-state-wait" \
  -n "anonstats send --wait (https, system roots)" \
  "$BIN send --wait START $ARGS --state-dir $WORK/tls-state-system"
for _ in $(seq 100); do
  [ -z "$(ls "$WORK/tls-state/spool" 2> /dev/null)" ] && break
  sleep 0.1
done
echo "TLS: events left in the spools: $(ls "$WORK"/tls-state*/spool 2> /dev/null | grep -c json)"
echo "TLS: events stored by the collector: $("$BIN" export --data-dir "$DATA/data-tls" --format ndjson | wc -l)"
