/* Pipes a forked child holds alone come back as in a process of its own:
 * the child makes two pipes of 1 MiB capacity (one with 64 KiB queued),
 * and a pipe whose write end has two descriptions (the pipe's own, made
 * non-blocking, with a dup of it, and one opened again through
 * /proc/self/fd, blocking). It prints "waiting", sleeps 2 s (the test
 * checkpoints the tree and kills it), then prints the capacities, each
 * descriptor's O_NONBLOCK and the bytes it reads back. The parent waits
 * for it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int nonblock(int fd) { return !!(fcntl(fd, F_GETFL) & O_NONBLOCK); }

static int child(void) {
    int p[2][2];
    for (int i = 0; i < 2; i++) {
        if (pipe2(p[i], O_NONBLOCK) || fcntl(p[i][1], F_SETPIPE_SZ, 1 << 20) < 0) return 2;
    }
    char b[4096];
    memset(b, 7, sizeof b);
    for (int i = 0; i < 16; i++)
        if (write(p[0][1], b, sizeof b) != sizeof b) return 3;
    int a[2];
    if (pipe(a)) return 4;
    int d = dup(a[1]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", a[1]);
    int r = open(path, O_WRONLY);
    if (d < 0 || r < 0 || fcntl(a[1], F_SETFL, O_NONBLOCK)) return 5;
    printf("waiting\n");
    fflush(stdout);
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts)) {
    }
    printf("capacities %d %d\n", fcntl(p[0][1], F_GETPIPE_SZ), fcntl(p[1][1], F_GETPIPE_SZ));
    printf("nonblock: pipe %d dup %d reopened %d\n", nonblock(a[1]), nonblock(d), nonblock(r));
    long got = 0;
    ssize_t n;
    while ((n = read(p[0][0], b, sizeof b)) > 0) got += n;
    printf("read back %ld\n", got);
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t c = fork();
    if (c == 0) return child();
    int st = 0;
    waitpid(c, &st, 0);
    printf("child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    return 0;
}
