//! `syscall(3)`: a program that makes a blocking call through libc's raw
//! `syscall()` (`SYS_nanosleep`, `SYS_poll`, `SYS_epoll_pwait`...)
//! gets what the named wrappers of [`super::waits`] and [`super::masks`]
//! give: a call selfckpt's signals interrupt is made again with the time
//! left, and a mask it passes never blocks selfckpt's signals. Each such
//! number is handed to the wrapper of the same call, with the kernel's
//! argument layout turned into libc's (an 8-byte kernel signal set copied
//! into a `sigset_t`; `clock_nanosleep`'s error number turned into -1 and
//! errno). Every other number goes to glibc's `syscall` untouched —
//! futexes too: Rust's standard library parks threads (the checkpoint's
//! own among them) with raw futex calls, which must stay plain.
//!
//! `syscall` is variadic; on x86_64 and aarch64 Linux the integer
//! arguments of a variadic call are passed as those of a fixed one, so six
//! `c_long` parameters receive what the caller passed (the unused ones
//! hold whatever the registers held, which glibc's `syscall` passes on to
//! the kernel too).
//!
//! Must never: change what a call returns or does when no checkpoint
//! happens, or allocate (it may be called from a signal handler).

use super::{masks, next, waits};
use libc::{c_int, c_long, sigset_t};

/// The kernel's signal set size on Linux (`_NSIG / 8`).
const KERNEL_SIGSET: c_long = 8;

/// A kernel signal set of `size` bytes at `p` as a `sigset_t` (None: a
/// size the kernel would refuse, which goes to the kernel as it is).
///
/// # Safety
/// `p` is null or points to `size` readable bytes.
unsafe fn sigset(p: c_long, size: c_long) -> Option<Option<sigset_t>> {
    if p == 0 {
        return Some(None);
    }
    if size != KERNEL_SIGSET {
        return None;
    }
    let mut s: sigset_t = core::mem::zeroed();
    core::ptr::copy_nonoverlapping(
        p as *const u8,
        (&mut s as *mut sigset_t).cast::<u8>(),
        KERNEL_SIGSET as usize,
    );
    Some(Some(s))
}

fn ptr_of(s: &Option<sigset_t>) -> *const sigset_t {
    s.as_ref()
        .map_or(core::ptr::null(), |s| s as *const sigset_t)
}

/// syscall(3).
///
/// # Safety
/// As glibc's: the arguments are what the system call `n` expects.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let raw = || next::syscall(n, a1, a2, a3, a4, a5, a6);
    let r: c_int = match n {
        // A registration of the program's own (not glibc's) is noted for
        // the thread: its checkpoint keeps it.
        libc::SYS_rseq => {
            let r = raw();
            if r == 0 {
                crate::capture::park::note_own_rseq(a1 as u64, a2 as u32, a3 as u32, a4 as u32);
            }
            return r;
        }
        libc::SYS_nanosleep => waits::nanosleep(a1 as _, a2 as _),
        libc::SYS_clock_nanosleep => {
            match waits::clock_nanosleep(a1 as _, a2 as _, a3 as _, a4 as _) {
                0 => 0,
                e => {
                    *libc::__errno_location() = e;
                    -1
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll => waits::poll(a1 as _, a2 as _, a3 as _),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait => waits::epoll_wait(a1 as _, a2 as _, a3 as _, a4 as _),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select => waits::select(a1 as _, a2 as _, a3 as _, a4 as _, a5 as _),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_pause => waits::pause(),
        libc::SYS_epoll_pwait => match sigset(a5, a6) {
            Some(m) => waits::epoll_pwait(a1 as _, a2 as _, a3 as _, a4 as _, ptr_of(&m)),
            None => return raw(),
        },
        libc::SYS_epoll_pwait2 => match sigset(a5, a6) {
            Some(m) => waits::epoll_pwait2(a1 as _, a2 as _, a3 as _, a4 as _, ptr_of(&m)),
            None => return raw(),
        },
        libc::SYS_ppoll => match sigset(a4, a5) {
            Some(m) => waits::ppoll(a1 as _, a2 as _, a3 as _, ptr_of(&m)),
            None => return raw(),
        },
        libc::SYS_pselect6 => {
            // The sixth argument: { const sigset_t *set; size_t size } or null.
            let m = if a6 == 0 {
                Some(None)
            } else {
                let pair = a6 as *const [c_long; 2];
                sigset((*pair)[0], (*pair)[1])
            };
            match m {
                Some(m) => waits::pselect(a1 as _, a2 as _, a3 as _, a4 as _, a5 as _, ptr_of(&m)),
                None => return raw(),
            }
        }
        libc::SYS_rt_sigtimedwait => match sigset(a1, a4) {
            Some(Some(m)) => waits::sigtimedwait(&m, a2 as _, a3 as _),
            _ => return raw(),
        },
        libc::SYS_rt_sigsuspend => match sigset(a1, a2) {
            Some(Some(m)) => masks::sigsuspend(&m),
            _ => return raw(),
        },
        libc::SYS_semtimedop => waits::semtimedop(a1 as _, a2 as _, a3 as _, a4 as _),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_semop => waits::semop(a1 as _, a2 as _, a3 as _),
        libc::SYS_msgrcv => {
            return waits::msgrcv(a1 as _, a2 as _, a3 as _, a4 as _, a5 as _) as c_long
        }
        libc::SYS_msgsnd => waits::msgsnd(a1 as _, a2 as _, a3 as _, a4 as _),
        libc::SYS_semget => super::sysvipc::semget(a1 as _, a2 as _, a3 as _),
        libc::SYS_msgget => super::sysvipc::msgget(a1 as _, a2 as _),
        _ => return raw(),
    };
    r as c_long
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::timespec;

    #[test]
    fn raw_calls_through_the_wrapper_do_what_they_do_without_it() {
        // SAFETY: plain system calls with valid arguments.
        unsafe {
            assert_eq!(
                syscall(libc::SYS_getpid, 0, 0, 0, 0, 0, 0),
                libc::getpid() as c_long
            );
            let req = timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            let t0 = std::time::Instant::now();
            assert_eq!(
                syscall(
                    libc::SYS_nanosleep,
                    &req as *const timespec as c_long,
                    0,
                    0,
                    0,
                    0,
                    0
                ),
                0
            );
            assert!(t0.elapsed() >= std::time::Duration::from_millis(20));
            // A bad signal set size reaches the kernel, which refuses it.
            let set = [0u64; 2];
            let r = syscall(
                libc::SYS_rt_sigsuspend,
                set.as_ptr() as c_long,
                16,
                0,
                0,
                0,
                0,
            );
            assert_eq!((r, *libc::__errno_location()), (-1, libc::EINVAL));
            // A futex wait whose word differs returns at once with EAGAIN.
            let word = 1u32;
            let ts = timespec {
                tv_sec: 5,
                tv_nsec: 0,
            };
            let r = syscall(
                libc::SYS_futex,
                &word as *const u32 as c_long,
                (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as c_long,
                0,
                &ts as *const timespec as c_long,
                0,
                0,
            );
            assert_eq!((r, *libc::__errno_location()), (-1, libc::EAGAIN));
        }
    }
}
