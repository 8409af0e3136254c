//! Blocking calls that selfckpt's signals must not end early.
//!
//! The suspend handler puts most interrupted calls back itself
//! (`capture::interrupted`); these it cannot, since the kernel forgets the
//! time left: `poll` and `epoll_wait`/`epoll_pwait`/`epoll_pwait2` with a timeout,
//! `nanosleep`, relative `clock_nanosleep`, `usleep`, `sleep`,
//! `sigtimedwait`, `semtimedop`. Each wrapper here notes its deadline and,
//! when selfckpt's signals (and no handler of the program:
//! `dispositions::program_handlers_run`) interrupted the call, calls again
//! with the time left, not counting the time the thread was parked (so a
//! 2 s wait lasts 2 s plus the pause, also across a restart).
//!
//! A trigger signal sent with `kill` (SIGUSR1, SIGUSR2, while selfckpt
//! holds them) runs its handler on whichever thread the kernel picks, and
//! cannot put the call back: the wrappers make every call they wrap again
//! when that handler (and no handler of the program) ended it with
//! `EINTR`: also `poll`, `select`, `epoll_wait` without a timeout,
//! `ppoll`, `pselect`, `sigsuspend`, `pause`, `sigwaitinfo`, `msgrcv`,
//! `msgsnd`, `semop`.
//! Also: the masks of `ppoll`, `pselect` and `epoll_pwait` never block
//! selfckpt's signals.
//!
//! Async-signal-safe where glibc's are: no allocation, no locks.

use super::dispositions::program_handlers_run;
use super::masks::{as_mask, ptr};
use super::next;
use crate::capture::interrupted::{interrupted_count, paused_ns};
use crate::capture::sys;
use libc::{c_int, c_uint, sigset_t, timespec};

/// One wait with a relative timeout.
struct Wait {
    total_ns: u64,
    start_ns: u64,
    paused_at_start: u64,
    interruptions: u64,
    program_handlers: u64,
}

impl Wait {
    fn new(total_ns: u64) -> Wait {
        Wait {
            total_ns,
            start_ns: sys::now_ns(),
            paused_at_start: paused_ns(),
            interruptions: interrupted_count(),
            program_handlers: program_handlers_run(),
        }
    }

    /// Whether the call just failed with EINTR because of selfckpt's
    /// signals only: then it must be made again.
    fn interrupted_by_us(&mut self, failed: bool) -> bool {
        // SAFETY: reading this thread's errno.
        let eintr = failed && unsafe { *libc::__errno_location() } == libc::EINTR;
        self.ours(eintr)
    }

    /// Whether an interruption (`eintr`) was selfckpt's only; notes the
    /// counts for the next call.
    fn ours(&mut self, eintr: bool) -> bool {
        let (n, p) = (interrupted_count(), program_handlers_run());
        let ours = eintr && n != self.interruptions && p == self.program_handlers;
        self.interruptions = n;
        self.program_handlers = p;
        ours
    }

    /// Time left, the thread's parked time not counted.
    fn left_ns(&self) -> u64 {
        let paused = paused_ns().wrapping_sub(self.paused_at_start);
        let spent = sys::now_ns()
            .wrapping_sub(self.start_ns)
            .saturating_sub(paused);
        self.total_ns.saturating_sub(spent)
    }

    fn left_ms(&self) -> c_int {
        self.left_ns().div_ceil(1_000_000).min(c_int::MAX as u64) as c_int
    }

    fn left_timespec(&self) -> timespec {
        let ns = self.left_ns();
        timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        }
    }
}

fn ns_of(t: &timespec) -> Option<u64> {
    (t.tv_sec >= 0 && (0..1_000_000_000).contains(&t.tv_nsec))
        .then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// Calls `call` with the timeout in milliseconds (`ms` > 0) until the
/// suspend signal is not what ended it.
fn retry_ms(ms: c_int, mut call: impl FnMut(c_int) -> c_int) -> c_int {
    if ms == 0 {
        return call(ms);
    }
    if ms < 0 {
        return again(|| call(ms));
    }
    let mut w = Wait::new(ms as u64 * 1_000_000);
    let mut left = ms;
    loop {
        let r = call(left);
        if !w.interrupted_by_us(r == -1) {
            return r;
        }
        left = w.left_ms();
    }
}

/// Calls `call` (returning -1 and errno on failure) again while only
/// selfckpt's signals ended it with `EINTR` (calls without a timeout, or
/// whose time left the kernel keeps in the caller's arguments).
pub(crate) fn again(mut call: impl FnMut() -> c_int) -> c_int {
    let mut w = Wait::new(0);
    loop {
        let r = call();
        if !w.interrupted_by_us(r == -1) {
            return r;
        }
    }
}

/// Calls `call` with a relative timeout `t` (NULL: none) again with the
/// time left while only selfckpt's signals ended it with `EINTR`.
///
/// # Safety
/// `t` is NULL or points to a timespec.
pub(crate) unsafe fn again_timed(
    t: *const timespec,
    mut call: impl FnMut(*const timespec) -> c_int,
) -> c_int {
    let Some(total) = (!t.is_null()).then(|| ns_of(&*t)).flatten() else {
        return again(|| call(t));
    };
    let mut w = Wait::new(total);
    let mut ask = *t;
    loop {
        let r = call(&ask);
        if !w.interrupted_by_us(r == -1) {
            return r;
        }
        ask = w.left_timespec();
    }
}

/// `poll(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    retry_ms(timeout, |t| next::poll(fds, n, t))
}

/// `epoll_wait(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    ep: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    retry_ms(timeout, |t| next::epoll_wait(ep, events, max, t))
}

/// `epoll_pwait(2)`; its mask never blocks selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    ep: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    let copy = as_mask(mask);
    retry_ms(timeout, |t| {
        next::epoll_pwait(ep, events, max, t, ptr(&copy))
    })
}

/// `epoll_pwait2(2)`: its mask never blocks selfckpt's signals, and its
/// relative timeout (which the kernel forgets) is kept.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    ep: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    t: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let copy = as_mask(mask);
    again_timed(t, |t| next::epoll_pwait2(ep, events, max, t, ptr(&copy)))
}

/// `ppoll(2)`; its mask never blocks selfckpt's signals (the kernel
/// updates the time left, so the handler puts the call back itself).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    t: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let copy = as_mask(mask);
    again_timed(t, |t| next::ppoll(fds, n, t, ptr(&copy)))
}

/// `pselect(2)`; its mask never blocks selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    t: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let copy = as_mask(mask);
    again_timed(t, |t| next::pselect(n, r, w, e, t, ptr(&copy)))
}

/// `select(2)` (Linux updates its timeout to the time left, and leaves the
/// sets alone when it fails, so the same arguments make the call again).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    t: *mut libc::timeval,
) -> c_int {
    again(|| next::select(n, r, w, e, t))
}

/// `pause(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pause() -> c_int {
    again(|| next::pause())
}

/// `msgrcv(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn msgrcv(
    id: c_int,
    msg: *mut libc::c_void,
    size: libc::size_t,
    typ: libc::c_long,
    flags: c_int,
) -> libc::ssize_t {
    crate::kstate::sysvipc::note(crate::kstate::sysvipc::IpcKind::Msg, id, None);
    let mut got: libc::ssize_t = 0;
    again(|| {
        got = next::msgrcv(id, msg, size, typ, flags);
        if got < 0 {
            -1
        } else {
            0
        }
    });
    got
}

/// `msgsnd(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn msgsnd(
    id: c_int,
    msg: *const libc::c_void,
    size: libc::size_t,
    flags: c_int,
) -> c_int {
    crate::kstate::sysvipc::note(crate::kstate::sysvipc::IpcKind::Msg, id, None);
    again(|| next::msgsnd(id, msg, size, flags))
}

/// `semop(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn semop(id: c_int, ops: *mut libc::sembuf, n: libc::size_t) -> c_int {
    crate::kstate::sysvipc::note(crate::kstate::sysvipc::IpcKind::Sem, id, None);
    again(|| next::semop(id, ops, n))
}

/// `semtimedop(2)`: its timeout is relative, and the kernel forgets the
/// time left.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn semtimedop(
    id: c_int,
    ops: *mut libc::sembuf,
    n: libc::size_t,
    t: *const timespec,
) -> c_int {
    crate::kstate::sysvipc::note(crate::kstate::sysvipc::IpcKind::Sem, id, None);
    again_timed(t, |t| next::semtimedop(id, ops, n, t))
}

/// Sleeps `req` (relative) on `clock`; `Err(errno)` when something else
/// than the suspend signal interrupted it (then `rem` holds the time left).
unsafe fn sleep_relative(clock: libc::clockid_t, req: &timespec, rem: *mut timespec) -> c_int {
    let Some(total) = ns_of(req) else {
        return next::clock_nanosleep(clock, 0, req, rem);
    };
    let mut w = Wait::new(total);
    let mut ask = *req;
    loop {
        let e = next::clock_nanosleep(clock, 0, &ask, rem);
        if !w.ours(e == libc::EINTR) {
            return e;
        }
        ask = w.left_timespec();
    }
}

/// `nanosleep(2)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    if req.is_null() {
        return next::nanosleep(req, rem);
    }
    match sleep_relative(libc::CLOCK_MONOTONIC, &*req, rem) {
        0 => 0,
        e => {
            *libc::__errno_location() = e;
            -1
        }
    }
}

/// `clock_nanosleep(2)` (absolute sleeps are put back by the handler).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    if req.is_null() || flags & libc::TIMER_ABSTIME != 0 {
        return next::clock_nanosleep(clock, flags, req, rem);
    }
    sleep_relative(clock, &*req, rem)
}

/// `usleep(3)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn usleep(us: libc::useconds_t) -> c_int {
    let req = timespec {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_nsec: (us % 1_000_000) as libc::c_long * 1000,
    };
    nanosleep(&req, core::ptr::null_mut())
}

/// `sleep(3)`: the seconds left (rounded) when a signal of the program
/// ended it early.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let req = timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let mut rem = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if nanosleep(&req, &mut rem) == 0 {
        return 0;
    }
    rem.tv_sec as c_uint + (rem.tv_nsec >= 500_000_000) as c_uint
}

/// `sigtimedwait(2)`, never taking selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigtimedwait(
    set: *const sigset_t,
    info: *mut libc::siginfo_t,
    t: *const timespec,
) -> c_int {
    let copy = super::masks::without_reserved(set);
    again_timed(t, |t| next::sigtimedwait(ptr(&copy), info, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_neither_past_nor_parked_time() {
        let mut w = Wait::new(2_000_000_000);
        w.start_ns -= 500_000_000; // began half a second ago
        let left = w.left_ns();
        assert!((1_490_000_000..=1_500_000_000).contains(&left), "{left}");
        assert_eq!(w.left_ms(), left.div_ceil(1_000_000) as c_int);
        let t = w.left_timespec();
        assert!(t.tv_sec == 1 && t.tv_nsec >= 490_000_000, "{t:?}");
        w.start_ns -= 5_000_000_000;
        assert_eq!(w.left_ns(), 0, "never negative");
        // An EINTR that no suspend caused is the program's.
        // SAFETY: setting this thread's errno.
        unsafe { *libc::__errno_location() = libc::EINTR };
        assert!(!w.interrupted_by_us(true));
    }

    #[test]
    fn wrapped_sleeps_sleep() {
        let t0 = std::time::Instant::now();
        // SAFETY: plain calls with valid arguments.
        unsafe {
            assert_eq!(poll(core::ptr::null_mut(), 0, 30), 0);
            assert_eq!(usleep(20_000), 0);
            let req = timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            assert_eq!(nanosleep(&req, core::ptr::null_mut()), 0);
            assert_eq!(
                clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, core::ptr::null_mut()),
                0
            );
        }
        assert!(t0.elapsed() >= std::time::Duration::from_millis(70));
    }
}
