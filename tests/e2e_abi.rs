//! End-to-end tests of what users link against and run: C and C++ programs
//! on the C ABI (critical sections, hooks that close and reopen a socket,
//! explicit checkpoints), unmodified programs under `selfckpt run`
//! (python3, bc, awk), the checkpoint-then-exit signal, a burst of trigger
//! signals, and the `checkpoint`, `ls` and `gc` commands. Every test runs
//! real processes, kills them with SIGKILL after a checkpoint, resumes them
//! and compares their output with an uninterrupted run.

mod common;

use common::{
    fd_offset, finish, have, images, lib, selfckpt, target_dir, wait_for, wait_installed,
};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("selfckpt-abi-")
        .tempdir()
        .unwrap()
}

fn output_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn_to(cmd: &mut Command, stdout: &Path) -> Child {
    common::spawn_to_file(cmd.stdin(Stdio::null()), stdout)
}

fn kill9(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

/// The offset of the program's stdout when `image` was taken.
fn fd_offset_1(image: &Path) -> usize {
    fd_offset(image, 1)
}

/// Output before the checkpoint + output after the restart.
fn combined(first: &Path, image: &Path, second: &Path) -> String {
    combined_at(first, fd_offset_1(image), second)
}

/// The same, with stdout's offset at the checkpoint already known.
fn combined_at(first: &Path, off: usize, second: &Path) -> String {
    let a = std::fs::read(first).unwrap();
    assert!(
        off <= a.len(),
        "stdout offset {off} beyond {} bytes",
        a.len()
    );
    let mut v = a[..off].to_vec();
    v.extend(std::fs::read(second).unwrap());
    String::from_utf8(v).unwrap()
}

fn stats(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("stats.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad stats line {l}: {e}")))
        .collect()
}

/// A UNIX socket server that records every line it receives.
struct LineServer {
    lines: Arc<Mutex<Vec<String>>>,
    path: PathBuf,
}

impl LineServer {
    fn start(path: PathBuf) -> LineServer {
        let listener = UnixListener::bind(&path).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let l3 = l2.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        l3.lock().unwrap().push(line);
                    }
                });
            }
        });
        LineServer { lines, path }
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// 1. C and C++ programs on the C ABI.

const STEPS: &str = "12";
const CS_STEP: &str = "2";
const CKPT_STEP: &str = "5";

fn build_c_program(work: &Path, source: &str, compiler: &str, shared: bool) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = work.join(format!("prog-{compiler}"));
    let mut cmd = Command::new(compiler);
    cmd.arg("-O1")
        .arg("-Wall")
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c").join(source))
        .arg("-o")
        .arg(&out);
    if shared {
        lib("libselfckpt.so");
        cmd.arg("-L")
            .arg(target_dir())
            .arg("-lselfckpt")
            .arg(format!("-Wl,-rpath,{}", target_dir().display()));
    } else {
        cmd.arg(lib("libselfckpt.a"))
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"]);
    }
    output_ok(&mut cmd, &format!("{compiler} {source}"));
    out
}

#[test]
fn c_and_cpp_programs_use_critical_sections_and_hooks_and_restart() {
    for (source, compiler, shared) in [("cs_hooks.c", "cc", false), ("cs_hooks.cpp", "c++", true)] {
        if !have(compiler) {
            eprintln!("skipped: {source}: no `{compiler}` on this machine");
            continue;
        }
        let work = tmpdir();
        let w = work.path();
        let prog = build_c_program(w, source, compiler, shared);
        // The C program also has a hook refuse the checkpoint at step 8.
        let refuse: &[&str] = if compiler == "cc" { &["8"] } else { &[] };
        let args = |dir: &str, sock: &Path, sleep: &str| {
            let mut c = Command::new(&prog);
            c.arg(w.join(dir))
                .arg(sock)
                .args([STEPS, CS_STEP, CKPT_STEP, sleep])
                .args(refuse);
            c
        };

        // Reference: an uninterrupted run.
        let ref_server = LineServer::start(w.join("ref.sock"));
        let reference = output_ok(&mut args("ref", &ref_server.path, "20"), source);
        let reference = String::from_utf8(reference.stdout).unwrap();
        assert!(reference.ends_with(&format!(
            "done {}\n",
            reference
                .lines()
                .nth(11)
                .unwrap()
                .split(' ')
                .nth(2)
                .unwrap()
        )));

        // Checkpointed at CKPT_STEP, killed, restarted.
        let server = LineServer::start(w.join("s.sock"));
        let first = w.join("first.txt");
        let child = spawn_to(&mut args("ckpt", &server.path, "300"), &first);
        let next = format!("step {} ", CKPT_STEP.parse::<u32>().unwrap() + 1);
        wait_for(&format!("{source} to pass its checkpoint"), 60, || {
            std::fs::read_to_string(&first).is_ok_and(|s| s.contains(&next))
        });
        kill9(child);
        let st = stats(&w.join("ckpt"));
        let done: Vec<_> = st.iter().filter(|r| r["state"] == "continue").collect();
        assert!(
            done.len() >= 2,
            "{source}: expected the deferred and the explicit checkpoint: {st:?}"
        );
        let image = PathBuf::from(done.last().unwrap()["path"].as_str().unwrap());
        let second = w.join("second.txt");
        let restarted = spawn_to(Command::new(selfckpt()).arg("restart").arg(&image), &second);
        let (status, err) = finish(restarted, "restart");
        assert!(
            status.success(),
            "{source}: restart failed ({status}): {err}"
        );
        assert!(
            err.contains("restart"),
            "{source}: the restarted checkpoint call should say restart: {err}"
        );
        assert_eq!(
            combined(&first, &image, &second),
            reference,
            "{source}: output differs"
        );

        // The hooks closed and reopened the connection each time.
        let lines = server.lines();
        let count = |s: &str| lines.iter().filter(|l| *l == s).count();
        assert_eq!(count("hello start"), 1, "{lines:?}");
        assert!(count("bye") >= 2, "{lines:?}");
        assert!(count("hello continue") >= 2, "{lines:?}");
        assert_eq!(count("hello restart"), 1, "{lines:?}");
        if !refuse.is_empty() {
            // After the restart, the refused checkpoint: continue hooks saw
            // ERROR, and stats.jsonl says why.
            assert_eq!(count("hello error"), 1, "{lines:?}");
            let st = stats(&w.join("ckpt"));
            let err = st
                .iter()
                .find(|r| r["state"] == "error")
                .expect("an error record");
            assert!(
                err["error"].as_str().unwrap().contains("returned 42"),
                "{err}"
            );
            // The images taken before the refusal are intact.
            let kept = images(&w.join("ckpt"));
            assert!(!kept.is_empty(), "no image left after the refusal");
            for image in kept {
                output_ok(
                    Command::new(selfckpt()).arg("verify").arg(&image),
                    "selfckpt verify after a refused checkpoint",
                );
            }
        }
        let after_restart = lines.iter().position(|l| l == "hello restart").unwrap();
        assert!(
            lines[after_restart..].contains(&"step 11".to_string()),
            "{source}: no step after the restart reached the server: {lines:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Unmodified programs under `selfckpt run`.

struct Tool {
    name: &'static str,
    binary: &'static str,
    args: Vec<String>,
}

fn tools(work: &Path) -> Vec<Tool> {
    let bc = work.join("pi.bc");
    std::fs::write(&bc, "scale=2600\n4*a(1)\nquit\n").unwrap();
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    vec![
        Tool {
            name: "python3",
            binary: python,
            args: vec![
                "-c".into(),
                "x = 1\nN = 7000000\nfor i in range(N):\n    x = (x * 6364136223846793005 + i) % (1 << 64)\n    if i % (N // 20) == 0:\n        print(i, x, flush=True)\nprint('done', x)\n".into(),
            ],
        },
        Tool {
            name: "bc",
            binary: "bc",
            args: vec!["-l".into(), bc.display().to_string()],
        },
        Tool {
            name: "awk",
            binary: "awk",
            args: vec![
                "BEGIN { s = 0; for (i = 0; i < 70000000; i++) { s = (s * 31 + i) % 1000003; if (i % 5000000 == 0) print i, s }; print \"done\", s }".into(),
            ],
        },
    ]
}

fn run_cmd(dir: &Path, tool: &Tool, extra: &[&str]) -> Command {
    lib("libselfckpt.so");
    let mut c = Command::new(selfckpt());
    c.arg("run")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .arg("--")
        .arg(tool.binary)
        .args(&tool.args);
    c
}

fn reference(tool: &Tool) -> String {
    let out = output_ok(
        Command::new(tool.binary)
            .args(&tool.args)
            .stdin(Stdio::null()),
        tool.name,
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts that the rerun resumed from an image (the restarted library
/// appends a `restart` record) instead of starting afresh.
fn assert_resumed(dir: &Path, what: &str) {
    let st = stats(dir);
    assert!(
        st.iter().any(|r| r["state"] == "restart"),
        "{what}: the rerun did not resume from the image: {st:?}"
    );
}

/// Checkpoint with `selfckpt checkpoint PID --wait`, SIGKILL, rerun the
/// same `selfckpt run`, compare.
fn checkpoint_kill_resume(tool: &Tool) {
    let work = tmpdir();
    let w = work.path();
    let dir = w.join("ckpt");
    let expected = reference(tool);
    let first = w.join("first.txt");
    let mut child = spawn_to(&mut run_cmd(&dir, tool, &[]), &first);
    std::thread::sleep(Duration::from_millis(800));
    // On a loaded machine the program may not have installed yet.
    wait_installed(child.id());
    let out = Command::new(selfckpt())
        .args([
            "checkpoint",
            &child.id().to_string(),
            "--wait",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: selfckpt checkpoint failed: {}",
        tool.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let image = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        image.exists(),
        "{}: `checkpoint --wait` printed {image:?}",
        tool.name
    );
    assert!(
        alive(&mut child),
        "{}: finished before it could be killed; make its work longer",
        tool.name
    );
    kill9(child);
    let second = w.join("second.txt");
    let rerun = spawn_to(&mut run_cmd(&dir, tool, &[]), &second);
    let (status, err) = finish(rerun, "selfckpt run (resume)");
    assert!(
        status.success(),
        "{}: resume failed ({status}): {err}",
        tool.name
    );
    assert_resumed(&dir, tool.name);
    assert_eq!(
        combined(&first, &image, &second),
        expected,
        "{}: output differs from an uninterrupted run",
        tool.name
    );
}

#[test]
fn unmodified_programs_resume_under_run() {
    let work = tmpdir();
    let mut ran = 0;
    for tool in tools(work.path()) {
        if !have(tool.binary) {
            eprintln!(
                "skipped: {}: `{}` is not installed (scripts/setup.sh installs it)",
                tool.name, tool.binary
            );
            continue;
        }
        checkpoint_kill_resume(&tool);
        ran += 1;
    }
    assert!(ran > 0, "skipped: none of python3, bc, awk is installed");
}

// ---------------------------------------------------------------------------
// 3. SIGUSR2: checkpoint, then exit 0; the rerun resumes.

fn awk_tool(work: &Path) -> Option<Tool> {
    let t = tools(work).into_iter().find(|t| t.name == "awk")?;
    if have(t.binary) {
        Some(t)
    } else {
        eprintln!("skipped: awk is not installed (scripts/setup.sh installs it)");
        None
    }
}

#[test]
fn term_signal_leaves_a_durable_image_and_exit_code_zero() {
    let work = tmpdir();
    let w = work.path();
    let Some(tool) = awk_tool(w) else { return };
    let expected = reference(&tool);
    let dir = w.join("ckpt");
    let first = w.join("first.txt");
    let child = spawn_to(&mut run_cmd(&dir, &tool, &[]), &first);
    std::thread::sleep(Duration::from_millis(800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    let (status, err) = finish(child, "awk under selfckpt run");
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGUSR2: {status}: {err}"
    );
    let st = stats(&dir);
    let term: Vec<_> = st.iter().filter(|r| r["state"] == "term").collect();
    assert_eq!(term.len(), 1, "{st:?}");
    let image = PathBuf::from(term[0]["path"].as_str().unwrap());
    output_ok(
        Command::new(selfckpt()).arg("verify").arg(&image),
        "selfckpt verify",
    );
    assert!(
        !std::fs::read_to_string(&first).unwrap().contains("done"),
        "awk finished before SIGUSR2; make its work longer"
    );
    let second = w.join("second.txt");
    let rerun = spawn_to(&mut run_cmd(&dir, &tool, &[]), &second);
    // The resumed program (perhaps in a PID namespace below `run`) still
    // answers `selfckpt checkpoint PID --wait`.
    std::thread::sleep(Duration::from_millis(500));
    let out = output_ok(
        Command::new(selfckpt()).args([
            "checkpoint",
            &rerun.id().to_string(),
            "--wait",
            "--timeout",
            "60",
        ]),
        "selfckpt checkpoint of the resumed program",
    );
    let again = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(again.exists() && again != image, "{again:?}");
    let (status, err) = finish(rerun, "resume after SIGUSR2");
    assert!(status.success(), "{status}: {err}");
    assert_resumed(&dir, "rerun after SIGUSR2");
    assert_eq!(combined(&first, &image, &second), expected);
}

// ---------------------------------------------------------------------------
// 4. A burst of 50 trigger signals; then `ls` and `gc`.

#[test]
fn burst_of_signals_coalesces_and_ls_gc_work() {
    let work = tmpdir();
    let w = work.path();
    let Some(tool) = awk_tool(w) else { return };
    let expected = reference(&tool);
    let dir = w.join("ckpt");
    let out = w.join("out.txt");
    let child = spawn_to(&mut run_cmd(&dir, &tool, &["--keep", "3"]), &out);
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    for _ in 0..50 {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    }
    let (status, err) = finish(child, "awk under a burst of SIGUSR1");
    assert!(status.success(), "{status}: {err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    let st = stats(&dir);
    let n = st.iter().filter(|r| r["state"] == "continue").count();
    assert!(
        (1..=25).contains(&n),
        "50 signals made {n} checkpoints: {st:?}"
    );
    assert!(st.iter().all(|r| r["state"] != "error"), "{st:?}");
    let imgs = images(&dir);
    assert!(
        (1..=3).contains(&imgs.len()),
        "keep 3, found {}",
        imgs.len()
    );

    let ls = output_ok(Command::new(selfckpt()).arg("ls").arg(&dir), "selfckpt ls");
    let ls = String::from_utf8(ls.stdout).unwrap();
    for img in &imgs {
        let name = img.file_name().unwrap().to_string_lossy().into_owned();
        let line = ls
            .lines()
            .find(|l| l.contains(&name))
            .unwrap_or_else(|| panic!("ls does not list {name}:\n{ls}"));
        assert!(line.contains("valid") && line.contains("awk"), "{line}");
    }
    // A damaged copy is listed as such and removed by gc.
    let damaged = dir.join("awk-0000000000001-1.ckpt");
    let mut bytes = std::fs::read(&imgs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let ls = output_ok(Command::new(selfckpt()).arg("ls").arg(&dir), "selfckpt ls");
    assert!(String::from_utf8(ls.stdout).unwrap().contains("DAMAGED"));
    output_ok(
        Command::new(selfckpt())
            .arg("gc")
            .arg(&dir)
            .args(["--keep", "1"]),
        "selfckpt gc",
    );
    let left = images(&dir);
    assert_eq!(left, vec![imgs.last().unwrap().clone()], "gc --keep 1");
}

// ---------------------------------------------------------------------------
// 5. Injection survives exec (wrapper scripts); no per-child image
//    directories (children are members of the run's tree); the interval
//    trigger.

/// `sh -c 'awk SHORT; exec awk LONG'`: the short awk is a forked child, the
/// long one replaces the shell (same PID).
fn wrapper_tool(work: &Path) -> Option<Tool> {
    let awk = awk_tool(work)?;
    let long = awk.args[0]
        .replace('"', "\\\"")
        .replace("70000000", "40000000");
    Some(Tool {
        name: "sh wrapper",
        binary: "sh",
        args: vec![
            "-c".into(),
            format!("awk 'BEGIN {{ print \"child\" }}'; exec awk \"{long}\""),
        ],
    })
}

#[test]
fn injection_survives_exec_and_skips_children_unless_asked() {
    let work = tmpdir();
    let w = work.path();
    let Some(tool) = wrapper_tool(w) else { return };
    let expected = reference(&tool);
    assert!(expected.starts_with("child\n"), "{expected}");
    let dir = w.join("ckpt");
    let first = w.join("first.txt");
    let mut child = spawn_to(&mut run_cmd(&dir, &tool, &["--interval", "0.4"]), &first);
    // Wait until the exec'd awk has taken two interval checkpoints.
    wait_for("two interval checkpoints of the exec'd awk", 60, || {
        stats(&dir)
            .iter()
            .filter(|r| r["state"] == "continue" && r["program"] != "sh" && r["program"] != "dash")
            .count()
            >= 2
    });
    assert!(
        alive(&mut child),
        "awk finished too early; make its work longer"
    );
    kill9(child);
    assert!(
        !dir.join("children").exists(),
        "a forked child was checkpointed without --children"
    );
    let st = stats(&dir);
    let last = st.iter().rev().find(|r| r["state"] == "continue").unwrap();
    // The resumed run goes on taking interval checkpoints and prunes this
    // image: read its stdout offset now.
    let off = fd_offset_1(Path::new(last["path"].as_str().unwrap()));
    let second = w.join("second.txt");
    // The image's program is awk, the command's is sh: run.json matches.
    let rerun = spawn_to(&mut run_cmd(&dir, &tool, &["--interval", "0.4"]), &second);
    let (status, err) = finish(rerun, "resume of the wrapper");
    assert!(status.success(), "{status}: {err}");
    assert_resumed(&dir, "wrapper rerun");
    assert_eq!(combined_at(&first, off, &second), expected);

    // --children is kept for older scripts and changes nothing now (the
    // forked awk is a member of the run's process tree either way): it
    // still runs, and leaves no `children/` directory behind.
    let dir2 = w.join("ckpt2");
    let out = output_ok(
        &mut run_cmd(&dir2, &tool, &["--children", "--fresh"]),
        "run --children",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    let empty: Vec<_> = std::fs::read_dir(dir2.join("children"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        empty.iter().all(|d| !images(d).is_empty()),
        "--children left directories without images: {empty:?}"
    );
}

// ---------------------------------------------------------------------------
// 6. Critical sections under load: 4 threads in and out of sections while
//    20 checkpoints are asked for; none may start inside a section.

#[test]
fn no_checkpoint_starts_inside_a_critical_section_under_load() {
    if !have("cc") {
        eprintln!("skipped: no `cc` on this machine");
        return;
    }
    let work = tmpdir();
    let w = work.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prog = w.join("cs_threads");
    output_ok(
        Command::new("cc")
            .arg("-O1")
            .arg("-I")
            .arg(root.join("include"))
            .arg(root.join("tests/c/cs_threads.c"))
            .arg(lib("libselfckpt.a"))
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-o"])
            .arg(&prog),
        "cc cs_threads.c",
    );
    let out = output_ok(
        Command::new(&prog).arg(w.join("ckpt")).args(["4", "20"]),
        "cs_threads",
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let [checkpoints, violations, sections] = nums[..] else {
        panic!("unexpected output {line:?}");
    };
    assert_eq!(violations, 0, "{line}");
    assert!(
        checkpoints >= 3,
        "too few checkpoints: starved by the sections? {line}"
    );
    assert!(sections > 1000, "the threads hardly ran: {line}");
    let st = stats(&w.join("ckpt"));
    assert_eq!(
        st.iter().filter(|r| r["state"] == "continue").count() as u64,
        checkpoints,
        "{st:?}"
    );
}

// ---------------------------------------------------------------------------
// 7. `run` refuses a program LD_PRELOAD cannot reach, instead of running it
//    unprotected.

#[test]
fn run_refuses_a_statically_linked_program() {
    let work = tmpdir();
    let w = work.path();
    let src = w.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let prog = w.join("static-prog");
    let built = Command::new("cc")
        .arg("-static")
        .arg(&src)
        .arg("-o")
        .arg(&prog)
        .output();
    if !built.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: `cc -static` does not work here (no libc.a)");
        return;
    }
    let out = Command::new(selfckpt())
        .arg("run")
        .arg("--dir")
        .arg(w.join("ckpt"))
        .arg("--")
        .arg(&prog)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("statically linked"), "{err}");
}

/// A checkpoint request that arrives the moment `run` has become the
/// program, before its loader has run the library's constructor, waits for
/// the handlers instead of killing the program (SIGUSR1's default action).
#[test]
fn a_signal_sent_right_after_run_starts_checkpoints_instead_of_killing() {
    let work = tmpdir();
    let Some(tool) = awk_tool(work.path()) else {
        return;
    };
    for round in 0..5 {
        let dir = work.path().join(format!("early{round}"));
        let out = work.path().join(format!("early{round}.txt"));
        // The loader's debug output (to a file) makes the window between
        // exec and the constructor wide enough to hit every time.
        let mut cmd = run_cmd(&dir, &tool, &[]);
        cmd.env("LD_DEBUG", "all")
            .env("LD_DEBUG_OUTPUT", work.path().join(format!("ld{round}")));
        let mut child = spawn_to(&mut cmd, &out);
        let exe = format!("/proc/{}/exe", child.id());
        let me = std::fs::canonicalize(selfckpt()).unwrap();
        wait_for("run to exec the program", 30, || {
            std::fs::read_link(&exe).is_ok_and(|p| p != me)
        });
        // SAFETY: signalling our own child, as early as we can.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        wait_for("an image, or the program's end", 60, || {
            !images(&dir).is_empty() || !alive(&mut child)
        });
        assert!(
            alive(&mut child),
            "round {round}: the early signal killed the program: {:?}",
            child.wait()
        );
        kill9(child);
    }
}
