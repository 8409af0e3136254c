/*
 * selfckpt restorer blob, aarch64.
 *
 * Runs after the restarter's address space is being torn down: no libc, no
 * stack but its own, raw system calls only (svc #0, number in x8, arguments
 * in x0-x5, result in x0; every other register survives), position-
 * independent (it is copied to an address free in both the restarter's and
 * the image's map; the message is reached with adr, nothing is relocated).
 * Everything it needs comes in one argument block, struct RestorerArgs of
 * src/restorer_abi.rs; the steps are those of arch/x86_64/restorer.S. Every
 * offset below is a name build.rs generates from it (restorer_abi.inc,
 * prepended to this file: ARGS_* for the block, UNMAP_*, MOVE_*,
 * SIGACTION_*, THREAD_*, POKE_* for its tables, MM_MAP_* and CLONE_ARGS_*
 * for the kernel's structs); never write a number for one.
 *
 *   selfckpt_restorer_main(args = x0, stack_top = x1)  -- never returns
 *
 * Steps: 1 unregister the restarter's rseq area, 2 unmap the restarter's
 * mappings, 3 mremap each staged region to its final address and set its
 * protection, 4 prctl(PR_SET_MM_MAP) (retried without exe_fd), 5 restore
 * sigactions, 6 write the "pokes" (values the restarted library reads),
 * 7 clone3 every thread but the first onto its own stack with its TLS
 * (and, in a PID namespace of our own, its exact thread id); where clone3
 * is missing (ENOSYS, e.g. qemu-user) and no exact id is wanted, plain
 * clone with the same flags, 8 the first thread sets its TLS (tpidr_el0:
 * no system call) and tid address; every thread then calls the restart
 * entry of the restored library with its slot address in x0.
 * On any failure: "selfckpt restorer: failed at step N" on fd 2 and
 * exit_group(127). N counts failing system calls as the x86_64 blob does:
 * 1 rseq, 2 munmap, 3 mremap, 4 mprotect, 5 prctl, 6 rt_sigaction, 7 clone.
 *
 * Registers: x19 args, x20 count, x21 cursor, x22 restart entry,
 * x23 step number, x24 thread entry being cloned, x25 first thread entry.
 * No braces anywhere in this file: Rust's global_asm! reads them as
 * format arguments.
 */
    .section .restorer,"ax",@progbits
    .globl selfckpt_restorer_main
    .type selfckpt_restorer_main,@function
    .p2align 4
selfckpt_restorer_main:
    and x1, x1, #-16
    mov sp, x1
    mov x19, x0
    mov x29, xzr

    /* 1. rseq(ptr, len, RSEQ_FLAG_UNREGISTER, sig) */
    ldr x0, [x19, #ARGS_RSEQ_PTR]
    cbz x0, .Lunmap
    ldr x1, [x19, #ARGS_RSEQ_LEN]
    mov x2, #1
    ldr x3, [x19, #ARGS_RSEQ_SIG]
    mov x8, #293
    svc #0
    mov w23, #1
    tbnz x0, #63, .Lfail

.Lunmap:
    /* 2. munmap(addr, len) for each [addr, len] */
    ldr x20, [x19, #ARGS_N_UNMAP]
    ldr x21, [x19, #ARGS_UNMAP]
.Lunmap_next:
    cbz x20, .Lmoves
    ldr x0, [x21, #UNMAP_ADDR]
    ldr x1, [x21, #UNMAP_LEN]
    add x21, x21, #UNMAP_SIZE
    mov x8, #215
    svc #0
    mov w23, #2
    tbnz x0, #63, .Lfail
    sub x20, x20, #1
    b .Lunmap_next

.Lmoves:
    /* 3. mremap(src, len, len, MAYMOVE|FIXED, dst); mprotect(dst, len, prot) */
    ldr x20, [x19, #ARGS_N_MOVES]
    ldr x21, [x19, #ARGS_MOVES]
.Lmoves_next:
    cbz x20, .Lmm_map
    ldr x0, [x21, #MOVE_SRC]
    ldr x1, [x21, #MOVE_LEN]
    mov x2, x1
    mov x3, #3
    ldr x4, [x21, #MOVE_DST]
    mov x8, #216
    svc #0
    mov w23, #3
    ldr x9, [x21, #MOVE_DST]
    cmp x0, x9
    b.ne .Lfail
    ldr x2, [x21, #MOVE_PROT]
    cmn x2, #-MOVE_KEEP_PROT          /* prot == MOVE_KEEP_PROT (-1)? */
    b.eq .Lmoves_done
    mov x0, x9
    ldr x1, [x21, #MOVE_LEN]
    mov x8, #226
    svc #0
    mov w23, #4
    tbnz x0, #63, .Lfail
.Lmoves_done:
    add x21, x21, #MOVE_SIZE
    sub x20, x20, #1
    b .Lmoves_next

.Lmm_map:
    /* 4. prctl(PR_SET_MM, PR_SET_MM_MAP, map, size, 0) */
    ldr x2, [x19, #ARGS_MM_MAP]
    cbz x2, .Lsigactions
    mov x0, #35
    mov x1, #14
    ldr x3, [x19, #ARGS_MM_MAP_SIZE]
    mov x4, xzr
    mov x8, #167
    svc #0
    tbz x0, #63, .Lclose_exe
    /* without the privilege to change /proc/self/exe: keep it */
    ldr x2, [x19, #ARGS_MM_MAP]
    mov w9, #-1
    str w9, [x2, #MM_MAP_EXE_FD]
    mov x0, #35
    mov x1, #14
    ldr x3, [x19, #ARGS_MM_MAP_SIZE]
    mov x4, xzr
    mov x8, #167
    svc #0
    mov w23, #5
    tbnz x0, #63, .Lfail
    mov x9, #1
    str x9, [x19, #ARGS_EXE_NOT_SET]   /* exe was not set */
.Lclose_exe:
    ldr x0, [x19, #ARGS_EXE_FD]
    tbnz x0, #63, .Lsigactions
    mov x8, #57
    svc #0

.Lsigactions:
    /* 5. rt_sigaction(signo, &action, NULL, 8); the kernel's struct
     * sigaction on aarch64 is (handler, flags, restorer, mask) as on x86_64 */
    ldr x20, [x19, #ARGS_N_SIGACTIONS]
    ldr x21, [x19, #ARGS_SIGACTIONS]
.Lsigactions_next:
    cbz x20, .Lpokes
    ldr x0, [x21, #SIGACTION_SIGNO]
    add x1, x21, #SIGACTION_ACTION
    mov x2, xzr
    mov x3, #8
    mov x8, #134
    svc #0
    mov w23, #6
    tbnz x0, #63, .Lfail
    add x21, x21, #SIGACTION_SIZE
    sub x20, x20, #1
    b .Lsigactions_next

.Lpokes:
    /* 6. pokes: *addr = value */
    ldr x20, [x19, #ARGS_N_POKES]
    ldr x21, [x19, #ARGS_POKES]
.Lpokes_next:
    cbz x20, .Lthreads
    ldr x0, [x21, #POKE_ADDR]
    ldr x1, [x21, #POKE_VALUE]
    add x21, x21, #POKE_SIZE
    str x1, [x0]
    sub x20, x20, #1
    b .Lpokes_next

.Lthreads:
    /* 7. clone3 the other threads (struct ThreadEntry);
     * want_tid != 0 asks for that exact thread id (set_tid, in a PID
     * namespace of our own). The thread's tid word (glibc's pd->tid) is
     * left as the image has it: it already holds the checkpoint-time id,
     * which mutex owners and the library's tid translation rely on.
     * struct clone_args lives on this stack (CLONE_ARGS_ROOM bytes). */
    ldr x20, [x19, #ARGS_N_THREADS]
    ldr x25, [x19, #ARGS_THREADS]
    ldr x22, [x19, #ARGS_ENTRY]
    add x24, x25, #THREAD_SIZE
    sub x20, x20, #1
    sub sp, sp, #CLONE_ARGS_ROOM
.Lclone_next:
    cmp x20, #0
    b.le .Lfirst_thread
    movz x9, #0x0f00                /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|CHILD_CLEARTID */
    movk x9, #0x2d, lsl #16
    str x9, [sp, #CLONE_ARGS_FLAGS]
    str xzr, [sp, #CLONE_ARGS_PIDFD]
    ldr x9, [x24, #THREAD_TID_ADDRESS]
    str x9, [sp, #CLONE_ARGS_CHILD_TID]
    str xzr, [sp, #CLONE_ARGS_PARENT_TID]
    str xzr, [sp, #CLONE_ARGS_EXIT_SIGNAL]
    ldr x9, [x24, #THREAD_ENTRY_SP]
    and x9, x9, #-16
    sub x9, x9, #16
    str x9, [sp, #CLONE_ARGS_STACK]         /* stack + stack_size = entry_sp */
    mov x9, #16
    str x9, [sp, #CLONE_ARGS_STACK_SIZE]
    ldr x9, [x24, #THREAD_TLS]
    str x9, [sp, #CLONE_ARGS_TLS]
    str xzr, [sp, #CLONE_ARGS_SET_TID]      /* set_tid = NULL, */
    str xzr, [sp, #CLONE_ARGS_SET_TID_SIZE] /* set_tid_size = 0, */
    ldr x9, [x24, #THREAD_WANT_TID]
    cbz x9, .Lclone_args_done
    add x9, x24, #THREAD_WANT_TID
    str x9, [sp, #CLONE_ARGS_SET_TID]       /* or &want_tid (low 4 bytes), */
    mov x9, #1
    str x9, [sp, #CLONE_ARGS_SET_TID_SIZE]  /* one level */
.Lclone_args_done:
    str xzr, [sp, #CLONE_ARGS_CGROUP]
    mov x0, sp
    mov x1, #CLONE_ARGS_SIZE
    mov x8, #435
    svc #0
    cbz x0, .Lchild
    cmn x0, #38
    b.eq .Lclone_legacy
    tbnz x0, #63, .Lclone_failed
.Lclone_done:
    add x24, x24, #THREAD_SIZE
    sub x20, x20, #1
    b .Lclone_next
.Lclone_legacy:
    /* no clone3 (-ENOSYS): plain clone(flags, stack, parent_tid, tls,
     * child_tid) with the same flags does, unless an exact id is wanted */
    ldr x9, [x24, #THREAD_WANT_TID]
    cbnz x9, .Lclone_failed
    ldr x0, [sp, #CLONE_ARGS_FLAGS]
    ldr x1, [x24, #THREAD_ENTRY_SP]
    and x1, x1, #-16
    mov x2, xzr
    ldr x3, [x24, #THREAD_TLS]
    ldr x4, [x24, #THREAD_TID_ADDRESS]
    mov x8, #220
    svc #0
    cbz x0, .Lchild
    tbnz x0, #63, .Lclone_failed
    b .Lclone_done
.Lchild:
    /* the new thread: its sp is entry_sp (16-aligned), x24 its entry */
    mov x29, xzr
    ldr x0, [x24, #THREAD_SLOT]
    blr x22
    brk #0

.Lfirst_thread:
    /* 8. the first thread: TLS and tid address (its id is the process's) */
    ldr x9, [x25, #THREAD_TLS]
    msr tpidr_el0, x9
    ldr x0, [x25, #THREAD_TID_ADDRESS]
    mov x8, #96
    svc #0
    ldr x9, [x25, #THREAD_ENTRY_SP]
    and x9, x9, #-16
    mov sp, x9
    mov x29, xzr
    ldr x0, [x25, #THREAD_SLOT]
    blr x22
    brk #0

.Lclone_failed:
    mov w23, #7
.Lfail:
    /* write(2, msg, len) with the step number patched in, then exit_group(127) */
    adr x1, .Lmsg
    sub sp, sp, #64
    mov x2, sp
    mov x3, #36
.Lcopy:
    ldrb w9, [x1], #1
    strb w9, [x2], #1
    subs x3, x3, #1
    b.ne .Lcopy
    add w23, w23, #48
    strb w23, [sp, #34]
    mov x0, #2
    mov x1, sp
    mov x2, #36
    mov x8, #64
    svc #0
    mov x0, #127
    mov x8, #94
    svc #0
    brk #0
.Lmsg:
    .ascii "selfckpt restorer: failed at step ?\n"
    .size selfckpt_restorer_main, . - selfckpt_restorer_main
    .text
