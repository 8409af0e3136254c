//! Thin, typed wrappers over the raw system calls the checkpoint path needs.
//!
//! Everything here may run while other threads are suspended: it must never
//! allocate, take a lock, or call into code that might (no std::fs, no
//! CString, no formatting). Paths are passed as NUL-terminated byte slices
//! built by the caller in fixed buffers.

use core::sync::atomic::AtomicU32;

/// A raw errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn last() -> Errno {
        // SAFETY: __errno_location returns this thread's errno slot.
        Errno(unsafe { *libc::__errno_location() })
    }
    pub fn describe(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.0)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

pub type SysResult<T> = Result<T, Errno>;

fn check(ret: libc::c_long) -> SysResult<usize> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// True when the program runs setuid or setgid (`AT_SECURE`).
pub fn at_secure() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The real user id.
pub fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// A child process by the raw system call, past selfckpt's own `fork`
/// (which waits while a tree checkpoint holds forks) and glibc's fork
/// handlers: returns 0 in the child, its pid in the parent, -1 on error.
/// The child must make only system calls on prepared data and leave with
/// `_exit` (the parent's other threads, and their locks, are not there).
pub fn raw_fork() -> i64 {
    // SAFETY: clone with SIGCHLD only is fork(2); the caller's contract
    // above keeps the child off every lock.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    }
}

/// Ends the calling process at once by the raw system call: past
/// selfckpt's own `_exit` (which waits while a tree checkpoint holds
/// exits). For a [`raw_fork`] child.
pub fn raw_exit(code: i32) -> ! {
    // SAFETY: exit_group ends the process; it does not return.
    unsafe {
        libc::syscall(libc::SYS_exit_group, code as libc::c_long);
    }
    unreachable!("exit_group returned")
}

/// Whether `probe`, run in a [`raw_fork`] child (so that it changes
/// nothing of this process), succeeds. `probe` must make only system calls
/// on prepared data (see `raw_fork`); the child leaves by [`raw_exit`].
pub fn succeeds_in_child(probe: impl FnOnce() -> bool) -> bool {
    let pid = raw_fork() as libc::pid_t;
    if pid == 0 {
        raw_exit(if probe() { 0 } else { 1 });
    }
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waitpid writes the child's status.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Sends `sig` to thread `tid` of this process.
pub fn tgkill(tid: u32, sig: i32) -> SysResult<()> {
    // SAFETY: tgkill takes plain integers.
    check(unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            getpid() as libc::c_long,
            tid as libc::c_long,
            sig as libc::c_long,
        )
    })
    .map(|_| ())
}

/// Queues `sig` to thread `tid` of this process with `value`
/// (`rt_tgsigqueueinfo`, `SI_QUEUE`): a signal whose handler can tell who
/// sent it (the sender's pid and the value are the siginfo's).
pub fn tgsigqueue(tid: u32, sig: i32, value: u64) -> SysResult<()> {
    /// The kernel's siginfo (128 bytes) as `SI_QUEUE` fills it.
    #[repr(C)]
    struct QueueInfo {
        signo: i32,
        errno: i32,
        code: i32,
        pad: i32,
        pid: i32,
        uid: u32,
        value: u64,
        rest: [u64; 12],
    }
    const _: () = assert!(core::mem::size_of::<QueueInfo>() == 128);
    let info = QueueInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        pad: 0,
        pid: getpid() as i32,
        uid: getuid(),
        value,
        rest: [0; 12],
    };
    // SAFETY: the kernel reads the 128-byte siginfo.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            getpid() as libc::c_long,
            tid as libc::c_long,
            sig as libc::c_long,
            &info as *const QueueInfo,
        )
    })
    .map(|_| ())
}

/// Waits while `*word == expected`, up to `timeout_ns` (None: forever).
/// Returns false on timeout.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) -> bool {
    let ts = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call and
    // `tsp` is null or points to a live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
        )
    };
    !(r < 0 && Errno::last().0 == libc::ETIMEDOUT)
}

/// Wakes up to `n` waiters on `word`.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}

/// Monotonic clock in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall clock in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An owned raw file descriptor that closes itself. Never allocates.
pub struct RawFd(pub i32);

impl RawFd {
    /// Opens a NUL-terminated path.
    pub fn open(path: &[u8], flags: i32, mode: u32) -> SysResult<RawFd> {
        assert_nul(path);
        // SAFETY: path is NUL-terminated (checked above).
        let fd = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_CLOEXEC, mode) };
        check(fd as libc::c_long).map(|_| RawFd(fd))
    }

    /// Opens a NUL-terminated path relative to a directory fd.
    pub fn open_at(dir: i32, path: &[u8], flags: i32) -> SysResult<RawFd> {
        assert_nul(path);
        // SAFETY: path is NUL-terminated (checked above).
        let fd = unsafe { libc::openat(dir, path.as_ptr().cast(), flags | libc::O_CLOEXEC) };
        check(fd as libc::c_long).map(|_| RawFd(fd))
    }

    pub fn raw(&self) -> i32 {
        self.0
    }

    /// Takes ownership of a descriptor the caller just created.
    pub fn from_raw(fd: i32) -> RawFd {
        RawFd(fd)
    }

    /// Reads until `buf` is full or end of file; returns the bytes read.
    pub fn read_full(&self, buf: &mut [u8]) -> SysResult<usize> {
        let mut n = 0;
        while n < buf.len() {
            // SAFETY: the pointer and length describe the unfilled tail of buf.
            let r = unsafe { libc::read(self.0, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
            match check(r as libc::c_long) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Writes all of `buf`.
    pub fn write_all(&self, mut buf: &[u8]) -> SysResult<()> {
        while !buf.is_empty() {
            // SAFETY: the pointer and length describe buf.
            let r = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
            match check(r as libc::c_long) {
                Ok(0) => return Err(Errno(libc::EIO)),
                Ok(k) => buf = &buf[k..],
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn pread(&self, buf: &mut [u8], offset: u64) -> SysResult<usize> {
        // SAFETY: the pointer and length describe buf.
        let r = unsafe { libc::pread(self.0, buf.as_mut_ptr().cast(), buf.len(), offset as i64) };
        check(r as libc::c_long)
    }

    pub fn pwrite(&self, buf: &[u8], offset: u64) -> SysResult<usize> {
        // SAFETY: the pointer and length describe buf.
        let r = unsafe { libc::pwrite(self.0, buf.as_ptr().cast(), buf.len(), offset as i64) };
        check(r as libc::c_long)
    }

    pub fn fsync(&self) -> SysResult<()> {
        // SAFETY: fsync takes an fd.
        check(unsafe { libc::fsync(self.0) } as libc::c_long).map(|_| ())
    }

    pub fn fstat(&self) -> SysResult<libc::stat> {
        fstat(self.0)
    }

    /// Reads directory entries (getdents64) into `buf`; returns bytes filled,
    /// 0 at the end.
    pub fn getdents(&self, buf: &mut [u8]) -> SysResult<usize> {
        // SAFETY: the pointer and length describe buf.
        check(unsafe { libc::syscall(libc::SYS_getdents64, self.0, buf.as_mut_ptr(), buf.len()) })
    }
}

impl Drop for RawFd {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.0) };
    }
}

pub fn fstat(fd: i32) -> SysResult<libc::stat> {
    // SAFETY: stat is plain old data; zeroed is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    check(unsafe { libc::fstat(fd, &mut st) } as libc::c_long).map(|_| st)
}

pub fn stat_path(path: &[u8]) -> SysResult<libc::stat> {
    assert_nul(path);
    // SAFETY: stat is plain old data; zeroed is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated, st is a valid out-pointer.
    check(unsafe { libc::stat(path.as_ptr().cast(), &mut st) } as libc::c_long).map(|_| st)
}

/// lstat: a symlink is seen as one, not followed.
pub fn lstat_path(path: &[u8]) -> SysResult<libc::stat> {
    assert_nul(path);
    // SAFETY: stat is plain old data; zeroed is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated, st is a valid out-pointer.
    check(unsafe { libc::lstat(path.as_ptr().cast(), &mut st) } as libc::c_long).map(|_| st)
}

/// readlink into `buf`; returns the length (no NUL added).
pub fn readlink(path: &[u8], buf: &mut [u8]) -> SysResult<usize> {
    assert_nul(path);
    // SAFETY: path is NUL-terminated; buf is writable for its length.
    let r = unsafe { libc::readlink(path.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = check(r as libc::c_long)?;
    if n == buf.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    Ok(n)
}

/// A child process like `fork`, without exit signal (nothing reaches
/// the parent's SIGCHLD handler; only a `__WALL` wait sees it) and with a
/// pidfd of it (`clone3` with `CLONE_PIDFD`): `Ok((0, -1))` in the child,
/// `Ok((pid, pidfd))` in the parent. The child runs on a copy of the
/// caller's memory with only the calling thread: it must call nothing
/// that takes a lock another thread may have held (not libc's `fork`,
/// whose handlers lock). No allocation.
pub fn fork_with_pidfd() -> SysResult<(i32, i32)> {
    let mut pidfd: i32 = -1;
    let args = crate::restorer_abi::CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut i32 as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack is fork: the
    // child continues here on a copy of this stack; the kernel writes the
    // pidfd into our local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const crate::restorer_abi::CloneArgs,
            core::mem::size_of::<crate::restorer_abi::CloneArgs>(),
        )
    };
    match r {
        r if r < 0 => Err(Errno::last()),
        0 => Ok((0, -1)),
        pid => Ok((pid as i32, pidfd)),
    }
}

/// Reads a whole small file (e.g. under /proc) into `buf`.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> SysResult<usize> {
    let fd = RawFd::open(path, libc::O_RDONLY, 0)?;
    let n = fd.read_full(buf)?;
    if n == buf.len() {
        return Err(Errno(libc::EFBIG));
    }
    Ok(n)
}

fn assert_nul(path: &[u8]) {
    debug_assert!(path.last() == Some(&0), "path must be NUL-terminated");
}

/// Builds a NUL-terminated path from parts in a fixed buffer. Never allocates.
pub struct PathBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for PathBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PathBuf<N> {
    pub const fn new() -> Self {
        PathBuf {
            buf: [0; N],
            len: 0,
        }
    }
    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(N - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self.buf[self.len] = 0;
        self
    }
    pub fn push_u64(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }
    /// The path with its NUL terminator.
    pub fn as_cstr_bytes(&self) -> &[u8] {
        &self.buf[..self.len + 1]
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses a decimal number at the start of `s`; returns it and the rest.
pub fn parse_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &s[..digits] {
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some((v, &s[digits..]))
}

/// Parses a hexadecimal number at the start of `s` (no `0x`); returns it
/// and the rest.
pub fn parse_hex(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let v = s[..digits].iter().fold(0u64, |v, &c| {
        let d = (c as char).to_digit(16).unwrap_or(0) as u64;
        (v << 4) | d
    });
    Some((v, &s[digits..]))
}

/// Parses an octal number at the start of `s`.
pub fn parse_octal(s: &[u8]) -> Option<u64> {
    let digits = s.iter().take_while(|c| (b'0'..=b'7').contains(c)).count();
    if digits == 0 {
        return None;
    }
    s[..digits].iter().try_fold(0u64, |v, &c| {
        v.checked_mul(8)?.checked_add((c - b'0') as u64)
    })
}

/// Finds `key` at the start of a line in `text` and returns the rest of that
/// line with leading blanks removed (e.g. "pos:" in fdinfo).
pub fn field<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    text.split(|&c| c == b'\n')
        .find(|line| line.starts_with(key))
        .map(|line| {
            let rest = &line[key.len()..];
            let skip = rest
                .iter()
                .take_while(|c| **c == b' ' || **c == b'\t')
                .count();
            &rest[skip..]
        })
}

/// Adds `signals` to (`libc::SIG_BLOCK`) or removes them from
/// (`libc::SIG_UNBLOCK`) the calling thread's signal mask. The mask
/// survives exec.
pub fn change_signal_mask(how: i32, signals: &[i32]) {
    // SAFETY: building a signal set on the stack and changing this
    // thread's mask with it.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        crate::interpose::next::pthread_sigmask(how, &set, core::ptr::null_mut());
    }
}

/// The process's place in its session (`image::model::SESSION_*`): raw
/// `getsid`/`getpgid`, no allocation.
pub fn session_role() -> u8 {
    use crate::image::model::{GROUP_LEADER, SESSION_LEADER, SESSION_MEMBER};
    // SAFETY: getsid(0), getpgid(0) and getpid take and return integers.
    let (sid, pgid, pid) = unsafe {
        (
            libc::syscall(libc::SYS_getsid, 0),
            libc::syscall(libc::SYS_getpgid, 0),
            libc::syscall(libc::SYS_getpid),
        )
    };
    if sid == pid {
        SESSION_LEADER
    } else if pgid == pid {
        GROUP_LEADER
    } else {
        SESSION_MEMBER
    }
}

/// Blocks every signal in the calling thread, glibc's own two (SIGCANCEL,
/// SIGSETXID) included, which glibc's functions never block: the raw
/// system call.
pub fn block_every_signal() {
    let all: u64 = !0;
    // SAFETY: rt_sigprocmask with the kernel's 8-byte set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            core::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

/// The calling thread's signal mask, restored when dropped.
pub struct SavedSignalMask(libc::sigset_t);

impl SavedSignalMask {
    /// Blocks every signal but `keep` and the ones a fault raises
    /// (blocking those would kill the thread that faults), until dropped.
    /// Threads started meanwhile inherit this mask: that is how
    /// selfckpt's own threads are born never taking the program's
    /// process-directed signals.
    pub fn block_all_but(keep: &[i32]) -> SavedSignalMask {
        // SAFETY: building signal sets on the stack and changing this
        // thread's mask with them.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigfillset(&mut set);
            for &s in keep.iter().chain(&[
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGFPE,
                libc::SIGILL,
                libc::SIGTRAP,
            ]) {
                libc::sigdelset(&mut set, s);
            }
            let mut old: libc::sigset_t = core::mem::zeroed();
            crate::interpose::next::pthread_sigmask(libc::SIG_SETMASK, &set, &mut old);
            SavedSignalMask(old)
        }
    }
}

impl Drop for SavedSignalMask {
    fn drop(&mut self) {
        // SAFETY: puts back the mask saved by `block_all_but`.
        unsafe {
            crate::interpose::next::pthread_sigmask(
                libc::SIG_SETMASK,
                &self.0,
                core::ptr::null_mut(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_buf_builds_proc_paths() {
        let mut p = PathBuf::<64>::new();
        p.push(b"/proc/self/fdinfo/").push_u64(1234);
        assert_eq!(p.as_cstr_bytes(), b"/proc/self/fdinfo/1234\0");
        let mut p = PathBuf::<64>::new();
        p.push_u64(0);
        assert_eq!(p.as_bytes(), b"0");
    }

    #[test]
    fn number_parsers() {
        assert_eq!(parse_u64(b"123 rest"), Some((123, &b" rest"[..])));
        assert_eq!(parse_u64(b"x"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        assert_eq!(parse_octal(b"0100002\n"), Some(0o100002));
    }

    #[test]
    fn field_finds_fdinfo_keys() {
        let t = b"pos:\t42\nflags:\t0100002\nmnt_id:\t1\n";
        assert_eq!(field(t, b"pos:"), Some(&b"42"[..]));
        assert_eq!(field(t, b"flags:"), Some(&b"0100002"[..]));
        assert_eq!(field(t, b"ino:"), None);
    }

    #[test]
    fn read_file_reads_proc() {
        let mut buf = [0u8; 4096];
        let n = read_file(b"/proc/self/stat\0", &mut buf).unwrap();
        let (pid, _) = parse_u64(&buf[..n]).unwrap();
        assert_eq!(pid as u32, getpid());
    }
}
