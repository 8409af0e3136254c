//! What the kernel tells of one UNIX socket through sock_diag netlink
//! (`NETLINK_SOCK_DIAG`, `unix_diag`): its peer's inode, state, shutdown
//! bits, listen backlog and the inode of its socket file, the facts
//! getsockopt does not give.
//!
//! Runs while the program's threads are suspended: one netlink socket,
//! one request and one reply into a fixed buffer on the stack; it must
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

/// Asks the kernel about the UNIX socket of inode `ino`. No allocation.
pub fn unix(ino: u64) -> Result<UnixDiag, Errno> {
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
    let fd = RawFd::from_raw(fd);
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
