//! POSIX timers as the program makes them: `timer_create`,
//! `timer_settime` and `timer_delete`.
//!
//! * `SIGEV_THREAD`: glibc runs these from a helper thread it makes itself
//!   (not through a call selfckpt can see) with every signal blocked, so
//!   the suspend signal could never park it and no checkpoint could be
//!   taken. selfckpt does what glibc does with a helper of its own
//!   (`sigev_thread`, which `mq_notify`'s shares) that blocks every signal
//!   but the suspend signal: the kernel timer sends
//!   `SIGTIMER` (glibc's own, 32) to the helper (`SIGEV_THREAD_ID`, the
//!   value pointing at the timer's record), and the helper starts, for each
//!   expiry, a detached thread with the attributes the program gave, which
//!   calls the program's function with its value (its signal mask: the
//!   helper's, `SIGTIMER` unblocked, as glibc's). The `timer_t` is the
//!   kernel id, as glibc's is for the other kinds, so timer_settime,
//!   timer_gettime and timer_getoverrun are glibc's. The helper is an
//!   ordinary thread of the program: it is checkpointed and restarted with
//!   the others, and its timers (`kstate::posix_timers`) signal it again
//!   after a restart, by its new id if it has one.
//! * `timer_settime`: notes which timers were set with `TIMER_ABSTIME`
//!   (the kernel does not say), so that a restart keeps their absolute
//!   expiry. A timer set through the raw system call counts as relative.
//!
//! Must never: change what these calls return or do, or allocate or lock
//! in [`helper_tid`] and [`abstime`] (the capture asks them while threads
//! are parked).

use super::next;
use super::sigev_thread::{bit, helper_mask, start_helper, ThreadCall};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use libc::{c_int, c_void, clockid_t, itimerspec, sigevent, timer_t};

/// The signal the kernel timers of `SIGEV_THREAD` send to the helper:
/// glibc's SIGTIMER (its first reserved real-time signal), which no
/// program can block, catch or wait for through glibc.
pub const SIGTIMER: i32 = 32;

/// Timer ids whose `TIMER_ABSTIME` selfckpt keeps track of.
const ABSTIME_IDS: usize = 4096;
static ABSTIME: [AtomicU64; ABSTIME_IDS / 64] = [const { AtomicU64::new(0) }; ABSTIME_IDS / 64];

/// Timers made through timer_create and not deleted through timer_delete
/// (what the capture says when the kernel shows none).
static MADE: AtomicI64 = AtomicI64::new(0);

/// Whether the program made a timer it has not deleted. No allocation.
pub fn any_made() -> bool {
    MADE.load(Relaxed) > 0
}

/// The helper's id as the program knows it (0: not started).
static HELPER: AtomicU32 = AtomicU32::new(0);
/// Set while the helper is being started.
static STARTING: AtomicBool = AtomicBool::new(false);

/// The live `SIGEV_THREAD` timers' records (addresses; 0: free).
const MAX: usize = crate::kstate::posix_timers::MAX_TIMERS;
static LIVE: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
/// Held while an expiry is dispatched and while a record is freed, so that
/// no expiry reads a freed record.
static DISPATCH: AtomicBool = AtomicBool::new(false);

/// What the program asked for: its function, value and thread attributes.
struct Record {
    kernel_id: i32,
    call: ThreadCall,
}

/// The helper's id (as the program knows it), or 0. No allocation.
pub fn helper_tid() -> u32 {
    HELPER.load(Acquire)
}

/// Whether timer `id` was last set with `TIMER_ABSTIME`. No allocation.
pub fn abstime(id: i32) -> bool {
    let i = id as usize;
    id >= 0 && i < ABSTIME_IDS && ABSTIME[i / 64].load(Relaxed) & (1 << (i % 64)) != 0
}

fn note_abstime(id: i32, on: bool) {
    let i = id as usize;
    if id >= 0 && i < ABSTIME_IDS {
        let bit = 1u64 << (i % 64);
        if on {
            ABSTIME[i / 64].fetch_or(bit, Relaxed);
        } else {
            ABSTIME[i / 64].fetch_and(!bit, Relaxed);
        }
    }
}

/// The kernel id in a `timer_t` (glibc 2.34+ keeps it there for every
/// timer but its own SIGEV_THREAD ones, which have the sign bit set).
fn kernel_id(t: timer_t) -> Option<i32> {
    let v = t as isize;
    (0..=i32::MAX as isize).contains(&v).then_some(v as i32)
}

fn lock() {
    while DISPATCH
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn unlock() {
    DISPATCH.store(false, Release);
}

/// The helper: waits for SIGTIMER, starts a thread per expiry of a live
/// timer. An expiry that came back as an ordinary signal after a restart
/// (no timer information) is left: the restart made its timer due again.
extern "C" fn helper(_: *mut c_void) -> *mut c_void {
    helper_mask();
    HELPER.store(crate::capture::tids::program_tid(), Release);
    let wanted = bit(SIGTIMER);
    loop {
        // SAFETY: siginfo_t is plain old data.
        let mut si: libc::siginfo_t = unsafe { core::mem::zeroed() };
        // SAFETY: raw rt_sigtimedwait on one signal, no timeout.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &wanted as *const u64,
                &mut si as *mut libc::siginfo_t,
                core::ptr::null::<libc::timespec>(),
                8,
            )
        };
        if r != SIGTIMER as libc::c_long || si.si_code != libc::SI_TIMER {
            continue;
        }
        // SAFETY: a SI_TIMER siginfo carries the timer's value.
        let at = unsafe { si.si_value().sival_ptr } as usize;
        lock();
        if at != 0 && LIVE.iter().any(|l| l.load(Acquire) == at) {
            // SAFETY: a live record, not freed while DISPATCH is held.
            let rec = unsafe { &*(at as *const Record) };
            // Each expiry's thread unblocks SIGTIMER, as glibc's do.
            rec.call.start(bit(SIGTIMER));
        }
        unlock();
    }
}

unsafe extern "C" fn after_fork_child() {
    // Timers are not inherited: the child starts afresh.
    HELPER.store(0, Release);
    STARTING.store(false, Release);
    DISPATCH.store(false, Release);
    for l in &LIVE {
        l.store(0, Release);
    }
}

/// Starts the helper once (and once more in a forked child). Returns its
/// kernel id, or None.
fn ensure_helper() -> Option<i32> {
    loop {
        let h = HELPER.load(Acquire);
        if h != 0 {
            return Some(crate::capture::tids::kernel_tid(h) as i32);
        }
        if STARTING
            .compare_exchange(false, true, AcqRel, Acquire)
            .is_ok()
        {
            break;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    static ATFORK: AtomicBool = AtomicBool::new(false);
    let ok = start_helper(helper, &ATFORK, after_fork_child);
    if !ok {
        STARTING.store(false, Release);
        return None;
    }
    while HELPER.load(Acquire) == 0 {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    Some(crate::capture::tids::kernel_tid(HELPER.load(Acquire)) as i32)
}

/// The kernel's `struct sigevent` with a target thread.
#[repr(C)]
struct KernelSigevent {
    value: u64,
    signo: c_int,
    notify: c_int,
    tid: c_int,
    pad: [c_int; 11],
}

/// glibc's conversion of the CPU-time clocks to the kernel's ids.
fn kernel_clock(clock: clockid_t) -> clockid_t {
    match clock {
        libc::CLOCK_PROCESS_CPUTIME_ID => -6,
        libc::CLOCK_THREAD_CPUTIME_ID => -2,
        c => c,
    }
}

/// A `SIGEV_THREAD` timer (see the module header).
///
/// # Safety
/// As timer_create's: `evp` a valid sigevent, `out` writable.
unsafe fn create_thread_timer(clock: clockid_t, evp: *const sigevent, out: *mut timer_t) -> c_int {
    let Some(helper) = ensure_helper() else {
        *libc::__errno_location() = libc::EAGAIN;
        return -1;
    };
    if LIVE.iter().all(|l| l.load(Acquire) != 0) {
        *libc::__errno_location() = libc::EAGAIN;
        return -1;
    }
    let rec = Box::into_raw(Box::new(Record {
        kernel_id: -1,
        call: ThreadCall::from_sigevent(evp),
    }));
    let ev = KernelSigevent {
        value: rec as u64,
        signo: SIGTIMER,
        notify: libc::SIGEV_THREAD_ID,
        tid: helper,
        pad: [0; 11],
    };
    let mut id: c_int = 0;
    let r = libc::syscall(
        libc::SYS_timer_create,
        kernel_clock(clock),
        &ev as *const KernelSigevent,
        &mut id as *mut c_int,
    );
    if r != 0 {
        let errno = *libc::__errno_location();
        drop(Box::from_raw(rec));
        *libc::__errno_location() = errno;
        return -1;
    }
    (*rec).kernel_id = id;
    let placed = LIVE
        .iter()
        .any(|l| l.compare_exchange(0, rec as usize, AcqRel, Acquire).is_ok());
    if !placed {
        libc::syscall(libc::SYS_timer_delete, id);
        drop(Box::from_raw(rec));
        *libc::__errno_location() = libc::EAGAIN;
        return -1;
    }
    note_abstime(id, false);
    MADE.fetch_add(1, Relaxed);
    *out = id as usize as timer_t;
    0
}

/// timer_create(3).
///
/// # Safety
/// As glibc's.
#[no_mangle]
pub unsafe extern "C" fn timer_create(
    clock: clockid_t,
    evp: *mut sigevent,
    out: *mut timer_t,
) -> c_int {
    if !evp.is_null() && (*evp).sigev_notify == libc::SIGEV_THREAD {
        return create_thread_timer(clock, evp, out);
    }
    let r = next::timer_create(clock, evp, out);
    if r == 0 {
        MADE.fetch_add(1, Relaxed);
        if let Some(id) = kernel_id(*out) {
            note_abstime(id, false);
        }
    }
    r
}

/// timer_settime(3): glibc's, noting `TIMER_ABSTIME`.
///
/// # Safety
/// As glibc's.
#[no_mangle]
pub unsafe extern "C" fn timer_settime(
    t: timer_t,
    flags: c_int,
    new: *const itimerspec,
    old: *mut itimerspec,
) -> c_int {
    let r = next::timer_settime(t, flags, new, old);
    if r == 0 {
        if let Some(id) = kernel_id(t) {
            note_abstime(id, flags & libc::TIMER_ABSTIME != 0);
        }
    }
    r
}

/// timer_delete(3): glibc's, then a `SIGEV_THREAD` timer's record goes.
///
/// # Safety
/// As glibc's.
#[no_mangle]
pub unsafe extern "C" fn timer_delete(t: timer_t) -> c_int {
    let r = next::timer_delete(t);
    if r != 0 {
        return r;
    }
    MADE.fetch_sub(1, Relaxed);
    let Some(id) = kernel_id(t) else {
        return r;
    };
    note_abstime(id, false);
    lock();
    for l in &LIVE {
        let at = l.load(Acquire);
        // SAFETY: a live record (freed only here, under DISPATCH).
        if at != 0 && (*(at as *const Record)).kernel_id == id {
            l.store(0, Release);
            drop(Box::from_raw(at as *mut Record));
            break;
        }
    }
    unlock();
    r
}
