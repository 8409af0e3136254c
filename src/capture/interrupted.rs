//! System calls the suspend signal interrupts, put back as if no signal
//! had come.
//!
//! A thread blocked in a system call when the suspend signal arrives runs
//! the handler; the kernel restarts the call afterwards by itself only for
//! calls that return `ERESTARTSYS` (our handler has `SA_RESTART`). The
//! others (`poll`, `select`, `epoll_wait`, `sigsuspend`, `pause`,
//! `sigtimedwait`, timed futex and semaphore waits, sockets with timeouts,
//! `nanosleep`...) would return `EINTR` to the program. So, just before
//! signalling a thread, the checkpoint thread reads which call it is
//! blocked in (`/proc/self/task/TID/syscall`: number, six arguments, pc:
//! [`note_before_signal`]); in the handler, if the frame shows that very
//! call (same pc, same arguments) returning `EINTR`, the thread rewinds its
//! frame to run the call again ([`resume_interrupted`]), before it parks:
//! the image holds the rewound frame too, so a restarted thread re-enters
//! the call. Calls whose timeout is relative and that the kernel does not
//! update (`poll` and `epoll_wait` with a timeout, `nanosleep`, relative
//! `clock_nanosleep`, `sigtimedwait` with a timeout, `FUTEX_WAIT` with a
//! timeout, `semtimedop`...) are not rewound (they would sleep their whole
//! timeout again): the thread's [`interrupted_count`] goes up instead, and
//! the libc-level wrappers of `crate::interpose::waits` call again with
//! the time left, which [`paused_ns`] (time this thread spent parked,
//! across restarts too) lets them compute.
//!
//! The suspend signal is the highest signal number, so when a program
//! signal interrupts the same call, the kernel delivers the program's
//! first and its handler's frame, not ours, holds the `EINTR`: the
//! program sees its interruption.
//!
//! Runs in the suspend handler and on the checkpoint thread while threads
//! are parked: must not allocate, lock or print.

use super::park::MAX_THREADS;
use super::sys::{self, PathBuf};
use crate::arch;
use core::cell::Cell;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::*};

/// What the checkpoint thread saw of one thread just before signalling it.
struct Record {
    tid: AtomicU32,
    nr: AtomicI64,
    args: [AtomicU64; 6],
    pc: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Record = Record {
    tid: AtomicU32::new(0),
    nr: AtomicI64::new(-1),
    args: [const { AtomicU64::new(0) }; 6],
    pc: AtomicU64::new(0),
};

/// One record per thread signalled in the current round (same index as
/// the checkpoint thread's list of signalled tids).
static RECORDS: [Record; MAX_THREADS] = [EMPTY; MAX_THREADS];

thread_local! {
    /// Interruptions of a relative-timeout call this thread had (the
    /// wrappers call again when it changed across their call).
    static INTERRUPTED: Cell<u64> = const { Cell::new(0) };
    /// Nanoseconds this thread spent parked, from handler entry to exit
    /// (after a restart: entry on the old clock, exit on the new one, so
    /// the sum shifts deadlines taken on the old clock onto the new one).
    static PAUSED_NS: Cell<u64> = const { Cell::new(0) };
    /// Monotonic time the handler was entered (0: not parked).
    static ENTERED_NS: Cell<u64> = const { Cell::new(0) };
}

/// Forgets the previous round's records.
pub fn begin_round() {
    for r in &RECORDS {
        r.tid.store(0, Relaxed);
    }
}

/// Before signalling `tid` (the `index`th thread signalled this round):
/// notes the system call it is blocked in, if any. `buf` is scratch room.
pub fn note_before_signal(index: usize, tid: u32, buf: &mut [u8]) {
    let Some(r) = RECORDS.get(index) else {
        return;
    };
    r.tid.store(0, Relaxed);
    let mut p = PathBuf::<64>::new();
    p.push(b"/proc/self/task/")
        .push_u64(tid as u64)
        .push(b"/syscall");
    let Ok(n) = sys::read_file(p.as_cstr_bytes(), buf) else {
        return;
    };
    let Some((nr, args, pc)) = parse_syscall_line(&buf[..n]) else {
        return;
    };
    r.nr.store(nr, Relaxed);
    for (slot, v) in r.args.iter().zip(args) {
        slot.store(v, Relaxed);
    }
    r.pc.store(pc, Relaxed);
    r.tid.store(tid, Release);
}

/// Parses `NR A1 A2 A3 A4 A5 A6 SP PC` (NR decimal, the rest hex with
/// `0x`); `None` for "running", "-1 SP PC" (blocked, not in a call) or
/// anything else.
fn parse_syscall_line(line: &[u8]) -> Option<(i64, [u64; 6], u64)> {
    let mut fields = line
        .split(|&c| c == b' ' || c == b'\n')
        .filter(|f| !f.is_empty());
    let (nr, rest) = sys::parse_u64(fields.next()?)?;
    if !rest.is_empty() {
        return None;
    }
    let mut hex = || -> Option<u64> {
        let f = fields.next()?.strip_prefix(b"0x")?;
        if f.is_empty() || f.len() > 16 {
            return None;
        }
        f.iter().try_fold(0u64, |acc, &c| {
            let d = (c as char).to_digit(16)?;
            Some(acc << 4 | d as u64)
        })
    };
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = hex()?;
    }
    let _sp = hex()?;
    let pc = hex()?;
    Some((nr as i64, args, pc))
}

/// In the suspend handler, first thing: if the thread was interrupted in
/// the call the checkpoint thread saw, put the call back (or count the
/// interruption for the wrappers); then note when parking began.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to this signal handler.
pub unsafe fn resume_interrupted(uc: *mut libc::c_void) {
    ENTERED_NS.with(|e| e.set(sys::now_ns()));
    let me = sys::gettid();
    let Some(r) = RECORDS.iter().find(|r| r.tid.load(Acquire) == me) else {
        return;
    };
    let (ret, pc, regs) = arch::frame_syscall(uc);
    if ret != -(libc::EINTR as i64) || pc != r.pc.load(Relaxed) || !arch::after_syscall_insn(pc) {
        return;
    }
    let nr = r.nr.load(Relaxed);
    let mut args = [0u64; 6];
    for (a, s) in args.iter_mut().zip(&r.args) {
        *a = s.load(Relaxed);
    }
    // The return value overwrote one register on some arches: compare the
    // others (the same pc with the same arguments is the same call).
    if !arch::SYSCALL_RET_CLOBBERS
        .iter()
        .zip(regs.iter().zip(&args))
        .all(|(&clobbered, (a, b))| clobbered || a == b)
    {
        return;
    }
    r.tid.store(0, Relaxed);
    if arch::relative_timeout(nr, &args) {
        INTERRUPTED.with(|c| c.set(c.get() + 1));
    } else {
        arch::rewind_syscall(uc, nr, &args);
    }
}

/// In the handler of a trigger signal selfckpt holds (SIGUSR1, SIGUSR2
/// sent with `kill`): if its frame shows a system call that the signal
/// ended with `EINTR`, counts it, so that the libc-level wrappers of
/// `crate::interpose::waits` make the call again (with the time left).
/// The call cannot be rewound here: the frame does not say which call it
/// was. Async-signal-safe.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to this signal handler.
pub unsafe fn note_trigger_interruption(uc: *mut libc::c_void) {
    let (ret, pc, _) = arch::frame_syscall(uc);
    if ret == -(libc::EINTR as i64) && arch::after_syscall_insn(pc) {
        INTERRUPTED.with(|c| c.set(c.get() + 1));
    }
}

/// In the handler, on leaving (released, or restarted): counts the time
/// parked.
pub fn leave_parked() {
    let entered = ENTERED_NS.with(|e| e.replace(0));
    if entered != 0 {
        let spent = sys::now_ns().wrapping_sub(entered);
        PAUSED_NS.with(|p| p.set(p.get().wrapping_add(spent)));
    }
}

/// How many calls of this thread selfckpt's signals interrupted so far
/// in a way the wrappers must make good (relative-timeout calls the
/// suspend signal interrupted, any call a trigger signal interrupted).
pub fn interrupted_count() -> u64 {
    INTERRUPTED.with(|c| c.get())
}

/// Nanoseconds this thread spent parked so far (see the module comment:
/// a deadline taken before a restart plus the change of this value is the
/// same deadline on the new clock).
pub fn paused_ns() -> u64 {
    PAUSED_NS.with(|p| p.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        let l = b"7 0x7ffd1000 0x1 0xffffffff 0x0 0x0 0x0 0x7ffd0f00 0x7f001234\n";
        let (nr, args, pc) = parse_syscall_line(l).unwrap();
        assert_eq!(nr, 7);
        assert_eq!(args, [0x7ffd1000, 1, 0xffffffff, 0, 0, 0]);
        assert_eq!(pc, 0x7f001234);
        for bad in [
            &b"running\n"[..],
            b"-1 0x7ffd0f00 0x7f001234\n",
            b"7 0x1 0x2\n",
            b"7 1 2 3 4 5 6 7 8\n",
            b"",
        ] {
            assert_eq!(
                parse_syscall_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_thread_blocked_in_poll_is_seen_in_poll() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(sys::gettid()).unwrap();
            // SAFETY: poll with no descriptors sleeps for the timeout.
            unsafe { libc::poll(core::ptr::null_mut(), 0, 3000) };
        });
        let tid = rx.recv().unwrap();
        let mut buf = [0u8; 256];
        let mut seen = None;
        for _ in 0..200 {
            note_before_signal(0, tid, &mut buf);
            if RECORDS[0].tid.load(Acquire) == tid {
                seen = Some(RECORDS[0].nr.load(Relaxed));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let nr = seen.expect("the thread was never seen blocked");
        assert!(nr == libc::SYS_poll || nr == libc::SYS_ppoll, "{nr}");
        drop(t);
    }
}
