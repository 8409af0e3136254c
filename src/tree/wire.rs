//! The tree's wire: fixed-size messages over `SOCK_SEQPACKET` Unix
//! sockets in the abstract namespace, between the root's checkpoint
//! thread and each member's.
//!
//! Every message is one [`Msg`] (one datagram, whole or not at all), so a
//! peer that dies mid-checkpoint shows as end of file, never as half a
//! message. Sending and receiving use only system calls on buffers the
//! caller owns: they may run while the program's threads are parked.
//!
//! Must never: allocate in [`send`] or [`recv`], block without a deadline,
//! or raise SIGPIPE (a member gone is an answer, not a crash).

use crate::capture::sys;

/// What a message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// Member to root: "I am a member" (pid, parent pid).
    Hello = 1,
    /// Root to member: hold forks and exits; `text` is the set's
    /// temporary directory.
    Freeze = 2,
    /// Member to root: forks and exits held (`ok`).
    Frozen = 3,
    /// Root to member: suspend your threads; `text` the member's
    /// children left out (`pid` of them, 4 bytes each), then the members
    /// with System V segments attached.
    Suspend = 4,
    /// Member to root: threads parked (`ok`).
    Suspended = 5,
    /// Root to member: every member is parked: dump (`ok`), or give up.
    Dump = 6,
    /// Member to root: the image is written (`ok`).
    Dumped = 7,
    /// Root to member: resume; `ok` says whether every member dumped.
    Resume = 8,
    /// Member to root: the image is durable in the set directory (`ok`;
    /// `text` is its file name).
    Committed = 9,
    /// Root to member: the set is committed (`ok`; `text` its path).
    Done = 10,
    /// Member to root: please take a checkpoint of the tree.
    Ask = 11,
}

impl Kind {
    pub fn from_u32(v: u32) -> Option<Kind> {
        use Kind::*;
        [
            Hello, Freeze, Frozen, Suspend, Suspended, Dump, Dumped, Resume, Committed, Done, Ask,
        ]
        .into_iter()
        .find(|k| *k as u32 == v)
    }
}

/// Longest text a message carries.
pub const TEXT_MAX: usize = 480;

/// One message.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Msg {
    kind: u32,
    pub ok: u32,
    pub pid: u32,
    pub ppid: u32,
    text_len: u32,
    text: [u8; TEXT_MAX],
}

impl Msg {
    pub const fn new(kind: Kind) -> Msg {
        Msg {
            kind: kind as u32,
            ok: 1,
            pid: 0,
            ppid: 0,
            text_len: 0,
            text: [0; TEXT_MAX],
        }
    }

    pub fn with_ok(mut self, ok: bool) -> Msg {
        self.ok = ok as u32;
        self
    }

    /// Sets the text (cut at [`TEXT_MAX`] bytes).
    pub fn with_text(mut self, t: &[u8]) -> Msg {
        let n = t.len().min(TEXT_MAX);
        self.text[..n].copy_from_slice(&t[..n]);
        self.text_len = n as u32;
        self
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u32(self.kind)
    }

    pub fn ok(&self) -> bool {
        self.ok != 0
    }

    pub fn text(&self) -> &[u8] {
        &self.text[..(self.text_len as usize).min(TEXT_MAX)]
    }
}

/// Why a message did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the peer is gone")]
    Gone,
    #[error("no answer in time")]
    Timeout,
    #[error("an unexpected message")]
    Unexpected,
    #[error("socket error {0}")]
    Sys(i32),
}

/// The abstract socket name of the tree whose run token is `instance`.
pub fn address(instance: &str, buf: &mut [u8; 108]) -> usize {
    let prefix = b"\0selfckpt-tree-";
    let inst = instance.as_bytes();
    let n = (prefix.len() + inst.len()).min(buf.len());
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..n].copy_from_slice(&inst[..n - prefix.len()]);
    n
}

fn sockaddr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; zeroed is valid.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sa.sun_path.len());
    for (d, s) in sa.sun_path.iter_mut().zip(&name[..n]) {
        *d = *s as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + n;
    (sa, len as libc::socklen_t)
}

/// Moves a new descriptor of ours high (from half the first 1024
/// numbers, or half the limit up), so the program's own descriptors get
/// the numbers they would get without selfckpt.
fn high(fd: i32) -> Result<i32, WireError> {
    // SAFETY: getrlimit writes one struct; fcntl and close on our own fd.
    unsafe {
        let mut lim: libc::rlimit = core::mem::zeroed();
        let soft = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1024) as i32
        } else {
            1024
        };
        let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, (soft / 2).max(3));
        let e = sys::Errno::last().0;
        libc::close(fd);
        if moved < 0 {
            return Err(WireError::Sys(e));
        }
        Ok(moved)
    }
}

fn socket() -> Result<i32, WireError> {
    // SAFETY: socket takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(WireError::Sys(sys::Errno::last().0));
    }
    high(fd)
}

/// A listening socket at `name` (abstract), non-blocking (see
/// [`accept`]), registered as the tree's.
pub fn listen(name: &[u8]) -> Result<i32, WireError> {
    let fd = super::make_own(|| {
        let fd = socket()?;
        // SAFETY: fcntl on our new socket.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        Ok(fd)
    })?;
    let (sa, len) = sockaddr(name);
    // SAFETY: bind and listen on our socket with a valid address.
    let r = unsafe {
        if libc::bind(
            fd,
            &sa as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        ) != 0
        {
            -1
        } else {
            libc::listen(fd, 128)
        }
    };
    if r != 0 {
        let e = sys::Errno::last().0;
        super::close_own(fd);
        return Err(WireError::Sys(e));
    }
    Ok(fd)
}

/// A socket connected to the listening socket at `name`, registered as
/// the tree's.
pub fn connect(name: &[u8]) -> Result<i32, WireError> {
    let fd = super::make_own(socket)?;
    let (sa, len) = sockaddr(name);
    // SAFETY: connect our socket to a valid address.
    let r = unsafe {
        libc::connect(
            fd,
            &sa as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if r != 0 {
        let e = sys::Errno::last().0;
        super::close_own(fd);
        return Err(WireError::Sys(e));
    }
    Ok(fd)
}

/// Accepts one connection waiting on the (non-blocking) listener `fd`,
/// registered as the tree's; `Sys(EAGAIN)` when none waits.
pub fn accept(fd: i32) -> Result<i32, WireError> {
    super::make_own(|| {
        // SAFETY: accept4 on our listening socket, no address wanted.
        let c = unsafe {
            libc::accept4(
                fd,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            return Err(WireError::Sys(sys::Errno::last().0));
        }
        high(c)
    })
}

pub fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing a descriptor this module made.
        unsafe { libc::close(fd) };
    }
}

/// The pid of the process at the other end of a connected socket.
pub fn peer_pid(fd: i32) -> Option<u32> {
    // SAFETY: ucred is plain data; getsockopt writes at most its size.
    unsafe {
        let mut cred: libc::ucred = core::mem::zeroed();
        let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
    }
}

/// Sends one message. Allocation-free.
pub fn send(fd: i32, m: &Msg) -> Result<(), WireError> {
    loop {
        // SAFETY: sending our own message struct; MSG_NOSIGNAL: no SIGPIPE.
        let r = unsafe {
            libc::send(
                fd,
                (m as *const Msg).cast(),
                core::mem::size_of::<Msg>(),
                libc::MSG_NOSIGNAL,
            )
        };
        if r == core::mem::size_of::<Msg>() as isize {
            return Ok(());
        }
        let e = sys::Errno::last().0;
        if r < 0 && e == libc::EINTR {
            continue;
        }
        return Err(if matches!(e, libc::EPIPE | libc::ECONNRESET) {
            WireError::Gone
        } else {
            WireError::Sys(e)
        });
    }
}

/// Receives one message, waiting up to `timeout_ms` (`None`: forever).
/// Allocation-free.
pub fn recv(fd: i32, timeout_ms: Option<u64>) -> Result<Msg, WireError> {
    let deadline = timeout_ms.map(|ms| sys::now_ns() + ms * 1_000_000);
    loop {
        // Past the deadline (or a timeout of 0): one look, no wait.
        let wait = match deadline {
            None => -1,
            Some(d) => {
                let now = sys::now_ns();
                if now >= d {
                    0
                } else {
                    ((d - now) / 1_000_000).clamp(1, i32::MAX as u64) as i32
                }
            }
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut p, 1, wait) };
        if r < 0 {
            let e = sys::Errno::last().0;
            if e == libc::EINTR {
                continue;
            }
            return Err(WireError::Sys(e));
        }
        if r == 0 {
            if wait == 0 {
                return Err(WireError::Timeout);
            }
            continue;
        }
        let mut m = Msg::new(Kind::Hello);
        // SAFETY: receiving into our own message struct.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut m as *mut Msg).cast(),
                core::mem::size_of::<Msg>(),
                libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return Err(WireError::Gone);
        }
        if n < 0 {
            let e = sys::Errno::last().0;
            if matches!(e, libc::EINTR | libc::EAGAIN) {
                continue;
            }
            return Err(if e == libc::ECONNRESET {
                WireError::Gone
            } else {
                WireError::Sys(e)
            });
        }
        if n as usize != core::mem::size_of::<Msg>() || m.kind().is_none() {
            return Err(WireError::Unexpected);
        }
        return Ok(m);
    }
}

/// Receives one message of kind `want` (any other is an error).
pub fn expect(fd: i32, want: Kind, timeout_ms: Option<u64>) -> Result<Msg, WireError> {
    let m = recv(fd, timeout_ms)?;
    if m.kind() != Some(want) {
        return Err(WireError::Unexpected);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_whole_and_a_closed_peer_is_gone() {
        let mut name = [0u8; 108];
        let inst = format!("unit-{}", std::process::id());
        let n = address(&inst, &mut name);
        let l = listen(&name[..n]).unwrap();
        let c = connect(&name[..n]).unwrap();
        let a = accept(l).unwrap();
        assert_eq!(peer_pid(a), Some(std::process::id()));
        send(c, &Msg::new(Kind::Freeze).with_text(b"/some/dir")).unwrap();
        let m = recv(a, Some(1000)).unwrap();
        assert_eq!(m.kind(), Some(Kind::Freeze));
        assert_eq!(m.text(), b"/some/dir");
        assert_eq!(recv(a, Some(20)).err(), Some(WireError::Timeout));
        // A timeout of 0 still takes a message that is there.
        send(c, &Msg::new(Kind::Ask)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(recv(a, Some(0)).unwrap().kind(), Some(Kind::Ask));
        assert_eq!(recv(a, Some(0)).err(), Some(WireError::Timeout));
        assert_eq!(
            expect(c, Kind::Frozen, Some(20)).err(),
            Some(WireError::Timeout)
        );
        close(c);
        assert_eq!(recv(a, Some(1000)).err(), Some(WireError::Gone));
        assert!(send(a, &Msg::new(Kind::Done)).is_err());
        close(a);
        close(l);
    }
}
