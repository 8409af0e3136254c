#!/usr/bin/env bash
# The main job: build selfckpt, run a program, checkpoint it with
# `kill -USR1`, kill it with SIGKILL, restart it from the image, and check
# that its output equals an uninterrupted run's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bins --examples
bin=target/release/selfckpt
demo=target/release/examples/demo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== 1. uninterrupted run (reference)"
"$demo" "$work/ref-ckpt" 40 > "$work/reference.txt"
tail -n 2 "$work/reference.txt"

echo "== 2. the same run, checkpointed by kill -USR1 after 1.5 s, then killed with SIGKILL"
"$demo" "$work/ckpt" 40 > "$work/first.txt" &
pid=$!
sleep 1.5
kill -USR1 "$pid"
for _ in $(seq 100); do ls "$work"/ckpt/*.ckpt >/dev/null 2>&1 && break; sleep 0.05; done
sleep 0.3
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
image=$(ls "$work"/ckpt/*.ckpt | tail -n 1)
"$bin" verify "$image"
"$bin" inspect "$image" | sed -n '1,6p'
offset=$("$bin" inspect --json "$image" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([f["offset"] for f in d["fds"] if f["fd"]==1][0])')
echo "   stdout had $offset bytes when the checkpoint was taken"

echo "== 3. restart from the image (this shell's stdout)"
start=$(date +%s.%N)
"$bin" restart "$image" > "$work/restarted.txt"
echo "   restarted run finished in $(echo "$(date +%s.%N) - $start" | bc) s"
head -c "$offset" "$work/first.txt" > "$work/combined.txt"
cat "$work/restarted.txt" >> "$work/combined.txt"
if cmp -s "$work/reference.txt" "$work/combined.txt"; then
    echo "== OK: output before the checkpoint + output after restart == uninterrupted output ($(wc -l < "$work/combined.txt") lines)"
else
    echo "== MISMATCH"; diff "$work/reference.txt" "$work/combined.txt" | head; exit 1
fi
