#!/usr/bin/env bash
# Runs the crate against the real ClockBound daemons, one setup at a time:
#
#   2x   ClockBound 2.0.3 + chronyd: tests/e2e_2x.rs (feature `e2e`)
#   3x   ClockBound 3.0.0-rc.0 in a private network namespace: tests/e2e_3x.rs (feature
#        `e2e-v3`)
#
# Usage: bash e2e/run.sh [2x|3x|all]   (default: all)
#
# For each setup: start it (waits until the segment says Synchronized), run the suite,
# stop it (always, also on failure or Ctrl-C). CLOCK_REALTIME - CLOCK_MONOTONIC is recorded
# before and compared after: the run fails if anything stepped the clock.
#
# Needs root (the daemons write /var/run/clockbound). Without root it says so and exits 0,
# except under CI (CI=true), where that and any setup failure fail the run.
#
# Environment: CLOCKBOUND_E2E_CACHE (installed daemons), CLOCKBOUND_E2E_STATE (PID files,
# logs; default /run/clockbound-shm-e2e), CLOCKBOUND_E2E_CLOCK_TOLERANCE_US (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
E2E_NAME=run
# shellcheck source=lib.sh
source e2e/lib.sh

which="${1:-all}"
case "$which" in
2x) setups=(2x) ;;
3x) setups=(3x) ;;
all) setups=(2x 3x) ;;
*) die "usage: e2e/run.sh [2x|3x|all]" ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    [ "${CI:-}" = true ] && die "CI=true but not root: the end-to-end suites need root"
    log "SKIPPED: the end-to-end suites need root (the daemons write $SHM_DIR);"
    log "run \`sudo env PATH=\"\$PATH\" bash e2e/run.sh $which\` on a disposable Debian VM"
    exit 0
fi

tolerance_us="${CLOCKBOUND_E2E_CLOCK_TOLERANCE_US:-10}"
mkdir -p "$E2E_STATE_ROOT"
clock_file="$E2E_STATE_ROOT/clock-before"
timings=()

bash e2e/install.sh

e2e/clockcheck record "$clock_file"
current=""
cleanup() {
    local rc=$?
    if [ -n "$current" ]; then
        log "stopping the $current setup"
        bash "e2e/setup-$current.sh" stop || rc=1
    fi
    if ! e2e/clockcheck check "$clock_file" "$tolerance_us"; then
        log "FAILED: the machine's clock was stepped during the run"
        rc=1
    fi
    for t in "${timings[@]}"; do log "$t"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for setup in "${setups[@]}"; do
    current="$setup"
    start=$SECONDS
    bash "e2e/setup-$setup.sh" start
    timings+=("$setup: setup up in $((SECONDS - start)) s")
    # The variables the suite reads (setup script, daemon PID file, ...).
    while IFS= read -r line; do export "${line?}"; done < <(bash "e2e/setup-$setup.sh" env)

    start=$SECONDS
    case "$setup" in
    2x)
        nice cargo test --release --features e2e --test e2e_2x -- --test-threads=1 --nocapture
        ;;
    3x)
        nice cargo test --release --features e2e-v3 --test e2e_3x -- --test-threads=1 --nocapture
        ;;
    esac
    timings+=("$setup: suite took $((SECONDS - start)) s")

    bash "e2e/setup-$setup.sh" stop
    current=""
    # Checked after each setup as well, so a failure names the setup that caused it.
    e2e/clockcheck check "$clock_file" "$tolerance_us" ||
        die "the machine's clock was stepped during the $setup run"
done
log "all end-to-end runs passed (${setups[*]})"
