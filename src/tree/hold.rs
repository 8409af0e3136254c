//! The fork and exit hold of one member: while the tree is being
//! checkpointed (from the freeze to the resume) no member may fork or
//! exit, so the set of processes the cut sees is the set that goes on.
//!
//! `fork` passes through [`before_fork`] (a `pthread_atfork` prepare
//! handler) and [`after_fork_parent`]; exits through [`before_exit`]
//! (an `atexit` handler and the interposed `_exit`). [`hold`] raises the
//! hold and waits for forks already past the check.
//!
//! Async-signal-safe and allocation-free (a futex and atomics): `_exit`
//! may run in a `vfork` child. Must never: hold a thread of selfckpt's own
//! (the checkpoint thread raises the hold and never forks).

use crate::capture::sys::{futex_wait, futex_wake};
use core::sync::atomic::{AtomicU32, Ordering::*};

/// 1 while held (futex word).
static HELD: AtomicU32 = AtomicU32::new(0);
/// Forks past the check and not yet returned in the parent (futex word).
static FORKING: AtomicU32 = AtomicU32::new(0);

fn wait_open() {
    while HELD.load(Acquire) != 0 {
        futex_wait(&HELD, 1, None);
    }
}

/// Whether a fork is under way (counted by [`before_fork`], not yet
/// returned in the parent). SeqCst: one side of the tree's descriptor
/// guard (`tree::make_own`).
pub fn forking() -> bool {
    core::sync::atomic::fence(SeqCst);
    FORKING.load(SeqCst) != 0
}

/// Waits until no fork is under way.
pub fn wait_no_fork() {
    loop {
        let n = FORKING.load(Acquire);
        if n == 0 {
            return;
        }
        futex_wait(&FORKING, n, Some(1_000_000));
    }
}

/// Before a fork: waits while held, then counts the fork.
pub fn before_fork() {
    loop {
        wait_open();
        FORKING.fetch_add(1, AcqRel);
        if HELD.load(Acquire) == 0 {
            return;
        }
        // Held in between: step back and wait.
        after_fork_parent();
    }
}

/// After a fork, in the parent.
pub fn after_fork_parent() {
    if FORKING.fetch_sub(1, AcqRel) == 1 {
        futex_wake(&FORKING, i32::MAX);
    }
}

/// After a fork, in the child: nothing of the parent's is under way here.
pub fn after_fork_child() {
    FORKING.store(0, Release);
    HELD.store(0, Release);
}

/// Before the process exits: waits while held.
pub fn before_exit() {
    wait_open();
}

/// Raises the hold; waits (up to `timeout_ms`) for forks under way.
/// Returns false if one did not end in time (the hold stays raised).
pub fn hold(timeout_ms: u64) -> bool {
    HELD.store(1, Release);
    let deadline = crate::capture::sys::now_ns() + timeout_ms * 1_000_000;
    loop {
        let n = FORKING.load(Acquire);
        if n == 0 {
            return true;
        }
        let now = crate::capture::sys::now_ns();
        if now >= deadline {
            return false;
        }
        futex_wait(&FORKING, n, Some((deadline - now).min(10_000_000)));
    }
}

/// Lowers the hold.
pub fn release() {
    HELD.store(0, Release);
    futex_wake(&HELD, i32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_waits_for_the_release_and_the_hold_waits_for_forks() {
        before_fork(); // a fork under way
        let t = std::thread::spawn(|| hold(2000));
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(!t.is_finished(), "the hold did not wait for the fork");
        after_fork_parent();
        assert!(t.join().unwrap());
        let f = std::thread::spawn(|| {
            before_fork();
            after_fork_parent();
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(!f.is_finished(), "a fork went through the hold");
        release();
        f.join().unwrap();
    }
}
