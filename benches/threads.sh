#!/usr/bin/env bash
# Pause times of multi-threaded checkpoints (release build):
# 1. 16 threads hammering malloc/free, printf and thread creation while
#    COUNT (default 300) checkpoints are taken back to back: pause median,
#    p99 and max.
# 2. Suspend latency with 1, 16 and 200 idle threads (REPS checkpoints
#    each): how long until every thread is parked, and the whole pause.
# Prints one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-300}
REPS=${REPS:-50}
cargo build --release --examples -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# stress: 16 busy threads, $COUNT checkpoints"
target/release/examples/stress "$work/busy" "$COUNT" --threads 16 2>&1 >/dev/null | tail -1
rm -rf "$work/busy"
for n in 1 16 200; do
    echo "# idle: $n threads, $REPS checkpoints"
    target/release/examples/stress "$work/idle$n" "$REPS" --threads "$n" --idle 2>&1 >/dev/null | tail -1
    rm -rf "$work/idle$n"
done
