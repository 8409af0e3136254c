//! Critical sections: one atomic word that holds how many critical sections
//! are open (any thread, nested) and three flags.
//!
//! ```text
//!  bit 31  CLOSED   a checkpoint is in progress: new critical sections wait
//!  bit 30  PENDING  a checkpoint waits for the open sections to end
//!  bit 29  BARRIER  ... and has waited long: new outermost sections wait
//!  bits 0..28       number of open critical sections
//! ```
//!
//! [`disable`] enters only with a compare-and-swap from a word without
//! CLOSED, and the manager closes only with a compare-and-swap from a word
//! whose count is 0, so a thread that enters at the very instant the manager
//! decides to close either gets in first (and the manager waits for it) or
//! sees CLOSED (and waits for the checkpoint to end). Waiting is a futex wait
//! on the word itself.
//!
//! Starvation: threads that enter sections back to back may never let the
//! count reach 0. After `GRACE` the manager raises BARRIER: a thread that
//! holds no section then waits before entering (nested entries still go on,
//! or a thread would wait for itself). If the count still has not reached 0
//! after `BARRIER_MAX` (say, a thread in a section waits for another thread
//! to enter one), the manager lowers the barrier for a `GRACE` and tries
//! again, so such a program is slowed, never deadlocked.
//!
//! Must never: allocate or lock while the gate is closed on behalf of a
//! waiting thread (the waits are plain futex calls), or make the manager
//! thread wait on a gate it closed itself (hooks may call [`disable`]).

use crate::capture::sys::{futex_wait, futex_wake};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::*};

const CLOSED: u32 = 1 << 31;
const PENDING: u32 = 1 << 30;
const BARRIER: u32 = 1 << 29;
const COUNT: u32 = BARRIER - 1;
/// How long open sections may keep a checkpoint out before new ones wait.
const GRACE_NS: u64 = 50_000_000;
/// How long the barrier stays up at most before it is lowered for a grace.
const BARRIER_MAX_NS: u64 = 2_000_000_000;

static GATE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// True on the thread that closed the gate (the manager), while closed.
    static OWNER: AtomicBool = const { AtomicBool::new(false) };
    /// Sections this thread entered and has not left.
    static DEPTH: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// True on the thread that holds the gate closed (the manager, while it
/// runs a checkpoint and its hooks).
pub fn closed_here() -> bool {
    OWNER.with(|o| o.load(Relaxed))
}

/// True if the calling thread is inside a critical section: a checkpoint
/// it waited for could never start.
pub fn held_here() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Keeps checkpoints out while it lives (a critical section). Returned by
/// [`disable`]; dropping it ends the section.
///
/// ```
/// let _cs = selfckpt::disable();
/// // ... state that must not be captured half-way ...
/// // a checkpoint asked for now runs as soon as `_cs` is dropped
/// ```
#[must_use = "the critical section ends when the guard is dropped"]
pub struct CriticalSection {
    counted: bool,
    // Not Send: a section ends on the thread that began it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for CriticalSection {
    fn drop(&mut self) {
        if self.counted {
            leave();
        }
    }
}

/// Begins a critical section: no checkpoint starts until the returned guard
/// (and every other open section) is dropped. Sections nest and may be
/// opened from any thread. If a checkpoint is in progress, waits for it to
/// end first.
pub fn disable() -> CriticalSection {
    CriticalSection {
        counted: enter(),
        _not_send: PhantomData,
    }
}

/// Enters a section (the counted form behind [`disable`] and the C ABI).
/// Returns false when called from the thread that holds the gate closed
/// (a hook): that section is not counted, since nothing can checkpoint
/// behind the manager's back.
pub fn enter() -> bool {
    if OWNER.with(|o| o.load(Relaxed)) {
        return false;
    }
    let outermost = !held_here();
    loop {
        let v = GATE.load(Acquire);
        if v & CLOSED != 0 || (outermost && v & BARRIER != 0) {
            futex_wait(&GATE, v, None);
            continue;
        }
        if v & COUNT == COUNT {
            // Saturated: absurd nesting depth; wait rather than overflow.
            std::thread::yield_now();
            continue;
        }
        if GATE
            .compare_exchange_weak(v, v + 1, AcqRel, Acquire)
            .is_ok()
        {
            DEPTH.with(|d| d.set(d.get() + 1));
            return true;
        }
    }
}

/// Leaves a section entered with [`enter`]. Returns false (and changes
/// nothing) if no section was open.
pub fn leave() -> bool {
    let mut v = GATE.load(Acquire);
    loop {
        if v & COUNT == 0 {
            return false;
        }
        match GATE.compare_exchange_weak(v, v - 1, AcqRel, Acquire) {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    if (v - 1) & COUNT == 0 && v & (PENDING | BARRIER) != 0 {
        futex_wake(&GATE, i32::MAX);
    }
    true
}

/// Number of open critical sections.
pub fn open_sections() -> u32 {
    GATE.load(Acquire) & COUNT
}

/// Closes the gate for a checkpoint: waits until no section is open, then
/// marks a checkpoint in progress. Logs once if it had to wait. Called by
/// the manager thread only; pair with [`open`].
pub fn close() {
    let mut logged = false;
    let mut phase_start = crate::capture::sys::now_ns();
    loop {
        let v = GATE.load(Acquire);
        if v & COUNT == 0 {
            if GATE.compare_exchange(v, CLOSED, AcqRel, Acquire).is_ok() {
                OWNER.with(|o| o.store(true, Relaxed));
                if logged {
                    log::info!("critical sections ended: the delayed checkpoint starts");
                }
                return;
            }
            continue;
        }
        let waited = crate::capture::sys::now_ns().saturating_sub(phase_start);
        let want = if v & BARRIER == 0 && waited >= GRACE_NS {
            v | PENDING | BARRIER
        } else if v & BARRIER != 0 && waited >= GRACE_NS + BARRIER_MAX_NS {
            log::warn!(
                "checkpoint still delayed by {} critical section(s) after {} s; letting new \
                 sections in for a while (does a thread in a section wait for another?)",
                v & COUNT,
                (GRACE_NS + BARRIER_MAX_NS) / 1_000_000_000
            );
            (v | PENDING) & !BARRIER
        } else {
            v | PENDING
        };
        if want != v {
            if GATE.compare_exchange(v, want, AcqRel, Acquire).is_err() {
                continue;
            }
            if want & BARRIER == 0 && v & BARRIER != 0 {
                phase_start = crate::capture::sys::now_ns();
                futex_wake(&GATE, i32::MAX);
            }
            if !logged {
                log::info!("checkpoint delayed: {} critical section(s) open", v & COUNT);
                logged = true;
            }
        }
        let deadline = if want & BARRIER == 0 {
            GRACE_NS
        } else {
            GRACE_NS + BARRIER_MAX_NS
        };
        let waited = crate::capture::sys::now_ns().saturating_sub(phase_start);
        futex_wait(
            &GATE,
            want,
            Some(deadline.saturating_sub(waited).max(1_000_000)),
        );
    }
}

/// Ends the checkpoint: lets waiting critical sections in.
pub fn open() {
    OWNER.with(|o| o.store(false, Relaxed));
    GATE.store(0, Release);
    futex_wake(&GATE, i32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    // The gate is one process-wide word: the tests share one function so
    // they never run in parallel with each other.
    #[test]
    fn gate_nesting_waiting_and_racing() {
        // Nesting and counting.
        let a = disable();
        let b = disable();
        assert_eq!(open_sections(), 2);
        assert!(held_here());
        drop(b);
        drop(a);
        assert_eq!(open_sections(), 0);
        assert!(!held_here());
        assert!(!leave(), "leave without enter must not underflow");

        // A close waits for the open section, which ends on another thread.
        let entered = Arc::new(AtomicBool::new(false));
        let e2 = entered.clone();
        let h = std::thread::spawn(move || {
            let _cs = disable();
            e2.store(true, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        while !entered.load(SeqCst) {
            std::thread::yield_now();
        }
        let t0 = std::time::Instant::now();
        close();
        assert!(t0.elapsed() >= std::time::Duration::from_millis(50));
        assert_eq!(open_sections(), 0);
        // The owner's own sections are not counted and do not block.
        let own = disable();
        assert_eq!(open_sections(), 0);
        drop(own);
        open();
        h.join().unwrap();

        // Racing: threads enter and leave while the "manager" closes and
        // opens; inside a closed gate no section may be open.
        let stop = Arc::new(AtomicBool::new(false));
        let inside = Arc::new(AtomicU64::new(0));
        let mut hs = Vec::new();
        for _ in 0..4 {
            let (stop, inside) = (stop.clone(), inside.clone());
            hs.push(std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    let _cs = disable();
                    inside.fetch_add(1, SeqCst);
                    std::hint::spin_loop();
                    inside.fetch_sub(1, SeqCst);
                }
            }));
        }
        for _ in 0..300 {
            close();
            assert_eq!(inside.load(SeqCst), 0, "a section ran inside a checkpoint");
            open();
        }
        stop.store(true, Relaxed);
        for h in hs {
            h.join().unwrap();
        }

        // A thread in a section waits for another to enter one: the
        // barrier is lowered after a while, so this is slow, not a deadlock.
        let (a_in, b_in) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a2, b2) = (a_in.clone(), b_in.clone());
        let a = std::thread::spawn(move || {
            let _cs = disable();
            a2.store(true, SeqCst);
            while !b2.load(SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        while !a_in.load(SeqCst) {
            std::thread::yield_now();
        }
        let b3 = b_in.clone();
        let b = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200)); // after the barrier rose
            let _cs = disable();
            b3.store(true, SeqCst);
        });
        close();
        assert!(b_in.load(SeqCst), "closed while a section was open");
        open();
        a.join().unwrap();
        b.join().unwrap();
    }
}
