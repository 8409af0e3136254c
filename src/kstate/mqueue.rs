//! POSIX message queues (`mq_open`; object kind 0x0204): one entry per
//! queue the process holds descriptors of (the `mqueue` file system: a
//! descriptor's link is the queue's name, `/NAME`, with " (deleted)" once
//! unlinked). Each entry holds the name (or that it was unlinked), mode,
//! attributes (`mq_maxmsg`, `mq_msgsize`), the queued messages with their
//! priorities, the `mq_notify` registration as far as it can be known,
//! and every descriptor with its access mode and `O_NONBLOCK`.
//!
//! Capture ([`capture`]) runs while the program's threads are parked
//! (and, in a tree, every member's): no allocation. The messages are read
//! with zero-timeout receives from a description of selfckpt's own
//! (opened through `/proc/self/fd`, so the program's flags stay), written
//! straight into the record, and sent back in the same order with their
//! priorities, so the running program loses nothing. A registration of the
//! process itself, noted by `interpose::mq_notify`, is taken back before
//! the drain and made again after it (the refill would fire it
//! otherwise); one of another process makes a non-empty queue not
//! readable (its messages are named not restorable here: a tree takes them
//! from the member that owns the registration). The drain holds an
//! exclusive `flock` of that description, so that members of a tree that
//! share the queue take turns. A queue whose messages do not fit the
//! budget is a `NotRestorable` entry of kind `mqueue`.
//!
//! Restore ([`restore`], stage Descriptors; [`make`] and [`place`] for a
//! tree): a named queue is made with its name and attributes (`O_EXCL`:
//! one that exists already is used only if its attributes are the
//! image's, and is emptied first, saying how many messages it held); an
//! unlinked one under a random name unlinked at once. The messages are
//! sent back with their priorities, and each description opened again
//! with its access mode and `O_NONBLOCK` at its numbers. The registration
//! is made again by the restarted process itself ([`after_restart`]),
//! from a table in the library's memory, once its threads exist.

use super::fds::{last_err, reopen_via, Temps};
use super::pipes::same_description;
use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf, RawFd};
use crate::image::codec::{CodecError, Decoder, Encoder};
use crate::interpose::mq_notify::Registration;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering::*};

/// The kind `--unrestorable` names.
pub const KIND: &str = "mqueue";
/// The mqueue file system's magic (`MQUEUE_MAGIC`).
const MQUEUE_MAGIC: i64 = 0x1980_0202;
/// Most queues and descriptors of one queue a checkpoint keeps.
const MAX_QUEUES: usize = 64;
const MAX_ENDS: usize = 64;
/// Most message bytes one checkpoint keeps over all queues.
pub const BUDGET: usize = 2 << 20;
/// Room kept in the record buffer for what follows in KERNEL.
const RESERVE: usize = 256 << 10;
/// Largest message size and count a reader accepts (the kernel's hard
/// limits: `HARD_MSGSIZEMAX`, `HARD_MSGMAX`).
const MAX_MSGSIZE: u64 = 16 << 20;
const MAX_MSGMAX: u64 = 65536;
/// Flags kept per descriptor.
const FLAGS: i32 = libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Who is told when a message arrives in the empty queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Notify {
    /// No registration.
    None = 0,
    /// The process itself, `SIGEV_SIGNAL` (signo, value).
    Signal = 1,
    /// The process itself, `SIGEV_NONE`.
    Quiet = 2,
    /// The process itself, `SIGEV_THREAD` through selfckpt's helper.
    Thread = 3,
    /// Another process (`pid`): not made again by this one.
    Other = 4,
}

impl Notify {
    fn from_u8(v: u8) -> Option<Notify> {
        [
            Notify::None,
            Notify::Signal,
            Notify::Quiet,
            Notify::Thread,
            Notify::Other,
        ]
        .into_iter()
        .find(|n| *n as u8 == v)
    }

    fn of(reg: &Registration) -> Notify {
        match reg.how as i32 {
            libc::SIGEV_SIGNAL => Notify::Signal,
            libc::SIGEV_NONE => Notify::Quiet,
            _ => Notify::Thread,
        }
    }
}

/// One descriptor of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct End {
    pub fd: i32,
    /// Index of the first descriptor sharing its open file description.
    pub desc: u32,
    /// Access mode, `O_NONBLOCK`, and `O_CLOEXEC` for `FD_CLOEXEC`.
    pub flags: u32,
}

impl End {
    const ENCODED_LEN: usize = 12;
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub prio: u32,
    pub data: Vec<u8>,
}

/// One queue (object kind 0x0204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mqueue {
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` (permission bits used).
    pub mode: u32,
    /// Its name, `/NAME` (the last it had, if unlinked).
    pub name: Vec<u8>,
    pub unlinked: bool,
    pub maxmsg: u64,
    pub msgsize: u64,
    /// Whether `messages` holds what was queued (else named not
    /// restorable, or left to another member of a tree).
    pub saved: bool,
    /// In the order they are received: priority, then arrival.
    pub messages: Vec<Message>,
    pub notify: Notify,
    /// The registration's signal (`Signal`).
    pub signo: u32,
    /// The owner of the registration (0 none), as the checkpoint saw it.
    pub notify_pid: u32,
    pub ends: Vec<End>,
}

impl Mqueue {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.dev)?;
        e.u64(self.ino)?;
        e.u32(self.mode)?;
        e.bytes(&self.name)?;
        e.u8(self.unlinked as u8)?;
        e.u64(self.maxmsg)?;
        e.u64(self.msgsize)?;
        e.u8(self.notify as u8)?;
        e.u32(self.signo)?;
        e.u32(self.notify_pid)?;
        e.u32(self.ends.len() as u32)?;
        for x in &self.ends {
            e.i32(x.fd)?;
            e.u32(x.desc)?;
            e.u32(x.flags)?;
        }
        e.u8(self.saved as u8)?;
        e.u32(self.messages.len() as u32)?;
        for m in &self.messages {
            e.u32(m.prio)?;
            e.bytes(&m.data)?;
        }
        Ok(())
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let flag = |v: u8, field: &'static str| match v {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(CodecError::BadValue {
                field,
                value: v as u64,
            }),
        };
        let (dev, ino, mode) = (d.u64()?, d.u64()?, d.u32()?);
        let name = d.bytes()?.to_vec();
        let unlinked = flag(d.u8()?, "unlinked flag of a message queue")?;
        let (maxmsg, msgsize) = (d.u64()?, d.u64()?);
        let n = d.u8()?;
        let notify = Notify::from_u8(n).ok_or(CodecError::BadValue {
            field: "notification of a message queue",
            value: n as u64,
        })?;
        let (signo, notify_pid) = (d.u32()?, d.u32()?);
        let n = d.count(End::ENCODED_LEN)?;
        let ends = (0..n)
            .map(|_| {
                Ok(End {
                    fd: d.i32()?,
                    desc: d.u32()?,
                    flags: d.u32()?,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        let saved = flag(d.u8()?, "saved flag of a message queue")?;
        let n = d.count(8)?;
        let messages = (0..n)
            .map(|_| {
                Ok(Message {
                    prio: d.u32()?,
                    data: d.bytes()?.to_vec(),
                })
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(Mqueue {
            dev,
            ino,
            mode,
            name,
            unlinked,
            maxmsg,
            msgsize,
            saved,
            messages,
            notify,
            signo,
            notify_pid,
            ends,
        })
    }

    /// The descriptors the restart makes (0-2 keep `restore::stdio`'s
    /// policy).
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.ends.iter().map(|x| x.fd).filter(|&fd| fd > 2)
    }

    fn shown(&self) -> String {
        crate::image::show::shown(&self.name)
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        let name = || format!("message queue {}", self.shown());
        let valid_name = self.name.len() >= 2
            && self.name.len() <= 256
            && self.name[0] == b'/'
            && !self.name[1..].contains(&b'/')
            && !self.name.contains(&0);
        if !valid_name {
            return Err(format!("{}: not a queue name", name()));
        }
        if !(1..=MAX_MSGMAX).contains(&self.maxmsg) || !(1..=MAX_MSGSIZE).contains(&self.msgsize) {
            return Err(format!(
                "{}: maxmsg {} msgsize {} out of range",
                name(),
                self.maxmsg,
                self.msgsize
            ));
        }
        if self.messages.len() as u64 > self.maxmsg
            || self
                .messages
                .iter()
                .any(|m| m.data.len() as u64 > self.msgsize || m.prio >= 32768)
        {
            return Err(format!("{}: messages beyond its attributes", name()));
        }
        if !self.saved && !self.messages.is_empty() {
            return Err(format!("{}: messages of a queue not saved", name()));
        }
        if self.notify == Notify::Signal && !(1..=64).contains(&self.signo) {
            return Err(format!("{}: notification signal {}", name(), self.signo));
        }
        if self.ends.is_empty() || self.ends.len() > MAX_ENDS {
            return Err(format!("{}: {} descriptors", name(), self.ends.len()));
        }
        for (i, x) in self.ends.iter().enumerate() {
            if x.fd < 0
                || x.desc as usize > i
                || self.ends[x.desc as usize].desc != x.desc
                || x.flags as i32 & !FLAGS != 0
                || x.flags as i32 & libc::O_ACCMODE == libc::O_ACCMODE
            {
                return Err(format!("{}: fd {} has impossible values", name(), x.fd));
            }
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|x| {
                format!(
                    "fd {} {}{}",
                    x.fd,
                    access(x.flags),
                    if x.flags as i32 & libc::O_NONBLOCK != 0 {
                        " nonblocking"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let notify = match self.notify {
            Notify::None => String::new(),
            Notify::Signal => format!(", notifies with signal {}", self.signo),
            Notify::Quiet => ", notification SIGEV_NONE".into(),
            Notify::Thread => ", notifies a thread (SIGEV_THREAD)".into(),
            Notify::Other => format!(", notification of process {}", self.notify_pid),
        };
        format!(
            "message queue {}{} maxmsg {} msgsize {}: {}{notify}: {}",
            self.shown(),
            if self.unlinked { " (unlinked)" } else { "" },
            self.maxmsg,
            self.msgsize,
            if self.saved {
                format!("{} messages", self.messages.len())
            } else {
                "messages not saved".into()
            },
            ends.join(", ")
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": KIND,
            "name": self.shown(),
            "unlinked": self.unlinked,
            "mode": format!("{:o}", self.mode & 0o7777),
            "maxmsg": self.maxmsg,
            "msgsize": self.msgsize,
            "saved": self.saved,
            "messages": self.messages.iter().map(|m| serde_json::json!({
                "prio": m.prio, "bytes": m.data.len(),
            })).collect::<Vec<_>>(),
            "notify": self.notify as u8,
            "signo": self.signo,
            "notify_pid": self.notify_pid,
            "ends": self.ends.iter().map(|x| serde_json::json!({
                "fd": x.fd, "desc": x.desc, "flags": x.flags,
            })).collect::<Vec<_>>(),
        })
    }
}

fn access(flags: u32) -> &'static str {
    match flags as i32 & libc::O_ACCMODE {
        libc::O_RDONLY => "read",
        libc::O_WRONLY => "write",
        _ => "read-write",
    }
}

// ---- Capture (suspended world: no allocation) ----

/// Whether `fd` is a message queue descriptor. No allocation.
pub fn is_mqueue(fd: i32) -> bool {
    // SAFETY: statfs is plain old data; fstatfs writes it.
    let mut sf: libc::statfs = unsafe { core::mem::zeroed() };
    // SAFETY: fstatfs on a descriptor number, into our struct.
    unsafe { libc::fstatfs(fd, &mut sf) == 0 && sf.f_type as i64 == MQUEUE_MAGIC }
}

/// Whether the file at `path` (a `/proc/PID/fd/N` link) is a message
/// queue.
pub fn is_mqueue_path(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data.
    let mut sf: libc::statfs = unsafe { core::mem::zeroed() };
    // SAFETY: a valid C string and our struct.
    unsafe { libc::statfs(c.as_ptr(), &mut sf) == 0 && sf.f_type as i64 == MQUEUE_MAGIC }
}

/// The kernel's `struct mq_attr` of `fd`.
fn getattr(fd: i32) -> Option<libc::mq_attr> {
    // SAFETY: mq_attr is plain old data.
    let mut a: libc::mq_attr = unsafe { core::mem::zeroed() };
    // SAFETY: raw mq_getsetattr with no new attributes and an out-pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            fd as libc::c_long,
            core::ptr::null::<libc::mq_attr>(),
            &mut a as *mut libc::mq_attr,
        )
    };
    (r == 0).then_some(a)
}

/// A timeout already past: receives and sends that would wait fail at
/// once instead (whatever the descriptor's `O_NONBLOCK`).
const PAST: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// One message received without waiting: its length and priority.
fn receive(fd: i32, buf: &mut [u8]) -> Result<(usize, u32), i32> {
    let mut prio: libc::c_uint = 0;
    // SAFETY: raw mq_timedreceive into `buf`, with a priority out-pointer
    // and a timeout.
    let n = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd as libc::c_long,
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio as *mut libc::c_uint,
            &PAST as *const libc::timespec,
        )
    };
    if n < 0 {
        return Err(sys::Errno::last().0);
    }
    Ok((n as usize, prio))
}

/// Sends one message without waiting.
fn send(fd: i32, data: &[u8], prio: u32) -> Result<(), i32> {
    // SAFETY: raw mq_timedsend from `data`, with a timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            fd as libc::c_long,
            data.as_ptr(),
            data.len(),
            prio as libc::c_uint,
            &PAST as *const libc::timespec,
        )
    };
    if r < 0 {
        return Err(sys::Errno::last().0);
    }
    Ok(())
}

/// The number after `key` in a queue's status text (`QSIZE:... NOTIFY:0
/// SIGNO:10 NOTIFY_PID:1234`), 0 if absent.
fn status_field(text: &[u8], key: &[u8]) -> u64 {
    text.windows(key.len())
        .position(|w| w == key)
        .and_then(|at| sys::parse_u64(&text[at + key.len()..]))
        .map_or(0, |(v, _)| v)
}

/// Registrations the restarted process makes again (filled by
/// [`capture`], read by [`after_restart`], both while every other thread
/// is parked).
struct Table {
    len: AtomicUsize,
    regs: UnsafeCell<[(i32, Registration); MAX_QUEUES]>,
}

// SAFETY: see `Table`: one thread at a time, the others parked.
unsafe impl Sync for Table {}

static RESTORE: Table = Table {
    len: AtomicUsize::new(0),
    regs: UnsafeCell::new(
        [(
            -1,
            Registration {
                how: 0,
                signo: 0,
                value: 0,
            },
        ); MAX_QUEUES],
    ),
};

/// Writes the entry of every queue the process holds descriptors of (and
/// a `NotRestorable` entry for each whose messages cannot be kept). No
/// allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    RESTORE.len.store(0, Release);
    let mut seen = [(0u64, 0u64); MAX_QUEUES];
    let mut count = 0usize;
    let mut used = 0usize;
    let mut ends = [End::default(); MAX_ENDS];
    super::fds::for_each_fd(skip_fd, |fd| {
        if !is_mqueue(fd) {
            return Ok(());
        }
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        let id = (st.st_dev, st.st_ino);
        if seen[..count].contains(&id) {
            return Ok(());
        }
        if count == MAX_QUEUES {
            return Err(KstateError::Files(
                "the process holds more than 64 message queues",
            ));
        }
        seen[count] = id;
        count += 1;
        let mut n = 0usize;
        super::fds::for_each_fd(skip_fd, |fd| {
            match sys::fstat(fd) {
                Ok(s) if (s.st_dev, s.st_ino) == id && is_mqueue(fd) => {}
                _ => return Ok(()),
            }
            if n == MAX_ENDS {
                return Err(KstateError::Files(
                    "a message queue has more than 64 descriptors",
                ));
            }
            // SAFETY: fcntl queries on a descriptor of ours.
            let Some(flags) = super::fds::fd_flags(fd) else {
                return Ok(());
            };
            let desc = ends[..n]
                .iter()
                .position(|x| same_description(x.fd, fd))
                .map_or(n, |i| ends[i].desc as usize);
            ends[n] = End {
                fd,
                desc: desc as u32,
                flags: flags & (libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_CLOEXEC) as u32,
            };
            n += 1;
            Ok(())
        })?;
        if n == 0 {
            return Ok(());
        }
        capture_one(e, bufs, &st, &ends[..n], &mut used)
    })
}

/// Takes the exclusive `flock` of our description of a queue: members of
/// a tree sharing it drain it one after the other (each for a moment).
/// One held for 5 s is another process's: the checkpoint fails rather
/// than read a queue someone else may be reading. No allocation.
fn take_turn(fd: i32) -> Result<(), KstateError> {
    for _ in 0..5000 {
        // SAFETY: flock on our own description.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        if sys::Errno::last().0 != libc::EWOULDBLOCK {
            // No locks on this file system: nobody to take turns with.
            return Ok(());
        }
        let ms = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: a nanosleep with a valid timespec.
        unsafe { libc::nanosleep(&ms, core::ptr::null_mut()) };
    }
    Err(KstateError::Files(
        "a message queue is locked (flock) by another process for more than 5 s",
    ))
}

/// Why a queue's messages are not kept.
#[derive(Clone, Copy)]
enum NotSaved {
    Unreadable,
    OtherOwner(u32),
    Unknown,
    TooLarge(u64),
    Failed,
}

fn capture_one(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    st: &libc::stat,
    ends: &[End],
    used: &mut usize,
) -> Result<(), KstateError> {
    let first = ends[0].fd;
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/thread-self/fd/").push_u64(first as u64);
    let mut name_len = sys::readlink(p.as_cstr_bytes(), bufs.path).unwrap_or(0);
    const DELETED: &[u8] = b" (deleted)";
    if bufs.path[..name_len].ends_with(DELETED) {
        name_len -= DELETED.len();
    }
    let name_len = name_len.min(256);
    // A description of our own: readable whatever the program's access
    // mode, its flags untouched; its flock makes tree members take turns.
    let own = RawFd::open(p.as_cstr_bytes(), libc::O_RDWR, 0).ok();
    if let Some(o) = &own {
        take_turn(o.raw())?;
    }
    let attr = getattr(own.as_ref().map_or(first, |o| o.raw())).ok_or(KstateError::Files(
        "cannot read a message queue's attributes",
    ))?;
    let (maxmsg, msgsize, queued) = (
        attr.mq_maxmsg.max(0) as u64,
        attr.mq_msgsize.max(0) as u64,
        attr.mq_curmsgs.max(0) as u64,
    );
    // The status text: who is registered.
    let status_len = own
        .as_ref()
        .and_then(|o| o.pread(bufs.text, 0).ok())
        .unwrap_or(0);
    let text = &bufs.text[..status_len];
    let (owner, kernel_how, kernel_signo) = (
        status_field(text, b"NOTIFY_PID:") as u32,
        status_field(text, b"NOTIFY:") as u32,
        status_field(text, b"SIGNO:") as u32,
    );
    let me = sys::getpid();
    let noted = crate::interpose::mq_notify::registration(st.st_dev, st.st_ino);
    let reg = match noted {
        Some(r) if owner == me && r.how == kernel_how => Some(r),
        _ => None,
    };
    let notify = match (owner, reg) {
        (0, _) => Notify::None,
        (_, Some(r)) => Notify::of(&r),
        (o, None) if o == me => Notify::None,
        _ => Notify::Other,
    };
    let need = (queued as usize).saturating_mul(msgsize as usize + 8);
    let left = e.remaining();
    let why = if owner != 0 && owner == me && reg.is_none() {
        // A registration of ours the wrapper did not see: it cannot be
        // made again (and reading the messages would fire it).
        Some(NotSaved::Unknown)
    } else if queued == 0 {
        None
    } else if own.is_none() {
        Some(NotSaved::Unreadable)
    } else if owner != 0 && owner != me {
        Some(NotSaved::OtherOwner(owner))
    } else if *used + need > BUDGET
        || need.saturating_add(RESERVE.min(left / 2)) > left
        || queued as usize > bufs.text.len() / 12
    {
        Some(NotSaved::TooLarge(queued * msgsize))
    } else {
        None
    };
    let mut why = why;
    super::objects::entry(e, super::objects::Kind::Mqueue, 0, |e| {
        e.u64(st.st_dev)?;
        e.u64(st.st_ino)?;
        e.u32(st.st_mode)?;
        e.bytes(&bufs.path[..name_len])?;
        e.u8((st.st_nlink == 0) as u8)?;
        e.u64(maxmsg)?;
        e.u64(msgsize)?;
        e.u8(notify as u8)?;
        e.u32(match notify {
            Notify::Signal => reg.map_or(kernel_signo, |r| r.signo),
            _ => 0,
        })?;
        e.u32(owner)?;
        e.u32(ends.len() as u32)?;
        for x in ends {
            e.i32(x.fd)?;
            e.u32(x.desc)?;
            e.u32(x.flags)?;
        }
        let at_saved = e.len();
        e.u8(why.is_none() as u8)?;
        let at_count = e.reserve_u32()?;
        let (Some(o), None, true) = (&own, why, queued > 0) else {
            return Ok::<(), KstateError>(());
        };
        let q = o.raw();
        if let Some(r) = &reg {
            crate::interpose::mq_notify::bump(r);
            crate::interpose::mq_notify::unregister(q);
        }
        // Drain into the record; where each message lies is kept in the
        // text buffer (offset, length, priority: 12 bytes each).
        let rows = bufs.text.len() / 12;
        let mut got = 0usize;
        let mut failed = false;
        while got < rows {
            e.u32(0)?;
            let at_prio = e.len() - 4;
            let mut prio = 0;
            let r = e.bytes_with(msgsize as usize, |buf| {
                receive(q, buf).map(|(n, p)| {
                    prio = p;
                    n
                })
            })?;
            match r {
                Ok(()) => {}
                Err(errno) => {
                    // Empty now (ETIMEDOUT, EAGAIN): done. The 4 bytes of
                    // the priority go.
                    e.truncate(at_prio);
                    failed = errno != libc::ETIMEDOUT && errno != libc::EAGAIN;
                    break;
                }
            }
            e.patch_u32(at_prio, prio);
            let row = &mut bufs.text[got * 12..got * 12 + 12];
            row[..4].copy_from_slice(&((at_prio + 8) as u32).to_ne_bytes());
            let len = e.len() - (at_prio + 8);
            row[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
            row[8..].copy_from_slice(&prio.to_ne_bytes());
            got += 1;
        }
        // Everything back, in the order received: the program's queue is
        // as it was.
        let mut lost = false;
        for i in 0..got {
            let row = &bufs.text[i * 12..i * 12 + 12];
            let u = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let (off, len, prio) = (u(&row[..4]), u(&row[4..8]), u(&row[8..]) as u32);
            let data = &e.written()[off..off + len];
            lost |= send(q, data, prio).is_err();
        }
        if let Some(r) = &reg {
            crate::interpose::mq_notify::register_again(q, r);
        }
        if lost {
            return Err(KstateError::Files(
                "a message queue's messages could not all be sent back",
            ));
        }
        *used += e.len() - at_count;
        if failed || (got as u64) < queued.min(rows as u64) {
            // Not what the attributes said: keep nothing of it.
            e.truncate(at_saved);
            e.u8(0)?;
            e.u32(0)?;
            why = Some(NotSaved::Failed);
            return Ok(());
        }
        e.patch_u32(at_count, got as u32);
        Ok(())
    })?;
    if let Some(r) = reg {
        let n = RESTORE.len.load(Acquire);
        if n < MAX_QUEUES {
            // SAFETY: see `Table`.
            unsafe { (*RESTORE.regs.get())[n] = (first, r) };
            RESTORE.len.store(n + 1, Release);
        }
    }
    drop(own);
    if let Some(w) = why {
        let mut text = [0u8; 240];
        let mut t = super::unrestorable::Words::new(&mut text);
        t.push(b"message queue ");
        t.push(&bufs.path[..name_len.min(120)]);
        t.push(b": its ");
        t.push_u64(queued);
        match w {
            NotSaved::Unreadable => t.push(b" messages cannot be read (it cannot be opened again)"),
            NotSaved::OtherOwner(pid) => {
                t.push(b" messages cannot be read without firing the notification process ");
                t.push_u64(pid as u64);
                t.push(b" registered")
            }
            NotSaved::Unknown => t.push(
                b" messages are not kept: its mq_notify registration was made by the raw system call, which selfckpt cannot make again",
            ),
            NotSaved::TooLarge(bytes) => {
                t.push(b" messages (up to ");
                t.push_u64(bytes);
                t.push(b" bytes) do not fit this checkpoint's budget")
            }
            NotSaved::Failed => t.push(b" messages could not all be read"),
        };
        let len = t.len();
        super::objects::NotRestorable::capture(e, first, KIND, &text[..len])?;
    }
    Ok(())
}

// ---- Restart: the restarted process (no allocation) ----

/// In the restarted process, once every thread exists and before any is
/// released: the notification socket made again, then every registration
/// the capture noted. A failure is named on stderr.
pub fn after_restart() {
    crate::interpose::mq_notify::after_restart();
    let n = RESTORE.len.load(Acquire).min(MAX_QUEUES);
    // SAFETY: see `Table`.
    let regs = unsafe { &*RESTORE.regs.get() };
    for (fd, r) in &regs[..n] {
        if !crate::interpose::mq_notify::register_again(*fd, r) {
            let mut msg = PathBuf::<128>::new();
            msg.push(b"selfckpt: warning: the mq_notify registration of fd ")
                .push_u64(*fd as u64)
                .push(b" could not be made again after the restart\n");
            // SAFETY: a write of a buffer on the stack to stderr.
            unsafe { libc::write(2, msg.as_bytes().as_ptr().cast(), msg.as_bytes().len()) };
        }
    }
}

// ---- Restore (the restarter: ordinary Rust) ----

fn cstring(b: &[u8]) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(b).map_err(|_| "a name with a NUL byte".to_string())
}

fn mq_open(
    name: &std::ffi::CStr,
    flags: i32,
    mode: u32,
    attr: &libc::mq_attr,
) -> std::io::Result<i32> {
    // SAFETY: a valid C string; with O_CREAT, mode and attributes follow.
    let fd = unsafe {
        libc::mq_open(
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::mode_t,
            attr as *const libc::mq_attr,
        )
    };
    if fd < 0 {
        return Err(last_err());
    }
    Ok(fd)
}

/// Makes the queue again (see the module header) and fills it; returns
/// its descriptor (read-write, close-on-exec) and warnings.
pub fn make(x: &Mqueue) -> Result<(i32, Vec<String>), String> {
    let mut warn = Vec::new();
    let shown = x.shown();
    // SAFETY: mq_attr is plain old data.
    let mut attr: libc::mq_attr = unsafe { core::mem::zeroed() };
    attr.mq_maxmsg = x.maxmsg as _;
    attr.mq_msgsize = x.msgsize as _;
    let mode = x.mode & 0o777;
    let excl = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
    let q = if x.unlinked {
        let mut made = Err(std::io::Error::other("no free name"));
        for _ in 0..8 {
            let name =
                cstring(format!("/selfckpt-mq-{:016x}", super::deleted::random()).as_bytes())?;
            made = mq_open(&name, excl, 0o600, &attr);
            if made.is_ok() {
                // SAFETY: removing the name we just made.
                unsafe { libc::mq_unlink(name.as_ptr()) };
                break;
            }
            if made.as_ref().err().and_then(|e| e.raw_os_error()) != Some(libc::EEXIST) {
                break;
            }
        }
        made.map_err(|e| format!("message queue {shown} (unlinked): cannot make it again: {e}"))?
    } else {
        let name = cstring(&x.name)?;
        match mq_open(&name, excl, mode, &attr) {
            Ok(q) => q,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let q = mq_open(&name, libc::O_RDWR, 0, &attr).map_err(|e| {
                    format!("message queue {shown} exists and cannot be opened: {e}")
                })?;
                let now = getattr(q).unwrap_or(attr);
                if now.mq_maxmsg as u64 != x.maxmsg || now.mq_msgsize as u64 != x.msgsize {
                    // SAFETY: closing the queue we opened.
                    unsafe { libc::close(q) };
                    return Err(format!(
                        "message queue {shown} exists with maxmsg {} msgsize {}, the image's has \
                         maxmsg {} msgsize {}: remove it (mq_unlink) to restart",
                        now.mq_maxmsg, now.mq_msgsize, x.maxmsg, x.msgsize
                    ));
                }
                let mut buf = vec![0u8; x.msgsize as usize];
                let mut emptied = 0u64;
                while receive(q, &mut buf).is_ok() {
                    emptied += 1;
                }
                if emptied > 0 {
                    warn.push(format!(
                        "message queue {shown} existed with {emptied} messages (left by the \
                         process that was killed?): emptied, it holds the checkpoint's"
                    ));
                }
                q
            }
            Err(e) => return Err(format!("message queue {shown}: cannot make it again: {e}")),
        }
    };
    // SAFETY: fchmod on our queue (mq_open's mode went through the umask).
    unsafe { libc::fchmod(q, mode) };
    for m in &x.messages {
        if let Err(errno) = send(q, &m.data, m.prio) {
            // SAFETY: closing the queue we made.
            unsafe { libc::close(q) };
            return Err(format!(
                "message queue {shown}: cannot send its messages back: {}",
                std::io::Error::from_raw_os_error(errno)
            ));
        }
    }
    Ok((q, warn))
}

/// What stops the queue from coming back on this machine: a queue of
/// its name that exists with other attributes (the restart would have to
/// mix its messages with another's), or that cannot be opened.
pub fn problems_here(x: &Mqueue) -> Option<super::Problem> {
    if x.unlinked {
        return None;
    }
    let name = cstring(&x.name).ok()?;
    // SAFETY: mq_attr is plain old data.
    let attr: libc::mq_attr = unsafe { core::mem::zeroed() };
    let why = match mq_open(&name, libc::O_RDONLY, 0, &attr) {
        Ok(q) => {
            let now = getattr(q);
            // SAFETY: closing the queue just opened.
            unsafe { libc::close(q) };
            match now {
                Some(a) if a.mq_maxmsg as u64 == x.maxmsg && a.mq_msgsize as u64 == x.msgsize => {
                    return None
                }
                Some(a) => format!(
                    "exists with maxmsg {} msgsize {}, the image's has maxmsg {} msgsize {}: \
                     remove it (mq_unlink) to restart",
                    a.mq_maxmsg, a.mq_msgsize, x.maxmsg, x.msgsize
                ),
                None => "exists and its attributes cannot be read".into(),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return None,
        Err(e) => format!("exists and cannot be opened ({e})"),
    };
    Some(
        super::Problem::new(KIND, format!("message queue {} {why}", x.shown()))
            .of_fd(x.ends.first().map_or(-1, |e| e.fd)),
    )
}

/// Opens a description of queue `q` with `flags` (access mode,
/// `O_NONBLOCK`) and puts it at `fd` (close-on-exec as `flags` say).
pub fn place(q: i32, fd: i32, flags: u32) -> std::io::Result<()> {
    let d = reopen_via(q, flags as i32 & libc::O_ACCMODE)?;
    // SAFETY: F_SETFL on the description just opened.
    unsafe { libc::fcntl(d, libc::F_SETFL, flags as i32 & libc::O_NONBLOCK) };
    super::fds::install_at(d, fd, flags)
}

/// Makes the queue again with its descriptors at their numbers; returns
/// warnings (an error leaves the numbers free).
pub fn restore(x: &Mqueue) -> Result<Vec<String>, String> {
    let Some(max) = x.fds().max() else {
        return Ok(Vec::new());
    };
    let mut temps = Temps::new(max);
    let (q, warn) = make(x)?;
    let q = temps
        .keep(Ok(q))
        .map_err(|e| format!("message queue {}: {e}", x.shown()))?;
    let mut descs: Vec<(u32, i32)> = Vec::new();
    for e in x.ends.iter().filter(|e| e.fd > 2) {
        let name = || format!("fd {} (message queue {})", e.fd, x.shown());
        match descs.iter().find(|d| d.0 == e.desc) {
            Some(&(_, at)) => {
                let cloexec = if e.flags as i32 & libc::O_CLOEXEC != 0 {
                    libc::O_CLOEXEC
                } else {
                    0
                };
                // SAFETY: dup3 onto a number the restarter has freed.
                if unsafe { libc::dup3(at, e.fd, cloexec) } < 0 {
                    return Err(format!("{}: {}", name(), last_err()));
                }
            }
            None => {
                place(q, e.fd, e.flags).map_err(|err| format!("{}: {err}", name()))?;
                descs.push((e.desc, e.fd));
            }
        }
    }
    Ok(warn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    fn open(name: &str, flags: i32, maxmsg: i64, msgsize: i64) -> i32 {
        // SAFETY: mq_attr is plain old data.
        let mut a: libc::mq_attr = unsafe { core::mem::zeroed() };
        a.mq_maxmsg = maxmsg;
        a.mq_msgsize = msgsize;
        let c = std::ffi::CString::new(name).unwrap();
        mq_open(&c, flags | libc::O_CREAT, 0o600, &a).unwrap()
    }

    fn unlink(name: &str) {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: removing the test's queue name.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }

    fn capture_of(fds: &[i32]) -> Objects {
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| !fds.contains(&fd))?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        Objects::decode(&mut Decoder::new(&out)).unwrap()
    }

    #[test]
    fn a_queue_round_trips_its_messages_in_order_and_keeps_them() {
        let name = format!("/selfckpt-test-{}", std::process::id());
        unlink(&name);
        let q = open(&name, libc::O_RDWR, 8, 64);
        let w = open(&name, libc::O_WRONLY | libc::O_NONBLOCK, 8, 64);
        for (m, p) in [(&b"low"[..], 1), (b"high", 9), (b"low2", 1), (b"", 5)] {
            send(q, m, p).unwrap();
        }
        let objs = capture_of(&[q, w]);
        let Some(Object::Mqueue(x)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert!(objs.problems().is_empty(), "{objs:?}");
        assert_eq!(x.check(), Ok(()));
        assert_eq!((x.maxmsg, x.msgsize, x.unlinked), (8, 64, false));
        assert_eq!(x.name, name.as_bytes());
        let got: Vec<(u32, &[u8])> = x.messages.iter().map(|m| (m.prio, &m.data[..])).collect();
        assert_eq!(
            got,
            vec![(9, &b"high"[..]), (5, b""), (1, b"low"), (1, b"low2")]
        );
        assert_eq!(x.ends.len(), 2);
        assert_ne!(x.ends[1].flags as i32 & libc::O_NONBLOCK, 0);
        // The program's queue still holds everything.
        assert_eq!(getattr(q).unwrap().mq_curmsgs, 4);
        // Round trip of the record.
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        x.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(&Mqueue::decode(&mut Decoder::new(&buf[..n])).unwrap(), x);
        // Restore as another queue of the same name: the old one is emptied
        // and holds the checkpoint's messages once.
        send(q, b"later", 3).unwrap();
        let moved = Mqueue {
            ends: x
                .ends
                .iter()
                .map(|e| End {
                    fd: e.fd + 900,
                    ..*e
                })
                .collect(),
            ..x.clone()
        };
        let warn = restore(&moved).unwrap();
        assert_eq!(warn.len(), 1, "{warn:?}");
        let mut b = [0u8; 64];
        let (len, prio) = receive(q + 900, &mut b).unwrap();
        assert_eq!((&b[..len], prio), (&b"high"[..], 9));
        assert_eq!(getattr(q).unwrap().mq_curmsgs, 3);
        // SAFETY: F_GETFL on the restored descriptor.
        let fl = unsafe { libc::fcntl(w + 900, libc::F_GETFL) };
        assert_eq!(
            fl & (libc::O_ACCMODE | libc::O_NONBLOCK),
            libc::O_WRONLY | libc::O_NONBLOCK
        );
        // Another queue of that name with other attributes is refused.
        unlink(&name);
        let other = open(&name, libc::O_RDWR, 4, 64);
        assert!(restore(&moved).unwrap_err().contains("maxmsg 4"));
        unlink(&name);
        // SAFETY: closing the test's descriptors.
        unsafe {
            for fd in [q, w, q + 900, w + 900, other] {
                libc::close(fd);
            }
        }
        let bad = |f: &dyn Fn(&mut Mqueue)| {
            let mut y = x.clone();
            f(&mut y);
            y.check().is_err()
        };
        assert!(bad(&|y| y.name = b"/a/b".to_vec()));
        assert!(bad(&|y| y.maxmsg = 2));
        assert!(bad(&|y| y.messages[0].data = vec![0; 65]));
        assert!(bad(&|y| y.ends[0].desc = 1));
        assert!(bad(&|y| y.saved = false));
    }

    #[test]
    fn a_queue_too_large_for_the_record_is_named_and_kept_whole() {
        let name = format!("/selfckpt-test-big{}", std::process::id());
        unlink(&name);
        // 10 x 8 KiB: more than the test's 64 KiB record buffer.
        let q = open(&name, libc::O_RDWR, 10, 8192);
        unlink(&name);
        for i in 0..10u8 {
            send(q, &[i; 8192], 1).unwrap();
        }
        let objs = capture_of(&[q]);
        let probs = objs.problems();
        assert_eq!(probs.len(), 1, "{objs:?}");
        assert_eq!(probs[0].kind, KIND);
        assert!(probs[0].text.contains("do not fit"), "{}", probs[0].text);
        let Some(Object::Mqueue(x)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert!(!x.saved && x.messages.is_empty());
        assert_eq!(x.check(), Ok(()));
        // Untouched: all ten still there, in order.
        let mut b = vec![0u8; 8192];
        for i in 0..10u8 {
            assert_eq!(receive(q, &mut b), Ok((8192, 1)));
            assert_eq!(b[0], i);
        }
        // SAFETY: closing the test's queue.
        unsafe { libc::close(q) };
    }

    #[test]
    fn a_registration_made_by_the_raw_system_call_is_named() {
        let name = format!("/selfckpt-test-raw{}", std::process::id());
        unlink(&name);
        let q = open(&name, libc::O_RDWR, 4, 16);
        unlink(&name);
        #[repr(C)]
        struct Ev {
            value: u64,
            signo: i32,
            notify: i32,
            pad: [i32; 12],
        }
        let ev = Ev {
            value: 0,
            signo: libc::SIGURG,
            notify: libc::SIGEV_SIGNAL,
            pad: [0; 12],
        };
        // SAFETY: raw mq_notify with a kernel-layout sigevent (the queue
        // stays empty: it never fires).
        let r = unsafe { libc::syscall(libc::SYS_mq_notify, q as libc::c_long, &ev as *const Ev) };
        assert_eq!(r, 0);
        let objs = capture_of(&[q]);
        let probs = objs.problems();
        assert_eq!(probs.len(), 1, "{objs:?}");
        assert!(
            probs[0].text.contains("raw system call"),
            "{}",
            probs[0].text
        );
        // SAFETY: closing the test's queue (the registration goes with it).
        unsafe { libc::close(q) };
    }

    #[test]
    fn an_unlinked_queue_is_made_unlinked() {
        let name = format!("/selfckpt-test-u{}", std::process::id());
        unlink(&name);
        let q = open(&name, libc::O_RDWR, 4, 16);
        send(q, b"kept", 2).unwrap();
        unlink(&name);
        let objs = capture_of(&[q]);
        let Some(Object::Mqueue(x)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert!(x.unlinked);
        assert_eq!(x.messages.len(), 1);
        let moved = Mqueue {
            ends: vec![End {
                fd: q + 900,
                ..x.ends[0]
            }],
            ..x.clone()
        };
        assert_eq!(restore(&moved), Ok(vec![]));
        assert_eq!(sys::fstat(q + 900).unwrap().st_nlink, 0);
        let mut b = [0u8; 16];
        assert_eq!(receive(q + 900, &mut b), Ok((4, 2)));
        // SAFETY: closing the test's descriptors.
        unsafe {
            libc::close(q);
            libc::close(q + 900);
        }
    }
}
