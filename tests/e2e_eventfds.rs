//! Event and timer descriptors come back (issue 14): `tests/c/eventfds.c`
//! holds eventfds, timerfds, a signalfd and an epoll set watching them; it
//! is checkpointed while it waits in `epoll_wait`, killed, and resumed by
//! `selfckpt run` under both id paths. The program checks what it holds
//! after the wait (its fdinfo lines against those before it, readiness,
//! counts, timers, flags) and prints it: the output must be exactly an
//! uninterrupted run's. `inspect` shows each object; a registration whose
//! descriptor number no longer names the registered file is named at
//! checkpoint time and the restart refuses it.

mod common;

use common::*;
use std::process::Command;

#[test]
fn event_and_timer_descriptors_come_back_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("eventfds");
    if !build_c("eventfds", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(&mut Command::new(&exe), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("eventfds ok\n"), "{want}");
    assert!(want.contains("fdinfo same\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let (image, first) = eventfds_image(&exe, &dir, tids, &[]);
        let j = inspect(&image);
        // The program's three, and the idle epoll's.
        assert_eq!(j["eventfds"].as_array().unwrap().len(), 4, "{j}");
        assert_eq!(j["timerfds"].as_array().unwrap().len(), 4, "{j}");
        assert_eq!(
            j["signalfds"][0]["mask"].as_array().unwrap().len(),
            1,
            "{j}"
        );
        assert_eq!(
            j["epolls"][0]["registrations"].as_array().unwrap().len(),
            6,
            "{j}"
        );
        assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
        let text = inspect_text(&image);
        assert!(
            text.contains("eventfd count 4 semaphore nonblock"),
            "{text}"
        );
        let Some((got, err)) = resume_after(&exe, &dir, tids, &[], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        for bad in ["anon_inode", "made anew", "cannot watch"] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}

/// The program's edge-triggered registration names a descriptor number it
/// closed afterwards (the file still open at another number, the number
/// then reused for another file): the
/// checkpoint names it as not restorable (`inspect`, text and JSON) and
/// the resume refuses it, naming it, without running the program;
/// `restart --unrestorable=fresh` runs it with an epoll without that
/// registration.
#[test]
fn a_registration_whose_number_was_closed_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("eventfds");
    if !build_c("eventfds", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &["stale"]);
    let j = inspect(&image);
    let named = j["not_restorable"].as_array().unwrap();
    assert_eq!(named.len(), 1, "{j}");
    let what = named[0].as_str().unwrap();
    // The number was taken again afterwards (by the program's idle
    // epoll): kcmp tells it is another file.
    assert!(
        what.contains("epoll: the watched descriptor 5 names another file"),
        "{what}"
    );
    assert!(inspect_text(&image).contains(what), "text inspect names it");
    // ... and the checkpoint said so when it was taken (stats.jsonl).
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert!(
        stats
            .lines()
            .any(|l| l.contains("not_restorable") && l.contains(what)),
        "stats.jsonl does not name it: {stats}"
    );
    let second = tmp.path().join("second");
    let (status, err) = finish(
        spawn_to_file(&mut run_cmd(&exe, &dir, "new", &["stale"]), &second),
        "resumed run",
    );
    assert!(!status.success(), "the resume ran: {err}");
    assert!(
        err.contains("restart refused: not restorable") && err.contains(what),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&second).unwrap(),
        "",
        "the program ran"
    );
}
