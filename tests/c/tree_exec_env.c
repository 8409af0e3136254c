/* Children started with an environment of their own: the parent forks
 * three children that run this program again as "child N" — one through
 * execve with an environment built from scratch (no LD_PRELOAD at all),
 * one through execve with LD_PRELOAD pointing at a library that does not
 * exist, one through clearenv() and execvp. Each child prints ticks;
 * the parent prints ticks, then each child's exit status. Under
 * `selfckpt run` all four processes must be members of the tree. */
#define _GNU_SOURCE
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

/* A child's status: 10 + n, plus 50 if its environment is not the one
 * its parent gave it. */
static int child(int n, int ticks) {
    static const char *want[] = {"scratch", "bad-preload", "cleared"};
    for (int i = 0; i < ticks; i++)
        nap(35);
    const char *a = getenv("A");
    return 10 + n + (a && strcmp(a, want[n]) == 0 ? 0 : 50);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 3 && strcmp(argv[1], "child") == 0)
        return child(atoi(argv[2]), atoi(argv[3]));
    int ticks = argc > 1 ? atoi(argv[1]) : 40;
    char t[16];
    snprintf(t, sizeof t, "%d", ticks);
    pid_t kids[3];
    for (int n = 0; n < 3; n++) {
        kids[n] = fork();
        if (kids[n] != 0)
            continue;
        char num[4];
        snprintf(num, sizeof num, "%d", n);
        char *args[] = {argv[0], "child", num, t, NULL};
        if (n == 0) {
            char *env[] = {"A=scratch", NULL};
            execve("/proc/self/exe", args, env);
        } else if (n == 1) {
            char *env[] = {"A=bad-preload", "LD_PRELOAD=/nonexistent/libtaco.so", NULL};
            execve("/proc/self/exe", args, env);
        } else {
            clearenv();
            setenv("A", "cleared", 1);
            execvp(argv[0], args);
        }
        perror("exec");
        _exit(99);
    }
    for (int i = 0; i < ticks; i++) {
        printf("parent tick %d\n", i);
        nap(40);
    }
    for (int n = 0; n < 3; n++) {
        int status = 0;
        if (waitpid(kids[n], &status, 0) != kids[n]) {
            perror("waitpid");
            return 4;
        }
        printf("child %d exited %d\n", n, WEXITSTATUS(status));
    }
    return 0;
}
