/* Incremental checkpoints (issue 16): a program that rewrites part of its
 * memory between checkpoints and checks all of it after each.
 *
 * usage: incremental GODIR STEPS
 *   for step 1..STEPS: changes its memory (below), prints "ready STEP",
 *   waits for the file GODIR/go-STEP (the test checkpoints it meanwhile),
 *   checks every page it has against its model and prints "check STEP ok"
 *   (or FAIL lines). Then prints "incremental ok" and exits 0 (1 on FAIL).
 *
 * Memory: A, 1024 pages of anonymous memory, each page filled from (page,
 * generation); each step rewrites an eighth of them; step 2 gives pages
 * back (MADV_DONTNEED: zero), step 3 zeroes some by hand; step 4 shrinks A
 * by 64 pages. B: 64 pages mapped at step 2 and rewritten at step 3. C: 64
 * pages mapped at step 1, unmapped at step 3, mapped again at the same
 * address (empty: zero) at step 4.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define A_PAGES 1024
#define BC_PAGES 64
static int bad;

/* Generation of each page: > 0 a pattern, 0 zero. */
static int gen_a[A_PAGES], gen_b[BC_PAGES], gen_c[BC_PAGES];
static size_t a_pages = A_PAGES;
static unsigned char *a, *b, *c;
static int b_mapped, c_mapped;

static uint64_t word(int region, int page, int gen, int j) {
    uint64_t x = ((uint64_t)region << 56) ^ ((uint64_t)page << 32) ^ ((uint64_t)gen << 16) ^ (uint64_t)j;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 29;
    return x | 1;
}

static void fill(unsigned char *base, int region, int page, int gen) {
    uint64_t *p = (uint64_t *)(base + (size_t)page * PG);
    for (int j = 0; j < PG / 8; j++)
        p[j] = gen ? word(region, page, gen, j) : 0;
}

static void check_region(unsigned char *base, int region, const int *gens, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t *p = (const uint64_t *)(base + i * PG);
        for (int j = 0; j < PG / 8; j++) {
            uint64_t want = gens[i] ? word(region, (int)i, gens[i], j) : 0;
            if (p[j] != want) {
                printf("FAIL %s page %zu word %d: %#llx, want %#llx (generation %d)\n", name, i, j,
                       (unsigned long long)p[j], (unsigned long long)want, gens[i]);
                bad = 1;
                break;
            }
        }
    }
}

static void *map(void *at, size_t len, int extra) {
    void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

static void step(int s) {
    for (size_t i = 0; i < a_pages; i++)
        if ((int)(i % 8) == s % 8) {
            gen_a[i] = s;
            fill(a, 1, (int)i, s);
        }
    if (s == 1) {
        c = map(NULL, BC_PAGES * PG, 0);
        c_mapped = 1;
        for (int i = 0; i < BC_PAGES; i++) { gen_c[i] = 1; fill(c, 3, i, 1); }
    }
    if (s == 2) {
        for (size_t i = 3; i < a_pages; i += 16) {
            madvise(a + i * PG, PG, MADV_DONTNEED);
            gen_a[i] = 0;
        }
        b = map(NULL, BC_PAGES * PG, 0);
        b_mapped = 1;
        for (int i = 0; i < BC_PAGES; i++) { gen_b[i] = 2; fill(b, 2, i, 2); }
    }
    if (s == 3) {
        for (size_t i = 5; i < a_pages; i += 32) { gen_a[i] = 0; fill(a, 1, (int)i, 0); }
        for (int i = 0; i < BC_PAGES; i += 2) { gen_b[i] = 3; fill(b, 2, i, 3); }
        munmap(c, BC_PAGES * PG);
        c_mapped = 0;
    }
    if (s == 4) {
        munmap(a + (A_PAGES - 64) * PG, 64 * PG);
        a_pages = A_PAGES - 64;
        void *again = map(c, BC_PAGES * PG, MAP_FIXED_NOREPLACE);
        if (again != c) { printf("FAIL C not mapped again at %p\n", (void *)c); bad = 1; }
        c_mapped = 1;
        memset(gen_c, 0, sizeof gen_c);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: incremental GODIR STEPS\n"); return 2; }
    int steps = atoi(argv[2]);
    setvbuf(stdout, NULL, _IONBF, 0);
    a = map(NULL, A_PAGES * PG, 0);
    for (int i = 0; i < A_PAGES; i++) { gen_a[i] = 100; fill(a, 1, i, 100); }
    for (int s = 1; s <= steps; s++) {
        step(s);
        printf("ready %d\n", s);
        char go[4096];
        snprintf(go, sizeof go, "%s/go-%d", argv[1], s);
        while (access(go, F_OK) != 0) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        check_region(a, 1, gen_a, a_pages, "A");
        if (b_mapped) check_region(b, 2, gen_b, BC_PAGES, "B");
        if (c_mapped) check_region(c, 3, gen_c, BC_PAGES, "C");
        printf("check %d %s\n", s, bad ? "FAILED" : "ok");
    }
    printf("incremental %s\n", bad ? "FAILED" : "ok");
    return bad;
}
