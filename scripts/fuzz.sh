#!/usr/bin/env bash
# Fuzzes the image reader (fuzz/fuzz_targets/image_reader.rs) for a bounded
# time: scripts/fuzz.sh SECONDS (default 60). Exits non-zero on a crash,
# leaving the input in fuzz/artifacts/image_reader/.
#
# libFuzzer needs no nightly here: coverage comes from the stable
# `-Cpasses=sancov-module` flags and no sanitizer is used (`-s none`).
# With cargo-fuzz installed it is used; otherwise the same flags are passed
# to plain cargo (force that with SELFCKPT_FUZZ_PLAIN_CARGO=1).
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/../fuzz"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
target=x86_64-unknown-linux-gnu
[ "$(uname -m)" = aarch64 ] && target=aarch64-unknown-linux-gnu
mkdir -p corpus/image_reader artifacts/image_reader
args=(corpus/image_reader -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048
      -timeout=10 -artifact_prefix=artifacts/image_reader/ -print_final_stats=1)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -z "${SELFCKPT_FUZZ_PLAIN_CARGO:-}" ] && cargo fuzz --version >/dev/null 2>&1; then
    cargo fuzz build -s none image_reader
else
    echo "fuzz: cargo-fuzz not installed; building with cargo and the sancov flags"
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cdebug-assertions -Ccodegen-units=1" \
        cargo build --release --target "$target" --bin image_reader
fi
# Where cargo put it (CARGO_TARGET_DIR when the caller set one).
bin=${CARGO_TARGET_DIR:-target}/$target/release/image_reader
status=0
"$bin" "${args[@]}" >"$log" 2>&1 || status=$?
tail -n 4 "$log"
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
if [ "$status" -ne 0 ]; then
    grep -E "ERROR|panicked|Test unit written" "$log" || true
    echo "fuzz: image_reader FAILED after ${runs:-?} runs (exit $status); see fuzz/artifacts/image_reader/"
    exit 1
fi
echo "fuzz: image_reader ${runs:-?} runs in ${secs}s, no crash"
