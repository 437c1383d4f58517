#!/usr/bin/env bash
# Local ClickHouse instances for development and CI (Debian's clickhouse-server 18.16
# or any later clickhouse-server binary on PATH / in CLICKHOUSE_SERVER).
#
#   scripts/clickhouse.sh install
#   scripts/clickhouse.sh start NAME HTTP_PORT TCP_PORT [--cluster SPEC] [--interserver-port PORT] [--base DIR]
#   scripts/clickhouse.sh stop NAME [--purge] [--base DIR]
#   scripts/clickhouse.sh status [NAME] [--base DIR]
#   scripts/clickhouse.sh start-cluster [--base DIR]   # ch1 18123/19000 + ch2 18124/19001, cluster "anonstats"
#   scripts/clickhouse.sh stop-cluster [--purge] [--base DIR]
#   scripts/clickhouse.sh stop-all [--purge] [--base DIR]
#
# Each instance lives in BASE/NAME (BASE defaults to $ANONSTATS_CH_BASE or /tmp/anonstats-ch):
# config.xml, users.xml, data/, tmp/, user_files/, logs/, server.pid. It listens on
# 127.0.0.1 only. When run as root the server runs as the `clickhouse` user (runuser).
#
# --cluster SPEC adds <remote_servers> entries: CLUSTER:HOST:TCP_PORT[,[CLUSTER:]HOST:TCP_PORT...]
# Every HOST:PORT is one shard with one replica; an item without a cluster name belongs
# to the cluster named before it. Example: anonstats:127.0.0.1:19000,127.0.0.1:19001
#
# Users (users.xml): `default` with an empty password, `anonstats` with password
# $ANONSTATS_CH_PASSWORD (default "anonstats"), `readonly` (readonly=1), all loopback only.
#
# Quiet on success; on failure prints an error and the tail of the server logs, exits 1.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATES="$SCRIPT_DIR/clickhouse"
BASE="${ANONSTATS_CH_BASE:-/tmp/anonstats-ch}"
SERVER_BIN="${CLICKHOUSE_SERVER:-}"
RUN_USER="${ANONSTATS_CH_USER:-clickhouse}"
APP_USER="anonstats"
APP_PASSWORD="${ANONSTATS_CH_PASSWORD:-anonstats}"
START_TIMEOUT="${ANONSTATS_CH_START_TIMEOUT:-60}"

CLUSTER_NAME="anonstats"
CLUSTER_SPEC="$CLUSTER_NAME:127.0.0.1:19000,127.0.0.1:19001"

die() {
    echo "clickhouse.sh: error: $*" >&2
    exit 1
}

usage() {
    sed -n '4,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

find_server() {
    if [[ -n "$SERVER_BIN" ]]; then
        [[ -x "$SERVER_BIN" ]] || die "CLICKHOUSE_SERVER=$SERVER_BIN is not executable"
        return
    fi
    local c
    for c in /usr/sbin/clickhouse-server /usr/bin/clickhouse-server "$(command -v clickhouse-server 2>/dev/null || true)"; do
        if [[ -n "$c" && -x "$c" ]]; then
            SERVER_BIN="$c"
            return
        fi
    done
    die "clickhouse-server not found; run: $0 install"
}

cmd_install() {
    if [[ -x /usr/sbin/clickhouse-server ]] || command -v clickhouse-server >/dev/null 2>&1; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "clickhouse-server is not installed and installing it needs root"
    local log
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends clickhouse-server clickhouse-client; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get install clickhouse-server clickhouse-client failed"
    fi
    rm -f "$log"
    # The package's postinst may try to start the system service; we never use it.
}

is_port() {
    [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 ))
}

valid_name() {
    [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "bad instance name: '$1'"
}

xml_escape() {
    local s="$1"
    s="${s//&/&amp;}"
    s="${s//</&lt;}"
    s="${s//>/&gt;}"
    printf '%s' "$s"
}

# subst TEXT KEY VALUE [KEY VALUE...] -> TEXT with every @KEY@ replaced.
subst() {
    local text="$1"
    shift
    while (($#)); do
        text="${text//@$1@/$2}"
        shift 2
    done
    printf '%s' "$text"
}

remote_servers_xml() {
    local spec="$1" out="" cluster="" shards="" item a b c
    local cluster_tpl shard_tpl
    cluster_tpl="$(<"$TEMPLATES/cluster.xml.in")"
    shard_tpl="$(<"$TEMPLATES/shard.xml.in")"
    local -a names=() bodies=()
    IFS=',' read -r -a items <<<"$spec"
    for item in "${items[@]}"; do
        [[ -n "$item" ]] || continue
        IFS=':' read -r a b c <<<"$item"
        if [[ -n "$c" ]]; then
            cluster="$a"; host="$b"; port="$c"
        else
            host="$a"; port="$b"
        fi
        [[ -n "$cluster" ]] || die "--cluster: '$item' has no cluster name (use CLUSTER:HOST:PORT)"
        [[ "$cluster" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--cluster: bad cluster name '$cluster'"
        [[ -n "$host" ]] && is_port "$port" || die "--cluster: bad shard '$item' (want [CLUSTER:]HOST:TCP_PORT)"
        local i found=-1
        for i in "${!names[@]}"; do
            [[ "${names[$i]}" == "$cluster" ]] && found=$i
        done
        shard="$(subst "$shard_tpl" HOST "$(xml_escape "$host")" PORT "$port")"
        if ((found < 0)); then
            names+=("$cluster"); bodies+=("$shard")
        else
            bodies[$found]+=$'\n'"$shard"
        fi
    done
    local i
    for i in "${!names[@]}"; do
        out+="$(subst "$cluster_tpl" CLUSTER "${names[$i]}" SHARDS "${bodies[$i]}")"$'\n'
    done
    printf '%s' "$out"
}

# is_server PID DIR: PID is a clickhouse server process running DIR/config.xml
is_server() {
    local exe
    exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
    [[ "$(basename "$exe")" == clickhouse* ]] || return 1
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "--config-file=$2/config.xml"
}

# pid_of DIR: print the server pid of the instance in DIR (runuser forks, and 18.16 only
# writes --pid-file when daemonized, so the pid is found in /proc and cached in server.pid).
pid_of() {
    local dir="$1" pid p
    if [[ -f "$dir/server.pid" ]]; then
        pid="$(tr -dc '0-9' <"$dir/server.pid")"
        if [[ -n "$pid" ]] && is_server "$pid" "$dir"; then
            echo "$pid"
            return 0
        fi
    fi
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        if is_server "$pid" "$dir"; then
            [[ -d "$dir" ]] && echo "$pid" >"$dir/server.pid" 2>/dev/null || true
            echo "$pid"
            return 0
        fi
    done
    return 1
}

ping_ok() {
    local out
    out="$(curl -s --max-time 2 "http://127.0.0.1:$1/ping" 2>/dev/null)" || return 1
    [[ "$out" == "Ok." ]]
}

port_busy() {
    # true if something accepts TCP connections on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

show_logs() {
    local dir="$1" f
    for f in "$dir/logs/stdout.log" "$dir/logs/clickhouse-server.err.log"; do
        if [[ -s "$f" ]]; then
            echo "---- tail of $f ----" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

cmd_start() {
    local name="" http="" tcp="" inter="" spec="" pos=()
    while (($#)); do
        case "$1" in
            --cluster) spec="${2:-}"; shift 2 || die "--cluster needs a value" ;;
            --cluster=*) spec="${1#*=}"; shift ;;
            --interserver-port) inter="${2:-}"; shift 2 || die "--interserver-port needs a value" ;;
            --interserver-port=*) inter="${1#*=}"; shift ;;
            --base) BASE="${2:-}"; shift 2 || die "--base needs a value" ;;
            --base=*) BASE="${1#*=}"; shift ;;
            -*) die "start: unknown option $1" ;;
            *) pos+=("$1"); shift ;;
        esac
    done
    ((${#pos[@]} == 3)) || die "usage: start NAME HTTP_PORT TCP_PORT [--cluster SPEC] [--interserver-port PORT] [--base DIR]"
    name="${pos[0]}"; http="${pos[1]}"; tcp="${pos[2]}"
    valid_name "$name"
    is_port "$http" || die "bad HTTP port '$http'"
    is_port "$tcp" || die "bad TCP port '$tcp'"
    [[ -n "$inter" ]] || inter=$((tcp + 1000))
    is_port "$inter" || die "bad interserver port '$inter'"
    [[ "$http" != "$tcp" && "$http" != "$inter" && "$tcp" != "$inter" ]] || die "ports must differ"

    local dir="$BASE/$name"

    if pid_of "$dir" >/dev/null; then
        local running_http
        running_http="$(sed -n 's:.*<http_port>\([0-9]*\)</http_port>.*:\1:p' "$dir/config.xml" 2>/dev/null)"
        [[ "$running_http" == "$http" ]] || die "instance '$name' is already running with HTTP port $running_http (stop it first)"
        wait_ready "$dir" "$http" "$(pid_of "$dir")"
        return 0
    fi

    command -v curl >/dev/null || die "curl is required"
    find_server
    local p
    for p in "$http" "$tcp" "$inter"; do
        port_busy "$p" && die "port $p on 127.0.0.1 is already in use"
    done

    mkdir -p "$BASE"
    chmod 755 "$BASE" 2>/dev/null || true
    mkdir -p "$dir"/{data,tmp,user_files,format_schemas,logs}

    local remote=""
    [[ -z "$spec" ]] || remote="$(remote_servers_xml "$spec")"
    subst "$(<"$TEMPLATES/config.xml.in")" DIR "$dir" HTTP_PORT "$http" TCP_PORT "$tcp" \
        INTERSERVER_PORT "$inter" REMOTE_SERVERS "$remote" >"$dir/config.xml"
    subst "$(<"$TEMPLATES/users.xml.in")" APP_USER "$APP_USER" \
        APP_PASSWORD "$(xml_escape "$APP_PASSWORD")" >"$dir/users.xml"
    chmod 640 "$dir/users.xml"
    : >"$dir/logs/stdout.log"
    rm -f "$dir/server.pid"

    if [[ $(id -u) -eq 0 && "$RUN_USER" != root ]]; then
        id "$RUN_USER" >/dev/null 2>&1 || die "user '$RUN_USER' does not exist (run: $0 install)"
        chown -R "$RUN_USER": "$dir"
    fi

    # setsid: own session, so the server survives the calling shell and a Ctrl-C there.
    (
        cd "$dir"
        if [[ $(id -u) -eq 0 && "$RUN_USER" != root ]]; then
            setsid runuser -u "$RUN_USER" -- "$SERVER_BIN" --config-file="$dir/config.xml" \
                </dev/null >>"$dir/logs/stdout.log" 2>&1 &
        else
            setsid "$SERVER_BIN" --config-file="$dir/config.xml" \
                </dev/null >>"$dir/logs/stdout.log" 2>&1 &
        fi
        echo $! >"$dir/launcher.pid"
    )
    wait_ready "$dir" "$http" ""
}

wait_ready() {
    local dir="$1" http="$2" pid="$3" deadline=$((SECONDS + START_TIMEOUT)) launcher=""
    [[ -f "$dir/launcher.pid" ]] && launcher="$(<"$dir/launcher.pid")"
    while ((SECONDS < deadline)); do
        if ping_ok "$http" && pid_of "$dir" >/dev/null; then
            return 0
        fi
        if [[ -z "$pid" ]]; then
            # Still starting: the launcher (runuser or the server itself) must be alive.
            if [[ -n "$launcher" ]] && ! kill -0 "$launcher" 2>/dev/null && ! pid_of "$dir" >/dev/null; then
                echo "clickhouse.sh: error: clickhouse-server '$(basename "$dir")' exited during startup" >&2
                show_logs "$dir"
                exit 1
            fi
        elif ! kill -0 "$pid" 2>/dev/null; then
            echo "clickhouse.sh: error: clickhouse-server '$(basename "$dir")' is gone" >&2
            show_logs "$dir"
            exit 1
        fi
        sleep 0.2
    done
    echo "clickhouse.sh: error: clickhouse-server '$(basename "$dir")' did not answer Ok. on http://127.0.0.1:$http/ping within ${START_TIMEOUT}s" >&2
    show_logs "$dir"
    exit 1
}

stop_dir() {
    local dir="$1" purge="$2" pid i
    if pid="$(pid_of "$dir")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
        kill -0 "$pid" 2>/dev/null && die "could not stop clickhouse-server pid $pid ($dir)"
    fi
    rm -f "$dir/server.pid" "$dir/launcher.pid"
    if [[ "$purge" == 1 && -d "$dir" ]]; then
        [[ -f "$dir/config.xml" ]] || die "refusing to delete $dir: not an instance directory"
        rm -rf -- "$dir"
    fi
}

parse_common() {
    # sets PURGE, POS from: [--purge] [--base DIR] args...
    PURGE=0; POS=()
    while (($#)); do
        case "$1" in
            --purge) PURGE=1; shift ;;
            --base) BASE="${2:-}"; shift 2 || die "--base needs a value" ;;
            --base=*) BASE="${1#*=}"; shift ;;
            -*) die "unknown option $1" ;;
            *) POS+=("$1"); shift ;;
        esac
    done
}

cmd_stop() {
    parse_common "$@"
    ((${#POS[@]} == 1)) || die "usage: stop NAME [--purge] [--base DIR]"
    valid_name "${POS[0]}"
    stop_dir "$BASE/${POS[0]}" "$PURGE"
}

cmd_stop_all() {
    parse_common "$@"
    ((${#POS[@]} == 0)) || die "usage: stop-all [--purge] [--base DIR]"
    [[ -d "$BASE" ]] || return 0
    local d
    for d in "$BASE"/*/; do
        [[ -f "$d/config.xml" ]] || continue
        stop_dir "${d%/}" "$PURGE"
    done
}

cmd_status() {
    parse_common "$@"
    local d name pid http
    [[ -d "$BASE" ]] || return 0
    for d in "$BASE"/*/; do
        d="${d%/}"
        [[ -f "$d/config.xml" ]] || continue
        name="$(basename "$d")"
        [[ ${#POS[@]} -eq 0 || "${POS[0]}" == "$name" ]] || continue
        http="$(sed -n 's:.*<http_port>\([0-9]*\)</http_port>.*:\1:p' "$d/config.xml")"
        if pid="$(pid_of "$d")"; then
            echo "$name running pid=$pid http=127.0.0.1:$http dir=$d"
        else
            echo "$name stopped http=127.0.0.1:$http dir=$d"
        fi
    done
}

cmd_start_cluster() {
    parse_common "$@"
    ((${#POS[@]} == 0)) || die "usage: start-cluster [--base DIR]"
    cmd_start ch1 18123 19000 --interserver-port 19009 --cluster "$CLUSTER_SPEC" --base "$BASE"
    cmd_start ch2 18124 19001 --interserver-port 19010 --cluster "$CLUSTER_SPEC" --base "$BASE"
}

cmd_stop_cluster() {
    parse_common "$@"
    ((${#POS[@]} == 0)) || die "usage: stop-cluster [--purge] [--base DIR]"
    stop_dir "$BASE/ch1" "$PURGE"
    stop_dir "$BASE/ch2" "$PURGE"
}

main() {
    (($#)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        install) cmd_install "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        start-cluster) cmd_start_cluster "$@" ;;
        stop-cluster) cmd_stop_cluster "$@" ;;
        stop-all) cmd_stop_all "$@" ;;
        -h | --help | help) usage ;;
        *) die "unknown command '$cmd'" ;;
    esac
}

main "$@"
