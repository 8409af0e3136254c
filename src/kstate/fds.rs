//! Open file descriptors.
//!
//! Capture (`encode_all`) lists /proc/self/fd with getdents and reads each
//! descriptor's link, fstat and fdinfo (offset, flags) into fixed buffers:
//! it runs while threads are suspended and must not allocate.
//!
//! Pipes and FIFOs are captured and made again by `kstate::pipes` (an
//! object entry each, from format 1.8 on); the pipe contents list of
//! older images is still read and given back here.
//!
//! Restore (`reopen`) runs in the restarter: regular files, directories and
//! character devices are reopened at their old numbers, with their flags
//! (never O_CREAT/O_TRUNC/O_EXCL) and offsets. Each is first looked at
//! through an `O_PATH` descriptor (`probe`: no symlink followed, nothing
//! opened for reading or writing, nothing that can block), judged by the
//! caller's check (is it the file the program had?), then opened through
//! that very descriptor with `O_NONBLOCK`, so what is opened is what was
//! judged. Descriptors 0-2 are the restarter's own where they were the
//! original run's stdio (the caller leaves them out, see
//! `restore::stdio`). In an image older than 1.8, a pipe the process
//! reads from (both ends inside it, or data queued in it) is made anew,
//! refilled, and its ends put at their numbers. Sockets, pipes to other
//! processes' ends and other kinds cannot be reopened from a path: they
//! are replaced by /dev/null so the number stays taken, and reported. The
//! event and timer descriptors are not reopened here: their own modules
//! (`eventfd`, `timerfd`, `signalfd`, `epoll`) make them anew from what an
//! image of format 1.6 on records, found through [`for_each_linked`] at
//! capture and put at their numbers with [`install_at`] (the caller leaves
//! them out of [`reopen`]).

use super::{CaptureBuffers, KstateError, PipeContents};
use crate::capture::sys::{self, PathBuf, RawFd};
use crate::image::codec::Encoder;
use crate::image::model::{FdEntry, FdKind, FileStamp};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

pub fn kind_of(mode: u32) -> FdKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FdKind::Regular,
        libc::S_IFDIR => FdKind::Directory,
        libc::S_IFCHR => FdKind::CharDevice,
        libc::S_IFIFO => FdKind::Pipe,
        libc::S_IFSOCK => FdKind::Socket,
        _ => FdKind::Other,
    }
}

/// Calls `f` with every descriptor number in /proc/self/fd but the
/// directory's own and those `skip_fd` names.
pub(crate) fn for_each_fd(
    skip_fd: &dyn Fn(i32) -> bool,
    mut f: impl FnMut(i32) -> Result<(), KstateError>,
) -> Result<(), KstateError> {
    let read_err = |errno| KstateError::Read {
        what: "/proc/self/fd",
        errno,
    };
    let dir = RawFd::open(
        b"/proc/thread-self/fd\0",
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(read_err)?;
    let mut dents = [0u8; 2048];
    loop {
        let n = dir.getdents(&mut dents).map_err(read_err)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n {
                break;
            }
            let name = &dents[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            off += reclen;
            let Some((fd, rest)) = sys::parse_u64(name) else {
                continue;
            };
            let fd = fd as i32;
            if rest.is_empty() && fd != dir.raw() && !skip_fd(fd) {
                f(fd)?;
            }
        }
    }
}

/// Calls `f` with the number and the fdinfo text of every descriptor not
/// skipped whose /proc/self/fd link is `link` (e.g.
/// `anon_inode:[eventfd]`), after `prepare` with its number (before its
/// fdinfo is read). The text is `Err(EFBIG)` when it does not fit
/// `bufs.text`. Fixed buffers only: no allocation.
pub fn for_each_linked(
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
    link: &[u8],
    prepare: &dyn Fn(i32),
    mut f: impl FnMut(i32, Result<&[u8], sys::Errno>) -> Result<(), KstateError>,
) -> Result<(), KstateError> {
    for_each_fd(skip_fd, |fd| {
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/thread-self/fd/").push_u64(fd as u64);
        match sys::readlink(p.as_cstr_bytes(), bufs.path) {
            Ok(n) if &bufs.path[..n] == link => {}
            _ => return Ok(()),
        }
        prepare(fd);
        let mut p = PathBuf::<48>::new();
        p.push(b"/proc/thread-self/fdinfo/").push_u64(fd as u64);
        match sys::read_file(p.as_cstr_bytes(), bufs.text) {
            Ok(n) => f(fd, Ok(&bufs.text[..n])),
            // Closed meanwhile: not there.
            Err(sys::Errno(libc::ENOENT)) => Ok(()),
            Err(e) => f(fd, Err(e)),
        }
    })
}

/// Descriptor `fd`'s flags as an image keeps them: its status flags
/// (`F_GETFL`, without `O_LARGEFILE`) with `O_CLOEXEC` if and only if
/// the descriptor is close-on-exec (`F_GETFD`); None if it is not open.
/// `F_GETFL` shows `O_CLOEXEC` for every descriptor of a description
/// opened with it, even one `dup2`'d without it (a pty slave given to a
/// shell as its stdio): kept, the restart closed it at the next exec.
/// No allocation.
pub fn fd_flags(fd: i32) -> Option<u32> {
    // SAFETY: an fcntl query on a descriptor of the process.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return None;
    }
    Some((fl & !(libc::O_LARGEFILE | libc::O_CLOEXEC)) as u32 | cloexec_of(fd))
}

/// `O_CLOEXEC` if descriptor `fd` is close-on-exec (`F_GETFD`), else 0.
fn cloexec_of(fd: i32) -> u32 {
    // SAFETY: F_GETFD reads the descriptor's flags.
    let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fdfl > 0 && fdfl & libc::FD_CLOEXEC != 0 {
        libc::O_CLOEXEC as u32
    } else {
        0
    }
}

/// The status flags of descriptor `fd` from its fdinfo text (octal `flags:`,
/// 0 if absent), with `O_CLOEXEC` if and only if the descriptor is
/// close-on-exec (`F_GETFD`). The fdinfo's own `O_CLOEXEC` bit is not
/// that: it is also set for every descriptor of a description opened with
/// `O_CLOEXEC`, even one `dup2`'d without it (a shell's stdio, a pty slave
/// given to a child): kept, it made the restart close such a descriptor at
/// the program's next exec. No allocation.
pub fn info_flags(fd: i32, info: &[u8]) -> u32 {
    let status = sys::field(info, b"flags:")
        .and_then(sys::parse_octal)
        .unwrap_or(0) as u32
        & !(libc::O_CLOEXEC as u32);
    status | cloexec_of(fd)
}

/// Puts the new descriptor `tmp` at `fd` (closing `tmp`), close-on-exec as
/// `flags` (the fdinfo flags) say. For objects made anew at restart.
pub fn install_at(tmp: i32, fd: i32, flags: u32) -> std::io::Result<()> {
    if tmp < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let cloexec = if flags as i32 & libc::O_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    if tmp == fd {
        // SAFETY: F_SETFD on the descriptor just made.
        unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFD,
                if cloexec != 0 { libc::FD_CLOEXEC } else { 0 },
            )
        };
        return Ok(());
    }
    // SAFETY: dup3 onto a number the restarter has freed; tmp is ours.
    let r = unsafe { libc::dup3(tmp, fd, cloexec) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing our temporary descriptor.
    unsafe { libc::close(tmp) };
    if r < 0 {
        return Err(err);
    }
    Ok(())
}

/// Encodes the count and every descriptor not skipped.
pub fn encode_all(
    e: &mut Encoder,
    bufs: &mut CaptureBuffers,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut count = 0u32;
    for_each_fd(skip_fd, |fd| {
        if encode_one(e, bufs, fd)? {
            count += 1;
        }
        Ok(())
    })?;
    e.patch_u32(at, count);
    Ok(())
}

/// Most distinct pipes whose contents one checkpoint captures.
const MAX_PIPES: usize = 64;

/// Encodes what is queued in every pipe the process reads from (stdio
/// too: a member of a pipeline reads one as its stdin): count, then
/// (inode, bytes) per non-empty pipe. From 1.8 on a pipe the process
/// restarts by itself takes its bytes from its object entry
/// (`kstate::pipes`); this list is what a tree restart refills the pipes
/// shared between its processes with. The bytes are
/// copied with `tee(2)` into a probe pipe made here, so the program's pipe
/// keeps them; nothing is allocated.
pub fn encode_pipe_contents(
    e: &mut Encoder,
    skip_fd: &dyn Fn(i32) -> bool,
) -> Result<(), KstateError> {
    let at = e.reserve_u32()?;
    let mut seen = [0u64; MAX_PIPES];
    let mut count = 0usize;
    let mut probe: Option<[RawFd; 2]> = None;
    for_each_fd(skip_fd, |fd| {
        let Ok(st) = sys::fstat(fd) else {
            return Ok(());
        };
        // SAFETY: fcntl(F_GETFL) on a descriptor of ours.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if st.st_mode & libc::S_IFMT != libc::S_IFIFO
            || fl < 0
            || fl & libc::O_ACCMODE != libc::O_RDONLY
            || seen[..count].contains(&st.st_ino)
        {
            return Ok(());
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 || queued <= 0 {
            return Ok(());
        }
        if count == MAX_PIPES {
            return Err(KstateError::Pipe("more than 64 pipes hold data"));
        }
        let queued = queued as usize;
        if probe.is_none() {
            probe = Some(super::pipes::probe_pipe()?);
        }
        let Some([rd, wr]) = &probe else {
            return Err(KstateError::Pipe("no probe pipe"));
        };
        // SAFETY: F_SETPIPE_SZ on our probe pipe, then tee between two pipes.
        let copied = unsafe {
            if libc::fcntl(wr.raw(), libc::F_GETPIPE_SZ) < queued as i32
                && libc::fcntl(wr.raw(), libc::F_SETPIPE_SZ, queued as i32) < 0
            {
                return Err(KstateError::Pipe("a pipe holds more than a pipe may"));
            }
            libc::tee(fd, wr.raw(), queued, libc::SPLICE_F_NONBLOCK)
        };
        if copied != queued as isize {
            return Err(KstateError::Pipe("tee copied less than the pipe holds"));
        }
        e.u64(st.st_ino)?;
        e.bytes_with(queued, |buf| rd.read_full(buf))?
            .map_err(|_| KstateError::Pipe("cannot read the probe pipe"))?;
        seen[count] = st.st_ino;
        count += 1;
        Ok(())
    })?;
    e.patch_u32(at, count as u32);
    Ok(())
}

/// Encodes one descriptor; false if it vanished meanwhile.
fn encode_one(e: &mut Encoder, bufs: &mut CaptureBuffers, fd: i32) -> Result<bool, KstateError> {
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/thread-self/fd/").push_u64(fd as u64);
    let Ok(path_len) = sys::readlink(p.as_cstr_bytes(), bufs.path) else {
        return Ok(false);
    };
    let Ok(st) = sys::fstat(fd) else {
        return Ok(false);
    };
    let mut p = PathBuf::<48>::new();
    p.push(b"/proc/thread-self/fdinfo/").push_u64(fd as u64);
    let n = sys::read_file(p.as_cstr_bytes(), bufs.text).map_err(|errno| KstateError::Read {
        what: "/proc/self/fdinfo",
        errno,
    })?;
    let info = &bufs.text[..n];
    let offset = sys::field(info, b"pos:")
        .and_then(sys::parse_u64)
        .map_or(0, |(v, _)| v);
    let flags = info_flags(fd, info);
    FdEntry {
        fd,
        kind: kind_of(st.st_mode) as u32,
        flags,
        offset,
        path: &bufs.path[..path_len],
        stamp: FileStamp::from_stat(&st),
    }
    .encode(e)?;
    Ok(true)
}

/// What happened to one descriptor at restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// Reopened from its path at its offset.
    File,
    /// An end of a pipe made anew (with its queued bytes).
    Pipe,
    /// Could not be reopened: /dev/null holds its number.
    Placeholder(String),
}

/// Flags that must never reach open(2) from an image.
const NEVER: i32 = libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL;

/// Reopens every descriptor given at its number, pipes with what was
/// queued in them (the caller leaves out the stdio the program gets from
/// the restarter). Call after the restarter has moved its own
/// descriptors above every number in the image.
/// `check` judges the file found at a path (its lstat) before it is opened;
/// a file it refuses is not opened (a placeholder holds the number).
pub fn reopen(entries: &[FdEntry], pipes: &[PipeContents], check: &Check) -> Vec<(i32, Reopened)> {
    let remade = remake_pipes(entries, pipes);
    entries
        .iter()
        .map(|ent| match remade.iter().find(|(fd, _)| *fd == ent.fd) {
            Some((_, r)) => (ent.fd, r.clone()),
            None => (ent.fd, reopen_one(ent, check)),
        })
        .collect()
}

/// Judges the file found at an entry's path before it is opened: `Err`
/// says why it is not the program's file.
pub type Check = dyn Fn(&FdEntry, &libc::stat) -> Result<(), String>;

/// Looks at what is at `path` without opening it for reading or writing:
/// an `O_PATH` descriptor, resolved without following any symlink (a
/// symlink at the last component is seen as one), and its fstat. Never
/// blocks (FIFOs and devices are not opened).
pub fn probe(path: &[u8]) -> std::io::Result<(std::os::fd::OwnedFd, libc::stat)> {
    use std::os::fd::FromRawFd;
    let c = CString::new(path).map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `how` (of the size given) and the C string.
    let mut fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    } as i32;
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            // A symlink on the way: it was not one at the checkpoint (the
            // image holds resolved paths).
            Some(libc::ELOOP) => {
                return Err(std::io::Error::other(
                    "a symbolic link is on its path (there was none at the checkpoint)",
                ))
            }
            // Kernels before 5.6: the last component at least.
            Some(libc::ENOSYS) => {
                // SAFETY: c is a valid C string; O_PATH opens nothing.
                fd = unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            _ => return Err(err),
        }
    }
    // SAFETY: fd is a descriptor we just opened and own.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let st = sys::fstat(fd).map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
    Ok((owned, st))
}

fn is_pipe(ent: &FdEntry) -> bool {
    ent.kind == FdKind::Pipe as u32 && ent.fd > 2
}

fn reads(ent: &FdEntry) -> bool {
    ent.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY
}

/// Makes anew each pipe the process reads from, refills it and installs
/// its ends; returns what happened to each descriptor it handled.
fn remake_pipes(entries: &[FdEntry], pipes: &[PipeContents]) -> Vec<(i32, Reopened)> {
    let mut done = Vec::new();
    let mut inodes: Vec<u64> = entries
        .iter()
        .filter(|e| is_pipe(e) && reads(e))
        .map(|e| e.stamp.ino)
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    for ino in inodes {
        let ends: Vec<&FdEntry> = entries
            .iter()
            .filter(|e| is_pipe(e) && e.stamp.ino == ino)
            .collect();
        let data = pipes
            .iter()
            .find(|p| p.ino == ino)
            .map_or(&[][..], |p| p.data);
        let has_writer = ends.iter().any(|e| !reads(e));
        if !has_writer && data.is_empty() {
            continue; // nothing to give back: a placeholder will do
        }
        // Above every number the image uses, so installing one end never
        // lands on the other.
        let above = entries.iter().map(|e| e.fd).max().unwrap_or(2) + 1;
        match new_pipe(data, above) {
            Ok([rd, wr]) => {
                for e in &ends {
                    let from = if reads(e) { rd } else { wr };
                    let r = install(from, e);
                    done.push((e.fd, r));
                }
                // SAFETY: closing the temporary ends (the installed copies stay).
                unsafe {
                    libc::close(rd);
                    libc::close(wr);
                }
            }
            Err(err) => {
                for e in &ends {
                    let _ = open_at_number(b"/dev/null", libc::O_RDWR, e.fd);
                    done.push((
                        e.fd,
                        Reopened::Placeholder(format!("fd {} (pipe): {err}", e.fd)),
                    ));
                }
            }
        }
    }
    done
}

/// A fresh pipe holding `data`, its ends numbered `above` or higher:
/// [read end, write end].
fn new_pipe(data: &[u8], above: i32) -> std::io::Result<[i32; 2]> {
    let mut made = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors.
    if unsafe { libc::pipe2(made.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = [-1i32; 2];
    for i in 0..2 {
        // SAFETY: duplicating and closing the descriptors we just made.
        unsafe {
            fds[i] = libc::fcntl(made[i], libc::F_DUPFD_CLOEXEC, above);
            libc::close(made[i]);
        }
    }
    if fds.contains(&-1) {
        let err = std::io::Error::last_os_error();
        // SAFETY: closing what was duplicated.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return Err(err);
    }
    let fail = |fds: [i32; 2]| {
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the pipe we made.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        err
    };
    if !data.is_empty() {
        // SAFETY: fcntl on our pipe; the write stays within data.
        unsafe {
            if libc::fcntl(fds[1], libc::F_GETPIPE_SZ) < data.len() as i32
                && libc::fcntl(fds[1], libc::F_SETPIPE_SZ, data.len() as i32) < 0
            {
                return Err(fail(fds));
            }
            let mut off = 0;
            while off < data.len() {
                let n = libc::write(fds[1], data[off..].as_ptr().cast(), data.len() - off);
                if n <= 0 {
                    return Err(fail(fds));
                }
                off += n as usize;
            }
        }
    }
    Ok(fds)
}

/// Puts a copy of `from` at the entry's number with its flags.
fn install(from: i32, ent: &FdEntry) -> Reopened {
    let flags = ent.flags as i32;
    let cloexec = if flags & libc::O_CLOEXEC != 0 {
        libc::O_CLOEXEC
    } else {
        0
    };
    // SAFETY: dup3 onto a number the restarter has freed; F_SETFL on it.
    let ok = unsafe {
        libc::dup3(from, ent.fd, cloexec) == ent.fd
            && libc::fcntl(ent.fd, libc::F_SETFL, flags & libc::O_NONBLOCK) == 0
    };
    if ok {
        Reopened::Pipe
    } else {
        Reopened::Placeholder(format!(
            "fd {} (pipe): {}",
            ent.fd,
            std::io::Error::last_os_error()
        ))
    }
}

fn reopen_one(ent: &FdEntry, check: &Check) -> Reopened {
    let kind = FdKind::from_u32(ent.kind).unwrap_or(FdKind::Other);
    let flags = (ent.flags as i32) & !NEVER;
    if flags & libc::O_PATH != 0 && ent.path.starts_with(b"/") && !ent.path.ends_with(b" (deleted)")
    {
        // Opens nothing: the probe's own O_PATH descriptor of the object
        // (a symlink itself, a FIFO unopened) is the program's.
        return match open_path_only(ent, flags, check) {
            Ok(()) => Reopened::File,
            Err(err) => stand_in(ent, libc::O_PATH | (flags & libc::O_CLOEXEC), err),
        };
    }
    if kind == FdKind::Directory && ent.path.starts_with(b"/") && ent.path.ends_with(b" (deleted)")
    {
        // Deleted (it was empty): an empty directory made, opened and
        // removed again.
        let r = super::deleted_dir::made_again(ent.path, |dir| {
            open_at_number(
                dir.as_os_str().as_bytes(),
                flags | libc::O_DIRECTORY,
                ent.fd,
            )
        });
        return match r {
            Ok(()) => Reopened::File,
            Err(err) => stand_in(ent, libc::O_RDONLY | (flags & libc::O_CLOEXEC), err),
        };
    }
    let reopenable = matches!(
        kind,
        FdKind::Regular | FdKind::Directory | FdKind::CharDevice
    ) && ent.path.starts_with(b"/")
        && !ent.path.ends_with(b" (deleted)");
    let result = if reopenable {
        open_checked(ent, flags, check).and_then(|()| {
            if kind == FdKind::Regular {
                // SAFETY: lseek on the descriptor we just installed.
                let r = unsafe { libc::lseek(ent.fd, ent.offset as i64, libc::SEEK_SET) };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    } else {
        Err(std::io::Error::other(format!(
            "{} cannot be reopened from a path",
            kind.noun()
        )))
    };
    match result {
        Ok(()) => Reopened::File,
        Err(err) => stand_in(ent, libc::O_RDWR | (flags & libc::O_CLOEXEC), err),
    }
}

/// /dev/null opened with `flags` at the entry's number, in place of what
/// could not be reopened (`err`), said so.
fn stand_in(ent: &FdEntry, flags: i32, err: std::io::Error) -> Reopened {
    let _ = open_at_number(b"/dev/null", flags, ent.fd);
    Reopened::Placeholder(format!(
        "fd {} ({}): {}",
        ent.fd,
        crate::image::show::shown(ent.path),
        err
    ))
}

/// An `O_PATH` descriptor at the entry's number: the probe's (`O_PATH |
/// O_NOFOLLOW`, the path as the kernel showed it, so the very object),
/// judged by `check`, with the entry's close-on-exec.
fn open_path_only(ent: &FdEntry, flags: i32, check: &Check) -> std::io::Result<()> {
    let (probe_fd, st) = probe(ent.path)?;
    check(ent, &st).map_err(std::io::Error::other)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(probe_fd);
    let cloexec = flags & libc::O_CLOEXEC != 0;
    if raw == ent.fd {
        if !cloexec {
            // SAFETY: clearing FD_CLOEXEC on the descriptor just made.
            unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
        }
        return Ok(());
    }
    // SAFETY: dup3 onto a number the restarter has freed; raw is ours and
    // closed after.
    let r = unsafe { libc::dup3(raw, ent.fd, if cloexec { libc::O_CLOEXEC } else { 0 }) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the probe's descriptor.
    unsafe { libc::close(raw) };
    if r < 0 {
        return Err(err);
    }
    Ok(())
}

/// Opens the entry's file at its number: probed, judged by `check`, then
/// opened through the probe's descriptor (the very file judged), with
/// `O_NONBLOCK` while opening (a device must not make open wait) and the
/// entry's own blocking mode afterwards.
fn open_checked(ent: &FdEntry, flags: i32, check: &Check) -> std::io::Result<()> {
    let (probe_fd, st) = probe(ent.path)?;
    check(ent, &st).map_err(std::io::Error::other)?;
    let mut via = PathBuf::<48>::new();
    via.push(b"/proc/thread-self/fd/")
        .push_u64(std::os::fd::AsRawFd::as_raw_fd(&probe_fd) as u64);
    // Without O_NOFOLLOW (a program's own, sqlite's for one): the
    // /proc/self/fd link is the magic link to the very file judged, which
    // O_NOFOLLOW would refuse (ELOOP); the probe followed no symlink.
    let opened = open_at_number(
        via.as_bytes(),
        (flags & !libc::O_NOFOLLOW) | libc::O_NONBLOCK | libc::O_NOCTTY,
        ent.fd,
    );
    if std::os::fd::AsRawFd::as_raw_fd(&probe_fd) == ent.fd {
        // The probe took the (free) number itself and the open replaced it
        // there (dup3): it must not be closed as the probe.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(probe_fd);
    } else {
        drop(probe_fd);
    }
    opened?;
    let now = sys::fstat(ent.fd).map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(std::io::Error::other("the file changed while being opened"));
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL on the descriptor just installed.
        unsafe { libc::fcntl(ent.fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    Ok(())
}

fn open_at_number(path: &[u8], flags: i32, fd: i32) -> std::io::Result<()> {
    let c = CString::new(std::ffi::OsStr::from_bytes(path).as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: c is a valid C string; flags never include O_CREAT, so no mode.
    let tmp = unsafe { libc::open(c.as_ptr(), flags & !libc::O_CLOEXEC & !NEVER) };
    if tmp < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if tmp != fd {
        let dflags = if flags & libc::O_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        // SAFETY: dup3 onto a number the restarter has freed; tmp is ours.
        let r = unsafe { libc::dup3(tmp, fd, dflags) };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing our temporary descriptor.
        unsafe { libc::close(tmp) };
        if r < 0 {
            return Err(err);
        }
    } else if flags & libc::O_CLOEXEC != 0 {
        // SAFETY: setting FD_CLOEXEC on our descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Temporaries of an object made at restart, numbered above every number
/// of the object's (so that
/// installing one end never lands on a temporary closed afterwards);
/// closed when dropped.
pub(crate) struct Temps(Vec<i32>, i32);

impl Temps {
    /// Temporaries above `max` (the object's highest number).
    pub(crate) fn new(max: i32) -> Self {
        Temps(Vec::new(), max + 1)
    }

    /// Takes `fd` (a temporary just made) above the object's numbers.
    pub(crate) fn keep(&mut self, fd: std::io::Result<i32>) -> std::io::Result<i32> {
        let fd = fd?;
        // SAFETY: duplicating and closing the temporary just made.
        let moved = unsafe {
            let m = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, self.1);
            libc::close(fd);
            m
        };
        if moved < 0 {
            return Err(last_err());
        }
        self.0.push(moved);
        Ok(moved)
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for &fd in &self.0 {
            // SAFETY: closing temporaries this module opened.
            unsafe { libc::close(fd) };
        }
    }
}

pub(crate) fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Opens `/proc/self/fd/<via>` with `flags` (another open file
/// description of the same file), close-on-exec and non-blocking (the
/// caller sets the status flags it wants with `F_SETFL`).
pub(crate) fn reopen_via(via: i32, flags: i32) -> std::io::Result<i32> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{via}"))
        .map_err(|_| std::io::Error::other("bad path"))?;
    // SAFETY: a valid C string; no O_CREAT, so no mode.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(last_err());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::codec::Decoder;
    use std::io::{Seek, SeekFrom, Write};

    /// The descriptor list and pipe contents, as the KERNEL record holds them.
    fn capture(skip: &dyn Fn(i32) -> bool) -> Vec<u8> {
        let mut out = vec![0u8; 1 << 16];
        let (mut t, mut p, mut a, mut c) = ([0u8; 4096], [0u8; 4096], [0u8; 16], [0u8; 16]);
        let mut bufs = CaptureBuffers {
            text: &mut t,
            path: &mut p,
            auxv: &mut a,
            cwd: &mut c,
            surveyed: None,
            flags_from_survey: false,
        };
        let mut e = Encoder::new(&mut out);
        encode_all(&mut e, &mut bufs, skip).unwrap();
        encode_pipe_contents(&mut e, skip).unwrap();
        let n = e.len();
        out.truncate(n);
        out
    }

    #[test]
    fn captures_offset_and_flags_of_an_open_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        f.seek(SeekFrom::Start(4)).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let out = capture(&|_| false);
        let mut d = Decoder::new(&out);
        let count = d.count(FdEntry::MIN_ENCODED_LEN).unwrap();
        let ents: Vec<_> = (0..count)
            .map(|_| FdEntry::decode(&mut d).unwrap())
            .collect();
        let ent = ents.iter().find(|x| x.fd == fd).expect("our fd is listed");
        assert_eq!(ent.offset, 4);
        assert_eq!(ent.kind, FdKind::Regular as u32);
        assert_eq!(ent.flags as i32 & libc::O_ACCMODE, libc::O_RDWR);
    }

    #[test]
    fn reopen_restores_number_offset_and_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, b"keep me intact").unwrap();
        let pb = path.as_os_str().as_bytes();
        let ent = FdEntry {
            fd: 987,
            kind: FdKind::Regular as u32,
            flags: (libc::O_RDWR | libc::O_TRUNC | libc::O_CREAT) as u32,
            offset: 5,
            path: pb,
            stamp: FileStamp::default(),
        };
        assert_eq!(reopen_one(&ent, &|_, _| Ok(())), Reopened::File);
        // SAFETY: closing the reopened descriptor.
        unsafe { libc::close(987) };
        // A program's O_NOFOLLOW (sqlite opens so) is no reason to refuse.
        let nofollow = FdEntry {
            flags: (libc::O_RDWR | libc::O_NOFOLLOW) as u32,
            ..ent
        };
        assert_eq!(reopen_one(&nofollow, &|_, _| Ok(())), Reopened::File);
        // SAFETY: lseek query on the reopened descriptor.
        assert_eq!(unsafe { libc::lseek(987, 0, libc::SEEK_CUR) }, 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me intact");
        // SAFETY: closing the test's descriptor.
        unsafe { libc::close(987) };
        let pipe = FdEntry {
            kind: FdKind::Pipe as u32,
            path: b"pipe:[1234]",
            ..ent
        };
        assert!(matches!(
            reopen_one(&pipe, &|_, _| Ok(())),
            Reopened::Placeholder(_)
        ));
        // SAFETY: closing the placeholder.
        unsafe { libc::close(987) };
    }

    /// An image older than 1.8 holds pipe contents in KERNEL's list: they
    /// are given back (the capture of 1.8 on is `kstate::pipes`').
    #[test]
    fn pipe_contents_of_an_older_image_are_given_back_at_restart() {
        let end = |fd, flags: i32| FdEntry {
            fd,
            kind: FdKind::Pipe as u32,
            flags: flags as u32,
            offset: 0,
            path: b"pipe:[77]",
            stamp: FileStamp {
                ino: 77,
                ..FileStamp::default()
            },
        };
        let ents = [end(950, libc::O_RDONLY), end(951, libc::O_WRONLY)];
        let contents = PipeContents {
            ino: 77,
            data: b"queued",
        };
        let r = reopen(&ents, &[contents], &|_, _| Ok(()));
        assert_eq!(r, vec![(950, Reopened::Pipe), (951, Reopened::Pipe)]);
        let mut buf = [0u8; 16];
        // SAFETY: using and closing the remade pipe.
        unsafe {
            assert_eq!(libc::write(951, b"+more".as_ptr().cast(), 5), 5);
            assert_eq!(libc::read(950, buf.as_mut_ptr().cast(), 16), 11);
            libc::close(950);
            libc::close(951);
        }
        assert_eq!(&buf[..11], b"queued+more");
    }
}
