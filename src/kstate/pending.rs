//! Signals pending at a checkpoint: sent while the program blocked them
//! (a thread that will `sigwait` for one, a signal that came during a
//! critical section). The kernel keeps two kinds of pending sets, both lost
//! with the process:
//!
//! ```text
//!  process-wide (ShdPnd)   kill(2), sigqueue(3): any thread may take it
//!                          -> end of KERNEL (format 1.4)
//!  per thread   (SigPnd)   tgkill(2), pthread_kill(3): only that thread
//!                          -> end of THREADS, one set per thread
//! ```
//!
//! Capture ([`shared`], [`of_thread`]) runs in the dump's signal handler
//! while every thread is parked (every signal blocked): it reads
//! /proc/self/status and /proc/self/task/TID/status into the caller's fixed
//! buffer and never allocates. The suspend signal is left out (it is the
//! checkpoint's own; one that came late would only be ignored). The trigger
//! signal is kept: the one that asked for this checkpoint was taken before
//! it began, and one more sent during it asks for one more checkpoint, as
//! it would have in the original process. The term signal is left out of a
//! checkpoint followed by an exit: the original process exits and never
//! acts on it, and a restarted one that did would checkpoint and exit at
//! once, every time (Slurm sends SIGTERM to each process of a job, so a
//! restarted program gets it more than once).
//!
//! Restore ([`raise_own`], [`raise_shared`]) runs in `capture::park::restart_entry`,
//! in the restarted threads before they are released (every signal
//! blocked, no allocation): each thread sends its own set to itself with
//! `tgkill`, the manager the process's with `kill`, by the kernel's real
//! ids (raw system calls: `crate::capture::tids` may translate the libc ones).
//!
//! The queued instances themselves, each with its `siginfo` (sender, code,
//! value) and in number, come back through `kstate::siginfo`; this raises
//! only what that table did not hold (`restart_entry` passes the rest).

use super::KstateError;
use crate::capture::sys::{self, PathBuf};
use crate::image::model::SignalSet;

/// Signals no capture keeps: SIGKILL and SIGSTOP cannot be blocked (and
/// the reader refuses them), the suspend signal is the checkpoint's own,
/// and so is the term signal during a checkpoint followed by an exit.
pub(crate) fn machinery() -> SignalSet {
    let set = SignalSet::EMPTY
        .with(libc::SIGKILL)
        .with(libc::SIGSTOP)
        .with(crate::capture::park::suspend_signal());
    match crate::trigger::term_being_served() {
        0 => set,
        term => set.with(term),
    }
}

/// The 16 hex digits of `key` ("SigPnd:", "ShdPnd:") in a status file.
pub(crate) fn parse_mask(text: &[u8], key: &[u8]) -> Option<u64> {
    let v = sys::field(text, key)?;
    let digits = v.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    v[..digits].iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)? as u64;
        Some(acc << 4 | d)
    })
}

fn read_mask(
    path: &[u8],
    key: &'static [u8],
    what: &'static str,
    buf: &mut [u8],
) -> Result<SignalSet, KstateError> {
    let n = sys::read_file(path, buf).map_err(|errno| KstateError::Read { what, errno })?;
    let bits = parse_mask(&buf[..n], key).ok_or(KstateError::Parse(what))?;
    Ok(SignalSet(bits & !machinery().0))
}

/// The process-wide pending set as the checkpoint keeps it: without the
/// real-time signals that came after the cut (`siginfo::take_late`).
fn shared_at_cut(set: SignalSet) -> SignalSet {
    SignalSet(set.0 & !super::siginfo::after_cut(set.0))
}

/// The process-wide pending set (`ShdPnd`), without the checkpoint's own
/// signals. No allocation.
pub fn shared(buf: &mut [u8]) -> Result<SignalSet, KstateError> {
    read_mask(
        b"/proc/thread-self/status\0",
        b"ShdPnd:",
        "the process's pending signals (/proc/self/status)",
        buf,
    )
    .map(shared_at_cut)
}

/// The pending set of thread `ktid` (its kernel id) alone (`SigPnd`),
/// without the checkpoint's own signals. No allocation.
pub fn of_thread(ktid: u32, buf: &mut [u8]) -> Result<SignalSet, KstateError> {
    let mut p = PathBuf::<64>::new();
    p.push(b"/proc/self/task/")
        .push_u64(ktid as u64)
        .push(b"/status");
    read_mask(
        p.as_cstr_bytes(),
        b"SigPnd:",
        "a thread's pending signals (/proc/self/task/TID/status)",
        buf,
    )
}

/// Makes `set` pending for the calling thread alone: tgkill(2) to itself
/// by its real ids. Every signal must be blocked. No allocation.
pub fn raise_own(set: SignalSet) {
    // SAFETY: getpid and gettid have no preconditions.
    let (pid, tid) = unsafe {
        (
            libc::syscall(libc::SYS_getpid),
            libc::syscall(libc::SYS_gettid),
        )
    };
    for sig in set.without(libc::SIGKILL).without(libc::SIGSTOP).iter() {
        // SAFETY: tgkill with plain integers.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig as libc::c_long) };
    }
}

/// Makes `set` pending for the whole process: kill(2) to itself by its
/// real pid. Every thread must block every signal. No allocation.
pub fn raise_shared(set: SignalSet) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::syscall(libc::SYS_getpid) };
    for sig in set.without(libc::SIGKILL).without(libc::SIGSTOP).iter() {
        // SAFETY: kill with plain integers.
        unsafe { libc::syscall(libc::SYS_kill, pid, sig as libc::c_long) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_from_status_text() {
        let text = b"Name:\tx\nSigQ:\t2/63\nSigPnd:\t0000000000000800\nShdPnd:\t0000000200000400\nSigBlk:\t0\n";
        for (key, want) in [
            (&b"SigPnd:"[..], Some(0x800)),
            (b"ShdPnd:", Some(0x2_0000_0400)),
            (b"SigIgn:", None),
        ] {
            assert_eq!(parse_mask(text, key), want, "{key:?}");
        }
        assert_eq!(parse_mask(b"SigPnd:\t\n", b"SigPnd:"), None);
        assert_eq!(
            parse_mask(b"SigPnd:\t00000000000000001\n", b"SigPnd:"),
            None
        );
    }

    /// In a forked child: a blocked signal sent to the process and one
    /// sent to the thread are read back in the right sets, and raising
    /// them again makes them pending where they were.
    #[test]
    fn capture_and_raise_in_a_child() {
        let mut buf = [0u8; 4096];
        // SAFETY: the child only makes system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| {
                let usr2 = libc::SIGUSR2;
                let rt = libc::SIGRTMIN() + 1;
                // SAFETY: plain signal-set calls on this thread's mask.
                unsafe {
                    let mut all: libc::sigset_t = core::mem::zeroed();
                    libc::sigfillset(&mut all);
                    libc::sigprocmask(libc::SIG_SETMASK, &all, core::ptr::null_mut());
                }
                raise_shared(SignalSet::EMPTY.with(usr2));
                raise_own(SignalSet::EMPTY.with(rt));
                let tid = sys::gettid();
                let (Ok(shd), Ok(own)) = (shared(&mut buf), of_thread(tid, &mut buf)) else {
                    return 1;
                };
                if shd != SignalSet::EMPTY.with(usr2) || own != SignalSet::EMPTY.with(rt) {
                    return 2;
                }
                0
            })();
            // SAFETY: leaving the forked child without running its parent's
            // exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
}
