//! aarch64: tpidr_el0 as thread pointer, `struct rt_sigframe` = siginfo
//! (128 bytes) followed by the `ucontext`, `rt_sigreturn` = syscall 139 with
//! sp at the frame. Runs in signal handlers and restarted threads: must not
//! allocate.

use core::arch::asm;

/// Offset of the `ucontext` inside the kernel's `rt_sigframe`.
pub const UCONTEXT_IN_FRAME: u64 = 128;

/// The calling thread's thread pointer (tpidr_el0).
pub fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: reading tpidr_el0 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack)) };
    tp
}

/// Instruction and stack pointer saved in a signal frame's ucontext.
///
/// # Safety
/// `uc` must point to the ucontext the kernel passed to a signal handler.
pub unsafe fn frame_ip_sp(uc: *const libc::c_void) -> (u64, u64) {
    let uc = &*(uc as *const libc::ucontext_t);
    (uc.uc_mcontext.pc, uc.uc_mcontext.sp)
}

/// The stack pointer a restarted thread starts with: below its signal frame.
pub fn entry_stack(uc: u64) -> u64 {
    (uc - UCONTEXT_IN_FRAME - super::ENTRY_STACK_GAP) & !15
}

/// Returns from a signal handler on behalf of a restarted thread.
///
/// # Safety
/// `uc` must be the ucontext of a live signal frame of the calling thread.
pub unsafe fn sigreturn(uc: u64) -> ! {
    asm!(
        "mov sp, {frame}",
        "mov x8, #139",
        "svc #0",
        "brk #0",
        frame = in(reg) uc - UCONTEXT_IN_FRAME,
        options(noreturn)
    )
}

/// No XSAVE on aarch64; SVE vector length would go here.
pub fn cpu_xfeatures() -> u64 {
    0
}

pub const ARCH_NAME: &str = "aarch64";

/// Switches to the restorer blob: `entry(args, stack_top)` on its own stack.
///
/// # Safety
/// See the x86_64 version.
pub unsafe fn jump_to_restorer(entry: u64, args: u64, stack_top: u64) -> ! {
    asm!(
        "mov sp, {stack}",
        "br {entry}",
        stack = in(reg) stack_top,
        entry = in(reg) entry,
        in("x0") args,
        in("x1") stack_top,
        options(noreturn)
    )
}

/// The signature glibc registers rseq areas with.
pub const RSEQ_SIG: u32 = 0xd428_bc00;
