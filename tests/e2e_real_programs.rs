//! Real programs that could not be checkpointed before issue 13, each
//! checkpointed mid-run by `selfckpt checkpoint PID`, killed and resumed by
//! rerunning the same `selfckpt run` command; the output must be byte for
//! byte an uninterrupted run's:
//!
//! * `xz -T2`: it handles SIGUSR1 itself (its progress line) and its
//!   worker threads block every signal;
//! * Node.js: SIGUSR1 starts its inspector, a helper thread blocks every
//!   signal, and libuv waits in `epoll_wait` on eventfds.
//!
//! Each prints `skipped: <reason>` when the program is not installed.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `prog args` under `selfckpt run`, checkpoints it after `after`,
/// kills it, resumes it, and compares stdout with an uninterrupted run.
fn checkpoint_kill_resume(dir: &Path, prog: &str, args: &[&str], after: Duration) {
    let reference = dir.join("ref.out");
    wait_ok(
        spawn_to_file(Command::new(prog).args(args), &reference),
        "reference run",
    );
    let want = std::fs::read(&reference).unwrap();
    let ck = dir.join("ck");
    let run = || {
        let mut c = Command::new(selfckpt());
        c.arg("run")
            .arg("--dir")
            .arg(&ck)
            .arg("--")
            .arg(prog)
            .args(args);
        c
    };
    let first = dir.join("first.out");
    let mut child = spawn_to_file(&mut run(), &first);
    std::thread::sleep(after);
    let o = Command::new(selfckpt())
        .args([
            "checkpoint",
            &child.id().to_string(),
            "--wait",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{prog}: checkpoint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let image = String::from_utf8_lossy(&o.stdout).trim().to_string();
    kill_tree(&mut child, libc::SIGKILL);
    let offset = fd_offset(Path::new(&image), 1);
    let second = dir.join("second.out");
    let err = wait_ok(spawn_to_file(&mut run(), &second), "resumed run");
    let mut got = std::fs::read(&first).unwrap();
    got.truncate(offset);
    got.extend(std::fs::read(&second).unwrap());
    assert!(
        got == want,
        "{prog}: resumed output differs ({} bytes, want {}); stderr: {err}",
        got.len(),
        want.len()
    );
}

#[test]
fn xz_with_two_threads_resumes_exactly() {
    if !have("xz") {
        eprintln!("skipped: xz is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.txt");
    let mut text = String::with_capacity(34 << 20);
    let mut x: u64 = 12345;
    for _ in 0..2_000_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!("{x:016x}\n"));
    }
    std::fs::write(&data, text).unwrap();
    let data = data.to_str().unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "xz",
        &["-T2", "-6", "--block-size=1MiB", "-c", data],
        Duration::from_millis(800),
    );
}

#[test]
fn node_resumes_exactly() {
    if !have("node") {
        eprintln!("skipped: node is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("count.js");
    std::fs::write(
        &script,
        "const crypto = require('crypto');\n\
         let h = Buffer.from('seed'); let i = 0; const steps = 300;\n\
         function step() {\n\
           for (let k = 0; k < 200; k++) h = crypto.createHash('sha256').update(h).digest();\n\
           i++;\n\
           if (i % 10 === 0) console.log(i, h.toString('hex').slice(0, 16));\n\
           if (i < steps) setTimeout(step, 10); else console.log('node done');\n\
         }\n\
         step();\n",
    )
    .unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "node",
        &[script.to_str().unwrap()],
        Duration::from_millis(1500),
    );
}
