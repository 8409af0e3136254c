//! Signal dispositions: read with raw `rt_sigaction` at checkpoint (no
//! allocation: runs while threads are suspended); restored by the restorer
//! blob after the image is mapped (handlers point into the image).

use crate::image::codec::{CodecError, Encoder};
use crate::image::model::SigAction;

/// The kernel's `struct sigaction` on x86_64 and aarch64.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// The kernel flag marking that sa_restorer is set (glibc always sets it).
const SA_RESTORER: u64 = 0x0400_0000;

/// Highest signal number.
pub const NSIG: u32 = 64;

/// Reads the disposition of `signo`, or None for SIGKILL/SIGSTOP or errors.
pub fn read(signo: u32) -> Option<SigAction> {
    if signo == libc::SIGKILL as u32 || signo == libc::SIGSTOP as u32 {
        return None;
    }
    let mut k = KernelSigaction::default();
    // SAFETY: raw rt_sigaction with a null new action and an out-pointer to
    // a kernel-layout struct; sigsetsize 8 is the kernel's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo as libc::c_long,
            core::ptr::null::<KernelSigaction>(),
            &mut k as *mut KernelSigaction,
            8usize,
        )
    };
    (r == 0).then_some(SigAction {
        signo,
        handler: k.handler,
        flags: k.flags,
        restorer: k.restorer,
        mask: k.mask,
    })
}

/// Whether a disposition differs from the default (SIG_DFL, no flags).
pub fn is_default(a: &SigAction) -> bool {
    a.handler == 0 && a.mask == 0 && (a.flags & !SA_RESTORER) == 0
}

/// Encodes the count and every non-default disposition.
pub fn encode_all(e: &mut Encoder) -> Result<(), CodecError> {
    let at = e.reserve_u32()?;
    let mut n = 0;
    for signo in 1..=NSIG {
        if let Some(a) = read(signo).filter(|a| !is_default(a)) {
            a.encode(e)?;
            n += 1;
        }
    }
    e.patch_u32(at, n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_installed_handler_and_skips_kill() {
        extern "C" fn h(_: libc::c_int) {}
        // SAFETY: installing a trivial handler for SIGURG in a test process
        // (glibc's, not the program's view that puts a trampoline there).
        unsafe { crate::interpose::next::signal(libc::SIGURG, h as *const () as usize) };
        let a = read(libc::SIGURG as u32).unwrap();
        assert_eq!(a.handler, h as *const () as usize as u64);
        assert!(!is_default(&a));
        assert!(read(libc::SIGKILL as u32).is_none());
    }
}
