//! The restore half of the sockets (see `super`): runs in the restarter
//! with the descriptors, ordinary Rust. Each socket is made anew above
//! every socket number the image uses, then put at its numbers. Must
//! never: write over or remove a file that is not the program's own stale
//! socket file, block on another process's listener, or connect a pair
//! through a listener that is not ours.

use super::capture::{getopt, setopt};
use super::*;

fn err(what: String) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

pub(super) fn last(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Makes every socket anew at its numbers; returns what failed, one line
/// each (a number whose socket cannot be made stays free).
pub fn restore_all(socks: &[&Socket]) -> Vec<String> {
    let above = socks.iter().map(|s| s.fd).max().unwrap_or(2) + 1;
    // One socket per inode, made once; its descriptors all get it.
    let mut made: std::collections::HashMap<u64, i32> = std::collections::HashMap::new();
    let mut failed = Vec::new();
    let first = |ino: u64| socks.iter().find(|s| s.ino == ino).copied();
    // What is bound first (listeners, bound sockets, the rest), then the
    // connections inside the process (a pair at once, through its
    // listener where it was made through one), then what connects to a
    // bound UNIX datagram socket.
    let late = |s: &Socket| {
        s.role == ROLE_PAIR && first(s.peer).is_some_and(|p| p.peer != s.ino && p.stype == s.stype)
    };
    let phase = |s: &Socket| match s.role {
        ROLE_PAIR if late(s) => 2,
        ROLE_PAIR => 1,
        ROLE_PENDING => 2,
        _ => 0,
    };
    for pass in 0..3 {
        for s in socks {
            if made.contains_key(&s.ino)
                || first(s.ino).map(|f| f.fd) != Some(s.fd)
                || phase(s) != pass
            {
                continue;
            }
            let r = match s.role {
                ROLE_PAIR if pass == 1 => match first(s.peer) {
                    Some(p) => {
                        let r = if s.family as i32 == libc::AF_UNIX {
                            let via = through_listener(s, p, socks, &made);
                            make_pair(s, Some(p), via, above)
                        } else {
                            tcp_pair(s, p, socks, &made, above, &mut failed)
                        };
                        r.map(|(a, b)| {
                            made.insert(p.ino, b);
                            a
                        })
                    }
                    // Its peer was at 0-2 (the restarter's stdio now):
                    // the connection is lost.
                    None => {
                        failed.push(format!(
                            "socket fd {}: its peer was the program's stdio; it comes back hung up",
                            s.fd
                        ));
                        make_pair(s, None, None, above).map(|(a, _)| a)
                    }
                },
                ROLE_HUNG_UP => make_pair(s, None, None, above).map(|(a, _)| a),
                ROLE_LISTEN | ROLE_BOUND | ROLE_PAIR => make_bound(s, above, &mut failed),
                ROLE_OUTSIDE => dropped(s, above),
                ROLE_PENDING => pending(s, socks, &made, above, &mut failed),
                ROLE_CLOSED => super::closed::make(s, above, &mut failed),
                _ => fresh(s, above),
            };
            match r {
                Ok(fd) => {
                    made.insert(s.ino, fd);
                }
                Err(e) => failed.push(e),
            }
        }
    }
    for s in socks {
        if let Some(&tmp) = made.get(&s.ino) {
            // SAFETY: duplicating the made socket for this number.
            let copy = unsafe { libc::fcntl(tmp, libc::F_DUPFD_CLOEXEC, above) };
            let r = super::super::fds::install_at(copy, s.fd, s.flags).map_err(err(format!(
                "socket fd {}: cannot put it at its number",
                s.fd
            )));
            if let Err(e) = r {
                failed.push(e);
                continue;
            }
            // SAFETY: F_SETFL on the installed socket: its blocking mode.
            unsafe { libc::fcntl(s.fd, libc::F_SETFL, s.flags as i32 & libc::O_NONBLOCK) };
        }
    }
    for (_, tmp) in made {
        // SAFETY: closing the made sockets (their installed copies stay).
        unsafe { libc::close(tmp) };
    }
    failed
}

/// Whether IPv6 socket `fd` is bound to a port of one address (neither
/// `::` nor v4-mapped).
fn bound_to_one_address(fd: i32) -> bool {
    // SAFETY: a zeroed sockaddr_in6 is a valid value.
    let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut n = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `n` bytes into `a`.
    let r = unsafe { libc::getsockname(fd, (&mut a as *mut libc::sockaddr_in6).cast(), &mut n) };
    let ip = a.sin6_addr.s6_addr;
    let mapped = ip[..10] == [0; 10] && ip[10..12] == [0xff, 0xff];
    r == 0 && a.sin6_port != 0 && ip != [0; 16] && !mapped
}

/// `fd` moved at `above` or higher (close-on-exec), the original closed.
fn lift(fd: i32, above: i32) -> Result<i32, String> {
    if fd < 0 {
        return Err(last("cannot make a socket"));
    }
    // SAFETY: duplicating and closing our own new descriptor.
    let up = unsafe {
        let up = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
        libc::close(fd);
        up
    };
    if up < 0 {
        return Err(last("cannot move a socket"));
    }
    Ok(up)
}

/// Gives `fd` the program's `SO_REUSEADDR` (a bind or listen of the
/// restart's own had it set).
pub(super) fn its_reuseaddr(fd: i32, s: &Socket) {
    setopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        s.opts.reuseaddr as i32,
    );
}

pub(super) fn close(fd: i32) {
    // SAFETY: closing a descriptor of ours.
    unsafe { libc::close(fd) };
}

/// Sets the options a socket had (before it is bound: `SO_REUSEPORT`
/// and `IPV6_V6ONLY` must be).
fn set_options(fd: i32, s: &Socket) -> Result<(), String> {
    let o = &s.opts;
    let name = format!("socket fd {}", s.fd);
    let set = |level, opt, v: i32, what: &str| {
        if setopt(fd, level, opt, v) != 0 {
            Err(last(&format!("{name}: cannot set {what}")))
        } else {
            Ok(())
        }
    };
    // The kernel doubles what is set: half of what it said. A TCP
    // connection's sizes are the kernel's autotuning, which setting them
    // would stop.
    let tcp = matches!(s.family as i32, libc::AF_INET | libc::AF_INET6)
        && s.stype as i32 == libc::SOCK_STREAM;
    let all = [
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, o.rcvbuf, "SO_RCVBUF"),
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, o.sndbuf, "SO_SNDBUF"),
    ];
    let sizes = if tcp && s.role == ROLE_PAIR {
        &all[..0]
    } else {
        &all[..]
    };
    for &(opt, force, v, what) in sizes {
        if v > 0
            && getopt(fd, libc::SOL_SOCKET, opt) != v
            && setopt(fd, libc::SOL_SOCKET, force, v / 2) != 0
        {
            set(libc::SOL_SOCKET, opt, v / 2, what)?;
        }
    }
    let inet = matches!(s.family as i32, libc::AF_INET | libc::AF_INET6);
    if inet || s.family as i32 == libc::AF_UNIX {
        set(
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            o.reuseaddr as i32,
            "SO_REUSEADDR",
        )?;
    }
    if inet {
        set(
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            o.reuseport as i32,
            "SO_REUSEPORT",
        )?;
    }
    if o.keepalive {
        set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE")?;
    }
    if o.passcred {
        set(libc::SOL_SOCKET, libc::SO_PASSCRED, 1, "SO_PASSCRED")?;
    }
    if o.nodelay {
        set(libc::IPPROTO_TCP, libc::TCP_NODELAY, 1, "TCP_NODELAY")?;
    }
    // Set only where it is not what it was (an end of a connection made
    // again has it from its listener or its socket already). A socket
    // bound to one IPv6 address (not `::`, not v4-mapped) is IPv6-only by
    // the kernel's rule from its bind on, and the kernel refuses a
    // change: a connecting end bound again to its very address (where its
    // connect had bound it implicitly) is such a one, and can carry
    // nothing but IPv6 either way.
    if s.family as i32 == libc::AF_INET6
        && (getopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != 0) != o.v6only
        && setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, o.v6only as i32) != 0
        && (o.v6only || !bound_to_one_address(fd))
    {
        return Err(last(&format!("{name}: cannot set IPV6_V6ONLY")));
    }
    super::options::apply(fd, &s.kept, &name)?;
    super::multicast::join(fd, &s.groups, &name)
}

pub(super) fn new_socket(s: &Socket, above: i32) -> Result<i32, String> {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe {
        libc::socket(
            s.family as i32,
            s.stype as i32 | libc::SOCK_CLOEXEC,
            s.protocol as i32,
        )
    };
    let fd = lift(fd, above).map_err(|e| format!("socket fd {}: {e}", s.fd))?;
    if let Err(e) = set_options(fd, s) {
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// A socket not bound, not connected, with its options (and a TCP or UDP
/// one its shutdown bits: a shutdown of an unconnected socket sets them).
fn fresh(s: &Socket, above: i32) -> Result<i32, String> {
    let fd = new_socket(s, above)?;
    if is_inet(s) {
        shut(s, fd);
    }
    Ok(fd)
}

/// A TCP or UDP socket: its shutdown bits are its own to give back (a
/// UNIX one's are its pair's business).
fn is_inet(s: &Socket) -> bool {
    matches!(s.family as i32, libc::AF_INET | libc::AF_INET6)
        && matches!(s.stype as i32, libc::SOCK_STREAM | libc::SOCK_DGRAM)
}

/// Sends `s`'s queue again from `from` (its peer's new end), message by
/// message, then applies the shutdown bits of `s` on `to`.
fn refill(s: &Socket, from: i32) -> Result<(), String> {
    for m in &s.queue {
        let mut off = 0;
        loop {
            // SAFETY: sending from our buffer on our new socket.
            let n = unsafe {
                libc::send(
                    from,
                    m[off..].as_ptr().cast(),
                    m.len() - off,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                // A TCP send buffer smaller than the queue: wait for room.
                let mut pfd = libc::pollfd {
                    fd: from,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: poll on one pollfd of ours.
                if unsafe { libc::poll(&mut pfd, 1, 1000) } == 1 {
                    continue;
                }
            }
            if n < 0 {
                return Err(last(&format!(
                    "socket fd {}: cannot queue its data again",
                    s.fd
                )));
            }
            off += n as usize;
            if off >= m.len() || s.stype as i32 != libc::SOCK_STREAM {
                break;
            }
        }
    }
    Ok(())
}

fn shut(s: &Socket, fd: i32) {
    let how = match s.shutdown & 3 {
        1 => Some(libc::SHUT_RD),
        2 => Some(libc::SHUT_WR),
        3 => Some(libc::SHUT_RDWR),
        _ => None,
    };
    if let Some(how) = how {
        // SAFETY: shutdown on our new socket.
        unsafe { libc::shutdown(fd, how) };
    }
}

/// The listener (made already) a stream or seqpacket connection between
/// `s` and `p` was made through: the one whose address is the accepted
/// end's own and the connecting end's peer. With whether `s` is the
/// accepted end.
fn through_listener(
    s: &Socket,
    p: &Socket,
    socks: &[&Socket],
    made: &std::collections::HashMap<u64, i32>,
) -> Option<(i32, bool)> {
    if s.stype as i32 == libc::SOCK_DGRAM {
        return None;
    }
    let (accepted, client, s_accepted) = if is_named(&s.local) && s.local == p.remote {
        (s, p, true)
    } else if is_named(&p.local) && p.local == s.remote {
        (p, s, false)
    } else {
        return None;
    };
    if is_named(&client.local) {
        return None; // a connecting end bound to a name of its own
    }
    let l = socks.iter().find(|l| {
        l.role == ROLE_LISTEN && l.stype == accepted.stype && l.local == accepted.local
    })?;
    // Only through a listener of ours that listens (one that could not be
    // bound again must not send the connection to whoever has the name).
    let fd = *made.get(&l.ino)?;
    (getopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 1).then_some((fd, s_accepted))
}

/// A connection made through the listener `l` (connect, accept):
/// (connecting end, accepted end), at `above` or higher.
fn connect_through(l: i32, s: &Socket, addr: &[u8], above: i32) -> Result<(i32, i32), String> {
    // SAFETY: socket(2) has no memory preconditions.
    let c = lift(
        // Non-blocking: a full backlog (another process's listener at
        // that name) must not make the restart wait.
        unsafe {
            libc::socket(
                libc::AF_UNIX,
                s.stype as i32 | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        },
        above,
    )?;
    let (a, n) = sockaddr(addr);
    // SAFETY: connect reads `n` bytes of the address; accept4 on our
    // listener writes no address.
    let acc = unsafe {
        if libc::connect(c, (&a as *const libc::sockaddr_storage).cast(), n) != 0 {
            close(c);
            return Err(last("cannot connect through the listener"));
        }
        libc::accept4(
            l,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    let acc = lift(acc, above).inspect_err(|_| close(c))?;
    // SAFETY: F_SETFL on our accepted socket: blocking, as made.
    unsafe { libc::fcntl(acc, libc::F_SETFL, 0) };
    Ok((c, acc))
}

/// Both ends of a connection inside the process (`p` None: the peer
/// closed since, its end is closed again once the queue is refilled).
/// Made through its listener where `via` names it (so that each end's
/// name is as it was), else with `socketpair`.
fn make_pair(
    s: &Socket,
    p: Option<&Socket>,
    via: Option<(i32, bool)>,
    above: i32,
) -> Result<(i32, i32), String> {
    let through = via.and_then(|(l, s_accepted)| {
        let addr = if s_accepted { &s.local } else { &s.remote };
        let (c, acc) = connect_through(l, s, addr, above).ok()?;
        Some(if s_accepted { (acc, c) } else { (c, acc) })
    });
    fill_pair(s, p, through, above)
}

/// One UNIX connection between two processes of a tree, made again by
/// the tree restart (`restore::tree`): a socketpair, `s`'s end first,
/// each end with its options, its queue and its shutdown state, both at
/// `above` or higher (close-on-exec: they are dup'ed to their numbers).
pub fn make_connection(s: &Socket, p: &Socket, above: i32) -> Result<(i32, i32), String> {
    fill_pair(s, Some(p), None, above)
}

/// Ends the `TIME_WAIT` left of the connection between TCP addresses
/// `a` and `b` (either way round): the killed run's end of this very
/// connection, whose port the kernel would refuse a listener for a
/// minute (`SOCK_DESTROY` through sock_diag; needs CAP_NET_ADMIN: without
/// it nothing changes). Only that exact pair of addresses is touched.
pub(super) fn forget_time_wait(a: &[u8], b: &[u8]) {
    const SOCK_DESTROY: u16 = 21;
    const TCP_TIME_WAIT: u32 = 6;
    let family = |x: &[u8]| (x.len() >= 2).then(|| u16::from_ne_bytes([x[0], x[1]]) as i32);
    let Some(f) = family(a).filter(|f| Some(*f) == family(b)) else {
        return;
    };
    let (alen, at) = match f {
        libc::AF_INET if a.len() >= 8 && b.len() >= 8 => (4, 4),
        libc::AF_INET6 if a.len() >= 24 && b.len() >= 24 => (16, 8),
        _ => return,
    };
    let Ok(diag) = super::super::sockdiag::diag_socket() else {
        return;
    };
    let nl = diag.raw();
    for (src, dst) in [(a, b), (b, a)] {
        // nlmsghdr (16), inet_diag_req_v2: family, protocol, ext, pad,
        // states (8), then inet_diag_sockid: sport, dport (network
        // order), src, dst (16 each), interface, cookie (no cookie).
        let mut req = [0u8; 72];
        req[0..4].copy_from_slice(&72u32.to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DESTROY.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[16] = f as u8;
        req[17] = libc::IPPROTO_TCP as u8;
        req[20..24].copy_from_slice(&(1u32 << TCP_TIME_WAIT).to_ne_bytes());
        req[24..26].copy_from_slice(&src[2..4]);
        req[26..28].copy_from_slice(&dst[2..4]);
        req[28..28 + alen].copy_from_slice(&src[at..at + alen]);
        req[44..44 + alen].copy_from_slice(&dst[at..at + alen]);
        req[64..72].copy_from_slice(&[0xff; 8]);
        // First asked what is there (a lookup by addresses finds a
        // listener too): only a TIME_WAIT of these very addresses is
        // ended, named by its cookie.
        let mut ans = [0u8; 512];
        let ask = |req: &[u8], ans: &mut [u8]| {
            // SAFETY: sending our request buffer to the kernel (the
            // netlink socket's default destination) and reading its
            // answer into ours.
            unsafe {
                if libc::send(nl, req.as_ptr().cast(), req.len(), 0) != req.len() as isize {
                    return 0;
                }
                libc::recv(nl, ans.as_mut_ptr().cast(), ans.len(), 0)
            }
        };
        const SOCK_DIAG_BY_FAMILY: u16 = 20;
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        let n = ask(&req, &mut ans);
        // inet_diag_msg after the header: family, state, timer, retrans,
        // then the socket id (ports, addresses, interface, cookie at 60).
        let time_wait = n >= 68
            && u16::from_ne_bytes([ans[4], ans[5]]) == SOCK_DIAG_BY_FAMILY
            && ans[17] as u32 == TCP_TIME_WAIT
            && ans[20..56] == req[24..60];
        if !time_wait {
            continue;
        }
        let cookie: [u8; 8] = ans[60..68].try_into().unwrap_or([0xff; 8]);
        req[64..72].copy_from_slice(&cookie);
        req[4..6].copy_from_slice(&SOCK_DESTROY.to_ne_bytes());
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        ask(&req, &mut ans);
    }
}

/// Whether a TCP listener bound at `listening` takes connections made
/// to `to`: the same family and port, its address the same or the
/// wildcard (`0.0.0.0`, `::`).
pub fn listens_at(listening: &[u8], to: &[u8]) -> bool {
    if listening == to {
        return true;
    }
    if listening.len() < 8 || to.len() < 8 || listening[..4] != to[..4] {
        return false;
    }
    match u16::from_ne_bytes([to[0], to[1]]) as i32 {
        libc::AF_INET => listening[4..8] == [0; 4],
        libc::AF_INET6 => listening.len() >= 24 && listening[8..24] == [0; 16],
        _ => false,
    }
}

/// One TCP connection between two processes of a tree, made again by
/// the tree restart (`restore::tree`) between the very addresses of its
/// ends (`s_accepts`: `s` is the end a listener accepted, made through
/// `listener`, a listener the tree made already that listens where the
/// accepting end was reached, or else one made at its address for the
/// moment): each end with its options, its receive queue, then what of
/// its peer's send queue had not reached it ([`super::inflight::join`]),
/// and its shutdown state. `s`'s end first, both at `above` or higher
/// (close-on-exec). The accepted end
/// keeps `SO_REUSEADDR` set, so that its process's listener can listen at
/// its address again; that process gives it the program's value once its
/// own sockets are made (`restore::handover`). What could not be as it
/// was (a port still in use) is said in `warn`.
pub fn make_tcp_connection(
    s: super::inflight::End,
    p: super::inflight::End,
    s_accepts: bool,
    listener: Option<i32>,
    above: i32,
    warn: &mut Vec<String>,
) -> Result<(i32, i32), String> {
    let (to_s, to_p) = super::inflight::join(&s, &p)?;
    // Made as a connection inside a process is: the kernel's autotuned
    // buffer sizes, the queues refilled from the other end.
    let given = |x: &Socket, more: Vec<u8>| {
        let mut queue = x.queue.clone();
        if !more.is_empty() {
            queue.push(more);
        }
        Socket {
            role: ROLE_PAIR,
            queue,
            ..x.clone()
        }
    };
    let (s2, p2) = (given(s.sock, to_s), given(p.sock, to_p));
    let (srv, cli) = if s_accepts { (&s2, &p2) } else { (&p2, &s2) };
    forget_time_wait(&srv.local, &cli.local);
    let (acc, c) = connect_tcp(srv, cli, listener, above, warn)
        .map_err(|e| format!("socket fd {}: {e}", s.sock.fd))?;
    let ends = if s_accepts { (acc, c) } else { (c, acc) };
    let made = fill_pair(&s2, Some(&p2), Some(ends), above)?;
    setopt(acc, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    Ok(made)
}

/// The ends made (`ends`, else a socketpair) given their options, their
/// queues and their shutdown state.
fn fill_pair(
    s: &Socket,
    p: Option<&Socket>,
    ends: Option<(i32, i32)>,
    above: i32,
) -> Result<(i32, i32), String> {
    let through = ends;
    let (a, b) = match through {
        Some(ends) => ends,
        None => {
            let mut sv = [0i32; 2];
            // SAFETY: socketpair writes two descriptors.
            if unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    s.stype as i32 | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            } != 0
            {
                return Err(last(&format!("socket fd {}: cannot make a pair", s.fd)));
            }
            let a = lift(sv[0], above)?;
            (a, lift(sv[1], above).inspect_err(|_| close(a))?)
        }
    };
    let r = (|| {
        set_options(a, s)?;
        if let Some(p) = p {
            set_options(b, p)?;
        }
        refill(s, b)?;
        if let Some(p) = p {
            refill(p, a)?;
            arrived(p, b);
            shut(p, b);
        }
        arrived(s, a);
        shut(s, a);
        Ok(())
    })();
    if let Err(e) = r {
        close(a);
        close(b);
        return Err(e);
    }
    if p.is_none() {
        close(b);
    }
    Ok((a, b))
}

pub(super) fn sockaddr(a: &[u8]) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = a.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copying at most the storage's size into it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            a.as_ptr(),
            (&mut st as *mut libc::sockaddr_storage).cast(),
            n,
        )
    };
    (st, n as libc::socklen_t)
}

/// Makes way for binding a UNIX socket at `path`: nothing to do if the
/// path is free; the program's own socket file (the inode the checkpoint
/// saw) is removed to be made again; anything else is left alone and the
/// bind refused.
///
/// Returns the removed file's mode and owner, which the new one gets again
/// (the program may have `chmod`ed its socket file).
fn make_way(s: &Socket, path: &[u8]) -> Result<Option<(u32, u32, u32)>, String> {
    use std::os::unix::ffi::OsStrExt;
    let shown = crate::image::show::shown(path);
    if !path.starts_with(b"/") {
        return Err(format!(
            "socket fd {}: its relative path {shown} is not bound again",
            s.fd
        ));
    }
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("socket fd {}: {shown}: {e}", s.fd)),
        Ok(m) => {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if m.file_type().is_socket() && (m.ino(), m.dev()) == s.vfs && s.vfs.0 != 0 {
                if !stale(s, &s.local) {
                    return Err(format!(
                        "socket fd {}: {shown} is in use by another socket, left alone: the socket is not bound",
                        s.fd
                    ));
                }
                std::fs::remove_file(p).map_err(err(format!(
                    "socket fd {}: cannot remove the old {shown}",
                    s.fd
                )))?;
                Ok(Some((m.mode() & 0o7777, m.uid(), m.gid())))
            } else {
                Err(format!(
                    "socket fd {}: {shown} is now another file, left alone: the socket is not bound",
                    s.fd
                ))
            }
        }
    }
}

/// Gives the socket file just bound at `path` the mode and owner its
/// predecessor had (best effort: a file of ours it is).
fn same_file_attrs(path: &[u8], mode: u32, uid: u32, gid: u32) {
    let Ok(c) = std::ffi::CString::new(path) else {
        return;
    };
    // SAFETY: a NUL-terminated path; the file is the socket bound just now.
    unsafe {
        libc::lchown(c.as_ptr(), uid, gid);
        libc::fchmodat(
            libc::AT_FDCWD,
            c.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// Whether no socket is bound at the UNIX address `addr` any more: a
/// connection to it is refused (a socket of another type answers
/// otherwise; so does a live one of its type).
fn stale(s: &Socket, addr: &[u8]) -> bool {
    // SAFETY: socket(2) has no memory preconditions.
    let probe = unsafe {
        libc::socket(
            libc::AF_UNIX,
            s.stype as i32 | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if probe < 0 {
        return false;
    }
    let (a, n) = sockaddr(addr);
    // SAFETY: connect reads `n` bytes of the address.
    let r = unsafe { libc::connect(probe, (&a as *const libc::sockaddr_storage).cast(), n) };
    let refused =
        r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECONNREFUSED);
    close(probe);
    refused
}

/// A socket several processes of a tree hold that is no connection (a
/// listener a server shares with the workers it forked, a bound or a
/// fresh socket, a TCP connection that is over): made once, as a process makes its own, and given to
/// each of them by the tree.
pub fn make_unconnected(s: &Socket, above: i32, warn: &mut Vec<String>) -> Result<i32, String> {
    match s.role {
        ROLE_LISTEN | ROLE_BOUND => make_bound(s, above, warn),
        ROLE_FRESH => fresh(s, above),
        ROLE_CLOSED => super::closed::make(s, above, warn),
        _ => Err(format!("socket fd {}: not a socket without a peer", s.fd)),
    }
}

/// A listener, bound socket or a datagram socket connected to a bound
/// one of the process's, made again on its address. Where it cannot be
/// bound, listen or connect again, it stays as it could be made (its
/// number taken by a socket of its family and type), said in `warn`.
fn make_bound(s: &Socket, above: i32, warn: &mut Vec<String>) -> Result<i32, String> {
    let fd = new_socket(s, above)?;
    let r = (|| {
        let unix = s.family as i32 == libc::AF_UNIX;
        if is_named(&s.local) {
            let path = unix.then(|| unix_path(&s.local)).flatten();
            let was = match path {
                Some(path) => make_way(s, path)?,
                None => None,
            };
            let mut local = s.local.clone();
            if s.family as i32 == libc::AF_NETLINK && local.len() >= 8 {
                // The kernel picks the port id again (it was the old pid).
                local[4..8].copy_from_slice(&0u32.to_ne_bytes());
            }
            // Bound with SO_REUSEADDR as CRIU does, the program's value after.
            setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            let (a, n) = sockaddr(&local);
            // SAFETY: bind reads `n` bytes of the address.
            let r = unsafe { libc::bind(fd, (&a as *const libc::sockaddr_storage).cast(), n) };
            if r != 0 {
                return Err(last(&format!("socket fd {}: cannot bind it again", s.fd)));
            }
            // The file's mode and owner as the checkpoint saw them (or
            // as the old file had them: an image of before they were kept).
            if let Some((path, (mode, uid, gid))) = path.zip(s.file_attrs.or(was)) {
                same_file_attrs(path, mode, uid, gid);
            }
        }
        if s.role == ROLE_LISTEN {
            // SAFETY: listen on our new socket (still with SO_REUSEADDR:
            // listening checks the port again, and a connection the tree
            // made at this address may hold it already).
            let r = unsafe { libc::listen(fd, s.backlog as i32) };
            its_reuseaddr(fd, s);
            if r != 0 {
                return Err(last(&format!("socket fd {}: cannot listen again", s.fd)));
            }
        } else if !s.remote.is_empty()
            && (s.role == ROLE_PAIR || !unix || s.stype as i32 == libc::SOCK_DGRAM)
        {
            let (a, n) = sockaddr(&s.remote);
            // SAFETY: connect reads `n` bytes of the address.
            let r = unsafe { libc::connect(fd, (&a as *const libc::sockaddr_storage).cast(), n) };
            if r != 0 {
                return Err(last(&format!(
                    "socket fd {}: cannot connect it again",
                    s.fd
                )));
            }
        }
        if s.role != ROLE_LISTEN {
            its_reuseaddr(fd, s);
        }
        if unix && s.role != ROLE_LISTEN && !s.queue.is_empty() && is_named(&s.local) {
            send_to_self(s, above)?;
        }
        if s.role == ROLE_BOUND && is_inet(s) {
            shut(s, fd);
        }
        Ok(())
    })();
    if let Err(e) = r {
        warn.push(e);
    }
    Ok(fd)
}

/// Queues a bound UNIX datagram socket's messages again, sent from a
/// socket of its type to its name (the senders' addresses are not kept).
fn send_to_self(s: &Socket, above: i32) -> Result<(), String> {
    let plain = Socket {
        opts: Options::default(),
        kept: Vec::new(),
        groups: Vec::new(),
        ..s.clone()
    };
    let tmp = new_socket(&plain, above)?;
    let (a, n) = sockaddr(&s.local);
    for m in &s.queue {
        // SAFETY: sendto from our buffer to an address of the size given.
        let r = unsafe {
            libc::sendto(
                tmp,
                m.as_ptr().cast(),
                m.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&a as *const libc::sockaddr_storage).cast(),
                n,
            )
        };
        if r < 0 {
            let e = last(&format!("socket fd {}: cannot queue its data again", s.fd));
            close(tmp);
            return Err(e);
        }
    }
    close(tmp);
    Ok(())
}

/// Waits (a second at most) until `fd` holds what `s` had queued: data
/// sent over loopback TCP may still be on its way when `send` returns.
fn arrived(s: &Socket, fd: i32) {
    let want: usize = s.queue.iter().map(Vec::len).sum();
    if want == 0 || s.family as i32 == libc::AF_UNIX {
        return;
    }
    for _ in 0..100 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 || n as usize >= want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Both ends of a TCP connection inside the process, made again between
/// their very addresses: the connecting end bound to its port and
/// connected to the accepting end's address, through the process's
/// listener there (made already) or a listener made for the moment
/// (`SO_REUSEADDR` for both binds, as CRIU does). Where that fails, both
/// come back as dropped connections, said in the error.
fn tcp_pair(
    s: &Socket,
    p: &Socket,
    socks: &[&Socket],
    made: &std::collections::HashMap<u64, i32>,
    above: i32,
    warn: &mut Vec<String>,
) -> Result<(i32, i32), String> {
    let listener_at = |a: &[u8]| {
        socks
            .iter()
            .find(|l| l.role == ROLE_LISTEN && listens_at(&l.local, a))
            .and_then(|l| made.get(&l.ino).copied())
            .filter(|&fd| getopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 1)
    };
    // The accepting end: the one at a listener's address, else `p`.
    let s_accepts = listener_at(&s.local).is_some();
    let (srv, cli) = if s_accepts { (s, p) } else { (p, s) };
    forget_time_wait(&srv.local, &cli.local);
    let ends = connect_tcp(srv, cli, listener_at(&srv.local), above, warn);
    match ends {
        Ok((acc, c)) => fill_pair(
            s,
            Some(p),
            Some(if s_accepts { (acc, c) } else { (c, acc) }),
            above,
        ),
        Err(e) => {
            warn.push(format!(
                "socket fd {} and fd {} (a TCP connection): {e}; both come back as dropped connections",
                s.fd, p.fd
            ));
            let a = dropped(s, above)?;
            let b = dropped(p, above).inspect_err(|_| close(a))?;
            Ok((a, b))
        }
    }
}

/// A TCP connection between the addresses of `srv` (the accepting end)
/// and `cli` (the connecting end, bound to its port again): through
/// `listener` (listening at `srv`'s address) or a listener made for the
/// moment (`SO_REUSEADDR` for both binds, as CRIU does). (accepted end,
/// connecting end), at `above` or higher.
fn connect_tcp(
    srv: &Socket,
    cli: &Socket,
    listener: Option<i32>,
    above: i32,
    warn: &mut Vec<String>,
) -> Result<(i32, i32), String> {
    let (lis, temporary) = match listener {
        Some(l) => (l, false),
        None => {
            let plain = Socket {
                opts: Options {
                    v6only: srv.opts.v6only,
                    ..Options::default()
                },
                kept: Vec::new(),
                ..srv.clone()
            };
            let l = new_socket(&plain, above)?;
            setopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            let (a, n) = sockaddr(&srv.local);
            // SAFETY: bind reads `n` bytes of the address; listen on ours.
            if unsafe {
                libc::bind(l, (&a as *const libc::sockaddr_storage).cast(), n) != 0
                    || libc::listen(l, 1) != 0
            } {
                let e = last("cannot listen at its address again");
                close(l);
                return Err(e);
            }
            (l, true)
        }
    };
    let r = (|| {
        let c = new_socket(cli, above)?;
        setopt(c, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        let (la, ln) = sockaddr(&cli.local);
        let (ra, rn) = sockaddr(&srv.local);
        // SAFETY: bind and connect read the addresses of the sizes
        // given; accept4 on our listener writes no address.
        if !bind_port(c, cli, &la, ln, warn) {
            close(c);
            return Err(last("cannot bind it again"));
        }
        let acc = unsafe {
            if libc::connect(c, (&ra as *const libc::sockaddr_storage).cast(), rn) != 0 {
                let e = last("cannot connect it again between its addresses");
                close(c);
                return Err(e);
            }
            libc::accept4(
                lis,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        setopt(
            c,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            cli.opts.reuseaddr as i32,
        );
        let acc = lift(acc, above).inspect_err(|_| close(c))?;
        Ok((acc, c))
    })();
    if temporary {
        close(lis);
    }
    r
}

/// A connection its listener had not accepted yet (nothing sent on it):
/// connected again to the listener's name (the process's own, made
/// already, or a daemon's). Where that fails it comes back as a
/// connection whose peer closed, said in `warn`.
fn pending(
    s: &Socket,
    socks: &[&Socket],
    made: &std::collections::HashMap<u64, i32>,
    above: i32,
    warn: &mut Vec<String>,
) -> Result<i32, String> {
    if s.family as i32 != libc::AF_UNIX {
        return tcp_pending(s, socks, made, above, warn);
    }
    let fd = new_socket(s, above)?;
    let (a, n) = sockaddr(&s.remote);
    // SAFETY: F_SETFL on our new socket (non-blocking: a full backlog must
    // not make the restart wait; its own mode is set when installed), then
    // connect, which reads `n` bytes of the address.
    if unsafe {
        libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        libc::connect(fd, (&a as *const libc::sockaddr_storage).cast(), n)
    } == 0
    {
        return Ok(fd);
    }
    warn.push(last(&format!(
        "socket fd {}: cannot connect it again (it comes back closed by its peer)",
        s.fd
    )));
    close(fd);
    make_pair(s, None, None, above).map(|(a, _)| a)
}

/// Binds the connecting end of a TCP connection to its port again; where
/// the kill left that port in `TIME_WAIT` (the kernel refuses it for up
/// to a minute) it connects from another port, said in `warn`. False on
/// any other failure.
fn bind_port(
    fd: i32,
    s: &Socket,
    a: &libc::sockaddr_storage,
    n: libc::socklen_t,
    warn: &mut Vec<String>,
) -> bool {
    // SAFETY: bind reads `n` bytes of the address.
    if unsafe { libc::bind(fd, (a as *const libc::sockaddr_storage).cast(), n) } == 0 {
        return true;
    }
    if std::io::Error::last_os_error().raw_os_error() != Some(libc::EADDRINUSE) {
        return false;
    }
    warn.push(format!(
        "socket fd {}: its port is still in use (TIME_WAIT after the kill): it connects from another",
        s.fd
    ));
    true
}

/// A TCP connection waiting in the accept queue of a listener of the
/// process, nothing sent on it: connected again from its port to that
/// listener (made again already, and listening: never to another
/// process's). Else a dropped connection, said in `warn`.
fn tcp_pending(
    s: &Socket,
    socks: &[&Socket],
    made: &std::collections::HashMap<u64, i32>,
    above: i32,
    warn: &mut Vec<String>,
) -> Result<i32, String> {
    let ours = socks
        .iter()
        .find(|l| l.role == ROLE_LISTEN && l.local == s.remote)
        .and_then(|l| made.get(&l.ino).copied())
        .is_some_and(|fd| getopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 1);
    let r = (|| {
        if !ours {
            return Err("its listener is not listening again".to_string());
        }
        let fd = new_socket(s, above)?;
        setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        let (la, ln) = sockaddr(&s.local);
        let (ra, rn) = sockaddr(&s.remote);
        // SAFETY: connect reads the address of the size given.
        let ok = bind_port(fd, s, &la, ln, warn)
            && unsafe { libc::connect(fd, (&ra as *const libc::sockaddr_storage).cast(), rn) == 0 };
        if !ok {
            let e = last("cannot connect it again from its port");
            close(fd);
            return Err(e);
        }
        its_reuseaddr(fd, s);
        Ok(fd)
    })();
    r.or_else(|e| {
        warn.push(format!(
            "socket fd {}: {e}; it comes back as a dropped connection",
            s.fd
        ));
        dropped(s, above)
    })
}

/// The stand-in of a socket whose peer was outside: its family and type,
/// failing on use as a dropped connection does (TCP: reset by the peer,
/// read ECONNRESET, write EPIPE; UNIX: the peer closed, read end of file,
/// write EPIPE).
fn dropped(s: &Socket, above: i32) -> Result<i32, String> {
    let name = format!("socket fd {}", s.fd);
    if s.family as i32 == libc::AF_UNIX {
        return make_pair(s, None, None, above).map(|(a, _)| a);
    }
    if s.stype as i32 != libc::SOCK_STREAM {
        return fresh(s, above);
    }
    let v6 = s.family as i32 == libc::AF_INET6;
    let loopback: Vec<u8> = if v6 {
        let mut a = vec![0u8; 28];
        a[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        a[23] = 1;
        a
    } else {
        let mut a = vec![0u8; 16];
        a[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        a[4..8].copy_from_slice(&[127, 0, 0, 1]);
        a
    };
    let plain = Socket {
        opts: Options::default(),
        kept: Vec::new(),
        groups: Vec::new(),
        ..s.clone()
    };
    let lis = new_socket(&plain, above)?;
    let cli = new_socket(s, above).inspect_err(|_| close(lis))?;
    let r = (|| {
        let (a, n) = sockaddr(&loopback);
        // SAFETY: bind, listen, getsockname, connect and accept on our
        // sockets with addresses of the sizes given.
        unsafe {
            let sa = (&a as *const libc::sockaddr_storage).cast();
            if libc::bind(lis, sa, n) != 0 || libc::listen(lis, 1) != 0 {
                return Err(last(&format!(
                    "{name}: cannot make its stand-in (loopback)"
                )));
            }
            let mut bound: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            libc::getsockname(
                lis,
                (&mut bound as *mut libc::sockaddr_storage).cast(),
                &mut len,
            );
            if libc::connect(cli, (&bound as *const libc::sockaddr_storage).cast(), len) != 0 {
                return Err(last(&format!("{name}: cannot make its stand-in")));
            }
            let srv = libc::accept4(
                lis,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            if srv < 0 {
                return Err(last(&format!("{name}: cannot make its stand-in")));
            }
            // Closed with a zero linger: the peer resets the connection.
            let lg = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                srv,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&lg as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            libc::close(srv);
            // The reset is there before the program reads.
            let mut pfd = libc::pollfd {
                fd: cli,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut pfd, 1, 1000);
        }
        Ok(())
    })();
    close(lis);
    if let Err(e) = r {
        close(cli);
        return Err(e);
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(a: std::net::SocketAddr) -> Vec<u8> {
        let std::net::SocketAddr::V4(a) = a else {
            unreachable!()
        };
        let mut v = vec![0u8; 16];
        v[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v[2..4].copy_from_slice(&a.port().to_be_bytes());
        v[4..8].copy_from_slice(&a.ip().octets());
        v
    }

    /// Whether a socket without SO_REUSEADDR can listen at the port.
    fn listens_at(port: u16) -> bool {
        let mut a = raw(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        a.resize(16, 0);
        let (sa, n) = sockaddr(&a);
        // SAFETY: socket, bind and listen on a socket of ours, the
        // address of the size given.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let ok = libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), n) == 0
                && libc::listen(fd, 1) == 0;
            libc::close(fd);
            ok
        }
    }

    /// The TIME_WAIT of the very pair of addresses is ended (its port can
    /// be listened at again without SO_REUSEADDR); a listener and a live
    /// connection at the addresses given are left alone.
    #[test]
    fn only_the_time_wait_of_those_addresses_is_ended() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The accepted end without SO_REUSEADDR (as a C program's).
        setopt(
            l.as_raw_fd_for_test(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            0,
        );
        let srv = l.local_addr().unwrap();
        let c = std::net::TcpStream::connect(srv).unwrap();
        let cli = c.local_addr().unwrap();
        let (a, _) = l.accept().unwrap();
        drop(a); // the accepting end closes first: its TIME_WAIT
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(c);
        drop(l);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!listens_at(srv.port()), "no TIME_WAIT to test with");
        // A listener and a live connection elsewhere.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        forget_time_wait(
            &raw(other.local_addr().unwrap()),
            &raw(live.local_addr().unwrap()),
        );
        assert_eq!(
            getopt(
                other.as_raw_fd_for_test(),
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN
            ),
            1
        );
        let (mut acc, _) = other.accept().unwrap();
        use std::io::{Read, Write};
        (&live).write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        acc.read_exact(&mut b).unwrap();
        forget_time_wait(&raw(srv), &raw(cli));
        if !listens_at(srv.port()) {
            // SAFETY: geteuid has no preconditions.
            assert_ne!(unsafe { libc::geteuid() }, 0, "the TIME_WAIT stayed");
            eprintln!("skipped: SOCK_DESTROY needs CAP_NET_ADMIN");
        }
    }

    trait RawFdForTest {
        fn as_raw_fd_for_test(&self) -> i32;
    }

    impl RawFdForTest for std::net::TcpListener {
        fn as_raw_fd_for_test(&self) -> i32 {
            std::os::fd::AsRawFd::as_raw_fd(self)
        }
    }
}
