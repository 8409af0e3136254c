/* A program that keeps SIGUSR2 blocked in every thread and reads it from a
 * signalfd: with or without selfckpt, a SIGUSR2 sent to the process must
 * stay pending for the signalfd, never be delivered (default action: death)
 * to some thread that does not block it.
 *
 * usage: blocked_signals SECONDS
 * prints "ready", then "got SIGUSR2 (N)" for each signal read, and exits 0
 * after the second one (or 1 if SECONDS pass without two).
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 10;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return 2;
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) { perror("signalfd"); return 2; }
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, idle, NULL);
    printf("ready\n");
    fflush(stdout);
    int got = 0;
    for (int waited = 0; waited < secs * 10 && got < 2; waited++) {
        struct pollfd p = {sfd, POLLIN, 0};
        int n = poll(&p, 1, 100);
        if (n < 0) continue; /* EINTR: another issue's business */
        if (n == 1) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo == SIGUSR2) {
                got++;
                printf("got SIGUSR2 (%d)\n", got);
                fflush(stdout);
            }
        }
    }
    return got == 2 ? 0 : 1;
}
