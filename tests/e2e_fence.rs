//! The suspended-world fence is checked, not only written: every test and
//! example build carries the `alloc-guard` allocator
//! (`src/capture/alloc_guard.rs`). These tests prove that it is on and that
//! it fires: a dump told to allocate once inside its round
//! (`SELFCKPT_ALLOC_GUARD_SELFTEST=1`) must abort the program with the
//! guard's message; the same program without the request checkpoints and
//! finishes normally. The rest of the e2e suite runs with the guard on, so
//! every checkpoint it takes is a check that the fence holds.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

fn ckloop(dir: &std::path::Path, selftest: bool) -> std::process::Output {
    let mut cmd = Command::new(example("ckloop"));
    cmd.arg(dir)
        .args(["20", "--sleep-ms", "1", "--checkpoint-at", "5"])
        .stdin(Stdio::null());
    if selftest {
        cmd.env("SELFCKPT_ALLOC_GUARD_SELFTEST", "1");
    }
    cmd.output().expect("run ckloop")
}

#[test]
fn guard_aborts_an_allocation_inside_the_round() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ckloop(&tmp.path().join("ck"), true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "the guard did not abort the breach: {:?}\n{err}",
        out.status
    );
    assert!(
        err.contains("selfckpt: alloc-guard: allocation on the checkpoint thread or a worker"),
        "no guard message: {err}"
    );
}

#[test]
fn guard_lets_a_clean_checkpoint_through() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let out = ckloop(&dir, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{err}", out.status);
    assert!(!err.contains("alloc-guard"), "{err}");
    assert_eq!(images(&dir).len(), 1, "one checkpoint, one image");
}
