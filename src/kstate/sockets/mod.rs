//! Sockets (object list kind 0x0300, format 1.8): what each socket
//! descriptor is (family, type, its role: one end of a connection whose
//! other end the process holds, a listener, a bound socket, a fresh one,
//! a connection not accepted yet, one connected to a peer outside the
//! process, or a TCP connection that is over: `closed.rs`), its addresses, the options that matter and, for UNIX sockets
//! and TCP connections inside the process, the data queued to it. This
//! file holds the record (encode/decode, checks of hostile values, words
//! for `inspect`); `capture.rs` and `restore.rs` the two halves;
//! `inflight.rs` the data in flight of a TCP connection whose peer may be
//! another process of the tree (kept for the tree, which pairs the ends
//! by address and makes the connection again: `make_tcp_connection`).
//!
//! Capture ([`capture::capture`]) runs while the program's threads are
//! suspended: getsockopt, getsockname and getpeername into the stack,
//! unix_diag ([`super::sockdiag`]) for a UNIX socket's peer and shutdown
//! state, `TCP_INFO` for a TCP socket's, and the queued data read with
//! `MSG_PEEK` and `SO_PEEK_OFF` straight into the record buffer (the
//! program's queue keeps it, its peek offset is put back). It must never
//! allocate. What cannot come back (a peer outside the process, data in
//! flight, a family this module does not bring back) is also written as
//! a `NotRestorable` entry of kind `socket`.
//!
//! Restore ([`restore::restore_all`]) runs in the restarter with the
//! descriptors (`Stage::Descriptors`): listeners and bound sockets bound
//! again first (`SO_REUSEADDR` for the bind, the program's value after;
//! a path-bound UNIX socket's file made again only where it is gone or
//! is the program's own, stale, socket file, never over another file),
//! then the pairs (through their listener where they were made through
//! one, else `socketpair`; TCP between their very addresses), each end's
//! queue sent again from the other end (message by message: boundaries
//! kept), shut down as it was, then what connects to a name. A socket
//! whose peer is outside comes back (with `--unrestorable=socket`) as a
//! socket of its family and type that fails as a dropped connection does.

use crate::capture::sys::PathBuf;
use crate::image::codec::{CodecError, Decoder, Encoder};

pub mod capture;
pub mod closed;
pub mod inflight;
pub mod multicast;
pub mod options;
pub mod restore;

pub use capture::capture;
pub use restore::restore_all;

/// What a socket is to the process, and so how it comes back.
pub const ROLE_PAIR: u8 = 0;
pub const ROLE_LISTEN: u8 = 1;
pub const ROLE_BOUND: u8 = 2;
pub const ROLE_FRESH: u8 = 3;
pub const ROLE_OUTSIDE: u8 = 4;
pub const ROLE_HUNG_UP: u8 = 5;
pub const ROLE_OTHER: u8 = 6;
/// Connected to a listener that has not accepted it yet, nothing sent.
pub const ROLE_PENDING: u8 = 7;
/// A TCP connection that is over (state CLOSE, once connected):
/// `closed.rs`.
pub const ROLE_CLOSED: u8 = 8;
const ROLE_NAMES: [&str; 9] = [
    "pair",
    "listening",
    "bound",
    "fresh",
    "peer outside",
    "hung up",
    "other",
    "not accepted yet",
    "closed connection",
];

/// Options read back with getsockopt and set again at restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// As getsockopt says (the kernel's doubled value).
    pub rcvbuf: i32,
    pub sndbuf: i32,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub passcred: bool,
    pub nodelay: bool,
    pub v6only: bool,
}

impl Options {
    const BITS: [&'static str; 6] = [
        "reuseaddr",
        "reuseport",
        "keepalive",
        "passcred",
        "nodelay",
        "v6only",
    ];

    pub(super) fn bits(&self) -> u8 {
        [
            self.reuseaddr,
            self.reuseport,
            self.keepalive,
            self.passcred,
            self.nodelay,
            self.v6only,
        ]
        .iter()
        .enumerate()
        .fold(0, |a, (i, b)| a | ((*b as u8) << i))
    }

    fn from_bits(rcvbuf: i32, sndbuf: i32, b: u8) -> Self {
        let on = |i: u8| b & (1 << i) != 0;
        Options {
            rcvbuf,
            sndbuf,
            reuseaddr: on(0),
            reuseport: on(1),
            keepalive: on(2),
            passcred: on(3),
            nodelay: on(4),
            v6only: on(5),
        }
    }
}

/// One socket descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub fd: i32,
    /// File status flags and `O_CLOEXEC`, as fdinfo shows them.
    pub flags: u32,
    /// The socket's inode: descriptors of one socket share it.
    pub ino: u64,
    pub family: u16,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`, `SOCK_RAW`.
    pub stype: u16,
    pub protocol: u16,
    /// One of the `ROLE_*`.
    pub role: u8,
    /// `RCV_SHUTDOWN` (1), `SEND_SHUTDOWN` (2).
    pub shutdown: u8,
    /// The peer's inode (a UNIX socket), else 0.
    pub peer: u64,
    /// A listener's backlog.
    pub backlog: u32,
    pub opts: Options,
    /// A path-bound UNIX socket's file: (inode, st_dev), zeros for none.
    pub vfs: (u64, u64),
    /// The socket's own address as getsockname gives it (empty: none).
    pub local: Vec<u8>,
    /// The peer's address as getpeername gives it (empty: none).
    pub remote: Vec<u8>,
    /// What is queued to it, one item per message (stream sockets: one
    /// item); kept only on the first descriptor of a socket.
    pub queue: Vec<Vec<u8>>,
    /// A path-bound UNIX socket's file: its mode bits and owner (uid,
    /// gid), which the file bound again gets (None: unknown, an image of
    /// before they were kept).
    pub file_attrs: Option<(u32, u32, u32)>,
    /// The options kept by value (`options.rs`).
    pub kept: Vec<options::Value>,
    /// The multicast groups it has joined (`multicast.rs`).
    pub groups: Vec<multicast::Membership>,
}

impl Socket {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        capture::Head {
            fd: self.fd,
            flags: self.flags,
            ino: self.ino,
            family: self.family,
            stype: self.stype,
            protocol: self.protocol,
            role: self.role,
            shutdown: self.shutdown,
            peer: self.peer,
            backlog: self.backlog,
            opts: self.opts,
            vfs: self.vfs,
        }
        .encode(e)?;
        e.bytes(&self.local)?;
        e.bytes(&self.remote)?;
        e.u32(self.queue.len() as u32)?;
        self.queue.iter().try_for_each(|m| e.bytes(m))?;
        capture::encode_file_attrs(e, self.file_attrs)?;
        options::encode(e, &self.kept)?;
        multicast::encode(e, &self.groups)
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let fd = d.i32()?;
        let flags = d.u32()?;
        let ino = d.u64()?;
        let family = d.u16()?;
        let stype = d.u16()?;
        let protocol = d.u16()?;
        let role = d.u8()?;
        let shutdown = d.u8()?;
        let peer = d.u64()?;
        let backlog = d.u32()?;
        let rcvbuf = d.i32()?;
        let sndbuf = d.i32()?;
        let opts = Options::from_bits(rcvbuf, sndbuf, d.u8()?);
        let vfs = (d.u64()?, d.u64()?);
        let local = d.bytes()?.to_vec();
        let remote = d.bytes()?.to_vec();
        let n = d.count(4)?;
        let queue = (0..n)
            .map(|_| d.bytes().map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        // Trailing, optional: older images end before it.
        let file_attrs = if d.remaining() >= 12 {
            Some((d.u32()?, d.u32()?, d.u32()?)).filter(|a| a.0 != capture::NO_FILE_ATTRS)
        } else {
            None
        };
        // Trailing, optional: older images end before it.
        let kept = if d.remaining() >= 2 {
            options::decode(d)?
        } else {
            Vec::new()
        };
        // Trailing, optional: older images end before it.
        let groups = if d.remaining() >= 2 {
            multicast::decode(d)?
        } else {
            Vec::new()
        };
        Ok(Socket {
            fd,
            flags,
            ino,
            family,
            stype,
            protocol,
            role,
            shutdown,
            peer,
            backlog,
            opts,
            vfs,
            local,
            remote,
            queue,
            file_attrs,
            kept,
            groups,
        })
    }

    /// Values a kernel can have.
    pub fn check(&self) -> Result<(), String> {
        let name = format!("socket fd {}", self.fd);
        // At 0-2 only an end of a UNIX connection, for a tree to pair (the
        // stdio rules decide what a process gets there).
        if self.fd < 0
            || self.fd <= 2
                && !(self.family as i32 == libc::AF_UNIX
                    && self.peer != 0
                    && matches!(self.role, ROLE_PAIR | ROLE_OUTSIDE))
        {
            return Err(format!(
                "{name}: at 0-2 (stdio) only an end of a UNIX connection is kept"
            ));
        }
        if self.role as usize >= ROLE_NAMES.len() {
            return Err(format!("{name}: role {} is none", self.role));
        }
        if self.shutdown > 3 {
            return Err(format!("{name}: shutdown bits {:#x}", self.shutdown));
        }
        if self.local.len() > 128 || self.remote.len() > 128 {
            return Err(format!("{name}: an address longer than 128 bytes"));
        }
        if self.opts.rcvbuf < 0 || self.opts.sndbuf < 0 {
            return Err(format!("{name}: a negative buffer size"));
        }
        // Every type the kernel has (the rarer ones, SOCK_RDM, SOCK_DCCP,
        // SOCK_PACKET, are named unrestorable at checkpoint time).
        if !matches!(
            self.stype as i32,
            libc::SOCK_STREAM
                | libc::SOCK_DGRAM
                | libc::SOCK_SEQPACKET
                | libc::SOCK_RAW
                | libc::SOCK_RDM
                | libc::SOCK_DCCP
                | 10 // SOCK_PACKET (deprecated in libc)
        ) {
            return Err(format!("{name}: type {} is none", self.stype));
        }
        let tcp = matches!(self.family as i32, libc::AF_INET | libc::AF_INET6)
            && self.stype as i32 == libc::SOCK_STREAM;
        if !self.queue.is_empty() && self.family as i32 != libc::AF_UNIX && !tcp {
            return Err(format!("{name}: queued data on a socket not UNIX or TCP"));
        }
        let joins = |g: &multicast::Membership| match self.family as i32 {
            libc::AF_INET => g.family as i32 == libc::AF_INET,
            libc::AF_INET6 => true,
            _ => false,
        };
        if !self.groups.is_empty() && (tcp || !self.groups.iter().all(joins)) {
            return Err(format!("{name}: a multicast group this socket cannot join"));
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let mut t = PathBuf::<512>::new();
        words(&mut t, self.family, self.stype, &self.local, &self.remote);
        let mut s = format!(
            "fd {} socket {} ({})",
            self.fd,
            String::from_utf8_lossy(t.as_bytes()),
            ROLE_NAMES.get(self.role as usize).unwrap_or(&"?")
        );
        if self.role == ROLE_LISTEN {
            s.push_str(&format!(" backlog {}", self.backlog));
        }
        if !self.queue.is_empty() {
            let bytes: usize = self.queue.iter().map(Vec::len).sum();
            s.push_str(&format!(
                " queued {} bytes in {} message(s)",
                bytes,
                self.queue.len()
            ));
        }
        if self.shutdown & 1 != 0 {
            s.push_str(" shut-rd");
        }
        if self.shutdown & 2 != 0 {
            s.push_str(" shut-wr");
        }
        s.push_str(&format!(
            " rcvbuf {} sndbuf {}",
            self.opts.rcvbuf, self.opts.sndbuf
        ));
        let bits = self.opts.bits();
        for (i, w) in Options::BITS.iter().enumerate() {
            if bits & (1 << i) != 0 {
                s.push(' ');
                s.push_str(w);
            }
        }
        s.push_str(&options::describe(
            &self.kept,
            self.family as i32,
            self.stype as i32,
        ));
        s.push_str(&multicast::describe(&self.groups));
        s + &super::eventfd::flag_words(self.flags)
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        let mut t = PathBuf::<512>::new();
        words(&mut t, self.family, self.stype, &self.local, &self.remote);
        serde_json::json!({
            "kind": "socket", "fd": self.fd, "ino": self.ino,
            "what": String::from_utf8_lossy(t.as_bytes()),
            "role": ROLE_NAMES.get(self.role as usize).unwrap_or(&"?"),
            "family": self.family, "type": self.stype, "protocol": self.protocol,
            "peer_ino": self.peer, "backlog": self.backlog, "shutdown": self.shutdown,
            "rcvbuf": self.opts.rcvbuf, "sndbuf": self.opts.sndbuf,
            "reuseaddr": self.opts.reuseaddr, "reuseport": self.opts.reuseport,
            "keepalive": self.opts.keepalive, "passcred": self.opts.passcred,
            "nodelay": self.opts.nodelay, "v6only": self.opts.v6only,
            "nonblock": self.flags as i32 & libc::O_NONBLOCK != 0,
            "queued": self.queue.iter().map(Vec::len).collect::<Vec<_>>(),
            "options": options::json(&self.kept),
            "multicast": multicast::json(&self.groups),
        })
    }
}

/// "UNIX stream @name -> /run/x", "TCP 10.0.0.2:5432 -> 10.0.0.9:80":
/// the socket in words. No allocation.
pub fn words<const N: usize>(
    t: &mut PathBuf<N>,
    family: u16,
    stype: u16,
    local: &[u8],
    remote: &[u8],
) {
    let st = stype as i32;
    let kind: &[u8] = match family as i32 {
        libc::AF_UNIX => b"UNIX",
        libc::AF_INET | libc::AF_INET6 => match st {
            libc::SOCK_STREAM => b"TCP",
            libc::SOCK_DGRAM => b"UDP",
            _ => b"IP",
        },
        libc::AF_NETLINK => b"netlink",
        libc::AF_PACKET => b"packet",
        _ => b"family",
    };
    t.push(kind);
    if !matches!(
        family as i32,
        libc::AF_UNIX | libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_PACKET
    ) {
        t.push(b" ").push_u64(family as u64);
    }
    if family as i32 == libc::AF_INET6 {
        t.push(b"6");
    }
    if family as i32 == libc::AF_UNIX || !matches!(st, libc::SOCK_STREAM | libc::SOCK_DGRAM) {
        t.push(match st {
            libc::SOCK_STREAM => b" stream",
            libc::SOCK_DGRAM => b" dgram",
            libc::SOCK_SEQPACKET => b" seqpacket",
            libc::SOCK_RAW => b" raw",
            _ => b" ?",
        });
    }
    // Unnamed UNIX ends and the kernel's side of netlink say nothing.
    let unnamed = |a: &[u8]| a.len() <= 2 || family as i32 == libc::AF_NETLINK && a == remote;
    if !local.is_empty() && !unnamed(local) {
        t.push(b" ");
        addr(t, local);
    }
    if !remote.is_empty() && !unnamed(remote) {
        t.push(b" -> ");
        addr(t, remote);
    }
}

/// One address in words. No allocation.
fn addr<const N: usize>(t: &mut PathBuf<N>, a: &[u8]) {
    let family = if a.len() >= 2 {
        u16::from_ne_bytes([a[0], a[1]]) as i32
    } else {
        -1
    };
    let port = |a: &[u8]| u16::from_be_bytes([a[2], a[3]]) as u64;
    match family {
        libc::AF_UNIX => {
            let path = &a[2..];
            if path.is_empty() {
                t.push(b"(unnamed)");
            } else if path[0] == 0 {
                t.push(b"@").push(printable(&path[1..]));
            } else {
                let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                t.push(printable(&path[..end]));
            }
        }
        libc::AF_INET if a.len() >= 8 => {
            for (i, b) in a[4..8].iter().enumerate() {
                if i > 0 {
                    t.push(b".");
                }
                t.push_u64(*b as u64);
            }
            t.push(b":").push_u64(port(a));
        }
        libc::AF_INET6 if a.len() >= 24 => {
            t.push(b"[");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let group = |i: usize| u16::from_be_bytes([a[8 + 2 * i], a[9 + 2 * i]]);
            // The longest run of zero groups (two at least) is written "::".
            let (mut zs, mut zl) = (8, 0);
            let mut i = 0;
            while i < 8 {
                let mut j = i;
                while j < 8 && group(j) == 0 {
                    j += 1;
                }
                if j - i > zl && j - i >= 2 {
                    (zs, zl) = (i, j - i);
                }
                i = j + 1;
            }
            let mut i = 0;
            while i < 8 {
                if i == zs {
                    t.push(b"::");
                    i += zl;
                    continue;
                }
                if i > 0 && i != zs + zl {
                    t.push(b":");
                }
                let g = group(i);
                let mut started = false;
                for sh in [12, 8, 4, 0] {
                    let n = ((g >> sh) & 0xf) as usize;
                    if n != 0 || started || sh == 0 {
                        t.push(&HEX[n..n + 1]);
                        started = true;
                    }
                }
                i += 1;
            }
            t.push(b"]:").push_u64(port(a));
        }
        libc::AF_NETLINK if a.len() >= 12 => {
            let pid = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
            let groups = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
            t.push(b"pid ")
                .push_u64(pid as u64)
                .push(b" groups ")
                .push_u64(groups as u64);
        }
        _ => {
            t.push(b"(address)");
        }
    }
}

/// `s` if every byte is printable ASCII, else a word saying it is not.
fn printable(s: &[u8]) -> &[u8] {
    if s.iter().all(|c| (0x20..0x7f).contains(c)) {
        s
    } else {
        b"(unprintable name)"
    }
}

/// The path of a path-bound UNIX address (None: unnamed or abstract).
/// No allocation.
pub(super) fn unix_path(a: &[u8]) -> Option<&[u8]> {
    let p = a.get(2..)?;
    if p.is_empty() || p[0] == 0 {
        return None;
    }
    Some(&p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())])
}

/// Whether an address names something: not unnamed UNIX, not port 0 on
/// the wildcard address.
pub(super) fn is_named(a: &[u8]) -> bool {
    if a.len() < 2 {
        return false;
    }
    match u16::from_ne_bytes([a[0], a[1]]) as i32 {
        libc::AF_UNIX => a.len() > 2,
        libc::AF_INET | libc::AF_INET6 => a.len() >= 4 && (a[2] != 0 || a[3] != 0),
        libc::AF_NETLINK => true,
        _ => a.len() > 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(out: &[u8]) -> Vec<Socket> {
        let mut d = Decoder::new(out);
        let mut v = Vec::new();
        while d.remaining() > 0 {
            let kind = d.u16().unwrap();
            d.u16().unwrap();
            let len = d.u32().unwrap() as usize;
            let mut p = Decoder::new(d.take(len).unwrap());
            if kind == super::super::objects::Kind::Socket as u16 {
                v.push(Socket::decode(&mut p).unwrap());
                p.finish().unwrap();
            }
        }
        v
    }

    fn pair(t: i32) -> [i32; 2] {
        let mut sv = [0i32; 2];
        // SAFETY: socketpair writes two descriptors.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, t, 0, sv.as_mut_ptr()) },
            0
        );
        sv
    }

    fn send(fd: i32, b: &[u8]) {
        // SAFETY: sending from our buffer.
        assert_eq!(
            unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), 0) },
            b.len() as isize
        );
    }

    fn recv(fd: i32) -> Vec<u8> {
        let mut b = [0u8; 256];
        // SAFETY: receiving into our buffer.
        let n = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
        b[..n.max(0) as usize].to_vec()
    }

    #[test]
    fn a_datagram_pair_keeps_its_messages_both_ways_and_the_program_keeps_them_too() {
        let [a, b] = pair(libc::SOCK_SEQPACKET);
        send(a, b"one");
        send(a, b"");
        send(a, b"three");
        send(b, b"back");
        // SAFETY: shutting down the writing half of one end.
        unsafe { libc::shutdown(b, libc::SHUT_WR) };
        let out = super::super::captured(|e, bufs| capture(e, bufs, &|x| x != a && x != b));
        let got = entries(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        let ga = got.iter().find(|s| s.fd == a).unwrap();
        let gb = got.iter().find(|s| s.fd == b).unwrap();
        if ga.role == ROLE_OTHER {
            eprintln!("skipped: no unix_diag here");
            return;
        }
        assert_eq!((ga.role, gb.role), (ROLE_PAIR, ROLE_PAIR));
        assert_eq!(ga.queue, vec![b"back".to_vec()]);
        assert_eq!(gb.queue, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(gb.shutdown, 2);
        // Still queued for the program.
        assert_eq!(recv(b), b"one");
        let with_file = Socket {
            file_attrs: Some((0o640, 1000, 100)),
            ..got[0].clone()
        };
        for s in got.iter().chain([&with_file]) {
            let mut buf = vec![0u8; 4096];
            let mut e = Encoder::new(&mut buf);
            s.encode(&mut e).unwrap();
            let n = e.len();
            assert_eq!(&Socket::decode(&mut Decoder::new(&buf[..n])).unwrap(), s);
            s.check().unwrap();
        }
        // Back at other numbers.
        let moved: Vec<Socket> = got
            .iter()
            .map(|s| Socket {
                fd: if s.fd == a { 940 } else { 941 },
                ..s.clone()
            })
            .collect();
        let refs: Vec<&Socket> = moved.iter().collect();
        assert_eq!(restore_all(&refs), Vec::<String>::new());
        assert_eq!(recv(941), b"one");
        assert_eq!(recv(941), b"");
        assert_eq!(recv(941), b"three");
        assert_eq!(recv(940), b"back");
        // The sockets made again are captured again as they are: a pair,
        // its queue empty now, the shutdown kept.
        send(940, b"again");
        let again = entries(&super::super::captured(|e, bufs| {
            capture(e, bufs, &|x| x != 940 && x != 941)
        }));
        let g941 = again.iter().find(|s| s.fd == 941).unwrap();
        assert_eq!(
            (g941.role, g941.queue.clone()),
            (ROLE_PAIR, vec![b"again".to_vec()])
        );
        let g940 = again.iter().find(|s| s.fd == 940).unwrap();
        assert_eq!((g940.shutdown, g940.peer), (1, g941.ino));
        // SAFETY: closing the test's sockets.
        unsafe {
            for fd in [a, b, 940, 941] {
                libc::close(fd);
            }
        }
    }

    /// Descriptors in flight cannot come back: the socket is named not
    /// restorable, its entry kept without the queue, and the descriptors
    /// the peek installed are closed again.
    #[test]
    fn descriptors_in_flight_are_named_and_not_leaked() {
        let [a, b] = pair(libc::SOCK_STREAM);
        let fd_count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        // SAFETY: sending one descriptor (stdin) with SCM_RIGHTS from a
        // control buffer of the right size.
        unsafe {
            let mut data = *b"x";
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let mut ctl = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctl.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            libc::CMSG_DATA(c).cast::<i32>().write_unaligned(0);
            assert_eq!(libc::sendmsg(a, &msg, 0), 1);
        }
        let before = fd_count();
        let out = super::super::captured(|e, bufs| capture(e, bufs, &|x| x != a && x != b));
        assert_eq!(fd_count(), before, "the peeked descriptor is closed");
        let got = entries(&out);
        let gb = got.iter().find(|s| s.fd == b).unwrap();
        if gb.role == ROLE_OTHER {
            eprintln!("skipped: no unix_diag here");
            return;
        }
        assert!(gb.queue.is_empty(), "{gb:?}");
        let mut d = Decoder::new(&out);
        let mut named = Vec::new();
        while d.remaining() > 0 {
            let kind = d.u16().unwrap();
            d.u16().unwrap();
            let len = d.u32().unwrap() as usize;
            let p = d.take(len).unwrap();
            if kind == super::super::objects::Kind::NotRestorable as u16 {
                named.push(String::from_utf8_lossy(p).into_owned());
            }
        }
        assert_eq!(named.len(), 1, "{named:?}");
        assert!(named[0].contains("descriptors in flight"), "{named:?}");
        // SAFETY: closing the test's sockets.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn words_name_the_addresses() {
        let mut a = vec![0u8; 16];
        a[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&5432u16.to_be_bytes());
        a[4..8].copy_from_slice(&[10, 0, 0, 2]);
        let mut b = a.clone();
        b[2..4].copy_from_slice(&80u16.to_be_bytes());
        b[7] = 9;
        let mut t = PathBuf::<200>::new();
        words(
            &mut t,
            libc::AF_INET as u16,
            libc::SOCK_STREAM as u16,
            &a,
            &b,
        );
        assert_eq!(t.as_bytes(), b"TCP 10.0.0.2:5432 -> 10.0.0.9:80");
        let mut u = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        u.extend(b"\0name");
        let mut t = PathBuf::<200>::new();
        words(
            &mut t,
            libc::AF_UNIX as u16,
            libc::SOCK_DGRAM as u16,
            &u,
            &[],
        );
        assert_eq!(t.as_bytes(), b"UNIX dgram @name");
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&80u16.to_be_bytes());
        v6[23] = 1;
        let mut t = PathBuf::<200>::new();
        words(
            &mut t,
            libc::AF_INET6 as u16,
            libc::SOCK_STREAM as u16,
            &v6,
            &[],
        );
        assert_eq!(t.as_bytes(), b"TCP6 [::1]:80");
        v6[8] = 0xfe;
        v6[9] = 0x80;
        v6[21] = 0xab;
        let mut t = PathBuf::<200>::new();
        words(
            &mut t,
            libc::AF_INET6 as u16,
            libc::SOCK_DGRAM as u16,
            &v6,
            &[],
        );
        assert_eq!(t.as_bytes(), b"UDP6 [fe80::ab:1]:80");
    }
}
