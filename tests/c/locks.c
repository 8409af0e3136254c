/* File locks across a checkpoint (issue 14).
 *
 * usage: locks DIR
 *   Takes an exclusive flock on DIR/a, POSIX record locks on DIR/b (write
 *   on bytes 10-19, read from byte 100 to the end), an OFD write lock on
 *   all of DIR/c and a shared flock on DIR/d (through a dup). Waits 2 s
 *   (the checkpoint comes then), then a child process looks at each file
 *   from a description of its own (flock LOCK_NB, F_GETLK, F_OFD_GETLK) and
 *   prints what it sees held, and by whom.
 *
 * Prints the same in an uninterrupted run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static int open_in(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDWR | O_CREAT, 0600);
    if (fd < 0) fail(name);
    return fd;
}

static void range(int fd, int cmd, short type, off_t start, off_t len) {
    if (fcntl(fd, cmd, &(struct flock){.l_type = type, .l_whence = SEEK_SET,
                                        .l_start = start, .l_len = len}) != 0)
        fail("lock");
}

static const char *seen(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &l) != 0) fail("getlk");
    static char out[128];
    if (l.l_type == F_UNLCK) return "free";
    snprintf(out, sizeof out, "%s lock %ld-%ld by %s", l.l_type == F_WRLCK ? "write" : "read",
             (long)l.l_start, l.l_len ? (long)(l.l_start + l.l_len - 1) : -1L,
             l.l_pid == getppid() ? "the parent" : l.l_pid == -1 ? "a description" : "another");
    return out;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: locks DIR\n");
        return 2;
    }
    int a = open_in(argv[1], "a"), b = open_in(argv[1], "b");
    int c = open_in(argv[1], "c"), d = open_in(argv[1], "d");
    if (flock(a, LOCK_EX | LOCK_NB) != 0) fail("flock a");
    range(b, F_SETLK, F_WRLCK, 10, 10);
    range(b, F_SETLK, F_RDLCK, 100, 0);
    range(c, F_OFD_SETLK, F_WRLCK, 0, 0);
    int d2 = dup(d);
    if (flock(d2, LOCK_SH | LOCK_NB) != 0) fail("flock d");

    printf("waiting\n");
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }

    pid_t kid = fork();
    if (kid < 0) fail("fork");
    if (kid == 0) {
        int a1 = open_in(argv[1], "a"), b1 = open_in(argv[1], "b");
        int c1 = open_in(argv[1], "c"), d1 = open_in(argv[1], "d");
        printf("a: exclusive flock %s\n",
               flock(a1, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK ? "held" : "free");
        printf("b 10-19: %s\n", seen(b1, F_GETLK, F_WRLCK, 10, 10));
        printf("b 50: %s\n", seen(b1, F_GETLK, F_WRLCK, 50, 1));
        printf("b 100-: %s\n", seen(b1, F_GETLK, F_WRLCK, 100, 0));
        printf("b 100- for reading: %s\n", seen(b1, F_GETLK, F_RDLCK, 100, 0));
        printf("c: %s\n", seen(c1, F_OFD_GETLK, F_RDLCK, 0, 0));
        int sh = flock(d1, LOCK_SH | LOCK_NB) == 0;
        flock(d1, LOCK_UN);
        int ex = flock(d1, LOCK_EX | LOCK_NB) == 0;
        printf("d: shared flock %s\n", sh && !ex ? "held" : "not as it was");
        fflush(stdout);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    printf("locks ok\n");
    return 0;
}
