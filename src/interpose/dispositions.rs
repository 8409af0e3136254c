//! Signal dispositions as the program sees them (`sigaction`, `signal`,
//! `sysv_signal`, `bsd_signal`).
//!
//! * selfckpt's reserved signals (`masks::SUSPEND`, `masks::REQUEST`) stay
//!   selfckpt's in the kernel, but a program that sets a disposition for
//!   one (the Go runtime sets one for every signal) succeeds and reads it
//!   back: the disposition is the program's view ([`reserved_view`]), and
//!   a suspend signal another sender queues runs it
//!   ([`foreign_reserved`]). Refusing with `EINVAL`, as glibc refuses its
//!   own, made Go fall back to the raw system call, which put its handler
//!   in place of selfckpt's: no checkpoint could stop its threads.
//! * The trigger signals (SIGUSR1 and SIGUSR2 by default) are selfckpt's
//!   only until the program wants them: a program that installs a
//!   disposition for one takes it over (its handler wins), selfckpt warns
//!   once on stderr, and checkpoints go on through the request channel
//!   (`selfckpt checkpoint PID` uses it). Until then the program reads
//!   back the disposition it had before selfckpt took the signal.
//!
//! * A handler the program installs runs through [`trampoline`], which
//!   counts, per thread, the program's handlers that ran
//!   ([`program_handlers_run`]) before calling it. The wrappers of
//!   `interpose::waits` read the count: a call that ended with `EINTR`
//!   while only selfckpt's signals ran is made again, one a program handler
//!   interrupted returns `EINTR` to the program, as without selfckpt. The
//!   program reads back its own handler and flags; the kernel (and so the
//!   image) holds the trampoline, which is in the library's memory and comes
//!   back with it.
//!
//! Async-signal-safe (`sigaction` and `signal` may be called from
//! handlers): no allocation, no locks.

use super::masks::reserved;
use super::next;
use crate::capture::sys;
use crate::trigger;
use core::cell::Cell;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::*};
use libc::{c_int, sighandler_t};

/// The program's handler of each signal that runs through the trampoline
/// (0: none), and the flags it was installed with.
static HANDLERS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
static FLAGS: [AtomicI32; 65] = [const { AtomicI32::new(0) }; 65];

thread_local! {
    /// Program handlers that ran on this thread so far.
    static RUN: Cell<u64> = const { Cell::new(0) };
}

/// How many of the program's signal handlers ran on this thread so far.
pub fn program_handlers_run() -> u64 {
    RUN.with(|c| c.get())
}

type InfoHandler = unsafe extern "C-unwind" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void);
type PlainHandler = unsafe extern "C-unwind" fn(c_int);

/// What the kernel calls for a program's handler: counts it, then calls
/// it with what the kernel gave (the same siginfo and context, so a
/// handler that edits its context edits the real one). May be unwound
/// through (`siglongjmp`, a foreign exception).
unsafe extern "C-unwind" fn trampoline(
    sig: c_int,
    info: *mut libc::siginfo_t,
    uc: *mut libc::c_void,
) {
    RUN.with(|c| c.set(c.get() + 1));
    let Some(i) = slot(sig) else { return };
    let h = HANDLERS[i].load(Acquire);
    if h == 0 {
        return;
    }
    if FLAGS[i].load(Relaxed) & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed h as an SA_SIGINFO handler.
        let f: InfoHandler = core::mem::transmute(h);
        f(sig, info, uc)
    } else {
        // SAFETY: the program installed h as a plain handler.
        let f: PlainHandler = core::mem::transmute(h);
        f(sig)
    }
}

fn slot(sig: c_int) -> Option<usize> {
    (1..=64).contains(&sig).then_some(sig as usize)
}

fn is_handler(h: sighandler_t) -> bool {
    h != libc::SIG_DFL && h != libc::SIG_IGN && h != libc::SIG_ERR
}

/// The action the kernel gets for the program's `act`: the trampoline in
/// place of a handler (noted first, so a signal that comes in between
/// finds it).
unsafe fn as_kernel_action(sig: c_int, act: &libc::sigaction) -> libc::sigaction {
    let Some(i) = slot(sig).filter(|_| is_handler(act.sa_sigaction)) else {
        return *act;
    };
    FLAGS[i].store(act.sa_flags, Relaxed);
    HANDLERS[i].store(act.sa_sigaction, Release);
    let mut k = *act;
    k.sa_sigaction = trampoline as *const () as usize;
    k.sa_flags |= libc::SA_SIGINFO;
    k
}

/// The program's handler and flags noted for `sig` now.
fn noted(sig: c_int) -> (usize, c_int) {
    slot(sig).map_or((0, 0), |i| {
        (HANDLERS[i].load(Acquire), FLAGS[i].load(Relaxed))
    })
}

/// The action as the program installed it, from what the kernel has
/// (`noted`: what was noted for it when the kernel got it).
fn as_program_action(k: &mut libc::sigaction, noted: (usize, c_int)) {
    if k.sa_sigaction == trampoline as *const () as usize {
        k.sa_sigaction = noted.0;
        k.sa_flags = (k.sa_flags & !libc::SA_SIGINFO) | (noted.1 & libc::SA_SIGINFO);
    }
}

/// Installs the program's `act` (may be NULL: a query) for `sig`.
unsafe fn program_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let mut prev: libc::sigaction = core::mem::zeroed();
    let before = noted(sig);
    let r = match act.as_ref() {
        Some(a) => {
            let k = as_kernel_action(sig, a);
            next::sigaction(sig, &k, &mut prev)
        }
        None => next::sigaction(sig, core::ptr::null(), &mut prev),
    };
    if r != 0 {
        // Not installed: what is noted stays what the kernel has.
        if let Some(i) = slot(sig) {
            FLAGS[i].store(before.1, Relaxed);
            HANDLERS[i].store(before.0, Release);
        }
    }
    if r == 0 && !old.is_null() {
        as_program_action(&mut prev, before);
        *old = prev;
    }
    r
}

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
        return reserved_sigaction(sig, act, old);
    }
    if trigger::held(sig) {
        let before = trigger::program_view(sig);
        if !act.is_null() {
            let r = program_sigaction(sig, act, core::ptr::null_mut());
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
    program_sigaction(sig, act, old)
}

/// The program's view of selfckpt's two signals (index 0 the suspend
/// signal, 1 the request signal): handler, flags, mask (the kernel's 64
/// signals).
static RESERVED_HANDLER: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
static RESERVED_FLAGS: [AtomicI32; 2] = [const { AtomicI32::new(0) }; 2];
static RESERVED_MASK: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

fn reserved_index(sig: c_int) -> usize {
    usize::from(sig != super::masks::SUSPEND)
}

/// The disposition the program set for one of selfckpt's signals (SIG_DFL
/// until it sets one).
pub fn reserved_view(sig: c_int) -> libc::sigaction {
    let i = reserved_index(sig);
    // SAFETY: sigaction is plain old data; all zeros is SIG_DFL.
    let mut a: libc::sigaction = unsafe { core::mem::zeroed() };
    a.sa_sigaction = RESERVED_HANDLER[i].load(Acquire);
    a.sa_flags = RESERVED_FLAGS[i].load(Relaxed);
    // SAFETY: the first 8 bytes of a sigset_t are the kernel's 64 signals.
    unsafe {
        *(&mut a.sa_mask as *mut libc::sigset_t).cast::<u64>() = RESERVED_MASK[i].load(Relaxed)
    };
    a
}

/// `sigaction` of one of selfckpt's signals: the program's view changes,
/// the kernel's handler stays selfckpt's.
unsafe fn reserved_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let before = reserved_view(sig);
    if let Some(a) = act.as_ref() {
        let i = reserved_index(sig);
        RESERVED_FLAGS[i].store(a.sa_flags, Relaxed);
        RESERVED_MASK[i].store(
            *(&a.sa_mask as *const libc::sigset_t).cast::<u64>(),
            Relaxed,
        );
        RESERVED_HANDLER[i].store(a.sa_sigaction, Release);
    }
    if !old.is_null() {
        *old = before;
    }
    0
}

/// A suspend signal selfckpt did not send (another process's `kill`, the
/// program's own `raise`): what the program's view of it says, as the
/// kernel would have done. Its handler runs counted, as through the
/// trampoline; the default action of a real-time signal ends the process.
///
/// # Safety
/// Only from selfckpt's suspend handler, with the kernel's arguments.
pub unsafe fn foreign_reserved(sig: c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let view = reserved_view(sig);
    let h = view.sa_sigaction;
    if h == libc::SIG_IGN {
        return;
    }
    if h == libc::SIG_DFL {
        // As without selfckpt: the process ends by that signal.
        let mut dfl: libc::sigaction = core::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        next::sigaction(sig, &dfl, core::ptr::null_mut());
        let _ = sys::tgkill(sys::gettid(), sig);
        sys::change_signal_mask(libc::SIG_UNBLOCK, &[sig]);
        return;
    }
    RUN.with(|c| c.set(c.get() + 1));
    if view.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program set h as an SA_SIGINFO handler.
        let f: InfoHandler = core::mem::transmute(h);
        f(sig, info, uc)
    } else {
        // SAFETY: the program set h as a plain handler.
        let f: PlainHandler = core::mem::transmute(h);
        f(sig)
    }
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
    fn reserved_signals_keep_selfckpts_handler_and_show_the_programs() {
        extern "C" fn programs(_: c_int) {}
        for sig in [super::super::masks::SUSPEND, super::super::masks::REQUEST] {
            // SAFETY: queries and installs with valid actions.
            unsafe {
                let mut kernel_before: libc::sigaction = core::mem::zeroed();
                next::sigaction(sig, core::ptr::null(), &mut kernel_before);
                let mut old: libc::sigaction = core::mem::zeroed();
                assert_eq!(sigaction(sig, core::ptr::null(), &mut old), 0);
                assert_eq!(old.sa_sigaction, libc::SIG_DFL);
                let mut act: libc::sigaction = core::mem::zeroed();
                act.sa_sigaction = programs as *const () as usize;
                act.sa_flags = libc::SA_ONSTACK | libc::SA_RESTART;
                libc::sigaddset(&mut act.sa_mask, libc::SIGINT);
                assert_eq!(sigaction(sig, &act, core::ptr::null_mut()), 0);
                assert_eq!(sigaction(sig, core::ptr::null(), &mut old), 0);
                assert_eq!(old.sa_sigaction, act.sa_sigaction);
                assert_eq!(old.sa_flags, act.sa_flags);
                assert_eq!(libc::sigismember(&old.sa_mask, libc::SIGINT), 1);
                let mut kernel: libc::sigaction = core::mem::zeroed();
                next::sigaction(sig, core::ptr::null(), &mut kernel);
                assert_eq!(
                    kernel.sa_sigaction, kernel_before.sa_sigaction,
                    "the kernel's handler changed"
                );
                assert_eq!(signal(sig, libc::SIG_DFL), act.sa_sigaction);
            }
        }
        // Others go to glibc unchanged.
        // SAFETY: querying SIGWINCH's disposition.
        unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            assert_eq!(sigaction(libc::SIGWINCH, core::ptr::null(), &mut old), 0);
        }
    }

    static SEEN: AtomicI32 = AtomicI32::new(0);
    extern "C" fn plain(sig: c_int) {
        SEEN.store(sig, SeqCst);
    }
    extern "C" fn with_info(sig: c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel's siginfo for a signal this thread raised.
        let code = unsafe { (*info).si_code };
        SEEN.store(sig * 1000 + i32::from(code == libc::SI_TKILL), SeqCst);
    }

    #[test]
    fn program_handlers_run_counted_and_read_back_as_installed() {
        std::thread::spawn(|| {
            // SAFETY: installing handlers for otherwise unused signals of
            // this test process and raising them on this thread.
            unsafe {
                let sig = libc::SIGRTMIN() + 7;
                assert_eq!(signal(sig, plain as *const () as usize), libc::SIG_DFL);
                let n = program_handlers_run();
                libc::raise(sig);
                assert_eq!(SEEN.load(SeqCst), sig);
                assert_eq!(program_handlers_run(), n + 1);
                // The program reads back its own handler and flags; the
                // kernel has the trampoline.
                let mut old: libc::sigaction = core::mem::zeroed();
                sigaction(sig, core::ptr::null(), &mut old);
                assert_eq!(old.sa_sigaction, plain as *const () as usize);
                assert_eq!(old.sa_flags & libc::SA_SIGINFO, 0);
                assert_eq!(old.sa_flags & libc::SA_RESTART, libc::SA_RESTART);
                let mut k: libc::sigaction = core::mem::zeroed();
                next::sigaction(sig, core::ptr::null(), &mut k);
                assert_eq!(k.sa_sigaction, trampoline as *const () as usize);

                let mut act: libc::sigaction = core::mem::zeroed();
                act.sa_sigaction = with_info as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO;
                sigaction(sig, &act, &mut old);
                assert_eq!(old.sa_sigaction, plain as *const () as usize);
                libc::raise(sig);
                assert_eq!(SEEN.load(SeqCst), sig * 1000 + 1, "siginfo passed on");
                assert_eq!(signal(sig, libc::SIG_DFL), with_info as *const () as usize);
                next::sigaction(sig, core::ptr::null(), &mut k);
                assert_eq!(k.sa_sigaction, libc::SIG_DFL);
            }
        })
        .join()
        .unwrap();
    }
}
