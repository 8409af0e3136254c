/* The process attributes of a tree's members: the parent is a child
 * subreaper, its forked child has a parent-death signal (SIGUSR1). Each
 * round the parent asks the child (over a pipe) for its parent-death
 * signal and prints it with its own subreaper status; at the end the
 * child prints nothing and the parent waits for it. Deterministic output:
 * a restarted tree must print exactly what an uninterrupted run prints.
 *
 * Usage: tree_attrs ROUNDS */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(void) {
    struct timespec ts = {0, 40 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        return 1;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0)
            _exit(3);
        long n;
        while (read(down[0], &n, sizeof n) == sizeof n && n >= 0) {
            int sig = -1;
            prctl(PR_GET_PDEATHSIG, &sig);
            long a = n * 100 + sig;
            if (write(up[1], &a, sizeof a) != sizeof a)
                _exit(4);
        }
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    for (long n = 1; n <= rounds; n++) {
        long a;
        if (write(down[1], &n, sizeof n) != sizeof n || read(up[0], &a, sizeof a) != sizeof a)
            return 2;
        int reaper = -1;
        prctl(PR_GET_CHILD_SUBREAPER, &reaper);
        printf("%ld: child pdeathsig %ld, subreaper %d\n", n, a - n * 100, reaper);
        nap();
    }
    long stop = -1;
    if (write(down[1], &stop, sizeof stop) != sizeof stop)
        return 2;
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        return 4;
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
