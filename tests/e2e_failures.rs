//! Failures around a checkpoint: disk full in the middle of an image, the
//! image directory removed or made read-only, the program killed with
//! SIGKILL while writing. Each time the program goes on (unless killed),
//! the error is reported by `checkpoint()`, no temporary file is left, and
//! the earlier images still verify and restart. Then restart-side
//! failures: a changed executable and files that are gone.
//!
//! Tests that need a tmpfs mount (we run as root) print `skipped: <reason>`
//! when mounting fails.

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn ckloop(dir: &Path, steps: u64, extra: &[&str], stderr_to: &Path) -> Child {
    spawn_retrying(
        Command::new(example("ckloop"))
            .arg(dir)
            .arg(steps.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_to).unwrap()),
    )
}

/// Waits for the program; returns (exit code, stdout, stderr).
fn finish(child: Child, stderr_from: &Path) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    let err = std::fs::read_to_string(stderr_from).unwrap_or_default();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn done_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("done "))
        .unwrap_or_else(|| panic!("no done line in: {stdout}"))
        .to_string()
}

/// The final line of an uninterrupted run (checkpoints do not change it).
fn reference(tmp: &Path, steps: u64, mib: &str) -> String {
    let e = tmp.join("ref.err");
    let c = ckloop(
        &tmp.join("ref-ck"),
        steps,
        &["--mib", mib, "--sleep-ms", "0"],
        &e,
    );
    let (code, out, err) = finish(c, &e);
    assert_eq!(code, Some(0), "reference run: {err}");
    done_line(&out)
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn verify_ok(image: &Path) {
    let v = cli(&[OsStr::new("verify"), image.as_os_str()]);
    assert!(
        v.status.success(),
        "{} no longer verifies: {}",
        image.display(),
        stderr(&v)
    );
}

/// Restarts `image` and checks the program ends with `want`.
fn restart_ends_with(image: &Path, want: &str) {
    let o = run(
        Command::new(selfckpt()).arg("restart").arg(image),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "restart failed: {}", stderr(&o));
    assert_eq!(done_line(&String::from_utf8_lossy(&o.stdout)), want);
}

#[test]
fn disk_full_in_the_middle_of_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    // Each image holds ~4.2 MiB of incompressible pages: the second one
    // runs out of space part-way.
    let fs = match Tmpfs::mount(&tmp.path().join("mnt"), "6m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let want = reference(tmp.path(), 8, "4");
    let dir = fs.0.join("ck");
    let e = tmp.path().join("err");
    let args = [
        "--mib",
        "4",
        "--sleep-ms",
        "1",
        "--checkpoint-at",
        "1",
        "--checkpoint-at",
        "4",
    ];
    let (code, out, err) = finish(ckloop(&dir, 8, &args, &e), &e);
    assert_eq!(code, Some(0), "the program must go on: {err}");
    assert_eq!(done_line(&out), want);
    assert!(err.contains("checkpoint 1: Continued"), "{err}");
    assert!(
        err.contains("checkpoint 4: error:") && err.contains("No space left on device"),
        "the error must be reported: {err}"
    );
    assert_eq!(temp_files(&dir), Vec::<String>::new(), "temp file left");
    let imgs = images(&dir);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    verify_ok(&imgs[0]);
    restart_ends_with(&imgs[0], &want);
}

#[test]
fn image_directory_removed_while_the_program_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let e = tmp.path().join("err");
    let args = [
        "--mib",
        "1",
        "--sleep-ms",
        "40",
        "--checkpoint-at",
        "0",
        "--checkpoint-at",
        "20",
    ];
    let child = ckloop(&dir, 25, &args, &e);
    wait_for("the first image", 60, || !images(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, out, err) = finish(child, &e);
    assert_eq!(code, Some(0), "the program must go on: {err}");
    assert!(out.contains("done 25"), "{out}");
    assert!(
        err.contains("checkpoint 20: error:") && err.contains("No such file or directory"),
        "{err}"
    );
}

#[test]
fn image_directory_made_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(&tmp.path().join("mnt"), "64m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let dir = fs.0.join("ck");
    let e = tmp.path().join("err");
    let args = [
        "--mib",
        "1",
        "--sleep-ms",
        "40",
        "--checkpoint-at",
        "0",
        "--checkpoint-at",
        "20",
    ];
    let child = ckloop(&dir, 25, &args, &e);
    wait_for("the first image", 60, || !images(&dir).is_empty());
    let first = images(&dir);
    // Let the first commit finish (rename + directory fsync) first.
    wait_for("checkpoint 0 to return", 30, || {
        std::fs::read_to_string(&e).is_ok_and(|s| s.contains("checkpoint 0:"))
    });
    fs.remount_ro();
    let (code, out, err) = finish(child, &e);
    assert_eq!(code, Some(0), "the program must go on: {err}");
    assert!(out.contains("done 25"), "{out}");
    assert!(
        err.contains("checkpoint 20: error:") && err.contains("Read-only file system"),
        "{err}"
    );
    assert_eq!(images(&dir), first, "the images did not change");
    verify_ok(&first[0]);
}

#[test]
fn sigkill_while_writing_leaves_earlier_images_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let e = tmp.path().join("err");
    // 192 MiB of incompressible pages: writing an image takes a while.
    let args = [
        "--mib",
        "192",
        "--sleep-ms",
        "20",
        "--checkpoint-at",
        "0",
        "--checkpoint-at",
        "3",
    ];
    let mut child = ckloop(&dir, 200, &args, &e);
    wait_for("checkpoint 0", 120, || {
        std::fs::read_to_string(&e).is_ok_and(|s| s.contains("checkpoint 0:"))
    });
    let first = images(&dir);
    assert_eq!(first.len(), 1);
    wait_for("the second image's temp file", 60, || {
        !temp_files(&dir).is_empty()
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(images(&dir), first, "no half image under a final name");
    let left = temp_files(&dir);
    assert_eq!(left.len(), 1, "the killed writer's temp file: {left:?}");
    verify_ok(&first[0]);
    // A later run of the program in the same directory removes the dead
    // writer's temp file (its pid is gone) and keeps the good image.
    let e2 = tmp.path().join("err2");
    let c = ckloop(
        &dir,
        2,
        &["--mib", "1", "--sleep-ms", "0", "--checkpoint-at", "0"],
        &e2,
    );
    let (code, _, err) = finish(c, &e2);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(temp_files(&dir), Vec::<String>::new());
    verify_ok(&first[0]);
}

/// Restart refuses an image whose executable or open files changed.
#[test]
fn restart_refuses_changed_executable_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, exe, outfile) = smoke_image(tmp.path());
    let refused = |extra: &[&str], what: &str| -> String {
        let o = cli(&[
            &[OsStr::new("restart")],
            &extra.iter().map(OsStr::new).collect::<Vec<_>>()[..],
            &[image.as_os_str()],
        ]
        .concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("restart refused"), "{what}: {err}");
        assert!(o.stdout.is_empty(), "{what}: the program ran");
        err
    };

    // The program's OUTFILE (open at fd 3) is gone.
    let saved = std::fs::read(&outfile).unwrap();
    std::fs::remove_file(&outfile).unwrap();
    let err = refused(&[], "file gone");
    assert!(
        err.contains("files the program had open are gone") && err.contains("prog.out"),
        "{err}"
    );
    assert!(err.contains("--missing-fds=devnull"), "{err}");
    // With the option, the program runs on with /dev/null in its place.
    let o = run(
        Command::new(selfckpt())
            .args(["restart", "--missing-fds=devnull"])
            .arg(&image),
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/dev/null in place of"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("post-checks ok"));
    assert!(
        !outfile.exists(),
        "restart must not create the missing file"
    );
    std::fs::write(&outfile, &saved).unwrap();
    let bad = cli(&[
        OsStr::new("restart"),
        OsStr::new("--missing-fds=maybe"),
        image.as_os_str(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "bad usage: {}", stderr(&bad));

    // The executable's mtime changed (same size, same build-id).
    let o = Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(o.success());
    let err = refused(&[], "mtime");
    assert!(err.contains("smoke-copy") && err.contains("mtime"), "{err}");

    // The executable is gone.
    std::fs::remove_file(&exe).unwrap();
    let err = refused(&[], "exe gone");
    assert!(
        err.contains("smoke-copy") && err.contains("cannot be read"),
        "{err}"
    );
}
