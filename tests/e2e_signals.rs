//! The program's signals stay its own (issue 13). selfckpt's own threads
//! (the checkpoint thread and the compression workers) block every signal
//! but the suspend signal (and the checkpoint thread the trigger signals
//! it serves), so a signal the program blocks in all its threads stays
//! pending for its `signalfd`/`sigwait`, as without selfckpt.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn build_c(name: &str, out: &Path) -> bool {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/{name}.c");
        return false;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed on {}", src.display());
    true
}

/// `run --signal URG --term-signal none`: SIGUSR2 is the program's alone.
/// It blocks it everywhere and reads it from a signalfd; a checkpoint is
/// taken in between; both signals sent must be read, and the program must
/// not die of one delivered to a selfckpt thread.
#[test]
fn a_signal_the_program_blocks_everywhere_waits_for_its_signalfd() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("blocked_signals");
    if !build_c("blocked_signals", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let child = spawn_to_file(
        Command::new(selfckpt())
            .args(["run", "--signal", "URG", "--term-signal", "none", "--dir"])
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .arg("20"),
        &out,
    );
    wait_output(&out);
    // Several times, so that a selfckpt thread is given the chance to be
    // picked for delivery.
    kill(&child, libc::SIGUSR2);
    std::thread::sleep(Duration::from_millis(300));
    kill(&child, libc::SIGURG);
    wait_new_image(&dir, 0);
    kill(&child, libc::SIGUSR2);
    let err = wait_ok(child, "program reading SIGUSR2 from a signalfd");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text, "ready\ngot SIGUSR2 (1)\ngot SIGUSR2 (2)\n",
        "stderr: {err}"
    );
}
