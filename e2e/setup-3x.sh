#!/usr/bin/env bash
# The ClockBound 3.x setup, on loopback only, never touching the machine's clock.
#
# Everything runs in a private network namespace that has only `lo` (held open by a
# `sleep` started with `unshare --net`): the daemon's built-in lookups of the public AWS
# pool fail locally, and nothing it sends can leave the machine. The segments are in the
# normal mount namespace, so every process sees them.
#
#   chronyd     local stratum 8, serves NTP on 127.0.0.1:11123 (in the namespace), -x
#   ntp-relay   127.0.0.1:123 -> :11123, forwarding the 48-byte NTP header only (chronyd
#               drops the daemon's requests otherwise: see e2e/ntp-relay)
#   clockbound  3.0.0-rc.0, NTP source 127.0.0.1 (always port 123); writes
#               /var/run/clockbound/shm1 (layout 3) and shm0 (layout 2)
#
# The daemon disciplines the clock through ntp_adjtime and gives up when that fails. It
# runs without CAP_SYS_TIME (so the kernel would refuse) and under e2e/notime.c, a seccomp
# filter that makes adjtimex, clock_adjtime, settimeofday and clock_settime return 0
# without entering the kernel. It logs "Clock smooth-slewed": nothing was slewed.
#
# It polls every 16 s and needs two samples: Synchronized 16-32 s after start, and every
# start wipes shm0 (Unknown until then). shm1 is reused when valid.
#
# Usage (root):
#   setup-3x.sh start            namespace, chronyd, relay, daemon; wait for Synchronized
#   setup-3x.sh stop             stop everything this setup started
#   setup-3x.sh daemon-restart   stop the daemon, start it, wait for Synchronized
#   setup-3x.sh daemon-stop      stop the daemon only
#   setup-3x.sh ensure           (re)start the daemon unless it runs, Synchronized
#   setup-3x.sh env              print the variables the Rust suite reads
set -euo pipefail
E2E_NAME=setup-3x
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

STATE="$E2E_STATE_ROOT/3x"
DAEMON="$E2E_CACHE/v3/bin/clockbound"
CHRONYD="$(command -v chronyd || echo /usr/sbin/chronyd)"
SLEEP="$(readlink -f "$(command -v sleep)")"
PYTHON="$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')"
SERVER_PORT=11123
# Polls every 16 s, two samples, sometimes a missed poll: generous.
SYNC_TIMEOUT="${CLOCKBOUND_E2E_3X_SYNC_TIMEOUT:-180}"

# Prefix that runs a command in the namespace, set once the namespace exists. An array,
# not a function: nsenter execs the command, so $! of `"${IN_NETNS[@]}" CMD &` is CMD's PID.
IN_NETNS=()
enter_netns() {
    local holder
    holder="$(pid_of netns)" || die "the network namespace is gone"
    IN_NETNS=(nsenter -t "$holder" -n --)
}

start_netns() {
    # No inherited stdio: the holder outlives this script and must not keep a pipe open.
    unshare --net -- "$SLEEP" infinity </dev/null >/dev/null 2>&1 &
    record_pid netns $! "$SLEEP"
    enter_netns
    "${IN_NETNS[@]}" ip link set lo up
    local links
    links="$("${IN_NETNS[@]}" ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
    [ "$links" = "lo " ] || die "the namespace has other links than lo: $links"
    log "network namespace with only lo (held by PID $(pid_of netns))"
}

start_chronyd() {
    cat >"$STATE/chronyd.conf" <<CONF
# NTP server on the namespace's loopback, its own local clock as reference. No command
# socket (the 2.x setup's path is left alone).
local stratum 8
bindaddress 127.0.0.1
port $SERVER_PORT
allow 127.0.0.1
cmdport 0
bindcmdaddress /
pidfile $STATE/chronyd.chrony-pid
CONF
    "${IN_NETNS[@]}" "${NO_SYS_TIME[@]}" "$CHRONYD" -d -x -u root -L 0 -f "$STATE/chronyd.conf" \
        </dev/null >"$STATE/chronyd.log" 2>&1 &
    record_pid chronyd $! "$CHRONYD"
    check_no_sys_time chronyd
}

start_relay() {
    "${IN_NETNS[@]}" "${NO_SYS_TIME[@]}" "$PYTHON" "$E2E_DIR/ntp-relay" 123 "$SERVER_PORT" \
        </dev/null >"$STATE/relay.log" 2>&1 &
    record_pid relay $! "$PYTHON"
    check_no_sys_time relay
}

build_shim() {
    cc -O2 -Wall -o "$STATE/notime" "$E2E_DIR/notime.c"
}

start_daemon() {
    other_setup_running 2x && die "the 2.x setup is running: both daemons write $SHM0"
    pid_of clockbound >/dev/null && die "the daemon already runs"
    enter_netns
    local old_gen
    old_gen="$("$E2E_DIR/shmstatus" --generation "$SHM1")"
    cat >"$STATE/clockbound.toml" <<CONF
[[sources.ntp]]
server = "127.0.0.1"
CONF
    "${IN_NETNS[@]}" "${NO_SYS_TIME[@]}" "$STATE/notime" "$DAEMON" -c "$STATE/clockbound.toml" \
        </dev/null >>"$STATE/clockbound.log" 2>&1 &
    record_pid clockbound $! "$DAEMON"
    check_no_sys_time clockbound
    local pid
    pid="$(pid_of clockbound)"
    grep -q '^Seccomp:[[:space:]]*2$' "/proc/$pid/status" ||
        die "the daemon (PID $pid) runs without its seccomp filter"
    # A valid shm1 is reused: wait for one the new daemon wrote.
    wait_status "$SHM1" Synchronized "$SYNC_TIMEOUT" clockbound "$old_gen"
    wait_status "$SHM0" Synchronized 30 clockbound
}

cmd="${1:-}"
case "$cmd" in
start)
    require_root
    [ -x "$DAEMON" ] || die "$DAEMON missing: run e2e/install.sh"
    other_setup_running 2x && die "the 2.x setup is running: stop it first"
    mkdir -p "$STATE"
    : >"$STATE/clockbound.log"
    build_shim
    start_netns
    start_chronyd
    start_relay
    start_daemon
    log "3.x setup ready (state and logs in $STATE)"
    ;;
stop)
    require_root
    mkdir -p "$STATE"
    stop_proc clockbound
    stop_proc relay
    stop_proc chronyd
    stop_proc netns
    # A segment left behind without its daemon ages into Unknown and misleads whatever
    # looks for a daemon on this machine later (the example, the CLI, other tests).
    rm -f "$SHM0" "$SHM1"
    ;;
ensure)
    require_root
    if ! pid_of clockbound >/dev/null || [ "$("$E2E_DIR/shmstatus" "$SHM1")" != Synchronized ] ||
        [ "$("$E2E_DIR/shmstatus" "$SHM0")" != Synchronized ]; then
        stop_proc clockbound
        start_daemon
    fi
    ;;
daemon-stop)
    require_root
    stop_proc clockbound
    ;;
daemon-restart)
    require_root
    stop_proc clockbound
    start_daemon
    ;;
env)
    echo "CLOCKBOUND_E2E_SETUP=$E2E_DIR/setup-3x.sh"
    echo "CLOCKBOUND_E2E_PIDFILE=$STATE/clockbound.pid"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d'
    exit 2
    ;;
esac
