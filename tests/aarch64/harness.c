/*
 * Runs the aarch64 restorer blob (arch/aarch64/restorer.S) for real, under
 * qemu-user or on an aarch64 machine, the way the restarter does: the blob's
 * bytes (between __restorer_start/__restorer_end, which linker/restorer.ld
 * defines, as in the selfckpt binary) are copied to a fresh RX page and
 * entered with x0 = argument block, x1 = sp = top of a fresh stack.
 * Built and run by arch/check-aarch64.sh:
 *
 *   harness [ok | fail-rseq | fail-munmap | fail-mremap | fail-mprotect
 *            | fail-prctl | fail-sigaction | want-tid]
 *
 * "ok" builds an argument block (layout: src/restore/handover.rs) with
 *   - two staged regions to mremap into place, one with a protection to set
 *     (PROT_READ), one with -1 (keep), the latter over an old mapping that
 *     the unmap list removes first; one more region to unmap;
 *   - two sigactions (SIGUSR1 with a handler, flags and mask; SIGUSR2 SIG_IGN);
 *   - two pokes (a global, a word in a moved region);
 *   - two threads: the first continues as this thread with its real TLS
 *     (tpidr_el0 is zeroed just before the jump, so the blob must set it),
 *     the second is cloned with a fake TLS and a tid word to clear;
 * and has the restart entry check x0 = slot, tpidr_el0 and sp, then the
 * first thread verifies the memory, the map, the sigactions (read back raw
 * and by delivering a signal) and exits 0. Every other mode makes one step
 * fail: the blob must print "selfckpt restorer: failed at step N" and exit
 * 127 (the script checks N).
 *
 * Not exercised: a successful rseq unregistration or PR_SET_MM_MAP (their
 * pointers are 0 in the "ok" block: qemu-user does not emulate them; the
 * fail- modes only see that a failure is reported as step 1 and, after the
 * retry without exe_fd, step 5), closing exe_fd, moving the vdso,
 * set_tid_address of the first thread (no way to read it back), exact
 * thread ids (clone3 set_tid needs a PID namespace).
 *
 * The restart entry runs on threads whose TLS may be fake: it uses raw
 * system calls only until it knows the TLS is the real one (build with
 * -fno-stack-protector).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if !defined(__aarch64__)
#error "the harness runs the aarch64 restorer blob"
#endif

typedef uint64_t u64;

extern const char __restorer_start[], __restorer_end[];
extern void selfckpt_restorer_main(void);

#define STACK_LEN (256 << 10)
#define POKE_GLOBAL 0x1122334455667788ull
#define POKE_MOVED 0x0badc0ffee0ddf00ull
#define POKE_MOVED_AT 5 /* word index in the second moved region */
#define MAGIC 0x4752415454504b43ull /* "SCKPTARG" little-endian */

static inline long raw3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

static inline long raw4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

/* What each thread saw when the blob called the restart entry. */
struct result {
    volatile u64 ran, slot, tp, sp, tid;
};

static struct result results[2];
static u64 saved_tp;
static u64 fake_tcb[8] __attribute__((aligned(16)));
static volatile uint32_t tid_words[2];
static volatile u64 poked_global;
static u64 stacks[2];
static u64 *moved1, *moved2; /* targets */
static u64 len1, len2;
static u64 staged1, staged2, unmapped;

static volatile int usr1_signo, usr1_info_signo, usr1_usr2_blocked;

/* Dies with a message using raw system calls only (any thread, any TLS). */
static void raw_die(const char *msg, int code)
{
    long n = 0;
    while (msg[n])
        n++;
    raw3(SYS_write, 2, (long)msg, n);
    raw3(SYS_exit_group, code, 0, 0);
    for (;;)
        ;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    u64 mask = 0;
    (void)uc;
    raw4(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&mask, 8);
    usr1_signo = sig;
    usr1_info_signo = si->si_signo;
    usr1_usr2_blocked = (mask >> (SIGUSR2 - 1)) & 1;
}

static int failures, passes;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            passes++;                                                          \
        } else {                                                               \
            failures++;                                                        \
            fprintf(stderr, "harness: FAIL: ");                                \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* The permissions of the mapping holding [addr, addr+len), "" if none
 * overlaps, "split" if it is not one mapping. */
static const char *map_perms(u64 addr, u64 len, char out[8])
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    strcpy(out, "");
    if (!f) {
        strcpy(out, "nomaps");
        return out;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
            continue;
        if (e <= addr || s >= addr + len)
            continue;
        if (s <= addr && e >= addr + len && !out[0])
            strcpy(out, perms);
        else
            strcpy(out, "split");
    }
    fclose(f);
    return out;
}

static int pattern_ok(const u64 *p, u64 len, u64 tag, long except_at, u64 except)
{
    for (u64 i = 0; i < len / 8; i++) {
        u64 want = (long)i == except_at ? except : tag + i;
        if (p[i] != want)
            return 0;
    }
    return 1;
}

static void fill(u64 *p, u64 len, u64 tag)
{
    for (u64 i = 0; i < len / 8; i++)
        p[i] = tag + i;
}

static int in_stack(int i, u64 sp)
{
    return sp > stacks[i] && sp <= stacks[i] + STACK_LEN && sp % 16 == 0;
}

/* The first thread, TLS back: check everything with libc. */
static int verify(void)
{
    char perms[8];
    struct timespec tick = {0, 10 * 1000 * 1000};
    int waited = 0;
    uint32_t v;

    while ((v = tid_words[1]) != 0 && waited < 500) {
        syscall(SYS_futex, &tid_words[1], FUTEX_WAIT, v, &tick, 0, 0);
        waited++;
    }
    CHECK(tid_words[1] == 0,
          "second thread's tid word not cleared (CLONE_CHILD_CLEARTID at its tid_address): %#x",
          tid_words[1]);
    CHECK(results[0].ran && results[1].ran, "restart entry ran on %d/%d threads",
          (int)results[0].ran, (int)results[1].ran);
    CHECK(results[0].slot == (u64)&results[0] && results[1].slot == (u64)&results[1],
          "x0 is not each thread's slot");
    CHECK(results[0].tp == saved_tp, "first thread's tpidr_el0 %#llx, want %#llx",
          (unsigned long long)results[0].tp, (unsigned long long)saved_tp);
    CHECK(results[1].tp == (u64)fake_tcb, "second thread's tpidr_el0 %#llx, want %#llx",
          (unsigned long long)results[1].tp, (unsigned long long)(u64)fake_tcb);
    CHECK(in_stack(0, results[0].sp), "first thread's sp %#llx is not on its entry stack",
          (unsigned long long)results[0].sp);
    CHECK(in_stack(1, results[1].sp), "second thread's sp %#llx is not on its entry stack",
          (unsigned long long)results[1].sp);
    CHECK(results[0].tid == (u64)getpid(), "first thread is not the process's thread");
    CHECK(results[1].tid != 0 && results[1].tid != results[0].tid,
          "second thread has no thread id of its own (%llu)", (unsigned long long)results[1].tid);

    CHECK(pattern_ok(moved1, len1, 0xa100, -1, 0), "first region's data did not move");
    CHECK(pattern_ok(moved2, len2, 0xb200, POKE_MOVED_AT, POKE_MOVED),
          "second region's data did not move or was not poked");
    CHECK(!strcmp(map_perms((u64)moved1, len1, perms), "r--p"),
          "first region is \"%s\", want r--p (prot set)", perms);
    CHECK(!strcmp(map_perms((u64)moved2, len2, perms), "rw-p"),
          "second region is \"%s\", want rw-p (prot -1 keeps it)", perms);
    CHECK(!*map_perms(staged1, len1, perms) && !*map_perms(staged2, len2, perms),
          "a staging area is still mapped");
    CHECK(!*map_perms(unmapped, 4096, perms), "the region to unmap is still mapped (%s)", perms);
    CHECK(poked_global == POKE_GLOBAL, "global not poked: %#llx",
          (unsigned long long)poked_global);

    u64 k[4] = {0};
    CHECK(raw4(SYS_rt_sigaction, SIGUSR1, 0, (long)k, 8) == 0 && k[0] == (u64)on_usr1 &&
              k[1] == (SA_SIGINFO | SA_RESTART) && k[3] == 1ull << (SIGUSR2 - 1),
          "SIGUSR1 action reads back as handler %#llx flags %#llx restorer %#llx mask %#llx",
          (unsigned long long)k[0], (unsigned long long)k[1], (unsigned long long)k[2],
          (unsigned long long)k[3]);
    memset(k, 0, sizeof k);
    CHECK(raw4(SYS_rt_sigaction, SIGUSR2, 0, (long)k, 8) == 0 && k[0] == (u64)SIG_IGN,
          "SIGUSR2 is not ignored: %#llx", (unsigned long long)k[0]);
    raw3(SYS_tgkill, getpid(), (long)results[0].tid, SIGUSR1);
    CHECK(usr1_signo == SIGUSR1 && usr1_info_signo == SIGUSR1 && usr1_usr2_blocked,
          "SIGUSR1 handler: signo %d, siginfo signo %d, SIGUSR2 blocked %d", usr1_signo,
          usr1_info_signo, usr1_usr2_blocked);

    errno = 0;
    long c3 = syscall(435, 0, 0);
    printf("harness: clone3 %s: %s path exercised\n",
           c3 < 0 && errno == ENOSYS ? "missing (ENOSYS)" : "present",
           c3 < 0 && errno == ENOSYS ? "plain clone fallback" : "clone3");
    if (failures) {
        fprintf(stderr, "harness: %d of %d checks failed\n", failures, failures + passes);
        return 1;
    }
    printf("harness: all %d checks ok\n", passes);
    fflush(stdout);
    return 0;
}

/* The "restart entry of the restored library": x0 = slot. */
__attribute__((noinline)) void restart_entry(u64 slot)
{
    u64 tp, sp;
    struct result *r = (struct result *)slot;
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp));
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    if (r != &results[0] && r != &results[1])
        raw_die("harness: FAIL: restart entry called with x0 not a slot\n", 2);
    r->slot = slot;
    r->tp = tp;
    r->sp = sp;
    r->tid = raw3(SYS_gettid, 0, 0, 0);
    __atomic_store_n(&r->ran, 1, __ATOMIC_RELEASE);
    if (r == &results[1]) {
        raw3(SYS_exit, 0, 0, 0);
        for (;;)
            ;
    }
    if (tp != saved_tp)
        raw_die("harness: FAIL: first thread's tpidr_el0 not restored\n", 3);
    raw3(SYS_exit_group, verify(), 0, 0);
}

static u64 map(u64 len, int prot)
{
    void *p = mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("harness: mmap");
        exit(1);
    }
    return (u64)p;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ok";
    long page = sysconf(_SC_PAGESIZE);

    /* clone3 exists here: an exact id would be asked for for real, which
     * needs a PID namespace; the failure is only certain without clone3 */
    if (!strcmp(mode, "want-tid")) {
        errno = 0;
        if (!(syscall(435, 0, 0) < 0 && errno == ENOSYS)) {
            printf("skipped: want-tid needs a system without clone3\n");
            return 0;
        }
    }

    len1 = 2 * page;
    len2 = 3 * page;
    /* targets: a free place for the first, an old mapping for the second */
    moved1 = (u64 *)map(len1, PROT_READ);
    munmap(moved1, len1);
    moved2 = (u64 *)map(len2, PROT_READ | PROT_WRITE);
    fill(moved2, len2, 0xdead0000);
    staged1 = map(len1, PROT_READ | PROT_WRITE);
    fill((u64 *)staged1, len1, 0xa100);
    staged2 = map(len2, PROT_READ | PROT_WRITE);
    fill((u64 *)staged2, len2, 0xb200);
    unmapped = map(page, PROT_READ | PROT_WRITE);
    stacks[0] = map(STACK_LEN, PROT_READ | PROT_WRITE);
    stacks[1] = map(STACK_LEN, PROT_READ | PROT_WRITE);
    u64 blob_stack = map(64 << 10, PROT_READ | PROT_WRITE);
    tid_words[0] = 0;
    tid_words[1] = 0xffffffff;
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(saved_tp));

    /* the argument block: 20 header words, then the arrays */
    u64 *a = (u64 *)map(page, PROT_READ | PROT_WRITE);
    u64 *next = a + 20;
#define ARRAY(off_n, off_p, n, ...)                                            \
    do {                                                                       \
        u64 items[] = {__VA_ARGS__};                                           \
        a[(off_n) / 8] = (n);                                                  \
        a[(off_p) / 8] = (u64)next;                                            \
        memcpy(next, items, sizeof items);                                     \
        next += sizeof items / 8;                                              \
    } while (0)
    a[0] = MAGIC;
    /* 8..24 rseq: 0, but for a bogus unregistration that must fail */
    static u64 mm_map[13];
    if (!strcmp(mode, "fail-rseq")) {
        a[1] = (u64)fake_tcb;
        a[2] = 32;
        a[3] = 0xd428bc00;
    }
    if (!strcmp(mode, "fail-munmap"))
        ARRAY(32, 40, 2, unmapped, page, (u64)moved2 + 1, len2);
    else
        ARRAY(32, 40, 2, unmapped, page, (u64)moved2, len2);
    if (!strcmp(mode, "fail-mremap"))
        ARRAY(48, 56, 2, unmapped, (u64)moved1, len1, PROT_READ, staged2, (u64)moved2, len2,
              (u64)-1);
    else if (!strcmp(mode, "fail-mprotect"))
        ARRAY(48, 56, 2, staged1, (u64)moved1, len1, 0x7fff0000, staged2, (u64)moved2, len2,
              (u64)-1);
    else
        ARRAY(48, 56, 2, staged1, (u64)moved1, len1, PROT_READ, staged2, (u64)moved2, len2,
              (u64)-1);
    /* 64, 72 mm_map: 0 (step 4 skipped, with the exe_fd close), but for a
     * wrong size, which both calls (with and without exe_fd) must fail */
    if (!strcmp(mode, "fail-prctl")) {
        a[64 / 8] = (u64)mm_map;
        a[72 / 8] = 1;
    }
    a[120 / 8] = (u64)-1;
    ARRAY(80, 88, 2, !strcmp(mode, "fail-sigaction") ? SIGKILL : SIGUSR1, (u64)on_usr1,
          SA_SIGINFO | SA_RESTART, 0, 1ull << (SIGUSR2 - 1), SIGUSR2, (u64)SIG_IGN, 0, 0, 0);
    ARRAY(96, 104, 2, (u64)&results[0], saved_tp, (u64)&tid_words[0], stacks[0] + STACK_LEN, 0,
          (u64)&results[1], (u64)fake_tcb, (u64)&tid_words[1], stacks[1] + STACK_LEN,
          !strcmp(mode, "want-tid") ? 4242 : 0);
    a[112 / 8] = (u64)restart_entry;
    ARRAY(144, 152, 2, (u64)&poked_global, POKE_GLOBAL, (u64)moved2 + 8 * POKE_MOVED_AT,
          POKE_MOVED);

    /* the blob, copied like the restarter does */
    u64 blob_len = __restorer_end - __restorer_start;
    u64 blob = map(blob_len, PROT_READ | PROT_WRITE);
    memcpy((void *)blob, __restorer_start, blob_len);
    if (mprotect((void *)blob, blob_len, PROT_READ | PROT_EXEC)) {
        perror("harness: mprotect");
        return 1;
    }
    __builtin___clear_cache((char *)blob, (char *)blob + blob_len);
    u64 entry = blob + ((u64)selfckpt_restorer_main - (u64)__restorer_start);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    fflush(stdout);

    register u64 x0 __asm__("x0") = (u64)a;
    register u64 x1 __asm__("x1") = blob_stack + (64 << 10);
    register u64 x9 __asm__("x9") = entry;
    __asm__ volatile("msr tpidr_el0, xzr\n\t"
                     "mov sp, x1\n\t"
                     "br x9"
                     :
                     : "r"(x0), "r"(x1), "r"(x9)
                     : "memory");
    __builtin_unreachable();
}
