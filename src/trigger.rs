//! Triggers: what asks the manager thread for a checkpoint.
//!
//! * the trigger signal (SIGUSR1 by default): one more request;
//! * the term signal (SIGUSR2 by default): a request whose checkpoint is
//!   followed by `_exit(0)` once the image is durable (state TERM);
//! * [`crate::checkpoint`] (a numbered request it waits for);
//! * an interval: the manager's idle wait times out and makes a request.
//!
//! Requests are counted in `manager::REQUESTS` and served in
//! `manager::SERVED`: a checkpoint serves every request made before it
//! began, so any number of signals arriving during a checkpoint coalesce
//! into at most one more.
//!
//! Must never: do anything in a signal handler but atomics and a futex wake
//! (async-signal-safe), or touch signals the program did not hand to us.

use crate::manager::REQUESTS;
use crate::sys::{self, futex_wait, futex_wake};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};

/// The next checkpoint is followed by an exit.
static TERM: AtomicBool = AtomicBool::new(false);
/// Interval between checkpoints in ns (0: none).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// Monotonic time of the next interval checkpoint.
static NEXT_DUE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
static TRIGGER_SIG: AtomicI32 = AtomicI32::new(0);
static TERM_SIG: AtomicI32 = AtomicI32::new(0);
/// The term signal while a checkpoint that ends in an exit is under way
/// (0 otherwise): more of it then asks for nothing the process will do.
static SERVING_TERM: AtomicI32 = AtomicI32::new(0);

fn on_trigger() {
    REQUESTS.fetch_add(1, AcqRel);
    futex_wake(&REQUESTS, 1);
}

fn on_term() {
    if SERVING_TERM.load(Acquire) != 0 {
        return; // the checkpoint under way already ends in an exit
    }
    TERM.store(true, Release);
    on_trigger();
}

/// Restores the default action of our signals in a forked child: it has no
/// checkpoint thread, so it must not swallow them.
extern "C" fn in_forked_child() {
    for sig in [TRIGGER_SIG.load(Relaxed), TERM_SIG.load(Relaxed)] {
        if sig > 0 {
            // SAFETY: signal() with SIG_DFL is async-signal-safe and only
            // changes dispositions we installed ourselves.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// Installs the signal handlers and the interval.
pub fn install(
    trigger: i32,
    term: Option<i32>,
    interval: Option<std::time::Duration>,
) -> std::io::Result<()> {
    TRIGGER_SIG.store(trigger, Relaxed);
    TERM_SIG.store(term.unwrap_or(0), Relaxed);
    set_interval(interval);
    // SAFETY: the handlers only touch atomics and a futex
    // (async-signal-safe).
    unsafe {
        signal_hook::low_level::register(trigger, on_trigger)?;
        if let Some(t) = term {
            signal_hook::low_level::register(t, on_term)?;
        }
    }
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
    futex_wake(&REQUESTS, 1);
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

/// The manager's idle wait while `REQUESTS` reads `seen`: returns when a
/// request arrives or the interval is due (then it makes the request).
pub(crate) fn idle_wait(seen: u32) {
    let due = NEXT_DUE_NS.load(Acquire);
    let now = sys::now_ns();
    if due == u64::MAX {
        futex_wait(&REQUESTS, seen, None);
    } else if now >= due {
        NEXT_DUE_NS.store(u64::MAX, Release);
        log::debug!("interval checkpoint");
        on_trigger();
    } else {
        futex_wait(&REQUESTS, seen, Some(due - now));
    }
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
