#!/usr/bin/env bash
# Whole-process checkpoint and restart of a workload, side by side with the
# hardware limits measured in the same run on the same bytes:
#   zstd -T2 at the same level (speed and size),
#   dd conv=fdatasync of as many bytes as the image stores,
#   memcpy bandwidth,
#   CRIU, only when a criu >= 4.1 is on PATH (never built here).
# Contenders are interleaved, REPS times each; the table gives median and
# best. Prints a markdown table on stdout (progress on stderr).
#
#   REPS=5 SIZES="256 1024" PATTERNS="random text zerotouched untouched mixed" \
#   LEVELS="store fast3 1 3" UNTOUCHED_MIB=8192 [ROWS=rows.tsv] benches/compare.sh
#
# The workload is examples/bigmem.rs (a Rust program linking the crate).
# Everything workload-specific sits in the three functions below: to
# measure a C program under `selfckpt run` + `selfckpt checkpoint PID
# --wait` instead, rewrite them and keep the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
SIZES=${SIZES:-"256 1024"}
PATTERNS=${PATTERNS:-"random text zerotouched untouched mixed"}
LEVELS=${LEVELS:-"store fast3 1 3"}
UNTOUCHED_MIB=${UNTOUCHED_MIB:-8192}
work=$(mktemp -d /var/tmp/selfckpt-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build --release --bins --examples -q >&2
BIN=target/release

# --- the workload -----------------------------------------------------------
# workload_checkpoint DIR MIB LEVEL PATTERN: start the workload holding MIB
# of PATTERN, take one checkpoint into DIR at LEVEL, print one JSON line with
# at least pause_ms, checkpoint_ms, image_bytes, bytes_stored and image.
workload_checkpoint() { "$BIN/examples/bigmem" "$1" "$2" "$3" "$4"; }
# workload_restart IMAGE: restart it; print launch-to-running milliseconds,
# fail if the restarted program finds its memory changed.
workload_restart() {
    local t0 out at
    t0=$(date +%s%N)
    out=$("$BIN/selfckpt" restart "$1" 2>&1) || { echo "restart failed: $out" >&2; return 1; }
    grep -q "restarted ok" <<<"$out" || { echo "restart wrong: $out" >&2; return 1; }
    at=$(awk '/restarted_at_ns/ {print $2}' <<<"$out")
    echo $(((at - t0) / 1000))
}
# pattern_file FILE MIB PATTERN: the same bytes the workload holds.
pattern_file() { "$BIN/examples/bigmem" --write-pattern "$1" "$2" "$3"; }
# -----------------------------------------------------------------------------

now_us() { echo $(($(date +%s%N) / 1000)); }
zstd_flag() { case $1 in fast*) echo "--fast=${1#fast}" ;; *) echo "-$1" ;; esac; }

# ROWS=FILE keeps the raw rows (appended) so several runs with different
# settings make one table.
rows=${ROWS:-$work/rows.tsv}
[ -n "${ROWS:-}" ] || : >"$rows"
memcpy=$("$BIN/examples/bigmem" --memcpy 1024 | python3 -c 'import json,sys; print(json.load(sys.stdin)["memcpy_gbps"])')
criu_ok=no
if command -v criu >/dev/null && criu --version 2>/dev/null | awk '/Version/ {split($2,v,"."); exit !(v[1]>4 || (v[1]==4 && v[2]>=1))}'; then
    criu_ok=yes
fi

for pattern in $PATTERNS; do
    for mib in $SIZES; do
        [ "$pattern" = untouched ] && mib=$UNTOUCHED_MIB
        pf=$work/pattern.bin
        if [ "$pattern" != untouched ]; then pattern_file "$pf" "$mib" "$pattern"; fi
        for rep in $(seq "$REPS"); do
            for level in $LEVELS; do
                echo "$pattern $mib MiB level $level rep $rep" >&2
                d=$work/img
                rm -rf "$d"
                js=$(workload_checkpoint "$d" "$mib" "$level" "$pattern")
                img=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["image"])' "$js")
                rs_us=$(workload_restart "$img")
                stored=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes_stored"])' "$js")
                z_us=- z_bytes=- dd_us=-
                if [ "$pattern" != untouched ]; then
                    if [ "$level" != store ]; then
                        f=$(zstd_flag "$level")
                        t=$(now_us)
                        zstd -q -T2 "$f" -c "$pf" >"$work/z.zst"
                        z_us=$(($(now_us) - t))
                        z_bytes=$(stat -c %s "$work/z.zst")
                        rm -f "$work/z.zst"
                    elif [ "$stored" -ge 1048576 ]; then
                        t=$(now_us)
                        dd if="$pf" of="$work/dd.out" bs=1M count=$((stored >> 20)) conv=fdatasync status=none
                        dd_us=$(($(now_us) - t))
                        rm -f "$work/dd.out"
                    fi
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pattern" "$mib" "$level" "$js" "$rs_us" "$z_us" "$z_bytes" "$dd_us" >>"$rows"
                rm -rf "$d"
            done
        done
        rm -f "$pf"
        [ "$pattern" = untouched ] && break
    done
done

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), memcpy ${memcpy} GB/s, $(nproc) CPUs, $(uname -r), $(date -u +%F)" >&2
python3 - "$rows" "$memcpy" "$criu_ok" <<'EOF'
import json, sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
memcpy = float(sys.argv[2])
groups = {}
for pattern, mib, level, js, rs, zus, zb, ddus in rows:
    groups.setdefault((pattern, int(mib), level), []).append(
        (json.loads(js), int(rs), None if zus == "-" else int(zus),
         None if zb == "-" else int(zb), None if ddus == "-" else int(ddus)))
def med(v): return st.median(v) if v else None
def f(v, fmt="{:.0f}"): return "–" if v is None else fmt.format(v)
print("| pattern | MiB | level | pause ms med (best) | dump GB/s | ckpt+fsync ms | image MiB | extra RSS MiB | zstd -T2 ms | zstd MiB | dump÷zstd speed | image÷zstd size | dd stored ms | dd÷pause | restart ms med (best) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (pattern, mib, level), g in groups.items():
    pause = [j["pause_ms"] for j, *_ in g]
    ck = [j["checkpoint_ms"] for j, *_ in g]
    img = med([j["image_bytes"] for j, *_ in g]) / 2**20
    extra = max((j["hwm_kib"] - j["rss_before_kib"]) for j, *_ in g) / 1024
    rs = [r / 1000 for _, r, *_ in g]
    z = [x[2] / 1000 for x in g if x[2] is not None]
    zb = [x[3] for x in g if x[3] is not None]
    dd = [x[4] / 1000 for x in g if x[4] is not None]
    pm = med(pause)
    gbps = mib * 2**20 / (pm / 1e3) / 1e9
    zm = med(z)
    speed = zm / pm if zm else None
    size = (img * 2**20) / med(zb) if zb else None
    ddm = med(dd)
    ddr = ddm / pm if ddm else None
    print(f"| {pattern} | {mib} | {level} | {pm:.0f} ({min(pause):.0f}) | {gbps:.2f} | {med(ck):.0f} | {img:.1f} | {extra:.0f} | {f(zm)} | {f(med(zb) / 2**20 if zb else None, '{:.1f}')} | {f(speed, '{:.2f}')} | {f(size, '{:.3f}')} | {f(ddm)} | {f(ddr, '{:.2f}')} | {med(rs):.0f} ({min(rs):.0f}) |")
print()
print(f"memcpy {memcpy} GB/s (best of 5, 1 GiB). CRIU: " + ("run separately (criu >= 4.1 found)" if sys.argv[3] == "yes" else "skipped: no criu >= 4.1 on PATH"))
EOF
