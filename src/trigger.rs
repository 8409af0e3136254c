//! Triggers: what asks the manager thread for a checkpoint.
//!
//! * the trigger signal (SIGUSR1 by default): one more request;
//! * the term signal (SIGUSR2 by default): a request whose checkpoint is
//!   followed by `_exit(0)` once the image is durable (state TERM);
//! * the request channel, selfckpt's reserved signal
//!   `interpose::masks::REQUEST`, which `selfckpt checkpoint PID` sends
//!   with `sigqueue` (value 0: checkpoint, 1: checkpoint then exit): it
//!   works even when the program took the trigger signals for itself;
//! * [`crate::checkpoint`] (a numbered request it waits for);
//! * an interval: the manager's idle wait times out and makes a request.
//!
//! Each asks through `crate::request` (see there how requests coalesce).
//!
//! The trigger and term signals are selfckpt's only while the program does
//! not want them: one the program already handles at install is left to
//! it, and one it installs a disposition for later is handed over
//! ([`hand_over`], from `interpose::dispositions`); selfckpt warns once.
//! selfckpt's own threads block them: the handler runs in a thread of the
//! program that does not, so a program that blocks one in every thread
//! (to take it with `sigwait` or a signalfd) gets it, as without selfckpt.
//!
//! Must never: do anything in a signal handler but atomics and a futex wake
//! (async-signal-safe), or touch signals the program did not hand to us.

use crate::capture::sys;
use crate::interpose::{masks, next};
use crate::request;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};

/// The next checkpoint is followed by an exit.
static TERM: AtomicBool = AtomicBool::new(false);
/// Interval between checkpoints in ns (0: none).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// Monotonic time of the next interval checkpoint.
static NEXT_DUE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
static TRIGGER_SIG: AtomicI32 = AtomicI32::new(0);
static TERM_SIG: AtomicI32 = AtomicI32::new(0);
/// The signals selfckpt holds now (bit `sig`): trigger and term until the
/// program takes them.
static HELD: AtomicU64 = AtomicU64::new(0);
/// The term signal while a checkpoint that ends in an exit is under way
/// (0 otherwise): more of it then asks for nothing the process will do.
static SERVING_TERM: AtomicI32 = AtomicI32::new(0);

/// What the program had for the trigger and term signals before selfckpt
/// took them (what it reads back until it takes them).
struct Views(UnsafeCell<[libc::sigaction; 2]>);
// SAFETY: written only by `install`, before the signals are held (HELD is
// stored with Release after), read only while they are held.
unsafe impl Sync for Views {}
// SAFETY: an all-zero sigaction is SIG_DFL with no flags.
static VIEWS: Views = Views(UnsafeCell::new(unsafe { core::mem::zeroed() }));

extern "C" fn on_trigger(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: uc is the context the kernel passed to this handler.
    unsafe { crate::capture::interrupted::note_trigger_interruption(uc) };
    request::ask();
}

extern "C" fn on_term(_: libc::c_int, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: uc is the context the kernel passed to this handler.
    unsafe { crate::capture::interrupted::note_trigger_interruption(uc) };
    if SERVING_TERM.load(Acquire) != 0 {
        return; // the checkpoint under way already ends in an exit
    }
    TERM.store(true, Release);
    request::ask();
}

extern "C" fn on_request(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // a sigqueue'd value is an int at offset 24 of the union.
    let value = unsafe {
        if (*info).si_code == libc::SI_QUEUE {
            *((info as *const u8).add(24) as *const i32)
        } else {
            0
        }
    };
    if value == 1 {
        if SERVING_TERM.load(Acquire) != 0 {
            return; // the checkpoint under way already ends in an exit
        }
        TERM.store(true, Release);
    }
    request::ask();
}

/// Whether selfckpt holds `sig` now (a trigger the program did not take).
pub fn held(sig: i32) -> bool {
    (1..64).contains(&sig) && HELD.load(Acquire) & (1 << sig) != 0
}

/// The disposition the program had for a held signal before selfckpt.
pub fn program_view(sig: i32) -> libc::sigaction {
    let i = usize::from(sig != TRIGGER_SIG.load(Relaxed));
    // SAFETY: see `Views`.
    unsafe { (*VIEWS.0.get())[i] }
}

/// The program installed a disposition for `sig`: it is the program's
/// now. Warns once, on stderr (async-signal-safe: one write), in the
/// run's own process only: a tree is checkpointed through its root, so a
/// member's trigger never matters to the user, and a member (`make`, which
/// owns SIGUSR1, under a script) must not add lines to the output.
pub fn hand_over(sig: i32) {
    let before = HELD.fetch_and(!(1u64 << sig), AcqRel);
    if before & (1 << sig) != 0 && !crate::tree::is_member() {
        warn_taken(sig);
    }
}

fn warn_taken(sig: i32) {
    let mut msg = [0u8; 320];
    let mut n = 0;
    let mut put = |b: &[u8]| {
        let take = b.len().min(msg.len() - n);
        msg[n..n + take].copy_from_slice(&b[..take]);
        n += take;
    };
    put(b"selfckpt: the program handles signal ");
    let mut digits = [0u8; 4];
    let mut d = 4;
    let mut v = sig as u32;
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[d..]);
    put(match sig {
        libc::SIGUSR1 => b" (SIGUSR1)".as_slice(),
        libc::SIGUSR2 => b" (SIGUSR2)",
        _ => b"",
    });
    put(b" itself: it keeps it, and that signal no longer checkpoints; `selfckpt checkpoint PID` still does; \
another signal: --signal/--term-signal or SELFCKPT_SIGNAL/SELFCKPT_TERM_SIGNAL\n");
    // SAFETY: writing our own buffer to stderr.
    unsafe { libc::write(2, msg.as_ptr().cast(), n) };
}

/// Restores the default action of our signals in a forked child outside
/// a process tree: it has no checkpoint thread, so it must not swallow
/// them.
extern "C" fn in_forked_child() {
    if crate::tree::covers_forks() {
        return; // a member of the tree, with a checkpoint thread of its own
    }
    for sig in [TRIGGER_SIG.load(Relaxed), TERM_SIG.load(Relaxed)] {
        if held(sig) {
            // SAFETY: signal() with SIG_DFL is async-signal-safe and only
            // changes dispositions we installed ourselves.
            unsafe { next::signal(sig, libc::SIG_DFL) };
        }
    }
    HELD.store(0, Release);
    // SAFETY: as above, for the request channel.
    unsafe { next::signal(masks::REQUEST, libc::SIG_DFL) };
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `handler` for `sig` (bypassing the program's view) and returns
/// the disposition `sig` had.
fn take(sig: i32, handler: Handler) -> std::io::Result<libc::sigaction> {
    // SAFETY: sigaction is plain data; the handlers only touch atomics and
    // a futex (async-signal-safe).
    unsafe {
        let mut act: libc::sigaction = core::mem::zeroed();
        act.sa_sigaction = handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        let mut old: libc::sigaction = core::mem::zeroed();
        if next::sigaction(sig, &act, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// The disposition `sig` has now.
fn current(sig: i32) -> std::io::Result<libc::sigaction> {
    // SAFETY: a query into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        if next::sigaction(sig, core::ptr::null(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// Installs the signal handlers and the interval. A trigger signal the
/// program already handles stays the program's (with a warning).
pub fn install(
    trigger: i32,
    term: Option<i32>,
    interval: Option<std::time::Duration>,
) -> std::io::Result<()> {
    TRIGGER_SIG.store(trigger, Relaxed);
    TERM_SIG.store(term.unwrap_or(0), Relaxed);
    set_interval(interval);
    take(masks::REQUEST, on_request)?;
    let mut held = 0u64;
    for (i, sig, handler) in [
        (0, Some(trigger), on_trigger as Handler),
        (1, term, on_term),
    ] {
        let Some(sig) = sig else { continue };
        let now = current(sig)?;
        if now.sa_sigaction != libc::SIG_DFL && now.sa_sigaction != libc::SIG_IGN {
            warn_taken(sig);
            continue;
        }
        // SAFETY: see `Views`: nothing reads it before HELD says so.
        unsafe { (*VIEWS.0.get())[i] = now };
        take(sig, handler)?;
        held |= 1 << sig;
    }
    HELD.store(held, Release);
    // SAFETY: registers a child-side fork handler that only calls signal().
    unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
    Ok(())
}

/// Sets (or clears) the interval; the next checkpoint is due one interval
/// from now.
pub fn set_interval(interval: Option<std::time::Duration>) {
    let ns = interval.map_or(0, |d| d.as_nanos().min(u64::MAX as u128 / 2) as u64);
    INTERVAL_NS.store(ns, Release);
    rearm();
    // The manager may already sleep without a deadline: let it recompute.
    request::nudge();
}

/// Starts a new interval (after each checkpoint).
pub(crate) fn rearm() {
    let ns = INTERVAL_NS.load(Acquire);
    let due = if ns == 0 {
        u64::MAX
    } else {
        sys::now_ns().saturating_add(ns)
    };
    NEXT_DUE_NS.store(due, Release);
}

/// How long the idle checkpoint thread may wait for a request before the
/// interval is due (`None`: no interval). When it is due, it asks for the
/// interval checkpoint itself and returns 0.
pub(crate) fn idle_timeout_ns() -> Option<u64> {
    let due = NEXT_DUE_NS.load(Acquire);
    if due == u64::MAX {
        return None;
    }
    let now = sys::now_ns();
    if now < due {
        return Some(due - now);
    }
    NEXT_DUE_NS.store(u64::MAX, Release);
    log::debug!("interval checkpoint");
    request::ask();
    Some(0)
}

/// Takes the "exit after this checkpoint" flag (cleared, so that an image
/// never holds it set).
pub(crate) fn take_term() -> bool {
    TERM.swap(false, AcqRel)
}

/// Marks the start (`true`) or the end of a checkpoint followed by an exit.
/// While it runs, the term signal that comes again (Slurm, for one, sends
/// SIGTERM to every process of a job: a restarted program gets it from the
/// kernel and forwarded by `selfckpt restart`'s processes) belongs to the
/// process that is about to exit: it asks for nothing more, and the image
/// must hold it neither as a request nor as a pending signal (the
/// restarted program would checkpoint and exit at once).
pub(crate) fn serving_term(on: bool) {
    let sig = if on { TERM_SIG.load(Relaxed) } else { 0 };
    SERVING_TERM.store(sig, Release);
}

/// The term signal if the checkpoint under way ends in an exit, else 0.
/// Async-signal-safe.
pub(crate) fn term_being_served() -> i32 {
    SERVING_TERM.load(Acquire)
}

/// Parses a signal name or number: "USR1", "SIGUSR1", "10".
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use core::str::FromStr;
    use nix::sys::signal::Signal;
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signal_names() {
        for (text, want) in [
            ("USR1", Some(Signal::SIGUSR1)),
            ("sigusr2", Some(Signal::SIGUSR2)),
            ("SIGTERM", Some(Signal::SIGTERM)),
            ("10", Some(Signal::SIGUSR1)),
            ("NOPE", None),
            ("999", None),
        ] {
            assert_eq!(parse_signal(text), want, "{text}");
        }
    }
}
