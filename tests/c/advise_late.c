/* Mapping flags changed on whole mappings between two forked checkpoints
 * (issue 16): the second checkpoint's survey of the mappings is the first
 * one's (no mapping is new), so its flags are stale; the dumping child
 * must see that and the checkpoint be taken again with the flags of the
 * pause.
 *
 * usage: advise_late FILE
 *   maps A and B (each between inaccessible pages, so neither merges),
 *   prints "waiting", waits for FILE.1 to exist, makes A MADV_HUGEPAGE and
 *   B MADV_DONTDUMP (whole mappings: /proc/self/maps does not change),
 *   prints "advised", waits for FILE.2, then checks that A's VmFlags have
 *   "hg" and B's "dd" and prints "advise ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096

/* Whether the VmFlags of the mapping starting at `addr` have `word`. */
static int has_flag(void *addr, const char *word) {
    char want[32], line[1024];
    snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
    FILE *f = fopen("/proc/self/smaps", "r");
    int in = 0, found = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' '))
            in = strncmp(line, want, strlen(want)) == 0;
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            for (char *w = strtok(line + 8, " \n"); w; w = strtok(NULL, " \n"))
                found |= strcmp(w, word) == 0;
        }
    }
    if (f) fclose(f);
    return found;
}

static void wait_file(const char *base, const char *ext) {
    char path[4096];
    snprintf(path, sizeof path, "%s%s", base, ext);
    struct timespec ts = {0, 10 * 1000 * 1000};
    while (access(path, F_OK) != 0) {
        struct timespec left = ts;
        while (nanosleep(&left, &left) && errno == EINTR) {}
    }
}

static char *fenced(void) {
    char *p = mmap(NULL, 6 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + PG, 4 * PG, PROT_READ | PROT_WRITE)) {
        perror("mmap");
        exit(2);
    }
    memset(p + PG, 0x5a, 4 * PG);
    return p + PG;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char *a = fenced(), *b = fenced();
    printf("waiting\n");
    fflush(stdout);
    wait_file(argv[1], ".1");
    if (madvise(a, 4 * PG, MADV_HUGEPAGE) || madvise(b, 4 * PG, MADV_DONTDUMP)) {
        perror("madvise");
        return 2;
    }
    printf("advised %d %d\n", has_flag(a, "hg"), has_flag(b, "dd"));
    fflush(stdout);
    wait_file(argv[1], ".2");
    int ok = has_flag(a, "hg") && has_flag(b, "dd") && a[4 * PG - 1] == 0x5a && b[0] == 0x5a;
    printf(ok ? "advise ok\n" : "FAIL hg %d dd %d\n", has_flag(a, "hg"), has_flag(b, "dd"));
    return !ok;
}
