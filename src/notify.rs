//! The outcome of each checkpoint, told to whoever waits for it
//! (`selfckpt checkpoint --wait`) by a channel that does not need the
//! image directory: a datagram to the abstract Unix socket
//! `selfckpt-wait-PID` (PID as the program sees itself), carrying the same
//! JSON line as `stats.jsonl`.
//!
//! The waiter binds that name before it sends the signal and believes only
//! datagrams whose kernel-attached credentials (`SO_PASSCRED`) name the
//! process it signalled, or one of its descendants, and its user.
//!
//! Must never: block, fail a checkpoint, or hold a descriptor beyond the
//! send (no one listening is the normal case).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The abstract socket name for a process that sees itself as `pid`.
pub fn name(pid: u32) -> String {
    format!("selfckpt-wait-{pid}")
}

/// The waiter's address for this process (made ahead when the send must
/// not allocate).
pub fn address() -> Option<SocketAddr> {
    SocketAddr::from_abstract_name(name(crate::capture::sys::getpid())).ok()
}

/// Sends `line` to the waiter of this process, if there is one.
pub fn send(line: &[u8]) {
    if let Some(addr) = address() {
        send_to(&addr, line);
    }
}

/// Sends `line` to `addr`. Does not allocate (socket, sendto, close).
pub fn send_to(addr: &SocketAddr, line: &[u8]) {
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.set_nonblocking(true);
        let _ = s.send_to_addr(line, addr);
    }
}

/// A waiter's end: one socket per name the program may use.
pub struct Listener {
    socks: Vec<std::os::fd::OwnedFd>,
}

/// One datagram with the sender's credentials.
pub struct Message {
    pub pid: i32,
    pub uid: u32,
    pub bytes: Vec<u8>,
}

impl Listener {
    /// Binds `selfckpt-wait-P` for each P (names already taken are
    /// skipped: then only `stats.jsonl` tells).
    pub fn bind(pids: &[i64]) -> Listener {
        use nix::sys::socket::{
            bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
        };
        let mut socks = Vec::new();
        for &p in pids {
            let Ok(fd) = socket(
                AddressFamily::Unix,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            ) else {
                continue;
            };
            let Ok(addr) = UnixAddr::new_abstract(name(p as u32).as_bytes()) else {
                continue;
            };
            if setsockopt(&fd, sockopt::PassCred, &true).is_ok()
                && bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).is_ok()
            {
                socks.push(fd);
            }
        }
        Listener { socks }
    }

    /// Every datagram waiting now.
    pub fn drain(&self) -> Vec<Message> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        let mut out = Vec::new();
        for fd in &self.socks {
            loop {
                let mut buf = vec![0u8; 64 << 10];
                let mut cmsg = nix::cmsg_space!(libc::ucred);
                let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let Ok(msg) =
                    recvmsg::<UnixAddr>(raw, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                else {
                    break;
                };
                let n = msg.bytes;
                let cred = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmCredentials(c) => Some((c.pid(), c.uid())),
                        _ => None,
                    })
                });
                if let Some((pid, uid)) = cred {
                    buf.truncate(n);
                    out.push(Message {
                        pid,
                        uid,
                        bytes: buf,
                    });
                }
            }
        }
        out
    }
}
