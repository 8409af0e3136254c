/* Holds a pidfd of itself (a descriptor kind selfckpt cannot bring back)
 * across a checkpoint: prints "waiting", waits 2 s, then prints what fd 3
 * is (after a restart with --unrestorable=other: /dev/null, as asked).
 * usage: pidfd */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd < 0) {
        printf("no pidfd\n");
        return 0;
    }
    printf("pidfd at %d\nwaiting\n", fd);
    fflush(stdout);
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0) {
    }
    printf("done\n");
    return 0;
}
