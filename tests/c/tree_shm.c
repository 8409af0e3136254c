/* A parent and its forked child taking turns on counters in one shared
 * page (MAP_SHARED memory made before the fork): the parent counts up on
 * its turn and prints, the child adds the parent's value into its own
 * counter on its turn. Each waits for its turn by polling (with naps).
 * Deterministic output: a restarted tree must print exactly what an
 * uninterrupted run prints, which it does only if both still share the
 * page (else each waits forever for a turn the other never gives).
 *
 * Usage: tree_shm ROUNDS [anon|devshm|memfd]: shared anonymous memory, a
 * file in /dev/shm mapped shared and unlinked at once, or a memfd made
 * without MFD_ALLOW_SEALING (sealed F_SEAL_SEAL), which both also read
 * through its descriptor (the child exits 201 where it does not). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct page {
    volatile long turn; /* 0: parent's, 1: child's, 2: stop */
    volatile long round;
    volatile long parent;
    volatile long child;
};

static void nap(long ms) {
    struct timespec ts = {0, ms * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void wait_turn(struct page *p, long want) {
    while (p->turn != want && p->turn != 2)
        nap(1);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    int devshm = argc > 2 && strcmp(argv[2], "devshm") == 0;
    int memfd = argc > 2 && strcmp(argv[2], "memfd") == 0;
    size_t len = 2 * 4096;
    void *m;
    int mfd = -1;
    if (memfd) {
        mfd = memfd_create("tree_shm", 0);
        if (mfd < 0 || ftruncate(mfd, (off_t)len) != 0)
            return 1;
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    } else if (devshm) {
        char name[64];
        snprintf(name, sizeof name, "/dev/shm/tree_shm.%d", (int)getpid());
        int fd = open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
            return 1;
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        unlink(name);
        close(fd);
    } else {
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    }
    if (m == MAP_FAILED)
        return 1;
    struct page *p = m;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        for (;;) {
            wait_turn(p, 1);
            if (p->turn == 2)
                break;
            p->child += p->parent * 3 + 1;
            p->turn = 0;
        }
        if (mfd >= 0) {
            /* The descriptor reads what the mapping holds. */
            long seen = -1;
            if (pread(mfd, &seen, sizeof seen, offsetof(struct page, child)) != sizeof seen ||
                seen != p->child)
                _exit(201);
        }
        _exit((int)(p->child % 200));
    }
    for (long n = 1; n <= rounds; n++) {
        wait_turn(p, 0);
        p->round = n;
        p->parent += n;
        printf("%ld: parent %ld child %ld\n", n, p->parent, p->child);
        p->turn = 1;
        nap(30);
    }
    wait_turn(p, 0);
    p->turn = 2;
    int status = 0;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 4;
    }
    printf("child %ld exited %d\n", p->child, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
