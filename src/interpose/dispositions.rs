//! Signal dispositions as the program sees them (`sigaction`, `signal`,
//! `sysv_signal`, `bsd_signal`).
//!
//! * selfckpt's reserved signals (`masks::SUSPEND`, `masks::REQUEST`) are
//!   refused with `EINVAL`, as glibc refuses its own.
//! * The trigger signals (SIGUSR1 and SIGUSR2 by default) are selfckpt's
//!   only until the program wants them: a program that installs a
//!   disposition for one takes it over (its handler wins), selfckpt warns
//!   once on stderr, and checkpoints go on through the request channel
//!   (`selfckpt checkpoint PID` uses it). Until then the program reads
//!   back the disposition it had before selfckpt took the signal.
//!
//! Async-signal-safe (`sigaction` and `signal` may be called from
//! handlers): no allocation, no locks.

use super::masks::reserved;
use super::next;
use crate::trigger;
use libc::{c_int, sighandler_t};

/// `sigaction(2)` as the program sees it.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if reserved(sig) {
        *libc::__errno_location() = libc::EINVAL;
        return -1;
    }
    if trigger::held(sig) {
        let before = trigger::program_view(sig);
        if !act.is_null() {
            let r = next::sigaction(sig, act, core::ptr::null_mut());
            if r != 0 {
                return r;
            }
            trigger::hand_over(sig);
        }
        if !old.is_null() {
            *old = before;
        }
        return 0;
    }
    next::sigaction(sig, act, old)
}

/// Installs `handler` with `flags` through [`sigaction`]; the old handler.
unsafe fn install(sig: c_int, handler: sighandler_t, flags: c_int) -> sighandler_t {
    let mut act: libc::sigaction = core::mem::zeroed();
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    libc::sigemptyset(&mut act.sa_mask);
    let mut old: libc::sigaction = core::mem::zeroed();
    if sigaction(sig, &act, &mut old) != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// `signal(3)` (BSD semantics, as glibc's: `SA_RESTART`).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    install(sig, handler, libc::SA_RESTART)
}

/// `bsd_signal(3)`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    install(sig, handler, libc::SA_RESTART)
}

/// `sysv_signal(3)` (one-shot, not blocked while it runs).
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    install(sig, handler, libc::SA_RESETHAND | libc::SA_NODEFER)
}

/// glibc's internal name of `sysv_signal`, which `signal()` is under
/// `_XOPEN_SOURCE`.
///
/// # Safety
/// As for glibc's.
#[no_mangle]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    sysv_signal(sig, handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_signals_are_refused_like_glibcs() {
        for sig in [super::super::masks::SUSPEND, super::super::masks::REQUEST] {
            // SAFETY: a query and an install with a valid action.
            unsafe {
                let mut old: libc::sigaction = core::mem::zeroed();
                assert_eq!(sigaction(sig, core::ptr::null(), &mut old), -1);
                assert_eq!(*libc::__errno_location(), libc::EINVAL);
                assert_eq!(signal(sig, libc::SIG_IGN), libc::SIG_ERR);
            }
        }
        // Others go to glibc unchanged.
        // SAFETY: querying SIGWINCH's disposition.
        unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            assert_eq!(sigaction(libc::SIGWINCH, core::ptr::null(), &mut old), 0);
        }
    }
}
