/* A launcher: the program starts a worker and returns at once, as a job
 * script, a daemonizer or `pg_ctl` does. The worker forks a helper; the
 * two pass a counter back and forth over a socketpair the launcher made,
 * the worker printing each step; at the end the worker reaps the helper
 * and prints its status. The program's process is gone long before its
 * tree's work is done. With "exec" after the count, the worker first
 * executes the program again (as "worker"), as a job launcher does: it
 * joins the tree only once its parent is long gone. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int full_read(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    const char *mode = argc > 2 ? argv[2] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 3;
    if (strcmp(mode, "worker") != 0) {
        printf("launching\n");
        pid_t worker = fork();
        if (worker < 0)
            return 4;
        if (worker > 0)
            return 0; /* the launcher's job is done */
        if (strcmp(mode, "exec") == 0) {
            usleep(100000); /* the launcher is gone when the worker starts */
            execl("/proc/self/exe", argv[0], argv[1], "worker", (char *)NULL);
            _exit(9);
        }
    }
    pid_t helper = fork();
    if (helper < 0)
        _exit(4);
    if (helper == 0) {
        close(sv[0]);
        long v;
        while (full_read(sv[1], &v, sizeof v) == 0) {
            v = v * 3 + 1;
            if (write(sv[1], &v, sizeof v) != sizeof v)
                _exit(6);
        }
        _exit(7);
    }
    close(sv[1]);
    long v = 1;
    for (int i = 0; i < steps; i++) {
        if (write(sv[0], &v, sizeof v) != sizeof v || full_read(sv[0], &v, sizeof v) != 0) {
            printf("lost the helper at step %d\n", i);
            _exit(8);
        }
        v %= 1000003;
        printf("step %d value %ld\n", i, v);
        nap(30);
    }
    close(sv[0]);
    int st = 0;
    waitpid(helper, &st, 0);
    printf("end: helper exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
