/* An rseq area the program registers itself, after glibc's is given up
 * (a runtime with its own rseq use does this): after a checkpoint the
 * thread must still be registered there (registering again says EBUSY,
 * and the kernel keeps the area's cpu_id current), as in an
 * uninterrupted run.
 *
 * usage: own_rseq */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SIG 0x53053053

static __thread struct rseq area __attribute__((aligned(32)));

static void on_signal(int sig)
{
    (void)sig;
}

static void *thread_pointer(void)
{
    return __builtin_thread_pointer();
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (__rseq_size > 0) {
        /* Give up glibc's registration (marked so that glibc knows). */
        struct rseq *g = (struct rseq *)((char *)thread_pointer() + __rseq_offset);
        unsigned int size = __rseq_size < 32 ? 32 : __rseq_size;
        g->cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED;
        if (syscall(SYS_rseq, g, size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) != 0) {
            printf("unregister glibc's: %s\n", strerror(errno));
            return 1;
        }
    }
    if (syscall(SYS_rseq, &area, sizeof area, 0, SIG) != 0) {
        printf("register: %s\n", strerror(errno));
        return 1;
    }
    printf("registered: cpu_id valid %d\n", (int)area.cpu_id >= 0);
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    area.cpu_id = (unsigned)-1;
    /* The kernel writes cpu_id of a registered area as it delivers a
     * signal. */
    signal(SIGURG, on_signal);
    raise(SIGURG);
    long r = syscall(SYS_rseq, &area, sizeof area, 0, SIG);
    printf("register again: %s\n", r == 0 ? "succeeded (it was not registered)" : strerror(errno));
    printf("cpu_id valid after %d\n", (int)area.cpu_id >= 0);
    printf("own rseq ok\n");
    return 0;
}
