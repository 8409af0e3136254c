//! Setting up thread suspension, and naming threads in errors: the half of
//! thread handling that runs in ordinary context (install time, or after
//! the parked threads were released) and may allocate. The suspended-world
//! half (slots, parking, restart entry) is `capture::park`.

use crate::arch;
use crate::capture::park::{self, RoundHooks, SuspendError};
use crate::capture::sys::{self, PathBuf};
use thiserror::Error;

/// A suspension that failed, with the names of the threads involved
/// (looked up after every thread was released).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SuspendFailure {
    #[error("thread {tid} ({comm}) did not stop within {ms} ms: it may block the suspend signal {signal}")]
    Timeout {
        tid: u32,
        comm: String,
        ms: u64,
        signal: i32,
    },
    #[error("{0}")]
    Other(SuspendError),
}

impl SuspendFailure {
    /// Names what `park::suspend_others` reported. Call only after
    /// `park::release`: it reads /proc and allocates.
    pub fn after_release(e: SuspendError) -> SuspendFailure {
        match e {
            SuspendError::Timeout { tid, ms, signal } => SuspendFailure::Timeout {
                tid,
                comm: task_comm(tid),
                ms,
                signal,
            },
            other => SuspendFailure::Other(other),
        }
    }
}

/// Installs the suspend signal handler. Called once at init, before any
/// suspension.
pub fn install(signal: i32, hooks: RoundHooks) -> Result<(), sys::Errno> {
    park::configure(signal, hooks, probe_rseq());
    // SAFETY: sigaction is plain old data; the handler has the SA_SIGINFO
    // signature; all signals are blocked while it runs so a parked thread
    // never runs other handlers.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = park::handler_address();
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        if runs_go() {
            sa.sa_flags |= libc::SA_ONSTACK;
        }
        libc::sigfillset(&mut sa.sa_mask);
        if crate::interpose::next::sigaction(signal, &sa, core::ptr::null_mut()) != 0 {
            return Err(sys::Errno::last());
        }
    }
    Ok(())
}

/// True if the program runs Go code through cgo (a Go program
/// LD_PRELOAD reaches is one: the others are statically linked). Its
/// goroutines run on stacks of a few KiB with no guard page, too small
/// for a signal frame and a handler, and every Go thread has a 32 KiB
/// signal stack: the suspend handler runs there (`SA_ONSTACK`), as Go
/// requires of every handler. Not for other programs: the signal stacks
/// of many (Rust's, a crash handler's `SIGSTKSZ`) are smaller than what
/// the handler needs. `dlsym` may allocate: install time only.
fn runs_go() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names.
    unsafe {
        !libc::dlsym(libc::RTLD_DEFAULT, c"crosscall2".as_ptr()).is_null()
            || !libc::dlsym(libc::RTLD_DEFAULT, c"_cgo_topofstack".as_ptr()).is_null()
    }
}

/// glibc's per-thread rseq area, (offset from the thread pointer, size)
/// (glibc >= 2.35 exports both); (0, 0) without it: threads are then
/// restarted without rseq. `dlsym` may allocate: never call it parked.
fn probe_rseq() -> (u64, u32) {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names; the symbols,
    // when present, are a ptrdiff_t and an unsigned int.
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if off.is_null() || size.is_null() {
            (0, 0)
        } else {
            // glibc registers at least the original 32-byte area even when
            // __rseq_size reports fewer used bytes (20 in glibc 2.35-2.39).
            let size = *(size as *const u32);
            (
                *(off as *const isize) as u64,
                if size == 0 { 0 } else { size.max(32) },
            )
        }
    }
}

/// The calling thread's registered glibc rseq area: (address, size, sig).
pub fn own_rseq() -> Option<(u64, u32, u32)> {
    let (offset, size) = probe_rseq();
    if size == 0 {
        return None;
    }
    let area = arch::thread_pointer().wrapping_add(offset);
    // SAFETY: glibc's rseq area of this thread; cpu_id is at offset 4.
    let cpu_id = unsafe { core::ptr::read_volatile((area + 4) as *const i32) };
    (cpu_id >= 0).then_some((area, size, arch::RSEQ_SIG))
}

/// The name of a thread, for error messages (runs after release).
pub fn task_comm(tid: u32) -> String {
    let mut p = PathBuf::<64>::new();
    p.push(b"/proc/self/task/")
        .push_u64(tid as u64)
        .push(b"/comm");
    let mut buf = [0u8; 64];
    match sys::read_file(p.as_cstr_bytes(), &mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
        Err(_) => "?".to_string(),
    }
}
