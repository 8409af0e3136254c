//! End-to-end: forked checkpoints (`SELFCKPT_FORKED=1`). The program is
//! released at the fork and a copy-on-write child writes the image:
//! restarts are exact for every pattern and level, single- and
//! multi-threaded; threads rewriting their memory at full speed during
//! the dump come back with exactly the memory of the instant of the fork;
//! the program never sees the child (no SIGCHLD, nothing to wait for);
//! and the faults (child killed, parent gone, disk full, copy-on-write
//! over its limit, child too slow) fail the checkpoint cleanly, leave the
//! older images valid and let the next checkpoint work.

mod common;

use common::{example, images, selfckpt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FORKED: (&str, &str) = ("SELFCKPT_FORKED", "1");

/// The last line of DIR/stats.jsonl.
fn last_stats(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap_or_default();
    let line = text.lines().last().unwrap_or("null");
    serde_json::from_str(line).unwrap()
}

fn stats_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("stats.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `selfckpt restart IMAGE`: its stdout (it must succeed).
fn restart(image: &Path) -> String {
    let out = common::run(
        Command::new(selfckpt()).arg("restart").arg(image),
        Duration::from_secs(90),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("restarted ok"),
        "restart of {}: {text} {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn verify(image: &Path) {
    let out = Command::new(selfckpt())
        .arg("verify")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The checkpoint's stats line must say it was forked, with its figures.
fn assert_forked(st: &serde_json::Value) {
    assert_eq!(st["state"], "continue", "{st}");
    assert_eq!(st["forked"], true, "{st}");
    assert!(st["cow_bytes"].is_u64(), "{st}");
    let (pause, total) = (
        st["pause_ms"].as_f64().unwrap(),
        st["total_ms"].as_f64().unwrap(),
    );
    assert!(pause <= total, "{st}");
}

#[test]
fn forked_restarts_are_exact_for_every_pattern_and_level() {
    let cases = [
        "random",
        "text",
        "zerotouched",
        "untouched",
        "mixed",
        "sparse",
    ]
    .iter()
    .flat_map(|p| ["store", "1"].map(|l| (*p, l)))
    .chain([("mixed", "fast3"), ("mixed", "3")]);
    for (pattern, level) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let out = Command::new(example("bigmem"))
            .args([dir.to_str().unwrap(), "16", level, pattern])
            .env(FORKED.0, FORKED.1)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bigmem {level} {pattern}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st = last_stats(&dir);
        assert_forked(&st);
        restart(Path::new(st["path"].as_str().unwrap()));
    }
}

/// Runs `forkwriter MIB WRITERS self` (it checkpoints itself); the
/// image's stats line and the original's output.
fn self_checkpoint(
    dir: &Path,
    mib: &str,
    writers: &str,
    env: &[(&str, &str)],
) -> (serde_json::Value, String) {
    let out = common::run(
        Command::new(example("forkwriter"))
            .args([mib, writers, "self"])
            .env("SELFCKPT_DIR", dir)
            .env(FORKED.0, FORKED.1)
            .envs(env.iter().copied()),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "forkwriter: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (last_stats(dir), text)
}

#[test]
fn threads_writing_at_full_speed_come_back_with_the_memory_of_the_fork() {
    for (level, writers) in [("1", "2"), ("store", "3"), ("1", "0")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let (st, text) = self_checkpoint(&dir, "96", writers, &[("SELFCKPT_LEVEL", level)]);
        assert_forked(&st);
        // The program never saw its checkpoint's child.
        assert!(
            text.contains("continued sigchld 0 reaped 0 odd 0 wait -1"),
            "{text}"
        );
        if writers != "0" {
            // The writers rewrote their memory while the child dumped it:
            // the copies are counted.
            let cow = st["cow_bytes"].as_u64().unwrap();
            assert!(cow >= 8 << 20, "cow_bytes {cow} with writers: {st}");
        }
        restart(Path::new(st["path"].as_str().unwrap()));
    }
}

#[test]
fn shared_memory_written_during_the_dump_is_stored_as_it_was_at_the_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let (st, _) = self_checkpoint(&dir, "32", "2", &[("FORKWRITER_SHARED", "1")]);
    assert_forked(&st);
    assert!(st.get("fork_fallback").is_none(), "{st}");
    restart(Path::new(st["path"].as_str().unwrap()));
}

#[test]
fn a_dontfork_region_is_copied_in_the_pause_and_a_large_one_dumps_in_the_pause() {
    // The child has no MADV_DONTFORK memory: the pause copies it (as V8
    // keeps some), with its one writer rewriting it meanwhile; the
    // restarted program checks every page.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let (st, _) = self_checkpoint(&dir, "16", "1", &[("FORKWRITER_DONTFORK", "1")]);
    assert_forked(&st);
    assert!(st.get("fork_fallback").is_none(), "{st}");
    restart(Path::new(st["path"].as_str().unwrap()));
    // More than a pause copies: this checkpoint dumps in the pause, saying why.
    let dir = tmp.path().join("big");
    let (st, _) = self_checkpoint(&dir, "160", "1", &[("FORKWRITER_DONTFORK", "1")]);
    assert_eq!(st["state"], "continue", "{st}");
    assert_eq!(st["forked"], false, "{st}");
    let why = st["fork_fallback"].as_str().unwrap_or_default();
    assert!(
        why.contains("MADV_DONTFORK") && why.contains("160 MiB"),
        "{st}"
    );
    restart(Path::new(st["path"].as_str().unwrap()));
}

// ---------------------------------------------------------------------------
// Faults.

/// A program the test started, killed when the test ends (also when it
/// fails).
struct Prog(Child);

impl Prog {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `forkwriter MIB WRITERS hold` in forked mode, ready.
fn hold(dir: &Path, mib: &str, writers: &str, env: &[(&str, &str)]) -> Prog {
    let mut child = Command::new(example("forkwriter"))
        .args([mib, writers, "hold"])
        .env("SELFCKPT_DIR", dir)
        .env(FORKED.0, FORKED.1)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    Prog(child)
}

/// `selfckpt checkpoint PID --wait`: the image, or the error it printed.
fn checkpoint(pid: u32) -> Result<PathBuf, String> {
    let o = Command::new(selfckpt())
        .args(["checkpoint", &pid.to_string(), "--wait", "--timeout", "60"])
        .output()
        .unwrap();
    if o.status.success() {
        Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// The dumping child of `parent` (named `selfckpt-dump`), if there is one.
fn dump_child(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (comm.ends_with("(selfckpt-dump") && ppid == parent).then_some(pid)
    })
}

/// Every process named `selfckpt-dump` that has a file of `dir` open.
fn dumpers_in(dir: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim() == "selfckpt-dump"
                && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                    fds.flatten()
                        .any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t.starts_with(dir)))
                })
        })
        .collect()
}

/// Waits for the dumping child of `parent` to appear.
fn wait_dump_child(parent: u32) -> u32 {
    let t = Instant::now();
    loop {
        if let Some(c) = dump_child(parent) {
            return c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no dumping child appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
}

/// Level 19 makes the child slow enough (a second or so for 8 MiB) to be
/// caught while it writes.
const SLOW: (&str, &str) = ("SELFCKPT_LEVEL", "19");

#[test]
fn a_killed_dumping_child_fails_the_checkpoint_and_the_next_one_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let prog = hold(&dir, "4", "1", &[SLOW, ("SELFCKPT_KEEP", "5")]);
    let pid = prog.id();
    let first = checkpoint(pid).unwrap();
    assert_forked(&last_stats(&dir));
    // Its child is reaped just after the checkpoint returned.
    let t = Instant::now();
    while dump_child(pid).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the first child stays"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The second: its child is killed while it writes.
    let asker = std::thread::spawn(move || checkpoint(pid));
    let child = wait_dump_child(pid);
    // SAFETY: a signal to the child we found.
    unsafe { libc::kill(child as i32, libc::SIGKILL) };
    let err = asker.join().unwrap().unwrap_err();
    assert!(err.contains("killed by signal 9"), "{err}");
    let st = last_stats(&dir);
    assert_eq!(st["state"], "error", "{st}");
    assert!(alive(pid), "the program died with its checkpoint's child");
    assert_eq!(images(&dir), vec![first.clone()]);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    verify(&first);
    // The next checkpoint works, and both images restart.
    let third = checkpoint(pid).unwrap();
    assert_forked(&last_stats(&dir));
    drop(prog);
    for image in [&first, &third] {
        restart(image);
    }
}

#[test]
fn the_dumping_child_dies_with_its_parent_and_leaves_no_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let prog = hold(&dir, "8", "1", &[SLOW]);
    let pid = prog.id();
    // SAFETY: the trigger signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let child = wait_dump_child(pid);
    drop(prog);
    let t = Instant::now();
    while alive(child) || !dumpers_in(&dir).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the dumping child {child} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    // What is left is a temporary file, which nothing takes for an image.
    let ls = Command::new(selfckpt())
        .arg("ls")
        .arg(&dir)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listed
            .lines()
            .filter(|l| l.contains(".ckpt"))
            .all(|l| l.contains("incomplete") && l.ends_with(".tmp")),
        "{listed}"
    );
}

#[test]
fn a_slow_child_is_killed_after_the_fork_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let prog = hold(&dir, "8", "1", &[SLOW, ("SELFCKPT_FORK_TIMEOUT", "0.2")]);
    let err = checkpoint(prog.id()).unwrap_err();
    assert!(err.contains("SELFCKPT_FORK_TIMEOUT"), "{err}");
    assert!(alive(prog.id()));
    assert!(images(&dir).is_empty() && temp_files(&dir).is_empty());
    assert!(dump_child(prog.id()).is_none());
    drop(prog);
}

#[test]
fn copy_on_write_over_the_limit_abandons_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    // Without writers the image is taken; with them rewriting 64 MiB
    // during a slow dump, the copies pass 8 MiB.
    let prog = hold(
        &dir,
        "64",
        "2",
        &[("SELFCKPT_COW_LIMIT_MB", "8"), ("SELFCKPT_LEVEL", "9")],
    );
    let err = checkpoint(prog.id()).unwrap_err();
    assert!(err.contains("copy-on-write"), "{err}");
    let st = last_stats(&dir);
    assert_eq!(st["state"], "error", "{st}");
    assert!(alive(prog.id()));
    assert!(images(&dir).is_empty() && temp_files(&dir).is_empty());
    drop(prog);
}

#[test]
fn a_full_disk_in_the_child_fails_the_checkpoint_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("small");
    // Room for the metadata the pause writes, not for the pages.
    let _fs = match common::Tmpfs::mount(&dir, "1m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a small tmpfs: {e}");
            return;
        }
    };
    let prog = hold(&dir, "32", "1", &[("SELFCKPT_LEVEL", "store")]);
    let before = stats_lines(&dir);
    let err = checkpoint(prog.id()).unwrap_err();
    assert!(err.contains("No space left"), "{err}");
    let st = last_stats(&dir);
    assert!(stats_lines(&dir) > before && st["state"] == "error", "{st}");
    assert!(alive(prog.id()));
    assert!(images(&dir).is_empty() && temp_files(&dir).is_empty());
    drop(prog);
}

#[test]
fn selfckpt_run_forked_checkpoints_an_unmodified_c_program() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("pthreads");
    if !common::build_c("pthreads", &exe) {
        return;
    }
    let dir = tmp.path().join("img");
    let mut cmd = Command::new(selfckpt());
    cmd.args(["run", "--forked", "--dir"])
        .arg(&dir)
        .arg("--")
        .arg(&exe)
        .arg("1500");
    let out_path = tmp.path().join("out");
    let prog = common::spawn_to_file(&mut cmd, &out_path);
    std::thread::sleep(Duration::from_millis(300));
    let image = common::checkpoint_wait(prog.id());
    assert_forked(&last_stats(&dir));
    common::wait_ok(prog, "forked run");
    let first = std::fs::read_to_string(&out_path).unwrap();
    assert!(first.contains("pthreads ok"), "{first}");
    let out = common::run(
        Command::new(selfckpt()).arg("restart").arg(&image),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("pthreads ok"),
        "restart: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_c_abi_fields_turn_forked_and_incremental_mode_on_and_older_structs_still_install() {
    if !common::have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/forked_cfg.c");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = tmp.path().join("forked_cfg");
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join("tests/c/forked_cfg.c"))
        .arg("-o")
        .arg(&exe)
        .arg(common::lib("libselfckpt.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"])
        .status()
        .unwrap();
    assert!(st.success(), "cc forked_cfg.c");
    for (args, expect) in [
        (&[][..], "continued forked:true"),
        (&["v1"][..], "continued forked:false"),
        (&["incremental"][..], "continued incremental:true"),
        (&["v2"][..], "continued incremental:false"),
    ] {
        let dir = tmp.path().join(format!("img-{}", args.join("-")));
        let out = common::run(
            Command::new(&exe)
                .arg(&dir)
                .args(args)
                .env_remove("SELFCKPT_FORKED")
                .env_remove("SELFCKPT_INCREMENTAL"),
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(expect),
            "forked_cfg {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        restart(Path::new(last_stats(&dir)["path"].as_str().unwrap()));
    }
}

#[test]
fn a_keyed_forked_image_verifies_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let key = ("SELFCKPT_KEY", "forked secret");
    let out = Command::new(example("bigmem"))
        .args([dir.to_str().unwrap(), "16", "1", "mixed"])
        .env(FORKED.0, FORKED.1)
        .env(key.0, key.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = last_stats(&dir);
    assert_forked(&st);
    let image = PathBuf::from(st["path"].as_str().unwrap());
    let v = Command::new(selfckpt())
        .arg("verify")
        .arg(&image)
        .env(key.0, key.1)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("MAC verified"),
        "{text}"
    );
    let back = common::run(
        Command::new(selfckpt())
            .arg("restart")
            .arg(&image)
            .env(key.0, key.1),
        Duration::from_secs(60),
    );
    assert!(String::from_utf8_lossy(&back.stdout).contains("restarted ok"));
}

#[test]
fn checkpoint_then_exit_works_in_forked_mode_and_dumps_in_the_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let mut prog = hold(&dir, "8", "1", &[]);
    // SAFETY: the term signal to our own child.
    unsafe { libc::kill(prog.id() as i32, libc::SIGUSR2) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = prog.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no exit after the term signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let st = last_stats(&dir);
    // The term line (written while the threads stay parked) says no more
    // than that.
    assert_eq!(st["state"], "term", "{st}");
    assert_ne!(st["forked"], true, "{st}");
    restart(Path::new(st["path"].as_str().unwrap()));
}

#[test]
fn memory_made_wipeonfork_at_any_moment_is_never_stored_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let prog = hold(
        &dir,
        "8",
        "0",
        &[("FORKWRITER_TOGGLE_WIPE", "1"), ("SELFCKPT_KEEP", "20")],
    );
    let (mut fell_back, mut refused, mut forked) = (0, 0, 0);
    for _ in 0..8 {
        match checkpoint(prog.id()) {
            Ok(image) => {
                let st = last_stats(&dir);
                if st["forked"] == true {
                    forked += 1;
                } else {
                    assert!(
                        st["fork_fallback"]
                            .as_str()
                            .unwrap_or("")
                            .contains("WIPEONFORK"),
                        "{st}"
                    );
                    fell_back += 1;
                }
                // The restarted program checks every page of the area.
                restart(&image);
            }
            Err(e) => {
                assert!(e.contains("empty in the forked child"), "{e}");
                refused += 1;
            }
        }
    }
    eprintln!("forked {forked}, dumped in the pause {fell_back}, refused {refused}");
}

#[test]
fn flags_advised_after_the_last_survey_are_caught_and_the_checkpoint_taken_again() {
    // The pause of a forked checkpoint takes the mapping flags from the
    // survey made before it (reading smaps there would cost ~20 ms per
    // GiB of pause): here the second checkpoint's survey is the first's,
    // stale, and the child must catch it.
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("advise_late");
    if !common::build_c("advise_late", &exe) {
        return;
    }
    let dir = tmp.path().join("img");
    let base = tmp.path().join("go");
    let mut cmd = Command::new(selfckpt());
    cmd.env("SELFCKPT_LOG", "debug")
        .args(["run", "--forked", "--dir"])
        .arg(&dir)
        .arg("--")
        .arg(&exe)
        .arg(&base);
    let out_path = tmp.path().join("out");
    let mut prog = common::spawn_to_file(&mut cmd, &out_path);
    common::wait_line(&out_path, "waiting");
    common::checkpoint_wait(prog.id());
    assert_forked(&last_stats(&dir));
    std::fs::write(base.with_extension("1"), "").unwrap();
    common::wait_line(&out_path, "advised 1 1");
    let image = common::checkpoint_wait(prog.id());
    assert_forked(&last_stats(&dir));
    common::kill_tree(&mut prog, libc::SIGKILL);
    let (_, log) = common::finish(prog, "advise_late");
    assert!(
        log.contains("changed just before the checkpoint")
            && log.contains("taking the checkpoint again"),
        "the stale survey was not caught: {log}"
    );
    std::fs::write(base.with_extension("2"), "").unwrap();
    let out = common::run(
        Command::new(selfckpt()).arg("restart").arg(&image),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.ends_with("advise ok\n"),
        "restart: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
