/* Two POSIX timers that send the same real-time signal, told apart by
 * their sigev_value (timer_create's usual way, DMTCP's timer1): the
 * handler reads si_value as a pointer to the timer's counter. They fire
 * every millisecond or so, so that a checkpoint's pause always meets an
 * expiry queued while every thread is stopped. Each expiry must come
 * from a timer (si_code SI_TIMER) with one of the two values: anything
 * else is counted as bad. It prints "waiting", runs until both counted
 * their expiries (with overruns) for about 3 s, and prints the verdict:
 * the same lines in an uninterrupted run. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct counter {
    atomic_long expiries;
    timer_t id;
};

static struct counter a, b;
static atomic_int bad;

static void handler(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    struct counter *c = si->si_value.sival_ptr;
    if (si->si_code != SI_TIMER || (c != &a && c != &b)) {
        bad++;
        return;
    }
    int over = timer_getoverrun(c->id);
    c->expiries += 1 + (over > 0 ? over : 0);
}

static int start(struct counter *c, long period_ns) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_ptr = c;
    if (timer_create(CLOCK_MONOTONIC, &sev, &c->id) != 0)
        return -1;
    struct itimerspec its = {{0, period_ns}, {0, period_ns}};
    return timer_settime(c->id, 0, &its, NULL);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) != 0)
        return 2;
    if (start(&a, 1000000) != 0 || start(&b, 1300000) != 0)
        return 3;
    printf("waiting\n");
    const long want_a = 3000, want_b = 3000000 / 1300;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(10000); /* cut short by the timers: only a pace */
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((a.expiries < want_a || b.expiries < want_b) && now.tv_sec - t0.tv_sec < 20);
    printf("timer a %s, timer b %s, bad expiries %d\n", a.expiries >= want_a ? "done" : "short",
           b.expiries >= want_b ? "done" : "short", (int)bad);
    return 0;
}
