//! The suspended-world rule as a check: a global allocator (test and debug
//! builds, feature `alloc-guard`) that aborts the process with a clear
//! message when the checkpoint thread or a worker allocates, frees or
//! reallocates while a round is active (from `park::begin_round` to
//! `park::release`). The program's own threads are not checked: they run
//! freely until they park, and then they do not run.
//!
//! Runs inside every allocation: must not allocate, lock or print through
//! std (the message goes out with one raw `write`).

use super::park;
use std::alloc::{GlobalAlloc, Layout, System};

/// The guarding allocator: `System` plus the fence check.
pub struct Guard;

/// Set by a test to prove the guard fires: the next checkpoint's dump
/// allocates once inside its round (see [`breach_if_asked`]).
static SELFTEST: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Arms the self-test (`SELFCKPT_ALLOC_GUARD_SELFTEST=1`, read at install).
pub fn set_selftest(on: bool) {
    SELFTEST.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Allocates once if a test asked for it: called by the dump, in the round.
pub fn breach_if_asked() {
    if SELFTEST.swap(false, core::sync::atomic::Ordering::Relaxed) {
        let v = std::hint::black_box(Box::new(0u64));
        drop(v);
    }
}

fn check(what: &[u8]) {
    if park::round_active() && park::is_own_thread() {
        let mut msg = [0u8; 192];
        let mut n = 0;
        for part in [
            b"selfckpt: alloc-guard: ".as_slice(),
            what,
            b" on the checkpoint thread or a worker while the program's threads are parked (the suspended world must not allocate: see src/capture/mod.rs); aborting\n",
        ] {
            let take = part.len().min(msg.len() - n);
            msg[n..n + take].copy_from_slice(&part[..take]);
            n += take;
        }
        // SAFETY: writes our own stack buffer to stderr, then aborts
        // without unwinding (no allocation on the way).
        unsafe {
            libc::write(2, msg.as_ptr().cast(), n);
            libc::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the check only
// reads atomics and a thread-local cell.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(b"allocation");
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(b"allocation");
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check(b"free");
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(b"reallocation");
        System.realloc(ptr, layout, new_size)
    }
}
