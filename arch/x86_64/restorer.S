/*
 * selfckpt restorer blob, x86_64.
 *
 * Runs after the restarter's address space is being torn down: no libc, no
 * stack but its own, raw system calls only, position-independent (it is
 * copied to an address free in both the restarter's and the image's map).
 * Everything it needs comes in one argument block (see src/restore/handover.rs,
 * struct RestorerArgs; the offsets below must match it).
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
    mov rdi, [r15 + 8]
    test rdi, rdi
    jz 10f
    mov rsi, [r15 + 16]
    mov edx, 1
    mov r10, [r15 + 24]
    mov eax, 334
    syscall
    mov ebx, 1
    test rax, rax
    js .Lfail
10:
    /* 2. munmap(addr, len) for each [addr, len] */
    mov r12, [r15 + 32]
    mov r13, [r15 + 40]
20:
    test r12, r12
    jz 30f
    mov rdi, [r13]
    mov rsi, [r13 + 8]
    mov eax, 11
    syscall
    mov ebx, 2
    test rax, rax
    js .Lfail
    add r13, 16
    dec r12
    jmp 20b
30:
    /* 3. mremap(src, len, len, MAYMOVE|FIXED, dst); mprotect(dst, len, prot) */
    mov r12, [r15 + 48]
    mov r13, [r15 + 56]
31:
    test r12, r12
    jz 40f
    mov rdi, [r13]
    mov rsi, [r13 + 16]
    mov rdx, [r13 + 16]
    mov r10, 3
    mov r8, [r13 + 8]
    mov eax, 25
    syscall
    mov ebx, 3
    cmp rax, [r13 + 8]
    jne .Lfail
    mov rdx, [r13 + 24]
    cmp rdx, -1
    je 32f
    mov rdi, [r13 + 8]
    mov rsi, [r13 + 16]
    mov eax, 10
    syscall
    mov ebx, 4
    test rax, rax
    js .Lfail
32:
    add r13, 32
    dec r12
    jmp 31b
40:
    /* 4. prctl(PR_SET_MM, PR_SET_MM_MAP, map, size, 0) */
    mov rdx, [r15 + 64]
    test rdx, rdx
    jz 50f
    mov edi, 35
    mov esi, 14
    mov r10, [r15 + 72]
    xor r8d, r8d
    mov eax, 157
    syscall
    test rax, rax
    jns 45f
    /* without the privilege to change /proc/self/exe: keep it */
    mov rdx, [r15 + 64]
    mov dword ptr [rdx + 100], -1
    mov edi, 35
    mov esi, 14
    mov r10, [r15 + 72]
    xor r8d, r8d
    mov eax, 157
    syscall
    mov ebx, 5
    test rax, rax
    js .Lfail
    mov qword ptr [r15 + 136], 1    /* tell the library exe was not set */
45:
    mov rdi, [r15 + 120]
    test rdi, rdi
    js 50f
    mov eax, 3
    syscall
50:
    /* 5. rt_sigaction(signo, &entry[8..40], NULL, 8) */
    mov r12, [r15 + 80]
    mov r13, [r15 + 88]
51:
    test r12, r12
    jz 60f
    mov rdi, [r13]
    lea rsi, [r13 + 8]
    xor edx, edx
    mov r10d, 8
    mov eax, 13
    syscall
    mov ebx, 6
    test rax, rax
    js .Lfail
    add r13, 40
    dec r12
    jmp 51b
60:
    /* 6. pokes: *addr = value */
    mov r12, [r15 + 144]
    mov r13, [r15 + 152]
61:
    test r12, r12
    jz 70f
    mov rdi, [r13]
    mov rsi, [r13 + 8]
    mov [rdi], rsi
    add r13, 16
    dec r12
    jmp 61b
70:
    /* 7. clone3 the other threads. Entries are
     *    [slot, tls, tid_address, entry_sp, want_tid];
     * want_tid != 0 asks for that exact thread id (set_tid, in a PID
     * namespace of our own). The thread's tid word (glibc's pd->tid) is
     * left as the image has it: it already holds the checkpoint-time id,
     * which mutex owners and the library's tid translation rely on.
     * struct clone_args (88 bytes) lives on this stack. */
    mov r12, [r15 + 96]
    mov r13, [r15 + 104]
    mov r14, [r15 + 112]
    lea rbx, [r13 + 40]
    dec r12
    sub rsp, 96
71:
    test r12, r12
    jle 80f
    mov qword ptr [rsp], 0x3d0f00 & ~0x100000  /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|CHILD_CLEARTID */
    mov qword ptr [rsp + 8], 0                 /* pidfd */
    mov rax, [rbx + 16]
    mov [rsp + 16], rax                        /* child_tid = tid_address */
    mov qword ptr [rsp + 24], 0                /* parent_tid */
    mov qword ptr [rsp + 32], 0                /* exit_signal */
    mov rax, [rbx + 24]
    and rax, -16
    sub rax, 16
    mov [rsp + 40], rax                        /* stack: stack + stack_size = entry_sp */
    mov qword ptr [rsp + 48], 16               /* stack_size */
    mov rax, [rbx + 8]
    mov [rsp + 56], rax                        /* tls */
    xor eax, eax
    mov [rsp + 64], rax                        /* set_tid = NULL, */
    mov [rsp + 72], rax                        /* set_tid_size = 0, */
    cmp qword ptr [rbx + 32], 0
    je 72f
    lea rax, [rbx + 32]
    mov [rsp + 64], rax                        /* or &want_tid (low 4 bytes), */
    mov qword ptr [rsp + 72], 1                /* one level */
72:
    mov qword ptr [rsp + 80], 0                /* cgroup */
    mov rdi, rsp
    mov esi, 88
    mov eax, 435
    syscall
    test rax, rax
    jz 75f
    cmp rax, -38
    je 76f
    js .Lclone_failed
74:
    add rbx, 40
    dec r12
    jmp 71b
76:
    /* no clone3 (-ENOSYS): plain clone(flags, stack, parent_tid,
     * child_tid, tls) with the same flags does, unless an exact id is
     * wanted */
    cmp qword ptr [rbx + 32], 0
    jne .Lclone_failed
    mov rdi, [rsp]
    mov rsi, [rbx + 24]
    and rsi, -16
    xor edx, edx
    mov r10, [rbx + 16]
    mov r8, [rbx + 8]
    mov eax, 56
    syscall
    test rax, rax
    jz 75f
    js .Lclone_failed
    jmp 74b
75:
    /* the new thread: its stack is entry_sp, rbx is its entry */
    and rsp, -16
    mov rdi, [rbx]
    call r14
    ud2
80:
    /* 8. the first thread: TLS and tid address (its id is the process's) */
    mov edi, 0x1002
    mov rsi, [r13 + 8]
    mov eax, 158
    syscall
    mov ebx, 8
    test rax, rax
    js .Lfail
    mov rdi, [r13 + 16]
    mov eax, 218
    syscall
    mov rsp, [r13 + 24]
    and rsp, -16
    mov rdi, [r13]
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
