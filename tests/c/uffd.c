/* Holds a userfaultfd (a descriptor kind selfckpt cannot bring back)
 * across a checkpoint: prints "waiting", waits 2 s, then prints what fd 3
 * is (after a restart with --unrestorable=other: /dev/null, as asked).
 * usage: uffd */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    /* UFFD_USER_MODE_ONLY (1): allowed without privilege. */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1);
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0) {
        printf("no userfaultfd\n");
        return 0;
    }
    printf("userfaultfd at %d\nwaiting\n", fd);
    fflush(stdout);
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0) {
    }
    printf("done\n");
    return 0;
}
