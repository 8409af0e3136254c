/* A program that owns SIGUSR1 and SIGUSR2: its handlers count them, and it
 * signals itself every few milliseconds. With selfckpt the counts must be
 * exactly those of a run without it, through checkpoints and restarts
 * (selfckpt gives the signals up to the program and takes requests through
 * its own channel), and the program reads back its own handlers and mask.
 * It also sets a handler for signal 64, the kernel's highest, by number
 * (as the Go runtime does for every signal; selfckpt parks threads with
 * it): that succeeds, reads back, and runs for the signals it raises.
 *
 * usage: own_signals STEPS
 * prints "ready", then at the end "usr1 N usr2 M" and "own_signals ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2, rt64;

static void on_usr1(int s) { (void)s; usr1++; }
static void on_rt64(int s) { (void)s; rt64++; }
static void on_usr2(int s, siginfo_t *i, void *u) { (void)s; (void)i; (void)u; usr2++; }

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL %s\n", what);
        fflush(stdout);
        exit(1);
    }
}

static void views(void) {
    struct sigaction old;
    check(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == on_usr1, "SIGUSR1 reads back");
    check(sigaction(SIGUSR2, NULL, &old) == 0 && old.sa_sigaction == on_usr2 &&
              (old.sa_flags & SA_SIGINFO), "SIGUSR2 reads back");
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    check(!sigismember(&m, SIGUSR1) && sigismember(&m, SIGTERM), "mask reads back");
    check(SIGRTMAX >= SIGRTMIN + 8, "SIGRTMAX leaves the program realtime signals");
    check(sigaction(64, NULL, &old) == 0 && old.sa_handler == on_rt64 &&
              (old.sa_flags & SA_ONSTACK), "signal 64 reads back");
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    /* Before the handlers: SIGUSR1's disposition is the default. */
    struct sigaction old;
    check(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == SIG_DFL, "SIGUSR1 starts default");
    check(signal(SIGUSR1, on_usr1) == SIG_DFL, "signal() returns the old default");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    check(sigaction(SIGUSR2, &sa, NULL) == 0, "install SIGUSR2");
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_rt64;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    check(sigaction(64, &sa, NULL) == 0, "install signal 64");
    views();
    printf("ready\n");
    fflush(stdout);
    int sent1 = 0, sent2 = 0, sent64 = 0;
    for (int i = 0; i < steps; i++) {
        if (i % 5 == 4) {
            raise(64);
            sent64++;
        } else if (i % 3 == 0) {
            kill(getpid(), SIGUSR2);
            sent2++;
        } else {
            raise(SIGUSR1);
            sent1++;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        check(usr1 == sent1 && usr2 == sent2 && rt64 == sent64, "every signal reached its handler");
    }
    views();
    printf("usr1 %d usr2 %d signal64 %d\n", (int)usr1, (int)usr2, (int)rt64);
    printf("own_signals ok\n");
    return 0;
}
