#!/usr/bin/env bash
# Runs every check: formatting, lints, unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
if [ -x arch/check-aarch64.sh ]; then arch/check-aarch64.sh; fi
