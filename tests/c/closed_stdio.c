/* A program that closed its stdin (as daemons do) and writes its lines
 * through stdout: before printing "waiting" it closes fd 0; after the
 * wait (the checkpoint comes then) it prints whether fd 0 is still
 * closed and which number its next open takes. The same lines in an
 * uninterrupted run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    close(0);
    printf("waiting\n");
    fflush(stdout);
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    printf("fd 0 %s\n", fcntl(0, F_GETFD) == -1 && errno == EBADF ? "closed" : "open");
    int fd = open("/dev/null", O_RDONLY);
    printf("next open takes fd %d\n", fd);
    printf("closed_stdio ok\n");
    return 0;
}
