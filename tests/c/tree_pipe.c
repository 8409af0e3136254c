/* A parent and its forked child (fork without exec) exchanging counters:
 * the parent writes n down one pipe, the child answers n*n + its own
 * counter up another (or over a socketpair with "socketpair"). The parent
 * prints each exchange; at the end it waits for the child and prints its
 * exit status. Deterministic output: a restarted tree must print exactly
 * what an uninterrupted run prints.
 *
 * Each process closes the ends it does not use; with "socketpair-open"
 * both keep both ends of the socketpair.
 *
 * Usage: tree_pipe ROUNDS [pipe|high|socketpair|socketpair-open [MIB]]: with MIB, the child
 * holds that many MiB of incompressible data from round 20 on (a slow
 * dump). "high": pipes at numbers 2000 and up, past the usual limit of
 * 1024 (the program raises its soft limit first). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(void) {
    struct timespec ts = {0, 40 * 1000 * 1000};
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
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    int sp = argc > 2 && strncmp(argv[2], "socketpair", 10) == 0;
    int keep_all = argc > 2 && strcmp(argv[2], "socketpair-open") == 0;
    int down[2], up[2];
    if (sp) {
        int s[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0)
            return 1;
        down[0] = s[1]; down[1] = s[0];
        up[0] = s[0]; up[1] = s[1];
    } else if (pipe(down) != 0 || pipe(up) != 0) {
        return 1;
    }
    if (argc > 2 && strcmp(argv[2], "high") == 0) {
        struct rlimit l;
        if (getrlimit(RLIMIT_NOFILE, &l) != 0 || l.rlim_max < 2100)
            return 6;
        l.rlim_cur = l.rlim_max < 4096 ? l.rlim_max : 4096;
        if (setrlimit(RLIMIT_NOFILE, &l) != 0)
            return 6;
        int *ends[4] = {&down[0], &down[1], &up[0], &up[1]};
        for (int i = 0; i < 4; i++) {
            if (dup2(*ends[i], 2000 + i) != 2000 + i)
                return 6;
            close(*ends[i]);
            *ends[i] = 2000 + i;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        long mine = 0;
        if (!keep_all)
            close(down[1]);
        if (!sp)
            close(up[0]);
        size_t big = argc > 3 ? (size_t)atol(argv[3]) << 20 : 0;
        for (;;) {
            long n;
            if (full_read(down[0], &n, sizeof n) != 0)
                break;
            if (n == 20 && big) {
                unsigned long long x = 88172645463325252ULL, *p = malloc(big);
                if (!p)
                    _exit(5);
                for (size_t i = 0; i < big / 8; i++) {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    p[i] = x;
                }
            }
            if (n < 0)
                break;
            mine += 1;
            long a = n * n + mine;
            if (write(up[1], &a, sizeof a) != sizeof a)
                _exit(3);
        }
        _exit((int)(mine % 200));
    }
    if (!keep_all)
        close(up[1]);
    if (!sp)
        close(down[0]);
    for (long n = 1; n <= rounds; n++) {
        /* Two numbers in flight: one answer is always queued in the pipe. */
        if (write(down[1], &n, sizeof n) != sizeof n)
            return 2;
        long a;
        if (full_read(up[0], &a, sizeof a) != 0)
            return 2;
        printf("%ld -> %ld\n", n, a);
        nap();
    }
    long stop = -1;
    if (write(down[1], &stop, sizeof stop) != sizeof stop)
        return 2;
    int status = 0;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 4;
    }
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
