//! Pseudo-terminals and other processes' /proc files: a pty pair of the
//! program's own (both ends in one process, or the master in the parent
//! and the slave, as a session's controlling terminal, in a forked child)
//! comes back with its raw mode and window size and carries the same
//! lines; bytes queued in a pty are named at checkpoint time and refuse
//! the restart; a forked child's descriptor of its parent's /proc files
//! is its parent's again after a tree restart; a file of a process
//! outside the tree is named at checkpoint time. Each run's output must
//! equal an uninterrupted run's.

mod common;

use common::*;
use std::path::Path;
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

fn have_ptys() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .is_ok();
    if !ok {
        eprintln!("skipped: no /dev/ptmx here");
    }
    ok
}

fn built(name: &str, tmp: &Path) -> Option<std::path::PathBuf> {
    let exe = tmp.join(name);
    if !build_c(name, &exe) {
        return None;
    }
    lib("libselfckpt.so");
    Some(exe)
}

/// The objects of kind `kind` an image's `inspect --json` lists.
fn objects(image: &Path, kind: &str) -> Vec<serde_json::Value> {
    inspect(image)["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == kind)
        .cloned()
        .collect()
}

/// The sentences of `not_restorable` of an image.
fn named(image: &Path) -> Vec<String> {
    inspect(image)["not_restorable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_pty_pair_in_one_process_comes_back_raw_with_its_size_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("pty", tmp.path()) else {
        return;
    };
    if !have_ptys() {
        return;
    }
    let args = ["12", "alone"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    assert!(want.contains("LINE 12 (raw 101x33)"), "{want}");
    assert_eq!(
        want.matches("slave node 600, owner as set\n").count(),
        12,
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(tids);
        let got = resumed(&exe, &dir, tids, &args, |image| {
            let ptys = objects(image, "pty");
            assert_eq!(ptys.len(), 1, "{ptys:?}");
            assert_eq!(ptys[0]["ours"], true, "{ptys:?}");
            assert_eq!(ptys[0]["fds"].as_array().unwrap().len(), 2, "{ptys:?}");
            assert_eq!(ptys[0]["cols"], 101, "{ptys:?}");
            assert!(named(image).is_empty(), "{:?}", named(image));
        });
        let Some((got, err)) = got else { continue };
        assert_eq!(got, want, "--tids {tids}: stderr: {err}");
        assert!(!err.contains("/dev/null stands in"), "{err}");
    }
}

#[test]
fn an_answer_queued_toward_the_master_is_read_after_the_restart_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("pty", tmp.path()) else {
        return;
    };
    if !have_ptys() {
        return;
    }
    let args = ["10", "answered"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(tids);
        let got = resumed(&exe, &dir, tids, &args, |image| {
            // "LINE 5\r\n" waited in the pty: taken, given back, in the image.
            assert!(named(image).is_empty(), "{:?}", named(image));
            let ptys = objects(image, "pty");
            assert_eq!(ptys.len(), 1, "{ptys:?}");
        });
        let Some((got, err)) = got else { continue };
        assert_eq!(got, want, "--tids {tids}: stderr: {err}");
    }
}

/// Runs `exe args` under `selfckpt run` (a tree), checkpoints it once it
/// printed "waiting", kills it, resumes it and returns the joined output
/// with the resume's stderr, and the set.
fn tree_resumed(exe: &Path, dir: &Path, args: &[&str]) -> (String, String, std::path::PathBuf) {
    let first = dir.with_extension("first");
    let mut child = spawn_to_file(&mut run_cmd(exe, dir, "exact", args), &first);
    wait_line(&first, "waiting");
    std::thread::sleep(Duration::from_millis(random_ms(100, 600)));
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("tree.json")).unwrap()).unwrap();
    let root = set.join(rec["members"][0]["image"].as_str().unwrap());
    let (joined, err) =
        resume_after(exe, dir, "exact", args, &root, &first).expect("exact ids for a tree");
    (joined, err, set)
}

#[test]
fn a_pty_between_parent_and_child_session_comes_back_as_its_controlling_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("pty", tmp.path()) else {
        return;
    };
    if !have_ptys() || !can_restart_trees() {
        return;
    }
    let args = ["12", "fork"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    assert!(want.contains("LINE 12 (child 101x33)"), "{want}");
    let (got, err, set) = tree_resumed(&exe, &tmp.path().join("ck"), &args);
    // The child's answer to line 5 waited toward the parent's master: the
    // parent (its only holder) took it.
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("tree.json")).unwrap()).unwrap();
    let root = set.join(rec["members"][0]["image"].as_str().unwrap());
    let ptys = objects(&root, "pty");
    assert_eq!(ptys[0]["taken_to_master"], 8, "{ptys:?}");
    let rec = std::fs::read_to_string(set.join("tree.json")).unwrap();
    assert!(rec.contains("\"ptmx\"") && rec.contains("\"pts\""), "{rec}");
    assert_eq!(got, want, "stderr: {err}");
    assert!(!err.contains("led its session"), "{err}");
    assert!(!err.contains("/dev/null stands in"), "{err}");
}

#[test]
fn bytes_queued_in_a_pty_are_named_at_checkpoint_and_refuse_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("pty", tmp.path()) else {
        return;
    };
    if !have_ptys() {
        return;
    }
    let dir = tmp.path().join("ck");
    let (image, _) = image_of_run(run_cmd(&exe, &dir, "new", &["12", "queued"]), &dir);
    let named = named(&image);
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].contains("8 bytes queued toward the slave") && named[0].contains("/dev/pts/"),
        "{named:?}"
    );
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert!(stats.contains("bytes queued toward the slave"), "{stats}");
    let out = tmp.path().join("refused");
    let (status, err) = finish(
        spawn_to_file(Command::new(selfckpt()).arg("restart").arg(&image), &out),
        "restart",
    );
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("restart refused: not restorable") && err.contains("--unrestorable=pty"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "the program ran"
    );
}

#[test]
fn a_child_reads_its_parents_proc_files_after_a_tree_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("procfs_tree", tmp.path()) else {
        return;
    };
    if !can_restart_trees() {
        return;
    }
    let args = ["12", "tree"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    assert!(want.contains("round 12: parent's status yes"), "{want}");
    let (got, err, set) = tree_resumed(&exe, &tmp.path().join("ck"), &args);
    for entry in std::fs::read_dir(&set).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "ckpt") {
            assert!(named(&p).is_empty(), "{:?}", named(&p));
        }
    }
    assert_eq!(got, want, "stderr: {err}");
}

#[test]
fn a_file_of_a_process_outside_the_tree_is_named_at_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("procfs_tree", tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("ck");
    let (image, _) = image_of_run(run_cmd(&exe, &dir, "new", &["12", "outside"]), &dir);
    let named = named(&image);
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].starts_with("fd 3 /proc/") && named[0].contains("not checkpointed with this one"),
        "{named:?}"
    );
    let (status, err) = finish(
        spawn_to_file(
            Command::new(selfckpt()).arg("restart").arg(&image),
            &tmp.path().join("refused"),
        ),
        "restart",
    );
    assert!(!status.success(), "{err}");
    assert!(err.contains("--unrestorable=procfs"), "{err}");
}

/// A terminal of the test's own (the program's stdio, its master held
/// outside the program), read in the background: the master, and what
/// was read so far.
fn outside_terminal() -> Option<(
    std::fs::File,
    std::fs::File,
    std::sync::Arc<std::sync::Mutex<String>>,
)> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two descriptors; no name, settings or size.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        eprintln!("skipped: no ptys here");
        return None;
    }
    // SAFETY: close-on-exec on the two descriptors just made (no other
    // program, nor another test's, may inherit them).
    unsafe {
        libc::fcntl(m, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(s, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    // SAFETY: the two descriptors openpty made, owned here.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut reader = master.try_clone().unwrap();
    let into = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Some((master, slave, seen))
}

fn on_terminal(cmd: &mut Command, slave: &std::fs::File) -> std::process::Child {
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap()
}

/// The user's terminal as stdio is not a pair of the program's: the
/// resumed run writes to the terminal it is given, and input typed ahead
/// at the old one (queued toward its slave) is no reason to refuse.
#[test]
fn an_outside_terminal_as_stdio_stays_the_restarters_with_input_typed_ahead() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = built("pty", tmp.path()) else {
        return;
    };
    let Some((mut master, slave, seen)) = outside_terminal() else {
        return;
    };
    let dir = tmp.path().join("ck");
    let args = ["12", "alone"];
    let mut child = on_terminal(&mut run_cmd(&exe, &dir, "new", &args), &slave);
    wait_for("waiting", 30, || seen.lock().unwrap().contains("waiting"));
    master.write_all(b"typed ahead\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let ptys = objects(&image, "pty");
    let outside: Vec<_> = ptys.iter().filter(|p| p["ours"] == false).collect();
    assert_eq!(outside.len(), 1, "{ptys:?}");
    assert_eq!(outside[0]["fds"], serde_json::json!([0, 1, 2]), "{ptys:?}");
    // The typed-ahead line waits at the terminal's slave: named by the
    // checkpoint (a member cannot tell whose the master is), left to the
    // terminal by the restart (the master is nobody's of the program).
    assert_eq!(outside[0]["queued_to_slave"], 12, "{ptys:?}");
    assert_eq!(named(&image).len(), 1, "{:?}", named(&image));
    let Some((_master2, slave2, seen2)) = outside_terminal() else {
        return;
    };
    let mut resumed = on_terminal(&mut run_cmd(&exe, &dir, "new", &args), &slave2);
    let status = resumed.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let text = seen2.lock().unwrap().clone();
    assert!(status.success(), "{status}: {text}");
    assert!(
        text.contains("LINE 12 (raw 101x33)\r\nslave node 600, owner as set\r\ndone\r\n"),
        "{text:?}"
    );
    assert!(!text.contains("/dev/null stands in"), "{text:?}");
    assert!(!text.contains("LINE 5 "), "{text:?}");
}
