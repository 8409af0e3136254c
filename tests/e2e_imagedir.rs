//! The image directory is never a weapon, and pruning, gc and `run` never
//! lose the image the user needs (issue 11, items 4-11, 13, 21-23): every
//! file opened without following symlinks, unsafe directories refused,
//! prune and gc acting only on the program's own, valid, user-owned
//! images, temp files' liveness told by their writer's lock, `checkpoint`
//! refusing processes that do not run the checkpointer, `--wait` hearing
//! failures at once, spare descriptors, `run` resuming only the same job
//! and never a finished one, no empty children directories.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh_run(dir: &Path, cwd: &Path, script: &str, extra: &[&str]) -> Command {
    lib("libselfckpt.so");
    let mut c = Command::new(selfckpt());
    c.current_dir(cwd)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null());
    c
}

/// A shell counting to `n`, one line every 20 ms.
fn counter(n: u32) -> String {
    format!("i=0; while [ $i -lt {n} ]; do echo $i; i=$((i+1)); sleep 0.02; done")
}

fn spawn_out(cmd: &mut Command, out: &Path) -> Child {
    spawn_to_file(cmd, out)
}

fn ckpt_wait(pid: u32, dir: &Path, timeout: &str) -> std::process::Output {
    run(
        Command::new(selfckpt())
            .args([
                "checkpoint",
                &pid.to_string(),
                "--wait",
                "--timeout",
                timeout,
            ])
            .arg("--dir")
            .arg(dir),
        Duration::from_secs(120),
    )
}

fn kill9(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn ckloop(dir: &Path, exe: &Path, args: &[&str]) -> std::process::Output {
    run(
        Command::new(exe).arg(dir).args(args).stdin(Stdio::null()),
        Duration::from_secs(120),
    )
}

fn copy_exe(name: &str, to: &Path) -> PathBuf {
    let p = to.join(name);
    std::fs::copy(example("ckloop"), &p).unwrap();
    p
}

// Item 4: no symlink followed in the image directory; unsafe --dir refused.
#[test]
fn files_in_the_image_directory_are_never_followed_and_unsafe_dirs_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let victim = w.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let dir = w.join("ck");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("stats.jsonl")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("run.json")).unwrap();
    let o = ckloop(
        &dir,
        &example("ckloop"),
        &["3", "--checkpoint-at", "0", "--mib", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &mut sh_run(&dir, w, "echo hi", &[]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(dir.join("run.json"))
            .unwrap()
            .is_file(),
        "run.json must be replaced by a file of its own"
    );

    for (mode, owner, want) in [
        (0o777, None, "writable by others"),
        (0o770, None, "writable by others"),
        (0o700, Some(65534), "belongs to uid 65534"),
    ] {
        let d = w.join(format!("bad{mode:o}{}", owner.unwrap_or(0)));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(u) = owner {
            std::os::unix::fs::chown(&d, Some(u), None).unwrap();
        }
        let o = run(&mut sh_run(&d, w, "echo ran", &[]), Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(1), "{mode:o}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{mode:o}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "the program ran in an unsafe dir");
    }
    // Sticky and shared, like /tmp: accepted.
    let d = w.join("sticky");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = run(&mut sh_run(&d, w, "echo ran", &[]), Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
}

// Items 5 and 21: the same words from another directory are another job;
// a finished job starts fresh; a resume always says so.
#[test]
fn run_resumes_only_the_same_unfinished_job_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let dir = w.join("ck");
    let (a, b) = (w.join("a"), w.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let script = counter(60);
    let first = w.join("first.txt");
    let child = spawn_out(&mut sh_run(&dir, &a, &script, &[]), &first);
    wait_for("a few lines", 30, || {
        std::fs::read_to_string(&first).is_ok_and(|s| s.lines().count() >= 10)
    });
    let o = ckpt_wait(child.id(), &dir, "30");
    assert!(o.status.success(), "{}", stderr(&o));
    kill9(child);

    // Same words, other working directory: not this job.
    let o = run(&mut sh_run(&dir, &b, &script, &[]), Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("0\n1\n"),
        "resumed another directory's job: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("resuming"), "{}", stderr(&o));

    // The same job again, killed after a checkpoint, is resumed, saying so
    // (without -v).
    let second = w.join("second.txt");
    let child = spawn_out(&mut sh_run(&dir, &a, &script, &[]), &second);
    wait_for("a few lines", 30, || {
        std::fs::read_to_string(&second).is_ok_and(|s| s.lines().count() >= 10)
    });
    let o = ckpt_wait(child.id(), &dir, "30");
    assert!(o.status.success(), "{}", stderr(&o));
    kill9(child);
    let o = run(&mut sh_run(&dir, &a, &script, &[]), Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("resuming")).collect();
    assert_eq!(said.len(), 1, "one line when resuming: {err}");
    assert!(
        said[0].contains(" from ") && said[0].contains("taken"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!out.starts_with("0\n"), "did not resume: {out}");
    assert!(out.ends_with("59\n"), "{out}");

    // That run finished: the next one starts from the beginning.
    let o = run(&mut sh_run(&dir, &a, &script, &[]), Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.starts_with("0\n1\n"),
        "a finished job was resumed: {out}"
    );
    assert!(stderr(&o).contains("ended"), "{}", stderr(&o));
}

// Items 6 and 7: prune keeps other programs', other instances' and
// others' images; a planted future-named file does not make new images
// vanish.
#[test]
fn prune_touches_only_the_programs_own_images() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let dir = w.join("images");
    let ck = copy_exe("ck", w);
    let ckx = copy_exe("ck-x", w);
    let args = [
        "4",
        "--mib",
        "1",
        "--sleep-ms",
        "0",
        "--every",
        "1",
        "--keep",
        "1",
    ];
    let o = ckloop(&dir, &ckx, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let of = |prefix: &str| -> Vec<PathBuf> {
        images(&dir)
            .into_iter()
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect()
    };
    assert_eq!(of("ck-x-").len(), 1);
    // Future-named files planted by someone: empty, not images.
    let junk = [
        dir.join("ck-9999999999999-1.ckpt"),
        dir.join("ck-9999999999999-0123456789abcdef-1.ckpt"),
    ];
    for j in &junk {
        std::fs::write(j, b"").unwrap();
    }
    let o = ckloop(&dir, &ck, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ckloop(&dir, &ck, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(of("ck-x-").len(), 1, "ck pruned ck-x's image");
    let mine: Vec<_> = of("ck-")
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(mine.len(), 2, "each instance keeps its newest: {mine:?}");
    for j in &junk {
        assert!(j.exists(), "{} removed", j.display());
    }
}

fn gc(dir: &Path, keep: &str, key: Option<&str>) -> String {
    let mut c = Command::new(selfckpt());
    c.arg("gc").arg(dir).args(["--keep", keep]);
    match key {
        Some(k) => c.env("SELFCKPT_KEY", k),
        None => c.env_remove("SELFCKPT_KEY"),
    };
    let o = run(&mut c, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// Item 8: gc removes only what it proves damaged, never another user's.
#[test]
fn gc_never_removes_what_it_cannot_prove_damaged_or_others_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    for _ in 0..2 {
        let o = ckloop(
            &dir,
            &example("ckloop"),
            &["2", "--mib", "1", "--checkpoint-at", "0"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let before = images(&dir);
    assert_eq!(before.len(), 2);
    // Run by a user who cannot read the images (EACCES): nothing is
    // "damaged", nothing removed, no failure.
    for p in [t.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = run(
        std::os::unix::process::CommandExt::uid(
            Command::new(selfckpt())
                .arg("gc")
                .arg(&dir)
                .args(["--keep", "1"]),
            65534,
        ),
        Duration::from_secs(60),
    );
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "gc as another user: {text}");
    assert!(!text.contains("damaged"), "{text}");
    assert_eq!(images(&dir), before, "{text}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = gc(&dir, "5", Some("some key"));
    assert_eq!(
        images(&dir),
        before,
        "unsigned images removed under a key: {out}"
    );
    // The older image belongs to someone else: gc --keep 1 leaves it.
    std::os::unix::fs::chown(&before[0], Some(65534), None).unwrap();
    let out = gc(&dir, "1", None);
    assert_eq!(images(&dir), before, "another user's image removed: {out}");
    // A really damaged one of ours goes.
    let mut bytes = std::fs::read(&before[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = dir.join("ck-0000000000001-1.ckpt");
    std::fs::write(&bad, bytes).unwrap();
    let out = gc(&dir, "5", None);
    assert!(out.contains("removed (damaged)"), "{out}");
    assert_eq!(images(&dir), before);
}

// Items 9 and 10: a temp file is live while its writer holds the lock,
// whatever pid its name says.
#[test]
fn temp_files_are_judged_by_their_writer_lock_not_by_pid() {
    use std::os::fd::AsRawFd;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A live writer (we hold the lock) whose pid in the name is not ours
    // on this host (as after an exact-id restart).
    let live = dir.join(".ck-0000000000001-0123456789abcdef-999999999.ckpt.tmp");
    let f = std::fs::File::create(&live).unwrap();
    // SAFETY: flock on a file we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    // A dead writer whose pid (1) is alive.
    let dead = dir.join(".ck-0000000000002-0123456789abcdef-1.ckpt.tmp");
    std::fs::write(&dead, vec![0u8; 4096]).unwrap();
    let out = gc(&dir, "1", None);
    assert!(live.exists(), "a live writer's temp removed: {out}");
    assert!(!dead.exists(), "a dead writer's temp kept: {out}");
    drop(f);
    gc(&dir, "1", None);
    assert!(!live.exists(), "unlocked now: removed");
}

// Item 11: a process that maps libselfckpt but never installed it is not
// signalled.
#[test]
fn checkpoint_refuses_a_process_that_does_not_run_the_checkpointer() {
    let mut child = Command::new("sleep")
        .arg("30")
        .env("LD_PRELOAD", lib("libselfckpt.so"))
        .env_remove("SELFCKPT_PRELOAD")
        .spawn()
        .unwrap();
    wait_for("the library mapped", 10, || {
        std::fs::read_to_string(format!("/proc/{}/maps", child.id()))
            .is_ok_and(|m| m.contains("libselfckpt"))
    });
    let o = run(
        Command::new(selfckpt()).args(["checkpoint", &child.id().to_string()]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not run"), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process was killed"
    );
    kill9(child);
}

// Item 13: a failed checkpoint reaches --wait at once, without the dir;
// a program that used every descriptor still checkpoints.
#[test]
fn wait_hears_a_failure_at_once_and_checkpoints_survive_an_fd_limit() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let dir = w.join("ck");
    let child = Command::new(example("ckloop"))
        .arg(&dir)
        .args(["2000", "--mib", "1", "--sleep-ms", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_installed(child.id());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let t0 = Instant::now();
    let o = ckpt_wait(child.id(), &dir, "30");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("failed"), "{}", stderr(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    kill9(child);

    if !have("bash") {
        println!("skipped: fd-limit part needs bash");
        return;
    }
    let dir = w.join("ck2");
    let out = w.join("fds.txt");
    // Descriptors 3-9 by number, then every free one bash can get (>= 10).
    let script = "for i in 3 4 5 6 7 8 9; do eval \"exec $i</dev/null\" 2>/dev/null; done; \
                  for i in $(seq 300); do exec {f}</dev/null 2>/dev/null || break; done; \
                  echo full; while :; do sleep 0.05; done";
    lib("libselfckpt.so");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "ulimit -n 64; exec \"$0\" run --dir \"$1\" -- bash -c '{script}'"
        ))
        .arg(selfckpt())
        .arg(&dir)
        .stdin(Stdio::null());
    let child = spawn_out(&mut c, &out);
    wait_for("bash to fill its descriptors", 30, || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("full"))
    });
    let n = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .count();
    assert!(n >= 57, "only {n} fds open");
    let o = ckpt_wait(child.id(), &dir, "30");
    kill9(child);
    assert!(o.status.success(), "with {n} fds open: {}", stderr(&o));
}

// Item 22: the option restart suggests works on `run` too.
#[test]
fn run_accepts_missing_fds() {
    let t = tempfile::tempdir().unwrap();
    let o = run(
        &mut sh_run(
            &t.path().join("ck"),
            t.path(),
            "echo ok",
            &["--missing-fds", "devnull"],
        ),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}

// Item 23: --children makes no directory for a child without an image;
// gc removes empty ones.
#[test]
fn children_leave_no_empty_directories_and_gc_removes_them() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    let o = run(
        &mut sh_run(
            &dir,
            t.path(),
            "for i in 1 2 3 4 5 6 7 8; do /bin/true; done; echo done",
            &["--children"],
        ),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let kids: Vec<_> = std::fs::read_dir(dir.join("children"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(kids.is_empty(), "empty children directories: {kids:?}");
    let empty = dir.join("children").join("true-12345");
    std::fs::create_dir_all(&empty).unwrap();
    let out = gc(&dir, "1", None);
    assert!(!empty.exists(), "gc left {}: {out}", empty.display());
}

// Item 20: after a checkpoint-then-exit the program does not run past the
// image: its output ends exactly where the image's stdout offset says,
// with SELFCKPT_KEY set too (the MAC is then computed while the threads
// stay parked) and the sealed image verifies.
#[test]
fn checkpoint_then_exit_keeps_the_threads_parked_until_the_exit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    let out = t.path().join("out.txt");
    for (round, key) in [None, None, Some("e2e-key"), Some("e2e-key")]
        .into_iter()
        .enumerate()
    {
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Command::new(example("ckloop"));
        c.arg(&dir)
            .args(["100000000", "--mib", "1", "--sleep-ms", "0"])
            .stdin(Stdio::null());
        if let Some(k) = key {
            c.env("SELFCKPT_KEY", k);
        }
        let child = spawn_out(&mut c, &out);
        wait_installed(child.id());
        wait_for("output", 30, || {
            std::fs::metadata(&out).is_ok_and(|m| m.len() > 10_000)
        });
        let o = run(
            Command::new(selfckpt())
                .args(["checkpoint", &child.id().to_string(), "--exit", "--wait"])
                .arg("--dir")
                .arg(&dir),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let (st, err) = finish(child, "ckloop after --exit");
        assert_eq!(st.code(), Some(0), "{err}");
        let image = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        let len = std::fs::metadata(&out).unwrap().len() as usize;
        assert_eq!(
            len,
            fd_offset(&image, 1),
            "round {round}: the program wrote past its image"
        );
        if let Some(k) = key {
            let v = Command::new(selfckpt())
                .env("SELFCKPT_KEY", k)
                .arg("verify")
                .arg(&image)
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "round {round}: sealed image: {}",
                stderr(&v)
            );
        }
    }
}

// Item 7: prune orders by what the images say, not by names or the clock:
// an image whose name says "far future" (the clock went back since) is
// still the oldest and goes first.
#[test]
fn prune_orders_by_sequence_not_by_name() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    let child = Command::new(example("ckloop"))
        .arg(&dir)
        .args(["100000", "--mib", "1", "--sleep-ms", "5", "--keep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_installed(child.id());
    let take = || {
        let o = ckpt_wait(child.id(), &dir, "30");
        assert!(o.status.success(), "{}", stderr(&o));
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
    };
    let first = take();
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    let ms = &name["ckloop-".len().."ckloop-".len() + 13];
    let future = dir.join(name.replacen(ms, "9999999999999", 1));
    std::fs::rename(&first, &future).unwrap();
    let second = take();
    let third = take();
    kill9(child);
    let mut want = vec![second, third];
    want.sort();
    assert_eq!(images(&dir), want, "kept by name instead of by sequence");
}

// Item 5: a different executable at the same path is another program.
#[test]
fn run_does_not_resume_when_the_executable_was_replaced() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let dir = w.join("ck");
    let exe = w.join("mysh");
    std::fs::copy("/bin/sh", &exe).unwrap();
    lib("libselfckpt.so");
    let job = |out: &Path| {
        let mut c = Command::new(selfckpt());
        c.current_dir(w)
            .arg("run")
            .arg("--dir")
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .args(["-c", &counter(40)])
            .stdin(Stdio::null());
        spawn_out(&mut c, out)
    };
    let first = w.join("first.txt");
    let child = job(&first);
    wait_for("a few lines", 30, || {
        std::fs::read_to_string(&first).is_ok_and(|s| s.lines().count() >= 5)
    });
    let o = ckpt_wait(child.id(), &dir, "30");
    assert!(o.status.success(), "{}", stderr(&o));
    kill9(child);
    // Another build of "the same" program: a new inode at that path.
    std::fs::remove_file(&exe).unwrap();
    std::fs::copy("/bin/sh", &exe).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap()
        .set_len(std::fs::metadata("/bin/sh").unwrap().len() + 1)
        .unwrap();
    let second = w.join("second.txt");
    let (st, err) = finish(job(&second), "the rerun");
    assert!(st.success(), "{st}: {err}");
    let out = std::fs::read_to_string(&second).unwrap();
    assert!(
        out.starts_with("0\n1\n"),
        "resumed another executable's image: {err}"
    );
    assert!(!err.contains("resuming"), "{err}");
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ckpt.tmp"))
        .collect()
}

// Item 10, as it happens: a writer killed mid-checkpoint, its image
// restarted with exact ids (so the restarted program has the dead
// writer's pid): its next checkpoint removes the dead writer's temp file.
#[test]
fn a_dead_writers_temp_goes_even_after_an_exact_id_restart() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ck");
    let mut child = Command::new(example("ckloop"))
        .arg(&dir)
        .args(["400", "--mib", "96", "--sleep-ms", "20"])
        .args(["--checkpoint-at", "0", "--checkpoint-at", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first image", 60, || images(&dir).len() == 1);
    wait_for("the second image's temp file", 60, || {
        !temps(&dir).is_empty()
    });
    let _ = child.kill();
    let _ = child.wait();
    let left = temps(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    // A writer killed between creating its temp and taking its lock left
    // it with mode 0, which counts as abandoned only after a grace
    // period: let that pass, so the next checkpoint must remove it.
    std::thread::sleep(Duration::from_millis(2200));
    let first = images(&dir).pop().unwrap();
    let mut restarted = Command::new(selfckpt())
        .args(["restart", "--tids", "exact"])
        .arg(&first)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while images(&dir).len() < 2 && Instant::now() < deadline {
        if restarted.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = images(&dir).len() >= 2;
    // The sweep of dead writers' temps follows the commit of the image.
    let swept = Instant::now() + Duration::from_secs(10);
    while done && temps(&dir).iter().any(|n| left.contains(n)) && Instant::now() < swept {
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_tree(&mut restarted, libc::SIGKILL);
    let (_, err) = finish(restarted, "the restarted ckloop");
    if !done && err.contains("exact") {
        println!("skipped: exact ids refused here: {err}");
        return;
    }
    assert!(done, "the restarted program took no checkpoint: {err}");
    let now = temps(&dir);
    assert!(
        !now.iter().any(|n| left.contains(n)),
        "the dead writer's temp is still there: {now:?}"
    );
}

/// A resumed program runs with its checkpoint-time pid in a PID namespace
/// below `selfckpt run`, and reports under that pid: `checkpoint --wait`
/// given the program's own host pid (what `pgrep` shows) hears its line
/// and prints the new image (it timed out, the image written, before).
/// A single process (`tests/c/timers_one_signal.c`, which runs 3 s): a
/// tree's members would report under their pids too.
#[test]
fn checkpoint_wait_knows_a_resumed_program_by_its_host_pid() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path();
    let exe = w.join("timers_one_signal");
    if !build_c("timers_one_signal", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = w.join("ck");
    let first = w.join("first.txt");
    let child = spawn_out(&mut selfckpt_run(&dir, &exe, &[]), &first);
    wait_line(&first, "waiting");
    let o = ckpt_wait(child.id(), &dir, "30");
    assert!(o.status.success(), "{}", stderr(&o));
    let taken = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    kill9(child);
    let mut child = spawn_out(&mut selfckpt_run(&dir, &exe, &[]), &w.join("second.txt"));
    let mut prog = Vec::new();
    wait_for("the resumed program", 30, || {
        prog = descendants(child.id())
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|x| x == exe))
            .collect();
        !prog.is_empty()
    });
    let o = ckpt_wait(prog[0], &dir, "30");
    kill_tree(&mut child, libc::SIGKILL);
    assert!(o.status.success(), "checkpoint {}: {}", prog[0], stderr(&o));
    let image = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(image.is_file() && image != taken, "{}", image.display());
}
