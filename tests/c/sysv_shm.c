/* System V shared memory across a checkpoint (issue 14, Memory): a
 * segment with a key attached twice (a page written through the second
 * attachment only) and once more read-only (SHM_RDONLY), and a private segment marked for removal while
 * attached. The ids the program got from shmget must still name its
 * segments after a restart.
 *
 * usage: sysv_shm KEY
 *   sets up, prints "waiting", sleeps 2 s (the test checkpoints it
 *   meanwhile and kills it), then checks contents and sharing ("sysv
 *   contents ok"), the keyed segment's size, mode and attachments ("sysv
 *   key ok ..."), removes the keyed segment and prints "sysv ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <time.h>

#define PG 4096
static int bad;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL " __VA_ARGS__); printf("\n"); bad = 1; } } while (0)

static void fill(unsigned char *p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 13 + seed);
}
static int same(const unsigned char *p, size_t n, int seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 13 + seed)) return 0;
    return 1;
}

int main(int argc, char **argv) {
    key_t key = argc > 1 ? (key_t)strtol(argv[1], NULL, 0) : 0x5eed;
    int id = shmget(key, 3 * PG, IPC_CREAT | IPC_EXCL | 0640);
    if (id < 0) { perror("shmget"); return 2; }
    unsigned char *a = shmat(id, NULL, 0);
    unsigned char *b = shmat(id, NULL, 0);
    unsigned char *r = shmat(id, NULL, SHM_RDONLY);
    int pid = shmget(IPC_PRIVATE, 2 * PG, IPC_CREAT | 0600);
    unsigned char *p = shmat(pid, NULL, 0);
    if (a == (void *)-1 || b == (void *)-1 || r == (void *)-1 || p == (void *)-1) { perror("shmat"); return 2; }
    shmctl(pid, IPC_RMID, NULL);
    fill(a, 2 * PG, 1);
    fill(b + 2 * PG, PG, 2);
    fill(p, 2 * PG, 3);

    printf("waiting\n");
    fflush(stdout);
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}

    CHECK(same(a, 2 * PG, 1) && same(b, 2 * PG, 1), "keyed segment contents");
    CHECK(same(a + 2 * PG, PG, 2), "page written through the second attachment only");
    a[3] = 0xab;
    CHECK(b[3] == 0xab, "the attachments are not shared");
    CHECK(same(p, 2 * PG, 3), "removed private segment contents");
    CHECK(r[3] == 0xab, "the read-only attachment is not shared");
    CHECK(mprotect(r, PG, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
          "the SHM_RDONLY attachment became writable");
    printf("sysv contents ok\n");
    struct shmid_ds ds;
    /* The ids the program kept still name its segments. */
    CHECK(shmctl(pid, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == IPC_PRIVATE &&
              ds.shm_segsz == 2 * PG && (ds.shm_perm.mode & SHM_DEST),
          "the private segment's id no longer names it");
    int now = shmget(key, 0, 0);
    CHECK(now == id, "the keyed segment's id changed (%d, was %d)", now, id);
    CHECK(now >= 0 && shmctl(now, IPC_STAT, &ds) == 0, "no segment with the key");
    if (now >= 0) {
        CHECK(ds.shm_segsz == 3 * PG, "size %zu", (size_t)ds.shm_segsz);
        CHECK((ds.shm_perm.mode & 0777) == 0640, "mode %o", ds.shm_perm.mode & 0777);
        printf("sysv key ok nattch %lu\n", (unsigned long)ds.shm_nattch);
        shmctl(now, IPC_RMID, NULL);
    }
    if (bad) return 1;
    printf("sysv ok\n");
    return 0;
}
