//! The capture half of the sockets (see `super`): runs while the
//! program's threads are suspended. getsockopt, getsockname, getpeername
//! into the stack, unix_diag for a UNIX socket's peer, the queued data
//! peeked straight into the record buffer. It must never allocate.

use super::super::{sockdiag, CaptureBuffers, KstateError};
use super::*;
use crate::capture::sys;
use crate::image::codec::{CodecError, Encoder};

/// The /proc/self/fd link of a socket starts so.
const LINK: &[u8] = b"socket:[";
/// Most sockets one checkpoint looks at.
const MAX_SOCKETS: usize = 512;
/// Most TCP sockets whose addresses one checkpoint compares.
const MAX_TCP: usize = 256;
/// Most bytes queued in the process's UNIX sockets one checkpoint keeps.
pub const MAX_QUEUED: usize = 2 << 20;
/// Room left in the record buffer for the entries after a queue (every
/// other socket's head and addresses, the rest of KERNEL); half the room
/// left in a smaller buffer.
const ROOM_AFTER: usize = 256 << 10;
/// Most messages queued on one socket one checkpoint keeps.
const MAX_MESSAGES: u32 = 65_536;

/// Whether a classic BPF filter is attached to the socket
/// (`SO_ATTACH_FILTER`: `SO_GET_FILTER` with no buffer gives its length
/// in instructions). No allocation.
fn has_filter(fd: i32) -> bool {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a zero length getsockopt writes only `len`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            core::ptr::null_mut(),
            &mut len,
        )
    };
    r == 0 && len > 0
}

pub(super) fn getopt(fd: i32, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `v`, its size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        v
    } else {
        0
    }
}

pub(super) fn setopt(fd: i32, level: i32, name: i32, v: i32) -> i32 {
    // SAFETY: setsockopt reads one int from `v`.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    }
}

/// getsockname (`peer` false) or getpeername into `buf`: its length, 0
/// for none.
fn name_of(fd: i32, peer: bool, buf: &mut [u8; 128]) -> usize {
    let mut len = buf.len() as libc::socklen_t;
    let p = buf.as_mut_ptr().cast::<libc::sockaddr>();
    // SAFETY: the kernel writes at most `len` bytes of address into buf.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r != 0 {
        return 0;
    }
    (len as usize).min(buf.len())
}

/// State of the capture across sockets: inodes of the process's sockets,
/// those whose queue is written already, and the bytes kept so far.
struct Seen {
    inos: [u64; MAX_SOCKETS],
    n: usize,
    /// The process's TCP sockets: local and remote addresses (zero
    /// padded), descriptor and inode.
    tcp: [Tcp; MAX_TCP],
    ntcp: usize,
    queued: [u64; MAX_SOCKETS],
    nq: usize,
    bytes: usize,
    /// The multicast groups of the namespace's interfaces (read when the
    /// process has an IP socket that may have joined one).
    groups: multicast::Candidates,
}

/// Writes one socket entry per socket descriptor not skipped (and a
/// NotRestorable entry for what cannot come back). No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let mut seen = Seen {
        inos: [0; MAX_SOCKETS],
        n: 0,
        tcp: [Tcp::EMPTY; MAX_TCP],
        ntcp: 0,
        queued: [0; MAX_SOCKETS],
        nq: 0,
        bytes: 0,
        groups: multicast::Candidates::none(),
    };
    let mut may_join = false;
    // 0-2 are left out (their peers too: named as outside).
    super::super::fds::for_each_fd(&|fd| fd <= 2 || skip_fd(fd), |fd| {
        if let Ok(st) = sys::fstat(fd) {
            if st.st_mode & libc::S_IFMT == libc::S_IFSOCK && seen.n < MAX_SOCKETS {
                seen.inos[seen.n] = st.st_ino;
                seen.n += 1;
                let family = getopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
                let inet = matches!(family, libc::AF_INET | libc::AF_INET6);
                let stream = getopt(fd, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM;
                may_join |= inet && !stream;
                if inet && stream && seen.ntcp < MAX_TCP {
                    let t = &mut seen.tcp[seen.ntcp];
                    let mut a = [0u8; 128];
                    let n = name_of(fd, false, &mut a).min(28);
                    t.local[..n].copy_from_slice(&a[..n]);
                    let n = name_of(fd, true, &mut a).min(28);
                    t.remote[..n].copy_from_slice(&a[..n]);
                    (t.fd, t.ino) = (fd, st.st_ino);
                    seen.ntcp += 1;
                }
            }
        }
        Ok(())
    })?;
    let stdio_socket = (0..=2).any(|fd| {
        !skip_fd(fd) && sys::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
    });
    if seen.n == 0 && !stdio_socket {
        return Ok(());
    }
    if may_join {
        seen.groups = multicast::Candidates::read(bufs.text);
    }
    super::super::fds::for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/self/fd/").push_u64(fd as u64);
        match sys::readlink(p.as_cstr_bytes(), bufs.path) {
            // Descriptors 0-2 are the restarter's stdio or reopened as
            // files (restore::stdio), as pipes there are; one that is an
            // end of a UNIX connection is kept too (never made by a
            // single process's restart): its peer may be another process
            // of the tree (a child's stdio a parent reads through a
            // socketpair, as libuv makes them), which a tree makes again.
            Ok(n) if bufs.path[..n].starts_with(LINK) && (fd > 2 || unix_connected(fd)) => {
                capture_one(e, fd, &mut seen)
            }
            _ => Ok(()),
        }
    })
}

/// True if `fd` is a UNIX socket connected to a peer that has an inode
/// (a socketpair's end, an accepted or connected stream). No allocation.
fn unix_connected(fd: i32) -> bool {
    getopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == libc::AF_UNIX
        && sys::fstat(fd).is_ok_and(|st| sockdiag::unix(st.st_ino).is_ok_and(|d| d.peer != 0))
}

/// Writes one socket's entry. No allocation.
fn capture_one(e: &mut Encoder, fd: i32, seen: &mut Seen) -> Result<(), KstateError> {
    let Ok(st) = sys::fstat(fd) else {
        return Ok(());
    };
    let ino = st.st_ino;
    let family = getopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
    let stype = getopt(fd, libc::SOL_SOCKET, libc::SO_TYPE);
    let protocol = getopt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL);
    let mut local = [0u8; 128];
    let mut remote = [0u8; 128];
    let nl = name_of(fd, false, &mut local);
    let nr = name_of(fd, true, &mut remote);
    let (local, mut remote) = (&local[..nl], &remote[..nr]);
    // A closed TCP connection's peer (getpeername says ENOTCONN).
    let mut closed_peer = [0u8; 128];
    let sol = |name| getopt(fd, libc::SOL_SOCKET, name) != 0;
    let inet = matches!(family, libc::AF_INET | libc::AF_INET6);
    let tcp = inet && stype == libc::SOCK_STREAM;
    let opts = Options {
        rcvbuf: getopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF),
        sndbuf: getopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
        reuseaddr: sol(libc::SO_REUSEADDR),
        reuseport: sol(libc::SO_REUSEPORT),
        keepalive: sol(libc::SO_KEEPALIVE),
        passcred: family == libc::AF_UNIX && sol(libc::SO_PASSCRED),
        nodelay: tcp && getopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY) != 0,
        v6only: family == libc::AF_INET6 && getopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != 0,
    };
    let mut kept = [options::EMPTY; options::MAX_KEPT];
    let nkept = options::capture(fd, family, stype, &mut kept);
    let kept = &kept[..nkept];
    let mut groups = [multicast::EMPTY; multicast::MAX_GROUPS];
    let (ngroups, groups_lost) =
        match multicast::capture(fd, family, stype, &seen.groups, &mut groups) {
            Ok(n) => (n, None),
            Err(why) => (0, Some(why)),
        };
    let extra = Trailing {
        kept,
        groups: &groups[..ngroups],
    };
    let flags = super::super::fds::fd_flags(fd).unwrap_or(0);
    let mut s = Head {
        fd,
        flags,
        ino,
        family: family as u16,
        stype: stype as u16,
        protocol: protocol as u16,
        role: ROLE_OTHER,
        shutdown: 0,
        peer: 0,
        backlog: 0,
        opts,
        vfs: (0, 0),
    };
    let mut why: Option<&[u8]> = None;
    let mut keep_outside = false;
    // A TCP connection to this host whose peer may be another process
    // of the tree: its TCP state, for its data in flight.
    let mut flight_state = None;
    match family {
        libc::AF_UNIX => match sockdiag::unix(ino) {
            Ok(d) => {
                s.shutdown = d.shutdown & 3;
                s.vfs = d.vfs;
                s.peer = d.peer;
                s.role = if d.state == sockdiag::STATE_LISTEN {
                    s.backlog = d.backlog;
                    ROLE_LISTEN
                } else if d.peer != 0 && seen.inos[..seen.n].contains(&d.peer) {
                    ROLE_PAIR
                } else if d.peer != 0 && stype == libc::SOCK_DGRAM && is_named(remote) {
                    // A datagram socket connected to a daemon's (syslog's
                    // /dev/log): connected again by name, unless datagrams
                    // from outside wait in it.
                    if inq(fd) > 0 {
                        why = Some(b" (datagrams from its peer outside the process are queued)");
                        ROLE_OUTSIDE
                    } else {
                        ROLE_BOUND
                    }
                } else if d.peer != 0 {
                    // Its peer may be another process of the tree (a
                    // socketpair shared by fork): its queue is kept, so
                    // that a tree restart can refill the pair it makes.
                    keep_outside = true;
                    why = Some(b" (peer outside the process)");
                    ROLE_OUTSIDE
                } else if d.state == 1 && stype != libc::SOCK_DGRAM && d.shutdown == 0 {
                    // Connected, the peer not accepted yet (it has no
                    // inode): in a listener's queue, ours or another's.
                    // Nothing sent yet: connecting again is the same.
                    if outq(fd) == 0 && is_named(remote) {
                        ROLE_PENDING
                    } else {
                        why = Some(b" (its data waits for a listener to accept it)");
                        ROLE_OUTSIDE
                    }
                } else if d.state == 1 && !(stype == libc::SOCK_DGRAM && is_named(local)) {
                    // Connected once, the peer closed since (a bound
                    // datagram socket others connected to is established
                    // too: it is bound again).
                    ROLE_HUNG_UP
                } else if is_named(local) {
                    ROLE_BOUND
                } else {
                    ROLE_FRESH
                };
            }
            Err(_) => {
                why = Some(b" (the kernel does not show its peer: no unix_diag)");
                s.role = ROLE_OTHER;
            }
        },
        libc::AF_INET | libc::AF_INET6 if stype == libc::SOCK_STREAM => {
            let state = tcp_state(fd);
            s.role = match state {
                Some((10, backlog)) => {
                    s.backlog = backlog;
                    ROLE_LISTEN
                }
                Some((closed::STATE_CLOSE, _)) => {
                    let ev = closed::events(fd);
                    let n = closed::peer(fd, local.len(), &mut closed_peer);
                    // RCV_SHUTDOWN shows (a fresh socket may have been
                    // shut, which sets the bits all the same); SEND_SHUTDOWN
                    // does not, and is set with it on every connection
                    // that ended.
                    let rdhup = ev & libc::POLLRDHUP != 0;
                    if ev & libc::POLLERR != 0 {
                        why = Some(b" (closed, with an error the program has not read yet: the error would not come back)");
                    }
                    if n > 0 {
                        remote = &closed_peer[..n];
                        s.shutdown = 2 | rdhup as u8;
                        if why.is_none() && !same_host(local, remote) {
                            why = Some(b" (a closed connection to another host: it would come back without its peer's address)");
                        } else if why.is_none() && !closed::repair_allowed() {
                            why = Some(b" (a closed connection: making it again as it was needs TCP_REPAIR, CAP_NET_ADMIN)");
                        }
                        ROLE_CLOSED
                    } else {
                        s.shutdown = rdhup as u8;
                        if is_named(local) {
                            ROLE_BOUND
                        } else {
                            ROLE_FRESH
                        }
                    }
                }
                Some((state, _)) => {
                    let (mut me, mut peer) = ([0u8; 28], [0u8; 28]);
                    me[..local.len().min(28)].copy_from_slice(&local[..local.len().min(28)]);
                    peer[..remote.len().min(28)].copy_from_slice(&remote[..remote.len().min(28)]);
                    let other = seen.tcp[..seen.ntcp]
                        .iter()
                        .find(|t| t.local == peer && t.remote == me && t.ino != ino);
                    match other {
                        // Both ends here, nothing in flight either way
                        // (all is in the receive queues): made again.
                        Some(t)
                            if matches!(state, 1 | 4 | 5 | 8 | 9 | 11)
                                && all_arrived(fd, t.fd)
                                && all_arrived(t.fd, fd) =>
                        {
                            s.peer = t.ino;
                            // FIN_WAIT1/2, LAST_ACK, CLOSING: this end shut
                            // its writing half (the peer's CLOSE_WAIT follows
                            // from it).
                            s.shutdown = if matches!(state, 4 | 5 | 9 | 11) {
                                2
                            } else {
                                0
                            };
                            ROLE_PAIR
                        }
                        Some(_) => {
                            why = Some(b" (both ends in the process, data in flight: a TCP connection cannot be made again)");
                            ROLE_OUTSIDE
                        }
                        // Waiting in a listener's accept queue of this
                        // process (a listener has no peer), nothing sent:
                        // connected again from its port.
                        None if state == 1
                            && outq(fd) == 0
                            && tcp_bytes(fd).is_some_and(|(acked, _)| acked <= 1)
                            && seen.tcp[..seen.ntcp]
                                .iter()
                                .any(|t| t.local == peer && t.remote == [0; 28]) =>
                        {
                            ROLE_PENDING
                        }
                        // Established (or one half shut, its FIN acked) to an
                        // address of this host: its peer may be another
                        // process of the tree, which pairs the two ends by
                        // their addresses (`tree::round`); its queue and
                        // its data in flight are kept for that.
                        None if matches!(state, 1 | 5 | 8) && same_host(local, remote) => {
                            keep_outside = true;
                            flight_state = Some(state);
                            s.shutdown = if state == 5 { 2 } else { 0 };
                            why = Some(b" (peer outside the process)");
                            ROLE_OUTSIDE
                        }
                        None => {
                            why = Some(b" (peer outside the process)");
                            ROLE_OUTSIDE
                        }
                    }
                }
                None => {
                    why = Some(b" (the kernel does not show its state)");
                    ROLE_OUTSIDE
                }
            };
        }
        libc::AF_INET | libc::AF_INET6 if stype == libc::SOCK_DGRAM => {
            // Its shutdown bits (a send on a socket shut for writing
            // fails with EPIPE): only inet_diag shows the write half.
            s.shutdown = sockdiag::inet_shutdown(family, protocol, ino)
                .ok()
                .flatten()
                .unwrap_or(0);
            s.role = if is_named(local) {
                ROLE_BOUND
            } else {
                ROLE_FRESH
            };
        }
        libc::AF_NETLINK => s.role = ROLE_BOUND,
        _ => {
            why = Some(b" (a kind of socket selfckpt does not bring back)");
            s.role = ROLE_OTHER;
        }
    }
    if why.is_none() && has_filter(fd) {
        why = Some(b" (a BPF socket filter is attached: it would not come back)");
    }
    why = why.or(groups_lost);
    // The data queued to a UNIX socket that comes back.
    let keep_queue = (family == libc::AF_UNIX
        && matches!(s.role, ROLE_PAIR | ROLE_HUNG_UP | ROLE_BOUND)
        || keep_outside
        || tcp && s.role == ROLE_PAIR)
        && !seen.queued[..seen.nq].contains(&ino);
    if keep_queue && seen.nq < MAX_SOCKETS {
        seen.queued[seen.nq] = ino;
        seen.nq += 1;
    }
    let at = e.len();
    let mut budget = MAX_QUEUED.saturating_sub(seen.bytes);
    let before = budget;
    let q = keep_queue.then_some(Queue {
        fd,
        stype,
        eof: s.shutdown & 1 != 0,
        unnamed_sender: family == libc::AF_UNIX
            && stype != libc::SOCK_STREAM
            && s.role == ROLE_BOUND,
    });
    let lost = write_entry(e, &s, local, remote, &extra, q, &mut budget)?;
    // Its data in flight, on the socket's first descriptor (with its
    // queue): without it no tree pairs the two ends.
    let mut flight_lost = None;
    if let (None, Some(state), true) = (lost, flight_state, keep_queue) {
        let rq_len = before - budget;
        flight_lost =
            inflight::capture(e, fd, ino, state, rq_len, opts.reuseaddr, &mut budget)?.err();
    }
    if lost.is_some() {
        // Written again without the queue the capture could not keep
        // (one whose peer is in another process of a tree: as a socket
        // nobody may make again with an empty queue).
        e.truncate(at);
        // (A TCP one stays a connection to a peer outside: without its
        // data in flight no tree pairs it, and its stand-in is a dropped
        // connection.)
        if keep_outside && family == libc::AF_UNIX {
            s.role = ROLE_OTHER;
        }
        write_entry(e, &s, local, remote, &extra, None, &mut budget)?;
    } else {
        seen.bytes += before - budget;
    }
    // At 0-2 the stdio rules decide (`restore::stdio`), not this entry.
    if fd <= 2 {
        return Ok(());
    }
    if let Some(w) = why.or(lost) {
        let mut t = PathBuf::<400>::new();
        t.push(b"socket ");
        words(&mut t, s.family, s.stype, local, remote);
        t.push(w);
        if let (Some(_), Some(l)) = (why, lost) {
            t.push(l);
        }
        if let Some(l) = flight_lost {
            t.push(l);
        }
        super::super::objects::NotRestorable::capture(e, fd, "socket", t.as_bytes())?;
    }
    Ok(())
}

/// Whether TCP addresses `local` and `remote` are both of this host:
/// the remote one a loopback address or the local one's.
fn same_host(local: &[u8], remote: &[u8]) -> bool {
    if local.len() < 8 || remote.len() < 8 || local[0..2] != remote[0..2] {
        return false;
    }
    match u16::from_ne_bytes([remote[0], remote[1]]) as i32 {
        libc::AF_INET => remote[4] == 127 || remote[4..8] == local[4..8],
        libc::AF_INET6 if local.len() >= 24 && remote.len() >= 24 => {
            let ip = &remote[8..24];
            let v4mapped = ip[..10] == [0; 10] && ip[10..12] == [0xff, 0xff];
            *ip == local[8..24] || ip[..15] == [0; 15] && ip[15] == 1 || v4mapped && ip[12] == 127
        }
        _ => false,
    }
}

/// One TCP socket of the process, for finding both ends of a connection.
#[derive(Clone, Copy)]
struct Tcp {
    local: [u8; 28],
    remote: [u8; 28],
    fd: i32,
    ino: u64,
}

impl Tcp {
    const EMPTY: Tcp = Tcp {
        local: [0; 28],
        remote: [0; 28],
        fd: -1,
        ino: 0,
    };
}

/// A queue to read: the socket, its type, whether it is shut for reading.
#[derive(Clone, Copy)]
struct Queue {
    fd: i32,
    stype: i32,
    eof: bool,
    /// Its messages are queued again by a socket of no name (a bound
    /// UNIX datagram socket's, `restore::send_to_self`): one from a
    /// named sender would come back from no one.
    unnamed_sender: bool,
}

/// The entry's fields after the queue and the file's attributes.
struct Trailing<'a> {
    kept: &'a [options::Value],
    groups: &'a [multicast::Membership],
}

/// Writes one entry, with the queue `q` holds (else none): why the queue
/// cannot be kept, if it cannot (the entry is then to be written again
/// without). No allocation.
fn write_entry(
    e: &mut Encoder,
    s: &Head,
    local: &[u8],
    remote: &[u8],
    extra: &Trailing,
    q: Option<Queue>,
    budget: &mut usize,
) -> Result<Option<&'static [u8]>, CodecError> {
    let mut lost = None;
    super::super::objects::entry(e, super::super::objects::Kind::Socket, 0, |e| {
        s.encode(e)?;
        e.bytes(local)?;
        e.bytes(remote)?;
        match q {
            Some(q) => lost = peek_queue(e, q, budget)?.err(),
            None => e.u32(0)?,
        }
        encode_file_attrs(e, file_attrs(s, local))?;
        options::encode(e, extra.kept)?;
        multicast::encode(e, extra.groups)
    })?;
    Ok(lost)
}

/// The entry's trailing field: a bound socket file's mode, uid and gid
/// (mode [`NO_FILE_ATTRS`]: none, since the kept options follow).
pub(super) fn encode_file_attrs(
    e: &mut Encoder,
    attrs: Option<(u32, u32, u32)>,
) -> Result<(), CodecError> {
    let (mode, uid, gid) = attrs.unwrap_or((NO_FILE_ATTRS, 0, 0));
    e.u32(mode)?;
    e.u32(uid)?;
    e.u32(gid)
}

/// The file attributes' mode for none.
pub(super) const NO_FILE_ATTRS: u32 = u32::MAX;

/// A path-bound UNIX socket's file, if it is still the socket's (the
/// inode unix_diag gave): its mode bits and owner. No allocation.
fn file_attrs(s: &Head, local: &[u8]) -> Option<(u32, u32, u32)> {
    if s.family as i32 != libc::AF_UNIX || s.vfs.0 == 0 {
        return None;
    }
    let p = unix_path(local)?;
    // An address is at most 128 bytes: the path always fits.
    let mut path = PathBuf::<130>::new();
    path.push(p);
    let st = sys::lstat_path(path.as_cstr_bytes()).ok()?;
    (st.st_ino == s.vfs.0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some((
        st.st_mode & 0o7777,
        st.st_uid,
        st.st_gid,
    ))
}

/// The head of an entry: [`Socket`] without its addresses and queue.
pub(super) struct Head {
    pub(super) fd: i32,
    pub(super) flags: u32,
    pub(super) ino: u64,
    pub(super) family: u16,
    pub(super) stype: u16,
    pub(super) protocol: u16,
    pub(super) role: u8,
    pub(super) shutdown: u8,
    pub(super) peer: u64,
    pub(super) backlog: u32,
    pub(super) opts: Options,
    pub(super) vfs: (u64, u64),
}

impl Head {
    pub(super) fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.flags)?;
        e.u64(self.ino)?;
        e.u16(self.family)?;
        e.u16(self.stype)?;
        e.u16(self.protocol)?;
        e.u8(self.role)?;
        e.u8(self.shutdown)?;
        e.u64(self.peer)?;
        e.u32(self.backlog)?;
        e.i32(self.opts.rcvbuf)?;
        e.i32(self.opts.sndbuf)?;
        e.u8(self.opts.bits())?;
        e.u64(self.vfs.0)?;
        e.u64(self.vfs.1)
    }
}

/// The bytes queued to a socket (`FIONREAD`: a datagram socket's next
/// message's), 0 where the kernel does not say.
fn inq(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return 0;
    }
    n.max(0) as usize
}

/// The bytes a socket sent that its peer has not read (`SIOCOUTQ`), 0
/// where the kernel does not say.
fn outq(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } != 0 {
        return 0;
    }
    n.max(0) as usize
}

/// Whether every byte TCP socket `from` was given to send is in `to`'s
/// receive queue (or read from it): nothing left unsent, and what `from`
/// had acked plus what it still holds (`SIOCOUTQ`) is what `to` received
/// (`TCP_INFO`'s `tcpi_bytes_acked` and `tcpi_bytes_received`; the FIN
/// counts in both). An ACK still on its way does not matter; data not
/// sent or not arrived does.
fn all_arrived(from: i32, to: i32) -> bool {
    let (Some((acked, _)), Some((_, received))) = (tcp_bytes(from), tcp_bytes(to)) else {
        return false;
    };
    let mut unsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int.
    if unsafe { libc::ioctl(from, SIOCOUTQNSD, &mut unsent) } != 0 || unsent != 0 {
        return false;
    }
    // The connecting end's acked count includes its SYN.
    let sent = acked + outq(from) as u64;
    sent == received || sent == received + 1
}

/// The bytes a TCP socket holds that it has not sent yet.
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// `tcpi_bytes_acked` and `tcpi_bytes_received` of a TCP socket (Linux
/// 4.1 on: offsets 120 and 128 of `struct tcp_info`).
fn tcp_bytes(fd: i32) -> Option<(u64, u64)> {
    let mut b = [0u8; 256];
    let mut len = b.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into our buffer.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            b.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 || (len as usize) < 136 {
        return None;
    }
    let at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    Some((at(120), at(128)))
}

/// A TCP socket's state and, listening, its backlog (`TCP_INFO`:
/// `tcpi_sacked` holds a listener's backlog).
pub(super) fn tcp_state(fd: i32) -> Option<(u8, u32)> {
    // SAFETY: tcp_info is plain old data.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (r == 0).then_some((info.tcpi_state, info.tcpi_sacked))
}

/// Writes what is queued to the socket (count, then each message)
/// without taking it from the program: `MSG_PEEK` from offset 0 with
/// `SO_PEEK_OFF`, the program's peek offset put back. `Ok(Err(why))`
/// when it cannot be kept. No allocation.
fn peek_queue(
    e: &mut Encoder,
    q: Queue,
    budget: &mut usize,
) -> Result<Result<(), &'static [u8]>, CodecError> {
    let old_off = getopt(q.fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF);
    if setopt(q.fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0) != 0 {
        // A kernel without SO_PEEK_OFF for this kind (TCP before 6.10):
        // an empty queue needs none.
        if inq(q.fd) == 0 {
            e.u32(0)?;
            return Ok(Ok(()));
        }
        return Ok(Err(b" (its queued data cannot be read: no SO_PEEK_OFF)"));
    }
    let r = peek_into(e, q, budget);
    setopt(q.fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old_off);
    r
}

fn peek_into(
    e: &mut Encoder,
    q: Queue,
    budget: &mut usize,
) -> Result<Result<(), &'static [u8]>, CodecError> {
    let stream = q.stype == libc::SOCK_STREAM;
    let inq = inq(q.fd);
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    let mut total = 0usize;
    loop {
        let max = (*budget).min(e.remaining() - ROOM_AFTER.min(e.remaining() / 2));
        let item = e.len();
        let (mut got, mut flags, mut rights, mut named) = (-1isize, 0, false, false);
        let _ = e.bytes_with(max, |buf| {
            (got, flags, rights, named) = peek_one(q.fd, buf, stream);
            usize::try_from(got).map_err(|_| ())
        })?;
        if got >= 0 && named && q.unnamed_sender {
            return Ok(Err(
                b" (datagrams from named senders are queued: their sender addresses would not come back)",
            ));
        }
        if got < 0 {
            // Nothing more queued.
            break;
        }
        if got as usize > max || flags & libc::MSG_TRUNC != 0 {
            return Ok(Err(b" (more data queued than a checkpoint keeps)"));
        }
        if rights || flags & libc::MSG_CTRUNC != 0 {
            return Ok(Err(b" (descriptors in flight in its queue)"));
        }
        // End of file: a stream's (or a shut seqpacket's once every byte
        // is read) empty answer is not a message.
        if got == 0 && (stream || (q.eof && total >= inq)) {
            e.truncate(item);
            break;
        }
        *budget -= got as usize;
        total += got as usize;
        count += 1;
        if count >= MAX_MESSAGES {
            return Ok(Err(b" (more messages queued than a checkpoint keeps)"));
        }
    }
    e.patch_u32(at, count);
    Ok(Ok(()))
}

/// Peeks the next message (or stream bytes) into `buf`: (length or -1,
/// recvmsg's flags, whether descriptors came with it, whether its sender
/// has a name). Descriptors the peek installs (SCM_RIGHTS) are closed
/// again and reported. No allocation.
fn peek_one(fd: i32, buf: &mut [u8], stream: bool) -> (isize, i32, bool, bool) {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut ctl = [0u64; 64];
    // SAFETY: sockaddr_storage is plain old data.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: msghdr is plain old data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of_val(&from) as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctl) as _;
    let trunc = if stream { 0 } else { libc::MSG_TRUNC };
    // SAFETY: recvmsg writes into our buffer and control area, of the
    // sizes given.
    let n = unsafe {
        libc::recvmsg(
            fd,
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | trunc,
        )
    };
    if n < 0 {
        return (-1, 0, false, false);
    }
    // A sender with a name (more than the family).
    let named = msg.msg_namelen as usize > std::mem::size_of::<libc::sa_family_t>();
    let mut rights = false;
    // SAFETY: walking the control messages the kernel wrote into `ctl`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                rights = true;
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    libc::close(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    (n, msg.msg_flags, rights, named)
}
