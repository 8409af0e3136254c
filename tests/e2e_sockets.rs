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
    // The checkpoint's stats line follows the image.
    wait_for("the checkpoint's stats.jsonl line", 30, || {
        std::fs::read_to_string(dir.join("stats.jsonl")).is_ok_and(|t| t.ends_with('\n'))
    });
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
    // A daemon outside the process (as syslog's /dev/log) the program's
    // datagram socket is connected to: it gets "before", then "after".
    let daemon_path = tmp.path().join("daemon.sock");
    let daemon = std::os::unix::net::UnixDatagram::bind(&daemon_path).unwrap();
    daemon
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let heard = || {
        let mut b = [0u8; 16];
        let got: Vec<String> = (0..2)
            .map(|_| {
                let n = daemon.recv(&mut b).unwrap();
                String::from_utf8_lossy(&b[..n]).into_owned()
            })
            .collect();
        assert_eq!(got, ["before", "after"]);
    };
    let dpath = daemon_path.to_str().unwrap();
    let reference = tmp.path().join("ref");
    let ref_dir = tmp.path().join("ref-dir");
    std::fs::create_dir(&ref_dir).unwrap();
    wait_ok(
        spawn_to_file(Command::new(&exe).arg(&ref_dir).arg(dpath), &reference),
        "reference run",
    );
    heard();
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("sockets ok\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let sockdir = tmp.path().join(format!("socks-{tids}"));
        std::fs::create_dir(&sockdir).unwrap();
        let arg = sockdir.to_str().unwrap();
        let (image, first) = image_of(&exe, &dir, tids, &[arg, dpath]);
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
        if tids == "new" {
            // Gone: the listener's socket file is made again.
            std::fs::remove_file(sockdir.join("listener.sock")).unwrap();
        }
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(&mut run_cmd(&exe, &dir, tids, &[arg, dpath]), &second),
            "resumed run",
        );
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        assert!(status.success(), "resumed --tids {tids}: {status}: {err}");
        heard();
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

/// The path of the program's UNIX listener is another file at restart:
/// it is left alone (nothing written, nothing removed), the restart says
/// so and the listener is not bound.
#[test]
fn a_listeners_path_taken_by_another_file_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sockets");
    if !build_c("sockets", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let sockdir = tmp.path().join("socks");
    std::fs::create_dir(&sockdir).unwrap();
    let arg = sockdir.to_str().unwrap();
    let (_, _) = image_of(&exe, &dir, "new", &[arg]);
    let path = sockdir.join("listener.sock");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"precious").unwrap();
    let second = tmp.path().join("second");
    let (_, err) = finish(
        spawn_to_file(&mut run_cmd(&exe, &dir, "new", &[arg]), &second),
        "resumed run",
    );
    assert!(
        err.contains(&format!(
            "{} is now another file, left alone",
            path.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let out = std::fs::read_to_string(&second).unwrap();
    assert!(out.contains("unix listener file: missing"), "{out}{err}");
}

/// A copy restarted while the original still runs: the original's socket
/// file is in use, so the copy leaves it alone (says so, its listener
/// unbound), and the original's listener still answers at it.
#[test]
fn a_copy_restarted_beside_the_original_leaves_its_socket_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sockets");
    if !build_c("sockets", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let dir = tmp.path().join("ck");
    let sockdir = tmp.path().join("socks");
    std::fs::create_dir(&sockdir).unwrap();
    let out = tmp.path().join("original");
    // The original waits long enough for the copy to come and go.
    let mut child = spawn_to_file(
        run_cmd(&exe, &dir, "new", &[sockdir.to_str().unwrap()]).env("SOCKETS_WAIT", "30"),
        &out,
    );
    wait_line(&out, "waiting");
    let image = checkpoint_wait(child.id());
    let path = sockdir.join("listener.sock");
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    // The copy says what it leaves alone before it runs; it is stopped
    // then (it would wait as long as the original).
    let copy_err = tmp.path().join("copy.err");
    let mut copy = Command::new(selfckpt())
        .args(["restart", "--tids", "new"])
        .arg(&image)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&copy_err).unwrap())
        .spawn()
        .unwrap();
    let said = format!("{} is in use by another socket, left alone", path.display());
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&copy_err).is_ok_and(|t| t.contains(&said)) {
        assert!(
            t0.elapsed().as_secs() < 30,
            "the copy did not say it: {}",
            std::fs::read_to_string(&copy_err).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill_tree(&mut copy, libc::SIGKILL);
    // The original's listener is still there, at its file.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    let c = std::os::unix::net::UnixStream::connect(&path);
    assert!(c.is_ok(), "{c:?}");
    kill_tree(&mut child, libc::SIGKILL);
}

/// A TCP server on loopback answering "ping N" lines with "pong N",
/// each connection on its own thread: its address.
fn echo_server() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                for line in BufReader::new(c).lines().map_while(Result::ok) {
                    let reply = line.replace("ping", "pong");
                    if writeln!(w, "{reply}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_peer_outside_is_named_refused_and_its_stand_in_is_a_dropped_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sock_outside");
    if !build_c("sock_outside", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let addr = echo_server();
    let daemon_path = tmp.path().join("daemon.sock");
    let daemon = std::os::unix::net::UnixListener::bind(&daemon_path).unwrap();
    // The daemon accepts (a connection it has not accepted yet is named
    // so: "or not accepted yet").
    let accepted = std::thread::spawn(move || daemon.accept().map(|(s, _)| s));
    let port = addr.port().to_string();
    let dpath = daemon_path.to_str().unwrap();
    let dir = tmp.path().join("ck");
    let (image, _) = image_of(&exe, &dir, "new", &[&port, dpath]);
    drop(accepted.join().unwrap());
    let j = inspect(&image);
    let named: Vec<&str> = j["not_restorable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // The TCP connection with both ends in the process comes back.
    assert_eq!(named.len(), 2, "{j}");
    let tcp = named
        .iter()
        .find(|t| t.contains(&format!("-> 127.0.0.1:{port} ")))
        .unwrap();
    assert!(
        tcp.contains(&format!("-> 127.0.0.1:{port} (peer outside the process)"))
            && tcp.starts_with("fd 3 socket TCP 127.0.0.1:"),
        "{tcp}"
    );
    let unix = named.iter().find(|t| t.contains("UNIX")).unwrap();
    assert!(
        unix.contains(&format!(
            "socket UNIX stream -> {dpath} (peer outside the process)"
        )),
        "{unix}"
    );
    assert!(inspect_text(&image).contains(tcp), "text inspect names it");
    let stats = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap();
    assert!(
        stats
            .lines()
            .any(|l| l.contains("not_restorable") && l.contains(tcp)),
        "stats.jsonl does not name it: {stats}"
    );
    // Refused by default, the program not run.
    let err = restart_refused(tmp.path(), &image);
    assert!(
        err.contains("restart refused: not restorable") && err.contains(tcp),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("refused")).unwrap(),
        "",
        "the program ran"
    );
    // With the stand-ins: dropped connections.
    for tids in ["exact", "new"] {
        let out = tmp.path().join(format!("stand-in-{tids}"));
        let (status, err) = finish(
            spawn_to_file(
                Command::new(selfckpt())
                    .args(["restart", "--unrestorable=socket", "--tids", tids])
                    .arg(&image),
                &out,
            ),
            "restart with stand-ins",
        );
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        assert!(status.success(), "--tids {tids}: {err}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "tcp: family inet type 1\n\
             tcp: read: ECONNRESET\n\
             tcp: read: 0 (end of file)\n\
             tcp: write: EPIPE\n\
             unix: family unix type 1\n\
             unix: read: 0 (end of file)\n\
             unix: read: 0 (end of file)\n\
             unix: write: EPIPE\n\
             tcp pair: family inet type 1\n\
             tcp pair: read: EAGAIN\n\
             tcp pair: read: EAGAIN\n\
             tcp pair: write: 1\n\
             outside ok\n",
            "--tids {tids}: {err}"
        );
    }
}

/// examples/reconnect.rs: a client whose connection to a server is
/// dropped by the restart (`--unrestorable=socket`) connects again in its
/// `on_restart` hook and goes on: its output is an uninterrupted run's.
#[test]
fn the_on_restart_hook_reconnects_a_dropped_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = echo_server().to_string();
    let exe = example("reconnect");
    let reference = tmp.path().join("ref");
    wait_ok(
        spawn_to_file(
            Command::new(&exe).arg(tmp.path().join("ref-ck")).arg(&addr),
            &reference,
        ),
        "reference run",
    );
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("pong 9\ndone\n"), "{want}");
    for tids in ["exact", "new"] {
        let dir = tmp.path().join(format!("ck-{tids}"));
        let first = tmp.path().join(format!("first-{tids}"));
        let mut child = spawn_to_file(Command::new(&exe).arg(&dir).arg(&addr), &first);
        wait_line(&first, "pong 3");
        kill(&child, libc::SIGUSR1);
        let image = wait_new_image(&dir, 0);
        kill_tree(&mut child, libc::SIGKILL);
        let offset = fd_offset(&image, 1);
        let second = tmp.path().join(format!("second-{tids}"));
        let (status, err) = finish(
            spawn_to_file(
                Command::new(selfckpt())
                    .args(["restart", "--unrestorable=socket", "--tids", tids])
                    .arg(&image),
                &second,
            ),
            "restart",
        );
        if tids == "exact" && err.contains("exact process and thread ids are not possible here") {
            eprintln!("skipped: exact ids on this system: {err}");
            continue;
        }
        assert!(status.success(), "--tids {tids}: {err}");
        assert!(err.contains("reconnect: connected again"), "{err}");
        let first = std::fs::read_to_string(&first).unwrap();
        let second = std::fs::read_to_string(&second).unwrap();
        assert_eq!(
            format!("{}{second}", &first[..offset]),
            want,
            "--tids {tids}: {err}"
        );
    }
}

/// Threads blocked in `accept`, `connect` and `read` on sockets, each
/// treating EINTR or an early return as fatal (issue 13): two
/// `selfckpt checkpoint PID` while they wait must not show; the output
/// equals an uninterrupted run's.
#[test]
fn socket_calls_do_not_see_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("sock_eintr");
    if !build_c("sock_eintr", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let ref_dir = tmp.path().join("ref-socks");
    std::fs::create_dir(&ref_dir).unwrap();
    let reference = tmp.path().join("ref");
    // The uninterrupted run goes on meanwhile.
    let ref_child = spawn_to_file(Command::new(&exe).arg(&ref_dir).arg("3"), &reference);
    let socks = tmp.path().join("socks");
    std::fs::create_dir(&socks).unwrap();
    let out = tmp.path().join("out");
    let child = spawn_to_file(
        &mut selfckpt_run(
            &tmp.path().join("ck"),
            &exe,
            &[socks.to_str().unwrap(), "3"],
        ),
        &out,
    );
    wait_line(&out, "ready");
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(random_ms(100, 500)));
        checkpoint_wait(child.id());
    }
    let err = wait_ok(child, "program blocked in socket calls");
    wait_ok(ref_child, "reference run");
    let want = std::fs::read_to_string(&reference).unwrap();
    assert!(want.ends_with("ok read\nsock_eintr ok\n"), "{want}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{err}");
}

/// `tests/c/sock_kernel_state.c` built in `tmp` (None where it cannot be).
fn kernel_state_exe(tmp: &std::path::Path) -> Option<std::path::PathBuf> {
    let exe = tmp.join("sock_kernel_state");
    if !build_c("sock_kernel_state", &exe) {
        return None;
    }
    lib("libselfckpt.so");
    Some(exe)
}

/// `exe MODE` under `selfckpt run` into `tmp/ck`, once it printed
/// "waiting"; None (said `skipped: ...`) where its object cannot be made
/// here.
fn kernel_state_running(
    tmp: &std::path::Path,
    exe: &std::path::Path,
    mode: &str,
) -> Option<std::process::Child> {
    let out = tmp.join("out");
    let mut child = spawn_to_file(&mut run_cmd(exe, &tmp.join("ck"), "new", &[mode]), &out);
    wait_for("its first line", 30, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.ends_with('\n'))
    });
    let first = std::fs::read_to_string(&out).unwrap();
    if first.starts_with("skipped") {
        eprintln!("{first}");
        kill_tree(&mut child, libc::SIGKILL);
        return None;
    }
    assert_eq!(first, "waiting\n");
    Some(child)
}

/// A socket with a classic BPF filter attached (CRIU's sock_filter00):
/// the filter would not come back, so the checkpoint names the socket
/// and the restart refuses (it came back without its filter, silently).
#[test]
fn a_socket_with_a_bpf_filter_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = kernel_state_exe(tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("ck");
    let (image, _) = image_of(&exe, &dir, "new", &["filter"]);
    let j = inspect(&image);
    let named = j["not_restorable"].to_string();
    assert!(
        named.contains("fd 3 socket UDP") && named.contains("a BPF socket filter is attached"),
        "{j}"
    );
    let err = restart_refused(tmp.path(), &image);
    assert!(err.contains("a BPF socket filter is attached"), "{err}");
}

/// A packet socket's receive ring mapped into memory (CRIU's
/// packet_sock_mmap) is the memory of a socket, no file: the checkpoint
/// refuses, naming the mapping, instead of writing an image that every
/// restart would call damaged.
#[test]
fn a_mapped_packet_ring_fails_the_checkpoint_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = kernel_state_exe(tmp.path()) else {
        return;
    };
    let Some(mut child) = kernel_state_running(tmp.path(), &exe, "ring") else {
        return;
    };
    let o = Command::new(selfckpt())
        .args([
            "checkpoint",
            &child.id().to_string(),
            "--wait",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    kill_tree(&mut child, libc::SIGKILL);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("special kernel mapping") && err.contains("packet socket's ring"),
        "{err}"
    );
}

/// Signal-driven I/O on a socket (`O_ASYNC`, an `F_SETOWN` owner, an
/// `F_SETSIG` signal; CRIU's file_fown does it on pipes a tree shares):
/// a restart would make the socket again without them, and the program
/// would wait for a signal that never comes. Named, and refused.
#[test]
fn signal_driven_io_on_a_socket_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = kernel_state_exe(tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("ck");
    let (image, _) = image_of(&exe, &dir, "new", &["async"]);
    let j = inspect(&image);
    let named = j["not_restorable"].to_string();
    assert!(
        named.contains("fd 3 signal-driven I/O (O_ASYNC, owner ") && named.contains("signal 29"),
        "{j}"
    );
    assert!(!named.contains("fd 4"), "the other end has no owner: {j}");
    let err = restart_refused(tmp.path(), &image);
    assert!(err.contains("--unrestorable=fown"), "{err}");
}

/// A datagram queued to a bound UNIX socket from a sender with a name
/// (CRIU's socket_snd_addr): the restart queues it again from a socket
/// of no name, so the checkpoint names it and the restart refuses (its
/// recvfrom address came back empty, silently).
#[test]
fn a_datagram_from_a_named_sender_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = kernel_state_exe(tmp.path()) else {
        return;
    };
    let dir = tmp.path().join("ck");
    let (image, _) = image_of(&exe, &dir, "new", &["sender"]);
    let j = inspect(&image);
    let named = j["not_restorable"].to_string();
    assert!(
        named.contains("datagrams from named senders are queued"),
        "{j}"
    );
    let err = restart_refused(tmp.path(), &image);
    assert!(err.contains("--unrestorable=socket"), "{err}");
}

/// A `/dev/net/tun` descriptor attached to an interface (CRIU's tun):
/// reopening the path gives an unattached one, so the checkpoint names
/// it and the restart refuses.
#[test]
fn an_attached_tun_device_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(exe) = kernel_state_exe(tmp.path()) else {
        return;
    };
    let Some(mut child) = kernel_state_running(tmp.path(), &exe, "tun") else {
        return;
    };
    let image = checkpoint_wait(child.id());
    kill_tree(&mut child, libc::SIGKILL);
    let j = inspect(&image);
    let named = j["not_restorable"].to_string();
    assert!(
        named.contains("fd 3 /dev/net/tun: a device whose open descriptor holds state"),
        "{j}"
    );
    let err = restart_refused(tmp.path(), &image);
    assert!(err.contains("/dev/net/tun"), "{err}");
}

/// Whether this test may put a TCP socket in repair mode (TCP_REPAIR:
/// CAP_NET_ADMIN), which making a closed connection again needs.
fn repair_allowed() -> bool {
    // SAFETY: socket(2), then setsockopt reading one int, then close.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let on: libc::c_int = 1;
        let ok = libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            19, // TCP_REPAIR
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0;
        libc::close(fd);
        ok
    }
}

/// TCP connections that are over while the program holds them (CRIU's
/// socket-tcp-closed; `tests/c/tcp_closed.c`): both ends here shut, one
/// reset by its peer, a fresh socket shut for reading; and UDP sockets
/// shut for writing and for reading (socket_udp_shutdown: a send on the
/// first came back possible). They come back as
/// they were: reading end of file, writing EPIPE, the same poll events,
/// own and peer's addresses (they came back as fresh sockets, which read
/// ENOTCONN, silently). One whose error the program has not read yet is
/// named at checkpoint time and refused.
#[test]
fn closed_tcp_connections_come_back_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tcp_closed");
    if !build_c("tcp_closed", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(want.ends_with("tcp_closed ok\n"), "{want}");
    // What a closed connection is to a program: the check below is only
    // as good as these lines.
    assert!(
        want.contains("client: state 7 own address same peer same getpeername -1 ENOTCONN poll 0x2015 error none read 0  write -1 EPIPE"),
        "{want}"
    );
    assert!(
        want.contains("fresh: state 7 own address same peer none getpeername -1 ENOTCONN poll 0x2015 error none read 0 "),
        "{want}"
    );
    assert!(
        want.contains("udp shut for writing: poll 0x4 send -1 EPIPE\n"),
        "{want}"
    );
    if !repair_allowed() {
        eprintln!("skipped: no CAP_NET_ADMIN here to make closed TCP connections again");
        return;
    }
    let (got, err) = resumed(&exe, &tmp.path().join("ck"), "new", &[], |image| {
        let text = inspect_text(image);
        let refused = &inspect(image)["not_restorable"];
        assert_eq!(refused.as_array().unwrap().len(), 0, "{refused}");
        assert_eq!(text.matches("(closed connection)").count(), 3, "{text}");
    })
    .unwrap();
    assert_eq!(got, want, "resumed output differs; stderr: {err}");
    assert!(!err.contains("socket fd"), "{err}");

    // The reset's error not read yet: named, and refused.
    let dir = tmp.path().join("ck-unread");
    let (image, _) = image_of(&exe, &dir, "new", &["unread"]);
    let text = inspect_text(&image);
    assert!(
        text.contains("with an error the program has not read yet"),
        "{text}"
    );
    let err = restart_refused(tmp.path(), &image);
    assert!(err.contains("has not read yet"), "{err}");
}

/// Multicast receivers (`tests/c/multicast.c`): a UDP socket that joined
/// two groups on the loopback interface (one by address, one by index
/// with a source blocked), one that joined none, an IPv6 one, and a
/// sender whose `IP_MULTICAST_IF` is the loopback. After the restart
/// each receives what it received before, the blocked source is still
/// blocked (they came back as sockets that had joined nothing, which
/// wait for datagrams that no longer reach them: silently).
#[test]
fn multicast_groups_are_joined_again() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("multicast");
    if !build_c("multicast", &exe) {
        return;
    }
    lib("libselfckpt.so");
    let want = reference(&exe, &[], &tmp.path().join("ref"));
    assert!(want.ends_with("multicast ok\n"), "{want}");
    // What the check below rests on: a member receives, a socket that
    // joined nothing does not.
    assert!(
        want.contains("member of both: [to group 1] [to group 2]\nmember of none: nothing\n"),
        "{want}"
    );
    assert!(
        want.contains("member of both 239.255.42.2: member, exclude 10.9.8.7\n"),
        "{want}"
    );
    let (got, err) = resumed(&exe, &tmp.path().join("ck"), "new", &[], |image| {
        let text = inspect_text(image);
        assert!(
            text.contains("multicast 239.255.42.2 on 1 (exclude 10.9.8.7)")
                && text.contains("multicast 239.255.42.1 on 1"),
            "{text}"
        );
        assert!(text.contains("IP_MULTICAST_IF=127.0.0.1"), "{text}");
        let refused = &inspect(image)["not_restorable"];
        assert_eq!(refused.as_array().unwrap().len(), 0, "{refused}");
    })
    .unwrap();
    assert_eq!(got, want, "resumed output differs; stderr: {err}");
}
