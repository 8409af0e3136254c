/* A tree workload for benches/tree.sh, run under `selfckpt run` (nothing
 * here knows about selfckpt): PROCS processes (the first and PROCS-1
 * forked children), each holding MIB MiB of its own data (xorshift, a
 * third of it zeroed: as compressible as the "mixed" pattern), each
 * ticking every millisecond and noting the longest gap between ticks.
 * On SIGTERM each prints "gap_ms G" (its longest stall) and exits; the
 * first waits for its children.
 *
 *   tree_workload PROCS MIB
 *
 * Built by tree.sh with `cc -O2`. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Where the data is kept: reachable, so the compiler keeps every store. */
uint64_t *volatile kept;

static void fill(size_t mib, uint64_t seed) {
    size_t n = mib << 17; /* u64 words */
    uint64_t *p = malloc(n * 8), x = seed | 1;
    if (!p)
        exit(5);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = i % 3 == 2 ? 0 : x;
    }
    kept = p;
}

int main(int argc, char **argv) {
    int procs = argc > 1 ? atoi(argv[1]) : 8;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 128;
    signal(SIGTERM, on_term);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int me = 0;
    for (int i = 1; i < procs; i++) {
        pid_t c = fork();
        if (c < 0)
            return 1;
        if (c == 0) {
            me = i;
            break;
        }
    }
    fill(mib, 88172645463325252ULL + (uint64_t)me);
    printf("ready %d\n", me);
    double last = now_ms(), gap = 0;
    struct timespec ms = {0, 1000 * 1000};
    while (!stop) {
        nanosleep(&ms, NULL);
        double t = now_ms();
        if (t - last > gap)
            gap = t - last;
        last = t;
    }
    printf("gap_ms %.1f\n", gap);
    if (me == 0)
        while (wait(NULL) > 0) {
        }
    return 0;
}
