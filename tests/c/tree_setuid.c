/* A program whose forked child gives up root for another user (as a
 * server's workers do, as CRIU's pid00 does): the child counts in steps,
 * the parent waits for it and prints its status. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child < 0)
        return 3;
    if (child == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
            printf("cannot become nobody\n");
            _exit(4);
        }
        for (int i = 0; i < steps; i++) {
            printf("step %d as uid %d\n", i, (int)geteuid());
            struct timespec ts = {0, 30 * 1000000L};
            while (nanosleep(&ts, &ts) != 0) {
            }
        }
        _exit(0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
