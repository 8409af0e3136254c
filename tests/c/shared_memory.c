/* Shared memory objects across a checkpoint (issue 14, Memory): shared
 * anonymous memory with an alias (mremap old size 0) and pages written
 * through the alias only, a shared region moved by mremap, a memfd held
 * open and mapped twice at overlapping offsets with seals and an offset, a
 * write-sealed memfd mapped read-only, a memfd closed after mmap, a memfd
 * never mapped, a memfd script the program executes (execveat), an
 * unlinked /dev/shm file still mapped.
 *
 * usage: shared_memory
 *   sets everything up, prints "waiting", sleeps 2 s (the test checkpoints
 *   it meanwhile and kills it), then checks each object, writes through
 *   one mapping and reads through the other, and prints one line per
 *   check and "shared ok" at the end; "FAIL ..." on any difference.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
static int bad;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL " __VA_ARGS__); printf("\n"); bad = 1; } } while (0)

static void fill(unsigned char *p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + seed);
}
/* Whether executing the memfd `fd` (a "#!/bin/true" script) from a
 * child succeeds, as runc and fexecve(3) do: 1 yes, 0 no. */
static int runs(int fd) {
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"true", NULL}, *envp[] = {NULL};
        syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(errno == ETXTBSY ? 26 : 1);
    }
    int st = -1;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int same(const unsigned char *p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31 + seed)) return 0;
    return 1;
}
static void *map(size_t len, int prot, int flags, int fd, off_t off) {
    void *p = mmap(NULL, len, prot, flags, fd, off);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}
static int deleted_line(void *addr) {
    char want[32], line[512];
    snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, want, strlen(want)) == 0 && strstr(line, "(deleted)")) found = 1;
    if (f) fclose(f);
    return found;
}

int main(void) {
    int rw = PROT_READ | PROT_WRITE;
    /* 1. Shared anonymous memory and an alias; page 3 written through the
     * alias only. */
    unsigned char *a = map(4 * PG, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *b = mremap(a, 0, 4 * PG, MREMAP_MAYMOVE);
    if (b == MAP_FAILED) { perror("mremap alias"); return 2; }
    fill(a, 3 * PG, 1);
    fill(b + 3 * PG, PG, 2);
    /* 2. A shared region moved by mremap. */
    unsigned char *c0 = map(2 * PG, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fill(c0, 2 * PG, 3);
    unsigned char *hole = map(8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *c = mremap(c0, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 4 * PG);
    if (c == MAP_FAILED) { perror("mremap move"); return 2; }
    /* 3. A memfd held open, mapped twice (pages 0-1 and 1-2), data in page
     * 2 written with write(2), sealed against growing and shrinking, its
     * offset at 123. */
    int mfd = memfd_create("kmem-test", MFD_ALLOW_SEALING);
    if (mfd < 0 || ftruncate(mfd, 3 * PG)) { perror("memfd"); return 2; }
    if (fchmod(mfd, 0642)) { perror("memfd fchmod"); return 2; }
    unsigned char *m1 = map(2 * PG, rw, MAP_SHARED, mfd, 0);
    unsigned char *m2 = map(2 * PG, rw, MAP_SHARED, mfd, PG);
    fill(m1, 2 * PG, 4);
    unsigned char page[PG];
    fill(page, PG, 5);
    if (pwrite(mfd, page, PG, 2 * PG) != PG) { perror("pwrite"); return 2; }
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) { perror("seal"); return 2; }
    lseek(mfd, 123, SEEK_SET);
    /* 3b. The same memfd mapped from a read-only open: never writable. */
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", mfd);
    int rofd = open(self, O_RDONLY);
    unsigned char *ro = map(PG, PROT_READ, MAP_SHARED, rofd, PG);
    close(rofd);
    /* 4. A write-sealed memfd mapped read-only. */
    int wfd = memfd_create("kmem-sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    fill(page, PG, 6);
    if (wfd < 0 || write(wfd, page, PG) != PG) { perror("memfd sealed"); return 2; }
    if (fcntl(wfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL)) { perror("seal write"); return 2; }
    unsigned char *w = map(PG, PROT_READ, MAP_SHARED, wfd, 0);
    /* 5. A memfd closed once mapped. */
    int cfd = memfd_create("kmem-closed", 0);
    if (cfd < 0 || ftruncate(cfd, 2 * PG)) { perror("memfd closed"); return 2; }
    unsigned char *k = map(2 * PG, rw, MAP_SHARED, cfd, 0);
    close(cfd);
    fill(k, 2 * PG, 7);
    /* 6. A memfd never mapped, with a hole before its data. */
    int ufd = memfd_create("kmem-unmapped", 0);
    fill(page, PG, 8);
    if (ufd < 0 || pwrite(ufd, page, 100, 5 * PG) != 100) { perror("memfd unmapped"); return 2; }
    /* 6a. A memfd held only write-only and O_APPEND, never mapped. */
    int xfd = memfd_create("kmem-wronly", 0);
    char xpath[64];
    snprintf(xpath, sizeof xpath, "/proc/self/fd/%d", xfd);
    int wo = open(xpath, O_WRONLY | O_APPEND);
    close(xfd);
    if (wo < 0 || write(wo, "appended", 8) != 8) { perror("memfd wronly"); return 2; }
    /* 6b. A memfd of 100 bytes mapped with a whole page. */
    int tfd = memfd_create("kmem-short", 0);
    if (tfd < 0 || ftruncate(tfd, 100)) { perror("memfd short"); return 2; }
    unsigned char *t = map(PG, rw, MAP_SHARED, tfd, 0);
    fill(t, 100, 10);
    /* 6c. A memfd holding a script the program executes (execveat),
     * held read-write as memfd_create gave it. */
    int efd = memfd_create("kmem-script", 0);
    if (efd < 0 || write(efd, "#!/bin/true\n", 12) != 12) { perror("memfd script"); return 2; }
    int ran_before = runs(efd);
    /* 6d. A sealable memfd not sealed yet: the program seals it later. */
    int lfd = memfd_create("kmem-seal-later", MFD_ALLOW_SEALING);
    if (lfd < 0 || ftruncate(lfd, 100)) { perror("memfd seal later"); return 2; }
    /* 7. An unlinked /dev/shm file, still mapped. */
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/kmem-%d", (int)getpid());
    int sfd = open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (sfd < 0 || ftruncate(sfd, 2 * PG)) { perror(shm); return 2; }
    unsigned char *s = map(2 * PG, rw, MAP_SHARED, sfd, 0);
    close(sfd);
    unlink(shm);
    fill(s, 2 * PG, 9);

    printf("waiting\n");
    fflush(stdout);
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}

    CHECK(same(a, 3 * PG, 1) && same(b, 3 * PG, 1), "anon contents");
    CHECK(same(a + 3 * PG, PG, 2), "anon page written through the alias only");
    a[5] = 0xee;
    b[PG + 7] = 0xdd;
    CHECK(b[5] == 0xee && a[PG + 7] == 0xdd, "anon alias not shared");
    printf("anon alias ok\n");
    CHECK(same(c, 2 * PG, 3), "moved region contents");
    printf("moved ok\n");
    CHECK(same(m1, 2 * PG, 4) && same(m2, PG, 4 + PG * 31 % 256), "memfd mapped contents");
    CHECK(same(m2 + PG, PG, 5), "memfd data written with write()");
    m1[PG + 1] = 0xcc;
    CHECK(m2[1] == 0xcc, "memfd mappings not shared");
    unsigned char got[PG];
    CHECK(pread(mfd, got, PG, PG) == PG && got[1] == 0xcc, "memfd descriptor not the mapped object");
    CHECK(lseek(mfd, 0, SEEK_CUR) == 123, "memfd offset %ld", (long)lseek(mfd, 0, SEEK_CUR));
    int seals = fcntl(mfd, F_GET_SEALS);
    CHECK(seals == (F_SEAL_GROW | F_SEAL_SHRINK), "memfd seals %#x", seals);
    struct stat mst;
    CHECK(fstat(mfd, &mst) == 0 && (mst.st_mode & 07777) == 0642, "memfd mode %o",
          (unsigned)(mst.st_mode & 07777));
    CHECK(ftruncate(mfd, 8 * PG) == -1 && errno == EPERM, "memfd grew despite its seal");
    CHECK((fcntl(mfd, F_GETFL) & O_ACCMODE) == O_RDWR && !(fcntl(mfd, F_GETFD) & FD_CLOEXEC),
          "memfd flags");
    CHECK(ro[1] == 0xcc, "read-only memfd mapping not shared");
    CHECK(mprotect(ro, PG, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
          "a mapping of a read-only open became writable");
    printf("memfd ok seals %#x\n", seals);
    CHECK(same(w, PG, 6), "sealed memfd contents");
    seals = fcntl(wfd, F_GET_SEALS);
    CHECK(seals == (F_SEAL_WRITE | F_SEAL_SEAL), "sealed memfd seals %#x", seals);
    CHECK(pwrite(wfd, "x", 1, 0) == -1 && errno == EPERM, "write-sealed memfd took a write");
    CHECK(fcntl(wfd, F_GETFD) & FD_CLOEXEC, "sealed memfd lost close-on-exec");
    printf("sealed memfd ok seals %#x\n", seals);
    CHECK(same(k, 2 * PG, 7), "closed memfd contents");
    printf("closed memfd ok\n");
    CHECK(pread(ufd, got, PG, 5 * PG) == 100 && same(got, 100, 8), "unmapped memfd contents");
    CHECK(!ran_before || runs(efd), "memfd script runs no more (execveat)");
    CHECK(fcntl(lfd, F_ADD_SEALS, F_SEAL_GROW) == 0 && fcntl(lfd, F_GET_SEALS) == F_SEAL_GROW,
          "memfd cannot be sealed later: %s", strerror(errno));
    CHECK(lseek(ufd, 0, SEEK_END) == 5 * PG + 100, "unmapped memfd size");
    printf("unmapped memfd ok\n");
    int fl = fcntl(wo, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_WRONLY && (fl & O_APPEND), "write-only memfd flags %#x", fl);
    snprintf(xpath, sizeof xpath, "/proc/self/fd/%d", wo);
    int rdo = open(xpath, O_RDONLY);
    char xb[16] = {0};
    CHECK(rdo >= 0 && read(rdo, xb, 16) == 8 && memcmp(xb, "appended", 8) == 0,
          "write-only memfd contents");
    if (rdo >= 0) close(rdo);
    printf("write-only memfd ok\n");
    CHECK(same(t, 100, 10) && lseek(tfd, 0, SEEK_END) == 100, "short memfd contents or size");
    printf("short memfd ok\n");
    CHECK(same(s, 2 * PG, 9), "unlinked /dev/shm contents");
    CHECK(deleted_line(s), "unlinked /dev/shm mapping not shown deleted");
    printf("unlinked shm ok\n");
    if (bad) return 1;
    printf("shared ok\n");
    return 0;
}
