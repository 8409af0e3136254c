#!/usr/bin/env bash
# Forked against ordinary checkpoints, interleaved in one run on the same
# workload (examples/bigmem.rs: MIB of PATTERN, one checkpoint through
# selfckpt::checkpoint()):
#   pause    `pause_ms` of the stats line (threads stopped),
#   durable  wall time of checkpoint() (request to image durable: fsync,
#            rename, directory fsync, stats line),
#   cow      `cow_bytes` (forked only), extra RSS (VmHWM - VmRSS before;
#            the child's memory is not in the program's VmHWM).
# Then the same with WRITE=1: a program rewriting all its memory during
# the dump (examples/forkwriter.rs, its own checkpoint()), for the
# copy-on-write worst case.
# Prints a markdown table (medians, best in brackets) on stdout.
#
#   REPS=5 MIB=1024 PATTERN=mixed LEVELS="1 store" benches/forked.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
MIB=${MIB:-1024}
PATTERN=${PATTERN:-mixed}
LEVELS=${LEVELS:-"1 store"}
work=$(mktemp -d /var/tmp/selfckpt-forked.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build --release --lib --bins --examples -q >&2
BIN=target/release

# one MODE LEVEL: one checkpoint of examples/bigmem (MIB of PATTERN; it
# checkpoints itself with selfckpt::checkpoint(), which returns once the
# image is durable); prints "pause_ms durable_ms cow_mib extra_rss_mib".
one() {
    local mode=$1 level=$2 d=$work/d forked=0
    rm -rf "$d"
    [ "$mode" = forked ] && forked=1
    SELFCKPT_FORKED=$forked "$BIN/examples/bigmem" "$d" "$MIB" "$level" "$PATTERN" >"$work/one.json"
    python3 - "$d/stats.jsonl" "$work/one.json" "$mode" <<'EOF'
import json, sys
stats, one, mode = sys.argv[1:]
r = [json.loads(l) for l in open(stats)][-1]
b = json.load(open(one))
assert r["state"] == "continue" and r["forked"] == (mode == "forked"), r
print(r["pause_ms"], b["checkpoint_ms"], r.get("cow_bytes", 0) / 2**20,
      (b["hwm_kib"] - b["rss_before_kib"]) / 1024)
EOF
}

# writer LEVEL: forkwriter rewriting MIB at full speed, forked; prints the same.
writer() {
    local d=$work/w
    rm -rf "$d"
    SELFCKPT_DIR=$d SELFCKPT_FORKED=1 SELFCKPT_LEVEL=$1 "$BIN/examples/forkwriter" "$MIB" 2 self >/dev/null
    python3 - "$d/stats.jsonl" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
assert r["state"] == "continue" and r["forked"], r
print(r["pause_ms"], r["total_ms"], r["cow_bytes"] / 2**20, "-")
EOF
}

summary() { # FILE column: "median (best)"
    sort -g -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.1f (%.1f)", m, v[1]}'
}
med() { sort -g -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

echo "| workload | level | mode | pause ms | durable ms | cow MiB | extra RSS MiB | pause ÷ ordinary | durable ÷ ordinary |"
echo "|---|---|---|---|---|---|---|---|---|"
for level in $LEVELS; do
    : >"$work/plain.$level"
    : >"$work/forked.$level"
    for ((r = 0; r < REPS; r++)); do
        echo "level $level rep $r" >&2
        one plain "$level" | tee -a "$work/plain.$level" >&2
        one forked "$level" | tee -a "$work/forked.$level" >&2
    done
    pp=$(med "$work/plain.$level" 1)
    pd=$(med "$work/plain.$level" 2)
    for mode in plain forked; do
        f=$work/$mode.$level
        ratio_p=$(awk -v a="$(med "$f" 1)" -v b="$pp" 'BEGIN {printf "%.3f", a / b}')
        ratio_d=$(awk -v a="$(med "$f" 2)" -v b="$pd" 'BEGIN {printf "%.2f", a / b}')
        echo "| $MIB MiB $PATTERN, idle | $level | $mode | $(summary "$f" 1) | $(summary "$f" 2) | $(summary "$f" 3) | $(summary "$f" 4) | $ratio_p | $ratio_d |"
    done
    : >"$work/writer.$level"
    for ((r = 0; r < REPS; r++)); do
        writer "$level" | tee -a "$work/writer.$level" >&2
    done
    f=$work/writer.$level
    echo "| $MIB MiB rewritten at full speed (2 threads) | $level | forked | $(summary "$f" 1) | $(summary "$f" 2) (total_ms) | $(summary "$f" 3) | - | - | - |"
done
