//! Signal masks, sets and `SIGRTMAX` as the program sees them.
//!
//! selfckpt reserves the two highest signals: [`SUSPEND`] (parks threads
//! for a checkpoint) and [`REQUEST`] (the channel `selfckpt checkpoint
//! PID` may use). Like glibc, which keeps its two lowest realtime signals
//! for itself and reports `SIGRTMIN` above them, selfckpt reports
//! `SIGRTMAX` ([`__libc_current_sigrtmax`]) below its own, so a program
//! that picks signals from `SIGRTMIN..=SIGRTMAX` never meets them. A mask
//! the program sets (`sigprocmask`, `pthread_sigmask`, `sigsuspend`,
//! `pthread_attr_setsigmask_np`, the masks of `ppoll`, `pselect`,
//! `epoll_pwait`) never blocks them (every thread must be able to park;
//! requests are sent to the checkpoint thread itself, thread-directed, so
//! they never interrupt a call of the program). What the program reads
//! back (old masks, `sigpending`) never shows them; `sigwait*` and
//! `signalfd` never take them.
//!
//! Async-signal-safe where glibc's are: no allocation, no locks.

use super::next;
use libc::{c_int, sigset_t};

/// The kernel's highest signal on x86_64 and aarch64 (`_NSIG - 1`).
pub const KERNEL_SIGRTMAX: c_int = 64;
/// Parks threads for a checkpoint.
pub const SUSPEND: c_int = KERNEL_SIGRTMAX;
/// Reserved for checkpoint requests from outside.
pub const REQUEST: c_int = KERNEL_SIGRTMAX - 1;

/// Whether `sig` is one of selfckpt's.
pub fn reserved(sig: c_int) -> bool {
    sig == SUSPEND || sig == REQUEST
}

/// `set` without selfckpt's signals (a copy; `None` for NULL): a set to
/// wait on or read from.
///
/// # Safety
/// `set` is NULL or points to a signal set.
pub unsafe fn without_reserved(set: *const sigset_t) -> Option<sigset_t> {
    if set.is_null() {
        return None;
    }
    let mut s = *set;
    hide(&mut s);
    Some(s)
}

/// A mask the program sets (`SIG_SETMASK`, `SIG_BLOCK`, or a call's
/// temporary mask), as the kernel gets it: never blocking selfckpt's
/// signals.
///
/// # Safety
/// `set` is NULL or points to a signal set.
pub unsafe fn as_mask(set: *const sigset_t) -> Option<sigset_t> {
    without_reserved(set)
}

/// Removes selfckpt's signals from `set`.
pub fn hide(set: &mut sigset_t) {
    // SAFETY: set is a valid signal set; the numbers are valid signals.
    unsafe {
        libc::sigdelset(set, SUSPEND);
        libc::sigdelset(set, REQUEST);
    }
}

/// A pointer to `copy`'s set, or NULL.
pub fn ptr(copy: &Option<sigset_t>) -> *const sigset_t {
    copy.as_ref()
        .map_or(core::ptr::null(), |s| s as *const sigset_t)
}

/// Hides selfckpt's signals in a set the caller gets back.
///
/// # Safety
/// `set` is NULL or points to a writable signal set.
unsafe fn hide_out(set: *mut sigset_t) {
    if !set.is_null() {
        hide(&mut *set);
    }
}

/// `SIGRTMAX` as the program sees it: below selfckpt's two signals.
#[no_mangle]
pub extern "C" fn __libc_current_sigrtmax() -> c_int {
    REQUEST - 1
}

/// `sigprocmask(2)`, never blocking selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const sigset_t,
    old: *mut sigset_t,
) -> c_int {
    let copy = as_mask(set);
    let r = next::sigprocmask(how, ptr(&copy), old);
    hide_out(old);
    r
}

/// `pthread_sigmask(3)`, never blocking selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const sigset_t,
    old: *mut sigset_t,
) -> c_int {
    let copy = as_mask(set);
    let r = next::pthread_sigmask(how, ptr(&copy), old);
    hide_out(old);
    r
}

/// `pthread_attr_setsigmask_np(3)`: a new thread's mask never blocks
/// selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pthread_attr_setsigmask_np(
    attr: *mut libc::pthread_attr_t,
    set: *const sigset_t,
) -> c_int {
    let copy = as_mask(set);
    next::pthread_attr_setsigmask_np(attr, ptr(&copy))
}

/// `sigsuspend(2)`, with selfckpt's signals left deliverable (the suspend
/// handler puts the call back: the program never sees it return for them).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigsuspend(mask: *const sigset_t) -> c_int {
    let copy = as_mask(mask);
    super::waits::again(|| next::sigsuspend(ptr(&copy)))
}

/// `sigpending(2)`, without selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigpending(set: *mut sigset_t) -> c_int {
    let r = next::sigpending(set);
    hide_out(set);
    r
}

/// `signalfd(2)`, never reading selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn signalfd(fd: c_int, mask: *const sigset_t, flags: c_int) -> c_int {
    let copy = without_reserved(mask);
    next::signalfd(fd, ptr(&copy), flags)
}

/// `sigwait(3)`, never taking selfckpt's signals.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigwait(set: *const sigset_t, sig: *mut c_int) -> c_int {
    let copy = without_reserved(set);
    next::sigwait(ptr(&copy), sig)
}

/// `sigwaitinfo(2)`, never taking selfckpt's signals (put back by the
/// suspend handler when one interrupts it).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigwaitinfo(set: *const sigset_t, info: *mut libc::siginfo_t) -> c_int {
    let copy = without_reserved(set);
    super::waits::again(|| next::sigwaitinfo(ptr(&copy), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(s: &sigset_t, sig: c_int) -> bool {
        // SAFETY: s is a valid set.
        unsafe { libc::sigismember(s, sig) == 1 }
    }

    #[test]
    fn masks_never_block_or_show_the_reserved_signals() {
        std::thread::spawn(|| {
            // SAFETY: plain signal-set calls on this thread's own mask.
            unsafe {
                let mut all: sigset_t = core::mem::zeroed();
                libc::sigfillset(&mut all);
                let mut old: sigset_t = core::mem::zeroed();
                assert_eq!(pthread_sigmask(libc::SIG_SETMASK, &all, &mut old), 0);
                let mut now: sigset_t = core::mem::zeroed();
                // glibc's own view, below our wrapper: the kernel's mask.
                next::pthread_sigmask(libc::SIG_SETMASK, core::ptr::null(), &mut now);
                assert!(!member(&now, SUSPEND) && !member(&now, REQUEST));
                assert!(member(&now, libc::SIGUSR1) && member(&now, 40));
                let mut seen: sigset_t = core::mem::zeroed();
                sigprocmask(libc::SIG_BLOCK, core::ptr::null(), &mut seen);
                assert!(!member(&seen, SUSPEND) && member(&seen, libc::SIGTERM));
                // Even a mask glibc set with the reserved bits is read
                // back without them.
                next::pthread_sigmask(libc::SIG_SETMASK, &all, core::ptr::null_mut());
                pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut seen);
                assert!(!member(&seen, SUSPEND));
                pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
            }
        })
        .join()
        .unwrap();
        assert_eq!(__libc_current_sigrtmax(), 62);
        assert_eq!(
            libc::SIGRTMAX(),
            62,
            "libc's SIGRTMAX() must reach our wrapper"
        );
    }
}
