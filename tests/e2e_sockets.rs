//! Sockets come back (issue 14): `tests/c/sockets.c` holds socketpairs
//! with data queued both ways, a UNIX connection made through a
//! path-bound listener, an abstract listener, TCP listeners, bound UDP
//! sockets, an unbound socket and a netlink socket; it is checkpointed
//! while it waits, killed, and resumed by `selfckpt run` under both id
//! paths. What it prints after the wait (queued bytes and message
//! boundaries, options read back, addresses, listeners accepting, UDP
//! receiving) must be exactly an uninterrupted run's. A TCP connection to
//! a server outside the process is named at checkpoint time (stats.jsonl,
//! inspect), the restart refuses it, and `--unrestorable=socket` gives
//! the program a dropped connection (`tests/c/sock_outside.c`).

mod common;

use common::*;
use std::process::Command;

/// Runs `exe ARGS` under `selfckpt run` in `dir`, checkpoints it once it
/// prints "waiting", kills it: the image and the file its output went to.
fn image_of(
    exe: &std::path::Path,
    dir: &std::path::Path,
    tids: &str,
    args: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.with_extension("first");
    let mut child = spawn_to_file(&mut run_cmd(exe, dir, tids, args), &out);
    wait_line(&out, "waiting");
    std::thread::sleep(std::time::Duration::from_millis(random_ms(50, 400)));
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(dir, 0);
    kill_tree(&mut child, libc::SIGKILL);
    (image, out)
}

#[test]
fn sockets_come_back_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sockets");
    if !build_c("sockets", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    let ref_dir = tmp.path().join("ref-dir");
    std::fs::create_dir(&ref_dir).unwrap();
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(&ref_dir), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("sockets ok\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let sockdir = tmp.path().join(format!("socks-{tids}"));
        std::fs::create_dir(&sockdir).unwrap();
        let arg = sockdir.to_str().unwrap();
        let (image, first) = image_of(&exe, &dir, tids, &[arg]);
        let j = inspect(&image);
        let objects = j["objects"].as_array().unwrap_or_else(|| panic!("{j}"));
        let sockets: Vec<_> = objects.iter().filter(|o| o["kind"] == "socket").collect();
        assert!(sockets.len() >= 14, "{j}");
        assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
        let text = inspect_text(&image);
        assert!(
            text.contains("socket UNIX seqpacket (pair) queued 105 bytes in 2 message(s) shut-rd"),
            "{text}"
        );
        assert!(text.contains("(listening) backlog 7"), "{text}");
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[arg]), &second),
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
        for bad in ["socket fd", "(socket:["] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}
