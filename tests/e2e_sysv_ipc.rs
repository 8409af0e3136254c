//! System V semaphore sets and message queues come back
//! (`kstate::sysvipc`): `tests/c/sysv_ipc.c` holds a keyed set whose
//! values changed over time (one raised with SEM_UNDO, which the kill
//! undoes), a keyed queue with messages of several types and a private
//! queue. It is checkpointed while it sleeps and killed; then either its
//! objects are removed (the restart makes them again with their ids,
//! through sem_next_id / msg_next_id) or left as the kill left them (the
//! restart reuses them, values set again, queues drained and refilled).
//! Under both id paths the resumed output must be exactly an
//! uninterrupted run's.

mod common;

use common::*;

/// A key for this test run's objects: from the pid, never IPC_PRIVATE.
fn key(salt: u32) -> i32 {
    (0x5f00_0000 | ((std::process::id() & 0xffff) << 4) | salt) as i32
}

fn remove_by_key(sem: i32, msg: i32) {
    // SAFETY: looks up and removes the test's own set and queue, if any.
    unsafe {
        let id = libc::semget(sem, 0, 0);
        if id >= 0 {
            libc::semctl(id, 0, libc::IPC_RMID);
        }
        let id = libc::msgget(msg, 0);
        if id >= 0 {
            libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

fn remove_ids(sem: i32, msgs: &[i32]) {
    // SAFETY: removes the objects the test's program made (ids it wrote).
    unsafe {
        assert_eq!(libc::semctl(sem, 0, libc::IPC_RMID), 0, "semctl IPC_RMID");
        for q in msgs {
            assert_eq!(
                libc::msgctl(*q, libc::IPC_RMID, std::ptr::null_mut()),
                0,
                "msgctl IPC_RMID"
            );
        }
    }
}

#[test]
fn semaphores_and_queues_come_back_with_ids_values_and_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sysv_ipc");
    if !build_c("sysv_ipc", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let (sk, mk) = (key(1), key(2));
    let (sks, mks) = (format!("{sk:#x}"), format!("{mk:#x}"));
    remove_by_key(sk, mk);
    let ids_ref = tmp.path().join("ids-ref");
    let args_ref = [&sks[..], &mks[..], ids_ref.to_str().unwrap()];
    let want = reference(&exe, &args_ref, &tmp.path().join("ref"));
    assert!(want.contains("values 6 1 7\n"), "{want}");
    assert!(want.ends_with("ipc ok\n"), "{want}");
    for tids in ["exact", "new"] {
        for remove in [true, false] {
            let what = format!(
                "--tids {tids}, objects {}",
                if remove { "removed" } else { "kept" }
            );
            let dir = tmp.path().join(format!("ck-{tids}-{remove}"));
            let ids = tmp.path().join(format!("ids-{tids}-{remove}"));
            let args = [&sks[..], &mks[..], ids.to_str().unwrap()];
            let first = dir.with_extension("first");
            let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &args), &first);
            wait_line(&first, "waiting");
            let image = checkpoint_wait(child.id());
            kill_tree(&mut child, libc::SIGKILL);
            let text = inspect_text(&image);
            assert!(
                text.contains(&format!("key {sks} mode 640: values [6, 1, 7]")),
                "{what}: {text}"
            );
            assert!(
                text.contains(&format!("key {mks} mode 600: 4 messages, 27 bytes")),
                "{what}: {text}"
            );
            assert!(
                text.contains("key 0x0 mode 600: 1 messages, 200 bytes"),
                "{what}: {text}"
            );
            let got: Vec<i32> = std::fs::read_to_string(&ids)
                .unwrap()
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect();
            if remove {
                remove_ids(got[0], &got[1..]);
            } else {
                // SAFETY: reads the value the kill left (SEM_UNDO undone).
                let v = unsafe { libc::semctl(got[0], 2, libc::GETVAL) };
                assert_eq!(v, 3, "{what}: SEM_UNDO not undone by the kill");
            }
            let resumed = resume_after(&exe, &dir, tids, &args, &image, &first);
            remove_by_key(sk, mk);
            let Some((out, err)) = resumed else { continue };
            assert_eq!(out, want, "{what}: resumed output differs; stderr: {err}");
        }
    }
}

/// A key taken by an unrelated object when the program's set is gone:
/// the restart refuses in words and never touches that object.
#[test]
fn a_key_held_by_another_set_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sysv_ipc");
    if !build_c("sysv_ipc", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let (sk, mk) = (key(3), key(4));
    let (sks, mks) = (format!("{sk:#x}"), format!("{mk:#x}"));
    remove_by_key(sk, mk);
    let dir = tmp.path().join("ck");
    let ids = tmp.path().join("ids");
    let args = [&sks[..], &mks[..], ids.to_str().unwrap()];
    let first = dir.with_extension("first");
    let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, "new", &args), &first);
    wait_line(&first, "waiting");
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let got: Vec<i32> = std::fs::read_to_string(&ids)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    remove_ids(got[0], &got[1..]);
    // SAFETY: an unrelated set with the program's key, one semaphore.
    let other = unsafe { libc::semget(sk, 1, libc::IPC_CREAT | 0o600) };
    assert!(other >= 0);
    let out = std::process::Command::new(selfckpt())
        .args(["restart", "--tids", "new"])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // SAFETY: the unrelated set is still there, its one value untouched.
    let v = unsafe { libc::semctl(other, 0, libc::GETVAL) };
    remove_by_key(sk, mk);
    assert!(!out.status.success(), "restart succeeded: {err}");
    assert!(
        err.contains("a semaphore set with its key exists already")
            && err.contains("restart refused"),
        "{err}"
    );
    assert_eq!(v, 0);
}

/// Whether a tree can restart here (PID namespaces).
fn can_restart_trees() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--fork", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no PID namespaces here (a tree restarts with its exact pids)");
    }
    ok
}

/// The output without its "ids:" line, and the ids it printed.
fn without_ids(text: &str) -> (String, Vec<i32>) {
    let ids = text
        .lines()
        .find_map(|l| l.strip_prefix("ids: "))
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .unwrap_or_default();
    let rest = text
        .lines()
        .filter(|l| !l.starts_with("ids:"))
        .map(|l| format!("{l}\n"))
        .collect();
    (rest, ids)
}

/// A parent and its forked child passing messages through a private
/// queue and counting in a private semaphore set (three messages left
/// queued all along): both members' images name the set and the queue;
/// the tree restart makes each once (the killed program's found again,
/// or, `removed`, made anew with their ids): output as an uninterrupted
/// run's.
fn tree_members_share_a_set_and_a_queue(removed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tree_sysv_ipc");
    if !build_c("tree_sysv_ipc", &exe) || !can_restart_trees() {
        return;
    }
    lib("libselfckpt.so");
    let (want, _) = without_ids(&reference(&exe, &["40"], &tmp.path().join("ref")));
    assert!(
        want.ends_with("child 0 values 780 0\ntree ipc ok\n"),
        "{want}"
    );
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, &exe, &["40"]), &first);
    wait_for("output", 60, || {
        std::fs::read_to_string(&first).is_ok_and(|t| t.lines().count() >= 10)
    });
    let set = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let (_, ids) = without_ids(&std::fs::read_to_string(&first).unwrap());
    assert_eq!(ids.len(), 2);
    let rec = inspect(&set);
    let members = rec["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{rec}");
    for m in members {
        let text = inspect(&set.join(m["image"].as_str().unwrap())).to_string();
        assert!(
            text.contains("\"sysv_sem\"") && text.contains("\"sysv_msg\""),
            "{text}"
        );
    }
    if removed {
        remove_ids(ids[0], &ids[1..]);
    }
    let root = set.join(members[0]["image"].as_str().unwrap());
    let offset = fd_offset(&root, 1);
    let second = tmp.path().join("second");
    let (status, err) = finish(
        spawn_to_file(&mut selfckpt_run(&dir, &exe, &["40"]), &second),
        "resumed run",
    );
    // SAFETY: removes the test program's own set and queue, if left.
    unsafe {
        libc::semctl(ids[0], 0, libc::IPC_RMID);
        libc::msgctl(ids[1], libc::IPC_RMID, std::ptr::null_mut());
    }
    assert!(status.success(), "{status}: {err}");
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    let (got, _) = without_ids(&format!("{}{second}", &first[..offset]));
    assert_eq!(got, want, "stderr of the resumed run: {err}");
}

#[test]
fn tree_members_share_a_set_and_a_queue_found_again() {
    tree_members_share_a_set_and_a_queue(false);
}

#[test]
fn tree_members_share_a_set_and_a_queue_made_again() {
    tree_members_share_a_set_and_a_queue(true);
}
