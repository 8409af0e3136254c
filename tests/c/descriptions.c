/* Descriptors sharing one open file description, and status open(2)
 * cannot set, across a checkpoint (issue 14).
 *
 * usage: descriptions FILE
 *   Opens FILE read-write, dup's it (one offset for both) and opens it a
 *   second time (an offset of its own); writes "abc" through the first,
 *   sets O_ASYNC, the process as F_SETOWN owner and a F_SETSIG signal on
 *   it. Waits 2 s (the checkpoint comes then), then writes through the
 *   dup and prints each descriptor's offset, and the first's flags, owner
 *   and signal.
 *
 * Prints the same in an uninterrupted run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) return 2;
    int a = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    int b = dup(a);
    int c = open(argv[1], O_RDONLY);
    if (a < 0 || b < 0 || c < 0) fail("open");
    if (write(a, "abc", 3) != 3) fail("write");
    signal(SIGRTMIN + 5, SIG_IGN);
    if (fcntl(a, F_SETOWN, getpid()) != 0 || fcntl(a, F_SETSIG, SIGRTMIN + 5) != 0 ||
        fcntl(a, F_SETFL, O_ASYNC | O_APPEND) != 0)
        fail("fcntl");

    printf("waiting\n");
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }

    if (write(b, "defg", 4) != 4) fail("write dup");
    printf("offsets: first %ld dup %ld other %ld\n", (long)lseek(a, 0, SEEK_CUR),
           (long)lseek(b, 0, SEEK_CUR), (long)lseek(c, 0, SEEK_CUR));
    printf("first: flags %o owner %s sig %d\n",
           fcntl(a, F_GETFL) & (O_ACCMODE | O_ASYNC | O_APPEND | O_NONBLOCK),
           fcntl(a, F_GETOWN) == getpid() ? "self" : "other", fcntl(a, F_GETSIG));
    printf("dup: flags %o\n", fcntl(b, F_GETFL) & (O_ACCMODE | O_ASYNC | O_APPEND));
    printf("descriptions ok\n");
    return 0;
}
