# Helpers shared by the setup scripts (sourced, not run).
#
# Every process a setup starts is recorded in a PID file under its state directory together
# with the binary it runs; stopping checks that the PID still runs that binary before
# signalling it, so a recycled PID is never hit. Nothing is ever killed by name.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E_CACHE="${CLOCKBOUND_E2E_CACHE:-$HOME/.cache/clockbound-shm-e2e}"
E2E_STATE_ROOT="${CLOCKBOUND_E2E_STATE:-/run/clockbound-shm-e2e}"
SHM_DIR=/var/run/clockbound
SHM0="$SHM_DIR/shm0"
SHM1="$SHM_DIR/shm1"
CAP_SYS_TIME_BIT=25

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${E2E_NAME:-e2e}" "$*"; }
die() { log "ERROR: $*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (the daemons write $SHM_DIR)"
}

# Prefix for a command that must run without CAP_SYS_TIME: removed from the inheritable and
# bounding sets, so neither the command nor anything it executes can hold it. An array, not
# a function: `"${NO_SYS_TIME[@]}" CMD &` makes $! the PID of CMD itself (setpriv execs it).
NO_SYS_TIME=(setpriv --inh-caps=-sys_time --bounding-set=-sys_time --)

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
    local state
    state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# record_pid NAME PID BINARY: waits until PID has executed BINARY (it may still be setpriv
# or a shell for a moment), then writes PID to STATE/NAME.pid and the binary to NAME.exe.
record_pid() {
    local name="$1" pid="$2" want i
    want="$(readlink -f "$3")"
    echo "$pid" >"$STATE/$name.pid"
    for ((i = 0; i < 100; i++)); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$want" ] && break
        pid_alive "$pid" || die "$name (PID $pid) exited at start; log: $STATE/$name.log"
        sleep 0.05
    done
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$want" ] ||
        die "PID $pid did not become $want within 5 s"
    echo "$want" >"$STATE/$name.exe"
}

# pid_of NAME: prints the recorded PID of NAME if it is alive and still runs the recorded
# binary (fails otherwise).
pid_of() {
    local name="$1" pid exe
    [ -f "$STATE/$name.pid" ] || return 1
    pid="$(cat "$STATE/$name.pid")"
    pid_alive "$pid" || return 1
    if [ -s "$STATE/$name.exe" ]; then
        exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
        [ "$exe" = "$(cat "$STATE/$name.exe")" ] || return 1
    fi
    echo "$pid"
}

# check_no_sys_time NAME: fails unless the recorded process runs without CAP_SYS_TIME.
check_no_sys_time() {
    local name="$1" pid capeff
    pid="$(pid_of "$name")" || die "$name is not running (see $STATE/$name.log)"
    capeff="$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")"
    if (( (16#$capeff >> CAP_SYS_TIME_BIT) & 1 )); then
        die "$name (PID $pid) has CAP_SYS_TIME (CapEff $capeff): refusing to go on"
    fi
    log "$name: PID $pid, CapEff $capeff (no CAP_SYS_TIME)"
}

# stop_proc NAME [TIMEOUT_S]: SIGTERM the recorded process, SIGKILL after the timeout.
stop_proc() {
    local name="$1" timeout="${2:-10}" pid i
    if ! pid="$(pid_of "$name")"; then
        rm -f "$STATE/$name.pid" "$STATE/$name.exe"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "$name (PID $pid) ignored SIGTERM for ${timeout} s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do pid_alive "$pid" || break; sleep 0.1; done
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.exe"
    log "stopped $name (PID $pid)"
}

# wait_status FILE WANT TIMEOUT_S [NAME [GENERATION]]: waits until the segment's status is
# WANT (and, if given, its generation is no longer GENERATION: a restarted daemon reuses a
# valid segment, whose status is the previous daemon's until the new one writes); while
# waiting, fails early if process NAME died.
wait_status() {
    local file="$1" want="$2" timeout="$3" name="${4:-}" old_gen="${5:-}" start=$SECONDS got=""
    while (( SECONDS - start < timeout )); do
        got="$("$E2E_DIR/shmstatus" "$file")"
        if [ "$got" = "$want" ] &&
            { [ -z "$old_gen" ] || [ "$("$E2E_DIR/shmstatus" --generation "$file")" != "$old_gen" ]; }; then
            log "$file: $want after $((SECONDS - start)) s"
            return 0
        fi
        if [ -n "$name" ] && ! pid_of "$name" >/dev/null; then
            die "$name exited while waiting for $want in $file (last: $got); log: $STATE/$name.log"
        fi
        sleep 0.2
    done
    die "$file not $want after $timeout s (last: $got)${name:+; log: $STATE/$name.log}"
}

# other_setup_running OTHER: true if the other setup (2x or 3x) has a live daemon recorded.
other_setup_running() {
    local other="$1"
    STATE="$E2E_STATE_ROOT/$other" pid_of clockbound >/dev/null 2>&1
}
