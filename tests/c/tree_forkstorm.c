/* Children that fork at once: each of N children forks a grandchild the
 * moment it is born, while its checkpointer thread is still joining the
 * tree (connecting to the root). A fork at that moment must not hand the
 * grandchild the child's half-made connection. Every process then sleeps
 * STEPS x 50 ms; the program prints "ready", then one line per child it
 * reaps (in order), then "done".
 *
 * usage: tree_forkstorm N STEPS */
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
    int n = argc > 1 ? atoi(argv[1]) : 20;
    int steps = argc > 2 ? atoi(argv[2]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t kids[256];
    if (n > 256) n = 256;
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c < 0) return 2;
        if (c == 0) {
            pid_t g = fork();
            if (g < 0) _exit(3);
            for (int s = 0; s < steps; s++) nap(50);
            if (g > 0) {
                int st = 0;
                waitpid(g, &st, 0);
                _exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 4);
            }
            _exit(0);
        }
        kids[i] = c;
    }
    printf("ready\n");
    for (int i = 0; i < n; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        printf("child %d: %d\n", i, WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    }
    printf("done\n");
    return 0;
}
