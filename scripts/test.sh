#!/usr/bin/env bash
# Runs every check: formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The end-to-end tests run the example programs: build them first.
cargo build --lib --examples   # --lib: libselfckpt.so and .a for the C and LD_PRELOAD tests
cargo test --all-targets 2>&1 | tee "$log"
scripts/fuzz.sh 60
if [ -x arch/check-aarch64.sh ]; then
    arch/check-aarch64.sh
else
    echo "skipped: aarch64 restorer check (arch/aarch64/restorer.S is not written yet)"
fi
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
