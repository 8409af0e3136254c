//! End-to-end: a process holding memory of several patterns is
//! checkpointed at every compression level and restarted from each image;
//! the restarted process checks that its memory is exactly what it was.

use std::path::PathBuf;
use std::process::Command;

fn bin(name: &str) -> PathBuf {
    let sc = PathBuf::from(env!("CARGO_BIN_EXE_selfckpt"));
    if name == "selfckpt" {
        return sc;
    }
    let p = sc.parent().unwrap().join("examples").join(name);
    assert!(
        p.exists(),
        "{} missing: `cargo test` builds examples (with `--test` alone, run `cargo build --examples` first)",
        p.display()
    );
    p
}

fn checkpoint_then_restart(level: &str, pattern: &str, mib: &str) -> serde_json::Value {
    checkpoint_then_restart_env(level, pattern, mib, &[])
}

fn checkpoint_then_restart_env(
    level: &str,
    pattern: &str,
    mib: &str,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let out = Command::new(bin("bigmem"))
        .args([dir.to_str().unwrap(), mib, level, pattern])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bigmem {level} {pattern}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["level"], level, "{stats}");
    let image = stats["image"].as_str().unwrap();
    let back = Command::new(bin("selfckpt"))
        .args(["restart", image])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&back.stdout);
    assert!(
        back.status.success() && text.contains("restarted ok"),
        "restart of {level} {pattern}: {text} {}",
        String::from_utf8_lossy(&back.stderr)
    );
    stats
}

#[test]
fn pagemap_reads_and_pagemap_scan_give_the_same_exact_restart() {
    for (value, scan) in [("0", false), ("1", true)] {
        let s =
            checkpoint_then_restart_env("1", "sparse", "12", &[("SELFCKPT_PAGEMAP_SCAN", value)]);
        assert_eq!(s["pagemap_scan"], scan, "{s}");
    }
}

#[test]
fn restart_is_exact_at_every_level_and_pattern() {
    for level in ["store", "fast3", "1", "3"] {
        for pattern in ["mixed", "sparse", "random"] {
            checkpoint_then_restart(level, pattern, "12");
        }
    }
}

#[test]
fn untouched_and_zero_memory_costs_no_image_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    for pattern in ["untouched", "zerotouched"] {
        let dir = tmp.path().join(pattern);
        let out = Command::new(bin("bigmem"))
            .args([dir.to_str().unwrap(), "256", "1", pattern])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            s["image_bytes"].as_u64().unwrap() < 1 << 20,
            "{pattern}: {s}"
        );
        assert_eq!(s["pagemap_scan"], true, "{s}");
    }
}
