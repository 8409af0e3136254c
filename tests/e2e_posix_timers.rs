//! POSIX timers come back (issue 14) and a program with a `SIGEV_THREAD`
//! timer can be checkpointed at all (issue 13 item 2): `tests/c/posix_timers.c`
//! holds one timer of each notification (signal, none, thread id,
//! thread), a relative and an absolute one, one on the process's CPU
//! clock, and a hole in the ids. It is checkpointed while they run,
//! killed, and resumed by `selfckpt run` under both id paths: its output
//! (ids, expiries counted with their overruns, callbacks, the next id the
//! kernel gives) must be exactly an uninterrupted run's. `inspect` shows
//! every timer.

mod common;

use common::*;
use std::process::Command;

#[test]
fn posix_timers_come_back_with_their_ids_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("posix_timers");
    if !build_c("posix_timers", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(&mut Command::new(&exe), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("posix timers ok\n"), "{want}");
    assert!(
        want.contains("thread timer: 100 calls, values right, attributes right\n"),
        "{want}"
    );
    assert!(want.starts_with("ids 0 1 2 4 6\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let (image, first) = eventfds_image(&exe, &dir, tids, &[]);
        let j = inspect(&image);
        let timers: Vec<&serde_json::Value> = j["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "posix_timer")
            .collect();
        let ids: Vec<i64> = timers.iter().map(|t| t["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [6, 4, 3, 2, 1, 0], "{j}");
        let notify = |id: i64| timers.iter().find(|t| t["id"] == id).unwrap()["notify"].clone();
        assert_eq!(notify(0), "SIGEV_SIGNAL");
        assert_eq!(notify(1), "SIGEV_NONE");
        assert_eq!(notify(2), "SIGEV_THREAD_ID");
        assert_eq!(notify(3), "SIGEV_THREAD");
        let abs = timers.iter().find(|t| t["id"] == 4).unwrap();
        assert_eq!(abs["abstime"], true, "{abs}");
        assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
        let text = inspect_text(&image);
        assert!(
            text.contains("POSIX timer 0: CLOCK_MONOTONIC SIGEV_SIGNAL signal ")
                && text.contains("every 0.020000000s"),
            "{text}"
        );
        let Some((got, err)) = resume_after(&exe, &dir, tids, &[], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        assert!(!err.contains("POSIX timer"), "--tids {tids}: {err}");
    }
}

/// Two timers sending one real-time signal, told apart by their value
/// (`tests/c/timers_one_signal.c`, as DMTCP's timer1): an expiry queued
/// during the checkpoint's pause, after the main thread took the
/// process's queue, must come back from the timer with its value, never
/// as a plain signal (whose handler would find no value: timer1 crashed
/// after one restart in eight). Checkpointed three times, each resumed:
/// every expiry the program sees is a timer's.
#[test]
fn an_expiry_during_the_pause_comes_back_with_its_timer_value() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("timers_one_signal");
    if !build_c("timers_one_signal", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(&mut Command::new(&exe), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert_eq!(
        want, "waiting\ntimer a done, timer b done, bad expiries 0\n",
        "reference run"
    );
    for round in 0..3 {
        let dir = tmp.path().join(format!("ck-{round}"));
        let Some((got, err)) = resumed(&exe, &dir, "new", &[], |_| {}) else {
            continue;
        };
        assert_eq!(
            got, want,
            "round {round}: resumed output differs; stderr: {err}"
        );
    }
}
