//! Real programs that could not be checkpointed before issue 13, each
//! checkpointed mid-run by `selfckpt checkpoint PID`, killed and resumed by
//! rerunning the same `selfckpt run` command; the output must be byte for
//! byte an uninterrupted run's:
//!
//! * `xz -T2`: it handles SIGUSR1 itself (its progress line) and its
//!   worker threads block every signal;
//! * Node.js: SIGUSR1 starts its inspector, a helper thread blocks every
//!   signal, and libuv waits in `epoll_wait` on eventfds; and Node with a
//!   worker thread and a child process whose stdio are the socketpairs
//!   libuv makes for `spawn` (a tree whose member's 0-2 are sockets).
//! * a Java virtual machine (HotSpot): some twenty threads (JIT
//!   compilers, garbage collector), its own SIGSEGV, SIGQUIT and SIGUSR2
//!   handlers, gigabytes of reserved address space;
//! * CPython with threads;
//! * a Go program (cgo, so dynamically linked: the only kind LD_PRELOAD
//!   reaches): its runtime sets a handler for every signal, selfckpt's
//!   too (with `EINVAL` it took the raw system call, and no checkpoint
//!   could stop its threads), its goroutines run on stacks too small for
//!   a signal frame, and an HTTP server and client talk over a kept-alive
//!   TCP connection through its epoll netpoller. Restarted twice.
//!
//! Each prints `skipped: <reason>` when the program is not installed.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `prog args` under `selfckpt run`, checkpoints it after `after`,
/// kills it, resumes it, and compares stdout with an uninterrupted run.
fn checkpoint_kill_resume(dir: &Path, prog: &str, args: &[&str], after: Duration) {
    checkpoint_kill_resume_when(dir, prog, args, after, "", |_| true);
}

/// `checkpoint_kill_resume`, the checkpoint taken once `ready(pid)` holds
/// (polled after `after`, for at most a minute; `what` names it): a tree
/// is checkpointed when the process that matters runs.
fn checkpoint_kill_resume_when(
    dir: &Path,
    prog: &str,
    args: &[&str],
    after: Duration,
    what: &str,
    ready: impl Fn(u32) -> bool,
) {
    let reference = dir.join("ref.out");
    wait_ok(
        spawn_to_file(Command::new(prog).args(args), &reference),
        "reference run",
    );
    let want = std::fs::read(&reference).unwrap();
    let ck = dir.join("ck");
    let first = dir.join("first.out");
    let mut child = spawn_to_file(&mut selfckpt_run(&ck, prog, args), &first);
    std::thread::sleep(after);
    let pid = child.id();
    wait_for(what, 60, || ready(pid));
    let image = checkpoint_wait(pid);
    kill_tree(&mut child, libc::SIGKILL);
    let root = if image.is_dir() {
        root_image(&image)
    } else {
        image
    };
    let offset = fd_offset(&root, 1);
    let second = dir.join("second.out");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&ck, prog, args), &second),
        "resumed run",
    );
    let mut got = std::fs::read(&first).unwrap();
    got.truncate(offset);
    got.extend(std::fs::read(&second).unwrap());
    assert!(
        got == want,
        "{prog}: resumed output differs ({} bytes, want {}):\n{}\nwant:\n{}\nstderr: {err}",
        got.len(),
        want.len(),
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn xz_with_two_threads_resumes_exactly() {
    if !have("xz") {
        eprintln!("skipped: xz is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.txt");
    let mut text = String::with_capacity(34 << 20);
    let mut x: u64 = 12345;
    for _ in 0..2_000_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!("{x:016x}\n"));
    }
    std::fs::write(&data, text).unwrap();
    let data = data.to_str().unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "xz",
        &["-T2", "-6", "--block-size=1MiB", "-c", data],
        Duration::from_millis(800),
    );
}

#[test]
fn node_resumes_exactly() {
    if !have("node") {
        eprintln!("skipped: node is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("count.js");
    std::fs::write(
        &script,
        "const crypto = require('crypto');\n\
         let h = Buffer.from('seed'); let i = 0; const steps = 300;\n\
         function step() {\n\
           for (let k = 0; k < 200; k++) h = crypto.createHash('sha256').update(h).digest();\n\
           i++;\n\
           if (i % 10 === 0) console.log(i, h.toString('hex').slice(0, 16));\n\
           if (i < steps) setTimeout(step, 10); else console.log('node done');\n\
         }\n\
         step();\n",
    )
    .unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "node",
        &[script.to_str().unwrap()],
        Duration::from_millis(1500),
    );
}

#[test]
fn java_resumes_exactly() {
    if !have("javac") || !have("java") {
        eprintln!("skipped: no Java compiler (javac) or java is installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Count.java"),
        "public class Count {\n\
           public static void main(String[] a) throws Exception {\n\
             long sum = 0;\n\
             java.util.HashMap<Integer, Long> m = new java.util.HashMap<>();\n\
             for (int i = 0; i < 30; i++) {\n\
               for (int j = 0; j < 200000; j++) { m.put(j % 5000, (long) j * i); sum += m.get(j % 5000); }\n\
               System.out.println(\"step \" + i + \" \" + sum);\n\
               Thread.sleep(100);\n\
             }\n\
             System.out.println(\"java done \" + sum);\n\
           }\n\
         }\n",
    )
    .unwrap();
    let o = Command::new("javac")
        .arg("Count.java")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cp = tmp.path().to_str().unwrap().to_string();
    checkpoint_kill_resume(
        tmp.path(),
        "java",
        &["-cp", &cp, "Count"],
        Duration::from_millis(2000),
    );
}

#[test]
fn python_with_threads_resumes_exactly() {
    if !have("python3") {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("count.py");
    std::fs::write(
        &script,
        "import hashlib, threading, time\n\
         h = hashlib.sha256(); data = {}\n\
         def work(k):\n\
         \x20   for i in range(20000): data[(k, i % 100)] = i\n\
         for r in range(25):\n\
         \x20   t = [threading.Thread(target=work, args=(k,)) for k in range(3)]\n\
         \x20   [x.start() for x in t]; [x.join() for x in t]\n\
         \x20   h.update(str(r).encode() * 1000)\n\
         \x20   print('step', r, h.hexdigest()[:16], len(data), flush=True)\n\
         \x20   time.sleep(0.1)\n\
         print('python done')\n",
    )
    .unwrap();
    checkpoint_kill_resume(
        tmp.path(),
        "python3",
        &[script.to_str().unwrap()],
        Duration::from_millis(1200),
    );
}

#[test]
fn go_http_server_and_client_resume_exactly_twice() {
    if !have("go") {
        eprintln!("skipped: go is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("go.mod"), "module selfckpttest\ngo 1.19\n").unwrap();
    std::fs::write(
        src.join("main.go"),
        "package main\n\
         import (\"crypto/sha256\"; \"fmt\"; \"io\"; \"net\"; \"net/http\"; \"sync\"; \"time\")\n\
         func main() {\n\
         \tln, err := net.Listen(\"tcp\", \"127.0.0.1:0\")\n\
         \tif err != nil { panic(err) }\n\
         \tcount := 0\n\
         \tmux := http.NewServeMux()\n\
         \tmux.HandleFunc(\"/n\", func(w http.ResponseWriter, r *http.Request) {\n\
         \t\tcount++; fmt.Fprintf(w, \"hit %d %s\", count, r.URL.Query().Get(\"i\"))\n\
         \t})\n\
         \tgo http.Serve(ln, mux)\n\
         \tc := &http.Client{Timeout: 10 * time.Second}\n\
         \tfor i := 0; i < 90; i++ {\n\
         \t\tvar wg sync.WaitGroup; var mu sync.Mutex; sum := 0\n\
         \t\tfor g := 0; g < 4; g++ {\n\
         \t\t\twg.Add(1)\n\
         \t\t\tgo func(g int) { defer wg.Done(); x := sha256.Sum256([]byte{byte(i), byte(g)}); for k := 0; k < 2000; k++ { x = sha256.Sum256(x[:]) }; mu.Lock(); sum += int(x[0]); mu.Unlock() }(g)\n\
         \t\t}\n\
         \t\twg.Wait()\n\
         \t\tresp, err := c.Get(fmt.Sprintf(\"http://%s/n?i=%d\", ln.Addr(), i))\n\
         \t\tif err != nil { fmt.Println(\"error\", err); continue }\n\
         \t\tb, _ := io.ReadAll(resp.Body); resp.Body.Close()\n\
         \t\tfmt.Println(string(b), sum)\n\
         \t\ttime.Sleep(30 * time.Millisecond)\n\
         \t}\n\
         \tfmt.Println(\"go done\")\n\
         }\n",
    )
    .unwrap();
    let exe = tmp.path().join("gohttp");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "1")
        .env("GOCACHE", tmp.path().join("cache"))
        .env("GOPATH", tmp.path().join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let elf = std::fs::read(&exe).unwrap();
    if !elf.windows(b"ld-linux".len()).any(|w| w == b"ld-linux") {
        eprintln!("skipped: go built a statically linked program here (no cgo), which LD_PRELOAD cannot reach");
        return;
    }
    let exe = exe.to_str().unwrap();
    let reference = tmp.path().join("ref.out");
    wait_ok(
        spawn_to_file(&mut Command::new(exe), &reference),
        "reference run",
    );
    let want = std::fs::read(&reference).unwrap();
    assert!(want.ends_with(b"go done\n"));
    let ck = tmp.path().join("ck");
    let mut got = Vec::new();
    for round in 0..2 {
        let out = tmp.path().join(format!("run{round}.out"));
        let mut child = spawn_to_file(&mut selfckpt_run(&ck, exe, &[]), &out);
        wait_for("a few responses", 60, || {
            std::fs::read(&out).is_ok_and(|b| b.len() >= 60)
        });
        let image = checkpoint_wait(child.id());
        kill_tree(&mut child, libc::SIGKILL);
        let mut mine = std::fs::read(&out).unwrap();
        mine.truncate(fd_offset(&image, 1));
        got.extend(mine);
    }
    let last = tmp.path().join("last.out");
    let err = wait_ok(
        spawn_to_file(&mut selfckpt_run(&ck, exe, &[]), &last),
        "resumed run",
    );
    got.extend(std::fs::read(&last).unwrap());
    assert!(
        got == want,
        "go: resumed output differs:\n{}\nwant:\n{}\nstderr: {err}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn node_with_a_worker_and_a_child_on_socketpair_stdio_resumes_exactly() {
    if !have("node") {
        eprintln!("skipped: node is not installed");
        return;
    }
    lib("libselfckpt.so");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("spawn.js");
    std::fs::write(
        &script,
        "const { Worker, isMainThread, parentPort } = require('worker_threads');\n\
         const { spawn } = require('child_process');\n\
         const crypto = require('crypto');\n\
         if (isMainThread) {\n\
           const w = new Worker(__filename);\n\
           let n = 0;\n\
           w.on('message', (m) => {\n\
             if (++n % 5 === 0) console.log('worker says', m);\n\
             if (n === 20) {\n\
               w.terminate();\n\
               const c = spawn('sh', ['-c', 'while read l; do echo \"child got $l\"; sleep 0.1; done; echo child end']);\n\
               c.stdout.on('data', (d) => process.stdout.write(d));\n\
               let i = 0;\n\
               const feed = () => { if (i < 25) { c.stdin.write('line ' + i++ + '\\n'); setTimeout(feed, 100); } else c.stdin.end(); };\n\
               feed();\n\
               c.on('exit', (code) => console.log('child exit', code, 'node done'));\n\
             }\n\
           });\n\
         } else {\n\
           let h = Buffer.from('seed'); let i = 0;\n\
           const tick = () => {\n\
             for (let k = 0; k < 2000; k++) h = crypto.createHash('sha256').update(h).digest();\n\
             parentPort.postMessage(i++ + ' ' + h.toString('hex').slice(0, 12));\n\
             setTimeout(tick, 20);\n\
           };\n\
           tick();\n\
         }\n",
    )
    .unwrap();
    let first = tmp.path().join("first.out");
    checkpoint_kill_resume_when(
        tmp.path(),
        "node",
        &[script.to_str().unwrap()],
        Duration::from_millis(300),
        "the child to have answered",
        |_| std::fs::read_to_string(&first).is_ok_and(|s| s.contains("child got line 3")),
    );
}
