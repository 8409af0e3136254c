/* A C workload for benches/compare.sh, run under `selfckpt run` (nothing
 * here knows about selfckpt): holds MIB MiB of one pattern, with the same
 * bytes as examples/bigmem.rs, and checks them after a restart.
 *
 *   workload PATTERN MIB
 *       fills fresh anonymous memory, computes its checksum (kept in
 *       memory), prints "ready SUM", then blocks reading stdin. Each line
 *       read from stdin prints "running_at_ns T" (CLOCK_REALTIME when the
 *       read returned), re-computes the checksum, prints "verified_at_ns T"
 *       and "verified ok SUM", or "memory differs ..." and exits 3. EOF
 *       exits 0. So a restart is checked with
 *           echo | selfckpt restart IMAGE
 *       (the restarted program reads the restart's stdin), while the first
 *       run reads a pipe nobody writes to.
 *   workload --write-pattern FILE MIB PATTERN   the same bytes, to a file
 *   workload --memcpy MIB                       memory bandwidth, best of 5
 *
 * Patterns: random (xorshift), text (pseudo-English words), zerotouched
 * (memset 0), untouched (mapped, never touched), mixed (thirds: random,
 * text, zerotouched).
 *
 * Built by compare.sh with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static const char *const WORDS[24] = {
    "checkpoint ", "restart ", "memory ", "the ",    "of ",    "process ",
    "page ",       "image ",   "and ",    "thread ", "signal ", "kernel ",
    "a ",          "to ",      "is ",     "in ",     "that ",   "with ",
    "for ",        "when ",    "file ",   "written ", "zero ",  "again ",
};

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Little-endian x86_64/aarch64: the byte order of bigmem's to_le_bytes. */
static void fill_random(unsigned char *p, size_t n, uint64_t *s) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(s);
        memcpy(p + i, &v, 8);
    }
    /* Like bigmem, one more draw for the tail, even an empty one. */
    uint64_t v = rng_next(s);
    memcpy(p + i, &v, n - i);
}

static void fill_text(unsigned char *p, size_t n, uint64_t *s) {
    size_t at = 0;
    while (at < n) {
        const char *w = WORDS[rng_next(s) % 24];
        size_t k = strlen(w);
        if (k > n - at) k = n - at;
        memcpy(p + at, w, k);
        at += k;
    }
}

static int fill(unsigned char *p, size_t n, const char *pattern) {
    uint64_t s = 0x123456789abcdef1ULL;
    if (!strcmp(pattern, "random")) {
        fill_random(p, n, &s);
    } else if (!strcmp(pattern, "text")) {
        fill_text(p, n, &s);
    } else if (!strcmp(pattern, "zerotouched")) {
        memset(p, 0, n);
    } else if (!strcmp(pattern, "untouched")) {
    } else if (!strcmp(pattern, "mixed")) {
        size_t third = n / 3 / 4096 * 4096;
        fill_random(p, third, &s);
        fill_text(p + third, third, &s);
        memset(p + 2 * third, 0, n - 2 * third);
    } else {
        return -1;
    }
    return 0;
}

/* Fresh anonymous memory (not malloc: `untouched` must stay untouched). */
static unsigned char *map(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

/* Checksum: four independent xxh64-style lanes over 8-byte words, so it
 * runs at memory speed. Streaming: n must be a multiple of 32. */
#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
struct sum {
    uint64_t h[4];
};
static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static void sum_init(struct sum *s) {
    for (int i = 0; i < 4; i++) s->h[i] = P1 * (uint64_t)(i + 1);
}
static void sum_update(struct sum *s, const unsigned char *p, size_t n) {
    uint64_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], w[4];
    for (size_t i = 0; i + 32 <= n; i += 32) {
        memcpy(w, p + i, 32);
        a = rotl(a + w[0] * P2, 31) * P1;
        b = rotl(b + w[1] * P2, 31) * P1;
        c = rotl(c + w[2] * P2, 31) * P1;
        d = rotl(d + w[3] * P2, 31) * P1;
    }
    s->h[0] = a, s->h[1] = b, s->h[2] = c, s->h[3] = d;
}
static uint64_t sum_final(const struct sum *s) {
    return rotl(s->h[0], 1) ^ rotl(s->h[1], 7) ^ rotl(s->h[2], 12) ^ rotl(s->h[3], 18);
}
static uint64_t digest(const unsigned char *p, size_t n) {
    struct sum s;
    sum_init(&s);
    sum_update(&s, p, n);
    return sum_final(&s);
}

/* The checksum of n zero bytes, without reading the untouched memory
 * (reading would map the zero page into it). */
static uint64_t digest_zeros(size_t n) {
    static const unsigned char zeros[1 << 16];
    struct sum s;
    sum_init(&s);
    for (size_t at = 0; at < n; at += sizeof zeros)
        sum_update(&s, zeros, n - at < sizeof zeros ? n - at : sizeof zeros);
    return sum_final(&s);
}

static uint64_t now_ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static int usage(void) {
    fprintf(stderr,
            "usage: workload PATTERN MIB\n"
            "       workload --write-pattern FILE MIB PATTERN\n"
            "       workload --memcpy MIB\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--write-pattern")) {
        size_t n = strtoull(argv[3], NULL, 10) << 20;
        unsigned char *p = map(n);
        if (fill(p, n, argv[4])) return usage();
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        for (size_t at = 0; at < n;) {
            ssize_t w = write(fd, p + at, n - at);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                perror("write");
                return 1;
            }
            at += (size_t)w;
        }
        return close(fd) ? 1 : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--memcpy")) {
        size_t n = strtoull(argv[2], NULL, 10) << 20;
        unsigned char *a = map(n), *b = map(n);
        fill(a, n, "random");
        memset(b, 1, n);
        double best = 1e30;
        for (int i = 0; i < 5; i++) {
            uint64_t t = now_ns(CLOCK_MONOTONIC);
            memcpy(b, a, n);
            __asm__ volatile("" : : "r"(b) : "memory");
            double s = (double)(now_ns(CLOCK_MONOTONIC) - t) / 1e9;
            if (s < best) best = s;
        }
        printf("{\"memcpy_gbps\":%.2f}\n", (double)n / best / 1e9);
        return 0;
    }
    if (argc != 3) return usage();
    const char *pattern = argv[1];
    size_t n = strtoull(argv[2], NULL, 10) << 20;
    if (n == 0 || n % 32) return usage();
    unsigned char *p = map(n);
    if (fill(p, n, pattern)) return usage();
    int untouched = !strcmp(pattern, "untouched");
    uint64_t sum = untouched ? digest_zeros(n) : digest(p, n);
    printf("ready %016llx pid %d\n", (unsigned long long)sum, (int)getpid());
    fflush(stdout);
    char line[256];
    for (;;) {
        ssize_t r = read(0, line, sizeof line);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            perror("read stdin");
            return 1;
        }
        if (r == 0) return 0;
        uint64_t running = now_ns(CLOCK_REALTIME);
        uint64_t got = digest(p, n);
        printf("running_at_ns %llu\nverified_at_ns %llu\n", (unsigned long long)running,
               (unsigned long long)now_ns(CLOCK_REALTIME));
        if (got != sum) {
            printf("memory differs: %016llx, expected %016llx\n", (unsigned long long)got,
                   (unsigned long long)sum);
            fflush(stdout);
            return 3;
        }
        printf("verified ok %016llx\n", (unsigned long long)got);
        fflush(stdout);
    }
}
