//! Pipes and FIFOs (object kind 0x0200, format 1.8): one entry per pipe
//! the process holds an end of above stdio, with what is queued in it,
//! its capacity, and every descriptor with its own open file description
//! (shared by `dup`s, told apart with `kcmp(KCMP_FILE)`), file status
//! flags (`O_NONBLOCK`, `O_APPEND`, `O_DIRECT`, `O_ASYNC`), `F_SETOWN`
//! owner and `F_SETSIG` signal.
//!
//! Capture ([`capture`]) runs while the program's threads are suspended:
//! fstat, fcntl, poll and kcmp into fixed arrays, the queued bytes copied
//! with `tee(2)` through a probe pipe straight into the record (the
//! program's pipe keeps them); it must never allocate. A pipe whose other
//! side is held by another process (the process has only its read ends or
//! only its write ends, and the other side is still open somewhere) cannot
//! come back: each of its descriptors is named by a `NotRestorable` entry
//! of kind `pipe`. A pipe whose other side nobody holds any more is
//! restorable as it is: a pipe with that side closed.
//!
//! Restore ([`restore`], stage Descriptors) runs in the restarter: a named
//! FIFO with both sides in the process whose path still names the same
//! FIFO is opened there again; any other pipe is made anew. Each open file
//! description is opened through `/proc/self/fd` of that pipe, so dups
//! share their flags and the others do not; the queued bytes are written
//! back, the side the process did not hold is closed (a read then gives
//! EOF after the queued bytes, a write EPIPE: the stand-in accepted with
//! `--unrestorable=pipe`, as if the other process had exited), never
//! /dev/null. Descriptors 0-2 keep `restore::stdio`'s policy: a pipe with
//! an end at 0-2 has its other descriptors made copies of that end.

use super::fds::{last_err, reopen_via, Temps};
use super::{CaptureBuffers, KstateError};
use crate::capture::sys::{self, PathBuf, RawFd};
use crate::image::codec::{CodecError, Decoder, Encoder};

/// The kind `--unrestorable` names.
pub const KIND: &str = "pipe";

/// Both sides of the pipe are held by the process.
pub const PEER_INSIDE: u8 = 0;
/// The side the process does not hold is closed everywhere.
pub const PEER_CLOSED: u8 = 1;
/// The side the process does not hold is open in another process: not
/// restorable (its stand-in closes that side).
pub const PEER_OUTSIDE: u8 = 2;

/// Most distinct pipes one checkpoint captures.
const MAX_PIPES: usize = 256;
/// Most descriptors of one pipe.
const MAX_ENDS: usize = 64;
/// Largest capacity a pipe can be given (the kernel's hard limit is far
/// lower; a larger value in an image is hostile).
const MAX_SIZE: u32 = 1 << 30;

/// `KCMP_FILE` (linux/kcmp.h).
const KCMP_FILE: libc::c_long = 0;

/// Flags `F_SETFL` can set on a pipe.
const SETTABLE: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_ASYNC;

/// fcntl commands (asm-generic/fcntl.h, the same on every architecture
/// selfckpt supports) the libc crate does not export everywhere.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// `struct f_owner_ex`.
#[repr(C)]
struct OwnerEx {
    type_: i32,
    pid: i32,
}

/// `F_GETOWN_EX` owner types (linux/fcntl.h).
const OWNER_TID: i32 = 0;
pub(super) const OWNER_PGRP: i32 = 2;

/// One descriptor of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct End {
    pub fd: i32,
    /// The index (in the pipe's list) of the first descriptor sharing this
    /// one's open file description (its own index when none before does).
    pub desc: u32,
    /// `F_GETFL` with `O_CLOEXEC` for the descriptor's `FD_CLOEXEC`.
    pub flags: u32,
    /// `F_GETOWN_EX`: type (0 thread, 1 process, 2 process group) and id
    /// (0: no owner).
    pub owner_type: i32,
    pub owner: i32,
    /// Whether the owner was the process itself (its pid or main thread):
    /// given the restarted process's own pid.
    pub owner_self: u8,
    /// `F_GETSIG` (0: SIGIO).
    pub sig: i32,
}

impl End {
    pub(super) const ENCODED_LEN: usize = 25;

    pub(super) fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.i32(self.fd)?;
        e.u32(self.desc)?;
        e.u32(self.flags)?;
        e.i32(self.owner_type)?;
        e.i32(self.owner)?;
        e.u8(self.owner_self)?;
        e.i32(self.sig)
    }

    pub(super) fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        Ok(End {
            fd: d.i32()?,
            desc: d.u32()?,
            flags: d.u32()?,
            owner_type: d.i32()?,
            owner: d.i32()?,
            owner_self: d.u8()?,
            sig: d.i32()?,
        })
    }

    fn access(&self) -> i32 {
        self.flags as i32 & libc::O_ACCMODE
    }

    fn reads(&self) -> bool {
        self.access() != libc::O_WRONLY
    }

    fn writes(&self) -> bool {
        self.access() != libc::O_RDONLY
    }

    pub(super) fn words(&self) -> String {
        let f = self.flags as i32;
        let mut s = match self.access() {
            libc::O_RDONLY => "read".to_string(),
            libc::O_WRONLY => "write".to_string(),
            _ => "read-write".to_string(),
        };
        for (bit, w) in [
            (libc::O_NONBLOCK, " nonblock"),
            (libc::O_APPEND, " append"),
            (libc::O_DIRECT, " direct"),
            (libc::O_ASYNC, " async"),
            (libc::O_CLOEXEC, " cloexec"),
        ] {
            if f & bit != 0 {
                s.push_str(w);
            }
        }
        if self.owner != 0 {
            s.push_str(&format!(" owner {}", self.owner));
        }
        if self.sig != 0 {
            s.push_str(&format!(" sig {}", self.sig));
        }
        s
    }
}

/// One pipe or FIFO.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipe {
    pub dev: u64,
    pub ino: u64,
    /// `F_GETPIPE_SZ`.
    pub size: u32,
    /// [`PEER_INSIDE`], [`PEER_CLOSED`] or [`PEER_OUTSIDE`].
    pub peer: u8,
    /// The FIFO's path; empty for an anonymous pipe.
    pub path: Vec<u8>,
    /// What was queued in it (captured only where the process holds a
    /// read end).
    pub data: Vec<u8>,
    /// A packet-mode pipe's (`O_DIRECT`) packet lengths, in order, summing
    /// to `data`'s; empty for a byte stream.
    pub packets: Vec<u32>,
    pub ends: Vec<End>,
}

impl Pipe {
    pub fn encode(&self, e: &mut Encoder) -> Result<(), CodecError> {
        e.u64(self.dev)?;
        e.u64(self.ino)?;
        e.u32(self.size)?;
        e.u8(self.peer)?;
        e.bytes(&self.path)?;
        e.bytes(&self.data)?;
        e.u32(self.packets.len() as u32)?;
        self.packets.iter().try_for_each(|&x| e.u32(x))?;
        e.u32(self.ends.len() as u32)?;
        self.ends.iter().try_for_each(|x| x.encode(e))
    }

    pub fn decode(d: &mut Decoder) -> Result<Self, CodecError> {
        let (dev, ino, size, peer) = (d.u64()?, d.u64()?, d.u32()?, d.u8()?);
        let path = d.bytes()?.to_vec();
        let data = d.bytes()?.to_vec();
        let n = d.count(4)?;
        let packets = (0..n).map(|_| d.u32()).collect::<Result<_, _>>()?;
        let n = d.count(End::ENCODED_LEN)?;
        let ends = (0..n).map(|_| End::decode(d)).collect::<Result<_, _>>()?;
        Ok(Pipe {
            dev,
            ino,
            size,
            peer,
            path,
            data,
            packets,
            ends,
        })
    }

    /// Whether an end is at 0-2 (the stdio policy's).
    fn with_stdio(&self) -> bool {
        self.ends.iter().any(|x| (0..=2).contains(&x.fd))
    }

    /// The descriptors the restart makes (those above stdio).
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.ends.iter().map(|x| x.fd).filter(|&fd| fd > 2)
    }

    /// Hostile values: refused before a restart acts on them.
    pub fn check(&self) -> Result<(), String> {
        let name = || format!("pipe {}", self.ino);
        if self.peer > PEER_OUTSIDE {
            return Err(format!("{}: peer state {}", name(), self.peer));
        }
        if self.size > MAX_SIZE || self.data.len() > self.size as usize {
            return Err(format!(
                "{}: {} bytes queued in a pipe of {} bytes",
                name(),
                self.data.len(),
                self.size
            ));
        }
        let sum: u64 = self.packets.iter().map(|&x| x as u64).sum();
        if !self.packets.is_empty() && (sum != self.data.len() as u64 || self.packets.contains(&0))
        {
            return Err(format!(
                "{}: packets of {sum} bytes hold {} bytes",
                name(),
                self.data.len()
            ));
        }
        if self.ends.is_empty() || self.ends.len() > MAX_ENDS {
            return Err(format!("{}: {} descriptors", name(), self.ends.len()));
        }
        if self.path.contains(&0) {
            return Err(format!("{}: a path with a NUL byte", name()));
        }
        for (i, x) in self.ends.iter().enumerate() {
            if x.fd < 0
                || x.desc as usize > i
                || self.ends[x.desc as usize].desc != x.desc
                || x.flags as i32 & libc::O_ACCMODE == libc::O_ACCMODE
                || !(0..=64).contains(&x.sig)
                || !(OWNER_TID..=OWNER_PGRP).contains(&x.owner_type)
                || x.owner < 0
            {
                return Err(format!("{}: fd {} has impossible values", name(), x.fd));
            }
        }
        Ok(())
    }

    /// One line of `inspect`.
    pub fn describe(&self) -> String {
        let what = if self.path.is_empty() {
            "pipe".to_string()
        } else {
            format!("FIFO {}", crate::image::show::shown(&self.path))
        };
        let ends: Vec<String> = self
            .ends
            .iter()
            .map(|x| format!("fd {} {}", x.fd, x.words()))
            .collect();
        format!(
            "{what} {} bytes queued of {}{}: {}",
            self.data.len(),
            self.size,
            match self.peer {
                PEER_CLOSED => ", other side closed",
                PEER_OUTSIDE => ", other side in another process",
                _ => "",
            },
            ends.join(", ")
        )
    }

    /// `inspect --json`.
    pub fn json(&self) -> serde_json::Value {
        let peer = ["inside", "closed", "outside"]
            .get(self.peer as usize)
            .copied()
            .unwrap_or("?");
        serde_json::json!({
            "kind": KIND,
            "ino": self.ino,
            "path": crate::image::show::shown(&self.path),
            "size": self.size,
            "queued": self.data.len(),
            "peer": peer,
            "ends": self.ends.iter().map(|x| serde_json::json!({
                "fd": x.fd, "desc": x.desc, "flags": x.flags, "owner_type": x.owner_type,
                "owner": x.owner, "owner_self": x.owner_self != 0, "sig": x.sig,
            })).collect::<Vec<_>>(),
        })
    }
}

// ---- Capture (suspended world: no allocation) ----

/// Calls `f` with every descriptor number not skipped.
fn each_fd(
    skip_fd: &dyn Fn(i32) -> bool,
    f: impl FnMut(i32) -> Result<(), KstateError>,
) -> Result<(), KstateError> {
    super::fds::for_each_fd(skip_fd, f)
}

/// Whether `a` and `b` are one open file description (kcmp; without it,
/// the same number only).
pub(super) fn same_description(a: i32, b: i32) -> bool {
    let pid = sys::getpid() as libc::c_long;
    // SAFETY: raw kcmp comparing two of our descriptors; no memory passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            a as libc::c_long,
            b as libc::c_long,
        )
    };
    r == 0 || a == b
}

/// `poll` events of `fd` now.
fn revents(fd: i32) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on one pollfd of ours, no wait.
    if unsafe { libc::poll(&mut p, 1, 0) } == 1 {
        p.revents
    } else {
        0
    }
}

/// What `fd` is: its flags, owner and signal, as the `desc`-th
/// description of its object. None if it is not open. No allocation.
pub(super) fn end_of(fd: i32, desc: u32) -> Option<End> {
    let me = sys::getpid() as i32;
    // SAFETY: fcntl queries on a descriptor of ours; F_GETOWN_EX writes
    // one f_owner_ex.
    let (owner, sig) = unsafe {
        let mut owner = OwnerEx { type_: 0, pid: 0 };
        if libc::fcntl(fd, F_GETOWN_EX, &mut owner) != 0 {
            owner.pid = 0;
        }
        (owner, libc::fcntl(fd, F_GETSIG))
    };
    let flags = super::fds::fd_flags(fd)?;
    Some(End {
        fd,
        desc,
        flags,
        owner_type: owner.type_,
        owner: owner.pid.max(0),
        owner_self: (owner.pid == me && owner.type_ != OWNER_PGRP) as u8,
        sig: sig.max(0),
    })
}

/// The ends of the pipe `(dev, ino)` among the descriptors not skipped.
fn ends_of(
    skip_fd: &dyn Fn(i32) -> bool,
    dev: u64,
    ino: u64,
    ends: &mut [End; MAX_ENDS],
) -> Result<usize, KstateError> {
    let mut n = 0usize;
    each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        if (st.st_dev, st.st_ino) != (dev, ino) {
            return Ok(());
        }
        if n == MAX_ENDS {
            return Err(KstateError::Pipe("a pipe has more than 64 descriptors"));
        }
        let desc = ends[..n]
            .iter()
            .position(|x| same_description(x.fd, fd))
            .map_or(n, |i| ends[i].desc as usize);
        let Some(end) = end_of(fd, desc as u32) else {
            return Ok(());
        };
        ends[n] = end;
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Writes the entry of every pipe the process holds an end of, and a
/// `NotRestorable` entry for each descriptor of a pipe whose other side
/// is in another process. No allocation.
pub fn capture(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let mut seen = [(0u64, 0u64); MAX_PIPES];
    let mut count = 0usize;
    let mut probe: Option<[RawFd; 2]> = None;
    let mut ends = [End::default(); MAX_ENDS];
    each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        let id = (st.st_dev, st.st_ino);
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO || seen[..count].contains(&id) {
            return Ok(());
        }
        if count == MAX_PIPES {
            return Err(KstateError::Pipe("the process holds more than 256 pipes"));
        }
        seen[count] = id;
        count += 1;
        let n = ends_of(skip_fd, id.0, id.1, &mut ends)?;
        if n == 0 {
            return Ok(());
        }
        capture_one(e, bufs, id, &ends[..n], &mut probe)
    })
}

fn capture_one(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    (dev, ino): (u64, u64),
    ends: &[End],
    probe: &mut Option<[RawFd; 2]>,
) -> Result<(), KstateError> {
    let stdio = ends.iter().any(|x| x.fd <= 2);
    let reader = ends.iter().find(|x| x.reads()).map(|x| x.fd);
    let writer = ends.iter().find(|x| x.writes()).map(|x| x.fd);
    let peer = match (reader, writer) {
        (Some(_), Some(_)) => PEER_INSIDE,
        // pipe_poll: POLLHUP on a read end once no writer is left,
        // POLLERR on a write end once no reader is.
        (Some(r), None) if revents(r) & libc::POLLHUP != 0 => PEER_CLOSED,
        (None, Some(w)) if revents(w) & libc::POLLERR != 0 => PEER_CLOSED,
        _ => PEER_OUTSIDE,
    };
    let first = ends[0].fd;
    // SAFETY: F_GETPIPE_SZ on a descriptor of ours.
    let size = unsafe { libc::fcntl(first, libc::F_GETPIPE_SZ) }.max(0) as u32;
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/self/fd/").push_u64(first as u64);
    let path_len = match sys::readlink(p.as_cstr_bytes(), bufs.path) {
        Ok(n) if bufs.path[..n].starts_with(b"/") => n,
        _ => 0,
    };
    let named = path_len > 0;
    // What is queued must fit the record buffer, with room kept for the
    // rest of KERNEL; else the pipe is named, without its bytes.
    let held = reader.filter(|_| !stdio).map_or(0, fionread);
    let left = e.remaining();
    let fits = held.saturating_add(RESERVE.min(left / 2)) <= left;
    let reader_to_read = reader.filter(|_| !stdio && fits);
    super::objects::entry(e, super::objects::Kind::Pipe, 0, |e| {
        e.u64(dev)?;
        e.u64(ino)?;
        e.u32(size)?;
        e.u8(peer)?;
        e.bytes(&bufs.path[..path_len])?;
        let packets = ends.iter().any(|x| x.flags as i32 & libc::O_DIRECT != 0);
        match reader_to_read {
            Some(r) => queued(e, r, packets, probe)?,
            None => {
                e.bytes(b"")?;
                e.u32(0)?;
            }
        }
        e.u32(ends.len() as u32)?;
        ends.iter().try_for_each(|x| x.encode(e))?;
        Ok::<(), KstateError>(())
    })?;
    if !fits {
        let mut text = [0u8; 200];
        let mut t = super::unrestorable::Words::new(&mut text);
        t.push(b"pipe holding ");
        t.push_u64(held as u64);
        t.push(b" bytes: more than this checkpoint's record buffer has room for");
        let len = t.len();
        super::objects::NotRestorable::capture(e, first, KIND, &text[..len])?;
    }
    if peer != PEER_OUTSIDE || stdio {
        return Ok(());
    }
    for x in ends {
        let mut text = [0u8; 200];
        let mut t = super::unrestorable::Words::new(&mut text);
        if named {
            t.push(b"FIFO ");
            let path = &bufs.path[..path_len];
            t.push(&path[..path.len().min(120)]);
            t.push(b" to another process (");
        } else {
            t.push(b"pipe to another process (");
        }
        t.push(match x.access() {
            libc::O_RDONLY => b"read end)".as_slice(),
            libc::O_WRONLY => b"write end)",
            _ => b"read-write end)",
        });
        let len = t.len();
        super::objects::NotRestorable::capture(e, x.fd, KIND, &text[..len])?;
    }
    Ok(())
}

/// Room kept in the record buffer for what follows in KERNEL (at most
/// half of what is left).
const RESERVE: usize = 256 << 10;

/// The bytes queued in the pipe `fd` reads (0 if it cannot tell).
fn fionread(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return 0;
    }
    n.max(0) as usize
}

/// Most packets of a packet-mode pipe recorded (a pipe holds at most one
/// per page of its capacity).
const MAX_PACKETS: usize = 1024;

/// Encodes what is queued in the pipe `fd` reads (and, for a packet-mode
/// pipe, the packets' lengths), copied with `tee(2)` into the probe pipe
/// (made on first use, grown as needed) and read from there straight into
/// the record: in packet mode one buffer, so one packet, per read.
fn queued(
    e: &mut Encoder,
    fd: i32,
    packets: bool,
    probe: &mut Option<[RawFd; 2]>,
) -> Result<(), KstateError> {
    let n = fionread(fd);
    if n == 0 {
        e.bytes(b"")?;
        e.u32(0)?;
        return Ok(());
    }
    if probe.is_none() {
        *probe = Some(probe_pipe()?);
    }
    let Some([rd, wr]) = probe.as_ref() else {
        return Err(KstateError::Pipe("no probe pipe"));
    };
    let mode = libc::O_NONBLOCK | if packets { libc::O_DIRECT } else { 0 };
    // SAFETY: fcntl on our probe pipe, then tee between two pipes.
    let copied = unsafe {
        if libc::fcntl(wr.raw(), libc::F_GETPIPE_SZ) < n as i32
            && libc::fcntl(wr.raw(), libc::F_SETPIPE_SZ, n as i32) < 0
        {
            return Err(KstateError::Pipe("a pipe holds more than a pipe may"));
        }
        if libc::fcntl(rd.raw(), libc::F_SETFL, mode) != 0 {
            return Err(KstateError::Pipe("cannot set the probe pipe's mode"));
        }
        libc::tee(fd, wr.raw(), n, libc::SPLICE_F_NONBLOCK)
    };
    if copied != n as isize {
        return Err(KstateError::Pipe("tee copied less than the pipe holds"));
    }
    let mut lens = [0u32; MAX_PACKETS];
    let mut count = 0usize;
    e.bytes_with(n, |buf| {
        let mut off = 0;
        while off < buf.len() {
            // SAFETY: reading into the record buffer's free part.
            let r =
                unsafe { libc::read(rd.raw(), buf[off..].as_mut_ptr().cast(), buf.len() - off) };
            if r <= 0 || count == MAX_PACKETS {
                return Err(KstateError::Pipe("cannot read the probe pipe"));
            }
            lens[count] = r as u32;
            count += 1;
            off += r as usize;
        }
        Ok(off)
    })??;
    let count = if packets { count } else { 0 };
    e.u32(count as u32)?;
    lens[..count].iter().try_for_each(|&x| e.u32(x))?;
    Ok(())
}

/// A non-blocking pipe to tee into: [read end, write end].
pub(crate) fn probe_pipe() -> Result<[RawFd; 2], KstateError> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(KstateError::Pipe("cannot create a probe pipe"));
    }
    Ok([RawFd::from_raw(fds[0]), RawFd::from_raw(fds[1])])
}

// ---- Restore (the restarter: ordinary Rust) ----

/// The pipe to open the descriptions of: (a descriptor of it open for
/// reading and writing, whether it is the FIFO at the path). A FIFO with
/// both sides inside whose path still names it is opened there; anything
/// else is a new pipe.
fn pipe_to_use(p: &Pipe, held: &mut Temps, warn: &mut Vec<String>) -> std::io::Result<i32> {
    if !p.path.is_empty() && p.peer == PEER_INSIDE {
        match super::fds::probe(&p.path) {
            Ok((probe, st))
                if st.st_mode & libc::S_IFMT == libc::S_IFIFO
                    && (st.st_dev, st.st_ino) == (p.dev, p.ino) =>
            {
                return held.keep(reopen_via(
                    std::os::fd::AsRawFd::as_raw_fd(&probe),
                    libc::O_RDWR,
                ));
            }
            Ok(_) => warn.push(format!(
                "the FIFO {} is another file now: an anonymous pipe stands in for it",
                crate::image::show::shown(&p.path)
            )),
            Err(e) => warn.push(format!(
                "the FIFO {} cannot be opened ({e}): an anonymous pipe stands in for it",
                crate::image::show::shown(&p.path)
            )),
        }
    }
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(last_err());
    }
    let rd = held.keep(Ok(fds[0]));
    let _ = held.keep(Ok(fds[1]));
    // Both sides through one descriptor: the read end reopened read-write
    // (the pipe's write end is then not needed).
    held.keep(reopen_via(rd?, libc::O_RDWR))
}

/// Makes the pipe again with its descriptors at their numbers; returns
/// warnings (an error leaves the numbers free).
pub fn restore(p: &Pipe) -> Result<Vec<String>, String> {
    let mut warn = Vec::new();
    let name = |fd: i32| {
        if p.path.is_empty() {
            format!("fd {fd} pipe")
        } else {
            format!("fd {fd} FIFO {}", crate::image::show::shown(&p.path))
        }
    };
    let first = p.fds().next().unwrap_or(-1);
    if p.with_stdio() {
        return Ok(copy_stdio(p));
    }
    let mut held = Temps::new(p.ends.iter().map(|x| x.fd).max().unwrap_or(2));
    let rw = pipe_to_use(p, &mut held, &mut warn).map_err(|e| format!("{}: {e}", name(first)))?;
    // SAFETY: F_GETPIPE_SZ / F_SETPIPE_SZ on our descriptor.
    unsafe {
        let want = p.size.max(p.data.len() as u32) as i32;
        if libc::fcntl(rw, libc::F_GETPIPE_SZ) != want
            && libc::fcntl(rw, libc::F_SETPIPE_SZ, want) < 0
        {
            if p.data.len() as i32 > libc::fcntl(rw, libc::F_GETPIPE_SZ) {
                return Err(format!(
                    "{}: cannot hold its {} queued bytes again: {}",
                    name(first),
                    p.data.len(),
                    last_err()
                ));
            }
            warn.push(format!(
                "{}: its capacity of {} bytes cannot be given back: {}",
                name(first),
                p.size,
                last_err()
            ));
        }
    }
    // One open file description each, flags, owner and signal set on it.
    let mut descs: Vec<(u32, i32)> = Vec::new();
    for x in &p.ends {
        if descs.iter().any(|d| d.0 == x.desc) {
            continue;
        }
        let fd = held
            .keep(reopen_via(rw, x.access()))
            .map_err(|e| format!("{}: {e}", name(x.fd)))?;
        descs.push((x.desc, fd));
    }
    queue_again(rw, p)
        .map_err(|e| format!("{}: cannot queue its bytes again: {e}", name(first)))?;
    for x in &p.ends {
        let Some(&(_, tmp)) = descs.iter().find(|d| d.0 == x.desc) else {
            continue;
        };
        if p.ends[x.desc as usize].fd == x.fd {
            if let Err(e) = set_status(tmp, x, SETTABLE) {
                warn.push(format!("{}: {e}", name(x.fd)));
            }
        }
        let cloexec = x.flags as i32 & libc::O_CLOEXEC;
        // SAFETY: dup3 onto a number the restarter has freed.
        if unsafe { libc::dup3(tmp, x.fd, cloexec) } < 0 {
            return Err(format!("{}: {}", name(x.fd), last_err()));
        }
    }
    // `held` closes the temporaries: the side the process did not hold
    // has no descriptor left.
    Ok(warn)
}

/// Writes the queued bytes back through `rw` (its own description):
/// packet by packet, in packet mode, for a packet-mode pipe.
fn queue_again(rw: i32, p: &Pipe) -> std::io::Result<()> {
    let whole = [p.data.len() as u32];
    let (chunks, mode) = if p.packets.is_empty() {
        (&whole[..], libc::O_NONBLOCK)
    } else {
        (&p.packets[..], libc::O_NONBLOCK | libc::O_DIRECT)
    };
    // SAFETY: F_SETFL on our temporary descriptor.
    if unsafe { libc::fcntl(rw, libc::F_SETFL, mode) } != 0 {
        return Err(last_err());
    }
    let mut at = 0usize;
    for &len in chunks {
        let chunk = p
            .data
            .get(at..at + len as usize)
            .ok_or_else(|| std::io::Error::other("packets longer than the bytes queued"))?;
        let mut off = 0;
        while off < chunk.len() {
            // SAFETY: writing within our buffer to our non-blocking descriptor.
            let n = unsafe { libc::write(rw, chunk[off..].as_ptr().cast(), chunk.len() - off) };
            if n <= 0 {
                return Err(last_err());
            }
            off += n as usize;
        }
        at += len as usize;
    }
    Ok(())
}

/// Sets the description's status flags (those of `settable`), owner and
/// signal.
pub(super) fn set_status(fd: i32, x: &End, settable: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on our descriptor; F_SETOWN_EX reads one f_owner_ex.
    unsafe {
        if x.sig != 0 && libc::fcntl(fd, F_SETSIG, x.sig) != 0 {
            return Err(last_err());
        }
        if x.owner != 0 {
            let owner = OwnerEx {
                type_: x.owner_type,
                pid: if x.owner_self != 0 {
                    libc::getpid()
                } else {
                    x.owner
                },
            };
            if libc::fcntl(fd, F_SETOWN_EX, &owner) != 0 {
                return Err(std::io::Error::other(format!(
                    "its owner {} cannot be set again: {}",
                    x.owner,
                    last_err()
                )));
            }
        }
        if libc::fcntl(fd, libc::F_SETFL, x.flags as i32 & settable) != 0 {
            return Err(last_err());
        }
    }
    Ok(())
}

/// A pipe with an end at 0-2: those follow the stdio policy; the others
/// become copies of the stdio end of their description (or of their
/// side).
fn copy_stdio(p: &Pipe) -> Vec<String> {
    let mut warn = Vec::new();
    for x in p.ends.iter().filter(|x| x.fd > 2) {
        let from = p
            .ends
            .iter()
            .find(|s| s.fd <= 2 && s.desc == x.desc)
            .or_else(|| p.ends.iter().find(|s| s.fd <= 2 && s.reads() == x.reads()));
        let Some(from) = from else {
            warn.push(format!(
                "fd {} pipe: its other descriptors are the restarter's stdio; it cannot be made again",
                x.fd
            ));
            continue;
        };
        let cloexec = x.flags as i32 & libc::O_CLOEXEC;
        // SAFETY: dup3 of a stdio descriptor onto a freed number.
        if unsafe { libc::dup3(from.fd, x.fd, cloexec) } < 0 {
            warn.push(format!("fd {} pipe: {}", x.fd, last_err()));
        }
    }
    warn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kstate::objects::{Object, Objects};

    fn fcntl(fd: i32, cmd: i32) -> i32 {
        // SAFETY: fcntl query on a test descriptor.
        unsafe { libc::fcntl(fd, cmd) }
    }

    fn pipes_of(out: &[u8]) -> Objects {
        Objects::decode(&mut Decoder::new(out)).unwrap()
    }

    #[test]
    fn a_pipe_round_trips_and_hostile_values_are_refused() {
        let p = Pipe {
            dev: 1,
            ino: 2,
            size: 4096,
            peer: PEER_INSIDE,
            path: b"/tmp/f".to_vec(),
            data: b"abc".to_vec(),
            packets: vec![1, 2],
            ends: vec![
                End {
                    fd: 3,
                    flags: libc::O_RDONLY as u32,
                    ..End::default()
                },
                End {
                    fd: 4,
                    desc: 1,
                    flags: (libc::O_WRONLY | libc::O_NONBLOCK) as u32,
                    ..End::default()
                },
            ],
        };
        let mut buf = vec![0u8; 512];
        let mut e = Encoder::new(&mut buf);
        p.encode(&mut e).unwrap();
        let n = e.len();
        assert_eq!(Pipe::decode(&mut Decoder::new(&buf[..n])).unwrap(), p);
        assert_eq!(p.check(), Ok(()));
        let bad = |f: &dyn Fn(&mut Pipe)| {
            let mut q = p.clone();
            f(&mut q);
            q.check().is_err()
        };
        assert!(bad(&|q| q.data = vec![0; 5000]), "more than it holds");
        assert!(bad(&|q| q.packets = vec![1, 3]), "packets beyond the data");
        assert!(bad(&|q| q.packets = vec![0, 3]), "an empty packet");
        assert!(bad(&|q| q.ends[1].desc = 2), "a description ahead");
        assert!(bad(&|q| q.ends[0].desc = 1), "a description ahead");
        assert!(bad(&|q| q.ends[0].fd = -3));
        assert!(bad(&|q| q.peer = 9));
        assert!(bad(&|q| q.ends.clear()));
        assert!(bad(&|q| q.ends[0].sig = 99));
        assert!(
            p.describe().contains("fd 4 write nonblock"),
            "{}",
            p.describe()
        );
    }

    #[test]
    fn both_ends_come_back_with_data_and_flags_of_their_own() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [rd, wr] = fds;
        // SAFETY: test descriptors: flags, a dup, queued bytes.
        let dup = unsafe {
            libc::fcntl(wr, libc::F_SETFL, libc::O_NONBLOCK);
            libc::write(wr, b"queued".as_ptr().cast(), 6);
            libc::fcntl(wr, libc::F_DUPFD_CLOEXEC, 0)
        };
        let mine = [rd, wr, dup];
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| !mine.contains(&fd))?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = pipes_of(&out);
        let Some(Object::Pipe(p)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert_eq!(p.peer, PEER_INSIDE);
        assert_eq!(p.data, b"queued");
        assert_eq!(p.ends.len(), 3);
        let w = p.ends.iter().position(|x| x.fd == wr).unwrap();
        let d = p.ends.iter().find(|x| x.fd == dup).unwrap();
        assert_eq!(d.desc as usize, p.ends[w].desc as usize, "a dup shares");
        let mut buf = [0u8; 16];
        // SAFETY: the program's pipe still holds its bytes; closing it.
        unsafe {
            assert_eq!(libc::read(rd, buf.as_mut_ptr().cast(), 16), 6);
            for fd in mine {
                libc::close(fd);
            }
        }
        let moved = Pipe {
            ends: p
                .ends
                .iter()
                .map(|x| End {
                    fd: x.fd + 900,
                    ..*x
                })
                .collect(),
            ..p.clone()
        };
        assert_eq!(restore(&moved), Ok(vec![]));
        let (r, w, d) = (rd + 900, wr + 900, dup + 900);
        assert_eq!(
            fcntl(r, libc::F_GETFL) & libc::O_NONBLOCK,
            0,
            "reader blocks"
        );
        assert_ne!(fcntl(w, libc::F_GETFL) & libc::O_NONBLOCK, 0);
        assert_ne!(fcntl(d, libc::F_GETFL) & libc::O_NONBLOCK, 0);
        assert_ne!(fcntl(r, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
        // SAFETY: using and closing the remade pipe.
        unsafe {
            assert_eq!(libc::write(d, b"+more".as_ptr().cast(), 5), 5);
            assert_eq!(libc::read(r, buf.as_mut_ptr().cast(), 16), 11);
            for fd in [r, w, d] {
                libc::close(fd);
            }
        }
        assert_eq!(&buf[..11], b"queued+more");
    }

    #[test]
    fn a_pipe_to_another_process_is_named_and_its_stand_in_has_that_side_closed() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [rd, wr] = fds;
        // SAFETY: queued bytes in our test pipe.
        unsafe { libc::write(wr, b"last".as_ptr().cast(), 4) };
        // Only the read end is captured: the write end counts as another
        // process's.
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| fd != rd)?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = pipes_of(&out);
        let Some(Object::Pipe(p)) = objs.items.first() else {
            panic!("{objs:?}");
        };
        assert_eq!(p.peer, PEER_OUTSIDE);
        let probs = objs.problems();
        assert_eq!(probs.len(), 1, "{probs:?}");
        assert_eq!(probs[0].kind, "pipe");
        assert_eq!(
            probs[0].text,
            format!("fd {rd} pipe to another process (read end)")
        );
        // SAFETY: closing the test pipe.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        let moved = Pipe {
            ends: vec![End {
                fd: 940,
                ..p.ends[0]
            }],
            ..p.clone()
        };
        assert_eq!(restore(&moved), Ok(vec![]));
        let mut buf = [0u8; 16];
        // SAFETY: reading the stand-in: its bytes, then EOF.
        unsafe {
            assert_eq!(libc::read(940, buf.as_mut_ptr().cast(), 16), 4);
            assert_eq!(libc::read(940, buf.as_mut_ptr().cast(), 16), 0, "EOF");
            libc::close(940);
        }
    }

    #[test]
    fn a_pipe_holding_more_than_the_record_has_room_for_is_named() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors; then queued bytes.
        unsafe {
            assert_eq!(
                libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK),
                0
            );
            libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 16);
            let big = [7u8; 40000];
            assert_eq!(libc::write(fds[1], big.as_ptr().cast(), big.len()), 40000);
        }
        // The test capture's record buffer is 64 KiB.
        let out = crate::kstate::captured(|e, bufs| {
            capture(e, bufs, &|fd| !fds.contains(&fd))?;
            crate::kstate::objects::end(e)?;
            Ok(())
        });
        let objs = pipes_of(&out);
        let probs = objs.problems();
        assert_eq!(probs.len(), 1, "{objs:?}");
        assert!(
            probs[0]
                .text
                .contains("pipe holding 40000 bytes: more than"),
            "{}",
            probs[0].text
        );
        // SAFETY: closing the test pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
