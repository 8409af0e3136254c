//! End-to-end: a real program (examples/smoke.rs) is checkpointed, killed
//! with SIGKILL, restarted with `selfckpt restart`, and its output compared
//! byte for byte with an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::*;

fn smoke() -> PathBuf {
    example("smoke")
}

struct Reference {
    stdout: Vec<u8>,
    outfile: Vec<u8>,
}

fn reference(tmp: &Path, steps: &str, mib: &str) -> Reference {
    let (so, of) = (tmp.join("ref.stdout"), tmp.join("ref.out"));
    let child = spawn_to_file(
        Command::new(smoke())
            .arg(tmp.join("ref-ckpt"))
            .arg(&of)
            .arg(steps)
            .args(["--mib", mib]),
        &so,
    );
    wait_ok(child, "reference run");
    let r = Reference {
        stdout: std::fs::read(&so).unwrap(),
        outfile: std::fs::read(&of).unwrap(),
    };
    assert!(
        r.stdout.ends_with(b"post-checks ok\n"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    r
}

/// Restarts `image` with stdout to `stdout_path`, waits for the program to finish.
fn restart(image: &Path, stdout_path: &Path) {
    let child = spawn_to_file(
        Command::new(selfckpt()).arg("restart").arg(image),
        stdout_path,
    );
    wait_ok(child, "restarted program");
}

#[test]
fn signal_checkpoint_at_random_moments_then_sigkill_and_restart_matches_uninterrupted_run() {
    // The program holds 256 MiB of live heap besides its HashMap, Strings,
    // Box tree and mmap, and writes a file with a running offset.
    let tmp = tempfile::tempdir().unwrap();
    let (steps, mib) = ("30", "256");
    let r = reference(tmp.path(), steps, mib);
    for round in 0..10 {
        let dir = tmp.path().join(format!("ck{round}"));
        let (so, of) = (
            tmp.path().join(format!("{round}.stdout")),
            tmp.path().join(format!("{round}.out")),
        );
        let mut child = spawn_to_file(
            Command::new(smoke()).arg(&dir).arg(&of).arg(steps).args([
                "--mib",
                mib,
                "--sleep-ms",
                "15",
            ]),
            &so,
        );
        // Any moment once the heap is built (its first step is out).
        wait_output(&so);
        std::thread::sleep(Duration::from_millis(random_ms(0, 400)));
        kill(&child, libc::SIGUSR1);
        let image = wait_new_image(&dir, 0);
        kill(&child, libc::SIGKILL);
        let _ = child.wait();
        let raw = inspect(&image)["bytes_raw"].as_u64().unwrap();
        assert!(
            raw > 256 << 20,
            "round {round}: the heap is in the image: {raw}"
        );
        let offset = fd_offset(&image, 1);
        let so2 = tmp.path().join(format!("{round}.restarted"));
        restart(&image, &so2);
        let mut combined = std::fs::read(&so).unwrap()[..offset].to_vec();
        combined.extend(std::fs::read(&so2).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&combined),
            String::from_utf8_lossy(&r.stdout),
            "round {round}: stdout differs (checkpoint at stdout offset {offset})"
        );
        assert_eq!(
            std::fs::read(&of).unwrap(),
            r.outfile,
            "round {round}: OUTFILE differs"
        );
    }
}

#[test]
fn two_checkpoints_restart_from_each_and_restart_of_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = "20";
    let r = reference(tmp.path(), steps, "0");
    let dir = tmp.path().join("ck");
    let (so, of) = (tmp.path().join("a.stdout"), tmp.path().join("a.out"));
    let child = spawn_to_file(
        Command::new(smoke()).arg(&dir).arg(&of).arg(steps).args([
            "--checkpoint-at",
            "4",
            "--checkpoint-at",
            "12",
            "--sleep-ms",
            "1",
        ]),
        &so,
    );
    wait_ok(child, "first run");
    let first = images(&dir);
    assert_eq!(first.len(), 2, "two checkpoints give two images: {first:?}");
    let first_stdout = std::fs::read(&so).unwrap();
    for (i, image) in first.iter().enumerate() {
        let offset = fd_offset(image, 1);
        let so2 = tmp.path().join(format!("r{i}.stdout"));
        restart(image, &so2);
        let mut combined = first_stdout[..offset].to_vec();
        combined.extend(std::fs::read(&so2).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&combined),
            String::from_utf8_lossy(&r.stdout),
            "restart from image {i}"
        );
        assert_eq!(
            std::fs::read(&of).unwrap(),
            r.outfile,
            "OUTFILE after restart from image {i}"
        );
    }

    // Restart of a restart: the restarted program is checkpointed by a
    // signal to the restarter's PID, killed, and restarted again.
    let before = images(&dir).len();
    let so3 = tmp.path().join("r3.stdout");
    let mut child = spawn_to_file(Command::new(selfckpt()).arg("restart").arg(&first[0]), &so3);
    std::thread::sleep(Duration::from_millis(random_ms(100, 200)));
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(&dir, before);
    kill_tree(&mut child, libc::SIGKILL);
    let so4 = tmp.path().join("r4.stdout");
    restart(&image, &so4);
    let mut combined = first_stdout[..fd_offset(&first[0], 1)].to_vec();
    combined.extend(&std::fs::read(&so3).unwrap()[..fd_offset(&image, 1)]);
    combined.extend(std::fs::read(&so4).unwrap());
    assert_eq!(
        String::from_utf8_lossy(&combined),
        String::from_utf8_lossy(&r.stdout),
        "restart of a restart"
    );
    assert_eq!(
        std::fs::read(&of).unwrap(),
        r.outfile,
        "OUTFILE after restart of a restart"
    );
}

fn refused(image: &Path) -> String {
    let out = Command::new(selfckpt())
        .arg("restart")
        .arg(image)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "restart of a bad image succeeded; stderr: {err}"
    );
    assert_ne!(
        out.status.code(),
        None,
        "restart was killed by a signal: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "the refused program ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("restart refused"), "unclear message: {err}");
    err
}

#[test]
fn restart_refuses_damaged_truncated_missing_images_and_a_changed_executable() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, exe, outfile) = smoke_image(tmp.path());
    let good = std::fs::read(&image).unwrap();
    let out_before = std::fs::read(&outfile).unwrap();
    let verify = |p: &Path| {
        Command::new(selfckpt())
            .arg("verify")
            .arg(p)
            .status()
            .unwrap()
            .success()
    };
    assert!(verify(&image), "the good image verifies");

    let bad = tmp.path().join("bad.ckpt");
    let n = good.len();
    for cut in [0, 10, 64, 100, n / 3, n / 2, n - 100, n - 1] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        let err = refused(&bad);
        assert!(
            err.contains("truncated") || err.contains("bad magic") || err.contains("damaged"),
            "cut {cut}: {err}"
        );
        assert!(!verify(&bad), "verify accepts an image truncated at {cut}");
    }
    for pos in [3, 20, 70, 200, n / 4, n / 2, 3 * n / 4, n - 30, n - 1] {
        let mut b = good.clone();
        b[pos] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        refused(&bad);
        assert!(!verify(&bad), "verify accepts a flipped byte at {pos}");
    }
    let err = refused(&tmp.path().join("no-such.ckpt"));
    assert!(err.contains("No such file"), "{err}");

    // The executable changes after the checkpoint.
    let mut f = std::fs::OpenOptions::new().append(true).open(&exe).unwrap();
    std::io::Write::write_all(&mut f, b"\0changed").unwrap();
    drop(f);
    let err = refused(&image);
    assert!(
        err.contains("executable") && err.contains("smoke-copy"),
        "{err}"
    );

    assert_eq!(
        std::fs::read(&image).unwrap(),
        good,
        "a refused restart changed the image"
    );
    assert_eq!(
        std::fs::read(&outfile).unwrap(),
        out_before,
        "a refused restart changed the program's file"
    );
}
