/*
 * selfckpt restorer blob, x86_64.
 *
 * Runs after the restarter's address space is being torn down: no libc, no
 * stack but its own, raw system calls only, position-independent (it is
 * copied to an address free in both the restarter's and the image's map).
 * Everything it needs comes in one argument block, struct RestorerArgs of
 * src/restorer_abi.rs. Every offset below is a name build.rs generates from
 * it (restorer_abi.inc, prepended to this file: ARGS_* for the block, UNMAP_*,
 * MOVE_*, SIGACTION_*, THREAD_*, POKE_* for its tables, MM_MAP_* and
 * CLONE_ARGS_* for the kernel's structs); never write a number for one.
 *
 *   selfckpt_restorer_main(args = rdi, stack_top = rsi)  -- never returns
 *
 * Steps: 1 unregister the restarter's rseq area, 2 unmap the restarter's
 * mappings, 3 mremap each staged region to its final address and set its
 * protection, 4 prctl(PR_SET_MM_MAP) (retried without exe_fd), 5 restore
 * sigactions, 6 write the "pokes" (values the restarted library reads),
 * 7 clone3 every thread but the first onto its own stack with its TLS
 * (and, in a PID namespace of our own, its exact thread id); where clone3
 * is missing (ENOSYS) and no exact id is wanted, plain clone with the
 * same flags,
 * 8 the first thread sets its TLS and tid address; every thread then calls
 * the restart entry of the restored library with its slot address.
 * On any failure: message on fd 2 and exit_group(127).
 */
    .section .restorer,"ax",@progbits
    .globl selfckpt_restorer_main
    .type selfckpt_restorer_main,@function
    .p2align 4
selfckpt_restorer_main:
    mov rsp, rsi
    and rsp, -16
    mov r15, rdi

    /* 1. rseq(ptr, len, RSEQ_FLAG_UNREGISTER, sig) */
    mov rdi, [r15 + ARGS_RSEQ_PTR]
    test rdi, rdi
    jz 10f
    mov rsi, [r15 + ARGS_RSEQ_LEN]
    mov edx, 1
    mov r10, [r15 + ARGS_RSEQ_SIG]
    mov eax, 334
    syscall
    mov ebx, 1
    test rax, rax
    js .Lfail
10:
    /* 2. munmap(addr, len) for each [addr, len] */
    mov r12, [r15 + ARGS_N_UNMAP]
    mov r13, [r15 + ARGS_UNMAP]
20:
    test r12, r12
    jz 30f
    mov rdi, [r13 + UNMAP_ADDR]
    mov rsi, [r13 + UNMAP_LEN]
    mov eax, 11
    syscall
    mov ebx, 2
    test rax, rax
    js .Lfail
    add r13, UNMAP_SIZE
    dec r12
    jmp 20b
30:
    /* 3. mremap(src, len, len, MAYMOVE|FIXED, dst); mprotect(dst, len, prot) */
    mov r12, [r15 + ARGS_N_MOVES]
    mov r13, [r15 + ARGS_MOVES]
31:
    test r12, r12
    jz 40f
    mov rdi, [r13 + MOVE_SRC]
    mov rsi, [r13 + MOVE_LEN]
    mov rdx, [r13 + MOVE_LEN]
    mov r10, 3
    mov r8, [r13 + MOVE_DST]
    mov eax, 25
    syscall
    mov ebx, 3
    cmp rax, [r13 + MOVE_DST]
    jne .Lfail
    mov rdx, [r13 + MOVE_PROT]
    cmp rdx, MOVE_KEEP_PROT
    je 32f
    mov rdi, [r13 + MOVE_DST]
    mov rsi, [r13 + MOVE_LEN]
    mov eax, 10
    syscall
    mov ebx, 4
    test rax, rax
    js .Lfail
32:
    add r13, MOVE_SIZE
    dec r12
    jmp 31b
40:
    /* 4. prctl(PR_SET_MM, PR_SET_MM_MAP, map, size, 0) */
    mov rdx, [r15 + ARGS_MM_MAP]
    test rdx, rdx
    jz 50f
    mov edi, 35
    mov esi, 14
    mov r10, [r15 + ARGS_MM_MAP_SIZE]
    xor r8d, r8d
    mov eax, 157
    syscall
    test rax, rax
    jns 45f
    /* without the privilege to change /proc/self/exe: keep it */
    mov rdx, [r15 + ARGS_MM_MAP]
    mov dword ptr [rdx + MM_MAP_EXE_FD], -1
    mov edi, 35
    mov esi, 14
    mov r10, [r15 + ARGS_MM_MAP_SIZE]
    xor r8d, r8d
    mov eax, 157
    syscall
    mov ebx, 5
    test rax, rax
    js .Lfail
    mov qword ptr [r15 + ARGS_EXE_NOT_SET], 1    /* exe was not set */
45:
    mov rdi, [r15 + ARGS_EXE_FD]
    test rdi, rdi
    js 50f
    mov eax, 3
    syscall
50:
    /* 5. rt_sigaction(signo, &action, NULL, 8) */
    mov r12, [r15 + ARGS_N_SIGACTIONS]
    mov r13, [r15 + ARGS_SIGACTIONS]
51:
    test r12, r12
    jz 60f
    mov rdi, [r13 + SIGACTION_SIGNO]
    lea rsi, [r13 + SIGACTION_ACTION]
    xor edx, edx
    mov r10d, 8
    mov eax, 13
    syscall
    mov ebx, 6
    test rax, rax
    js .Lfail
    add r13, SIGACTION_SIZE
    dec r12
    jmp 51b
60:
    /* 6. pokes: *addr = value */
    mov r12, [r15 + ARGS_N_POKES]
    mov r13, [r15 + ARGS_POKES]
61:
    test r12, r12
    jz 70f
    mov rdi, [r13 + POKE_ADDR]
    mov rsi, [r13 + POKE_VALUE]
    mov [rdi], rsi
    add r13, POKE_SIZE
    dec r12
    jmp 61b
70:
    /* 7. clone3 the other threads (struct ThreadEntry);
     * want_tid != 0 asks for that exact thread id (set_tid, in a PID
     * namespace of our own). The thread's tid word (glibc's pd->tid) is
     * left as the image has it: it already holds the checkpoint-time id,
     * which mutex owners and the library's tid translation rely on.
     * struct clone_args lives on this stack (CLONE_ARGS_ROOM bytes). */
    mov r12, [r15 + ARGS_N_THREADS]
    mov r13, [r15 + ARGS_THREADS]
    mov r14, [r15 + ARGS_ENTRY]
    lea rbx, [r13 + THREAD_SIZE]
    dec r12
    sub rsp, CLONE_ARGS_ROOM
71:
    test r12, r12
    jle 80f
    mov qword ptr [rsp + CLONE_ARGS_FLAGS], 0x3d0f00 & ~0x100000  /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|CHILD_CLEARTID */
    mov qword ptr [rsp + CLONE_ARGS_PIDFD], 0
    mov rax, [rbx + THREAD_TID_ADDRESS]
    mov [rsp + CLONE_ARGS_CHILD_TID], rax
    mov qword ptr [rsp + CLONE_ARGS_PARENT_TID], 0
    mov qword ptr [rsp + CLONE_ARGS_EXIT_SIGNAL], 0
    mov rax, [rbx + THREAD_ENTRY_SP]
    and rax, -16
    sub rax, 16
    mov [rsp + CLONE_ARGS_STACK], rax          /* stack + stack_size = entry_sp */
    mov qword ptr [rsp + CLONE_ARGS_STACK_SIZE], 16
    mov rax, [rbx + THREAD_TLS]
    mov [rsp + CLONE_ARGS_TLS], rax
    xor eax, eax
    mov [rsp + CLONE_ARGS_SET_TID], rax        /* set_tid = NULL, */
    mov [rsp + CLONE_ARGS_SET_TID_SIZE], rax   /* set_tid_size = 0, */
    cmp qword ptr [rbx + THREAD_WANT_TID], 0
    je 72f
    lea rax, [rbx + THREAD_WANT_TID]
    mov [rsp + CLONE_ARGS_SET_TID], rax        /* or &want_tid (low 4 bytes), */
    mov qword ptr [rsp + CLONE_ARGS_SET_TID_SIZE], 1   /* one level */
72:
    mov qword ptr [rsp + CLONE_ARGS_CGROUP], 0
    mov rdi, rsp
    mov esi, CLONE_ARGS_SIZE
    mov eax, 435
    syscall
    test rax, rax
    jz 75f
    cmp rax, -38
    je 76f
    js .Lclone_failed
74:
    add rbx, THREAD_SIZE
    dec r12
    jmp 71b
76:
    /* no clone3 (-ENOSYS): plain clone(flags, stack, parent_tid,
     * child_tid, tls) with the same flags does, unless an exact id is
     * wanted */
    cmp qword ptr [rbx + THREAD_WANT_TID], 0
    jne .Lclone_failed
    mov rdi, [rsp + CLONE_ARGS_FLAGS]
    mov rsi, [rbx + THREAD_ENTRY_SP]
    and rsi, -16
    xor edx, edx
    mov r10, [rbx + THREAD_TID_ADDRESS]
    mov r8, [rbx + THREAD_TLS]
    mov eax, 56
    syscall
    test rax, rax
    jz 75f
    js .Lclone_failed
    jmp 74b
75:
    /* the new thread: its stack is entry_sp, rbx is its entry */
    and rsp, -16
    mov rdi, [rbx + THREAD_SLOT]
    call r14
    ud2
80:
    /* 8. the first thread: TLS and tid address (its id is the process's) */
    mov edi, 0x1002
    mov rsi, [r13 + THREAD_TLS]
    mov eax, 158
    syscall
    mov ebx, 8
    test rax, rax
    js .Lfail
    mov rdi, [r13 + THREAD_TID_ADDRESS]
    mov eax, 218
    syscall
    mov rsp, [r13 + THREAD_ENTRY_SP]
    and rsp, -16
    mov rdi, [r13 + THREAD_SLOT]
    call r14
    ud2

.Lclone_failed:
    mov ebx, 7
.Lfail:
    /* write(2, msg, len) with the step number patched in, then exit_group(127) */
    lea rsi, [rip + .Lmsg]
    sub rsp, 64
    and rsp, -16
    mov rdi, rsp
    mov ecx, 36
    mov edx, 36
1:
    mov r8b, [rsi]
    mov [rdi], r8b
    inc rsi
    inc rdi
    dec ecx
    jnz 1b
    add bl, '0'
    mov [rsp + 34], bl
    mov edi, 2
    mov rsi, rsp
    mov eax, 1
    syscall
    mov edi, 127
    mov eax, 231
    syscall
    ud2
.Lmsg:
    .ascii "selfckpt restorer: failed at step ?\n"
    .size selfckpt_restorer_main, . - selfckpt_restorer_main
    .text
