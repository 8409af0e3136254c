#!/usr/bin/env bash
# Checks the aarch64 restorer blob (arch/aarch64/restorer.S) on any host:
#  0. the offsets it uses are generated as the build does: build.rs is
#     compiled with rustc alone and run with OUT_DIR set to a work directory
#     (restorer_abi.inc, prepended to the source; restorer_abi.h, for the
#     harness), from src/restorer_abi.rs (that the assembly uses no
#     literal offset is a unit test there);
#  1. it assembles with GNU as, and with LLVM's assembler (what Rust's
#     global_asm! uses) to the same bytes when llvm-mc is there;
#  2. it is position-independent: no relocations, no undefined symbols;
#  3. with an aarch64 C compiler and qemu-aarch64 (or on an aarch64 host) it
#     runs for real: tests/aarch64/harness.c hands it an argument block like
#     the restarter does and checks every step (see the harness's header),
#     then makes steps fail one by one and checks the message and exit code.
# Tools come from scripts/setup.sh (binutils-aarch64-linux-gnu,
# gcc-aarch64-linux-gnu, qemu-user). A missing tool is reported as
# "skipped: ..." and is not a failure; any wrong result is (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
src=arch/aarch64/restorer.S

native=no
[ "$(uname -m)" = aarch64 ] && native=yes
tool() { # tool NAME: the cross tool, or the native one on an aarch64 host
    if command -v "aarch64-linux-gnu-$1" >/dev/null; then
        echo "aarch64-linux-gnu-$1"
    elif [ $native = yes ] && command -v "$1" >/dev/null; then
        echo "$1"
    fi
}
fail() {
    echo "aarch64 restorer check: FAILED: $*" >&2
    exit 1
}

as=$(tool as)
readelf=$(tool readelf)
objcopy=$(tool objcopy)
nm=$(tool nm)
if [ -z "$as" ] || [ -z "$readelf" ] || [ -z "$objcopy" ] || [ -z "$nm" ]; then
    echo "skipped: aarch64 restorer check: no aarch64 binutils (run scripts/setup.sh: binutils-aarch64-linux-gnu)"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 0. The generated offsets, as build.rs writes them for the binary.
command -v rustc >/dev/null || fail "rustc is needed to generate the restorer's offsets (build.rs)"
rustc --edition 2021 -o "$work/build-script" build.rs || fail "build.rs does not compile"
OUT_DIR=$work CARGO_MANIFEST_DIR=$PWD "$work/build-script" >/dev/null || fail "build.rs failed"
inc=$work/restorer_abi.inc
[ -s "$inc" ] && [ -s "$work/restorer_abi.h" ] || fail "build.rs wrote no restorer_abi.inc/.h"
full=$work/restorer-full.S # what global_asm! assembles: the offsets, then the source
cat "$inc" "$src" >"$full"

# 1. Assemble; Rust's global_asm! takes the file as a format string.
if grep -n '[{}]' "$full"; then
    fail "$src or restorer_abi.inc has braces, which global_asm! reads as format arguments"
fi
"$as" -o "$work/gnu.o" "$full" || fail "GNU as rejects $src"
"$objcopy" -O binary -j .restorer "$work/gnu.o" "$work/gnu.bin"
[ -s "$work/gnu.bin" ] || fail "no .restorer section in $src"
if command -v llvm-mc >/dev/null; then
    llvm-mc -triple=aarch64-linux-gnu -filetype=obj -o "$work/llvm.o" "$full" ||
        fail "LLVM's assembler rejects $src"
    "$objcopy" -O binary -j .restorer "$work/llvm.o" "$work/llvm.bin"
    cmp -s "$work/gnu.bin" "$work/llvm.bin" || fail "GNU as and llvm-mc assemble $src differently"
    echo "aarch64 restorer: GNU as and llvm-mc give the same $(stat -c %s "$work/gnu.bin") bytes"
else
    echo "skipped: aarch64 restorer: llvm-mc missing, LLVM's assembler not tried"
fi
# rustc itself: global_asm! in a core-less crate needs no aarch64 standard
# library. The lang items such a crate declares differ between rustc
# versions: a probe with empty asm finds the set this rustc wants.
if command -v rustc >/dev/null; then
    shim() { # shim LANG_ITEMS ASM_ARG
        cat <<EOF
#![feature(no_core, rustc_attrs, decl_macro, lang_items)]
#![no_core]
#![crate_type = "lib"]
#![allow(internal_features)]
$1
#[rustc_builtin_macro] macro global_asm(\$(\$t:tt)*) { /* built in */ }
#[rustc_builtin_macro] macro include_str(\$(\$t:tt)*) { /* built in */ }
global_asm!($2);
EOF
    }
    rustc_obj() { # rustc_obj SOURCE OBJECT
        RUSTC_BOOTSTRAP=1 rustc --target aarch64-unknown-linux-gnu --emit=obj -o "$2" "$1"
    }
    items_new='#[lang = "pointee_sized"] pub trait PointeeSized {}
#[lang = "meta_sized"] pub trait MetaSized: PointeeSized {}
#[lang = "sized"] pub trait Sized: MetaSized {}'
    items_old='#[lang = "sized"] pub trait Sized {}'
    items=
    for candidate in "$items_new" "$items_old"; do
        shim "$candidate" '""' >"$work/probe.rs"
        if rustc_obj "$work/probe.rs" "$work/probe.o" 2>/dev/null; then
            items=$candidate
            break
        fi
    done
    if [ -n "$items" ]; then
        shim "$items" "include_str!(\"$inc\"), include_str!(\"$PWD/$src\")" >"$work/blob.rs"
        rustc_obj "$work/blob.rs" "$work/rustc.o" || fail "rustc's global_asm! rejects $src"
        "$objcopy" -O binary -j .restorer "$work/rustc.o" "$work/rustc.bin"
        cmp -s "$work/gnu.bin" "$work/rustc.bin" ||
            fail "rustc's global_asm! and GNU as assemble $src differently"
        echo "aarch64 restorer: rustc's global_asm! gives the same bytes"
    else
        echo "skipped: aarch64 restorer: this rustc cannot build a core-less aarch64 object"
    fi
fi

# 2. Position independence: nothing left for a linker or loader to fix up.
relocs=$("$readelf" -r "$work/gnu.o")
if ! grep -q 'There are no relocations' <<<"$relocs"; then
    echo "$relocs" >&2
    fail "$src has relocations: it must be position-independent"
fi
undefined=$("$nm" -u "$work/gnu.o")
[ -z "$undefined" ] || fail "$src refers to outside symbols: $undefined"
"$nm" "$work/gnu.o" | grep -q ' T selfckpt_restorer_main$' ||
    fail "$src does not define a global selfckpt_restorer_main"
echo "aarch64 restorer: no relocations, no outside symbols"

# 3. Run it.
gcc=$(tool gcc)
if [ -z "$gcc" ]; then
    echo "skipped: aarch64 restorer harness NOT RUN: no aarch64 C compiler (run scripts/setup.sh: gcc-aarch64-linux-gnu)"
    exit 0
fi
run=()
if [ $native = no ]; then
    if ! command -v qemu-aarch64 >/dev/null; then
        echo "skipped: aarch64 restorer harness NOT RUN: qemu-aarch64 missing (run scripts/setup.sh: qemu-user)"
        exit 0
    fi
    run=(qemu-aarch64)
fi
"$gcc" -static -O2 -Wall -Wextra -Werror -fno-stack-protector -o "$work/harness" \
    -I "$work" tests/aarch64/harness.c "$work/gnu.o" -Wl,-T,linker/restorer.ld ||
    fail "cannot build tests/aarch64/harness.c"

rc=0
out=$(timeout 60 "${run[@]}" "$work/harness" ok 2>&1) || rc=$?
if [ $rc != 0 ]; then
    echo "$out" >&2
    fail "the harness run failed (exit $rc)"
fi
echo "$out"

# Each mode makes one step fail: the blob must say which and exit 127.
for case in fail-rseq:1 fail-munmap:2 fail-mremap:3 fail-mprotect:4 fail-prctl:5 fail-sigaction:6 \
    want-tid:7; do
    mode=${case%:*}
    step=${case#*:}
    rc=0
    out=$(timeout 60 "${run[@]}" "$work/harness" "$mode" 2>&1) || rc=$?
    if [ $rc = 0 ] && [[ "$out" == skipped:* ]]; then
        echo "$out"
        continue
    fi
    want="selfckpt restorer: failed at step $step"
    if [ $rc != 127 ] || [ "$out" != "$want" ]; then
        echo "$out" >&2
        fail "$mode: exit $rc, want 127 and \"$want\""
    fi
done
echo "aarch64 restorer: failure path ok (steps 1 to 7 report their number, exit 127)"
echo "aarch64 restorer check: ok (a successful rseq unregistration or PR_SET_MM_MAP, closing exe_fd, vdso moves and exact thread ids not exercised${run:+ under qemu-user})"
