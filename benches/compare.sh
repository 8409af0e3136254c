#!/usr/bin/env bash
# Whole-process checkpoint and restart of a workload, side by side with the
# hardware limits measured in the same run on the same bytes:
#   zstd -T2 at the same level (speed and size),
#   dd conv=fdatasync of as many bytes as the image stores,
#   memcpy bandwidth,
#   CRIU (`criu dump --leave-running`, `criu restore -d`) on the same C
#   workload when a criu >= 4.1 is on PATH (never built here; skipped with a
#   note otherwise; CRIU=0 skips it too).
# Contenders are interleaved, REPS times each; the table gives median and
# best. Prints a markdown table on stdout (progress on stderr).
#
#   REPS=5 SIZES="256 1024" PATTERNS="random text zerotouched untouched mixed" \
#   LEVELS="store fast3 1 3" UNTOUCHED_MIB=8192 [ROWS=rows.tsv] benches/compare.sh
#
# The workload is a C program, benches/workload.c (built here with
# `cc -O2`; nothing in it knows about selfckpt), started with `selfckpt run`
# (LD_PRELOAD) and checkpointed from outside with `selfckpt checkpoint PID
# --wait`; WORKLOAD=rust measures examples/bigmem.rs instead (it checkpoints
# itself through `selfckpt::checkpoint()`). Everything workload-specific
# sits in the functions below.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
SIZES=${SIZES:-"256 1024"}
PATTERNS=${PATTERNS:-"random text zerotouched untouched mixed"}
LEVELS=${LEVELS:-"store fast3 1 3"}
UNTOUCHED_MIB=${UNTOUCHED_MIB:-8192}
WORKLOAD=${WORKLOAD:-c}
work=$(mktemp -d /var/tmp/selfckpt-compare.XXXXXX)
trap '[ ! -s "$work/wl.pid" ] || kill -KILL "$(cat "$work/wl.pid")" 2>/dev/null || true; rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
cargo build --release --lib --bins --examples -q >&2
BIN=target/release
cc -O2 -Wall -o "$work/workload" benches/workload.c
# The first run's stdin: a FIFO nobody writes to (the workload blocks
# reading it until a restart hands it the restart's stdin).
mkfifo "$work/stdin"
exec 3<>"$work/stdin"

# --- the workload -----------------------------------------------------------
# workload_checkpoint DIR MIB LEVEL PATTERN: start the workload holding MIB
# of PATTERN, take one checkpoint into DIR at LEVEL, print one JSON line with
# at least pause_ms, checkpoint_ms, image_bytes, bytes_stored and image.
# workload_restart IMAGE: restart it; print launch-to-running and
# launch-to-verified microseconds (tab-separated), fail if the restarted
# program finds its memory changed.
# pattern_file FILE MIB PATTERN: the same bytes the workload holds.
if [ "$WORKLOAD" = rust ]; then
    workload_checkpoint() { "$BIN/examples/bigmem" "$1" "$2" "$3" "$4"; }
    workload_restart() {
        local t0 out at
        t0=$(date +%s%N)
        out=$("$BIN/selfckpt" restart "$1" 2>&1) || { echo "restart failed: $out" >&2; return 1; }
        grep -q "restarted ok" <<<"$out" || { echo "restart wrong: $out" >&2; return 1; }
        at=$(awk '/restarted_at_ns/ {print $2}' <<<"$out")
        printf '%s\t%s\n' $(((at - t0) / 1000)) $((($(date +%s%N) - t0) / 1000))
    }
    pattern_file() { "$BIN/examples/bigmem" --write-pattern "$1" "$2" "$3"; }
    memcpy_json() { "$BIN/examples/bigmem" --memcpy 1024; }
else
    workload_checkpoint() {
        local d=$1 mib=$2 level=$3 pattern=$4 out=$work/wl.out t0 t1 img i
        "$BIN/selfckpt" run --fresh --dir "$d" --keep 1 --level "$level" -- \
            "$work/workload" "$pattern" "$mib" <&3 3<&- >"$out" 2>"$work/wl.err" &
        wl_pid=$!
        echo "$wl_pid" >"$work/wl.pid"
        for ((i = 0; i < 6000; i++)); do
            grep -q '^ready' "$out" 2>/dev/null && break
            kill -0 "$wl_pid" 2>/dev/null || { echo "workload died: $(cat "$work/wl.err")" >&2; return 1; }
            sleep 0.01
        done
        grep -q "^ready" "$out" || { echo "workload not ready: $(cat "$out" "$work/wl.err")" >&2; return 1; }
        local rss_before hwm
        rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/$wl_pid/status")
        t0=$(date +%s%N)
        img=$("$BIN/selfckpt" checkpoint "$wl_pid" --wait --timeout 600)
        t1=$(date +%s%N)
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$wl_pid/status")
        kill -KILL "$wl_pid"
        wait "$wl_pid" 2>/dev/null || true
        : >"$work/wl.pid"
        python3 - "$d/stats.jsonl" "$img" $(((t1 - t0) / 1000)) "$rss_before" "$hwm" "$mib" "$level" "$pattern" <<'EOF'
import json, os, sys
stats, img, ck_us, rss, hwm, mib, level, pattern = sys.argv[1:]
rec = [json.loads(l) for l in open(stats)][-1]
assert rec["state"] == "continue" and rec["path"] == img, rec
print(json.dumps({"mib": int(mib), "level": level, "pattern": pattern,
    "image_bytes": os.path.getsize(img), "bytes_mapped": rec["bytes_mapped"],
    "bytes_stored": rec["bytes_stored"], "pause_ms": rec["pause_ms"],
    "total_ms": rec["total_ms"], "checkpoint_ms": int(ck_us) / 1e3,
    "rss_before_kib": int(rss), "hwm_kib": int(hwm), "image": img}))
EOF
    }
    workload_restart() {
        local t0 t1 out at vat
        t0=$(date +%s%N)
        # One line on stdin: the restarted program checks its memory, prints
        # the result, then reads EOF and exits 0 (3 if its memory differs).
        out=$(echo | "$BIN/selfckpt" restart "$1" 2>&1) || { echo "restart failed: $out" >&2; return 1; }
        t1=$(date +%s%N)
        grep -q "^verified ok" <<<"$out" || { echo "restart wrong: $out" >&2; return 1; }
        at=$(awk '/^running_at_ns/ {print $2}' <<<"$out")
        vat=$(awk '/^verified_at_ns/ {print $2}' <<<"$out")
        [ "$vat" -le "$t1" ] || { echo "clock?" >&2; return 1; }
        printf '%s\t%s\n' $(((at - t0) / 1000)) $(((vat - t0) / 1000))
    }
    pattern_file() { "$work/workload" --write-pattern "$1" "$2" "$3"; }
    memcpy_json() { "$work/workload" --memcpy 1024; }
fi
# -----------------------------------------------------------------------------

# criu_cycle DIR MIB PATTERN: the C workload, started in a session of its
# own (CRIU's condition for a process without --shell-job) with stdin a FIFO
# this script keeps open (fd 4); `criu dump --leave-running`, SIGKILL,
# `criu restore -d`, then one line through the FIFO makes the restored
# program check its memory. Prints the same JSON as workload_checkpoint (the
# dump's wall time stands for the pause: CRIU keeps the process frozen for
# most of it), a tab, and the restore's launch-to-running and
# launch-to-verified microseconds.
criu_cycle() {
    local d=$1 mib=$2 pattern=$3 out=$work/c.out pid t0 t1 t2 i rss bytes at vat
    rm -rf "$d"
    mkdir -p "$d"
    setsid "$work/workload" "$pattern" "$mib" <"$work/cstdin" >"$out" 2>"$work/c.err" &
    pid=$!
    echo "$pid" >"$work/wl.pid"
    for ((i = 0; i < 6000; i++)); do
        grep -q '^ready' "$out" 2>/dev/null && break
        sleep 0.01
    done
    grep -q "^ready" "$out" || { echo "criu workload not ready: $(cat "$out" "$work/c.err")" >&2; return 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    t0=$(date +%s%N)
    criu dump -t "$pid" -D "$d" --leave-running -o dump.log ||
        { echo "criu dump failed: $(tail -5 "$d/dump.log")" >&2; return 1; }
    t1=$(date +%s%N)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    bytes=$(du -sb --exclude='*.log' "$d" | cut -f1)
    sync
    t2=$(date +%s%N)
    criu restore -D "$d" -d -o restore.log ||
        { echo "criu restore failed: $(tail -5 "$d/restore.log")" >&2; return 1; }
    echo >&4
    for ((i = 0; i < 60000; i++)); do
        grep -q '^verified ok\|^memory differs' "$out" && break
        sleep 0.01
    done
    grep -q "^verified ok" "$out" || { echo "criu restore wrong: $(cat "$out")" >&2; return 1; }
    kill -KILL "$pid" 2>/dev/null || true
    : >"$work/wl.pid"
    at=$(awk '/^running_at_ns/ {print $2}' "$out")
    vat=$(awk '/^verified_at_ns/ {print $2}' "$out")
    printf '{"mib": %s, "level": "criu", "pattern": "%s", "image_bytes": %s, "bytes_stored": %s, "pause_ms": %s, "checkpoint_ms": %s, "rss_before_kib": %s, "hwm_kib": %s, "image": "%s"}\t%s\t%s\n' \
        "$mib" "$pattern" "$bytes" "$bytes" "$(((t1 - t0) / 1000))e-3" "$(((t1 - t0) / 1000))e-3" "$rss" "$rss" "$d" \
        $(((at - t2) / 1000)) $(((vat - t2) / 1000))
}

now_us() { echo $(($(date +%s%N) / 1000)); }
zstd_flag() { case $1 in fast*) echo "--fast=${1#fast}" ;; *) echo "-$1" ;; esac; }

# ROWS=FILE keeps the raw rows (appended) so several runs with different
# settings make one table.
rows=${ROWS:-$work/rows.tsv}
[ -n "${ROWS:-}" ] || : >"$rows"
memcpy=$(memcpy_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["memcpy_gbps"])')
criu_ok=no
if [ "${CRIU:-1}" != 0 ] && [ "$WORKLOAD" != rust ] && command -v criu >/dev/null &&
    criu --version 2>/dev/null | awk '/Version/ {split($2,v,"."); exit !(v[1]>4 || (v[1]==4 && v[2]>=1))}'; then
    criu_ok=yes
    mkfifo "$work/cstdin"
    exec 4<>"$work/cstdin"
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
            if [ "$criu_ok" = yes ]; then
                echo "$pattern $mib MiB criu rep $rep" >&2
                cr=$(criu_cycle "$work/criu" "$mib" "$pattern")
                printf '%s\t%s\tcriu\t%s\t-\t-\t-\n' "$pattern" "$mib" "$cr" >>"$rows"
                rm -rf "$work/criu"
            fi
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
for pattern, mib, level, js, rs, rv, zus, zb, ddus in rows:
    groups.setdefault((pattern, int(mib), level), []).append(
        (json.loads(js), int(rs), int(rv), None if zus == "-" else int(zus),
         None if zb == "-" else int(zb), None if ddus == "-" else int(ddus)))
def med(v): return st.median(v) if v else None
def f(v, fmt="{:.0f}"): return "–" if v is None else fmt.format(v)
print("| pattern | MiB | level | pause ms med (best) | dump GB/s | ckpt+fsync ms | image MiB | extra RSS MiB | zstd -T2 ms | zstd MiB | dump÷zstd speed | image÷zstd size | dd stored ms | dd÷pause | restart ms med (best) | restart+verify ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (pattern, mib, level), g in groups.items():
    pause = [j["pause_ms"] for j, *_ in g]
    ck = [j["checkpoint_ms"] for j, *_ in g]
    img = med([j["image_bytes"] for j, *_ in g]) / 2**20
    extra = None if level == "criu" else max((j["hwm_kib"] - j["rss_before_kib"]) for j, *_ in g) / 1024
    rs = [r / 1000 for _, r, *_ in g]
    rv = [x[2] / 1000 for x in g]
    z = [x[3] / 1000 for x in g if x[3] is not None]
    zb = [x[4] for x in g if x[4] is not None]
    dd = [x[5] / 1000 for x in g if x[5] is not None]
    pm = med(pause)
    gbps = mib * 2**20 / (pm / 1e3) / 1e9
    zm = med(z)
    speed = zm / pm if zm else None
    size = (img * 2**20) / med(zb) if zb else None
    ddm = med(dd)
    ddr = ddm / pm if ddm else None
    print(f"| {pattern} | {mib} | {level} | {pm:.0f} ({min(pause):.0f}) | {gbps:.2f} | {med(ck):.0f} | {img:.1f} | {f(extra)} | {f(zm)} | {f(med(zb) / 2**20 if zb else None, '{:.1f}')} | {f(speed, '{:.2f}')} | {f(size, '{:.3f}')} | {f(ddm)} | {f(ddr, '{:.2f}')} | {med(rs):.0f} ({min(rs):.0f}) | {med(rv):.0f} |")
print()
print(f"memcpy {memcpy} GB/s (best of 5, 1 GiB). CRIU: " + ("rows `criu`: `criu dump --leave-running` (its wall time as pause and ckpt) and `criu restore -d`, same workload, interleaved" if sys.argv[3] == "yes" else "skipped: no criu >= 4.1 on PATH (or CRIU=0)"))
EOF
