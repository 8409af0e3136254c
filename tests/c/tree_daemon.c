/* A double-forked daemon: the program forks a child that starts a new
 * session and forks the daemon, then exits at once (the program reaps
 * it). The daemon, reparented away from the program, counts in steps and
 * writes its count to a pipe the program reads at the end; the program
 * prints its own ticks, the child's status and what the daemon sent. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv) {
    int ticks = argc > 1 ? atoi(argv[1]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p) != 0)
        return 3;
    pid_t child = fork();
    if (child == 0) {
        setsid();
        if (fork() == 0) {
            close(p[0]);
            long sum = 0;
            for (int i = 0; i < ticks; i++) {
                sum += i * i;
                nap(30);
            }
            dprintf(p[1], "daemon sum %ld sid-leader %d\n", sum, getsid(0) == getpid());
            _exit(0);
        }
        _exit(5);
    }
    close(p[1]);
    int status = 0;
    waitpid(child, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    for (int i = 0; i < ticks; i++) {
        printf("tick %d\n", i);
        nap(40);
    }
    char buf[128];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("%s", buf);
    return 0;
}
