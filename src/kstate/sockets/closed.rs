//! A TCP connection that is over while the program still holds it (role
//! 8, "closed"): both FINs exchanged, or reset, and the socket in state
//! CLOSE with its shutdown bits set. It reads end of file, writes
//! `EPIPE`, polls `IN | OUT | HUP | RDHUP`, and `SO_PEERNAME` still names
//! its peer (getpeername says `ENOTCONN`). A fresh socket, which it came
//! back as before, reads `ENOTCONN` instead: CRIU's socket-tcp-closed.
//!
//! Capture (suspended world: no allocation): the peer's address from
//! `SO_PEERNAME` and the poll events, which also say whether an error
//! waits to be read (`sk_err`; reading it would take it from the program,
//! so it is not read, and the socket is named: its error would not come
//! back).
//!
//! Restore (the restarter, ordinary Rust): the connection is made over
//! again as it ended. In `TCP_REPAIR` mode (CAP_NET_ADMIN) the socket is
//! bound to its address and "connected" to its peer without a packet,
//! then leaves repair mode with a window probe; the peer's host, which
//! has no such connection, answers with a reset, and the socket ends in
//! CLOSE with its peer's address, its shutdown bits and its own port, as
//! the program's did. The reset's error is taken before the program sees
//! the socket. That needs the peer's address to be of this host (the
//! probe never leaves it): the capture names a closed connection to
//! another host, or one whose checkpoint cannot use `TCP_REPAIR`. Must
//! never send a packet to another host.

use super::capture::{getopt, setopt};
use super::inflight::TCP_REPAIR;
use super::restore::{close, forget_time_wait, its_reuseaddr, last, new_socket, sockaddr};
use super::Socket;

/// `SO_PEERNAME` (the same number on every architecture Linux has).
const SO_PEERNAME: i32 = 28;
/// The kernel's `TCP_CLOSE`.
pub const STATE_CLOSE: u8 = 7;

/// The peer of a TCP socket in state CLOSE that was connected (its peer's
/// port is still set), written into `buf`: its length, 0 for none.
/// `local_len` is the socket's own address length (the kernel gives the
/// peer's only into a buffer no longer than it). No allocation.
pub(super) fn peer(fd: i32, local_len: usize, buf: &mut [u8; 128]) -> usize {
    let want = match local_len {
        16 | 28 => local_len,
        _ => return 0,
    };
    let mut len = want as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_PEERNAME,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let port = u16::from_ne_bytes([buf[2], buf[3]]);
    if r != 0 || len as usize != want || port == 0 {
        return 0;
    }
    want
}

/// The poll events of `fd` now (0 when poll fails). No allocation.
pub(super) fn events(fd: i32) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll on one pollfd on the stack, no waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } == 1 {
        p.revents
    } else {
        0
    }
}

/// Whether this process may put a TCP socket in repair mode (a probe
/// socket, closed again). No allocation.
pub(super) fn repair_allowed() -> bool {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    let ok = setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1) == 0;
    // SAFETY: closing the probe (in repair mode: no packet).
    unsafe { libc::close(fd) };
    ok
}

/// A TCP socket's state (`TCP_INFO`), None where it has none.
fn state(fd: i32) -> Option<u8> {
    super::capture::tcp_state(fd).map(|(state, _)| state)
}

/// The closed connection `s` made again (see the header), above `above`.
/// Where it cannot be (no CAP_NET_ADMIN at restart, no reset came), a
/// fresh socket bound to its address and shut both ways stands in (it
/// reads end of file and writes `EPIPE` as the closed one did, but has no
/// peer's address), said in `warn`.
pub(super) fn make(s: &Socket, above: i32, warn: &mut Vec<String>) -> Result<i32, String> {
    let fd = new_socket(s, above)?;
    match over_again(fd, s) {
        Ok(()) => {
            its_reuseaddr(fd, s);
            Ok(fd)
        }
        Err(e) => {
            // Out of repair mode without a packet: a socket in repair
            // mode closes silently.
            close(fd);
            warn.push(format!(
                "socket fd {}: the closed TCP connection cannot be made again as it was ({e}); a socket shut both ways, without its peer's address, stands in",
                s.fd
            ));
            let fd = new_socket(s, above)?;
            let (a, n) = sockaddr(&s.local);
            setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            // SAFETY: bind reads `n` bytes of the address.
            unsafe { libc::bind(fd, (&a as *const libc::sockaddr_storage).cast(), n) };
            its_reuseaddr(fd, s);
            // SAFETY: shutdown on our new socket (ENOTCONN: the bits are
            // set all the same).
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            Ok(fd)
        }
    }
}

/// Repair-mode connect of `fd` from `s.local` to `s.remote`, then the
/// reset that ends it (see the header). On error `fd` is still in repair
/// mode (closing it sends nothing).
fn over_again(fd: i32, s: &Socket) -> Result<(), String> {
    if setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1) != 0 {
        return Err(last("no TCP_REPAIR"));
    }
    // A TIME_WAIT left of the very connection would take the probe.
    forget_time_wait(&s.local, &s.remote);
    let (a, n) = sockaddr(&s.local);
    // SAFETY: bind reads `n` bytes of the address (repair mode forces
    // the port's reuse).
    if unsafe { libc::bind(fd, (&a as *const libc::sockaddr_storage).cast(), n) } != 0 {
        return Err(last("cannot bind it to its address"));
    }
    let (a, n) = sockaddr(&s.remote);
    // SAFETY: connect reads `n` bytes of the address; in repair mode it
    // sends nothing.
    if unsafe { libc::connect(fd, (&a as *const libc::sockaddr_storage).cast(), n) } != 0 {
        return Err(last("cannot connect it in repair mode"));
    }
    // Out of repair mode with a window probe: the reset answers it.
    if setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 0) != 0 {
        return Err(last("cannot leave repair mode"));
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll on one pollfd on the stack, at most one second.
    unsafe { libc::poll(&mut p, 1, 1000) };
    if state(fd) != Some(STATE_CLOSE) {
        setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1);
        return Err("no reset answered its probe".to_string());
    }
    // The reset's ECONNRESET is this restart's, not the program's.
    getopt(fd, libc::SOL_SOCKET, libc::SO_ERROR);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over loopback, both ends shut and over: what the
    /// capture reads of it, then the same made again by `make`.
    #[test]
    fn a_closed_connection_is_read_and_made_again() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut a, _) = l.accept().unwrap();
        drop(l);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(a.read(&mut [0u8; 1]).unwrap(), 0);
        a.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
        let t = std::time::Instant::now();
        while state(a.as_raw_fd()) != Some(STATE_CLOSE) && t.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let fd = a.as_raw_fd();
        assert_eq!(state(fd), Some(STATE_CLOSE));
        let mut buf = [0u8; 128];
        assert_eq!(peer(fd, 16, &mut buf), 16);
        let remote = buf[..16].to_vec();
        let ev = events(fd);
        assert_ne!(ev & libc::POLLRDHUP, 0, "{ev:#x}");
        assert_eq!(ev & libc::POLLERR, 0, "{ev:#x}");
        // A fresh socket has no peer.
        let fresh = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(peer(fresh.as_raw_fd(), 16, &mut [0u8; 128]), 0);
        if !repair_allowed() {
            eprintln!("skipped: no CAP_NET_ADMIN for TCP_REPAIR here");
            return;
        }
        let mut local = [0u8; 128];
        let mut n = 128 as libc::socklen_t;
        // SAFETY: getsockname writes at most `n` bytes.
        unsafe { libc::getsockname(fd, local.as_mut_ptr().cast(), &mut n) };
        let s = Socket {
            fd: 9,
            flags: 0,
            ino: 1,
            family: libc::AF_INET as u16,
            stype: libc::SOCK_STREAM as u16,
            protocol: 6,
            role: super::super::ROLE_CLOSED,
            shutdown: 3,
            peer: 0,
            backlog: 0,
            opts: Default::default(),
            vfs: (0, 0),
            local: local[..n as usize].to_vec(),
            remote: remote.clone(),
            queue: Vec::new(),
            file_attrs: None,
            kept: Vec::new(),
            groups: Vec::new(),
        };
        drop((a, c));
        let mut warn = Vec::new();
        let made = make(&s, 100, &mut warn).unwrap();
        assert!(warn.is_empty(), "{warn:?}");
        assert_eq!(state(made), Some(STATE_CLOSE));
        assert_eq!(getopt(made, libc::SOL_SOCKET, libc::SO_ERROR), 0);
        let mut again = [0u8; 128];
        assert_eq!(peer(made, 16, &mut again), 16);
        assert_eq!(again[..16], remote[..]);
        assert_eq!(events(made), ev);
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into `b`.
        assert_eq!(unsafe { libc::read(made, b.as_mut_ptr().cast(), 1) }, 0);
        close(made);
    }
}
