#!/usr/bin/env bash
# The ClockBound 2.x setup, on loopback only, never touching the machine's clock:
#
#   chronyd "upstream"  local stratum 8, serves NTP on 127.0.0.1:11123, no sources
#   chronyd "tracked"   synchronised to upstream, owns /var/run/chrony/chronyd.sock
#                       (the 2.x daemon asks it for its tracking data there)
#   clockbound 2.0.3    reads chronyd's tracking, writes /var/run/clockbound/shm0
#
# Both chronyds run with -x (never adjust the clock) and everything runs without
# CAP_SYS_TIME (checked in /proc/PID/status). A chronyd that only has `local stratum` as
# reference never makes the daemon leave Unknown, hence the pair.
#
# The daemon runs in one of two modes:
#   plain       `clockbound -d`: clock disruption support off (the usual configuration
#               on a machine without a VMClock device).
#   disruption  disruption support on. It needs /dev/vmclock0, which this machine does not
#               have: the daemon runs in a private mount namespace whose /dev holds a
#               VMClock page made here (STATE/vmclock0, disruption marker 0). Readers in the
#               test process pass that file as their VMClock path.
#
# Usage (root):
#   setup-2x.sh start                  chronyds + daemon (plain), wait for Synchronized
#   setup-2x.sh stop                   stop everything this setup started
#   setup-2x.sh daemon-restart [MODE]  stop the daemon, start it in MODE (default plain)
#   setup-2x.sh daemon-stop            stop the daemon only
#   setup-2x.sh ensure                 (re)start the plain daemon unless it runs, Synchronized
#   setup-2x.sh crash-loop N           remove shm0, then start the daemon N times with
#                                      disruption support and no VMClock device: each start
#                                      recreates shm0 (truncating it), then panics
#   setup-2x.sh env                    print the variables the Rust suite reads
set -euo pipefail
E2E_NAME=setup-2x
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

STATE="$E2E_STATE_ROOT/2x"
DAEMON="$E2E_CACHE/v2/bin/clockbound"
CHRONYD="$(command -v chronyd || echo /usr/sbin/chronyd)"
CHRONY_SOCK_DIR=/var/run/chrony
UPSTREAM_PORT=11123

start_chronyds() {
    mkdir -p "$CHRONY_SOCK_DIR"
    chmod 0750 "$CHRONY_SOCK_DIR"

    cat >"$STATE/upstream.conf" <<CONF
# NTP server on loopback, its own local clock as reference.
local stratum 8
bindaddress 127.0.0.1
port $UPSTREAM_PORT
allow 127.0.0.1
cmdport 0
bindcmdaddress /
pidfile $STATE/chronyd-upstream.chrony-pid
CONF
    cat >"$STATE/tracked.conf" <<CONF
# Synchronised to the upstream chronyd; no NTP service of its own. Its command socket is
# the one the ClockBound 2.x daemon queries.
server 127.0.0.1 port $UPSTREAM_PORT iburst minpoll 0 maxpoll 0
port 0
cmdport 0
bindcmdaddress $CHRONY_SOCK_DIR/chronyd.sock
pidfile $STATE/chronyd-tracked.chrony-pid
CONF
    local name
    for name in upstream tracked; do
        # -d: foreground, log to stderr; -x: never touch the clock; -L 0: log everything.
        "${NO_SYS_TIME[@]}" "$CHRONYD" -d -x -u root -L 0 -f "$STATE/$name.conf" \
            </dev/null >"$STATE/chronyd-$name.log" 2>&1 &
        record_pid "chronyd-$name" $! "$CHRONYD"
        check_no_sys_time "chronyd-$name"
    done
    # The tracked chronyd must be synchronised before the daemon leaves Unknown; with
    # iburst and a 1 s poll that takes a few seconds.
    local i
    for ((i = 0; i < 300; i++)); do
        if chronyc -h "$CHRONY_SOCK_DIR/chronyd.sock" -n tracking 2>/dev/null |
            grep -q '^Leap status *: Normal'; then
            log "tracked chronyd synchronised after $((i / 10)) s"
            return 0
        fi
        sleep 0.1
    done
    chronyc -h "$CHRONY_SOCK_DIR/chronyd.sock" -n tracking || true
    die "tracked chronyd not synchronised after 30 s (logs in $STATE)"
}

# A VMClock page (the layout of the kernel's vmclock device, version 1) with disruption
# marker 0, padded to a page.
make_vmclock_page() {
    python3 - "$STATE/vmclock0" <<'PY'
import struct, sys
page = bytearray(4096)
struct.pack_into("<IIHBB", page, 0, 0x4B4C4356, 104, 1, 0, 0)  # magic, size, version, counter_id, time_type
struct.pack_into("<I", page, 12, 0)                            # seq_count (even: stable)
struct.pack_into("<Q", page, 16, 0)                            # disruption_marker
struct.pack_into("<B", page, 34, 2)                            # clock_status: Synchronized
open(sys.argv[1], "wb").write(page)
PY
}

# start_daemon MODE
start_daemon() {
    local mode="${1:-plain}"
    other_setup_running 3x && die "the 3.x setup is running: both daemons write $SHM0"
    pid_of clockbound >/dev/null && die "the daemon already runs"
    local old_gen
    old_gen="$("$E2E_DIR/shmstatus" --generation "$SHM0")"
    case "$mode" in
    plain)
        "${NO_SYS_TIME[@]}" "$DAEMON" -d </dev/null >>"$STATE/clockbound.log" 2>&1 &
        ;;
    disruption)
        make_vmclock_page
        # unshare and sh exec into the daemon: $! is the daemon's PID. The private /dev
        # (a tmpfs with the page and a few standard nodes) is visible to the daemon only.
        unshare --mount --propagation private -- sh -c '
            set -e
            state="$1"; shift
            mkdir -p "$state/dev"
            mount -t tmpfs -o mode=0755 e2e-dev "$state/dev"
            for node in null zero random urandom; do
                touch "$state/dev/$node"
                mount --bind "/dev/$node" "$state/dev/$node"
            done
            touch "$state/dev/vmclock0"
            mount --bind "$state/vmclock0" "$state/dev/vmclock0"
            mount --rbind "$state/dev" /dev
            exec "$@"
        ' sh "$STATE" "${NO_SYS_TIME[@]}" "$DAEMON" \
            </dev/null >>"$STATE/clockbound.log" 2>&1 &
        ;;
    *) die "unknown daemon mode: $mode" ;;
    esac
    record_pid clockbound $! "$DAEMON"
    echo "$mode" >"$STATE/clockbound.mode"
    check_no_sys_time clockbound
    wait_status "$SHM0" Synchronized 60 clockbound "$old_gen"
}

crash_loop() {
    local n="$1" i pid rc
    other_setup_running 3x && die "the 3.x setup is running"
    pid_of clockbound >/dev/null && die "stop the daemon first (daemon-stop)"
    # A valid segment would be reused as is; without one (as after a reboot: /var/run is a
    # tmpfs) every start recreates it with a truncating create before panicking.
    rm -f "$SHM0"
    for ((i = 1; i <= n; i++)); do
        # Disruption support on, no VMClock device: the daemon opens the segment (recreating
        # it when it is unusable), then panics.
        "${NO_SYS_TIME[@]}" "$DAEMON" </dev/null >>"$STATE/clockbound-crash.log" 2>&1 &
        pid=$!
        echo "$pid" >"$STATE/clockbound-crash.pid"
        rc=0
        wait "$pid" || rc=$?
        log "crash-loop $i/$n: daemon PID $pid exited with status $rc; shm0: $("$E2E_DIR/shmstatus" "$SHM0")"
        [ "$rc" -ne 0 ] || die "the daemon was expected to fail at start"
        sleep 0.2
    done
    rm -f "$STATE/clockbound-crash.pid"
}

cmd="${1:-}"
case "$cmd" in
start)
    require_root
    [ -x "$DAEMON" ] || die "$DAEMON missing: run e2e/install.sh"
    other_setup_running 3x && die "the 3.x setup is running: stop it first"
    mkdir -p "$STATE"
    : >"$STATE/clockbound.log"
    start_chronyds
    start_daemon plain
    log "2.x setup ready (state and logs in $STATE)"
    ;;
stop)
    require_root
    mkdir -p "$STATE"
    stop_proc clockbound
    stop_proc chronyd-tracked
    stop_proc chronyd-upstream
    rm -f "$CHRONY_SOCK_DIR/chronyd.sock"
    # A segment left behind without its daemon ages into Unknown and misleads whatever
    # looks for a daemon on this machine later (the example, the CLI, other tests).
    rm -f "$SHM0" "$SHM1"
    ;;
ensure)
    # What every test starts from: the plain daemon running, the segment Synchronized.
    require_root
    if ! pid_of clockbound >/dev/null || [ "$(cat "$STATE/clockbound.mode" 2>/dev/null)" != plain ] ||
        [ "$("$E2E_DIR/shmstatus" "$SHM0")" != Synchronized ]; then
        stop_proc clockbound
        start_daemon plain
    fi
    ;;
daemon-stop)
    require_root
    stop_proc clockbound
    ;;
daemon-restart)
    require_root
    stop_proc clockbound
    start_daemon "${2:-plain}"
    ;;
crash-loop)
    require_root
    crash_loop "${2:-8}"
    ;;
env)
    echo "CLOCKBOUND_E2E_SETUP=$E2E_DIR/setup-2x.sh"
    echo "CLOCKBOUND_E2E_PIDFILE=$STATE/clockbound.pid"
    echo "CLOCKBOUND_E2E_VMCLOCK=$STATE/vmclock0"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d'
    exit 2
    ;;
esac
