#!/usr/bin/env bash
# Incremental against full checkpoints: benches/incremental.c holding MIB
# of incompressible memory under `selfckpt run --incremental`; the first
# checkpoint is full, then PCT% of the pages are rewritten before each of
# the next STEPS-1 (incremental) ones. Prints, per image, its size and the
# stats line's total_ms and pause_ms (markdown rows).
#
#   MIB=1024 PCT=1 STEPS=3 BIN=target/debug benches/incremental.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-1024}
PCT=${PCT:-1}
STEPS=${STEPS:-3}
BIN=${BIN:-target/release}
work=$(mktemp -d /var/tmp/selfckpt-incr.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/go"
cc -O2 -o "$work/prog" benches/incremental.c
"$BIN/selfckpt" run --incremental --dir "$work/img" -- "$work/prog" "$MIB" "$PCT" "$STEPS" "$work/go" >"$work/out" &
for ((s = 1; s <= STEPS; s++)); do
    until grep -qx "ready $s" "$work/out" 2>/dev/null; do sleep 0.05; done
    pid=$(pgrep -nf "$work/prog")
    "$BIN/selfckpt" checkpoint "$pid" --wait --timeout 300 >/dev/null
    touch "$work/go/go-$s"
done
wait
python3 - "$work/img/stats.jsonl" "$MIB" "$PCT" <<'PY'
import json, os, sys
stats, mib, pct = sys.argv[1:]
print("| image | memory rewritten before it | image bytes | total ms | pause ms |")
print("|---|---|---|---|---|")
for r in (json.loads(l) for l in open(stats)):
    kind = "incremental" if "parent" in r else "full"
    what = f"{pct}% of {mib} MiB" if "parent" in r else "-"
    print(f"| {kind} | {what} | {os.path.getsize(r['path'])} | {r['total_ms']:.1f} | {r['pause_ms']:.1f} |")
PY
