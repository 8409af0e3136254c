/* POSIX timers across a checkpoint (issue 14, issue 13 item 2): one of
 * each notification, with a hole in the ids (timer 5 is deleted):
 *   0  SIGEV_SIGNAL    CLOCK_MONOTONIC every 20 ms (value checked, overruns added)
 *   1  SIGEV_NONE      CLOCK_REALTIME  once, in 100 s
 *   2  SIGEV_THREAD_ID CLOCK_BOOTTIME  once, 1.5 s after the start, to a worker thread
 *   3  SIGEV_THREAD    CLOCK_MONOTONIC every 20 ms (glibc would block the checkpoint)
 *   4  SIGEV_SIGNAL    CLOCK_REALTIME  TIMER_ABSTIME, 2.5 s after the start
 *   6  SIGEV_NONE      process CPU clock, once, in 1000 s of CPU time
 * It prints "waiting", lets them run (the checkpoint comes then), and
 * prints what it sees once each has done its part: the same lines in an
 * uninterrupted run. Expiries are counted with their overruns (a signal
 * timer) or calls (a thread timer) until 100 each; a timer that stops
 * firing makes it say "timeout" and fail after 20 s. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int sig_expiries, sig_bad_value, thread_calls, thread_bad_value;
static atomic_int tid_fired, tid_right_thread, abs_fired;
static atomic_int worker_tid;
static struct timespec abs_at;

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_signal(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig == SIGRTMIN + 1) {
        if (si->si_code != SI_TIMER || si->si_value.sival_int != 11)
            sig_bad_value++;
        sig_expiries += 1 + si->si_overrun;
    } else if (sig == SIGRTMIN + 2) {
        tid_fired++;
        if (gettid() == worker_tid && si->si_value.sival_int == 22)
            tid_right_thread++;
    } else if (sig == SIGRTMIN + 3) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        if (si->si_value.sival_int == 44 &&
            (t.tv_sec > abs_at.tv_sec || (t.tv_sec == abs_at.tv_sec && t.tv_nsec >= abs_at.tv_nsec)))
            abs_fired++;
        else
            abs_fired = -1000;
    }
}

static atomic_int thread_bad_attr;

/* Runs in a thread started for the expiry with the attributes given
 * (a 1 MiB stack), detached. */
static void on_thread(union sigval v) {
    if (v.sival_int != 33)
        thread_bad_value++;
    pthread_attr_t a;
    size_t size = 0;
    int detached = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &size);
        pthread_attr_getdetachstate(&a, &detached);
        pthread_attr_destroy(&a);
    }
    if (size < (1 << 20) || detached != PTHREAD_CREATE_DETACHED)
        thread_bad_attr++;
    thread_calls++;
}

static void *worker(void *arg) {
    (void)arg;
    worker_tid = gettid();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    for (;;)
        pause();
    return NULL;
}

static timer_t make(clockid_t clock, int notify, int sig, int value, void (*fn)(union sigval)) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = notify;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = value;
    if (notify == SIGEV_THREAD_ID)
        ev._sigev_un._tid = worker_tid;
    static pthread_attr_t attr;
    if (notify == SIGEV_THREAD) {
        ev.sigev_notify_function = fn;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        ev.sigev_notify_attributes = &attr;
    }
    timer_t t;
    if (timer_create(clock, &ev, &t) != 0)
        fail("timer_create");
    return t;
}

static void set(timer_t t, int flags, double value, double interval) {
    struct itimerspec its = {
        .it_value = {(time_t)value, (long)((value - (time_t)value) * 1e9)},
        .it_interval = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)},
    };
    if (timer_settime(t, flags, &its, NULL) != 0)
        fail("timer_settime");
}

static void sleep_ms(int ms) {
    struct timespec t = {0, ms * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* Waits until *v >= want, at most 20 s of the program's own time. */
static void wait_until(atomic_int *v, int want, const char *what) {
    for (int i = 0; i < 2000 && *v < want; i++)
        sleep_ms(10);
    if (*v < want) {
        printf("timeout %s: %d of %d\n", what, *v, want);
        exit(1);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    for (int s = 1; s <= 3; s++)
        sigaction(SIGRTMIN + s, &sa, NULL);
    sigset_t only_worker;
    sigemptyset(&only_worker);
    sigaddset(&only_worker, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &only_worker, NULL);
    pthread_t w;
    pthread_create(&w, NULL, worker, NULL);
    while (!worker_tid)
        sleep_ms(1);

    timer_t t[7];
    t[0] = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 11, NULL);
    t[1] = make(CLOCK_REALTIME, SIGEV_NONE, 0, 0, NULL);
    t[2] = make(CLOCK_BOOTTIME, SIGEV_THREAD_ID, SIGRTMIN + 2, 22, NULL);
    t[3] = make(CLOCK_MONOTONIC, SIGEV_THREAD, 0, 33, on_thread);
    t[4] = make(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 3, 44, NULL);
    t[5] = make(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, NULL);
    t[6] = make(CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, 0, 0, NULL);
    if (timer_delete(t[5]) != 0)
        fail("timer_delete");
    /* (A SIGEV_THREAD timer_t is glibc's pointer, or the kernel id
     * under selfckpt: not printed.) */
    printf("ids");
    for (int i = 0; i < 7; i++)
        if (i != 5 && i != 3)
            printf(" %ld", (long)(intptr_t)t[i]);
    printf("\n");

    clock_gettime(CLOCK_REALTIME, &abs_at);
    abs_at.tv_sec += 2;
    abs_at.tv_nsec += 500000000;
    if (abs_at.tv_nsec >= 1000000000) {
        abs_at.tv_sec++;
        abs_at.tv_nsec -= 1000000000;
    }
    struct itimerspec abs = {.it_value = abs_at};
    if (timer_settime(t[4], TIMER_ABSTIME, &abs, NULL) != 0)
        fail("timer_settime abs");
    set(t[0], 0, 0.02, 0.02);
    set(t[1], 0, 100, 0);
    set(t[2], 0, 1.5, 0);
    set(t[3], 0, 0.02, 0.02);
    set(t[6], 0, 1000, 0);
    printf("waiting\n");

    wait_until(&sig_expiries, 100, "signal timer");
    printf("signal timer: 100 expiries, values %s\n", sig_bad_value ? "wrong" : "right");
    wait_until(&thread_calls, 100, "thread timer");
    printf("thread timer: 100 calls, values %s, attributes %s\n", thread_bad_value ? "wrong" : "right",
           thread_bad_attr ? "wrong" : "right");
    wait_until(&tid_fired, 1, "thread-id timer");
    printf("thread-id timer: fired %d, in its thread %d\n", tid_fired, tid_right_thread);
    wait_until(&abs_fired, 1, "absolute timer");
    printf("absolute timer: fired %d, not early\n", abs_fired);

    struct itimerspec g;
    if (timer_gettime(t[1], &g) != 0)
        fail("timer_gettime none");
    printf("none timer: %s\n", g.it_value.tv_sec >= 80 && g.it_value.tv_sec < 100 && g.it_interval.tv_sec == 0
                                   ? "armed, time left"
                                   : "wrong");
    if (timer_gettime(t[6], &g) != 0)
        fail("timer_gettime cpu");
    printf("cpu timer: %s\n", g.it_value.tv_sec >= 990 ? "armed, cpu time left" : "wrong");
    printf("thread timer: %s\n", timer_gettime(t[3], &g) == 0 && g.it_interval.tv_nsec == 20000000 ? "armed, every 20 ms" : "wrong");
    printf("one-shot timers now: %s\n",
           timer_gettime(t[2], &g) == 0 && g.it_value.tv_sec == 0 && g.it_value.tv_nsec == 0 ? "disarmed" : "wrong");
    errno = 0;
    printf("deleted id 5: %s\n", timer_gettime(t[5], &g) != 0 && errno == EINVAL ? "EINVAL" : "exists");
    printf("overrun of the signal timer: %s\n", timer_getoverrun(t[0]) >= 0 ? "known" : "error");
    timer_t next = make(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, NULL);
    printf("next id %ld\n", (long)(intptr_t)next);
    for (int i = 0; i < 7; i++)
        if (i != 5 && timer_delete(t[i]) != 0)
            fail("timer_delete");
    printf("posix timers ok\n");
    return 0;
}
