/* pidfds across a checkpoint of a process tree: one of the process
 * itself (non-blocking), one of a child that ended and was reaped before
 * the checkpoint, one of a forked child that runs (a member of the tree).
 * Each round prints what each pidfd says (poll, a signal 0 through
 * pidfd_send_signal); after the rounds the running child is killed
 * through its pidfd and reaped through it (waitid P_PIDFD). Deterministic:
 * a restarted tree prints exactly what an uninterrupted run prints.
 *
 * usage: pidfd ROUNDS [outside]
 *   outside: also holds a pidfd of its parent (not checkpointed with it:
 *   named at checkpoint, the restart refuses). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }
static int send0(int fd, int sig) { return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

static int ended(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void nap(long ms) {
    struct timespec ts = {0, ms * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int own = pidfd_open(getpid(), O_NONBLOCK);
    if (own < 0) {
        printf("no pidfd\n");
        return 0;
    }
    pid_t gone = fork();
    if (gone == 0) _exit(7);
    int reaped = pidfd_open(gone, 0);
    waitpid(gone, NULL, 0);
    pid_t live = fork();
    if (live == 0) {
        for (;;) pause();
    }
    int running = pidfd_open(live, 0);
    int parent = argc > 2 && strcmp(argv[2], "outside") == 0 ? pidfd_open(getppid(), 0) : -1;
    if (reaped < 0 || running < 0) {
        perror("pidfd_open");
        return 1;
    }
    for (int i = 0; i < rounds; i++) {
        printf("round %d: own %s%s, reaped %s, child %s%s\n", i,
               ended(own) ? "ended" : "alive", (fcntl(own, F_GETFL) & O_NONBLOCK) ? " nonblock" : "",
               ended(reaped) ? "ended" : "alive", ended(running) ? "ended" : "running",
               send0(running, 0) == 0 ? " signalable" : "");
        nap(40);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int w = waitid(P_PIDFD, reaped, &si, WEXITED | WNOHANG);
    printf("reaped: waitid %d %s\n", w, w < 0 ? strerror(errno) : "");
    if (send0(running, SIGTERM) != 0) perror("pidfd_send_signal");
    memset(&si, 0, sizeof si);
    w = waitid(P_PIDFD, running, &si, WEXITED);
    printf("child: waitid %d, %s %d\n", w, si.si_code == CLD_KILLED ? "killed by" : "other",
           si.si_status);
    if (parent >= 0) printf("parent pidfd at %d\n", parent);
    printf("pidfd ok\n");
    return 0;
}
