//! End-to-end: signals pending at a checkpoint (examples/pending.rs) are
//! pending again after a SIGKILL and a restart, with exact ids (PID
//! namespace) and with new ids: the one sent to a thread with
//! `pthread_kill` to that thread alone, the ones sent to the process with
//! `kill` to the process. `inspect` shows them.

mod common;
use common::*;
use std::process::Command;

#[test]
fn pending_signals_are_pending_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let so = tmp.path().join("pending.stdout");
    let mut child = spawn_to_file(Command::new(example("pending")).arg(&dir), &so);
    wait_for("pending: ready", 60, || {
        std::fs::read_to_string(&so).is_ok_and(|s| s.contains("ready"))
    });
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(&dir, 0);
    kill_tree(&mut child, libc::SIGKILL);

    let rt1 = libc::SIGRTMIN() + 1;
    let (usr2, rt1_bit) = (1u64 << (libc::SIGUSR2 - 1), 1u64 << (rt1 - 1));
    let j = inspect(&image);
    assert_eq!(
        j["pending"],
        serde_json::json!(["SIGUSR2", "SIGRTMIN+1"]),
        "{j}"
    );
    for t in j["threads"].as_array().unwrap() {
        let want = if t["comm"] == "waiter" {
            serde_json::json!(["SIGRTMIN+1"])
        } else {
            serde_json::json!([])
        };
        assert_eq!(t["pending"], want, "{t}");
    }
    let text = inspect_text(&image);
    assert!(
        text.lines().any(|l| l == "pending    SIGUSR2 SIGRTMIN+1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" waiter ") && l.ends_with(" pending SIGRTMIN+1")),
        "{text}"
    );

    restart_both_ways(&image, "restarted: ", |identity, line, _| {
        let want = format!(
            "restarted: waiter_own {rt1_bit:x} waiter_got {rt1} main_own 0 shared {:x} \
             main_got {},{rt1} shared_after 0 identity {identity}",
            usr2 | rt1_bit,
            libc::SIGUSR2
        );
        assert_eq!(line, want);
    });
}

/// `tests/c/siginfo.c`: the queued instances of pending signals come back
/// each with its siginfo (code, value, sender) and in number, the
/// process's and a thread's own, under both id paths.
#[test]
fn queued_signals_keep_their_siginfo_and_count_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("siginfo");
    if !build_c("siginfo", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = {
        let out = tmp.path().join("ref");
        wait_ok(
            spawn_to_file(&mut Command::new(&exe), &out),
            "reference run",
        );
        std::fs::read_to_string(&out).unwrap()
    };
    for line in [
        "main got RTMIN+2 code SI_QUEUE value 22 from itself",
        "main: 4 signals",
        "worker got RTMIN+4 code SI_QUEUE value 55 from itself",
        "worker: 2 signals",
    ] {
        assert!(want.lines().any(|l| l == line), "{line}: {want}");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[], |_| {}) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: {err}");
    }
}
