/* Mapping flags across a checkpoint (issue 14, Memory): a MAP_GROWSDOWN
 * mapping that is not the stack, madvise state (DONTFORK, WIPEONFORK,
 * HUGEPAGE, NOHUGEPAGE, MERGEABLE where the kernel has KSM, DONTDUMP), an
 * mlock'ed mapping, a
 * plain mapping without MAP_NORESERVE, a shared file mapping made
 * read-write and then partly mprotect'ed read-only, PR_SET_THP_DISABLE.
 *
 * usage: vmflags FILE
 *   sets up, prints each mapping's VmFlags (from /proc/self/smaps),
 *   "waiting", sleeps 2 s (the test checkpoints it meanwhile and kills
 *   it), then prints the VmFlags again (they must be the same), grows the
 *   growsdown mapping by touching below it, makes the read-only part of
 *   the shared file mapping writable and writes it, prints "vmflags ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
static int bad;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL " __VA_ARGS__); printf("\n"); bad = 1; } } while (0)

/* The VmFlags line of the mapping that starts at `addr`, into `out`. */
static void vmflags(void *addr, char *out, size_t n) {
    char want[32], line[1024];
    snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
    FILE *f = fopen("/proc/self/smaps", "r");
    int in = 0;
    snprintf(out, n, "(no mapping)");
    while (f && fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' '))
            in = strncmp(line, want, strlen(want)) == 0;
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, n, "%s", line + 9);
        }
    }
    if (f) fclose(f);
}

static void *map(void *at, size_t len, int prot, int flags, int fd) {
    void *p = mmap(at, len, prot, flags, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

/* A growsdown mapping placed where the kernel puts a fresh mapping (as
 * CRIU's grow_map test does): it grows only if no accessible mapping lies
 * within the stack guard gap below it, which holds in a process whose
 * free address space starts below its lowest mapping. A hole left inside
 * the loaded libraries (the kernel aligns the mapping of a library of
 * 2 MiB or more, leaving a gap above it) would take the fresh mapping
 * instead, and touching below the growsdown mapping would be a SIGSEGV.
 * (It needs 1 MiB free below the fresh mapping: done once, at the start.) */
static void unplaced_growsdown(void) {
    char *start = map(NULL, 10 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    munmap(start, 10 * PG);
    volatile char *g = map(start + 5 * PG, PG, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1);
    g[0] = 'c';
    g[-1] = 'b';
    CHECK(g[0] == 'c' && g[-1] == 'b', "unplaced growsdown contents");
    munmap((char *)g - PG, 2 * PG);
}

#define N 15
static const char *names[N] = {"growsdown", "dontfork",       "wipeonfork",    "hugepage",
                               "nohugepage", "mergeable",     "dontdump",      "plain",
                               "shared-ro-part", "locked",    "shared-noreserve", "shared-anon",
                               "sequential", "random", "droppable"};

int main(int argc, char **argv) {
    /* First, before this program's own mappings fill any hole. */
    unplaced_growsdown();
    printf("unplaced growsdown grew\n");
    int rw = PROT_READ | PROT_WRITE, priv = MAP_PRIVATE | MAP_ANONYMOUS;
    void *m[N];
    /* Room below the growsdown mapping: 16 free pages, then an
     * inaccessible reservation (which the stack guard gap does not count). */
    char *room = map(NULL, 64 * PG, PROT_NONE, priv, -1);
    munmap(room + 40 * PG, 24 * PG);
    m[0] = map(room + 56 * PG, 4 * PG, rw, priv | MAP_GROWSDOWN | MAP_FIXED_NOREPLACE, -1);
    int adv[] = {MADV_DONTFORK, MADV_WIPEONFORK, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE,
                 MADV_DONTDUMP};
    for (int i = 0; i < 6; i++) {
        m[1 + i] = map(NULL, 4 * PG, rw, priv, -1);
        memset(m[1 + i], i + 1, 4 * PG);
        if (madvise(m[1 + i], 4 * PG, adv[i]) && adv[i] == MADV_MERGEABLE)
            names[1 + i] = "mergeable (no KSM here)";
    }
    /* Between two inaccessible pages, so that the kernel never merges it
     * with a neighbour of the same flags (its start is what is looked up). */
    char *fenced = map(NULL, 6 * PG, PROT_NONE, priv, -1);
    if (mprotect(fenced + PG, 4 * PG, rw)) { perror("mprotect"); return 2; }
    m[7] = fenced + PG;
    memset(m[7], 9, 4 * PG);
    const char *path = argc > 1 ? argv[1] : "vmflags.dat";
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, 2 * PG)) { perror(path); return 2; }
    char *s = map(NULL, 2 * PG, rw, MAP_SHARED, fd);
    close(fd);
    s[0] = 'a';
    mprotect(s + PG, PG, PROT_READ);
    m[8] = s + PG;
    m[9] = map(NULL, 2 * PG, rw, priv, -1);
    if (mlock(m[9], 2 * PG)) names[9] = "locked (mlock refused here)";
    m[10] = map(NULL, 2 * PG, rw, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1);
    m[11] = map(NULL, 2 * PG, rw, MAP_SHARED | MAP_ANONYMOUS, -1);
    m[12] = map(NULL, 2 * PG, rw, priv, -1);
    if (madvise(m[12], 2 * PG, MADV_SEQUENTIAL)) { perror("MADV_SEQUENTIAL"); return 2; }
    m[13] = map(NULL, 2 * PG, rw, priv, -1);
    if (madvise(m[13], 2 * PG, MADV_RANDOM)) { perror("MADV_RANDOM"); return 2; }
    /* MAP_DROPPABLE (Linux 6.11: glibc's getrandom state): a plain
     * private mapping where the kernel has none. */
    m[14] = mmap(NULL, 2 * PG, rw, 0x08 /* MAP_DROPPABLE */ | MAP_ANONYMOUS, -1, 0);
    if (m[14] == MAP_FAILED) {
        m[14] = map(NULL, 2 * PG, rw, priv, -1);
        names[14] = "droppable (not on this kernel)";
    }
    memset(m[14], 7, 2 * PG);
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) { perror("PR_SET_THP_DISABLE"); return 2; }
    char before[N][256], after[N][256];
    for (int i = 0; i < N; i++) {
        vmflags(m[i], before[i], sizeof before[i]);
        printf("%s: %s\n", names[i], before[i]);
    }
    printf("waiting\n");
    fflush(stdout);
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}

    for (int i = 0; i < N; i++) {
        vmflags(m[i], after[i], sizeof after[i]);
        CHECK(strcmp(before[i], after[i]) == 0, "%s: VmFlags %s, were %s", names[i], after[i],
              before[i]);
    }
    printf("vmflags same\n");
    CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP no longer disabled");
    /* Grows: touch 8 pages below its start. */
    char *low = (char *)m[0] - 8 * PG;
    for (char *p = (char *)m[0] - PG; p >= low; p -= PG) *p = 1;
    printf("growsdown grew\n");
    CHECK(mprotect(s + PG, PG, rw) == 0, "mprotect(PROT_WRITE) on the shared file: %s",
          strerror(errno));
    s[PG] = 'b';
    printf("shared file writable\n");
    for (int i = 1; i < 8; i++)
        CHECK(((unsigned char *)m[i])[4 * PG - 1] == (i == 7 ? 9 : i), "%s contents", names[i]);
    if (bad) return 1;
    printf("vmflags ok\n");
    return 0;
}
