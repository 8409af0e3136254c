/* A parent and its forked child taking turns on counters in System V
 * shared memory: segment A has a key (the turn and both counters), B is
 * private (IPC_PRIVATE: a running sum the child adds to). Both are made
 * and attached by the parent before the fork (the child inherits A's
 * attachment); the child attaches B itself, by the id it inherited. Each
 * side checks on every turn that the ids it holds still name its
 * segments (shmctl IPC_STAT: key, size). Deterministic output, except
 * the "ids:" lines (the segments' ids, printed at the start and the end:
 * a restarted tree must print the same ids on both).
 *
 * Usage: tree_sysv ROUNDS KEY. Removes both segments at the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct page {
    volatile long turn; /* 0: parent's, 1: child's, 2: stop */
    volatile long parent;
    volatile long child;
    volatile long bad; /* set by the child when its ids went wrong */
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

/* Whether `id` still names a segment of `size` bytes with `key`. */
static int names(int id, key_t key, size_t size) {
    struct shmid_ds ds;
    return shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == key && ds.shm_segsz == size;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    key_t key = argc > 2 ? (key_t)strtol(argv[2], NULL, 0) : 0x5eed0001;
    size_t asz = 2 * 4096, bsz = 3 * 4096;
    int a = shmget(key, asz, IPC_CREAT | IPC_EXCL | 0600);
    int b = shmget(IPC_PRIVATE, bsz, IPC_CREAT | 0600);
    if (a < 0 || b < 0) {
        perror("shmget");
        return 2;
    }
    struct page *p = shmat(a, NULL, 0);
    long *sum = shmat(b, NULL, 0);
    if (p == (void *)-1 || sum == (void *)-1) {
        perror("shmat");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ids: %d %d\n", a, b);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        shmdt(sum);
        long *mine = shmat(b, NULL, 0);
        if (mine == (void *)-1)
            _exit(3);
        for (;;) {
            wait_turn(p, 1);
            if (p->turn == 2)
                break;
            if (!names(a, key, asz) || !names(b, IPC_PRIVATE, bsz))
                p->bad = 1;
            p->child += p->parent * 3 + 1;
            mine[1000] += p->child; /* the second page of B */
            p->turn = 0;
        }
        _exit((int)(p->child % 200));
    }
    for (long n = 1; n <= rounds; n++) {
        wait_turn(p, 0);
        p->parent += n;
        int held = names(a, key, asz) && names(b, IPC_PRIVATE, bsz) && shmget(key, 0, 0) == a;
        printf("%ld: parent %ld child %ld sum %ld ids %s\n", n, p->parent, p->child, sum[1000],
               held && !p->bad ? "held" : "LOST");
        p->turn = 1;
        nap(30);
    }
    wait_turn(p, 0);
    p->turn = 2;
    int st = 0;
    waitpid(child, &st, 0);
    printf("child exited %d; sum %ld\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, sum[1000]);
    printf("ids: %d %d\n", shmget(key, 0, 0), names(b, IPC_PRIVATE, bsz) ? b : -1);
    shmctl(a, IPC_RMID, NULL);
    shmctl(b, IPC_RMID, NULL);
    return 0;
}
