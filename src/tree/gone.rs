//! Children a checkpoint left out (not covered: `--no-tree`, a statically
//! linked program, a member that could not join) do not come back with a
//! restart. The process that was their parent is told plainly: once when
//! it is restarted, and again when its `wait` for one of them fails with
//! `ECHILD` (the wrappers here), never a silent `ECHILD`.
//!
//! The list is kept in the process's own memory before its threads are
//! suspended, so the restarted process has it. Async-signal-safe and
//! allocation-free in the wrappers (atomics and one `write`).
//!
//! Must never: change what a wait returns, or speak in a process that
//! was not restarted (its children are all there).

use crate::interpose::next;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::*};
use libc::{c_int, pid_t};

/// Most left_out children one process remembers.
pub const MAX_LEFT: usize = 120;
static LEFT: [AtomicU32; MAX_LEFT] = [const { AtomicU32::new(0) }; MAX_LEFT];
/// Set in a restarted process that had children left out.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// This process's children the checkpoint being taken leaves out.
pub fn set_left(pids: &[u32]) {
    for (i, slot) in LEFT.iter().enumerate() {
        slot.store(pids.get(i).copied().unwrap_or(0), Release);
    }
}

/// In a restarted process: says which children did not come back.
pub fn after_restart() {
    let mut any = false;
    for slot in &LEFT {
        let pid = slot.load(Acquire);
        if pid != 0 {
            any = true;
            say(pid, b" was left out of the checkpoint this process was restarted from: it did not come back, and waiting for it fails (ECHILD)\n");
        }
    }
    ACTIVE.store(any, Release);
}

fn say(pid: u32, what: &[u8]) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    let mut put = |b: &[u8]| {
        let k = b.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&b[..k]);
        n += k;
    };
    put(b"selfckpt: child ");
    let mut digits = [0u8; 10];
    let mut d = digits.len();
    let mut v = pid;
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[d..]);
    put(what);
    // SAFETY: writing our own buffer to stderr.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// After a wait that failed: if it was for a child left out (or for any
/// child, `pid` <= 0, while left_out ones are missing), say so.
fn after_wait(pid: pid_t, failed: bool) {
    if !failed || !ACTIVE.load(Acquire) {
        return;
    }
    // SAFETY: reading this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    if errno != libc::ECHILD {
        return;
    }
    for slot in &LEFT {
        let p = slot.load(Acquire);
        if p != 0 && (pid <= 0 || pid as u32 == p) {
            say(p, b" is not there to wait for: it was left out of the checkpoint this process was restarted from (ECHILD)\n");
        }
    }
    // SAFETY: putting errno back for the caller.
    unsafe { *libc::__errno_location() = errno };
}

/// libc's `waitpid`, interposed (see the module header).
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t {
    let r = next::waitpid(pid, status, options);
    after_wait(pid, r < 0);
    r
}

/// libc's `wait`, interposed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn wait(status: *mut c_int) -> pid_t {
    let r = next::waitpid(-1, status, 0);
    after_wait(-1, r < 0);
    r
}

/// libc's `wait4`, interposed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn wait4(
    pid: pid_t,
    status: *mut c_int,
    options: c_int,
    ru: *mut libc::rusage,
) -> pid_t {
    let r = next::wait4(pid, status, options, ru);
    after_wait(pid, r < 0);
    r
}

/// libc's `waitid`, interposed.
///
/// # Safety
/// As libc's.
#[no_mangle]
pub unsafe extern "C" fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: c_int,
) -> c_int {
    let r = next::waitid(idtype, id, info, options);
    let pid = if idtype == libc::P_PID {
        id as pid_t
    } else {
        -1
    };
    after_wait(pid, r < 0);
    r
}
