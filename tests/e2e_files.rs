//! Files and pipes come back (issue 14): each C program in `tests/c/`
//! sets up its objects, is checkpointed while it waits, SIGKILLed, and
//! resumed (`selfckpt run` again, both id paths); what it prints after the
//! wait (flags read back with fcntl, queued bytes, packet boundaries,
//! owners) must be exactly an uninterrupted run's. A pipe to another
//! process is named at checkpoint time, refused at restart, and its
//! stand-in (`--unrestorable=pipe`) has the other side closed.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn pipes_and_a_fifo_keep_their_bytes_packets_and_flags_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pipes");
    if !build_c("pipes", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let fifo = tmp.path().join("fifo");
    let fifo_s = fifo.to_str().unwrap();
    let want = reference(&exe, &["inside", fifo_s], &tmp.path().join("ref"));
    assert!(want.ends_with("pipes ok\n"), "{want}");
    for line in [
        "a write: flags 6001 cloexec 0 queued 70000 capacity 131072",
        "b read: flags 60000 cloexec 1 queued 13 owner self sig",
        "fifo read: flags 4000 cloexec 1 queued 65536",
        "b packet 1: 10 bytes packet-two",
    ] {
        assert!(want.contains(line), "{line}: {want}");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &["inside", fifo_s], |image| {
            let j = inspect(image);
            assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
            let pipes: Vec<_> = j["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["kind"] == "pipe" && o["ends"][0]["fd"].as_i64() > Some(2))
                .collect();
            // Not the stderr pipe the test reads (fd 2: the stdio policy's).
            assert_eq!(pipes.len(), 3, "{j}");
            let text = inspect_text(image);
            assert!(
                text.contains("FIFO ") && text.contains("65536 bytes queued of 65536"),
                "{text}"
            );
        }) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
        assert!(!err.contains("/dev/null"), "--tids {tids}: {err}");
    }
}

#[test]
fn a_pipe_to_another_process_is_named_refused_and_its_stand_in_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pipes");
    if !build_c("pipes", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &["outside"], &tmp.path().join("ref"));
    assert!(
        want.contains("read again: 0 (EOF)\nwrite: -1 EPIPE\n"),
        "{want}"
    );
    let dir = tmp.path().join("ck");
    // The child is left out of the checkpoint (`--no-tree`): the pipes
    // lead to another process.
    let run = || run_cmd_with(&exe, &dir, "new", &["--no-tree"], &["outside"]);
    let (image, first) = image_of_run(run(), &dir);
    let j = inspect(&image);
    let named: Vec<&str> = j["not_restorable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 3, "{j}");
    for end in ["read end", "write end"] {
        assert!(
            named
                .iter()
                .any(|n| n.contains(&format!("pipe to another process ({end})"))),
            "{named:?}"
        );
    }
    let text = inspect_text(&image);
    assert!(text.contains(named[0]), "text inspect names it: {text}");
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert!(
        stats
            .lines()
            .any(|l| l.contains("not_restorable") && l.contains(named[0])),
        "stats.jsonl does not name it: {stats}"
    );
    // Refused by default, naming each (the child left out first, its
    // cause), without running the program.
    let second = tmp.path().join("second");
    let (status, err) = finish(spawn_to_file(&mut run(), &second), "resumed run");
    assert!(!status.success(), "the resume ran: {err}");
    assert!(
        err.contains("restart refused: not restorable")
            && named.iter().all(|n| err.contains(n))
            && err.contains("left out of the checkpoint")
            && err.contains("--unrestorable=left_out,pipe"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&second).unwrap(), "");
    // The stand-in: the other side closed (EOF after the queued line,
    // EPIPE), as if the child had exited; never /dev/null.
    let offset = fd_offset(&image, 1);
    let third = tmp.path().join("third");
    let (status, err) = finish(
        spawn_to_file(
            Command::new(selfckpt())
                .args(["restart", "--tids", "new", "--unrestorable=pipe"])
                .arg(&image),
            &third,
        ),
        "restart with stand-ins",
    );
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stand-ins"), "{err}");
    assert!(!err.contains("/dev/null"), "{err}");
    let first = std::fs::read_to_string(&first).unwrap();
    let third = std::fs::read_to_string(&third).unwrap();
    assert_eq!(format!("{}{third}", &first[..offset]), want, "{err}");
}

#[test]
fn a_deleted_file_and_a_deleted_cwd_come_back_under_both_id_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("deleted");
    if !build_c("deleted", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let work = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d.to_str().unwrap().to_string()
    };
    let want = reference(&exe, &[&work("ref-dir")], &tmp.path().join("ref"));
    for line in [
        "append: offset 0 flags 6001 cloexec 1",
        "links 0 size 200000 mode 640",
        "read 187655 bytes from the offset, 0 wrong",
        "read back 9: appended",
        "create in cwd: No such file or directory",
    ] {
        assert!(want.contains(line), "{line}: {want}");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let wd = work(&format!("wd-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[&wd], |image| {
            let j = inspect(image);
            assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
            let text = inspect_text(image);
            assert!(
                text.contains("/data 200000 bytes saved: fd 3 read-write at 12345"),
                "{text}"
            );
        }) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
        // Nothing was left with a name where the file was.
        assert_eq!(std::fs::read_dir(&wd).unwrap().count(), 0, "{wd}");
    }
}

#[test]
fn a_deleted_file_too_large_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("deleted");
    if !build_c("deleted", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let wd = tmp.path().join("wd");
    std::fs::create_dir(&wd).unwrap();
    let dir = tmp.path().join("ck");
    let out = dir.with_extension("first");
    let mut cmd = run_cmd(&exe, &dir, "new", &[wd.to_str().unwrap(), "5000"]);
    cmd.env("SELFCKPT_MAX_DELETED_FILE", "4096");
    let mut child = spawn_to_file(&mut cmd, &out);
    wait_line(&out, "waiting");
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(&dir, 0);
    wait_stats_line(&dir, &image);
    kill_tree(&mut child, libc::SIGKILL);
    let j = inspect(&image);
    let named = j["not_restorable"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        named.contains("/data (5000 bytes) is larger than SELFCKPT_MAX_DELETED_FILE (4096 bytes)"),
        "{j}"
    );
    let (status, err) = finish(
        spawn_to_file(
            Command::new(selfckpt())
                .args(["restart", "--tids", "new"])
                .arg(&image),
            &tmp.path().join("second"),
        ),
        "restart",
    );
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("restart refused: not restorable")
            && err.contains(&named)
            && err.contains("--unrestorable=deleted_file"),
        "{err}"
    );
}

/// A real program: Python's sqlite3 in WAL mode, in the middle of a
/// transaction holding a temporary table that spilled to an unlinked file
/// (sqlite's `etilqs_*`), opened with O_NOFOLLOW as sqlite opens its
/// files: checkpointed, killed, resumed; the transaction commits and the
/// database checks out, exactly as in an uninterrupted run.
#[test]
fn sqlite_in_wal_mode_holds_a_transaction_and_an_unlinked_file_across_a_restart() {
    let have_sqlite = Command::new("python3")
        .args(["-c", "import sqlite3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_sqlite {
        eprintln!("skipped: no python3 with its sqlite3 module");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/sqlite_wal.py");
    let script = script.to_str().unwrap();
    let ref_db = tmp.path().join("ref.sqlite");
    let want = reference(
        Path::new("python3"),
        &[script, ref_db.to_str().unwrap()],
        &tmp.path().join("ref"),
    );
    assert!(
        want.starts_with("holds an unlinked file: True\n") && want.ends_with("sqlite ok\n"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let db = tmp.path().join(format!("{tids}.sqlite"));
        let Some((got, err)) = resumed(
            Path::new("python3"),
            &dir,
            tids,
            &[script, db.to_str().unwrap()],
            |image| {
                let j = inspect(image);
                assert_eq!(j["not_restorable"].as_array().unwrap().len(), 0, "{j}");
                assert!(inspect_text(image).contains("etilqs_"), "no unlinked file");
            },
        ) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
        assert!(!err.contains("/dev/null"), "--tids {tids}: {err}");
    }
}

/// flock, POSIX record and OFD locks are held again after a restart (a
/// second process sees them, and whose they are), under both id paths;
/// a restart while another process holds a conflicting lock is refused,
/// naming the lock, and runs once it is released.
#[test]
fn file_locks_are_held_again_and_a_conflict_refuses_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("locks");
    if !build_c("locks", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let work = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let ref_dir = work("ref-dir");
    let want = reference(&exe, &[ref_dir.to_str().unwrap()], &tmp.path().join("ref"));
    for line in [
        "a: exclusive flock held",
        "b 10-19: write lock 10-19 by the parent",
        "b 100-: read lock 100--1 by the parent",
        "c: write lock 0--1 by a description",
        "d: shared flock held",
    ] {
        assert!(want.contains(line), "{line}: {want}");
    }
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let wd = work(&format!("wd-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[wd.to_str().unwrap()], |image| {
            let text = inspect_text(image);
            for l in [
                "lock: flock write lock",
                "lock: POSIX write lock on bytes 10-19",
                "lock: POSIX read lock on bytes 100-end",
                "lock: OFD write lock on bytes 0-end",
            ] {
                assert!(text.contains(l), "{l}: {text}");
            }
        }) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
    }

    // Another process holds a's flock: refused, naming it.
    let dir = tmp.path().join("ck-conflict");
    let wd = work("wd-conflict");
    let (image, first) = eventfds_image(&exe, &dir, "new", &[wd.to_str().unwrap()]);
    let holder = std::fs::File::open(wd.join("a")).unwrap();
    // SAFETY: flock on the test's own descriptor.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&holder), libc::LOCK_SH) },
        0
    );
    let restart = |out: &Path| {
        finish(
            spawn_to_file(
                Command::new(selfckpt())
                    .args(["restart", "--tids", "new"])
                    .arg(&image),
                out,
            ),
            "restart",
        )
    };
    let (status, err) = restart(&tmp.path().join("refused"));
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("locked by another process now")
            && err.contains(
                "/a): its flock write lock: another process holds a conflicting flock lock"
            ),
        "{err}"
    );
    drop(holder);
    let out = tmp.path().join("after");
    let (status, err) = restart(&out);
    assert!(status.success(), "{err}");
    let offset = fd_offset(&image, 1);
    let first = std::fs::read_to_string(first).unwrap();
    let got = format!(
        "{}{}",
        &first[..offset],
        std::fs::read_to_string(&out).unwrap()
    );
    assert_eq!(got, want, "{err}");
}

/// The program's own /proc files (status, an fdinfo, its main thread's
/// task stat, its fd directory) are reopened under the pid it has after
/// the restart (with `--tids new` another one), at their offsets.
#[test]
fn the_programs_own_proc_files_are_its_own_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("procfs");
    if !build_c("procfs", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(
        !want.contains(": no") && want.ends_with("procfs ok\n"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[], |_| {}) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
        assert!(!err.contains("/dev/null"), "--tids {tids}: {err}");
    }
}

/// Descriptors sharing one open file description share it again after a
/// restart (one offset), a second open keeps its own, and the status
/// `open(2)` cannot set (`O_ASYNC`, `F_SETOWN`, `F_SETSIG`) comes back.
#[test]
fn shared_descriptions_and_async_owners_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("descriptions");
    if !build_c("descriptions", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let file = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let want = reference(&exe, &[&file("ref-file")], &tmp.path().join("ref"));
    assert!(
        want.contains("offsets: first 7 dup 7 other 0\nfirst: flags 2002 owner self sig"),
        "{want}"
    );
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let f = file(&format!("file-{tids}"));
        let Some((got, err)) = resumed(&exe, &dir, tids, &[&f], |image| {
            assert!(
                inspect_text(image).contains("fds 3,4 share one description"),
                "{}",
                inspect_text(image)
            );
        }) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: resumed output differs: {err}");
    }
}

/// A descriptor of a kind nothing brings back (a userfaultfd) is named at
/// checkpoint time (kind `other`), the restart refuses it, and only
/// `--unrestorable=other` restarts with `/dev/null` in its place.
#[test]
fn a_descriptor_of_an_unknown_kind_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("uffd");
    if !build_c("uffd", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    if want.contains("no userfaultfd") {
        eprintln!("skipped: no userfaultfd on this kernel");
        return;
    }
    let dir = tmp.path().join("ck");
    let (image, _) = eventfds_image(&exe, &dir, "new", &[]);
    let j = inspect(&image);
    let named: Vec<String> = j["not_restorable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .filter(|x| x.contains("userfaultfd"))
        .collect();
    assert_eq!(named.len(), 1, "{j}");
    assert!(
        named[0].starts_with("fd 3 anon_inode:[userfaultfd]"),
        "{named:?}"
    );
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert!(stats.contains("anon_inode:[userfaultfd]"), "{stats}");
    let restart = |opt: &str| {
        let mut c = Command::new(selfckpt());
        c.args(["restart", "--tids", "new"]);
        if !opt.is_empty() {
            c.arg(opt);
        }
        c.arg(&image);
        finish(spawn_to_file(&mut c, &tmp.path().join("out")), "restart")
    };
    let (status, err) = restart("");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&named[0]) && err.contains("--unrestorable=other"),
        "{err}"
    );
    let (status, err) = restart("--unrestorable=pipe");
    assert!(!status.success(), "another kind's stand-in: {err}");
    let (status, err) = restart("--unrestorable=other,pipe");
    assert!(status.success(), "{err}");
    assert!(err.contains("/dev/null"), "{err}");
}

/// A file the program maps `MAP_SHARED` and holds open, then unlinks,
/// comes back as one file: what is written through the descriptor shows
/// in the mapping and the other way round (not a mapping and a separate
/// copy), under both id paths.
#[test]
fn a_deleted_file_mapped_shared_and_held_open_stays_one_file() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("deleted_mapped");
    if !build_c("deleted_mapped", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let work = tmp.path().to_str().unwrap().to_string();
    let want = reference(&exe, &[&work], &tmp.path().join("ref"));
    assert!(
        want.contains("mapping reads HELLO, descriptor reads through the mapping, third page"),
        "{want}"
    );
    resumes_as_uninterrupted(&exe, tmp.path(), &[&work], &want);
}

/// A data file the program reads and writes (`exec 3<>`), written on after
/// the checkpoint, before the kill: the resume says that the file changed
/// after the checkpoint (the program goes on from its view of it), and
/// the program's rewriting from its checkpointed offset leaves the file
/// as an uninterrupted run does.
#[test]
fn a_data_file_written_after_the_checkpoint_is_named_at_the_resume() {
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = "exec 3<>\"$1\"; i=0; while [ $i -lt 40 ]; do echo \"row $i\" >&3; echo $i; \
                  i=$((i+1)); sleep 0.05; done";
    let data = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let want_out = reference(
        Path::new("/bin/sh"),
        &["-c", script, "sh", &data("ref.data")],
        &tmp.path().join("ref.out"),
    );
    let want = std::fs::read_to_string(data("ref.data")).unwrap();
    let dir = tmp.path().join("ck");
    let args = ["-c", script, "sh", &data("run.data")];
    let first = tmp.path().join("first.out");
    let mut child = spawn_to_file(&mut selfckpt_run(&dir, "/bin/sh", &args), &first);
    wait_for("output", 60, || {
        std::fs::read_to_string(&first).is_ok_and(|s| s.lines().count() >= 10)
    });
    let set = checkpoint_wait(child.id());
    let lines_then = std::fs::read_to_string(data("run.data"))
        .unwrap()
        .lines()
        .count();
    // It goes on writing for a while before it is killed.
    wait_for("rows after the checkpoint", 60, || {
        std::fs::read_to_string(data("run.data")).is_ok_and(|s| s.lines().count() >= lines_then + 5)
    });
    kill_tree(&mut child, libc::SIGKILL);
    let root = if set.is_dir() {
        root_image(&set)
    } else {
        set.clone()
    };
    let offset = fd_offset(&root, 1);
    let second = tmp.path().join("second.out");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&dir, "/bin/sh", &args), &second),
        "resumed run",
    );
    assert!(
        err.contains("changed after the checkpoint") && err.contains("run.data"),
        "the resume did not name the data file: {err}"
    );
    let mut got = std::fs::read_to_string(&first).unwrap();
    got.truncate(offset);
    got.push_str(&std::fs::read_to_string(&second).unwrap());
    assert_eq!(got, want_out, "{err}");
    assert_eq!(std::fs::read_to_string(data("run.data")).unwrap(), want);
}

/// Mappings of a deleted file (private and shared, the file closed) and
/// of a memfd (private, closed), none of their pages touched before the
/// checkpoint: every page reads the object's bytes after the restart
/// (the checkpoint brings them in first; nothing could read them again).
#[test]
fn untouched_pages_of_deleted_files_and_memfds_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("deleted_untouched");
    if !build_c("deleted_untouched", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let work = tmp.path().to_str().unwrap().to_string();
    let want = reference(&exe, &[&work], &tmp.path().join("ref"));
    for what in [
        "private deleted file",
        "shared deleted file",
        "private memfd",
    ] {
        assert!(
            want.contains(&format!("{what}: 0 of 64 pages wrong")),
            "{want}"
        );
    }
    resumes_as_uninterrupted(&exe, tmp.path(), &[&work], &want);
}

/// `O_PATH` descriptors (of a file, a directory, a symlink itself) come
/// back `O_PATH`, of the same objects, with their close-on-exec flags.
#[test]
fn o_path_descriptors_come_back_o_path_of_the_same_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("opath");
    if !build_c("opath", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let work = work.to_str().unwrap().to_string();
    let want = reference(&exe, &[&work], &tmp.path().join("ref"));
    for line in [
        "file: O_PATH 1 cloexec 0 file size 12",
        "dir: O_PATH 1 cloexec 1 dir size 4096",
        "link: O_PATH 1 cloexec 0 symlink size 6",
        "read through O_PATH: Bad file descriptor",
        "readlinkat of link: target",
    ] {
        assert!(want.lines().any(|l| l == line), "{line}: {want}");
    }
    resumes_as_uninterrupted(&exe, tmp.path(), &[&work], &want);
}

/// Checkpoints `exe args` while it waits, under both id paths, kills and
/// resumes it: its output must be `want`, an uninterrupted run's.
fn resumes_as_uninterrupted(exe: &Path, tmp: &Path, args: &[&str], want: &str) {
    for tids in ["exact", "new"] {
        let dir = tmp.join(format!("ck-{tids}"));
        let Some((got, err)) = resumed(exe, &dir, tids, args, |_| {}) else {
            continue;
        };
        assert_eq!(got, want, "--tids {tids}: {err}");
    }
}

/// A descriptor 0-2 the program closed (a daemon's stdin) stays closed
/// after a restart (it was the restarter's: the program's next open got
/// another number, and what it read there was the restarter's input).
#[test]
fn a_stdio_descriptor_the_program_closed_stays_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("closed_stdio");
    if !build_c("closed_stdio", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(
        want.ends_with("fd 0 closed\nnext open takes fd 0\nclosed_stdio ok\n"),
        "{want}"
    );
    let (got, err) = resumed(&exe, &tmp.path().join("ck"), "new", &[], |_| {}).unwrap();
    assert_eq!(got, want, "{err}");
}

/// A pty slave opened close-on-exec through its master (`TIOCGPTPEER`,
/// as the restart itself opens slaves) and a pipe made close-on-exec,
/// then `dup2`'d to numbers of their own without it
/// (`tests/c/cloexec_dup.c`): after the restart the program's child
/// still has them at those numbers, and not the originals. The kernel
/// shows `O_CLOEXEC` in `F_GETFL` and fdinfo for every descriptor of
/// such a slave: taken from there, a restart made them close-on-exec,
/// and a shell in a pty lost its terminal at its next command after a
/// second restart.
#[test]
fn a_descriptor_dup2d_from_a_close_on_exec_one_survives_exec_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("cloexec_dup");
    if !build_c("cloexec_dup", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(
        want.contains("pty slave at 7: open\npipe at 8: open\nslave opened close-on-exec: closed\npipe opened close-on-exec: closed\n7 is a terminal: 1\n"),
        "{want}"
    );
    let (got, err) = resumed(&exe, &tmp.path().join("ck"), "new", &[], |_| {}).unwrap();
    assert_eq!(got, want, "resumed output differs; stderr: {err}");
}
