//! What the kernel tells of one socket through sock_diag netlink
//! (`NETLINK_SOCK_DIAG`): of a UNIX socket (`unix_diag`) its peer's
//! inode, state, shutdown bits, listen backlog and the inode of its
//! socket file; of an inet one (`inet_diag`) its shutdown bits; the facts
//! getsockopt does not give.
//!
//! Runs while the program's threads are suspended: one netlink socket,
//! one request and its replies into a fixed buffer on the stack; it must
//! never allocate.

use crate::capture::sys::{Errno, RawFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// The kernel's `TCP_LISTEN` state of a socket.
pub const STATE_LISTEN: u8 = 10;

/// One UNIX socket as unix_diag shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// The kernel's TCP-like state (1 established, 7 close, 10 listen).
    pub state: u8,
    /// The peer's inode, 0 for none.
    pub peer: u64,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    pub shutdown: u8,
    /// A listener's backlog (`sk_max_ack_backlog`), else 0.
    pub backlog: u32,
    /// A listener's pending connections, else 0.
    pub pending: u32,
    /// The socket file of a path-bound socket: (inode, device as
    /// `st_dev`), zeros for none.
    pub vfs: (u64, u64),
}

/// A netlink socket to sock_diag (closed when dropped). No allocation.
pub fn diag_socket() -> Result<RawFd, Errno> {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    Ok(RawFd::from_raw(fd))
}

/// Asks the kernel about the UNIX socket of inode `ino`. No allocation.
pub fn unix(ino: u64) -> Result<UnixDiag, Errno> {
    let fd = diag_socket()?;
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[24..28].copy_from_slice(&(ino as u32).to_ne_bytes());
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
    req[28..32].copy_from_slice(&show.to_ne_bytes());
    req[32..40].copy_from_slice(&[0xff; 8]);
    // SAFETY: sending our request buffer on our netlink socket (to the
    // kernel: no address needed).
    if unsafe { libc::send(fd.raw(), req.as_ptr().cast(), req.len(), 0) } != req.len() as isize {
        return Err(Errno::last());
    }
    let mut buf = [0u8; 2048];
    // SAFETY: receiving into our buffer.
    let n = unsafe { libc::recv(fd.raw(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    parse(&buf[..n as usize])
}

const NLMSG_DONE: u16 = 3;
/// `INET_DIAG_SHUTDOWN`: the socket's `sk_shutdown` (u8).
const INET_DIAG_SHUTDOWN: u16 = 8;

/// The shutdown bits (`RCV_SHUTDOWN` 1, `SEND_SHUTDOWN` 2) of the inet
/// socket of inode `ino` (`inet_diag`: the one way to read a datagram
/// socket's write half, which poll does not show), None where the dump
/// does not list it. One dump of the sockets of `family` and `protocol`,
/// read in pieces into a buffer on the stack. No allocation.
pub fn inet_shutdown(family: i32, protocol: i32, ino: u64) -> Result<Option<u8>, Errno> {
    let fd = diag_socket()?;
    // nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states,
    // and an inet_diag_sockid of zeros (a dump matches every socket).
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family as u8;
    req[17] = protocol as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: sending our request buffer on our netlink socket.
    if unsafe { libc::send(fd.raw(), req.as_ptr().cast(), req.len(), 0) } != req.len() as isize {
        return Err(Errno::last());
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: receiving into our buffer.
        let n = unsafe { libc::recv(fd.raw(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return Err(if n < 0 {
                Errno::last()
            } else {
                Errno(libc::EPROTO)
            });
        }
        let b = &buf[..n as usize];
        let mut at = 0;
        while at + 16 <= b.len() {
            let len = (u32_at(b, at) as usize).min(b.len() - at);
            if len < 16 {
                return Err(Errno(libc::EPROTO));
            }
            let m = &b[at..at + len];
            match u16::from_ne_bytes([m[4], m[5]]) {
                NLMSG_DONE => return Ok(None),
                NLMSG_ERROR => {
                    let err = if len >= 20 { u32_at(m, 16) as i32 } else { -1 };
                    return Err(Errno(if err < 0 { -err } else { libc::EPROTO }));
                }
                // inet_diag_msg (72 bytes; its inode at 68), attributes.
                SOCK_DIAG_BY_FAMILY if len >= 88 && u32_at(m, 84) == ino as u32 => {
                    let mut a = 88;
                    while a + 4 <= len {
                        let alen = u16::from_ne_bytes([m[a], m[a + 1]]) as usize;
                        let atype = u16::from_ne_bytes([m[a + 2], m[a + 3]]) & 0x3fff;
                        if alen < 4 || a + alen > len {
                            break;
                        }
                        if atype == INET_DIAG_SHUTDOWN && alen > 4 {
                            return Ok(Some(m[a + 4] & 3));
                        }
                        a += (alen + 3) & !3;
                    }
                    return Ok(Some(0));
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

/// Reads one reply: an error, or a unix_diag_msg and its attributes.
fn parse(b: &[u8]) -> Result<UnixDiag, Errno> {
    if b.len() < 16 {
        return Err(Errno(libc::EPROTO));
    }
    let len = (u32_at(b, 0) as usize).min(b.len());
    let kind = u16::from_ne_bytes([b[4], b[5]]);
    if kind == NLMSG_ERROR {
        let err = if len >= 20 { u32_at(b, 16) as i32 } else { -1 };
        return Err(Errno(if err < 0 { -err } else { libc::EPROTO }));
    }
    if kind != SOCK_DIAG_BY_FAMILY || len < 32 {
        return Err(Errno(libc::EPROTO));
    }
    let mut d = UnixDiag {
        state: b[18],
        ..UnixDiag::default()
    };
    let mut at = 32;
    while at + 4 <= len {
        let alen = u16::from_ne_bytes([b[at], b[at + 1]]) as usize;
        let atype = u16::from_ne_bytes([b[at + 2], b[at + 3]]) & 0x3fff;
        if alen < 4 || at + alen > len {
            break;
        }
        let v = &b[at + 4..at + alen];
        match atype {
            UNIX_DIAG_PEER if v.len() >= 4 => d.peer = u32_at(v, 0) as u64,
            UNIX_DIAG_SHUTDOWN if !v.is_empty() => d.shutdown = v[0],
            UNIX_DIAG_RQLEN if v.len() >= 8 && d.state == STATE_LISTEN => {
                d.pending = u32_at(v, 0);
                d.backlog = u32_at(v, 4);
            }
            UNIX_DIAG_VFS if v.len() >= 8 => {
                // The kernel's dev_t: major << 20 | minor.
                let kdev = u32_at(v, 4) as u64;
                d.vfs = (
                    u32_at(v, 0) as u64,
                    libc::makedev((kdev >> 20) as u32, (kdev & 0xf_ffff) as u32),
                );
            }
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_a_datagram_sockets_shutdown() {
        use std::os::fd::AsRawFd;
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ino = |fd| crate::capture::sys::fstat(fd).unwrap().st_ino;
        // SAFETY: shutting down our test socket's writing half (ENOTCONN:
        // the bit is set all the same).
        unsafe { libc::shutdown(a.as_raw_fd(), libc::SHUT_WR) };
        match inet_shutdown(libc::AF_INET, libc::IPPROTO_UDP, ino(a.as_raw_fd())) {
            Ok(got) => {
                assert_eq!(got, Some(2));
                let other = inet_shutdown(libc::AF_INET, libc::IPPROTO_UDP, ino(b.as_raw_fd()));
                assert_eq!(other.unwrap(), Some(0));
            }
            Err(e) => eprintln!("skipped: no udp_diag here: {e}"),
        }
    }

    #[test]
    fn the_kernel_names_a_socketpairs_peer_and_its_shutdown() {
        let mut sv = [0i32; 2];
        // SAFETY: socketpair writes two descriptors.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) },
            0
        );
        let ino = |fd| crate::capture::sys::fstat(fd).unwrap().st_ino;
        // SAFETY: shutting down our test socket's writing half.
        unsafe { libc::shutdown(sv[0], libc::SHUT_WR) };
        match unix(ino(sv[0])) {
            Ok(d) => {
                assert_eq!(d.peer, ino(sv[1]));
                assert_eq!(d.shutdown, 2);
                assert_eq!(unix(ino(sv[1])).unwrap().shutdown, 1);
            }
            Err(e) => eprintln!("skipped: no unix_diag here: {e}"),
        }
        // SAFETY: closing the test's sockets.
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }
}
