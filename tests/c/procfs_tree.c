/* /proc files of other processes of the tree: the parent opens
 * /proc/self/status (its own: /proc/<parent>/status) before it forks; the
 * forked child inherits that descriptor and opens
 * /proc/<parent>/cmdline and /proc/self/task/<its pid>/comm itself. Each
 * round the child reads all three from the start and prints whether the
 * status is its parent's (its Pid line is getppid()), the parent's
 * command line and its own name. With "outside" the program instead
 * opens its parent's (selfckpt run's) /proc/<ppid>/status: a process
 * outside the tree, which a checkpoint must name.
 *
 * Usage: procfs_tree ROUNDS [tree|outside]. After 5 rounds the child
 * prints "waiting" and sleeps 1.5 s. Deterministic output. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int slurp(int fd, char *buf, int n) {
    ssize_t r = pread(fd, buf, n - 1, 0);
    if (r < 0)
        return -1;
    buf[r] = 0;
    for (ssize_t i = 0; i < r; i++)
        if (buf[i] == 0)
            buf[i] = ' ';
    return (int)r;
}

static int pid_line(const char *status) {
    const char *p = strstr(status, "\nPid:");
    return p ? atoi(p + 5) : -1;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    int outside = argc > 2 && strcmp(argv[2], "outside") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char path[64], buf[4096];
    if (outside) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)getppid());
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            return 1;
        for (int i = 1; i <= rounds; i++) {
            printf("round %d\n", i);
            if (i == 5) {
                printf("waiting\n");
                nap(1500);
            }
        }
        return 0;
    }
    int status = open("/proc/self/status", O_RDONLY);
    if (status < 0)
        return 1;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)getppid());
        int cmdline = open(path, O_RDONLY);
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)getpid());
        int comm = open(path, O_RDONLY);
        if (cmdline < 0 || comm < 0)
            return 2;
        for (int i = 1; i <= rounds; i++) {
            if (slurp(status, buf, sizeof buf) < 0)
                return 3;
            int parents = pid_line(buf) == getppid();
            printf("round %d: parent's status %s", i, parents ? "yes" : "NO");
            if (slurp(cmdline, buf, sizeof buf) < 0)
                return 4;
            const char *base = strrchr(buf, '/');
            printf("; parent runs %s", base ? base + 1 : buf);
            if (slurp(comm, buf, sizeof buf) < 0)
                return 5;
            printf("; I am %s", buf);
            if (i == 5) {
                printf("waiting\n");
                nap(1500);
            } else {
                nap(20);
            }
        }
        return 0;
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child ended with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
