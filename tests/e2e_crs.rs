//! End-to-end tests of selfckpt as a CRS component (`include/selfckpt_crs.h`):
//! C programs that use only the module from `selfckpt_crs_query` checkpoint
//! themselves (inside and outside critical sections) and another process by
//! pid, restart images as a child they `waitpid` and in place of themselves,
//! from a cold start; the remote location takes over when the local copy is
//! lost or damaged, and a full remote only warns; bad inputs fail with
//! precise messages. Every restarted run's output is compared with an
//! uninterrupted run.

mod common;

use common::{finish, have, images, lib, selfckpt, target_dir, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("selfckpt-crs-")
        .tempdir()
        .unwrap()
}

/// Builds tests/c/SOURCE against libselfckpt.so (the restarter is found
/// next to it).
fn build(work: &Path, source: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    lib("libselfckpt.so");
    let out = work.join(source.trim_end_matches(".c"));
    let o = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c").join(source))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(target_dir())
        .args(["-lselfckpt", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", target_dir().display()))
        .output()
        .expect("cc runs");
    assert!(
        o.status.success(),
        "cc {source}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

struct Progs {
    app: PathBuf,
    exec: PathBuf,
}

/// The two programs, or None (said `skipped:`) without a C compiler.
fn programs(work: &Path) -> Option<Progs> {
    if !have("cc") {
        eprintln!("skipped: no `cc` on this machine");
        return None;
    }
    Some(Progs {
        app: build(work, "crs_app.c"),
        exec: build(work, "crs_exec.c"),
    })
}

/// Runs `cmd` to its end; (stdout, stderr) after checking it succeeded.
fn run_ok(cmd: &mut Command, what: &str) -> (String, String) {
    let o: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{what} failed ({}): {err}", o.status);
    (String::from_utf8(o.stdout).unwrap(), err)
}

/// Runs `cmd` to its end with stdout in `file` (so that the image records
/// its offset); (stdout, stderr) after checking it succeeded.
fn run_to_file(cmd: &mut Command, file: &Path, what: &str) -> (String, String) {
    let child = common::spawn_to_file(cmd.stdin(Stdio::null()), file);
    let (status, err) = finish(child, what);
    assert!(status.success(), "{what} failed ({status}): {err}");
    (std::fs::read_to_string(file).unwrap(), err)
}

/// `crs_app work STEPS MS CKPT [REMOTE]` with its images in `dir`.
fn work(p: &Progs, dir: &Path, steps: u32, ms: u32, ckpt: bool, remote: Option<&Path>) -> Command {
    let mut c = Command::new(&p.app);
    c.env("SELFCKPT_DIR", dir)
        .args(["work", &steps.to_string(), &ms.to_string()])
        .arg(if ckpt { "1" } else { "0" });
    if let Some(r) = remote {
        c.arg(r);
    }
    c
}

/// The uninterrupted result: no checkpoint at all.
fn reference(p: &Progs, work_dir: &Path, steps: u32) -> String {
    let dir = work_dir.join(format!("ref-{steps}"));
    run_ok(&mut work(p, &dir, steps, 0, false, None), "reference run").0
}

/// The image the self-checkpointing run took at `step` (from its stderr).
fn image_at(stderr: &str, step: u32) -> PathBuf {
    let tag = format!("checkpoint at step {step}: ");
    let line = stderr
        .lines()
        .find_map(|l| l.split_once(&tag).map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| panic!("no checkpoint at step {step}: {stderr}"));
    PathBuf::from(line)
}

/// The "threads N" a run of crs_app reported at its end.
fn threads(stderr: &str) -> u32 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("crs_app: threads "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no thread count: {stderr}"))
}

/// Output before the checkpoint (up to stdout's offset in `image`) plus
/// what the restarted program wrote.
fn combined(first: &str, image: &Path, second: &str) -> String {
    let off = common::fd_offset(image, 1);
    format!("{}{second}", &first[..off])
}

/// `crs_app restart-child LOCATION [REMOTE]`: (restarted stdout, stderr).
fn restart_child(p: &Progs, loc: &Path, remote: Option<&Path>) -> (String, String) {
    let mut c = Command::new(&p.app);
    c.arg("restart-child").arg(loc);
    if let Some(r) = remote {
        c.arg(r);
    }
    let (out, err) = run_ok(&mut c, "restart-child");
    assert!(err.contains("exited 0"), "the child's status: {err}");
    (out, err)
}

#[test]
fn module_checkpoints_itself_and_restarts_as_a_child_and_in_place_from_a_cold_start() {
    let tmp = tmpdir();
    let w = tmp.path();
    let Some(p) = programs(w) else { return };
    let want = reference(&p, w, 10);
    let dir = w.join("ck");
    let (first, err) = run_to_file(
        &mut work(&p, &dir, 10, 0, true, None),
        &w.join("first.txt"),
        "checkpointing run",
    );
    assert_eq!(first, want, "checkpoints changed the result: {err}");
    for step in 1..=7 {
        assert!(
            image_at(&err, step).is_absolute(),
            "step {step}: the snapshot's local location is absolute"
        );
    }
    // Deferred (step 2 and 5) and waited-for (1, 4, 7) checkpoints each
    // add an image: 7 explicit + 2 deferred.
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert_eq!(
        stats.matches("\"state\":\"continue\"").count(),
        9,
        "{stats}"
    );
    let image = image_at(&err, 7);
    assert_eq!(images(&dir).last(), Some(&image), "the newest image");
    let nthreads = threads(&err);

    // A fresh process that has only the directory: spawn_child = 1, waitpid.
    let (second, err) = restart_child(&p, &dir, None);
    assert!(err.contains("restarted at step 7 from "), "{err}");
    assert!(err.contains("restarts 1"), "{err}");
    assert_eq!(threads(&err), nthreads, "the restarted program's threads");
    assert_eq!(combined(&first, &image, &second), want);

    // Another fresh program: spawn_child = 0, it becomes the program.
    let (third, err) = run_ok(Command::new(&p.exec).arg(&dir), "crs_exec");
    assert!(err.contains("restarted at step 7 from "), "{err}");
    assert_eq!(threads(&err), nthreads, "the restarted program's threads");
    assert_eq!(combined(&first, &image, &third), want);

    // The same from a program that itself runs under `selfckpt run`
    // (LD_PRELOAD mode): the restarter it becomes must not install a
    // checkpointer of its own (with new ids the program would inherit its
    // threads; exact ids start the program in a fresh child).
    let (fifth, err) = run_ok(
        Command::new(selfckpt())
            .env("SELFCKPT_TIDS", "new")
            .args(["run", "--dir"])
            .arg(w.join("run-ck"))
            .arg("--")
            .arg(&p.exec)
            .arg(&dir),
        "crs_exec under selfckpt run",
    );
    assert!(err.contains("restarted at step 7 from "), "{err}");
    assert_eq!(
        threads(&err),
        nthreads,
        "no checkpointer of the restarter's own"
    );
    assert_eq!(combined(&first, &image, &fifth), want);

    // An image file names its snapshot as well as its directory does.
    let (fourth, _) = restart_child(&p, &image, None);
    assert_eq!(combined(&first, &image, &fourth), want);
}

fn kill9(mut child: Child) {
    common::kill_tree(&mut child, libc::SIGKILL);
}

#[test]
fn module_checkpoints_another_process_by_pid_and_restarts_its_image() {
    let tmp = tmpdir();
    let w = tmp.path();
    let Some(p) = programs(w) else { return };
    let want = reference(&p, w, 40);
    let dir = w.join("target-ck");
    let first = w.join("first.txt");
    let target = common::spawn_to_file(
        work(&p, &dir, 40, 40, false, None).stdin(Stdio::null()),
        &first,
    );
    wait_for("the target to reach step 5", 60, || {
        std::fs::read_to_string(&first).is_ok_and(|s| s.contains("step 5 "))
    });
    let (out, _) = run_ok(
        Command::new(&p.app)
            .arg("ckpt-pid")
            .arg(target.id().to_string()),
        "ckpt-pid",
    );
    let image = PathBuf::from(out.trim().strip_prefix("image ").expect("image line"));
    assert!(image.starts_with(&dir) && image.is_file(), "{out}");
    kill9(target);
    let first = std::fs::read_to_string(&first).unwrap();
    let (second, _) = restart_child(&p, &image, None);
    assert_eq!(combined(&first, &image, &second), want);
}

/// A tmpfs too small for one image, mounted for the test's life.
struct FullDir(PathBuf);

impl FullDir {
    fn mount(at: &Path) -> Result<FullDir, String> {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(FullDir(at.to_path_buf()))
    }
}

impl Drop for FullDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn remote_copy_takes_over_when_the_local_one_is_damaged_or_gone_and_a_full_remote_only_warns() {
    let tmp = tmpdir();
    let w = tmp.path();
    let Some(p) = programs(w) else { return };
    let want = reference(&p, w, 10);
    let dir = w.join("ck");
    let remote = w.join("remote");
    let (first, err) = run_to_file(
        &mut work(&p, &dir, 10, 0, true, Some(&remote)),
        &w.join("first.txt"),
        "run with a remote",
    );
    assert_eq!(first, want);
    assert_eq!(err.matches("crs_app: remote ok ").count(), 7, "{err}");
    for local in images(&dir) {
        let copy = remote.join(local.file_name().unwrap());
        assert_eq!(
            std::fs::read(&local).unwrap(),
            std::fs::read(&copy).unwrap(),
            "{} is the same as its local image",
            copy.display()
        );
    }
    assert!(leftovers(&remote).is_empty());
    let image = image_at(&err, 7);

    // Both intact: the local one is used.
    let (second, err) = restart_child(&p, &dir, Some(&remote));
    assert!(!err.contains("remote copy"), "{err}");
    assert_eq!(combined(&first, &image, &second), want);

    // Local copy damaged: the remote one is used.
    let mut bytes = std::fs::read(&image).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&image, &bytes).unwrap();
    let (second, err) = restart_child(&p, &dir, Some(&remote));
    assert!(err.contains("restarting from the remote copy"), "{err}");
    assert_eq!(
        combined(&first, &remote.join(image.file_name().unwrap()), &second),
        want
    );

    // Local images gone: the remote one is used.
    for i in images(&dir) {
        std::fs::remove_file(i).unwrap();
    }
    let (third, err) = run_ok(Command::new(&p.exec).arg(&dir).arg(&remote), "crs_exec");
    assert!(err.contains("restarted at step 7"), "{err}");
    assert_eq!(
        combined(&first, &remote.join(image.file_name().unwrap()), &third),
        want
    );

    // Remote full: every checkpoint still succeeds locally, with a warning.
    let full = match FullDir::mount(&w.join("full")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipped: remote full: cannot mount a small tmpfs: {e}");
            return;
        }
    };
    let dir2 = w.join("ck2");
    let (out, err) = run_ok(
        &mut work(&p, &dir2, 10, 0, true, Some(&full.0)),
        "run with a full remote",
    );
    assert_eq!(out, want);
    assert_eq!(
        err.matches("crs_app: remote failed: ").count(),
        7,
        "every copy reports the failure: {err}"
    );
    assert!(
        err.contains("warn: the checkpoint is good locally, but cannot copy")
            && err.contains("No space left on device"),
        "a clear warning: {err}"
    );
    assert!(leftovers(&full.0).is_empty(), "no temporary copy is left");
    let image = image_at(&err, 7);
    run_ok(Command::new(selfckpt()).arg("verify").arg(&image), "verify");
}

#[test]
fn bad_inputs_fail_with_precise_messages() {
    let tmp = tmpdir();
    let w = tmp.path();
    let Some(p) = programs(w) else { return };
    // A process that does not run selfckpt (it must survive: not signalled).
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    // A process of another user that does run selfckpt.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let (other, other_user, mut nobody) = if root && have("setpriv") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = w.join("nobody");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        let child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&p.app)
            .args(["work", "1000", "50", "0"])
            .env("SELFCKPT_DIR", home.join("ck"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        wait_for("the nobody process to run selfckpt", 30, || {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .is_ok_and(|m| m.contains("libselfckpt"))
        });
        (pid, Some(65534), Some(child))
    } else if !root {
        // pid 1 is root's: another user's process, if not one running selfckpt.
        (1, Some(0), None)
    } else {
        eprintln!("skipped: a process of another user (needs setpriv)");
        (1, None, None)
    };
    let empty = w.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // A directory whose only image is damaged.
    let damaged = w.join("damaged");
    run_ok(
        &mut work(&p, &damaged, 2, 0, true, None),
        "an image to damage",
    );
    for i in images(&damaged) {
        let mut b = std::fs::read(&i).unwrap();
        let n = b.len();
        b.truncate(n - 100);
        std::fs::write(&i, b).unwrap();
    }
    let out = Command::new(&p.app)
        .arg("bad")
        .arg(sleeper.id().to_string())
        .arg(other.to_string())
        .arg(&empty)
        .arg(&damaged)
        .output()
        .unwrap();
    if let Some(n) = nobody.as_mut() {
        common::kill_tree(n, libc::SIGKILL);
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the process that does not run selfckpt was not signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        out.status.success(),
        "{} ({}): {stdout}{}",
        "some bad input did not fail",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let damaged_image = images(&damaged).pop().unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("query-null", "the priority pointer is NULL".into()),
        (
            "checkpoint-null-snapshot",
            "checkpoint: the snapshot is NULL".into(),
        ),
        (
            "checkpoint-null-state",
            "checkpoint: the state pointer is NULL".into(),
        ),
        (
            "checkpoint-not-initialised",
            "not initialised: call init first".into(),
        ),
        (
            "restart-null-snapshot",
            "restart: the snapshot is NULL".into(),
        ),
        (
            "restart-null-child",
            "spawn_child is set but child_pid is NULL".into(),
        ),
        (
            "restart-empty-snapshot",
            "the snapshot names no image".into(),
        ),
        ("from-location-null", "local location is NULL".into()),
        ("set-remote-null", "the snapshot is NULL".into()),
        ("wait-remote-none", "no remote location".into()),
        (
            "enable-without-disable",
            "enable_checkpoint without a matching disable_checkpoint".into(),
        ),
        (
            "restart-other-component",
            "belongs to component 'blcr', not 'selfckpt'".into(),
        ),
        (
            "checkpoint-other-component",
            "belongs to component 'blcr', not 'selfckpt'".into(),
        ),
        (
            "restart-forged",
            "not a snapshot made by selfckpt_snapshot_new".into(),
        ),
        (
            "checkpoint-not-selfckpt",
            format!("process {} does not run selfckpt", sleeper.id()),
        ),
        (
            "checkpoint-other-user",
            match other_user {
                Some(uid) => format!("process {other} belongs to user {uid}, not to the caller"),
                None => String::new(),
            },
        ),
        ("checkpoint-no-process", "no process 999999999".into()),
        ("checkpoint-negative-pid", "-5 is not a process id".into()),
        (
            "from-location-empty-dir",
            format!("no valid image in {}: no image there", empty.display()),
        ),
        (
            "from-location-damaged",
            format!(
                "no valid image in {}: {}: ",
                damaged.display(),
                damaged_image.display()
            ),
        ),
        (
            "from-location-missing",
            "no valid image in /nonexistent/ckpt: no such file or directory".into(),
        ),
    ];
    for (case, want) in &cases {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{case}: ")))
            .unwrap_or_else(|| panic!("{case}: not reported: {stdout}"));
        assert!(
            line.contains(want.as_str()),
            "{case}: {line:?} does not say {want:?}"
        );
    }
    assert_eq!(stdout.lines().count(), cases.len(), "{stdout}");
}
