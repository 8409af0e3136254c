//! Shared memory objects come back shared (issue 14, Memory):
//! `tests/c/shared_memory.c` holds shared anonymous memory with an alias
//! (pages written through the alias only), a shared region moved by
//! mremap, memfds (held open and mapped twice with seals and an offset,
//! write-sealed and mapped read-only, closed once mapped, never mapped)
//! and an unlinked /dev/shm file still mapped. It is checkpointed while it
//! sleeps, killed, and resumed by `selfckpt run` under both id paths; it
//! then checks contents, writes through one mapping and reads through
//! another, reads seals, offsets and flags back: the output must be
//! exactly an uninterrupted run's.

mod common;

use common::*;
use std::process::Command;

#[test]
fn shared_objects_come_back_shared_with_contents_and_seals_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("shared_memory");
    if !build_c("shared_memory", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(&mut Command::new(&exe), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("shared ok\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = dir.with_extension("first");
        let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[]), &first);
        wait_line(&first, "waiting");
        let image = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        let text = inspect_text(&image);
        for line in [
            "memfd kmem-test size 12288 offset 123 seals shrink,grow (12288 bytes of data held)",
            "memfd kmem-sealed size 4096 offset 4096 seals seal,write",
            "memfd kmem-unmapped size 20580",
        ] {
            assert!(text.contains(line), "--tids {tids}: no {line:?} in\n{text}");
        }
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[]), &second),
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
        for bad in ["memfd", "shared memory", "/dev/shm", "sealed"] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}
