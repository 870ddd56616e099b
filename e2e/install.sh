#!/usr/bin/env bash
# Installs what the end-to-end suites need, from the package registries only:
#   - chrony (the NTP server the daemons are synchronised to), and the small tools the
#     setups use (iproute2, util-linux, a C compiler for the seccomp shim, python3);
#   - ClockBound 2.0.3 (`clock-bound-d`) and ClockBound 3.0.0-rc.0 (`clock-bound`,
#     feature `daemon`), each into its own root under a cache directory, since both
#     install a binary named `clockbound`.
# A second run finds everything in place and returns in seconds.
#
# Usage (root): bash e2e/install.sh
# Environment:
#   CLOCKBOUND_E2E_CACHE  cache directory (default: $HOME/.cache/clockbound-shm-e2e)
#   E2E_BUILD_JOBS        parallel rustc jobs for the daemon builds (default: 2)
set -euo pipefail

cache="${CLOCKBOUND_E2E_CACHE:-$HOME/.cache/clockbound-shm-e2e}"
jobs="${E2E_BUILD_JOBS:-2}"
mkdir -p "$cache"

log() { printf '[e2e install] %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
need_apt=()
command -v chronyd >/dev/null 2>&1 || [ -x /usr/sbin/chronyd ] || need_apt+=(chrony)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
for tool in unshare nsenter setpriv; do
    command -v "$tool" >/dev/null 2>&1 || { need_apt+=(util-linux); break; }
done
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)

if [ "${#need_apt[@]}" -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -q
    # chrony's package scripts try to start the service; in a container without an init
    # system that fails harmlessly, and on a real host we stop it again below.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
else
    log "system packages already present"
fi

# The distribution's chronyd service (if an init system started one) would own the
# command socket and may discipline the clock: the setups need it not running.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet chrony 2>/dev/null; then
    log "stopping and disabling the system chrony service"
    systemctl stop chrony
    systemctl disable chrony >/dev/null 2>&1 || true
fi

# --- the daemons -------------------------------------------------------------------------
# install_daemon ROOT_NAME BINARY_TO_CHECK CARGO_INSTALL_ARGS...
install_daemon() {
    local root="$cache/$1" bin="$2"
    shift 2
    if [ -x "$root/bin/$bin" ]; then
        log "$* : already installed in $root"
        return 0
    fi
    log "cargo install $* (several minutes; niced, $jobs jobs)"
    local start=$SECONDS
    # Own target dir in the cache (removed once installed): an interrupted build resumes,
    # and the project's target directory is left alone. --locked: the dependency versions
    # each release was published with.
    CARGO_BUILD_JOBS="$jobs" nice -n 19 cargo install --locked "$@" \
        --root "$root" --target-dir "$cache/build-$1"
    log "$1 built in $((SECONDS - start)) s"
    # Only the installed binaries are worth caching.
    rm -rf "$cache/build-$1"
}

install_daemon v2 clockbound clock-bound-d --version =2.0.3
install_daemon v3 clockbound clock-bound --version =3.0.0-rc.0 --features daemon

log "done: $cache/v2/bin/clockbound (2.0.3), $cache/v3/bin/clockbound (3.0.0-rc.0)"
