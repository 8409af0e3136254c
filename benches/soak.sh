#!/usr/bin/env bash
# Soak test (not run by CI): a program (examples/ckloop) works for
# DURATION seconds while it is checkpointed by SIGUSR1 every INTERVAL_MS;
# every DURATION/SAMPLES seconds the newest image is kept aside. Then the
# program's own final line is compared with an uninterrupted run, each kept
# image is verified and restarted, and each restart must end with the same
# final line.
#
# usage: benches/soak.sh [DURATION_S=600] [SAMPLES=20] [INTERVAL_MS=100]
# env:   PROFILE=debug|release (default debug), MIB (working set, default 8)
set -euo pipefail
duration=${1:-600}
samples=${2:-20}
interval_ms=${3:-100}
profile=${PROFILE:-debug}
mib=${MIB:-8}
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build -q "${flag[@]}" --bin selfckpt --example ckloop
work=$(mktemp -d /tmp/selfckpt-soak.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/kept" "$work/bin/examples"
# Private copies: a rebuild during the soak must not change the
# executable the images were taken from (restart would refuse them).
cp "target/$profile/selfckpt" "$work/bin/"
cp "target/$profile/examples/ckloop" "$work/bin/examples/"
bin=$work/bin
sleep_ms=10
steps=$(( duration * 1000 / sleep_ms ))
echo "soak: ${duration}s, checkpoint every ${interval_ms}ms, ${samples} kept images, ${mib} MiB, ${steps} steps ($profile)"
ref=$("$bin/examples/ckloop" "$work/ref" "$steps" --mib "$mib" --sleep-ms 0 | tail -n 1)
"$bin/examples/ckloop" "$work/ck" "$steps" --mib "$mib" --sleep-ms "$sleep_ms" --keep 50 \
    --fast-after-restart 1 >"$work/run.out" 2>"$work/run.err" &
pid=$!
# The trigger handler is installed before the first step is printed.
until [ -s "$work/run.out" ]; do
    kill -0 "$pid" || { echo "soak: FAILED: the program did not start"; cat "$work/run.err"; exit 1; }
    sleep 0.01
done
start=$(date +%s)
signals=0
next_keep=$(( start + duration / samples ))
kept=0
while kill -0 "$pid" 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$duration" ]; do
    kill -USR1 "$pid" 2>/dev/null && signals=$((signals + 1))
    sleep "$(printf '0.%03d' "$interval_ms")"
    now=$(date +%s)
    if [ "$now" -ge "$next_keep" ] && [ "$kept" -lt "$samples" ]; then
        newest=$(ls -1 "$work/ck"/*.ckpt 2>/dev/null | sort | tail -n 1 || true)
        if [ -n "$newest" ]; then
            ln "$newest" "$work/kept/" 2>/dev/null && kept=$((kept + 1))
        fi
        next_keep=$(( next_keep + duration / samples ))
    fi
done
images=$(ls -1 "$work/ck"/*.ckpt | wc -l)
last=$(ls -1 "$work/ck"/*.ckpt | sort | tail -n 1)
seq=$("$bin/selfckpt" inspect --json "$last" | sed -n 's/.*"sequence": \([0-9]*\).*/\1/p')
wait "$pid" || { echo "soak: FAILED: the program exited with $?"; cat "$work/run.err"; exit 1; }
got=$(tail -n 1 "$work/run.out")
pass=0; fail=0
if [ "$got" = "$ref" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "soak: the checkpointed run ended with '$got', want '$ref'"; fi
for img in "$work"/kept/*.ckpt; do
    if ! "$bin/selfckpt" verify "$img" >/dev/null 2>"$work/v.err"; then
        fail=$((fail + 1)); echo "soak: $(basename "$img") does not verify: $(cat "$work/v.err")"; continue
    fi
    out=$(timeout 600 "$bin/selfckpt" restart "$img" 2>"$work/r.err" | tail -n 1) || true
    if [ "$out" = "$ref" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "soak: restart of $(basename "$img") ended with '$out': $(tail -n 3 "$work/r.err")"
    fi
done
echo "soak: ${signals} checkpoint signals, ${seq:-?} checkpoints taken, ${images} images kept by the program, ${kept} restarted"
echo "soak: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
