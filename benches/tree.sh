#!/usr/bin/env bash
# A tree of PROCS processes x MIB MiB against one process of PROCS x MIB
# MiB (benches/tree_workload.c, under `selfckpt run`, checkpointed from
# outside with `selfckpt checkpoint PID --wait`), interleaved REPS times:
#   pause    the longest stall any process of the workload saw (its own
#            1 ms ticker: threads parked, for a tree every member),
#   wall     request to set (or image) durable (`checkpoint --wait`),
#   stats    the root's `pause_ms` of stats.jsonl.
# Prints a markdown table (medians, best in brackets) on stdout. Target:
# the tree's pause at most 1.3 x the single process's.
#
#   REPS=5 PROCS=8 MIB=128 LEVEL=1 benches/tree.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
PROCS=${PROCS:-8}
MIB=${MIB:-128}
LEVEL=${LEVEL:-1}
work=$(mktemp -d /var/tmp/selfckpt-tree.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build --release --lib --bins -q >&2
cc -O2 -o "$work/tree_workload" benches/tree_workload.c
BIN=target/release

# one PROCS MIB: prints "pause_ms wall_ms stats_pause_ms".
one() {
    local procs=$1 mib=$2 d=$work/d out=$work/out
    rm -rf "$d" "$out"
    "$BIN/selfckpt" run --level "$LEVEL" --dir "$d" -- "$work/tree_workload" "$procs" "$mib" >"$out" 2>"$work/err" &
    local pid=$!
    while [ "$(grep -c '^ready' "$out" 2>/dev/null || true)" -lt "$procs" ]; do sleep 0.1; done
    sleep 0.3
    local t0 t1
    t0=$(date +%s%N)
    "$BIN/selfckpt" checkpoint "$pid" --wait --timeout 300 >/dev/null
    t1=$(date +%s%N)
    sleep 0.2
    # The root and its children (by their ids: they print their gaps).
    local kids
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    kill -TERM "$pid" $kids 2>/dev/null || true
    wait "$pid" || true
    python3 - "$out" "$d/stats.jsonl" "$(( (t1 - t0) / 1000000 ))" <<'PY'
import json, sys
out, stats, wall = sys.argv[1:]
gaps = [float(l.split()[1]) for l in open(out) if l.startswith("gap_ms")]
r = [json.loads(l) for l in open(stats)][-1]
print(f"{max(gaps):.1f} {wall} {r.get('pause_ms', 0):.1f}")
PY
}

declare -a tree single
for _ in $(seq "$REPS"); do
    tree+=("$(one "$PROCS" "$MIB")")
    single+=("$(one 1 $((PROCS * MIB)))")
    echo "tree ${tree[-1]} | single ${single[-1]}" >&2
done
python3 - "$PROCS" "$MIB" "${tree[@]}" -- "${single[@]}" <<'PY'
import statistics, sys
procs, mib = sys.argv[1:3]
rest = sys.argv[3:]
cut = rest.index("--")
rows = {"tree": rest[:cut], "single": rest[cut + 1:]}
def col(v, i):
    xs = [float(x.split()[i]) for x in v]
    return f"{statistics.median(xs):.0f} ({min(xs):.0f})"
print(f"| {procs} x {mib} MiB | pause ms | wall ms | root pause_ms |")
print("|---|---|---|---|")
for name, v in rows.items():
    print(f"| {name} | {col(v, 0)} | {col(v, 1)} | {col(v, 2)} |")
t = statistics.median(float(x.split()[0]) for x in rows["tree"])
s = statistics.median(float(x.split()[0]) for x in rows["single"])
print(f"\ntree pause / single pause: {t / s:.2f} (target <= 1.3)")
PY
