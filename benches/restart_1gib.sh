#!/usr/bin/env bash
# Checkpoint and restart of a process holding 1 GiB of `mixed` memory
# (thirds random / text-like / zero-touched), at zstd level 1 and `store`,
# REPS times each, interleaved. Prints one line per run: pause (threads
# stopped), image size, and restart latency (from launching
# `selfckpt restart` to the program running again after its checkpoint call).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
MIB=${MIB:-1024}
cargo build --release --bins --examples -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for rep in $(seq "$REPS"); do
    for level in 1 store; do
        out=$(target/release/examples/bigmem "$work/$level-$rep" "$MIB" "$level")
        img=$(ls "$work/$level-$rep"/*.ckpt)
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        t0=$(date +%s%N)
        at=$(target/release/selfckpt restart "$img" 2>/dev/null | awk '/restarted_at_ns/ {print $2}')
        echo "$out" | python3 -c "
import json,sys; d=json.load(sys.stdin)
print(f\"level {d['level']:>5}  mib {d['mib']}  pause {d['pause_ms']:7.1f} ms  dump {d['dump_gbps']:.2f} GB/s  image {d['image_bytes']/2**20:7.1f} MiB  restart {($at-$t0)/1e6:7.1f} ms\")"
        rm -rf "$work/$level-$rep"
    done
done
