//! Real programs that could not be checkpointed before issue 13, each
//! checkpointed mid-run by `selfckpt checkpoint PID`, killed and resumed by
//! rerunning the same `selfckpt run` command; the output must be byte for
//! byte an uninterrupted run's:
//!
//! * `xz -T2`: it handles SIGUSR1 itself (its progress line) and its
//!   worker threads block every signal;
//! * Node.js: SIGUSR1 starts its inspector, a helper thread blocks every
//!   signal, and libuv waits in `epoll_wait` on eventfds.
//! * a Java virtual machine (HotSpot): some twenty threads (JIT
//!   compilers, garbage collector), its own SIGSEGV, SIGQUIT and SIGUSR2
//!   handlers, gigabytes of reserved address space;
//! * CPython with threads.
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

#[test]
fn java_resumes_exactly() {
    if !have("javac") || !have("java") {
        eprintln!("skipped: no Java compiler (javac) or java is installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Count.java"),
        "public class Count {\n\
           public static void main(String[] a) throws Exception {\n\
             long sum = 0;\n\
             java.util.HashMap<Integer, Long> m = new java.util.HashMap<>();\n\
             for (int i = 0; i < 30; i++) {\n\
               for (int j = 0; j < 200000; j++) { m.put(j % 5000, (long) j * i); sum += m.get(j % 5000); }\n\
               System.out.println(\"step \" + i + \" \" + sum);\n\
               Thread.sleep(100);\n\
             }\n\
             System.out.println(\"java done \" + sum);\n\
           }\n\
         }\n",
    )
    .unwrap();
    let o = Command::new("javac")
        .arg("Count.java")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cp = tmp.path().to_str().unwrap().to_string();
    checkpoint_kill_resume(
        tmp.path(),
        "java",
        &["-cp", &cp, "Count"],
        Duration::from_millis(2000),
    );
}

#[test]
fn python_with_threads_resumes_exactly() {
    if !have("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("count.py");
    std::fs::write(
        &script,
        "import hashlib, threading, time\n\
         h = hashlib.sha256(); data = {}\n\
         def work(k):\n\
         \x20   for i in range(20000): data[(k, i % 100)] = i\n\
         for r in range(25):\n\
         \x20   t = [threading.Thread(target=work, args=(k,)) for k in range(3)]\n\
         \x20   [x.start() for x in t]; [x.join() for x in t]\n\
         \x20   h.update(str(r).encode() * 1000)\n\
         \x20   print('step', r, h.hexdigest()[:16], len(data), flush=True)\n\
         \x20   time.sleep(0.1)\n\
         print('python done')\n",
    )
    .unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "python3",
        &[script.to_str().unwrap()],
        Duration::from_millis(1200),
    );
}
