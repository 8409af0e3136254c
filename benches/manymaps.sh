#!/usr/bin/env bash
# Restart latency of a program with N separate mappings (default 60000):
# from launching `selfckpt restart` to the program running again after its
# checkpoint call. REPS runs (default 5); prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
N=${N:-60000}
cargo build --release --bins --examples -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for rep in $(seq "$REPS"); do
    target/release/examples/manymaps "$work/$rep" "$N" >/dev/null
    img=$(ls "$work/$rep"/*.ckpt)
    t0=$(date +%s%N)
    out=$(target/release/selfckpt restart "$img" 2>/dev/null)
    at=$(echo "$out" | awk '/restarted_at_ns/ {print $2}')
    echo "$out" | grep -q "restarted ok $N"
    echo "mappings $N  restart $(( (at - t0) / 1000000 )) ms"
    rm -rf "${work:?}/$rep"
done
