//! x86_64: fs base as thread pointer, `struct rt_sigframe` = pretcode (8
//! bytes) followed by the `ucontext`, `rt_sigreturn` = syscall 15.
//! Runs in signal handlers and restarted threads: must not allocate.

use core::arch::asm;

/// Offset of the `ucontext` inside the kernel's `rt_sigframe`.
pub const UCONTEXT_IN_FRAME: u64 = 8;

/// The calling thread's thread pointer (fs base).
pub fn thread_pointer() -> u64 {
    let mut fs: u64 = 0;
    // SAFETY: ARCH_GET_FS writes one u64 through the pointer we pass.
    unsafe {
        libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut fs as *mut u64);
    }
    fs
}

/// Instruction and stack pointer saved in a signal frame's ucontext.
///
/// # Safety
/// `uc` must point to the ucontext the kernel passed to a signal handler.
pub unsafe fn frame_ip_sp(uc: *const libc::c_void) -> (u64, u64) {
    let uc = &*(uc as *const libc::ucontext_t);
    (
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64,
        uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64,
    )
}

/// The stack pointer a restarted thread starts with: below its signal frame,
/// 16-byte aligned, so the frame stays intact for `rt_sigreturn`.
pub fn entry_stack(uc: u64) -> u64 {
    (uc - UCONTEXT_IN_FRAME - super::ENTRY_STACK_GAP) & !15
}

/// Returns from a signal handler on behalf of a restarted thread: points the
/// stack at the signal frame whose ucontext is `uc` and calls rt_sigreturn,
/// which restores every register, the FPU state, the signal mask and the
/// alternate stack saved in that frame.
///
/// # Safety
/// `uc` must be the ucontext of a live signal frame of the calling thread.
pub unsafe fn sigreturn(uc: u64) -> ! {
    // The kernel expects rsp to point just past pretcode, i.e. at the ucontext.
    asm!(
        "mov rsp, {uc}",
        "mov eax, 15",
        "syscall",
        "ud2",
        uc = in(reg) uc,
        options(noreturn)
    )
}

/// XCR0: the XSAVE feature set the OS enabled (decides the size and layout
/// of the FPU state in signal frames). 0 when XSAVE is not available.
pub fn cpu_xfeatures() -> u64 {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return 0; // no OSXSAVE
    }
    let (lo, hi): (u32, u32);
    // SAFETY: OSXSAVE is set, so xgetbv with ecx=0 is permitted.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (hi as u64) << 32 | lo as u64
}

pub const ARCH_NAME: &str = "x86_64";

/// Switches to the restorer blob: `entry(args, stack_top)` on its own stack.
///
/// # Safety
/// `entry` must be the restorer's entry in an executable mapping, `args` a
/// valid argument block and `stack_top` the top of a writable stack; the
/// restarter's memory is torn down by the restorer, so nothing returns.
pub unsafe fn jump_to_restorer(entry: u64, args: u64, stack_top: u64) -> ! {
    asm!(
        "mov rsp, {stack}",
        "jmp {entry}",
        stack = in(reg) stack_top,
        entry = in(reg) entry,
        in("rdi") args,
        in("rsi") stack_top,
        options(noreturn)
    )
}

/// The signature glibc registers rseq areas with.
pub const RSEQ_SIG: u32 = 0x5305_3053;
