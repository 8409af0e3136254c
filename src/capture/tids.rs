//! Thread ids after a restart that could not keep them.
//!
//! A restart in a PID namespace of its own gives every thread its old id
//! and nothing here matters. Where namespaces are not allowed, the threads
//! come back with new kernel ids; glibc's per-thread id word (`pd->tid`,
//! the thread's `set_tid_address` word) keeps the checkpoint-time value, so
//! error-checking and recursive mutexes (whose owner is that word),
//! `pthread_self`, `pthread_join` and thread-locals go on working. What
//! remains is the few calls that hand a thread id to the kernel: this
//! module keeps the table checkpoint-time id -> kernel id and interposes
//! `gettid` (returns the stable, checkpoint-time id), `pthread_kill`,
//! `pthread_sigqueue` and `tgkill` (translate before calling the kernel).
//! Without a fallback restart every one of them behaves exactly like
//! glibc's.
//!
//! Runs in signal handlers and restarted threads: must not allocate or
//! lock; the table is fixed-size atomics.

use crate::capture::park::MAX_THREADS;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering::*};

/// Checkpoint-time id -> kernel id, one pair per restored thread slot.
static VIRT: [AtomicU32; MAX_THREADS] = [const { AtomicU32::new(0) }; MAX_THREADS];
static REAL: [AtomicU32; MAX_THREADS] = [const { AtomicU32::new(0) }; MAX_THREADS];
/// True once the process was restarted with new thread ids.
static TRANSLATING: AtomicBool = AtomicBool::new(false);
/// Offset of glibc's tid word from the thread pointer (i64::MIN: unknown).
static TID_OFFSET: AtomicI64 = AtomicI64::new(i64::MIN);

/// Learns where glibc keeps a thread's id. Called at install, from an
/// ordinary thread.
pub fn probe() {
    let mut addr: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer.
    unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut addr as *mut u64) };
    if addr != 0 {
        // SAFETY: the tid address of a live glibc thread points at its tid word.
        let v = unsafe { core::ptr::read_volatile(addr as *const i32) };
        if v as u32 == crate::capture::sys::gettid() {
            let off = addr.wrapping_sub(crate::arch::thread_pointer()) as i64;
            TID_OFFSET.store(off, Release);
        }
    }
}

/// Whether thread ids are being translated (a restart with new ids).
pub fn translating() -> bool {
    TRANSLATING.load(Acquire)
}

/// Records, in a restarted thread, its checkpoint-time and kernel ids.
pub fn record(slot: usize, virt: u32, real: u32) {
    if slot < MAX_THREADS {
        VIRT[slot].store(virt, Relaxed);
        REAL[slot].store(real, Release);
    }
}

/// After a restart: forget slots from `n` on; translate from now on if
/// the threads came back with new ids.
pub fn finish_restart(n: usize, new_ids: bool) {
    for i in n.min(MAX_THREADS)..MAX_THREADS {
        VIRT[i].store(0, Relaxed);
        REAL[i].store(0, Relaxed);
    }
    TRANSLATING.store(new_ids, Release);
}

/// The kernel id of the thread known to the program as `tid`.
pub fn kernel_tid(tid: u32) -> u32 {
    if !translating() {
        return tid;
    }
    (0..MAX_THREADS)
        .find(|&i| VIRT[i].load(Acquire) == tid && REAL[i].load(Acquire) != 0)
        .map_or(tid, |i| REAL[i].load(Acquire))
}

/// The id the program knows for the thread the kernel calls `real` (the
/// reverse of [`kernel_tid`]).
pub fn program_tid_of(real: u32) -> u32 {
    if !translating() {
        return real;
    }
    (0..MAX_THREADS)
        .find(|&i| REAL[i].load(Acquire) == real && VIRT[i].load(Acquire) != 0)
        .map_or(real, |i| VIRT[i].load(Acquire))
}

/// The calling thread's id as the program knows it.
pub fn program_tid() -> u32 {
    let off = TID_OFFSET.load(Acquire);
    if translating() && off != i64::MIN {
        let at = crate::arch::thread_pointer().wrapping_add(off as u64);
        // SAFETY: glibc's tid word of the calling thread (same offset from
        // the thread pointer in every glibc thread).
        let v = unsafe { core::ptr::read_volatile(at as *const i32) };
        if v > 0 {
            return v as u32;
        }
    }
    crate::capture::sys::gettid()
}

/// The tid word of another thread, given its `pthread_t`.
fn thread_tid(t: libc::pthread_t) -> Option<u32> {
    let off = TID_OFFSET.load(Acquire);
    if off == i64::MIN {
        return None;
    }
    // SAFETY: pthread_t is the address of glibc's thread descriptor, whose
    // tid word sits at the offset probed on a live thread.
    let v = unsafe { core::ptr::read_volatile(t.wrapping_add(off as u64) as *const i32) };
    (v > 0).then_some(v as u32)
}

fn errno() -> libc::c_int {
    // SAFETY: reading this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// `gettid(2)`: the stable, checkpoint-time id of the calling thread.
#[no_mangle]
pub extern "C" fn gettid() -> libc::pid_t {
    program_tid() as libc::pid_t
}

/// `tgkill(2)` with the thread named by its program-visible id.
#[no_mangle]
pub extern "C" fn tgkill(tgid: libc::pid_t, tid: libc::pid_t, sig: libc::c_int) -> libc::c_int {
    let real = if tid > 0 {
        kernel_tid(tid as u32) as libc::pid_t
    } else {
        tid
    };
    // SAFETY: the raw system call with plain integers.
    unsafe { libc::syscall(libc::SYS_tgkill, tgid, real, sig) as libc::c_int }
}

/// `pthread_kill(3)`: glibc's own, unless the target's id was translated.
///
/// # Safety
/// `thread` must be a live thread's `pthread_t`, as for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pthread_kill(thread: libc::pthread_t, sig: libc::c_int) -> libc::c_int {
    if translating() && thread != libc::pthread_self() {
        if sig >= 32 && sig < libc::SIGRTMIN() {
            return libc::EINVAL;
        }
        if let Some(v) = thread_tid(thread) {
            let real = kernel_tid(v);
            if real != v {
                let r = libc::syscall(libc::SYS_tgkill, libc::getpid(), real, sig);
                return if r == 0 { 0 } else { errno() };
            }
        }
    }
    // glibc's own (also before the checkpointer is installed, or when it
    // never is: a program linked with the static library).
    crate::interpose::next::pthread_kill(thread, sig)
}

/// `pthread_sigqueue(3)`: glibc's own, unless the target's id was translated.
///
/// # Safety
/// `thread` must be a live thread's `pthread_t`, as for glibc's.
#[no_mangle]
pub unsafe extern "C" fn pthread_sigqueue(
    thread: libc::pthread_t,
    sig: libc::c_int,
    value: libc::sigval,
) -> libc::c_int {
    if translating() && thread != libc::pthread_self() {
        if let Some(v) = thread_tid(thread) {
            let real = kernel_tid(v);
            if real != v {
                let mut info: libc::siginfo_t = core::mem::zeroed();
                info.si_signo = sig;
                info.si_code = libc::SI_QUEUE;
                // siginfo's union: pid at 16, uid at 20, value at 24.
                let p = &mut info as *mut libc::siginfo_t as *mut u8;
                *(p.add(16) as *mut i32) = libc::getpid();
                *(p.add(20) as *mut u32) = libc::getuid();
                *(p.add(24) as *mut libc::sigval) = value;
                let r = libc::syscall(
                    libc::SYS_rt_tgsigqueueinfo,
                    libc::getpid(),
                    real,
                    sig,
                    &info as *const libc::siginfo_t,
                );
                return if r == 0 { 0 } else { errno() };
            }
        }
    }
    crate::interpose::next::pthread_sigqueue(thread, sig, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untranslated_ids_are_the_kernels() {
        probe();
        assert!(!translating());
        assert_eq!(program_tid(), crate::capture::sys::gettid());
        assert_eq!(gettid() as u32, crate::capture::sys::gettid());
        assert_eq!(kernel_tid(12345), 12345);
        // SAFETY: pthread_self is always valid; signal 0 only checks.
        assert_eq!(unsafe { pthread_kill(libc::pthread_self(), 0) }, 0);
    }

    #[test]
    fn the_tid_word_is_found_from_the_thread_pointer() {
        probe();
        let here = std::thread::spawn(|| {
            // SAFETY: pthread_self has no preconditions.
            let t = thread_tid(unsafe { libc::pthread_self() });
            (t, crate::capture::sys::gettid())
        })
        .join()
        .unwrap();
        assert_eq!(here.0, Some(here.1));
    }
}
