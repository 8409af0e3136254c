#!/usr/bin/env bash
# Installs what selfckpt's build, tests and benchmarks need on Debian 12.
# Rust itself (cargo >= 1.80) comes from rustup; everything else from apt.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v zstd >/dev/null || need+=(zstd)
# Programs the LD_PRELOAD tests run (tests/e2e_abi.rs skips, loudly, any
# that is missing, so failing to install them is not fatal).
want=()
command -v c++ >/dev/null || want+=(g++)
command -v bc >/dev/null || want+=(bc)
command -v awk >/dev/null || want+=(gawk)
command -v python3 >/dev/null || want+=(python3)
# real programs the transparency tests checkpoint (tests/e2e_real_programs.rs)
command -v xz >/dev/null || want+=(xz-utils)
command -v node >/dev/null || want+=(nodejs)
command -v javac >/dev/null || want+=(openjdk-17-jdk-headless)
command -v go >/dev/null || want+=(golang-go)
command -v make >/dev/null || want+=(make)
# a database server the tree tests checkpoint (tests/e2e_database.rs)
[ -x /usr/lib/postgresql/15/bin/postgres ] || command -v postgres >/dev/null || want+=(postgresql-15)
# A real Slurm for tests/e2e_slurm.rs (a loopback cluster it starts and
# stops itself; it says skipped where these are missing).
[ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch >/dev/null || want+=(slurm-wlm)
[ -x /usr/sbin/munged ] || want+=(munge)
command -v aarch64-linux-gnu-as >/dev/null || need+=(binutils-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
# the aarch64 restorer harness (arch/check-aarch64.sh): static, run by qemu
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: please install: ${need[*]} (apt-get install ...)" >&2
    fi
fi
if [ ${#want[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    echo "setup: installing ${want[*]} (for the LD_PRELOAD and Slurm tests)"
    { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null; } \
        || echo "setup: could not install ${want[*]}: those tests will say skipped" >&2
fi
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust >= 1.80 with rustup (https://rustup.rs), then rerun" >&2
    exit 1
fi
