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

/// Which of [`frame_syscall`]'s argument registers the return value
/// overwrote (none on x86_64: it comes back in rax).
pub const SYSCALL_RET_CLOBBERS: [bool; 6] = [false; 6];

/// A signal frame seen as a system call's return: (rax, rip, the six
/// argument registers rdi, rsi, rdx, r10, r8, r9, which the kernel keeps).
///
/// # Safety
/// `uc` must point to the ucontext the kernel passed to a signal handler.
pub unsafe fn frame_syscall(uc: *const libc::c_void) -> (i64, u64, [u64; 6]) {
    let g = &(*(uc as *const libc::ucontext_t)).uc_mcontext.gregs;
    let r = |i: libc::c_int| g[i as usize] as u64;
    (
        r(libc::REG_RAX) as i64,
        r(libc::REG_RIP),
        [
            r(libc::REG_RDI),
            r(libc::REG_RSI),
            r(libc::REG_RDX),
            r(libc::REG_R10),
            r(libc::REG_R8),
            r(libc::REG_R9),
        ],
    )
}

/// Whether the two bytes before `pc` are a `syscall` instruction.
pub fn after_syscall_insn(pc: u64) -> bool {
    // SAFETY: pc is where a thread of this process returned from a system
    // call, so the instruction before it is in a mapped, readable text page.
    pc >= 2 && unsafe { core::ptr::read_unaligned((pc - 2) as *const [u8; 2]) } == [0x0f, 0x05]
}

/// Makes the frame run system call `nr` again with the same arguments
/// (what the kernel itself does for `ERESTARTSYS` under `SA_RESTART`).
///
/// # Safety
/// `uc` must point to the ucontext of a frame that returned from `nr` at
/// its rip (see [`frame_syscall`] and [`after_syscall_insn`]).
pub unsafe fn rewind_syscall(uc: *mut libc::c_void, nr: i64, _args: &[u64; 6]) {
    let g = &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs;
    g[libc::REG_RIP as usize] -= 2;
    g[libc::REG_RAX as usize] = nr;
}

/// Whether system call `nr` with `args` waits for a relative time the
/// kernel does not update on interruption: running it again would wait the
/// whole time again (`select`, `pselect6` and `ppoll` write the time left
/// back, so they are rewound).
pub fn relative_timeout(nr: i64, args: &[u64; 6]) -> bool {
    const TIMER_ABSTIME: u64 = 1;
    match nr {
        libc::SYS_poll => args[2] as i32 >= 0,
        libc::SYS_epoll_wait | libc::SYS_epoll_pwait => args[3] as i32 >= 0,
        libc::SYS_epoll_pwait2 => args[3] != 0,
        libc::SYS_nanosleep => true,
        libc::SYS_clock_nanosleep => args[1] & TIMER_ABSTIME == 0,
        libc::SYS_rt_sigtimedwait => args[2] != 0,
        // FUTEX_WAIT's timeout is relative; the BITSET and PI waits' are
        // absolute.
        libc::SYS_futex => args[1] & 0x7f == 0 && args[3] != 0,
        libc::SYS_semtimedop => args[3] != 0,
        libc::SYS_io_getevents => args[4] != 0,
        libc::SYS_recvmmsg => args[4] != 0,
        _ => false,
    }
}
