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
        let Some((got, err)) = resume_after(&exe, &dir, tids, &[], &image, &first) else {
            continue;
        };
        assert_eq!(
            got, want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        for bad in ["memfd", "shared memory", "/dev/shm", "sealed"] {
            assert!(!err.contains(bad), "--tids {tids}: {err}");
        }
    }
}

/// A key for this test run's segment: from the pid, never IPC_PRIVATE.
fn sysv_key(salt: u32) -> i32 {
    (0x5e00_0000 | ((std::process::id() & 0xffff) << 4) | salt) as i32
}

fn remove_segment(key: i32) {
    // SAFETY: looks up and removes the test's own segment, if any.
    unsafe {
        let id = libc::shmget(key, 0, 0);
        if id >= 0 {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// System V segments: a keyed one attached twice and a private one marked
/// for removal come back attached at the same addresses, with contents,
/// key, size and mode, under both id paths (the keyed segment the killed
/// program left is the one attached again); output as an uninterrupted
/// run's.
#[test]
fn sysv_segments_come_back_with_key_mode_contents_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sysv_shm");
    if !build_c("sysv_shm", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let key = sysv_key(1);
    let k = format!("{key:#x}");
    remove_segment(key);
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(&k), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("sysv ok\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = dir.with_extension("first");
        let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[&k]), &first);
        wait_line(&first, "waiting");
        let image = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        let text = inspect_text(&image);
        assert!(
            text.contains(&format!(
                "key {k} size 12288 mode 640 attached 3 times (3 by the process)"
            )),
            "{text}"
        );
        assert!(
            text.contains("key 0x0 size 8192 mode 600 removed"),
            "{text}"
        );
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[&k]), &second),
            "resumed run",
        );
        remove_segment(key);
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
    }
}

/// A segment another process is attached to too (here: this test) is
/// named at checkpoint time (`sysv_shm`), the restart refuses it, and
/// `--unrestorable=sysv_shm` restarts it with a private stand-in holding
/// its contents.
#[test]
fn a_segment_another_process_has_attached_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sysv_shm");
    if !build_c("sysv_shm", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let key = sysv_key(2);
    let k = format!("{key:#x}");
    remove_segment(key);
    let dir = tmp.path().join("ck");
    let first = dir.with_extension("first");
    let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, "new", &[&k]), &first);
    wait_line(&first, "waiting");
    // SAFETY: attaches the program's segment in this test process.
    let ours = unsafe { libc::shmat(libc::shmget(key, 0, 0), std::ptr::null(), libc::SHM_RDONLY) };
    assert_ne!(ours as isize, -1);
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let j = inspect(&image);
    let named = j["not_restorable"].as_array().unwrap();
    assert!(
        named
            .iter()
            .any(|n| n.as_str().unwrap().contains("another process is attached")),
        "{j}"
    );
    let r = Command::new(selfckpt())
        .args(["restart", "--tids", "new"])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("restart refused") && err.contains("--unrestorable=sysv_shm"),
        "{err}"
    );
    let r = Command::new(selfckpt())
        .args(["restart", "--tids", "new", "--unrestorable=sysv_shm"])
        .arg(&image)
        .output()
        .unwrap();
    // SAFETY: detaching and removing the test's segment.
    unsafe { libc::shmdt(ours) };
    remove_segment(key);
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("sysv contents ok"),
        "{out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

/// Mapping flags are kept exactly: the VmFlags of a growsdown mapping,
/// advised mappings, a plain one (no `nr`) and the read-only part of a
/// read-write shared file mapping are the same after the restart, the
/// growsdown mapping still grows, the read-only part can be made
/// writable, THP stays disabled; under both id paths, output as an
/// uninterrupted run's.
#[test]
fn mapping_flags_and_advice_are_kept_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("vmflags");
    if !build_c("vmflags", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let data = tmp.path().join("vmflags.dat");
    let d = data.to_str().unwrap();
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(d), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("vmflags ok\n"), "{want}");
    assert!(want.contains("growsdown: rd wr mr mw me gd"), "{want}");
    for tids in ["exact", "new"] {
        let _ = std::fs::remove_file(&data);
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = dir.with_extension("first");
        let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[d]), &first);
        wait_line(&first, "waiting");
        let image = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        assert!(
            inspect_text(&image).contains("transparent huge pages disabled"),
            "--tids {tids}"
        );
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[d]), &second),
            "resumed run",
        );
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        let first = std::fs::read_to_string(&first).unwrap();
        let second = std::fs::read_to_string(&second).unwrap();
        assert_eq!(
            format!("{}{second}", &first[..offset]),
            want,
            "--tids {tids}: resumed output differs; stderr: {err}"
        );
        assert!(status.success(), "resumed --tids {tids}: {status}: {err}");
    }
}

/// A restarted program's shared objects (aliases made by the restart, a
/// memfd reopened, a write-sealed memfd mapped again read-only) are
/// checkpointed again and come back again: checkpoint, kill, resume,
/// checkpoint the resumed run, kill, resume; the output is an
/// uninterrupted run's.
#[test]
fn restored_shared_objects_are_checkpointed_and_restored_again() {
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
    let dir = tmp.path().join("ck");
    let first = tmp.path().join("first");
    let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, "new", &[]), &first);
    wait_line(&first, "waiting");
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let offset = fd_offset(&image, 1);
    let second = tmp.path().join("second");
    let mut child = spawn_to_file(&mut run_cmd(&exe, &dir, "new", &[]), &second);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let again = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    assert_ne!(again, image);
    let offset2 = fd_offset(&again, 1);
    let third = tmp.path().join("third");
    let (status, err) = finish(
        spawn_to_file(&mut run_cmd(&exe, &dir, "new", &[]), &third),
        "second resumed run",
    );
    assert!(status.success(), "{status}: {err}");
    let first = std::fs::read_to_string(&first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    let third = std::fs::read_to_string(&third).unwrap();
    // Each run writes a file of its own, from where its image says.
    assert_eq!(
        format!("{}{}{third}", &first[..offset], &second[..offset2]),
        want,
        "{err}"
    );
}

/// A private view of shared anonymous memory (`tests/c/private_view.c`,
/// CRIU's shmemfd-priv): the pages the view never wrote show the shared
/// object's contents, and must after a restart too (they came back as
/// zeros). The page it wrote stays its own.
#[test]
fn a_private_view_of_shared_memory_keeps_the_pages_it_never_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("private_view");
    if !build_c("private_view", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(&mut std::process::Command::new(&exe), &reference),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(
        want.contains("view page 0: 22\nview page 1: 99\n"),
        "{want}"
    );
    let dir = tmp.path().join("ck");
    if let Some((got, err)) = resumed(&exe, &dir, "new", &[], |_| {}) {
        assert_eq!(got, want, "stderr: {err}");
    }
}
