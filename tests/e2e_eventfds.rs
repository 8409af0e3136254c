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
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn build_c(name: &str, out: &Path) -> bool {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/{name}.c");
        return false;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed on {}", src.display());
    true
}

fn run(exe: &Path, dir: &Path, tids: &str) -> Command {
    let mut c = Command::new(selfckpt());
    c.env("SELFCKPT_TIDS", tids)
        .arg("run")
        .arg("--dir")
        .arg(dir)
        .arg("--")
        .arg(exe);
    c
}

fn wait_line(path: &Path, line: &str) {
    wait_for(line, 30, || {
        std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l == line))
    });
}

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
        let first = tmp.path().join(format!("first-{tids}"));
        let mut child = spawn_to_file(&mut run(&exe, &dir, tids), &first);
        wait_line(&first, "waiting");
        std::thread::sleep(Duration::from_millis(random_ms(100, 600)));
        kill(&child, libc::SIGUSR1);
        let image = wait_new_image(&dir, 0);
        kill_tree(&mut child, libc::SIGKILL);
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
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run(&exe, &dir, tids), &second),
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
        for bad in ["anon_inode", "made anew", "cannot watch"] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}
