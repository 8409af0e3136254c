//! Helpers shared by the end-to-end tests: locating the binaries, running
//! programs with their stdout in a file, waiting for images, reading
//! `selfckpt inspect --json`, and killing a program with everything it
//! started (a restarted program runs under `selfckpt restart`).
#![allow(dead_code)]

mod image;
#[allow(unused_imports)]
pub use image::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn selfckpt() -> PathBuf {
    inherit_nothing();
    PathBuf::from(env!("CARGO_BIN_EXE_selfckpt"))
}

/// Marks close-on-exec, once, every descriptor above 2 this test process
/// was given by whoever started it (cargo's jobserver pipe, a CI runner's
/// descriptors): they are not the tested program's own, and a pipe to
/// another process is refused at restart by default. Every command a test
/// builds goes through [`selfckpt`] or is started after it.
fn inherit_nothing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .filter(|&fd| fd > 2)
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds {
            // SAFETY: fcntl on a descriptor of this process (one that was
            // the directory listing's is closed by now: EBADF, harmless).
            unsafe {
                let f = libc::fcntl(fd, libc::F_GETFD);
                if f >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, f | libc::FD_CLOEXEC);
                }
            }
        }
    });
}

/// An example program (built by `cargo build --examples`).
pub fn example(name: &str) -> PathBuf {
    let p = selfckpt().parent().unwrap().join("examples").join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --examples` before the tests (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn spawn_to_file(cmd: &mut Command, stdout: &Path) -> Child {
    cmd.stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Waits (at most 120 s) for `child` to succeed; returns its stderr.
pub fn wait_ok(child: Child, what: &str) -> String {
    let (st, err) = finish(child, what);
    assert!(st.success(), "{what} failed with {st}: {err}");
    err
}

/// Waits (at most 120 s) for `child` to end; returns its status and stderr.
pub fn finish(mut child: Child, what: &str) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st, err);
        }
        if Instant::now() > deadline {
            kill_tree(&mut child, libc::SIGKILL);
            panic!("{what} hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The images in `dir`, and the member images of the process-tree sets
/// there (`*.tree/`: a run whose program has children), oldest first.
pub fn images(dir: &Path) -> Vec<PathBuf> {
    let ckpts = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut v = ckpts(dir);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for set in rd.flatten().map(|e| e.path()) {
            if set.extension().is_some_and(|x| x == "tree") {
                v.extend(ckpts(&set));
            }
        }
    }
    // By the time in the name (PROG-MS-... and tree-MS-.../PROG-MS-...).
    let ms = |p: &PathBuf| -> u64 {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name.rsplit('-')
            .nth(2)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    v.sort_by_key(|p| (ms(p), p.clone()));
    v
}

/// Waits until `dir` holds more than `before` images; returns the newest.
pub fn wait_new_image(dir: &Path, before: usize) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = images(dir);
        if v.len() > before {
            return v.last().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "no image appeared in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `selfckpt inspect ARGS IMAGE` prints; it must succeed.
fn inspect_output(args: &[&str], image: &Path) -> Vec<u8> {
    let out = Command::new(selfckpt())
        .arg("inspect")
        .args(args)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn inspect(image: &Path) -> serde_json::Value {
    serde_json::from_slice(&inspect_output(&["--json"], image)).expect("inspect --json prints JSON")
}

/// `selfckpt inspect IMAGE`'s text.
pub fn inspect_text(image: &Path) -> String {
    String::from_utf8(inspect_output(&[], image)).expect("inspect prints UTF-8")
}

/// Offset of file descriptor `fd` recorded in the image.
pub fn fd_offset(image: &Path, fd: i64) -> usize {
    let j = inspect(image);
    j["fds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fd"].as_i64() == Some(fd))
        .unwrap_or_else(|| panic!("fd {fd} not in image: {j}"))["offset"]
        .as_u64()
        .unwrap() as usize
}

pub fn kill(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The pids of `pid`'s descendants, parents before children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            out.push(k);
            todo.push(k);
        }
    }
    out
}

pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Sends `sig` to `child` and everything it started (a restarted program
/// runs two levels below `selfckpt restart` in a PID namespace); for
/// SIGKILL, waits until all of them are gone, so nothing writes after this
/// returns.
pub fn kill_tree(child: &mut Child, sig: i32) {
    let all: Vec<u32> = std::iter::once(child.id())
        .chain(descendants(child.id()))
        .collect();
    for p in &all {
        // SAFETY: signalling processes this test started.
        unsafe { libc::kill(*p as i32, sig) };
    }
    if sig == libc::SIGKILL {
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all.iter().all(|&p| gone(p)) {
            assert!(Instant::now() < deadline, "processes {all:?} do not die");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub fn random_ms(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    lo + h.finish() % (hi - lo)
}

/// Waits until `path` is not empty (the program has started its work).
pub fn wait_output(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(path).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the program did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// target/debug (or release): where the binary, libselfckpt.so and .a are.
pub fn target_dir() -> PathBuf {
    selfckpt().parent().unwrap().to_path_buf()
}

/// Newest modification time of the library's sources (src/, not src/bin).
fn newest_lib_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            if p.ends_with("bin") {
                continue;
            }
            newest_lib_source(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

/// libselfckpt.so or .a, built and not older than the library's sources:
/// `cargo test` builds only the rlib, `cargo build --lib` these two.
pub fn lib(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    let built = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} missing: run `cargo build --lib` first (scripts/test.sh does)",
                p.display()
            )
        });
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(
        built >= newest_lib_source(&src),
        "{} is older than the library's sources: run `cargo build --lib` first (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits (at most `secs`) until `cond` holds.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Restarts `image` with exact ids (in a PID namespace; said `skipped:`
/// where the system refuses them) and with new ids, each time waiting for
/// the program to end; hands `check` the identity the program should
/// report (`exact`, `new-ids`), the first line of its output that starts
/// with `prefix`, and how long the restart command ran.
pub fn restart_both_ways(image: &Path, prefix: &str, mut check: impl FnMut(&str, &str, Duration)) {
    for tids in ["exact", "new"] {
        let stdout = image.with_extension(format!("{tids}.stdout"));
        let t0 = Instant::now();
        let child = spawn_to_file(
            Command::new(selfckpt())
                .args(["restart", "--tids", tids])
                .arg(image),
            &stdout,
        );
        let (status, err) = finish(child, "restart");
        let took = t0.elapsed();
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        assert!(status.success(), "restart --tids {tids}: {status}: {err}");
        let out = std::fs::read_to_string(&stdout).unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("--tids {tids}: no report: {out:?}; stderr: {err}"));
        let identity = if tids == "exact" { "exact" } else { "new-ids" };
        check(identity, line, took);
    }
}

/// Builds `tests/c/NAME.c` into `out` (`-Wall -Werror -pthread`); false,
/// having said `skipped:`, where there is no C compiler.
pub fn build_c(name: &str, out: &Path) -> bool {
    if !have("cc") {
        eprintln!("skipped: no C compiler (cc) to build tests/c/{name}.c");
        return false;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc failed on {}", src.display());
    true
}

/// `selfckpt run --dir DIR -- EXE ARGS` with `SELFCKPT_TIDS=TIDS` (the ids
/// policy of a resume).
pub fn run_cmd(exe: &Path, dir: &Path, tids: &str, args: &[&str]) -> Command {
    run_cmd_with(exe, dir, tids, &[], args)
}

/// [`run_cmd`] with options of `run` (`--no-tree`...).
pub fn run_cmd_with(exe: &Path, dir: &Path, tids: &str, opts: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new(selfckpt());
    c.env("SELFCKPT_TIDS", tids)
        .arg("run")
        .args(opts)
        .arg("--dir")
        .arg(dir)
        .arg("--")
        .arg(exe)
        .args(args);
    c
}

/// Waits until the file at `path` has the line `line`.
pub fn wait_line(path: &Path, line: &str) {
    wait_for(line, 30, || {
        std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l == line))
    });
}

/// Runs `tests/c/eventfds.c` (built at `exe`) under `selfckpt run` in
/// `dir`, checkpoints it while it waits, kills it: the image, and the
/// file its output went to.
pub fn eventfds_image(exe: &Path, dir: &Path, tids: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    image_of_run(run_cmd(exe, dir, tids, args), dir)
}

/// [`eventfds_image`] for the `selfckpt run` command `cmd` writing to `dir`.
pub fn image_of_run(mut cmd: Command, dir: &Path) -> (PathBuf, PathBuf) {
    let out = dir.with_extension("first");
    let mut child = spawn_to_file(&mut cmd, &out);
    wait_line(&out, "waiting");
    std::thread::sleep(Duration::from_millis(random_ms(100, 600)));
    kill(&child, libc::SIGUSR1);
    let image = wait_new_image(dir, 0);
    wait_stats_line(dir, &image);
    kill_tree(&mut child, libc::SIGKILL);
    (image, out)
}

/// Waits until `dir`'s stats.jsonl has the line of `image` (written just
/// after the image appears: a program killed before has none).
pub fn wait_stats_line(dir: &Path, image: &Path) {
    let name = image.file_name().unwrap().to_string_lossy().into_owned();
    wait_for("the image's stats.jsonl line", 30, || {
        std::fs::read_to_string(dir.join("stats.jsonl")).is_ok_and(|t| t.contains(&name))
    });
}

/// `selfckpt run --dir DIR -- PROG ARGS...` (to spawn, or to run again:
/// a rerun resumes from DIR's newest image).
pub fn selfckpt_run(dir: &Path, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(selfckpt());
    c.arg("run")
        .arg("--dir")
        .arg(dir)
        .arg("--")
        .arg(prog)
        .args(args);
    c
}

/// The root's image of a process tree's set (the first member its
/// `tree.json` names).
pub fn root_image(set: &Path) -> PathBuf {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set.join("tree.json")).unwrap()).unwrap();
    set.join(r["members"][0]["image"].as_str().unwrap())
}

/// `selfckpt checkpoint PID --wait` (the request channel); the durable
/// image's path. Panics with the command's message on failure.
pub fn checkpoint_wait(pid: u32) -> PathBuf {
    checkpoint_wait_err(pid).0
}

/// `checkpoint_wait`, with what the checkpoint said on stderr.
pub fn checkpoint_wait_err(pid: u32) -> (PathBuf, String) {
    let o = Command::new(selfckpt())
        .args(["checkpoint", &pid.to_string(), "--wait", "--timeout", "60"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "checkpoint {pid}: {err}");
    (
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        err,
    )
}

/// `selfckpt restart IMAGE`, which must refuse: its stderr.
pub fn restart_refused(tmp: &Path, image: &Path) -> String {
    let (status, err) = finish(
        spawn_to_file(
            Command::new(selfckpt()).arg("restart").arg(image),
            &tmp.join("refused"),
        ),
        "restart",
    );
    assert!(!status.success(), "{err}");
    err
}

/// Runs `exe args` uninterrupted; its output.
pub fn reference(exe: &Path, args: &[&str], out: &Path) -> String {
    wait_ok(
        spawn_to_file(Command::new(exe).args(args), out),
        "reference run",
    );
    std::fs::read_to_string(out).unwrap()
}

/// Resumes the run of `exe args` in `dir` with `tids` (`selfckpt run`
/// again) after `image` was taken and the first run (its stdout in
/// `first`) killed: the output of the two runs joined at the image's
/// stdout offset, and the resume's stderr. None where exact ids are
/// impossible here (said `skipped:`).
pub fn resume_after(
    exe: &Path,
    dir: &Path,
    tids: &str,
    args: &[&str],
    image: &Path,
    first: &Path,
) -> Option<(String, String)> {
    let offset = fd_offset(image, 1);
    let second = dir.with_extension("second");
    let (status, err) = finish(
        spawn_to_file(&mut run_cmd(exe, dir, tids, args), &second),
        "resumed run",
    );
    if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
        eprintln!("skipped: exact ids on this system: {err}");
        return None;
    }
    assert!(status.success(), "resumed --tids {tids}: {status}: {err}");
    let first = std::fs::read_to_string(first).unwrap();
    let second = std::fs::read_to_string(&second).unwrap();
    Some((format!("{}{second}", &first[..offset]), err))
}

/// Checkpoints `exe args` under `selfckpt run` with `tids` while it
/// waits (`eventfds_image`), lets `check_image` look at the image, kills
/// the program and resumes it ([`resume_after`]).
pub fn resumed(
    exe: &Path,
    dir: &Path,
    tids: &str,
    args: &[&str],
    check_image: impl FnOnce(&Path),
) -> Option<(String, String)> {
    let (image, first) = eventfds_image(exe, dir, tids, args);
    check_image(&image);
    resume_after(exe, dir, tids, args, &image, &first)
}

/// Waits until `pid` runs the checkpointer: its checkpoint thread exists
/// and it catches SIGUSR1 and SIGUSR2.
pub fn wait_installed(pid: u32) {
    wait_for("the checkpointer installed", 30, || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let cgt = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let both = 1 << (libc::SIGUSR1 - 1) | 1 << (libc::SIGUSR2 - 1);
        cgt & both == both
    });
}

/// A tmpfs mounted for one test, lazily unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    pub fn remount_ro(&self) {
        let o = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "remount ro: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
