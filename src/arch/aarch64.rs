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

/// Which of [`frame_syscall`]'s argument registers the return value
/// overwrote: x0.
pub const SYSCALL_RET_CLOBBERS: [bool; 6] = [true, false, false, false, false, false];

/// A signal frame seen as a system call's return: (x0, pc, x0..x5; x0
/// holds the return value, the kernel keeps x1..x5 and x8).
///
/// # Safety
/// `uc` must point to the ucontext the kernel passed to a signal handler.
pub unsafe fn frame_syscall(uc: *const libc::c_void) -> (i64, u64, [u64; 6]) {
    let m = &(*(uc as *const libc::ucontext_t)).uc_mcontext;
    let r = &m.regs;
    (r[0] as i64, m.pc, [r[0], r[1], r[2], r[3], r[4], r[5]])
}

/// Whether the instruction before `pc` is `svc #0`.
pub fn after_syscall_insn(pc: u64) -> bool {
    // SAFETY: pc is where a thread of this process returned from a system
    // call, so the instruction before it is in a mapped, readable text page.
    pc >= 4 && unsafe { core::ptr::read_unaligned((pc - 4) as *const u32) } == 0xd400_0001
}

/// Makes the frame run system call `nr` again with `args` (x0 was
/// overwritten by the return value; x8 still holds `nr`).
///
/// # Safety
/// `uc` must point to the ucontext of a frame that returned from `nr` at
/// its pc (see [`frame_syscall`] and [`after_syscall_insn`]).
pub unsafe fn rewind_syscall(uc: *mut libc::c_void, nr: i64, args: &[u64; 6]) {
    let m = &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext;
    m.pc -= 4;
    m.regs[0] = args[0];
    m.regs[8] = nr as u64;
}

/// Whether system call `nr` with `args` waits for a relative time the
/// kernel does not update on interruption (see the x86_64 twin).
pub fn relative_timeout(nr: i64, args: &[u64; 6]) -> bool {
    const TIMER_ABSTIME: u64 = 1;
    match nr {
        libc::SYS_epoll_pwait => args[3] as i32 >= 0,
        libc::SYS_epoll_pwait2 => args[3] != 0,
        libc::SYS_nanosleep => true,
        libc::SYS_clock_nanosleep => args[1] & TIMER_ABSTIME == 0,
        libc::SYS_rt_sigtimedwait => args[2] != 0,
        libc::SYS_futex => args[1] & 0x7f == 0 && args[3] != 0,
        libc::SYS_semtimedop => args[3] != 0,
        libc::SYS_io_getevents => args[4] != 0,
        libc::SYS_recvmmsg => args[4] != 0,
        _ => false,
    }
}
