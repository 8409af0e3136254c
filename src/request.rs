//! Checkpoint requests: who asked, and who was served.
//!
//! Every way of asking (the trigger and term signals, the API, the
//! interval, `selfckpt checkpoint PID`) calls [`ask`], which counts the
//! request and wakes the checkpoint thread. That thread [`take`]s the
//! count it is about to serve, runs one checkpoint and reports it with
//! [`served`]: one checkpoint serves every request made before it began,
//! so a burst of signals during a checkpoint coalesces into at most one
//! more. A caller that must know the outcome keeps the [`Ticket`] [`ask`]
//! gave it and [`wait`]s for it.
//!
//! ```text
//!  ask() ──> REQUESTS += 1, wake ──> take() returns REQUESTS
//!                                       checkpoint
//!  wait(ticket) <── wake ── SERVED = that count, outcome kept ── served()
//! ```
//!
//! [`ask`] is async-signal-safe (atomics and a futex wake only) and is
//! what signal handlers call. Must never: allocate or lock in [`ask`], or
//! let a ticket be served by a checkpoint that began before it was asked.

use crate::capture::sys::{futex_wait, futex_wake};
use crate::{Error, Outcome};
use core::sync::atomic::{AtomicU32, Ordering::*};
use std::sync::{Arc, Mutex};

/// Requests made (futex word).
static REQUESTS: AtomicU32 = AtomicU32::new(0);
/// Requests served (futex word).
static SERVED: AtomicU32 = AtomicU32::new(0);
/// The outcome of the latest checkpoint.
static LAST: Mutex<Option<Result<Outcome, Arc<Error>>>> = Mutex::new(None);

/// A request's place in line: served once `SERVED` reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u32);

/// Asks for a checkpoint and wakes the checkpoint thread.
/// Async-signal-safe.
pub fn ask() -> Ticket {
    let t = REQUESTS.fetch_add(1, AcqRel).wrapping_add(1);
    futex_wake(&REQUESTS, 1);
    Ticket(t)
}

/// In a forked child: the requests its parent had not served yet are the
/// parent's, not the child's.
pub(crate) fn forget_pending() {
    SERVED.store(REQUESTS.load(Acquire), Release);
}

/// Wakes the checkpoint thread without asking (its idle deadline changed).
pub(crate) fn nudge() {
    futex_wake(&REQUESTS, 1);
}

/// Blocks until a checkpoint that began after `t` was asked has ended, and
/// returns that checkpoint's outcome.
pub fn wait(t: Ticket) -> Result<Outcome, Arc<Error>> {
    loop {
        let s = SERVED.load(Acquire);
        if s.wrapping_sub(t.0) as i32 >= 0 {
            break;
        }
        futex_wait(&SERVED, s, None);
    }
    match LAST.lock() {
        Ok(last) => last
            .clone()
            .unwrap_or_else(|| Err(Arc::new(Error::Config("no checkpoint result".into())))),
        Err(_) => Err(Arc::new(Error::Config(
            "request state lock poisoned".into(),
        ))),
    }
}

/// For the checkpoint thread: the request count to serve now, or `None`
/// after waiting up to `timeout_ns` (`None`: forever) with nothing asked.
pub(crate) fn take(timeout_ns: Option<u64>) -> Option<u32> {
    let req = REQUESTS.load(Acquire);
    if req != SERVED.load(Acquire) {
        return Some(req);
    }
    futex_wait(&REQUESTS, req, timeout_ns);
    let req = REQUESTS.load(Acquire);
    (req != SERVED.load(Acquire)).then_some(req)
}

/// For the checkpoint thread: every request up to `upto` (what [`take`]
/// returned) is served with `outcome`; wakes the waiters.
pub(crate) fn served(upto: u32, outcome: Result<Outcome, Arc<Error>>) {
    if let Ok(mut last) = LAST.lock() {
        *last = Some(outcome);
    }
    SERVED.store(upto, Release);
    futex_wake(&SERVED, i32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statics are process-wide: one test walks the whole protocol.
    #[test]
    fn a_ticket_is_served_only_by_a_checkpoint_that_began_after_it() {
        assert_eq!(take(Some(1_000_000)), None, "nothing asked yet");
        let first = ask();
        let upto = take(None).expect("a request");
        let second = ask(); // asked while `upto` is being served
        served(upto, Ok(Outcome::Continued));
        assert_eq!(wait(first).ok(), Some(Outcome::Continued));
        // `second` is not served yet: the next take returns it.
        let next = take(None).expect("the second request");
        assert!(next.wrapping_sub(second.0) as i32 >= 0);
        let waiter = std::thread::spawn(move || wait(second));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished(), "served before its checkpoint ended");
        served(next, Ok(Outcome::Restarted));
        assert_eq!(waiter.join().unwrap().ok(), Some(Outcome::Restarted));
        assert_eq!(take(Some(1_000_000)), None, "everything served");
    }
}
