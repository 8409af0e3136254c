//! POSIX shared memory and named semaphores live in `/dev/shm`, a tmpfs:
//! their mappings are shared file mappings, never refused as "device
//! mappings" (issue 11 item 22). A program holding shared memory with a
//! semaphore in it is checkpointed, killed and resumed; its shared memory
//! is the same file, with its contents, and its output equals an
//! uninterrupted run's. A named semaphore (`sem_open`, whose mapping glibc
//! makes from a temporary file it links under the semaphore's name and
//! then unlinks) is checkpointed too, and comes back mapped from the
//! linked file: shared with every other process that has it open.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn posix_shared_memory_and_semaphores_come_back_as_the_same_files() {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/posix_shm.c");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("posix_shm");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/posix_shm.c");
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed on {}", src.display());
    lib("libselfckpt.so");
    let name = format!("/selfckpt-e2e-{}", std::process::id());
    let cleanup = || {
        let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        let _ = std::fs::remove_file(format!("/dev/shm/sem.{}-sem", &name[1..]));
    };
    cleanup();
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(&name), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.contains("shm ok"), "{want}");
    cleanup();
    let dir = tmp.path().join("ck");
    let run = || {
        let mut c = Command::new(selfckpt());
        c.arg("run")
            .arg("--dir")
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .arg(&name);
        c
    };
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut run(), &first);
    wait_output(&first);
    // `checkpoint PID` (the request channel): a SIGUSR1 would interrupt
    // the program's nanosleep, which it does not retry.
    let o = Command::new(selfckpt())
        .args([
            "checkpoint",
            &child.id().to_string(),
            "--wait",
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = wait_new_image(&dir, 0);
    kill_tree(&mut child, libc::SIGKILL);
    let text = inspect_text(&image);
    assert!(
        text.contains("/dev/shm"),
        "no /dev/shm mapping in the image:\n{text}"
    );
    let offset = fd_offset(&image, 1);
    let second = tmp.path().join("second");
    let err = wait_ok(spawn_to_file(&mut run(), &second), "resumed run");
    cleanup();
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        format!("{}{second}", &first[..offset]),
        want,
        "stderr: {err}"
    );

    // A named semaphore: checkpointed, restart refused by name.
    let out = tmp.path().join("named");
    let child = spawn_to_file(
        &mut selfckpt_run(&tmp.path().join("ck-named"), &exe, &[&name, "named-sem"]),
        &out,
    );
    wait_output(&out);
    let o = Command::new(selfckpt())
        .args([
            "checkpoint",
            &child.id().to_string(),
            "--wait",
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("device"), "{err}");
    let image = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_ok(child, "program with a named semaphore");
    let r = Command::new(selfckpt())
        .arg("restart")
        .arg(&image)
        .output()
        .unwrap();
    cleanup();
    let err = String::from_utf8_lossy(&r.stderr);
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{err}");
    // The semaphore is the linked file, shared with the first run, which
    // posted it again before it ended: 3, where the copy the image held
    // said 2.
    assert!(
        out.contains("shm ok") && out.contains(" sem 3"),
        "{out}{err}"
    );
}
