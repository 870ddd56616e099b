#!/usr/bin/env bash
# CI for libclockbound (the C library in ffi/): builds it and runs its tests, the C
# programs among them (they need `cc` and `c++`). Run from anywhere: `bash ffi/ci.sh`.
# Honours CARGO_TARGET_DIR, CC and CXX.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v "${CC:-cc}" >/dev/null || { echo "ffi/ci.sh: no C compiler (${CC:-cc})" >&2; exit 1; }
command -v "${CXX:-c++}" >/dev/null || { echo "ffi/ci.sh: no C++ compiler (${CXX:-c++})" >&2; exit 1; }

echo "==> ffi: build libclockbound.so / libclockbound.a"
cargo build -p clockbound-shm-ffi --lib

echo "==> ffi: tests (Rust unit tests; C and C++ programs against the built library)"
cargo test -p clockbound-shm-ffi
