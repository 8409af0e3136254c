//! What `SIGEV_THREAD` notifications (`timer_create`, `mq_notify`) share:
//! glibc runs them from a helper thread of its own that blocks every
//! signal, so the suspend signal could never park it. selfckpt's
//! interposers ([`super::timers`], [`super::mq_notify`]) use a helper of
//! their own instead ([`start_helper`]: every signal blocked but the
//! suspend signal and the fault signals), which starts, per notification,
//! a detached thread with the attributes the program gave
//! ([`ThreadCall::start`]) that calls the program's function with its
//! value. The helpers are ordinary threads of the program: checkpointed
//! and restarted with the others.
//!
//! Must never: allocate or lock in [`set_mask`] (called from helpers
//! parked and resumed by checkpoints); change what the program's function
//! gets.

use core::sync::atomic::{AtomicBool, Ordering::*};
use libc::{c_int, c_void, sigevent};

/// What the program asked a `SIGEV_THREAD` notification to run: its
/// function, value and thread attributes.
pub struct ThreadCall {
    pub function: extern "C" fn(libc::sigval),
    pub value: libc::sigval,
    pub attr: libc::pthread_attr_t,
}

/// One notification's function and value, for the thread that runs it,
/// with the signals it unblocks.
struct Call {
    function: extern "C" fn(libc::sigval),
    value: libc::sigval,
    unblock: u64,
}

/// The bit of signal `sig` in a kernel signal set.
pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Raw rt_sigprocmask on the calling thread (glibc's refuses its own
/// signals). No allocation.
pub fn set_mask(how: c_int, set: u64) {
    // SAFETY: raw rt_sigprocmask with an 8-byte kernel signal set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &set as *const u64,
            core::ptr::null_mut::<u64>(),
            8,
        )
    };
}

/// Blocks every signal of the calling helper but the suspend signal and
/// the fault signals.
pub fn helper_mask() {
    let suspend = crate::capture::park::suspend_signal();
    let mut keep = bit(libc::SIGSEGV) | bit(libc::SIGBUS) | bit(libc::SIGFPE) | bit(libc::SIGILL);
    if suspend > 0 {
        keep |= bit(suspend);
    }
    set_mask(libc::SIG_SETMASK, !keep);
}

extern "C" fn run_call(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `ThreadCall::start` made `arg` with Box::into_raw for this
    // thread.
    let call = unsafe { Box::from_raw(arg as *mut Call) };
    if call.unblock != 0 {
        set_mask(libc::SIG_UNBLOCK, call.unblock);
    }
    (call.function)(call.value);
    core::ptr::null_mut()
}

impl ThreadCall {
    /// The program's function, value and attributes of a `SIGEV_THREAD`
    /// sigevent.
    ///
    /// # Safety
    /// `evp` is a valid sigevent with `sigev_notify == SIGEV_THREAD`.
    pub unsafe fn from_sigevent(evp: *const sigevent) -> ThreadCall {
        // The union after sigev_notify: the function, then the attributes.
        let un = (evp as *const u8).add(16) as *const usize;
        let function: extern "C" fn(libc::sigval) = core::mem::transmute(*un);
        let attr = *un.add(1) as *const libc::pthread_attr_t;
        ThreadCall {
            function,
            value: (*evp).sigev_value,
            attr: copy_attr(attr),
        }
    }

    /// Starts a detached thread with the program's attributes that calls
    /// its function with its value, `unblock` unblocked (the helper's mask
    /// otherwise). From a helper thread (allocates).
    pub fn start(&self, unblock: u64) {
        let call = Box::into_raw(Box::new(Call {
            function: self.function,
            value: self.value,
            unblock,
        }));
        // SAFETY: pthread_t is an integer; the attributes were initialised
        // by `copy_attr`.
        unsafe {
            let mut th: libc::pthread_t = core::mem::zeroed();
            if libc::pthread_create(&mut th, &self.attr, run_call, call.cast()) != 0 {
                drop(Box::from_raw(call));
            }
        }
    }
}

impl Drop for ThreadCall {
    fn drop(&mut self) {
        // SAFETY: the attributes were initialised by `copy_attr`.
        unsafe { libc::pthread_attr_destroy(&mut self.attr) };
    }
}

/// The attributes a notification thread is started with: the program's
/// (`sigev_notify_attributes`), detached.
///
/// # Safety
/// `from` is null or initialised attributes.
unsafe fn copy_attr(from: *const libc::pthread_attr_t) -> libc::pthread_attr_t {
    extern "C" {
        fn pthread_attr_getsigmask_np(
            a: *const libc::pthread_attr_t,
            s: *mut libc::sigset_t,
        ) -> c_int;
    }
    let mut a: libc::pthread_attr_t = core::mem::zeroed();
    libc::pthread_attr_init(&mut a);
    if !from.is_null() {
        let mut size = 0;
        if libc::pthread_attr_getstacksize(from, &mut size) == 0 {
            libc::pthread_attr_setstacksize(&mut a, size);
        }
        if libc::pthread_attr_getguardsize(from, &mut size) == 0 {
            libc::pthread_attr_setguardsize(&mut a, size);
        }
        let mut v = 0;
        if libc::pthread_attr_getinheritsched(from, &mut v) == 0 {
            libc::pthread_attr_setinheritsched(&mut a, v);
        }
        if libc::pthread_attr_getschedpolicy(from, &mut v) == 0 {
            libc::pthread_attr_setschedpolicy(&mut a, v);
        }
        let mut p: libc::sched_param = core::mem::zeroed();
        if libc::pthread_attr_getschedparam(from, &mut p) == 0 {
            libc::pthread_attr_setschedparam(&mut a, &p);
        }
        let mut cpus: libc::cpu_set_t = core::mem::zeroed();
        let n = core::mem::size_of::<libc::cpu_set_t>();
        if libc::pthread_attr_getaffinity_np(from, n, &mut cpus) == 0 {
            libc::pthread_attr_setaffinity_np(&mut a, n, &cpus);
        }
        let mut mask: libc::sigset_t = core::mem::zeroed();
        // 0: a mask was set (PTHREAD_ATTR_NO_SIGMASK_NP is 1).
        if pthread_attr_getsigmask_np(from, &mut mask) == 0 {
            super::masks::pthread_attr_setsigmask_np(&mut a, &mask);
        }
    }
    libc::pthread_attr_setdetachstate(&mut a, libc::PTHREAD_CREATE_DETACHED);
    a
}

/// Starts `helper` as a detached thread with a 64 KiB stack, and, once
/// per process, registers `after_fork_child` (a forked child has no
/// helper). False if the thread cannot be made.
pub fn start_helper(
    helper: extern "C" fn(*mut c_void) -> *mut c_void,
    atfork: &AtomicBool,
    after_fork_child: unsafe extern "C" fn(),
) -> bool {
    // SAFETY: attributes on the stack, initialised and destroyed here; the
    // helper runs for the life of the process.
    unsafe {
        if !atfork.swap(true, AcqRel) {
            libc::pthread_atfork(None, None, Some(after_fork_child));
        }
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        let mut th: libc::pthread_t = core::mem::zeroed();
        let r = libc::pthread_create(&mut th, &attr, helper, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        r == 0
    }
}
