//! Process state comes back (issue 14): `tests/c/process_state.c` sets
//! resource limits (soft and hard, lowered), `oom_score_adj`, thread
//! names, the parent-death signal, `DUMPABLE`, `NO_NEW_PRIVS`,
//! `CHILD_SUBREAPER` and `THP_DISABLE`; it is checkpointed while it
//! sleeps, killed, and resumed by `selfckpt run` under both id paths: what
//! it reads back (getrlimit, prctl, /proc) must be exactly an
//! uninterrupted run's. A limit the restarting user cannot have is refused
//! by name before anything is in place; seccomp
//! filters the program installed are named at checkpoint time, refused at
//! restart, and left out with `--unrestorable=seccomp`.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The reference output of `exe ARGS`, run without selfckpt.
fn reference(exe: &Path, out: &Path, args: &[&str]) -> String {
    wait_ok(
        spawn_to_file(Command::new(exe).args(args), out),
        "reference run",
    );
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn process_state_comes_back_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("process_state");
    if !build_c("process_state", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &tmp.path().join("ref"), &[]);
    assert!(want.ends_with("process state ok\n"), "{want}");
    for line in [
        "RLIMIT_NOFILE 256 4096",
        "oom_score_adj 321",
        "main thread name ps-main",
        "worker thread name ps-worker",
        "pdeathsig 28",
        "dumpable 0",
        "no_new_privs 1",
        "child_subreaper 1",
        "thp_disable 1",
        "membarrier expedited 0 ok",
    ] {
        assert!(want.lines().any(|l| l == line), "{line}: {want}");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let (image, first) = eventfds_image(&exe, &dir, tids, &[]);
        let j = inspect(&image);
        let objects = j["objects"].as_array().unwrap();
        let limits = objects.iter().find(|o| o["kind"] == "rlimits").unwrap();
        assert_eq!(limits["limits"]["RLIMIT_NOFILE"]["soft"], 256, "{j}");
        assert_eq!(limits["limits"]["RLIMIT_NOFILE"]["hard"], 4096, "{j}");
        let attrs = objects
            .iter()
            .find(|o| o["kind"] == "process_attrs")
            .unwrap();
        assert_eq!(attrs["oom_score_adj"], 321, "{j}");
        assert_eq!(attrs["pdeathsig"], 28, "{j}");
        assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
        let text = inspect_text(&image);
        assert!(
            text.contains("RLIMIT_NOFILE 256/4096")
                && text.contains("process: oom_score_adj 321, parent-death signal 28, dumpable 0"),
            "{text}"
        );

        let Some((got, err)) = resume_after(&exe, &dir, tids, &[], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        for bad in ["cannot be set", "oom_score_adj", "dumpable", "stand-ins"] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}

/// `selfckpt restart --tids new [--unrestorable=ACCEPT] IMAGE`, the
/// restarter having run `before` (one async-signal-safe system call)
/// before its exec; its output.
fn restart_after(image: &Path, accept: Option<&str>, before: fn()) -> std::process::Output {
    let mut c = Command::new(selfckpt());
    c.args(["restart", "--tids", "new"]);
    if let Some(kinds) = accept {
        c.arg(format!("--unrestorable={kinds}"));
    }
    c.arg(image);
    // SAFETY: `before` makes one async-signal-safe system call.
    unsafe {
        c.pre_exec(move || {
            before();
            Ok(())
        });
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

/// Whether this process may raise its hard limits.
fn privileged() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|c| c & (1 << 24) != 0)
}

#[test]
fn limits_the_restarting_user_cannot_have_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("process_state");
    if !build_c("process_state", &exe) {
        return;
    }
    lib("libselfckpt.so");
    if privileged() {
        eprintln!("skipped: this user has CAP_SYS_RESOURCE: every limit can be had");
        return;
    }
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &[]);
    let restart = |accept: Option<&str>| {
        restart_after(&image, accept, || {
            let l = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            // SAFETY: lowering this (child) process's own limit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
        })
    };
    let o = restart(None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("RLIMIT_NOFILE: the program's hard limit 4096 is above this user's 1024")
            && err.contains("--unrestorable=rlimit"),
        "{err}"
    );
    // Accepted: the program runs on with the highest value allowed.
    let o = restart(Some("rlimit"));
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("RLIMIT_NOFILE 256 1024\n"), "{out}");
    assert!(out.contains("oom_score_adj 321\n"), "{out}");
}

#[test]
fn seccomp_filters_are_named_and_refused_unless_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("process_state");
    if !build_c("process_state", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &tmp.path().join("ref"), &["seccomp"]);
    assert!(want.contains("seccomp mode 2\n"), "{want}");
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &["seccomp"]);
    let j = inspect(&image);
    let named = j["not_restorable"].as_array().unwrap();
    assert_eq!(named.len(), 1, "{j}");
    assert!(
        named[0].as_str().unwrap().contains("seccomp filters"),
        "{j}"
    );
    let o = Command::new(selfckpt())
        .args(["restart", "--tids", "new"])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("seccomp filters") && err.contains("--unrestorable=seccomp"),
        "{err}"
    );
    let o = Command::new(selfckpt())
        .args(["restart", "--tids", "new", "--unrestorable=seccomp"])
        .arg(&image)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The stand-in: the program goes on without its filter.
    assert!(out.contains("seccomp mode 0\n"), "{out}");
    assert!(out.ends_with("process state ok\n"), "{out}");
}

/// Events queued on an inotify descriptor, not read yet, cannot come
/// back: the checkpoint names them and the restart refuses (they were
/// lost silently: CRIU's inotify_system waited forever for them).
#[test]
fn queued_inotify_events_are_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("inotify");
    if !build_c("inotify", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let w = tmp.path().join("watched");
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &[w.to_str().unwrap(), "queued"]);
    let text = inspect_text(&image);
    assert!(
        text.contains("bytes of events queued, not read yet"),
        "{text}"
    );
    let err = restart_refused(tmp.path(), &image);
    assert!(
        err.contains("events queued") && err.contains("--unrestorable=inotify"),
        "{err}"
    );
}

/// inotify (issue 14): `tests/c/inotify.c` watches a directory and two
/// files (one by a relative path), with a hole in the watch numbers; after
/// a restart under both id paths the events of what it does then come
/// with the same watch numbers and masks as in an uninterrupted run.
#[test]
fn inotify_watches_come_back_with_their_numbers_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("inotify");
    if !build_c("inotify", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let watched = |name: &str| tmp.path().join(format!("watched-{name}"));
    let r = watched("ref");
    let want = reference(&exe, &tmp.path().join("ref"), &[r.to_str().unwrap()]);
    assert!(want.ends_with("inotify ok\n"), "{want}");
    assert!(want.contains("watches 1 2 4, flags nonblock\n"), "{want}");
    assert_eq!(want.matches("event wd ").count(), 4, "{want}");
    assert!(
        want.contains("many watches: 40 events, 0 on another watch\n"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let w = watched(tids);
        let args = [w.to_str().unwrap()];
        let (image, first) = eventfds_image(&exe, &dir, tids, &args);
        let j = inspect(&image);
        let ino = j["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "inotify")
            .unwrap_or_else(|| panic!("{j}"));
        let wds: Vec<i64> = ino["watches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["wd"].as_i64().unwrap())
            .collect();
        assert_eq!(wds.len(), 3, "{j}");
        assert!(wds.contains(&4) && !wds.contains(&3), "{j}");
        assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
        assert!(inspect_text(&image).contains("inotify, 3 watches nonblock"));
        // The second descriptor's forty numbers, each once (the kernel
        // shows them in hex).
        let mut many: Vec<i64> = j["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "inotify")
            .nth(1)
            .unwrap_or_else(|| panic!("{j}"))["watches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["wd"].as_i64().unwrap())
            .collect();
        many.sort_unstable();
        many.dedup();
        assert_eq!(many, (1..=40).collect::<Vec<i64>>(), "{j}");
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &args), &second),
            "resumed run",
        );
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        assert!(status.success(), "resumed --tids {tids}: {status}: {err}");
        let first = std::fs::read_to_string(&first).unwrap();
        let second = std::fs::read_to_string(&second).unwrap();
        assert_eq!(
            format!("{}{second}", &first[..offset]),
            want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        assert!(!err.contains("inotify:"), "--tids {tids}: {err}");
    }
}

/// A process whose main thread has exited (the group leader a zombie,
/// another thread going on) can be checkpointed (issue 14: it failed with
/// "cannot open /proc/self/mem") and restarted with new ids; exact ids
/// are refused, saying why (no thread has the process id).
#[test]
fn a_process_whose_main_thread_exited_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("leader_exits");
    if !build_c("leader_exits", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &tmp.path().join("ref"), &[]);
    assert_eq!(want, "waiting\nworker done: 499999500000\n");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let (image, first) = eventfds_image(&exe, &dir, tids, &[]);
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[]), &second),
            "resumed run",
        );
        if tids == "exact" {
            assert!(
                !status.success() && err.contains("its main thread had ended"),
                "{status}: {err}"
            );
            continue;
        }
        assert!(status.success(), "resumed --tids {tids}: {status}: {err}");
        let first = std::fs::read_to_string(&first).unwrap();
        let second = std::fs::read_to_string(&second).unwrap();
        assert_eq!(
            format!("{}{second}", &first[..offset]),
            want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
    }
}

/// Whether this process is root with every capability (the credentials
/// a program gives up can then be checked coming back as given up).
fn all_capabilities() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    euid == 0
        && std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|c| c & (1 << 21) != 0 && c & (1 << 19) != 0)
}

/// `tests/c/credentials.c` reads its threads' scheduling and credentials
/// back after the restart exactly as an uninterrupted run does: the
/// capabilities its threads gave up (each its own) stay given up, though
/// root restarts it.
#[test]
fn credentials_and_scheduling_come_back_per_thread_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("credentials");
    if !build_c("credentials", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &tmp.path().join("ref"), &[]);
    assert!(want.ends_with("credentials ok\n"), "{want}");
    for line in [
        "main policy 3 nice 7 pdeathsig 28",
        "worker policy 3 nice 11 pdeathsig 0",
    ] {
        assert!(want.lines().any(|l| l == line), "{line}: {want}");
    }
    let root = all_capabilities();
    if root {
        let caps = |who: &str, set: &str| {
            let l = want
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{who} {set}:")))
                .unwrap();
            u64::from_str_radix(l.trim(), 16).unwrap()
        };
        // CAP_NET_RAW 13, CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21.
        assert_eq!(caps("main", "CapEff") & (1 << 13 | 1 << 19), 0, "{want}");
        assert_eq!(caps("main", "CapBnd") & (1 << 13), 0, "{want}");
        assert_ne!(caps("worker", "CapEff") & (1 << 19), 0, "{want}");
        assert_eq!(caps("worker", "CapEff") & (1 << 21), 0, "{want}");
        assert!(want.contains("main Groups:\t1234 5678"), "{want}");
        assert!(want.contains("main Uid:\t65534\t0\t0\t0"), "{want}");
    } else {
        eprintln!("skipped: capabilities and groups part (needs root): scheduling only");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let (image, first) = eventfds_image(&exe, &dir, tids, &[]);
        let j = inspect(&image);
        let objects = j["objects"].as_array().unwrap();
        let sched = objects.iter().find(|o| o["kind"] == "scheduling").unwrap();
        let threads = sched["threads"].as_array().unwrap();
        assert!(
            threads
                .iter()
                .any(|t| t["nice"] == 7 && t["policy"] == "SCHED_BATCH"),
            "{j}"
        );
        assert!(threads.iter().any(|t| t["nice"] == 11), "{j}");
        let creds = objects.iter().find(|o| o["kind"] == "credentials").unwrap();
        if root {
            assert_eq!(creds["groups"], serde_json::json!([1234, 5678]), "{j}");
        }
        assert!(inspect_text(&image).contains("scheduling of thread"));
        let Some((got, err)) = resume_after(&exe, &dir, tids, &[], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        assert!(!err.contains("warning"), "--tids {tids}: {err}");
    }
}

/// A restarter that lacks a capability one of the program's threads held
/// refuses, naming it; told to go on, the thread runs with less, and says
/// so, never with more.
#[test]
fn credentials_the_restart_cannot_give_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("credentials");
    if !build_c("credentials", &exe) {
        return;
    }
    lib("libselfckpt.so");
    if !all_capabilities() {
        eprintln!("skipped: needs root with every capability (the restarter gives one up)");
        return;
    }
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &[]);
    // Root execs without the capability it drops from its bounding set.
    let restart = |accept: Option<&str>| {
        restart_after(&image, accept, || {
            // SAFETY: a prctl on this (child) process's own bounding set.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, 19, 0, 0, 0) };
        })
    };
    let o = restart(None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("credentials this restart cannot give")
            && err.contains("capabilities 0x80000")
            && err.contains("--unrestorable=credentials"),
        "{err}"
    );
    let o = restart(Some("credentials"));
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("fewer credentials than it had"), "{err}");
    let worker_eff = out
        .lines()
        .find_map(|l| l.strip_prefix("worker CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(worker_eff & (1 << 19 | 1 << 21), 0, "{out}");
    assert!(out.ends_with("credentials ok\n"), "{out}");
}
