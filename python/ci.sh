#!/usr/bin/env bash
# CI for the Python package in python/: format and lints of its Rust crate, the package built
# and installed with pip (maturin from PyPI) into a virtual environment, its tests, and one
# benchmark line. Run from anywhere: `bash python/ci.sh`.
#
# Environment:
#   PYTHON            interpreter for the main virtual environment (default: python3)
#   EXTRA_PYTHONS     more interpreters to run the tests under, space separated (default: none),
#                     e.g. "python3.9 python3.13"; each gets python/.venv-<name>
#   CARGO_TARGET_DIR  Rust build directory to reuse (default: python/target)
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD

step() { printf '\n==> python: %s\n' "$*"; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
python=${PYTHON:-python3}

step "format (cargo fmt, python/ is its own workspace)"
cargo fmt --all -- --check

step "clippy (warnings denied)"
cargo clippy --all-targets -- -D warnings

# Builds and installs the package from this directory (PEP 517: pip fetches maturin and
# maturin runs cargo) into a virtual environment, then runs the tests there.
test_with() {
    local interpreter=$1 venv=$2
    step "virtual environment $venv ($("$interpreter" --version 2>&1))"
    if [ ! -x "$venv/bin/python" ]; then
        "$interpreter" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet "pytest>=7"

    step "pip install ./python (maturin build, release)"
    # --force-reinstall: the version does not change between commits, the code does.
    "$venv/bin/python" -m pip install --force-reinstall --no-deps "$here"

    step "pytest ($interpreter)"
    # The `pytest` entry point, not `python -m pytest`: the latter puts the current directory
    # first on sys.path, where ./clockbound_shm (without the compiled module) would shadow
    # the installed package.
    "$venv/bin/pytest" -q -p no:cacheprovider tests
}

test_with "$python" "$here/.venv"
for extra in ${EXTRA_PYTHONS:-}; do
    test_with "$extra" "$here/.venv-$(basename "$extra")"
done

step "type stubs match the compiled module (mypy stubtest), package type-checks (mypy --strict)"
"$here/.venv/bin/python" -m pip install --quiet "mypy>=1.10"
# From another directory, so that the installed package is the one checked.
(cd / && "$here/.venv/bin/python" -m mypy.stubtest clockbound_shm)
"$here/.venv/bin/python" -m mypy --strict --no-incremental clockbound_shm bench.py

step "benchmark line (one short run)"
"$here/.venv/bin/python" bench.py
