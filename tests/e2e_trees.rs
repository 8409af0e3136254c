//! Process trees (issue 15): a program and every process it forks are
//! checkpointed together into one tree image set, killed, resumed by
//! `selfckpt run` (a tree restart: every pid, parent, group, zombie and
//! shared pipe as it was), and must print exactly what an uninterrupted
//! run prints. A member killed during the checkpoint fails it cleanly:
//! everybody goes on, the previous set stays the newest and valid.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Whether a tree restart can work here (exact pids need a PID
/// namespace); says `skipped:` when not.
fn can_restart_trees() -> bool {
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--fork", "true"])
        .output();
    let ok = o.is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no PID namespaces here (a tree restarts with its exact pids)");
    }
    ok
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

/// The member images of a set, with their record.
fn record(set: &Path) -> serde_json::Value {
    let j = Command::new(selfckpt())
        .args(["inspect", "--json"])
        .arg(set)
        .output()
        .unwrap();
    assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stderr));
    serde_json::from_slice(&j.stdout).unwrap()
}

/// Runs `prog args` uninterrupted, then under `selfckpt run`: once it
/// printed `after` lines, checkpoints the tree, kills it, resumes it with
/// `selfckpt run` and compares the output with the uninterrupted run's.
/// Returns the set's record.
fn checkpoint_kill_resume(
    tmp: &Path,
    prog: &str,
    args: &[&str],
    after: usize,
    check: impl Fn(&serde_json::Value),
) -> serde_json::Value {
    checkpoint_kill_resume_set(tmp, prog, args, after, |_, rec| check(rec))
}

/// [`checkpoint_kill_resume`], `check` given the set too.
fn checkpoint_kill_resume_set(
    tmp: &Path,
    prog: &str,
    args: &[&str],
    after: usize,
    check: impl Fn(&Path, &serde_json::Value),
) -> serde_json::Value {
    let reference = tmp.join("ref");
    wait_ok(
        spawn_to_file(Command::new(prog).args(args), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    let dir = tmp.join("ck");
    let first = tmp.join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, prog, args), &first);
    wait_for("output", 60, || lines(&first) >= after);
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    assert!(
        set.is_dir() && set.join("tree.json").is_file(),
        "not a set: {}",
        set.display()
    );
    let rec = record(&set);
    check(&set, &rec);
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(&set)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let offset = fd_offset(&root_image(&set), 1);
    let second = tmp.join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, prog, args), &second),
        "resumed run",
    );
    assert!(err.contains("resuming"), "{err}");
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        format!("{}{second}", &first[..offset]),
        want,
        "stderr of the resumed run: {err}"
    );
    rec
}

fn pids(rec: &serde_json::Value, what: &str) -> Vec<u64> {
    rec[what]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_u64().unwrap())
        .collect()
}

/// `tests/c/tree_pipe.c` with `args`, through [`checkpoint_kill_resume`]
/// after 15 lines (nothing where trees cannot be restarted here).
fn tree_pipe(args: &[&str], check: impl Fn(&serde_json::Value)) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_pipe");
    if !build_c("tree_pipe", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), args, 15, check);
}

#[test]
fn parent_and_forked_child_exchange_counters_over_pipes_and_the_parent_waits_for_it() {
    tree_pipe(&["50"], |rec| {
        let members = pids(rec, "members");
        assert_eq!(members.len(), 2, "{rec}");
        assert_eq!(rec["members"][1]["ppid"].as_u64(), Some(members[0]));
        // Both pipes are the tree's, each end in both processes.
        let shared = rec["shared"].as_array().unwrap();
        let between = shared
            .iter()
            .filter(|s| s["ends"].as_array().unwrap().len() == 2)
            .count();
        assert_eq!(between, 2, "{rec}");
    });
}

/// The same over pipes numbered 2000 and up (the program raised its
/// descriptor limit): the restarter's own limit is lower, the tree's
/// copies still find room. Nothing but the two pipes is shared: a
/// member's checkpointer's own descriptors are not the tree's.
#[test]
fn pipes_between_members_at_numbers_past_the_usual_limit() {
    tree_pipe(&["50", "high"], |rec| {
        let shared = rec["shared"].as_array().unwrap();
        assert_eq!(shared.len(), 2, "{rec}");
        for s in shared {
            assert_eq!(s["kind"], "pipe", "{rec}");
            let fds: Vec<i64> = s["ends"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["fd"].as_i64().unwrap())
                .collect();
            assert!(fds.iter().all(|&fd| fd >= 2000), "{rec}");
        }
    });
}

/// A shell with two children that share nothing but the run's stdio:
/// the record names no file shared between them (each member's
/// checkpointer holds spare descriptors, inherited over fork; they are
/// its own, not the program's).
#[test]
fn a_shell_with_two_children_shares_none_of_the_checkpointers_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    // Two forked shells (no exec): they inherit the same spare descriptors.
    let script = "{ sleep 5; : ; } & for i in $(seq 1 40); do echo $i; sleep 0.1; done & wait";
    checkpoint_kill_resume(tmp.path(), "/bin/sh", &["-c", script], 10, |rec| {
        assert!(pids(rec, "members").len() >= 3, "{rec}");
        let files: Vec<_> = rec["shared"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "file")
            .collect();
        assert!(files.is_empty(), "{files:?}");
    });
}

/// A parent and its forked child exchanging counters over one
/// socketpair (`mode`: each closed the end it does not use, or both kept
/// both): one connection between them, made again by the tree with what
/// was queued each way.
fn socketpair_between_members(mode: &str) {
    tree_pipe(&["50", mode], |rec| {
        let members = pids(rec, "members");
        assert_eq!(members.len(), 2, "{rec}");
        let socks: Vec<_> = rec["shared"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "socket")
            .collect();
        // Both ends of the one connection, each naming the other.
        assert_eq!(socks.len(), 2, "{rec}");
        assert_eq!(socks[0]["peer"], socks[1]["ino"], "{rec}");
        let holders = |s: &serde_json::Value| s["ends"].as_array().unwrap().len();
        let want = if mode == "socketpair" { 1 } else { 2 };
        assert!(socks.iter().all(|s| holders(s) == want), "{rec}");
    });
}

#[test]
fn parent_and_forked_child_exchange_counters_over_a_socketpair() {
    socketpair_between_members("socketpair");
}

#[test]
fn parent_and_child_both_holding_both_ends_of_a_socketpair() {
    socketpair_between_members("socketpair-open");
}

/// A parent and its forked child taking turns on counters in one
/// MAP_SHARED page (`mode`: shared anonymous memory, or an unlinked
/// /dev/shm file): the tree makes the object once and both map it.
fn shared_memory_between_members(mode: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_shm");
    if !build_c("tree_shm", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let exe = exe.to_str().unwrap();
    checkpoint_kill_resume(tmp.path(), exe, &["40", mode], 12, |rec| {
        let members = pids(rec, "members");
        assert_eq!(members.len(), 2, "{rec}");
        // The page, mapped by both.
        let memory: Vec<_> = rec["shared"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "memory")
            .collect();
        assert_eq!(memory.len(), 1, "{rec}");
        assert_eq!(memory[0]["ends"].as_array().unwrap().len(), 2, "{rec}");
    });
}

#[test]
fn parent_and_child_take_turns_in_shared_anonymous_memory() {
    shared_memory_between_members("anon");
}

#[test]
fn parent_and_child_take_turns_in_an_unlinked_dev_shm_file() {
    shared_memory_between_members("devshm");
}

/// A memfd made without MFD_ALLOW_SEALING (sealed F_SEAL_SEAL by the
/// kernel) is made once for the tree too (it was made once per member:
/// each waited forever for the other's turn), and its descriptor reads
/// what the mapping holds.
#[test]
fn parent_and_child_take_turns_in_a_memfd() {
    shared_memory_between_members("memfd");
}

/// Runs `exe args` uninterrupted, then under `selfckpt run` checkpointed
/// and killed twice (once the run printed a line starting with `ats[0]`,
/// then, restarted, `ats[1]`), resumed a third time: the output must be
/// the uninterrupted run's. `check` sees each set's record.
fn checkpoint_twice(
    tmp: &Path,
    exe: &Path,
    args: &[&str],
    ats: [&str; 2],
    check: impl Fn(&serde_json::Value),
) {
    let reference = tmp.join("ref");
    wait_ok(
        spawn_to_file(Command::new(exe).args(args), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    let dir = tmp.join("ck");
    let mut text = String::new();
    for (i, at) in ats.iter().enumerate() {
        let out = tmp.join(format!("run{i}"));
        let mut child = spawn_to_file(&mut selfckpt_run(&dir, exe, args), &out);
        wait_for("output", 60, || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.lines().any(|l| l.starts_with(at)))
        });
        let set = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        check(&record(&set));
        let offset = fd_offset(&root_image(&set), 1);
        text.push_str(&std::fs::read_to_string(&out).unwrap()[..offset]);
    }
    let last = tmp.join("run3");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, exe, args), &last),
        "third run",
    );
    assert!(err.contains("resuming"), "{err}");
    text.push_str(&std::fs::read_to_string(&last).unwrap());
    assert_eq!(text, want, "{err}");
}

fn shared_of(rec: &serde_json::Value, kind: &str) -> usize {
    rec["shared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .count()
}

/// A restarted tree still shares its memory at its next checkpoint (one
/// object, the same in every member's image), and comes back from it.
#[test]
fn shared_memory_of_a_restarted_tree_is_shared_again_after_a_second_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_shm");
    if !build_c("tree_shm", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_twice(tmp.path(), &exe, &["50", "anon"], ["8:", "30:"], |rec| {
        assert_eq!(shared_of(rec, "memory"), 1, "{rec}");
    });
}

/// The socketpair the tree made is again one connection between the
/// members at the next checkpoint.
#[test]
fn a_socketpair_of_a_restarted_tree_comes_back_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_pipe");
    if !build_c("tree_pipe", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_twice(
        tmp.path(),
        &exe,
        &["50", "socketpair"],
        ["8 ->", "30 ->"],
        |rec| assert_eq!(shared_of(rec, "socket"), 2, "{rec}"),
    );
}

/// Python's `multiprocessing.Pool(2)`, restarted in the middle of its
/// map: its workers share with the parent the pipes, the queues' locks
/// (semaphores in unlinked /dev/shm files) and a `Value` (in the
/// multiprocessing heap, an unlinked /dev/shm file too) each task adds
/// to under its lock: the parent's total is right only if the workers'
/// additions after the restart still reach its memory.
#[test]
fn a_python_multiprocessing_pool_resumes_mid_map() {
    if !have("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("pool.py");
    std::fs::write(
        &script,
        "import multiprocessing, time\n\
         def init(v):\n    global total\n    total = v\n\
         def work(n):\n\
         \x20   time.sleep(0.05)\n\
         \x20   with total.get_lock():\n        total.value += n\n\
         \x20   return n * n + 1\n\
         if __name__ == '__main__':\n\
         \x20   v = multiprocessing.Value('l', 0)\n\
         \x20   with multiprocessing.Pool(2, initializer=init, initargs=(v,)) as p:\n\
         \x20       for i, r in enumerate(p.imap(work, range(60), chunksize=1)):\n\
         \x20           print(i, r, flush=True)\n\
         \x20   print('total', v.value, flush=True)\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    checkpoint_kill_resume(tmp.path(), "python3", &[script], 15, |rec| {
        assert!(pids(rec, "members").len() >= 3, "{rec}");
    });
}

#[test]
fn a_members_parent_death_signal_and_a_subreaper_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_attrs");
    if !build_c("tree_attrs", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["40"], 12, |rec| {
        assert_eq!(pids(rec, "members").len(), 2, "{rec}");
    });
}

#[test]
fn a_zombie_at_checkpoint_time_gives_its_parent_its_status_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_zombie");
    if !build_c("tree_zombie", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let rec = checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["40"], 8, |rec| {
        let z = &rec["zombies"][0];
        assert_eq!(z["status"].as_i64(), Some(7 << 8), "{rec}");
        assert_eq!(pids(rec, "members").len(), 2, "{rec}");
    });
    let text = Command::new(selfckpt())
        .arg("inspect")
        .arg(
            tmp.path().join("ck").join(
                std::fs::read_dir(tmp.path().join("ck"))
                    .unwrap()
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".tree"))
                    .unwrap()
                    .file_name(),
            ),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("zombie (exited 7"), "{text}\n{rec}");
}

#[test]
fn a_shell_pipeline_comes_back_with_the_data_in_both_pipes() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_stage");
    if !build_c("tree_stage", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let e = exe.display();
    let script = format!("{e} produce 300 | {e} filter | {e} consume");
    checkpoint_kill_resume(tmp.path(), "bash", &["-c", &script], 10, |rec| {
        // The consumer reads a pipe that still holds data (its writers may
        // have finished already: then the pipe is the consumer's alone,
        // and its own image holds what is queued).
        assert!(pids(rec, "members").len() >= 2, "{rec}");
    });
}

#[test]
fn a_bash_loop_with_command_substitution_and_external_commands() {
    let tmp = tempfile::tempdir().unwrap();
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let script =
        r#"for i in $(seq 1 60); do v=$(expr $i \* 3); echo "$i $v"; sleep 0.03; done; echo done"#;
    checkpoint_kill_resume(tmp.path(), "bash", &["-c", script], 12, |rec| {
        assert!(rec["left_out"].as_array().unwrap().is_empty(), "{rec}");
    });
}

/// A member that owns SIGUSR1 and SIGUSR2 (as `make` owns SIGUSR1) keeps
/// them without a word: the tree is checkpointed through its root, and a
/// warning from a member would be a line in the program's output.
#[test]
fn a_member_owning_the_trigger_signals_adds_nothing_to_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("own_signals");
    if !build_c("own_signals", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let script = format!("echo start; {} 600 2>&1; echo end", exe.display());
    let rec = checkpoint_kill_resume(tmp.path(), "bash", &["-c", &script], 2, |_| {});
    assert!(pids(&rec, "members").len() >= 2, "{rec}");
}

#[test]
fn gcc_waits_for_cc1_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    if !have("gcc") {
        eprintln!("skipped: no gcc");
        return;
    }
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let src = tmp.path().join("big.c");
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!(
            "int f{i}(int x) {{ int s = 0; for (int k = 0; k < x; k++) s += (k * {i}) ^ (s >> 3); return s; }}\n"
        ));
    }
    std::fs::write(&src, text).unwrap();
    let obj = tmp.path().join("big.o");
    let reference = tmp.path().join("ref.o");
    let st = Command::new("gcc")
        .args(["-O2", "-c", "-o"])
        .arg(&reference)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let dir = tmp.path().join("ck");
    let gcc = |out: &Path| {
        let mut c = selfckpt_run(&dir, "gcc", &["-O2", "-c", "-o"]);
        c.arg(out).arg(&src);
        c
    };
    let log = tmp.path().join("log");
    let mut child = spawn_to_file(&mut gcc(&obj), &log);
    // cc1 is running: a member.
    wait_for("cc1", 60, || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "cc1")
                && std::fs::read_to_string(e.path().join("stat"))
                    .is_ok_and(|s| s.contains(&format!(" {} ", child.id())))
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let rec = record(&set);
    let progs: Vec<&str> = rec["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["program"].as_str().unwrap())
        .collect();
    assert!(progs.contains(&"cc1"), "{rec}");
    let _ = std::fs::remove_file(&obj);
    let err = wait_ok(spawn_to_file(&mut gcc(&obj), &log), "resumed gcc");
    assert!(!err.contains("No child processes"), "{err}");
    assert_eq!(
        std::fs::read(&obj).unwrap(),
        std::fs::read(&reference).unwrap(),
        "the object differs from an uninterrupted build's; stderr: {err}"
    );
}

#[test]
fn a_member_killed_during_the_checkpoint_fails_it_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_pipe");
    if !build_c("tree_pipe", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    // From round 20 on the child holds 48 MiB of incompressible data and
    // the run compresses hard: its dump takes seconds.
    let mut cmd = Command::new(selfckpt());
    cmd.args(["run", "--level", "19", "--dir"])
        .arg(&dir)
        .arg("--")
        .arg(&exe)
        .args(["400", "pipe", "48"]);
    let child = spawn_to_file(&mut cmd, &out);
    wait_for("output", 60, || lines(&out) >= 3);
    let root = child.id();
    // A first set, while the child is small.
    let older = checkpoint_wait(root);
    wait_for("round 25", 60, || lines(&out) >= 25);
    let member = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    let asked = Command::new(selfckpt())
        .args(["checkpoint", &root.to_string(), "--wait", "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-checkpoint: the member is parked, dumping.
    wait_for("the member to dump", 30, || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(".tree-")
                && std::fs::read_dir(e.path()).is_ok_and(|mut r| {
                    r.any(|f| {
                        f.is_ok_and(|f| {
                            f.file_name()
                                .to_string_lossy()
                                .contains(&format!("-{member}.ckpt"))
                        })
                    })
                })
        })
    });
    // SAFETY: killing a process this test started.
    unsafe { libc::kill(member, libc::SIGKILL) };
    let o = asked.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the checkpoint succeeded: {err}");
    assert!(
        err.contains(&format!("member {member}")) && err.contains("resumed"),
        "{err}"
    );
    // Everybody resumed: the root goes on (it sees its child gone and
    // ends); nothing half-written is left.
    let (st, stderr) = finish(child, "the root after the failed checkpoint");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        st.code() == Some(2) || st.signal() == Some(libc::SIGPIPE),
        "{st}: {stderr}"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".tree"))
        .collect();
    assert_eq!(
        left,
        vec![older.clone()],
        "the older set must be all that is left"
    );
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(&older)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn with_no_tree_the_checkpoint_names_the_children_it_leaves_out_and_the_restarted_parent_is_told() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_zombie");
    if !build_c("tree_zombie", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut cmd = Command::new(selfckpt());
    cmd.args(["run", "--no-tree", "--dir"])
        .arg(&dir)
        .arg("--")
        .arg(&exe)
        .arg("60");
    let mut child = spawn_to_file(&mut cmd, &out);
    wait_for("output", 60, || lines(&out) >= 3);
    let root = child.id();
    let late: u64 = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .find(|&p: &u64| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .unwrap();
    let (set, taken_err) = checkpoint_wait_err(root);
    kill_tree(&mut child, libc::SIGKILL);
    // Named in the stats line, the record and inspect.
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(stats.lines().last().unwrap()).unwrap();
    assert_eq!(line["left_out"][0]["pid"].as_u64(), Some(late), "{line}");
    let rec = record(&set);
    assert_eq!(pids(&rec, "members").len(), 1, "{rec}");
    assert_eq!(pids(&rec, "left_out"), vec![late], "{rec}");
    let text = Command::new(selfckpt())
        .arg("inspect")
        .arg(&set)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("left out") && text.contains("--no-tree"),
        "{text}"
    );
    // The checkpoint said it where it was asked.
    assert!(
        taken_err.contains(&format!("process {late} (")) && taken_err.contains("left out"),
        "{taken_err}"
    );
    // A restart refuses by default, naming it.
    let refused = Command::new(selfckpt())
        .arg("restart")
        .arg(&set)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{why}");
    assert!(
        why.contains(&format!("process {late} (")) && why.contains("--unrestorable=left_out"),
        "{why}"
    );
    // Accepted, the restarted parent is told, at restart and when its
    // wait fails.
    let second = tmp.path().join("second");
    let (st, err) = finish(
        spawn_to_file(
            Command::new(selfckpt())
                .arg("restart")
                .arg("--unrestorable=left_out")
                .arg(&set),
            &second,
        ),
        "restart",
    );
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("process {late} ("))
            && err.contains("--unrestorable=left_out")
            && err.contains(&format!("child {late} is not there to wait for")),
        "{err}"
    );
    // The zombie came back: its status is there.
    let second = std::fs::read_to_string(&second).unwrap();
    assert!(second.contains("early exited 7"), "{second}");
}

#[test]
fn a_tree_that_forks_in_a_loop_checkpoints_again_and_again_and_gc_keeps_sets_whole() {
    let tmp = tempfile::tempdir().unwrap();
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    // A child that lives throughout, so that every checkpoint is of a tree
    // (between two forks the shell alone is checkpointed as one process).
    let script =
        "sleep 120 & i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); echo $i; done; kill %1";
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, "bash", &["-c", script]), &out);
    wait_for("output", 60, || lines(&out) >= 5);
    let mut sets = Vec::new();
    for _ in 0..4 {
        // Each checkpoint freezes a tree that forks all the time.
        sets.push(checkpoint_wait(child.id()));
    }
    kill_tree(&mut child, libc::SIGKILL);
    let ls = Command::new(selfckpt())
        .arg("ls")
        .arg(&dir)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(!ls.contains("incomplete"), "{ls}");
    // The run keeps 3 sets; gc --keep 1 keeps the newest, whole.
    let g = Command::new(selfckpt())
        .args(["gc", "--keep", "1"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let newest = sets.last().unwrap();
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tree"))
        .collect();
    assert_eq!(
        &left,
        std::slice::from_ref(newest),
        "{}",
        String::from_utf8_lossy(&g.stdout)
    );
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(newest)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let offset = fd_offset(&root_image(newest), 1);
    let second = tmp.path().join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, "bash", &["-c", script]), &second),
        "resumed loop",
    );
    let first = std::fs::read_to_string(&out).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    let want: String = (1..=400).map(|i| format!("{i}\n")).collect();
    assert_eq!(format!("{}{second}", &first[..offset]), want, "{err}");
}

#[test]
fn a_file_opened_before_a_fork_keeps_one_offset_for_parent_and_child() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_file");
    if !build_c("tree_file", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("shared.ref");
    let r = Command::new(&exe)
        .arg(&reference)
        .arg("60")
        .output()
        .unwrap();
    assert!(r.status.success());
    let file = tmp.path().join("shared");
    let dir = tmp.path().join("ck");
    let args = [file.to_str().unwrap(), "60"];
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &args), &out);
    wait_for("output", 60, || lines(&out) >= 10);
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let rec = record(&set);
    let files: Vec<&serde_json::Value> = rec["shared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "file")
        .collect();
    // Two descriptions of the one file (the writer's and the reader's),
    // each held by both.
    assert_eq!(files.len(), 2, "{rec}");
    assert_ne!(files[0]["peer"], files[1]["peer"], "{rec}");
    assert!(
        files
            .iter()
            .all(|f| f["ends"].as_array().unwrap().len() == 2),
        "{rec}"
    );
    let offset = fd_offset(&root_image(&set), 1);
    let second = tmp.path().join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, &exe, &args), &second),
        "resumed run",
    );
    // One offset again: the lines follow each other as without a restart.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read_to_string(&reference).unwrap(),
        "{err}"
    );
    // And the reader's own: each round reads its two lines.
    let first = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        format!(
            "{}{}",
            &first[..offset],
            std::fs::read_to_string(&second).unwrap()
        ),
        String::from_utf8_lossy(&r.stdout),
        "{err}"
    );
}

#[test]
fn a_restarted_tree_checkpoints_and_restarts_again_after_a_member_exited() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_zombie");
    if !build_c("tree_zombie", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg("160"), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    let dir = tmp.path().join("ck");
    let mut text = String::new();
    // Run 1: checkpoint while the late child lives; run 2 (restarted):
    // the late child exits, then a second checkpoint; run 3 resumes it
    // (a member's exit is not the run's end).
    // (160 ticks of 40 ms: the late child exits at tick 120; the second
    // checkpoint, at tick 130, leaves 1.2 s before the program's end.)
    for (i, after) in [(1, 8), (2, 130)] {
        let out = tmp.path().join(format!("run{i}"));
        let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["160"]), &out);
        wait_for("output", 60, || {
            std::fs::read_to_string(&out)
                .is_ok_and(|t| t.lines().any(|l| l == format!("tick {after}")))
        });
        let set = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        let offset = fd_offset(&root_image(&set), 1);
        text.push_str(&std::fs::read_to_string(&out).unwrap()[..offset]);
    }
    let last = tmp.path().join("run3");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, &exe, &["160"]), &last),
        "third run",
    );
    assert!(err.contains("resuming"), "{err}");
    text.push_str(&std::fs::read_to_string(&last).unwrap());
    assert_eq!(text, want, "{err}");
}

#[test]
fn a_checkpoint_asked_of_a_member_is_taken_of_the_whole_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_pipe");
    if !build_c("tree_pipe", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["200"]), &out);
    wait_for("output", 60, || lines(&out) >= 3);
    let root = child.id();
    let member: i32 = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(member, libc::SIGUSR1) };
    wait_for("a set", 30, || {
        std::fs::read_dir(&dir).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tree"))
        })
    });
    kill_tree(&mut child, libc::SIGKILL);
    let set = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tree"))
        .unwrap();
    let rec = record(&set);
    assert_eq!(
        pids(&rec, "members"),
        vec![root as u64, member as u64],
        "{rec}"
    );
}

#[test]
fn children_execed_with_environments_of_their_own_stay_in_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_exec_env");
    if !build_c("tree_exec_env", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["40"], 10, |rec| {
        // The parent and its three exec'd children, whatever environment
        // each was given.
        assert_eq!(pids(rec, "members").len(), 4, "{rec}");
    });
}

/// A key for a System V segment of this test run (from the pid).
fn sysv_key(salt: u32) -> i32 {
    (0x5d00_0000 | ((std::process::id() & 0xffff) << 4) | salt) as i32
}

/// Removes segment `id`, if there is one (this test's own).
fn remove_segment_id(id: i32) {
    // SAFETY: removes a segment the test's program made; no memory read.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// The ids `tests/c/tree_sysv.c` printed ("ids: A B" lines), and its
/// output without them.
fn sysv_ids(text: &str) -> (Vec<String>, String) {
    let ids = text
        .lines()
        .filter(|l| l.starts_with("ids:"))
        .map(String::from)
        .collect();
    let rest = text
        .lines()
        .filter(|l| !l.starts_with("ids:"))
        .map(|l| format!("{l}\n"))
        .collect();
    (ids, rest)
}

/// Runs `tests/c/tree_sysv.c` with `key` under `selfckpt run`, waits for
/// 12 lines, checkpoints the tree and kills it: the set, the first run's
/// output file and the segments' ids it printed.
fn sysv_tree_checkpointed(
    tmp: &Path,
    exe: &Path,
    key: &str,
    during: impl FnOnce(&[i32]),
) -> (PathBuf, PathBuf, Vec<i32>) {
    let dir = tmp.join("ck");
    let first = tmp.join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, exe, &["120", key]), &first);
    wait_for("output", 60, || lines(&first) >= 12);
    let text = std::fs::read_to_string(&first).unwrap();
    let ids: Vec<i32> = text
        .lines()
        .find_map(|l| l.strip_prefix("ids: "))
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    during(&ids);
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    (set, first, ids)
}

/// A parent and its forked child taking turns on counters in a keyed
/// System V segment and adding to a sum in a private one: the tree record
/// names both as the tree's, no image calls them not restorable, the tree
/// restart makes each once with its id and key (the killed program's
/// segments found again, or, `removed`, made anew with their ids), both
/// members attach them, the ids they hold still name them: output as an
/// uninterrupted run's, the ids printed before and after the restart the
/// same.
fn sysv_segments_between_members(salt: u32, removed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_sysv");
    if !build_c("tree_sysv", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let key = format!("{:#x}", sysv_key(salt));
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).args(["120", &key]), &reference),
        "reference run",
    );
    let (_, want) = sysv_ids(&std::fs::read_to_string(&reference).unwrap());
    assert!(want.ends_with("sum 27243150\n"), "{want}");
    let (set, first, ids) = sysv_tree_checkpointed(tmp.path(), &exe, &key, |_| {});
    let rec = record(&set);
    let memory: Vec<_> = rec["shared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "memory")
        .collect();
    assert_eq!(memory.len(), 2, "{rec}");
    assert!(memory
        .iter()
        .all(|m| m["ends"].as_array().unwrap().len() == 2));
    for m in rec["members"].as_array().unwrap() {
        let j = inspect(&set.join(m["image"].as_str().unwrap()));
        assert_eq!(j["not_restorable"].as_array().map_or(0, Vec::len), 0, "{j}");
    }
    if removed {
        ids.iter().for_each(|&id| remove_segment_id(id));
    }
    let offset = fd_offset(&root_image(&set), 1);
    let second = tmp.path().join("second");
    let (status, err) = finish(
        spawn_to_file(
            &mut selfckpt_run(&tmp.path().join("ck"), &exe, &["120", &key]),
            &second,
        ),
        "resumed run",
    );
    ids.iter().for_each(|&id| remove_segment_id(id));
    assert!(status.success(), "{status}: {err}");
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    let (printed, got) = sysv_ids(&format!("{}{second}", &first[..offset]));
    assert_eq!(got, want, "stderr of the resumed run: {err}");
    assert_eq!(printed.len(), 2, "{printed:?}");
    assert_eq!(printed[0], printed[1], "the segments' ids changed");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn parent_and_child_share_system_v_segments_found_again_with_their_ids() {
    sysv_segments_between_members(1, false);
}

#[test]
fn parent_and_child_share_system_v_segments_made_again_with_their_ids() {
    sysv_segments_between_members(2, true);
}

/// A segment of the tree that a process outside it (this test) is
/// attached to too is named by id and key at checkpoint time, and the
/// resume refuses it.
#[test]
fn a_tree_segment_attached_from_outside_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_sysv");
    if !build_c("tree_sysv", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let key = format!("{:#x}", sysv_key(3));
    let mut ours = std::ptr::null_mut();
    let (set, _, ids) = sysv_tree_checkpointed(tmp.path(), &exe, &key, |ids| {
        // SAFETY: attaches the program's keyed segment here, read-only.
        ours = unsafe { libc::shmat(ids[0], std::ptr::null(), libc::SHM_RDONLY) };
        assert_ne!(ours as isize, -1);
    });
    let j = inspect(&root_image(&set));
    let named = format!(
        "System V shared memory segment {} (key {key}): another process",
        ids[0]
    );
    assert!(
        j["not_restorable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains(&named)),
        "{j}"
    );
    let r = selfckpt_run(&tmp.path().join("ck"), &exe, &["120", &key])
        .output()
        .unwrap();
    // SAFETY: detaching the test's own attachment.
    unsafe { libc::shmdt(ours) };
    ids.iter().for_each(|&id| remove_segment_id(id));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not restorable") && err.contains("sysv_shm"),
        "{err}"
    );
}

/// `make -j2` building a small C project (four compiles of about a
/// second each, then a link): checkpointed while two compilers run,
/// killed, resumed by `selfckpt run`; every object and the program are
/// byte for byte those of an uninterrupted build.
#[test]
fn make_j2_resumes_mid_build_and_builds_the_same_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    if !have("make") || !have("gcc") {
        eprintln!("skipped: no make or gcc");
        return;
    }
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let write_project = |d: &Path| {
        std::fs::create_dir_all(d).unwrap();
        for n in 1..=4 {
            let mut text = format!("int f{n}(int x) {{ int s = 0;\n");
            for j in 0..1200 {
                text.push_str(&format!(" s += (x * {j}) ^ (s >> {});\n", j % 7));
            }
            text.push_str(" return s; }\n");
            std::fs::write(d.join(format!("f{n}.c")), text).unwrap();
        }
        std::fs::write(
            d.join("main.c"),
            "#include <stdio.h>\nint f1(int), f2(int), f3(int), f4(int);\n\
             int main(void) { printf(\"%d\\n\", f1(3) + f2(4) + f3(5) + f4(6)); return 0; }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("Makefile"),
            "CFLAGS = -O2\nprog: main.o f1.o f2.o f3.o f4.o\n\t$(CC) -o $@ $^\n\
             %.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
        )
        .unwrap();
    };
    let (refdir, rundir) = (tmp.path().join("ref"), tmp.path().join("run"));
    write_project(&refdir);
    write_project(&rundir);
    let st = Command::new("make")
        .arg("-s")
        .arg("-j2")
        .current_dir(&refdir)
        .status()
        .unwrap();
    assert!(st.success(), "reference build");
    let dir = tmp.path().join("ck");
    let make = || {
        let mut c = selfckpt_run(&dir, "make", &["-s", "-j2"]);
        c.current_dir(&rundir);
        c
    };
    let log = tmp.path().join("log");
    let mut child = spawn_to_file(&mut make(), &log);
    // A compiler runs under make (cc1, child of the driver, child of make).
    let ppid = |pid: u32| selfckpt::tree::record::stat(pid).map(|s| s.ppid);
    let make_pid = child.id();
    wait_for("cc1 under make", 60, || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "cc1")
                && ppid(pid).and_then(ppid) == Some(make_pid)
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let rec = record(&set);
    assert!(
        rec["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["program"] == "cc1"),
        "{rec}"
    );
    let err = wait_ok(spawn_to_file(&mut make(), &log), "resumed make -j2");
    for f in ["main.o", "f1.o", "f2.o", "f3.o", "f4.o", "prog"] {
        assert_eq!(
            std::fs::read(rundir.join(f)).ok(),
            std::fs::read(refdir.join(f)).ok(),
            "{f} differs from an uninterrupted build's; stderr: {err}"
        );
    }
}

/// A double-forked daemon (a child starts a session, forks, exits; the
/// grandchild, reparented away from the program, keeps counting and
/// writes its sum to a pipe the program reads at the end) is checkpointed
/// with the program (it ran the checkpointer: a member) and comes back as
/// a child of the restart's init, its session its own, the pipe between
/// them with it: the output is an uninterrupted run's, and the daemon's
/// line comes from the daemon brought back.
#[test]
fn a_double_forked_daemon_comes_back_with_the_program() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_daemon");
    if !build_c("tree_daemon", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["60"], 8, |rec| {
        assert_eq!(pids(rec, "members").len(), 2, "{rec}");
        let adopted = rec["adopted"].as_array().unwrap_or_else(|| panic!("{rec}"));
        assert_eq!(adopted.len(), 1, "{rec}");
        assert_eq!(rec["left_out"].as_array().map_or(0, Vec::len), 0, "{rec}");
    });
}

/// Children that fork the moment they are born, while their checkpointer
/// thread is still joining the tree: no grandchild may inherit its
/// parent's half-made connection to the root (it would keep it as a
/// socket of its own, a socket to another process: the checkpoint would
/// name it and the restart refuse). Checkpointed once all have forked,
/// killed, resumed: the output is an uninterrupted run's.
#[test]
fn children_forking_as_they_join_leave_no_tree_socket_to_their_children() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_forkstorm");
    if !build_c("tree_forkstorm", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["24", "80"], 1, |rec| {
        assert_eq!(pids(rec, "members").len(), 49, "{rec}");
        let refused = rec["refused"].as_array().map_or(0, Vec::len);
        assert_eq!(refused, 0, "{rec}");
    });
}

/// A prefork server: a listener on every address that the program and
/// its two forked workers share, the workers accepting one request per
/// connection, the program connecting as the client. The listener is made
/// once by the tree's restart and given to all three (each binding the
/// address again would find it taken); a connection made at the moment of
/// the checkpoint is made through it. Output as an uninterrupted run's.
#[test]
fn a_listener_shared_by_a_server_and_its_forked_workers_is_shared_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_prefork");
    if !build_c("tree_prefork", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &["60"], 10, |rec| {
        assert_eq!(pids(rec, "members").len(), 3, "{rec}");
        assert_eq!(shared_of(rec, "unconnected"), 1, "{rec}");
        assert_eq!(rec["refused"].as_array().map_or(0, Vec::len), 0, "{rec}");
    });
}

/// Pipes a forked child holds alone are its own: they come back as in a
/// process of its own (their capacity, each open file description with
/// its own O_NONBLOCK, what was queued), not as pipes the tree makes for
/// several members (one description per direction, the default size).
#[test]
fn pipes_one_member_holds_alone_keep_their_descriptions_and_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_own_pipes");
    if !build_c("tree_own_pipes", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let rec = checkpoint_kill_resume(tmp.path(), exe.to_str().unwrap(), &[], 1, |rec| {
        assert_eq!(pids(rec, "members").len(), 2, "{rec}");
        assert_eq!(shared_of(rec, "pipe"), 0, "{rec}");
    });
    assert!(rec["refused"].as_array().is_none_or(Vec::is_empty), "{rec}");
}

/// The tree's image directory full: the checkpoint fails cleanly with
/// "No space left on device", both processes go on and end as an
/// uninterrupted run does, the older set stays valid and no temporary set
/// is left behind.
#[test]
fn a_full_image_directory_fails_the_tree_checkpoint_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_pipe");
    if !build_c("tree_pipe", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let mnt = tmp.path().join("mnt");
    let _mounted = match Tmpfs::mount(&mnt, "64m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let want = reference(&exe, &["80"], &tmp.path().join("ref"));
    let dir = mnt.join("ck");
    let out = tmp.path().join("out");
    let child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["80"]), &out);
    wait_for("output", 60, || lines(&out) >= 5);
    let older = checkpoint_wait(child.id());
    // Fill the file system to the last block.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
        let chunk = vec![7u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[7u8; 512]).is_ok() {}
    }
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a checkpoint into a full directory succeeded"
    );
    assert!(err.contains("No space left on device"), "{err}");
    let (st, stderr) = finish(child, "the tree after the failed checkpoint");
    assert!(st.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{stderr}");
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(&older)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let temps: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// The images' socket and data-in-flight objects of a set's members.
fn objects_of(set: &Path, kind: &str) -> Vec<serde_json::Value> {
    let rec = record(set);
    let mut out = Vec::new();
    for m in rec["members"].as_array().unwrap() {
        let img = set.join(m["image"].as_str().unwrap());
        let j = Command::new(selfckpt())
            .args(["inspect", "--json"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stderr));
        let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
        out.extend(
            v["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["kind"] == kind)
                .cloned(),
        );
    }
    out
}

/// A parent listening on 127.0.0.1 (a port the kernel chose) and its
/// forked child connected to it, exchanging counters, each with unread
/// data queued at the checkpoint (`tests/c/tree_tcp.c` holds still for
/// 1.5 s with data queued both ways after round 15): the tree records
/// the connection as shared between them and makes it again between the
/// same addresses, each end's queue, options and blocking mode kept; the
/// output is the uninterrupted run's. (`mode` "close": the parent closed
/// its listener.)
fn tcp_between_members(mode: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_tcp");
    if !build_c("tree_tcp", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let exe = exe.to_str().unwrap();
    checkpoint_kill_resume_set(tmp.path(), exe, &["40", "15", mode], 15, |set, rec| {
        let members = pids(rec, "members");
        assert_eq!(members.len(), 2, "{rec}");
        let socks: Vec<_> = rec["shared"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "socket")
            .collect();
        assert_eq!(socks.len(), 2, "{rec}");
        assert_eq!(socks[0]["peer"], socks[1]["ino"], "{rec}");
        assert_ne!(
            socks[0]["ends"][0]["pid"], socks[1]["ends"][0]["pid"],
            "{rec}"
        );
        // Unread data queued at both ends, kept with their data in
        // flight.
        let tcp: Vec<_> = objects_of(set, "socket")
            .into_iter()
            .filter(|o| o["role"] == "peer outside")
            .collect();
        assert_eq!(tcp.len(), 2, "{tcp:?}");
        for o in &tcp {
            let queued: u64 = o["queued"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q.as_u64().unwrap())
                .sum();
            assert!(queued > 0, "nothing queued: {o}");
        }
        assert_eq!(objects_of(set, "tcp_in_flight").len(), 2);
    });
}

#[test]
fn parent_and_forked_child_exchange_counters_over_tcp_with_data_queued_both_ways() {
    tcp_between_members("");
}

#[test]
fn a_tcp_connection_between_members_comes_back_after_the_listener_closed() {
    tcp_between_members("close");
}

/// A TCP connection of a tree's process to a server outside the tree
/// (run by the test) cannot come back: the checkpoint names it, beside
/// the connection between the members, which is the tree's, and the
/// resume refuses the set, naming it.
#[test]
fn a_tcp_connection_of_a_member_to_a_server_outside_the_tree_is_named_and_refused() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_tcp");
    if !build_c("tree_tcp", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 2];
                if c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {
                    // Held open until the peer goes.
                    let _ = c.read(&mut b);
                }
            });
        }
    });
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let args = ["40", "15", "outside", &port];
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &args), &first);
    wait_for("output", 60, || lines(&first) >= 16);
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let rec = record(&set);
    assert_eq!(shared_of(&rec, "socket"), 2, "{rec}");
    let outside = format!("-> 127.0.0.1:{port} (peer outside the process)");
    let named: Vec<String> = std::fs::read_to_string(dir.join("stats.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(&outside))
        .map(str::to_string)
        .collect();
    assert!(!named.is_empty(), "the stats do not name {outside}");
    let o = selfckpt_run(&dir, &exe, &args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the resume went on: {err}");
    assert!(
        err.contains("not restorable") && err.contains(&outside),
        "{err}"
    );
    // Only the outside connection is named, not the members' one.
    assert_eq!(err.matches("peer outside the process").count(), 1, "{err}");
}

/// The TCP connection the tree made is again one connection between the
/// members at the next checkpoint (taken at moments the exchange does
/// not hold still for: whatever is in flight then is given back once).
#[test]
fn a_tcp_connection_of_a_restarted_tree_comes_back_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_tcp");
    if !build_c("tree_tcp", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    checkpoint_twice(tmp.path(), &exe, &["40", "35"], ["8 ->", "24 ->"], |rec| {
        assert_eq!(shared_of(rec, "socket"), 2, "{rec}")
    });
}

/// A member whose scheduling differs from the root's (`nice -n 7`): the
/// root's check of what a restart could give (made while the tree's forks
/// and exits are held) must not wait on them; the set names nothing, and
/// the restarted member has its nice value again.
#[test]
fn a_member_with_its_own_nice_value_is_checkpointed_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let script =
        "nice -n 7 sh -c 'echo started; sleep 2; echo nice $(cut -d\" \" -f19 /proc/self/stat)'";
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, "bash", &["-c", script]), &out);
    wait_for("output", 60, || lines(&out) >= 1);
    let set = checkpoint_wait(child.id());
    let rec = record(&set);
    assert!(
        rec["refused"].as_array().is_none_or(|a| a.is_empty()),
        "nothing refused: {rec}"
    );
    kill_tree(&mut child, libc::SIGKILL);
    let second = tmp.path().join("second");
    let (st, err) = finish(
        spawn_to_file(Command::new(selfckpt()).arg("restart").arg(&set), &second),
        "restart",
    );
    assert!(st.success(), "{err}");
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(text.contains("nice 7\n"), "{text} / {err}");
}

/// `tests/c/rr_child.c` (root only): a child made SCHED_RR by its parent.
/// The root's check, at the checkpoint, of what a restart could give forks
/// a probe while the tree's forks and exits are held: it must not wait on
/// them (it hung). The restarted child is SCHED_RR again.
#[test]
fn a_real_time_member_is_checkpointed_and_comes_back_real_time() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("rr_child");
    if !build_c("rr_child", &exe) || !can_restart_trees() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a real-time policy needs root");
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &[]), &out);
    wait_line(&out, "waiting");
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let second = tmp.path().join("second");
    let (st, err) = finish(
        spawn_to_file(Command::new(selfckpt()).arg("restart").arg(&set), &second),
        "restart",
    );
    assert!(st.success(), "{err}");
    let text = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        text, "child policy SCHED_RR|RESET_ON_FORK priority 3\n",
        "{err}"
    );
}

/// `tests/c/tree_deleted_shared.c`: a deleted file two members share
/// through one open description cannot come back shared. The checkpoint
/// names it and the restart refuses; told to go on, each gets a copy and
/// the restart says so.
#[test]
fn a_deleted_file_two_members_share_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_deleted_shared");
    if !build_c("tree_deleted_shared", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let work = tmp.path().to_str().unwrap().to_string();
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &[&work]), &out);
    wait_line(&out, "waiting");
    let (set, said) = checkpoint_wait_err(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    assert!(
        said.contains("share the deleted file") && said.contains("shared (deleted)"),
        "{said}"
    );
    let rec = record(&set);
    assert_eq!(rec["refused"].as_array().map(Vec::len), Some(1), "{rec}");
    let refused = Command::new(selfckpt())
        .arg("restart")
        .arg(&set)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{why}");
    assert!(why.contains("--unrestorable=shared_deleted"), "{why}");
    let second = tmp.path().join("second");
    let (st, err) = finish(
        spawn_to_file(
            Command::new(selfckpt())
                .args(["restart", "--unrestorable=shared_deleted"])
                .arg(&set),
            &second,
        ),
        "restart",
    );
    assert!(st.success(), "{err}");
    assert!(err.contains("a copy for each process"), "{err}");
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(
        text.contains("child read 1 'a'\n") && text.ends_with("done\n"),
        "{text}"
    );
}

/// The processes running `exe`, oldest first.
fn running(exe: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p: &u32| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|x| x == exe) && !gone(*p)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits for a line starting with `end` in `out` (the program's process
/// returns long before its tree is done).
fn wait_end(out: &Path) {
    wait_for("the tree's last line", 60, || {
        std::fs::read_to_string(out).is_ok_and(|t| t.lines().any(|l| l.starts_with("end")))
    });
}

/// A launcher (`tests/c/tree_launcher.c`): the program's process starts a
/// worker and returns at once; the worker and its helper work on. The
/// worker, reparented away, takes the root's place in the tree (the
/// helper, whose parent lives, must not: the tree's restart would take
/// it from its parent). A checkpoint asked of the helper is the tree's,
/// and tells the waiter; killed and resumed, the tree prints what an
/// uninterrupted run prints, down to the helper's exit status its parent
/// reaps, and the run is not marked ended while the worker lives.
#[test]
fn a_launcher_that_returns_at_once_leaves_a_tree_that_is_checkpointed_and_comes_back() {
    launcher(&["80"]);
}

/// [`a_launcher_that_returns_at_once_leaves_a_tree_that_is_checkpointed_and_comes_back`]
/// with a worker that executes the program again first (DMTCP's
/// forkexec): it joins the tree when the launcher is long gone, and
/// takes the root's place from the start.
#[test]
fn a_worker_that_executes_after_its_launcher_returned_takes_the_roots_place() {
    launcher(&["80", "exec"]);
}

fn launcher(args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_launcher");
    if !build_c("tree_launcher", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).args(args), &reference),
        "reference run",
    );
    wait_end(&reference);
    wait_for("the reference tree to end", 30, || running(&exe).is_empty());
    let want = std::fs::read_to_string(&reference).unwrap();
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let exe_s = exe.to_str().unwrap();
    // Its stderr to a file: the tree keeps a pipe open long after the
    // launcher returned.
    let st = selfckpt_run(&dir, exe_s, args)
        .stdout(std::fs::File::create(&first).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("err")).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "the launcher under selfckpt: {st}");
    wait_for("output", 60, || lines(&first) >= 12);
    let procs = running(&exe);
    assert_eq!(procs.len(), 2, "{procs:?}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert!(run["ended_unix_ms"].is_null(), "the run goes on: {run}");
    // The helper (the younger) asked: the tree's set comes back.
    let set = checkpoint_wait(procs[1]);
    for p in &procs {
        // SAFETY: signalling processes this test started.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    wait_for("the tree to die", 10, || procs.iter().all(|&p| gone(p)));
    assert!(
        set.join("tree.json").is_file(),
        "not a set: {}",
        set.display()
    );
    let rec = record(&set);
    let members = pids(&rec, "members");
    let procs64: Vec<u64> = procs.iter().map(|&p| u64::from(p)).collect();
    assert_eq!(
        members, procs64,
        "the worker is the root, then the helper: {rec}"
    );
    let offset = fd_offset(&root_image(&set), 1);
    let second = tmp.path().join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, exe_s, args), &second),
        "resumed run",
    );
    assert!(err.contains("resuming"), "{err}");
    wait_end(&second);
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        format!("{}{second}", &first[..offset]),
        want,
        "stderr of the resumed run: {err}"
    );
}

/// A member that gave up root for another user (`tests/c/tree_setuid.c`,
/// as CRIU's pid00 and a server's workers do) cannot write into the
/// root's image directory: the checkpoint fails saying which member and
/// why (not "failed or went away"), and the program goes on to print
/// what an uninterrupted run prints.
#[test]
fn a_member_that_became_another_user_fails_the_checkpoint_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_setuid");
    if !build_c("tree_setuid", &exe) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can become another user");
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &["60"], &tmp.path().join("ref"));
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["60"]), &out);
    wait_for("output", 60, || lines(&out) >= 5);
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
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the checkpoint succeeded: {err}");
    assert!(
        err.contains("(tree_setuid) failed: ") && err.contains("uid 65534"),
        "{err}"
    );
    let (st, stderr) = finish(child, "the tree after the failed checkpoint");
    assert!(st.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{stderr}");
}

/// A run whose root is killed (SIGKILL) while a member lives on: the
/// member takes the root's place for checkpoints, but its exit does not
/// mark the run ended (the root never exited: the job was killed, as
/// when the whole tree is), so the next `selfckpt run` resumes the job
/// from its checkpoint and prints what an uninterrupted run prints. (It
/// started fresh, saying "the previous run ... ended".)
#[test]
fn a_member_outliving_its_killed_root_does_not_end_the_run() {
    if !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = "sleep 1.5 & i=0; while [ $i -lt 60 ]; do echo $i; i=$((i+1)); sleep 0.05; done; \
                  wait";
    let args = ["-c", script];
    let want = reference(Path::new("/bin/sh"), &args, &tmp.path().join("ref"));
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, "/bin/sh", &args), &first);
    wait_for("output", 60, || lines(&first) >= 5);
    let sleeper = descendants(child.id())
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x001.5\x00")
        })
        .expect("the long sleep runs");
    let set = checkpoint_wait(child.id());
    // The root alone is killed; the sleep outlives it and exits.
    kill(&child, libc::SIGKILL);
    let _ = child.wait();
    wait_for("the outliving member to exit", 30, || gone(sleeper));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert!(
        run["ended_unix_ms"].is_null(),
        "a member's exit ended a killed run: {run}"
    );
    let root = if set.is_dir() { root_image(&set) } else { set };
    let offset = fd_offset(&root, 1);
    let second = tmp.path().join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, "/bin/sh", &args), &second),
        "resumed run",
    );
    assert!(err.contains("resuming"), "the job was not resumed: {err}");
    let mut got = std::fs::read_to_string(&first).unwrap();
    got.truncate(offset);
    got.push_str(&std::fs::read_to_string(&second).unwrap());
    assert_eq!(got, want, "{err}");
}

/// A child that is statically linked (the Go toolchain's `compile`, a
/// static busybox) cannot run selfckpt: the checkpoint names it, its
/// program and why, the restart refuses by default naming it first (not
/// only the pipe its parent reads from it, as one to another process).
#[test]
fn a_statically_linked_child_is_named_with_its_program_and_refused() {
    if !can_restart_trees() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("spin.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { for (int i = 0; i < 400; i++) { printf(\"static %d\\n\", i); fflush(stdout); usleep(20000); } return 0; }\n",
    )
    .unwrap();
    let exe = tmp.path().join("spin-static");
    let built = Command::new("cc")
        .args(["-O1", "-static", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    if !built.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot link a static program here (no libc.a)");
        return;
    }
    lib("libselfckpt.so");
    let script = format!("{} | cat", exe.display());
    let dir = tmp.path().join("ck");
    let out = tmp.path().join("out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, "/bin/sh", &["-c", &script]), &out);
    wait_for("output", 60, || lines(&out) >= 3);
    let (set, taken_err) = checkpoint_wait_err(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let exe_s = exe.display().to_string();
    assert!(
        taken_err.contains(&format!("{exe_s} is statically linked")),
        "{taken_err}"
    );
    let why = restart_refused(tmp.path(), &set);
    assert!(
        why.contains("statically linked") && why.contains("--unrestorable=left_out"),
        "{why}"
    );
}

/// A shell in a pty (`script`: the master in one process, the shell and
/// its commands on the slave), checkpointed, killed and resumed twice:
/// every command after each restart still has its terminal (`tty`
/// names it). After the second restart the shell's stdio came back
/// close-on-exec (the tree read their flags from outside, where fdinfo
/// shows `O_CLOEXEC` for a slave the first restart had opened with it),
/// and every later command said "not a tty".
#[test]
fn a_shell_in_a_pty_keeps_its_terminal_through_two_restarts() {
    if !have("script") || !can_restart_trees() {
        eprintln!("skipped: no script(1) here, or no tree restarts");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let inner = "for i in $(seq 1 50); do echo \"line $i $(tty | cut -c1-9)\"; sleep 0.05; done; \
                 echo pty done";
    let args = ["-qfec", inner, "/dev/null"];
    let want = reference(Path::new("script"), &args, &tmp.path().join("ref"));
    assert!(
        want.contains("line 50 /dev/pts/") && !want.contains("not a tty"),
        "{want}"
    );
    let ck = tmp.path().join("ck");
    let mut got = String::new();
    for round in 0..2 {
        let out = tmp.path().join(format!("run{round}.out"));
        let mut child = spawn_to_file(&mut selfckpt_run(&ck, "script", &args), &out);
        wait_for("a few lines", 60, || lines(&out) >= 8);
        let set = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        let root = if set.is_dir() { root_image(&set) } else { set };
        let mut mine = std::fs::read_to_string(&out).unwrap();
        mine.truncate(fd_offset(&root, 1));
        got.push_str(&mine);
    }
    let last = tmp.path().join("last.out");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&ck, "script", &args), &last),
        "resumed run",
    );
    got.push_str(&std::fs::read_to_string(&last).unwrap());
    assert_eq!(got, want, "{err}");
}

#[test]
fn pidfds_of_itself_of_a_reaped_child_and_of_a_running_child_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pidfd");
    if !build_c("pidfd", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let rec =
        checkpoint_kill_resume_set(tmp.path(), exe.to_str().unwrap(), &["30"], 8, |set, rec| {
            assert_eq!(pids(rec, "members").len(), 2, "{rec}");
            let text = inspect_text(&root_image(set));
            for what in [
                "pidfd of this process nonblock",
                "pidfd of a process that ended and was reaped",
                "pidfd of process",
            ] {
                assert!(text.contains(what), "{what}: {text}");
            }
        });
    assert!(
        rec["left_out"].as_array().is_none_or(|a| a.is_empty()),
        "{rec}"
    );
}

#[test]
fn a_pidfd_of_a_process_outside_the_tree_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pidfd");
    if !build_c("pidfd", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["200", "outside"]), &first);
    wait_for("output", 60, || lines(&first) >= 3);
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let text = inspect_text(&root_image(&set));
    assert!(
        text.contains("pidfd of process")
            && text.contains("which is not checkpointed with this one"),
        "{text}"
    );
    let (status, err) = finish(
        spawn_to_file(
            Command::new(selfckpt()).arg("restart").arg(&set),
            &tmp.path().join("refused"),
        ),
        "restart",
    );
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("not checkpointed with this one") && err.contains("pidfd"),
        "{err}"
    );
}
