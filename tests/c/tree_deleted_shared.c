/* A parent and its forked child share one open description of a file the
 * parent then deletes. It prints "waiting", both sleep (the checkpoint of
 * the tree comes then), then the parent writes "x" at offset 0 and the
 * child, told through a pipe, reads offset 0: "x" when the description is
 * still one file for both.
 *
 * usage: tree_deleted_shared DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || chdir(argv[1]) != 0)
        return 2;
    int fd = open("shared", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "abc", 3) != 3 || unlink("shared") != 0)
        return 1;
    int go[2];
    if (pipe(go) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        char b;
        if (read(go[0], &b, 1) != 1)
            _exit(1);
        char c = '?';
        ssize_t n = pread(fd, &c, 1, 0);
        printf("child read %zd '%c'\n", n, c);
        _exit(0);
    }
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    if (pwrite(fd, "x", 1, 0) != 1)
        return 1;
    if (write(go[1], "g", 1) != 1)
        return 1;
    int st;
    waitpid(child, &st, 0);
    printf("done\n");
    return 0;
}
