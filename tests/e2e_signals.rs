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

/// With the default signals (SIGUSR2 is selfckpt's term signal): a
/// program that blocks SIGUSR2 in every thread and reads it from a
/// signalfd gets both it is sent, one before and one after a checkpoint
/// (`selfckpt checkpoint PID`): selfckpt's threads never take it (which
/// would checkpoint and end the program).
#[test]
fn the_term_signal_blocked_everywhere_is_the_programs_with_the_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("blocked_signals");
    if !build_c("blocked_signals", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["20"]), &out);
    wait_output(&out);
    kill(&child, libc::SIGUSR2);
    checkpoint_wait(child.id());
    kill(&child, libc::SIGUSR2);
    let err = wait_ok(child, "program reading SIGUSR2 from a signalfd");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text, "ready\ngot SIGUSR2 (1)\ngot SIGUSR2 (2)\n",
        "stderr: {err}"
    );
}

/// Threads blocked in calls the kernel does not restart after a handler
/// (`poll`, `select`, `epoll_wait` with no timeout, `sigsuspend`, `ppoll`
/// and `select` with 2 s, `sem_timedwait` and absolute `clock_nanosleep`),
/// each treating EINTR or an early return as fatal: two checkpoints while
/// they wait must not show; the output equals an uninterrupted run's.
#[test]
fn blocking_calls_do_not_see_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("eintr");
    if !build_c("eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = wait_ok(
        spawn_to_file(Command::new(&exe).arg("3"), &tmp.path().join("ref")),
        "reference run",
    );
    let want_out = std::fs::read_to_string(tmp.path().join("ref")).unwrap();
    assert!(want_out.ends_with("eintr ok\n"), "{want_out}{want}");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["3"]), &out);
    wait_output(&out);
    std::thread::sleep(Duration::from_millis(random_ms(100, 500)));
    kill(&child, libc::SIGUSR1);
    wait_new_image(&dir, 0);
    std::thread::sleep(Duration::from_millis(random_ms(100, 700)));
    kill(&child, libc::SIGUSR1);
    wait_new_image(&dir, 1);
    let err = wait_ok(child, "program blocked in system calls");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want_out, "{err}");
}

/// The same waits (the epoll ones on epoll descriptors made anew, with
/// their registrations), checkpointed while blocked, killed, and resumed: each thread
/// re-enters its call and the output equals an uninterrupted run's.
#[test]
fn blocking_calls_resume_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("eintr");
    if !build_c("eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let args = ["3"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = dir.with_extension("first");
        let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &args), &first);
        wait_output(&first);
        std::thread::sleep(Duration::from_millis(random_ms(100, 800)));
        kill(&child, libc::SIGUSR1);
        let image = wait_new_image(&dir, 0);
        wait_stats_line(&dir, &image);
        kill_tree(&mut child, libc::SIGKILL);
        let Some((got, err)) = resume_after(&exe, &dir, tids, &args, &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
    }
}

/// A program that owns SIGUSR1 and SIGUSR2 (its handlers count the signals
/// it sends itself every 5 ms, and check every one arrived): selfckpt
/// gives both up to it, with a warning, and `checkpoint PID` goes on
/// through selfckpt's request channel. 20 checkpoints, a kill, a resume
/// and 3 more checkpoints of the resumed program: counts and output are
/// exactly an uninterrupted run's, and the program reads back its own
/// handlers and mask throughout; a handler it sets for signal 64 by
/// number (selfckpt's suspend signal: as the Go runtime does) installs,
/// reads back, and runs for every 64 it raises, checkpoints or not.
#[test]
fn a_program_that_owns_the_trigger_signals_keeps_them_and_is_checkpointed() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("own_signals");
    if !build_c("own_signals", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let steps = "900";
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(steps), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("own_signals ok\n"), "{want}");
    let dir = tmp.path().join("ck");
    let run = || selfckpt_run(&dir, &exe, &[steps]);
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut run(), &first);
    wait_output(&first);
    let mut last = std::path::PathBuf::new();
    for _ in 0..20 {
        last = checkpoint_wait(child.id());
    }
    kill_tree(&mut child, libc::SIGKILL);
    let mut first_err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut first_err);
    }
    assert!(
        first_err.contains("handles signal 10 (SIGUSR1) itself")
            && first_err.contains("handles signal 12 (SIGUSR2) itself"),
        "no warning that SIGUSR1 and SIGUSR2 are the program's: {first_err}"
    );
    let offset = fd_offset(&last, 1);
    let second = tmp.path().join("second");
    let resumed = spawn_to_file(&mut run(), &second);
    // Until the restart forwards signals, `checkpoint` would fall back to
    // the trigger signal, which is the program's own now.
    let status = format!("/proc/{}/status", resumed.id());
    wait_for("the resumed run to take requests", 30, || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .is_some_and(|m| m & (1 << 62) != 0)
        })
    });
    for _ in 0..3 {
        checkpoint_wait(resumed.id());
    }
    let err = wait_ok(resumed, "resumed run");
    let first = std::fs::read_to_string(tmp.path().join("first")).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        format!("{}{second}", &first[..offset]),
        want,
        "stderr: {err}"
    );
}

/// Thread cancellation across a restart (issue 13 item 5): glibc's
/// `sigprocmask` never blocks its SIGCANCEL, so a cancellation pending at
/// the checkpoint used to run glibc's handler inside the restart entry,
/// whose unwinding met the restorer's frames and aborted (one restart in
/// eight of a program cancelling threads in a loop). Here a thread blocks
/// SIGCANCEL with the raw system call while it is cancelled, so the image
/// holds it pending every time; each of 20 restarts (both id paths) must
/// cancel the thread only when it unblocks, and finish normally.
#[test]
fn a_cancellation_pending_at_the_checkpoint_happens_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("cancel");
    if !build_c("cancel", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["pending"]), &out);
    wait_output(&out);
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let image = image.as_path();
    let pending = inspect(image);
    assert!(
        pending["threads"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["pending"].to_string().contains("32"))),
        "no thread has SIGCANCEL pending in the image: {}",
        pending["threads"]
    );
    for _ in 0..10 {
        restart_both_ways(image, "cancel ok", |_, _, _| {});
    }
}

/// The shape that crashed: threads created and cancelled in a loop
/// (deferred and asynchronous), checkpointed at random moments, killed and
/// resumed, 10 times; no run may die on its own.
#[test]
fn cancelling_threads_in_a_loop_survives_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("cancel");
    if !build_c("cancel", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    for cycle in 0..10 {
        let out = tmp.path().join(format!("out{cycle}"));
        let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["1000000"]), &out);
        std::thread::sleep(Duration::from_millis(random_ms(200, 600)));
        checkpoint_wait(child.id());
        std::thread::sleep(Duration::from_millis(random_ms(100, 500)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "cycle {cycle}: the program died: {:?}",
            child.wait()
        );
        kill_tree(&mut child, libc::SIGKILL);
    }
}

/// `kill -USR1` (the trigger signal, delivered to the main thread) in the
/// middle of `poll`, `select`, `epoll_wait`, `ppoll` without a timeout,
/// `sigsuspend`, `msgrcv`, `semop`, `sigwaitinfo`, `read`, `waitpid`, a raw
/// `FUTEX_WAIT`, and of 1 s `nanosleep`,
/// `poll`, `semtimedop` and `sleep`: each checkpoint asked for that way
/// is invisible (no EINTR, no early return), while the program's own
/// signals still end `pause` and `sigsuspend` (also when SIGUSR1 comes at
/// the same instant). The output equals a run without selfckpt, and the
/// checkpoints were taken.
#[test]
fn kill_usr1_checkpoints_never_end_a_call_early() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("trigger_eintr");
    if !build_c("trigger_eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    same_as_without_selfckpt(tmp.path(), &exe, selfckpt_run(&dir, &exe, &["send"]), &dir);
}

/// Runs `exe quiet` without selfckpt, then `run` (`exe send` with the
/// checkpointer, writing into `dir`): both print the same, and at least
/// six checkpoints were taken.
fn same_as_without_selfckpt(tmp: &Path, exe: &Path, mut run: Command, dir: &Path) {
    let want = reference(exe, &["quiet"], &tmp.join("ref"));
    assert!(want.ends_with("trigger-eintr ok\n"), "{want}");
    let out = tmp.join("out");
    let err = wait_ok(
        spawn_to_file(&mut run, &out),
        "program blocked in calls while SIGUSR1 comes",
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{err}");
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    let taken = stats.lines().filter(|l| !l.contains("\"error\"")).count();
    assert!(taken >= 6, "only {taken} checkpoints were taken: {stats}");
}

/// The same, killed after its fourth checkpoint and resumed under both id
/// paths: the resumed program goes on in its call and ends as the
/// uninterrupted run.
#[test]
fn kill_usr1_checkpoints_resume_in_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("trigger_eintr");
    if !build_c("trigger_eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &["quiet"], &tmp.path().join("ref"));
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = dir.with_extension("first");
        let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &["send"]), &first);
        // The fourth checkpoint (counted in stats.jsonl: older images are
        // pruned), taken before the program forks its waitpid child.
        wait_for("four checkpoints", 60, || {
            std::fs::read_to_string(dir.join("stats.jsonl"))
                .is_ok_and(|s| s.lines().filter(|l| l.contains("\"path\"")).count() >= 4)
        });
        let image = images(&dir).pop().unwrap();
        wait_stats_line(&dir, &image);
        kill_tree(&mut child, libc::SIGKILL);
        let Some((got, err)) = resume_after(&exe, &dir, tids, &["send"], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
    }
}

/// The same program linked with `libselfckpt.a` (it installs the
/// checkpointer itself): the static library's wrappers and trampoline are
/// in use, and `kill -USR1` checkpoints are as invisible.
#[test]
fn kill_usr1_checkpoints_are_invisible_with_the_static_library() {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/trigger_eintr.c");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = tmp.path().join("trigger_eintr_linked");
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-DLINKED", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c/trigger_eintr.c"))
        .arg(lib("libselfckpt.a"))
        .args(["-ldl", "-lm", "-lrt", "-lgcc_s", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(st.success(), "cc -DLINKED trigger_eintr.c libselfckpt.a");
    let dir = tmp.path().join("ck");
    let mut run = Command::new(&exe);
    run.arg("send").env("SELFCKPT_DIR", &dir);
    same_as_without_selfckpt(tmp.path(), &exe, run, &dir);
}

/// The same calls, with `selfckpt checkpoint PID` (the suspend signal
/// parks the main thread inside each call) every 150-400 ms instead of
/// `kill -USR1`: the output equals a run without selfckpt.
#[test]
fn checkpoint_pid_never_ends_a_call_early() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("trigger_eintr");
    if !build_c("trigger_eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg("quiet"), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["quiet"]), &out);
    wait_output(&out);
    let mut taken = 0;
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(random_ms(150, 400)));
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
        taken += usize::from(o.status.success());
    }
    let err = wait_ok(child, "program blocked in calls while checkpointed");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{err}");
    assert!(taken >= 6, "only {taken} checkpoints were taken");
}

/// Each thread's alternate signal stack (`sigaltstack`) and a handler
/// that runs on it (`SA_ONSTACK`) come back (`tests/c/altstack.c`; the
/// restart's `rt_sigreturn` of each parked thread's frame sets the stack
/// the frame saved): the same address, size and flags, the handler on it.
#[test]
fn alternate_signal_stacks_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("altstack");
    if !build_c("altstack", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(
        want.contains("main: alternate stack the same, size the same, flags 0, handler on it 1\n")
            && want.contains(
                "thread: alternate stack the same, size the same, flags 0, handler on it 1\n"
            )
            && want.ends_with("altstack ok\n"),
        "{want}"
    );
    let (got, err) = resumed(&exe, &tmp.path().join("ck"), "new", &[], |_| {}).unwrap();
    assert_eq!(got, want, "resumed output differs; stderr: {err}");
}
