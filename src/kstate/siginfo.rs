//! The queued instances of pending signals, each with its `siginfo`: who
//! sent it (`si_pid`, `si_uid`), why (`si_code`: `SI_QUEUE`, `SI_TKILL`,
//! `CLD_EXITED`, ...) and what it carried (`sigqueue`'s value, a child's
//! status), and how many instances of a real-time signal were queued.
//! `kstate::pending` keeps the sets; this keeps what the sets cannot say.
//!
//! A process cannot read its queues without taking the signals (only a
//! tracer can peek), so each is taken and put back at once, in order:
//!
//! - each thread, as it parks ([`take_own`], from `capture::park`), its
//!   own queue: for each signal of its `SigPnd`, `rt_sigtimedwait` (which
//!   takes the thread's instances before the process's) while the
//!   signal is still in its own set, then `rt_tgsigqueueinfo` to itself
//!   (allowed with any `si_code` to oneself) puts each back;
//! - the main thread ([`take_shared`]), the process's queue (`ShdPnd`)
//!   the same way, put back with `rt_sigqueueinfo` (which takes the
//!   siginfo of a `kill` or of the kernel only from the thread whose id is
//!   the process's);
//!
//! into a fixed table in the library's memory, which the image holds. A
//! restarted thread queues its entries again ([`queue_own`]) and the main
//! thread the process's ([`queue_shared`]) before `pending` raises what
//! the table did not hold. More instances than the table holds are named
//! at checkpoint time (kind `signals`).
//!
//! Everything here runs in a signal handler with every other thread
//! parked, or in a restarted thread before release: no allocation, no
//! lock, fixed buffers.

use crate::image::model::SignalSet;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::*};

/// Most queued instances a checkpoint keeps with their siginfo.
pub const MAX_QUEUED: usize = 1024;

/// Owner of an entry that is the process's, not a thread's.
const SHARED: u32 = u32::MAX;

/// The kernel's siginfo (128 bytes), kept as it was dequeued.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Info([u8; 128]);

struct Entry {
    /// Park slot of the thread (+1), or [`SHARED`]; 0: unused.
    owner: AtomicU32,
    sig: AtomicU32,
    info: UnsafeCell<Info>,
}

struct Table {
    used: AtomicU32,
    overflow: AtomicBool,
    entries: [Entry; MAX_QUEUED],
}

// SAFETY: an entry's info is written once by the thread that claimed it
// (fetch_add on `used`) before its owner is published (Release), and read
// only after the owner is seen (Acquire).
unsafe impl Sync for Table {}

static TABLE: Table = Table {
    used: AtomicU32::new(0),
    overflow: AtomicBool::new(false),
    entries: [const {
        Entry {
            owner: AtomicU32::new(0),
            sig: AtomicU32::new(0),
            info: UnsafeCell::new(Info([0; 128])),
        }
    }; MAX_QUEUED],
};

/// The real-time signals (34-64; glibc keeps 32 and 33).
const REALTIME: u64 = !0u64 << 33;

/// The process's real-time signals pending when [`take_late`] looked:
/// one that came after is after the checkpoint's cut (all bits: no look
/// this round).
static LATE_SEEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(u64::MAX);

/// A new round: the table empties (its entries belong to the image the
/// previous round wrote).
pub fn begin_round() {
    LATE_SEEN.store(u64::MAX, Release);
    let n = (TABLE.used.load(Acquire) as usize).min(MAX_QUEUED);
    for e in &TABLE.entries[..n] {
        e.owner.store(0, Relaxed);
    }
    TABLE.used.store(0, Release);
    TABLE.overflow.store(false, Relaxed);
}

/// Whether the last round had more queued instances than the table holds.
pub fn overflowed() -> bool {
    TABLE.overflow.load(Acquire)
}

/// Names, at checkpoint time, queued instances the table could not hold
/// (they come back as one plain signal each). No allocation.
pub fn capture(e: &mut crate::image::codec::Encoder) -> Result<(), super::KstateError> {
    if overflowed() {
        super::objects::NotRestorable::capture(
            e,
            -1,
            "signals",
            b"more queued signal instances than a checkpoint keeps (1024): the rest come back as one signal each, without their siginfo",
        )?;
    }
    Ok(())
}

/// The bits of `key` ("SigPnd:", "ShdPnd:") of the status file at `path`
/// (NUL-terminated). By raw system calls: libc's `open` and `read` are
/// cancellation points, and a program's thread parks here with a
/// `pthread_cancel` perhaps pending (it must not be cancelled inside the
/// checkpoint's handler).
fn pending(path: &[u8], key: &[u8]) -> SignalSet {
    let mut buf = [0u8; 4096];
    // SAFETY: openat reads the NUL-terminated path; read writes at most
    // the buffer's length; close ends the descriptor just opened.
    let n = unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return SignalSet::EMPTY;
        }
        let mut n = 0usize;
        while n < buf.len() {
            let r = libc::syscall(libc::SYS_read, fd, buf[n..].as_mut_ptr(), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::syscall(libc::SYS_close, fd);
        n
    };
    SignalSet(super::pending::parse_mask(&buf[..n], key).unwrap_or(0))
}

/// Whether any signal but `skip` and glibc's own is pending for this
/// thread or the process (`rt_sigpending` gives the union): when none is
/// (the common case), `/proc` is not read (20 µs a thread). No allocation.
fn any_pending(skip: SignalSet) -> bool {
    let mut set: u64 = 0;
    // SAFETY: rt_sigpending writes the 8-byte kernel signal set.
    let r = unsafe { libc::syscall(libc::SYS_rt_sigpending, &mut set as *mut u64, 8usize) };
    r != 0 || set & !skip.0 & !GLIBC_INTERNAL != 0
}

/// Takes one instance of `sig` (blocked or not) with its siginfo.
fn dequeue(sig: i32, info: &mut Info) -> bool {
    let set: u64 = 1 << (sig - 1);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: rt_sigtimedwait reads an 8-byte set and the timeout and
    // writes at most 128 bytes of siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const u64,
            info.0.as_mut_ptr(),
            &zero as *const libc::timespec,
            8usize,
        )
    };
    r == sig as libc::c_long
}

/// Queues `sig` with `info` to thread `tid` of process `pid`, or (tid 0)
/// to the process. A siginfo of a `kill` or of the kernel that this
/// thread may not queue (only the thread whose id is the process's may)
/// is sent by `kill` instead: the signal is never lost.
fn enqueue(pid: i64, tid: i64, sig: i32, info: &Info) {
    // SAFETY: the system calls read 128 bytes of siginfo; kill sends a
    // signal to this process.
    unsafe {
        let r = if tid == 0 {
            libc::syscall(libc::SYS_rt_sigqueueinfo, pid, sig, info.0.as_ptr())
        } else {
            libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, info.0.as_ptr())
        };
        if r != 0 && tid == 0 {
            libc::syscall(libc::SYS_kill, pid, sig);
        }
    }
}

fn ids() -> (i64, i64) {
    // SAFETY: getpid and gettid have no preconditions.
    unsafe {
        (
            libc::syscall(libc::SYS_getpid),
            libc::syscall(libc::SYS_gettid),
        )
    }
}

/// Takes the instances of every signal in `set` while `still(sig)`,
/// keeps them for `owner` and puts them back (`tid` 0: the process's).
fn take(owner: u32, set: SignalSet, still: impl Fn(i32) -> bool, tid: i64) {
    let (pid, _) = ids();
    for sig in set.iter() {
        let first = TABLE.used.load(Acquire) as usize;
        let mut taken = first;
        while still(sig) {
            let i = TABLE.used.fetch_add(1, AcqRel) as usize;
            if i >= MAX_QUEUED {
                TABLE.used.store(MAX_QUEUED as u32, Release);
                TABLE.overflow.store(true, Release);
                break;
            }
            let e = &TABLE.entries[i];
            // SAFETY: see `Table`: entry i is this thread's.
            let info = unsafe { &mut *e.info.get() };
            if !dequeue(sig, info) {
                // Nothing left: the claimed entry stays unowned.
                break;
            }
            e.sig.store(sig as u32, Relaxed);
            e.owner.store(owner, Release);
            taken = i + 1;
        }
        // Back, in the order taken (other threads may have claimed
        // entries in between: only this owner's are put back).
        for e in TABLE.entries[first.min(MAX_QUEUED)..taken.min(MAX_QUEUED)]
            .iter()
            .filter(|e| e.owner.load(Acquire) == owner && e.sig.load(Relaxed) == sig as u32)
        {
            // SAFETY: see `Table`: published above by this thread.
            enqueue(pid, tid, sig, unsafe { &*e.info.get() });
        }
    }
}

/// glibc's own signals (cancellation, setxid: 32 and 33), left out: they
/// carry nothing of the program's, and putting one back in a parked
/// thread, where glibc never lets them be blocked, would run glibc's
/// handler there. They come back as the pending sets say.
const GLIBC_INTERNAL: u64 = 0b11 << 31;

/// In thread slot `slot` as it parks: its own queue. `skip`: the
/// checkpoint's own signals. No allocation.
pub fn take_own(slot: usize, skip: SignalSet) {
    const PATH: &[u8] = b"/proc/thread-self/status\0";
    if !any_pending(skip) {
        return;
    }
    let own = SignalSet(pending(PATH, b"SigPnd:").0 & !skip.0 & !GLIBC_INTERNAL);
    if own.0 == 0 {
        return;
    }
    let (_, tid) = ids();
    take(
        slot as u32 + 1,
        own,
        |s| pending(PATH, b"SigPnd:").contains(s),
        tid,
    );
}

/// In the main thread as it parks: the process's queue (signals also
/// pending for the main thread itself are left as they are: taking them
/// would take its own first). The main thread, because only the thread
/// whose id is the process's may put back a signal with the siginfo of a
/// `kill` or of the kernel; a process whose main thread has ended keeps
/// the process's signals without their siginfo (`pending`). No
/// allocation.
pub fn take_shared(skip: SignalSet) {
    const PATH: &[u8] = b"/proc/thread-self/status\0";
    if !any_pending(skip) {
        return;
    }
    let mine = pending(PATH, b"SigPnd:");
    let shared = SignalSet(pending(PATH, b"ShdPnd:").0 & !skip.0 & !mine.0 & !GLIBC_INTERNAL);
    if shared.0 == 0 {
        return;
    }
    take(SHARED, shared, |s| pending(PATH, b"ShdPnd:").contains(s), 0);
}

/// In the checkpoint thread, every other thread parked, before the
/// pending sets are read: the process's real-time signals that the main
/// thread did not take as it parked: sent during the pause (a POSIX
/// timer expiring, a `sigqueue`), or with no main thread left to take
/// them. Each is taken with its siginfo, kept and put back, so that a
/// restart queues it as it was: raised plainly, it would reach a handler
/// that reads `si_value` (timer_create's usual way to tell its timers
/// apart) with none. One whose siginfo says a `kill` or the kernel sent
/// it, which only the main thread may queue again as it was, is put back
/// by `kill` (its sender then reads as this process; the image keeps it
/// as it was). A real-time signal that comes after this look is after
/// the checkpoint's cut ([`after_cut`]). No allocation.
pub fn take_late(skip: SignalSet) {
    const PATH: &[u8] = b"/proc/thread-self/status\0";
    let seen = pending(PATH, b"ShdPnd:").0 & REALTIME;
    LATE_SEEN.store(seen, Release);
    let n = (TABLE.used.load(Acquire) as usize).min(MAX_QUEUED);
    let held = TABLE.entries[..n]
        .iter()
        .filter(|e| e.owner.load(Acquire) == SHARED)
        .fold(0u64, |m, e| m | 1u64 << (e.sig.load(Relaxed) - 1));
    let late = SignalSet(seen & !held & !skip.0);
    if late.0 == 0 {
        return;
    }
    take(SHARED, late, |s| pending(PATH, b"ShdPnd:").contains(s), 0);
}

/// The process's pending real-time signals that came after [`take_late`]
/// looked, in `set` (the image leaves them out: they stay with the
/// running process).
pub fn after_cut(set: u64) -> u64 {
    set & REALTIME & !LATE_SEEN.load(Acquire)
}

/// Queues the entries of `owner` again in this (restarted) process;
/// returns the signals queued. No allocation.
fn queue(owner: u32, tid: i64) -> SignalSet {
    let (pid, _) = ids();
    let n = (TABLE.used.load(Acquire) as usize).min(MAX_QUEUED);
    let mut done = SignalSet::EMPTY;
    for e in TABLE.entries[..n]
        .iter()
        .filter(|e| e.owner.load(Acquire) == owner)
    {
        let sig = e.sig.load(Relaxed) as i32;
        // SAFETY: see `Table`: published before the image was taken.
        enqueue(pid, tid, sig, unsafe { &*e.info.get() });
        done = done.with(sig);
    }
    done
}

/// In restarted thread `slot`, every signal blocked: its own queue again,
/// with each siginfo. Returns the signals queued. No allocation.
pub fn queue_own(slot: usize) -> SignalSet {
    let (_, tid) = ids();
    queue(slot as u32 + 1, tid)
}

/// The signals [`queue_shared`] queued in this restart.
static QUEUED_SHARED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// In the restarted main thread, every thread blocking every signal: the
/// process's queue again (only the thread whose id is the process's may
/// queue a signal with the siginfo of a `kill` or of the kernel). No
/// allocation.
pub fn queue_shared() {
    let done = queue(SHARED, 0);
    QUEUED_SHARED.store(done.0, Release);
}

/// What the main thread queued again of the process's signals (read by
/// the manager once every thread arrived; taken once).
pub fn queued_shared() -> SignalSet {
    SignalSet(QUEUED_SHARED.swap(0, AcqRel))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child: two real-time signals queued to the process with
    /// values and one to the thread are taken and put back with their
    /// values and count, in order.
    #[test]
    fn queued_signals_are_taken_and_put_back_with_their_siginfo() {
        // SAFETY: the child blocks signals, queues, takes and reads them
        // back with system calls, and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let rt = libc::SIGRTMIN() + 3;
                let mut all: libc::sigset_t = core::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::sigprocmask(libc::SIG_BLOCK, &all, core::ptr::null_mut());
                let me = libc::getpid();
                for v in [11, 22] {
                    libc::sigqueue(
                        me,
                        rt,
                        libc::sigval {
                            sival_ptr: v as *mut _,
                        },
                    );
                }
                libc::syscall(
                    libc::SYS_tgkill,
                    me,
                    libc::syscall(libc::SYS_gettid),
                    libc::SIGUSR2,
                );
                begin_round();
                take_shared(SignalSet::EMPTY);
                take_own(0, SignalSet::EMPTY);
                libc::kill(me, libc::SIGHUP);
                take_shared(SignalSet::EMPTY);
                let mut ok = TABLE.used.load(Acquire) >= 3 && !overflowed();
                let mut wait = |want_sig: i32, want_val: usize| {
                    let mut set: libc::sigset_t = core::mem::zeroed();
                    libc::sigaddset(&mut set, want_sig);
                    let mut info: libc::siginfo_t = core::mem::zeroed();
                    let zero = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    let got = libc::sigtimedwait(&set, &mut info, &zero);
                    ok &= got == want_sig
                        && (want_val == 0
                            || (info.si_code == libc::SI_QUEUE
                                && info.si_value().sival_ptr as usize == want_val));
                };
                wait(libc::SIGHUP, 0);
                wait(rt, 11);
                wait(rt, 22);
                wait(libc::SIGUSR2, 0);
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{status:#x}"
            );
        }
    }
}
