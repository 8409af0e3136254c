/* A zombie at checkpoint time, and a child still running: the parent
 * forks one child that exits with status 7 at once (and is not waited
 * for), and one that prints ticks and exits with 9 later. The parent
 * prints ticks, then waits for each child by pid and prints how each
 * ended. A restarted tree must give the parent the same statuses. */
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

static void report(const char *who, pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        exit(4);
    }
    if (WIFEXITED(status))
        printf("%s exited %d\n", who, WEXITSTATUS(status));
    else
        printf("%s killed by %d\n", who, WTERMSIG(status));
}

int main(int argc, char **argv) {
    int ticks = argc > 1 ? atoi(argv[1]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t early = fork();
    if (early == 0)
        _exit(7);
    pid_t late = fork();
    if (late == 0) {
        for (int i = 0; i < ticks; i++)
            nap(30);
        _exit(9);
    }
    for (int i = 0; i < ticks; i++) {
        printf("tick %d\n", i);
        nap(40);
    }
    report("early", early);
    report("late", late);
    return 0;
}
