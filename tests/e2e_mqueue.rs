//! POSIX message queues come back (`tests/c/mqueue.c`): a queue holding
//! messages of several priorities with a second, non-blocking descriptor,
//! an unlinked queue with messages, a `SIGEV_SIGNAL` and a `SIGEV_THREAD`
//! registration that must fire after the restart exactly as in an
//! uninterrupted run (once, with their values). The program is
//! checkpointed while it waits, killed, and resumed under both id paths;
//! its output must be an uninterrupted run's, and `inspect` must show the
//! queues as the checkpoint saw them. A process tree whose parent and
//! forked child share one (unlinked) queue descriptor and each open
//! another by name comes back with one queue each, as it was.

mod common;

use common::*;
use std::process::Command;

/// A queue name of this test run (queues outlive processes).
fn base(what: &str) -> String {
    format!("/selfckpt-e2e-{what}-{}", std::process::id())
}

fn unlink_all(base: &str) {
    for s in ["a", "s", "u", "t", "q", "r"] {
        if let Ok(c) = std::ffi::CString::new(format!("{base}-{s}")) {
            // SAFETY: removing this test's queue names.
            unsafe { libc::mq_unlink(c.as_ptr()) };
        }
    }
}

#[test]
fn message_queues_come_back_with_messages_flags_and_notifications_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("mqueue");
    if !build_c("mqueue", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let name = base("single");
    let args = ["single", name.as_str()];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    assert!(want.ends_with("mqueue ok\n"), "{want}");
    assert!(
        want.contains("signal notification: 1, value 4242, SI_MESGQ\n")
            && want.contains("thread notification: 1, value right\n")
            && want.contains("thread notification again: 2\n"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let got = resumed(&exe, &dir, tids, &args, |image| {
            let j = inspect(image);
            let queues: Vec<&serde_json::Value> = j["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["kind"] == "mqueue")
                .collect();
            assert_eq!(queues.len(), 4, "{j}");
            let q = |suffix: &str| {
                *queues
                    .iter()
                    .find(|q| q["name"] == format!("{name}-{suffix}"))
                    .unwrap_or_else(|| panic!("no queue {suffix}: {j}"))
            };
            let a = q("a");
            let prios: Vec<i64> = a["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["prio"].as_i64().unwrap())
                .collect();
            assert_eq!(prios, [9, 5, 5, 1, 1], "{a}");
            assert_eq!(a["ends"].as_array().unwrap().len(), 2, "{a}");
            assert_eq!(a["unlinked"], false);
            assert_eq!(q("u")["unlinked"], true);
            assert_eq!(q("u")["messages"].as_array().unwrap().len(), 2);
            assert_eq!(q("s")["notify"], 1, "SIGEV_SIGNAL: {}", q("s"));
            assert_eq!(q("t")["notify"], 3, "SIGEV_THREAD: {}", q("t"));
            assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
            let text = inspect_text(image);
            assert!(
                text.contains("(unlinked) maxmsg 4 msgsize 32: 2 messages"),
                "{text}"
            );
        });
        let Some((got, err)) = got else { continue };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        assert!(!err.contains("mq_notify"), "--tids {tids}: {err}");
    }
    unlink_all(&name);
}

#[test]
fn a_queue_the_restart_finds_with_other_attributes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("mqueue");
    if !build_c("mqueue", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let name = base("clash");
    let args = ["single", name.as_str()];
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &args);
    // Someone else's queue of that name now, with other attributes.
    unlink_all(&name);
    let c = std::ffi::CString::new(format!("{name}-a")).unwrap();
    // SAFETY: mq_attr is plain old data; a queue of this test's name.
    let q = unsafe {
        let mut a: libc::mq_attr = std::mem::zeroed();
        a.mq_maxmsg = 2;
        a.mq_msgsize = 8;
        libc::mq_open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600, &a)
    };
    assert!(q >= 0);
    let o = Command::new(selfckpt())
        .args(["restart", "--tids", "new"])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("exists with maxmsg 2 msgsize 8"), "{err}");
    // SAFETY: the test's queue is left as it was: empty, its attributes.
    unsafe {
        let mut a: libc::mq_attr = std::mem::zeroed();
        libc::mq_getattr(q, &mut a);
        assert_eq!((a.mq_maxmsg, a.mq_curmsgs), (2, 0));
        libc::close(q);
    }
    unlink_all(&name);
}

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

#[test]
fn parent_and_child_sharing_queues_come_back_as_one_queue_each() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("mqueue");
    if !build_c("mqueue", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let name = base("tree");
    let args = ["tree", name.as_str(), "60"];
    let want = reference(&exe, &args, &tmp.path().join("ref"));
    assert!(want.ends_with("60 -> 3600:1\nchild exited 0\n"), "{want}");
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &args), &first);
    wait_for("output", 60, || {
        std::fs::read_to_string(&first).is_ok_and(|t| t.lines().count() >= 15)
    });
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let j = Command::new(selfckpt())
        .args(["inspect", "--json"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let queues: Vec<&serde_json::Value> = rec["shared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "mqueue")
        .collect();
    // q (inherited, unlinked) and r (opened by name in each): both held
    // by both processes.
    assert_eq!(queues.len(), 2, "{rec}");
    assert!(
        queues
            .iter()
            .all(|q| q["ends"].as_array().unwrap().len() == 2),
        "{rec}"
    );
    let root = set.join(rec["members"][0]["image"].as_str().unwrap());
    let offset = fd_offset(&root, 1);
    let second = tmp.path().join("second");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, &exe, &args), &second),
        "resumed run",
    );
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        format!("{}{second}", &first[..offset]),
        want,
        "stderr of the resumed run: {err}"
    );
    unlink_all(&name);
}
