//! Triggers: what asks the manager thread for a checkpoint.
//!
//! * the trigger signal (SIGUSR1 by default): one more request;
//! * the term signal (SIGUSR2 by default): a request whose checkpoint is
//!   followed by `_exit(0)` once the image is durable (state TERM);
//! * [`crate::checkpoint`] (a numbered request it waits for);
//! * an interval: the manager's idle wait times out and makes a request.
//!
//! Each asks through `crate::request` (see there how requests coalesce).
//!
//! Must never: do anything in a signal handler but atomics and a futex wake
//! (async-signal-safe), or touch signals the program did not hand to us.

use crate::capture::sys;
use crate::request;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};

/// The next checkpoint is followed by an exit.
static TERM: AtomicBool = AtomicBool::new(false);
/// Interval between checkpoints in ns (0: none).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// Monotonic time of the next interval checkpoint.
static NEXT_DUE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
static TRIGGER_SIG: AtomicI32 = AtomicI32::new(0);
static TERM_SIG: AtomicI32 = AtomicI32::new(0);

fn on_trigger() {
    request::ask();
}

fn on_term() {
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
