/* Workload of benches/incremental.sh: MIB of incompressible memory; at
 * each step after the first, PCT percent of its pages (spread evenly) are
 * rewritten. Prints "ready N" and waits for GODIR/go-N before the next.
 *
 * usage: incremental MIB PCT STEPS GODIR
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: incremental MIB PCT STEPS GODIR\n"); return 2; }
    size_t pages = (size_t)atol(argv[1]) * 256;
    double pct = atof(argv[2]);
    int steps = atoi(argv[3]);
    uint64_t *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 2; }
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < pages * 512; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; m[i] = x; }
    setvbuf(stdout, NULL, _IONBF, 0);
    size_t every = (size_t)(100.0 / pct);
    for (int s = 1; s <= steps; s++) {
        if (s > 1)
            for (size_t p = (size_t)s % every; p < pages; p += every)
                for (size_t j = 0; j < 512; j++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; m[p * 512 + j] = x; }
        printf("ready %d\n", s);
        char go[4096];
        snprintf(go, sizeof go, "%s/go-%d", argv[4], s);
        while (access(go, F_OK) != 0) { struct timespec ts = {0, 2000000}; nanosleep(&ts, NULL); }
    }
    return 0;
}
