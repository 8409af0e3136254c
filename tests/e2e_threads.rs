//! End-to-end, multi-threaded programs: `examples/threads.rs` (8 workers
//! on channels, a mutex and condvar, a rayon pool, a thread blocked on a
//! condvar, one sleeping) is checkpointed at random moments, killed with
//! SIGKILL and restarted, with exact ids (PID namespace) and with new ids
//! (translated); its output must equal an uninterrupted run's and every
//! thread must find its id, `pthread_self` and thread-locals intact.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn threads() -> PathBuf {
    example("threads")
}

/// Output of an uninterrupted run.
fn reference(tmp: &Path, args: &[&str]) -> Vec<u8> {
    let so = tmp.join("ref.stdout");
    let child = spawn_to_file(
        Command::new(threads()).arg(tmp.join("ref-ck")).args(args),
        &so,
    );
    wait_ok(child, "reference run");
    let out = std::fs::read(&so).unwrap();
    assert!(
        out.ends_with(b"threads ok\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// Makes `clone3` fail with ENOSYS in the process that runs `cmd` (a
/// seccomp filter, inherited by everything it starts), as on kernels older
/// than 5.3 and under qemu-user: the restorer blob must fall back to clone.
fn without_clone3(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // SAFETY: between fork and exec: two prctl calls on a filter built on
    // this stack, nothing allocated.
    unsafe {
        cmd.pre_exec(move || {
            let filter = [
                op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
                op(JEQ_K, 0, 3, AUDIT_ARCH),
                op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
                op(JEQ_K, 0, 1, libc::SYS_clone3 as u32),
                op(RET_K, 0, 0, 0x0005_0000 | libc::ENOSYS as u32), // SECCOMP_RET_ERRNO
                op(RET_K, 0, 0, 0x7fff_0000),                       // SECCOMP_RET_ALLOW
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Restarts `image` with `--tids mode` (`new-without-clone3`: new ids, and
/// clone3 missing); returns stdout and stderr, or None (after saying
/// `skipped:`) when exact ids are refused on this system.
fn restart_with(image: &Path, mode: &str, stdout: &Path) -> Option<String> {
    let mut cmd = Command::new(selfckpt());
    if mode == "new-without-clone3" {
        without_clone3(cmd.args(["restart", "--tids", "new"]));
    } else {
        cmd.args(["restart", "--tids", mode]);
    }
    let child = spawn_to_file(cmd.arg(image), stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if mode == "exact" && err.contains("exact process and thread ids are not possible here") {
        eprintln!("skipped: exact ids on this system: {err}");
        return None;
    }
    assert!(out.status.success(), "restart --tids {mode}: {err}");
    Some(err)
}

fn expected_identity(mode: &str) -> &'static str {
    if mode == "exact" {
        "identity: exact pid and tids"
    } else {
        "identity: new pid and tids"
    }
}

/// Runs `threads DIR args`, checkpoints it by signal at a random moment,
/// kills it, restarts with `mode` and checks the output. A busy machine may
/// let the program finish before the signal: that moment is drawn again.
fn checkpoint_kill_restart(tmp: &Path, round: usize, args: &[&str], mode: &str, want: &[u8]) {
    let dir = tmp.join(format!("ck{round}"));
    let so = tmp.join(format!("{round}.stdout"));
    let mut image = None;
    for attempt in 0..4u64 {
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = spawn_to_file(Command::new(threads()).arg(&dir).args(args), &so);
        wait_output(&so);
        std::thread::sleep(Duration::from_millis(random_ms(0, 400 >> attempt)));
        kill(&child, libc::SIGUSR1);
        wait_for("an image, or the program's end", 60, || {
            !images(&dir).is_empty() || child.try_wait().unwrap().is_some()
        });
        if !images(&dir).is_empty() {
            image = Some(wait_new_image(&dir, 0));
            kill_tree(&mut child, libc::SIGKILL);
            break;
        }
        eprintln!("round {round}: the program ended before the signal (busy machine); again");
    }
    let image = image.expect("no attempt took an image");
    let offset = fd_offset(&image, 1);
    let so2 = tmp.join(format!("{round}.restarted"));
    let Some(err) = restart_with(&image, mode, &so2) else {
        return;
    };
    let mut combined = std::fs::read(&so).unwrap()[..offset].to_vec();
    combined.extend(std::fs::read(&so2).unwrap());
    assert_eq!(
        String::from_utf8_lossy(&combined),
        String::from_utf8_lossy(want),
        "round {round} ({mode} ids): output differs (checkpoint at stdout offset {offset}); stderr: {err}"
    );
    assert!(
        err.contains(expected_identity(mode)),
        "round {round}: the program does not report {mode} ids: {err}"
    );
}

#[test]
fn rust_threads_checkpointed_at_20_random_moments_restart_exactly_with_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["40", "--sleep-ms", "15"];
    let want = reference(tmp.path(), &args);
    for round in 0..20 {
        let mode = if round % 2 == 0 { "exact" } else { "new" };
        checkpoint_kill_restart(tmp.path(), round, &args, mode, &want);
    }
}

#[test]
fn threads_are_recreated_with_plain_clone_where_clone3_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["40", "--sleep-ms", "15"];
    let want = reference(tmp.path(), &args);
    for round in 0..3 {
        checkpoint_kill_restart(tmp.path(), round, &args, "new-without-clone3", &want);
    }
}

#[test]
fn two_hundred_threads_checkpoint_and_restart_with_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["30", "--sleep-ms", "20", "--extra", "190"];
    let want = reference(tmp.path(), &args);
    for (round, mode) in ["exact", "new"].into_iter().enumerate() {
        checkpoint_kill_restart(tmp.path(), round, &args, mode, &want);
        let image = images(&tmp.path().join(format!("ck{round}")))
            .pop()
            .unwrap();
        let n = inspect(&image)["threads"].as_array().unwrap().len();
        assert!(n >= 200, "the image holds {n} threads");
    }
}

#[test]
fn a_restarted_program_is_checkpointed_again_and_restarted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["40", "--sleep-ms", "15"];
    let want = reference(tmp.path(), &args);
    for (round, (first, second)) in [("exact", "new"), ("new", "exact")].into_iter().enumerate() {
        let dir = tmp.path().join(format!("again{round}"));
        let so = tmp.path().join(format!("again{round}.stdout"));
        let mut child = spawn_to_file(Command::new(threads()).arg(&dir).args(args), &so);
        wait_output(&so);
        std::thread::sleep(Duration::from_millis(random_ms(0, 200)));
        kill(&child, libc::SIGUSR1);
        let image1 = wait_new_image(&dir, 0);
        kill_tree(&mut child, libc::SIGKILL);
        // Restart, checkpoint the restarted program through the restarter's pid.
        let so2 = tmp.path().join(format!("again{round}.r1"));
        let mut child = spawn_to_file(
            Command::new(selfckpt())
                .args(["restart", "--tids", first])
                .arg(&image1),
            &so2,
        );
        std::thread::sleep(Duration::from_millis(random_ms(50, 250)));
        kill(&child, libc::SIGUSR1);
        let image2 = wait_new_image(&dir, 1);
        kill_tree(&mut child, libc::SIGKILL);
        let j = inspect(&image2);
        assert_eq!(j["restarts"], 1, "{j}");
        let kept = if first == "exact" { "exact" } else { "new-ids" };
        assert_eq!(j["identity"], kept, "inspect shows the restart's path");
        let so3 = tmp.path().join(format!("again{round}.r2"));
        let Some(err) = restart_with(&image2, second, &so3) else {
            continue;
        };
        let mut combined = std::fs::read(&so).unwrap()[..fd_offset(&image1, 1)].to_vec();
        combined.extend(&std::fs::read(&so2).unwrap()[..fd_offset(&image2, 1)]);
        combined.extend(std::fs::read(&so3).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&combined),
            String::from_utf8_lossy(&want),
            "restart ({first}) of a restart ({second}); stderr: {err}"
        );
        assert!(err.contains("restarts: 2"), "{err}");
    }
}

#[test]
fn a_thread_blocking_the_suspend_signal_fails_the_checkpoint_cleanly_and_the_program_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["12", "--sleep-ms", "5", "--extra", "2", "--blocker"];
    let want = reference(tmp.path(), &args);
    let dir = tmp.path().join("ck");
    let so = tmp.path().join("blocked.stdout");
    let child = spawn_to_file(
        Command::new(threads()).arg(&dir).args(args).args([
            "--checkpoint-at",
            "3",
            "--timeout-ms",
            "300",
        ]),
        &so,
    );
    let err = wait_ok(child, "program with a blocking thread");
    assert!(
        err.contains("checkpoint 3: error:")
            && err.contains("(blocker) did not stop within 300 ms"),
        "the error names the thread: {err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&so).unwrap()),
        String::from_utf8_lossy(&want)
    );
    // Only the checkpoint log may be there, and it records the failure.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "stats.jsonl")
        .collect();
    assert!(left.is_empty(), "a failed checkpoint left {left:?}");
    let log = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap_or_default();
    assert!(
        log.contains("\"state\":\"error\"") && log.contains("did not stop"),
        "stats.jsonl records the failure: {log}"
    );
}

/// A C pthreads program that knows nothing of selfckpt (tests/c/pthreads.c)
/// runs under `selfckpt run`; it is checkpointed while its threads hold an
/// error-checking and a recursive mutex, block in read() on a pipe a
/// sibling writes later, in nanosleep() (with an altstack), in
/// pthread_cond_wait() and in sigwait(); killed; resumed by rerunning the
/// same command, with exact and with new ids. Every check in the program
/// must pass and the output must equal an uninterrupted run's.
#[test]
fn c_pthreads_holding_mutexes_and_blocked_in_syscalls_resume_with_both_id_paths() {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/pthreads.c");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pthreads");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/pthreads.c");
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed on {}", src.display());
    let window = "1500";
    let so = tmp.path().join("ref.stdout");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(window), &so),
        "reference run",
    );
    let want = std::fs::read(&so).unwrap();
    assert!(
        want.ends_with(b"pthreads ok\n"),
        "{}",
        String::from_utf8_lossy(&want)
    );
    lib("libselfckpt.so");
    for mode in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{mode}"));
        let run = || {
            let mut c = Command::new(selfckpt());
            c.env("SELFCKPT_TIDS", mode)
                .arg("run")
                .arg("--dir")
                .arg(&dir)
                .arg("--")
                .arg(&exe)
                .arg(window);
            c
        };
        let first = tmp.path().join(format!("{mode}.first"));
        let mut child = spawn_to_file(&mut run(), &first);
        wait_output(&first);
        std::thread::sleep(Duration::from_millis(random_ms(0, 400)));
        kill(&child, libc::SIGUSR1);
        let image = wait_new_image(&dir, 0);
        kill_tree(&mut child, libc::SIGKILL);
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("{mode}.second"));
        let err = wait_ok(spawn_to_file(&mut run(), &second), "resumed run");
        if mode == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        let mut combined = std::fs::read(&first).unwrap()[..offset].to_vec();
        combined.extend(std::fs::read(&second).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&combined),
            String::from_utf8_lossy(&want),
            "{mode} ids: output differs; stderr: {err}"
        );
        let j = inspect(&image);
        let threads = j["threads"].as_array().unwrap().len();
        assert!(threads >= 7, "the image holds {threads} threads: {j}");
    }
}

/// Without root, exact ids come from a user namespace of the restart's
/// own: a program checkpointed as an unprivileged user (nobody) restarts
/// as that user with its pid and tids, and its output is exact.
#[test]
fn an_unprivileged_user_gets_exact_ids_through_a_user_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the test's programs as another user");
        return;
    }
    let as_nobody = |prog: &Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(prog);
        c
    };
    match as_nobody(&selfckpt()).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: user nobody cannot run {}: {}",
                selfckpt().display(),
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: setpriv: {e}");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("nobody");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let args = ["12", "--sleep-ms", "5", "--checkpoint-at", "4"];
    let want = reference(tmp.path(), &args[..3]);
    let dir = work.join("ck");
    let so = work.join("first.stdout");
    wait_ok(
        spawn_to_file(as_nobody(&threads()).arg(&dir).args(args), &so),
        "program as nobody",
    );
    let image = images(&dir).pop().expect("an image");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&image).unwrap().uid(),
        65534,
        "the image was written by nobody"
    );
    let so2 = work.join("restarted.stdout");
    let child = spawn_to_file(
        as_nobody(&selfckpt())
            .args(["restart", "--tids", "exact"])
            .arg(&image),
        &so2,
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("exact process and thread ids are not possible here") {
        eprintln!("skipped: unprivileged user namespaces are not allowed here: {err}");
        return;
    }
    assert!(out.status.success(), "restart as nobody: {err}");
    assert!(err.contains(expected_identity("exact")), "{err}");
    let mut combined = std::fs::read(&so).unwrap()[..fd_offset(&image, 1)].to_vec();
    combined.extend(std::fs::read(&so2).unwrap());
    assert_eq!(
        String::from_utf8_lossy(&combined),
        String::from_utf8_lossy(&want)
    );
}

/// `tests/c/own_rseq.c`: an rseq area the program registered itself
/// (after giving up glibc's) is registered again after the restart, under
/// both id paths.
#[test]
fn an_rseq_area_of_the_programs_own_is_registered_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("own_rseq");
    if !build_c("own_rseq", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = {
        let out = tmp.path().join("ref");
        wait_ok(
            spawn_to_file(&mut std::process::Command::new(&exe), &out),
            "reference run",
        );
        std::fs::read_to_string(&out).unwrap()
    };
    assert!(
        want.contains("register again: Device or resource busy\n"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[], |_| {}) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: {err}");
    }
}
