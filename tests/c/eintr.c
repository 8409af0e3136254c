/* Threads blocked in system calls the kernel does not restart after a
 * signal handler (poll, select, epoll_wait, sigsuspend, ppoll/pselect with
 * a timeout, absolute-time waits...). Each treats EINTR as a fatal error,
 * as many real programs do. A checkpoint (or a restart) must be invisible:
 * no call returns early, fails, or returns before its timeout.
 *
 * usage: eintr SECONDS  (the untimed waits end after SECONDS)
 * prints "ready" once every thread is blocked, then one "ok NAME" line per
 * thread in a fixed order, and "eintr ok"; exits 1 on any EINTR or early
 * return, with a line saying which.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

static int ready_pipe[2], never_pipe[2], sel_pipe[2];
static int epfd;
static sem_t sem;
static pthread_t sigsuspend_thread;
static volatile sig_atomic_t usr2_seen;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void early(const char *what, double took) {
    printf("FAIL %s returned after %.3f s, before its 2 s\n", what, took);
    fflush(stdout);
    exit(1);
}

#define TIMED 2.0

static void *t_poll(void *a) {
    struct pollfd p = {ready_pipe[0], POLLIN, 0};
    if (poll(&p, 1, -1) != 1) fail("poll(-1)");
    return a;
}

static void *t_select(void *a) {
    fd_set r;
    FD_ZERO(&r);
    FD_SET(sel_pipe[0], &r);
    if (select(sel_pipe[0] + 1, &r, NULL, NULL, NULL) != 1) fail("select(NULL)");
    return a;
}

static void *t_epoll(void *a) {
    struct epoll_event ev;
    if (epoll_wait(epfd, &ev, 1, -1) != 1) fail("epoll_wait(-1)");
    return a;
}

static void on_usr2(int s) { (void)s; usr2_seen = 1; }

static void *t_sigsuspend(void *a) {
    sigset_t wait;
    pthread_sigmask(SIG_BLOCK, NULL, &wait);
    sigdelset(&wait, SIGUSR2);
    while (!usr2_seen) {
        sigsuspend(&wait);
        if (errno != EINTR) fail("sigsuspend");
        if (!usr2_seen) {
            printf("FAIL sigsuspend returned without SIGUSR2\n");
            fflush(stdout);
            exit(1);
        }
    }
    return a;
}

static void *t_ppoll_timed(void *a) {
    struct pollfd p = {never_pipe[0], POLLIN, 0};
    struct timespec ts = {2, 0};
    double t0 = now();
    if (ppoll(&p, 1, &ts, NULL) != 0) fail("ppoll(2 s)");
    if (now() - t0 < TIMED - 0.01) early("ppoll", now() - t0);
    return a;
}

static void *t_select_timed(void *a) {
    fd_set r;
    FD_ZERO(&r);
    FD_SET(never_pipe[0], &r);
    struct timeval tv = {2, 0};
    double t0 = now();
    if (select(never_pipe[0] + 1, &r, NULL, NULL, &tv) != 0) fail("select(2 s)");
    if (now() - t0 < TIMED - 0.01) early("select", now() - t0);
    return a;
}

static void *t_sem_timed(void *a) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    double t0 = now();
    if (sem_timedwait(&sem, &dl) == 0 || errno != ETIMEDOUT) fail("sem_timedwait(2 s)");
    if (now() - t0 < TIMED - 0.01) early("sem_timedwait", now() - t0);
    return a;
}

static void *t_abs_sleep(void *a) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += 2;
    double t0 = now();
    int e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL);
    if (e) { errno = e; fail("clock_nanosleep(TIMER_ABSTIME)"); }
    if (now() - t0 < TIMED - 0.01) early("clock_nanosleep", now() - t0);
    return a;
}

static void *t_poll_timed(void *a) {
    struct pollfd p = {never_pipe[0], POLLIN, 0};
    double t0 = now();
    if (poll(&p, 1, 2000) != 0) fail("poll(2 s)");
    if (now() - t0 < TIMED - 0.01) early("poll", now() - t0);
    return a;
}

static int never_ep;

static void *t_epoll_timed(void *a) {
    struct epoll_event ev;
    double t0 = now();
    if (epoll_wait(never_ep, &ev, 1, 2000) != 0) fail("epoll_wait(2 s)");
    if (now() - t0 < TIMED - 0.01) early("epoll_wait", now() - t0);
    return a;
}

static void *t_nanosleep(void *a) {
    struct timespec req = {2, 0}, rem;
    double t0 = now();
    if (nanosleep(&req, &rem) != 0) fail("nanosleep(2 s)");
    if (now() - t0 < TIMED - 0.01) early("nanosleep", now() - t0);
    return a;
}

/* Blocks every signal, as helper threads of real programs do, and waits
 * in sigtimedwait for one that never comes. */
static void *t_allmasked_sigtimedwait(void *a) {
    sigset_t all, want;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    sigemptyset(&want);
    sigaddset(&want, SIGRTMIN + 3);
    struct timespec ts = {2, 0};
    double t0 = now();
    if (sigtimedwait(&want, NULL, &ts) != -1 || errno != EAGAIN) fail("sigtimedwait(2 s)");
    if (now() - t0 < TIMED - 0.01) early("sigtimedwait", now() - t0);
    return a;
}

/* The same waits made through libc's raw syscall(). */
static void *t_raw_nanosleep(void *a) {
    struct timespec req = {2, 0}, rem;
    double t0 = now();
    if (syscall(SYS_nanosleep, &req, &rem) != 0) fail("syscall(nanosleep, 2 s)");
    if (now() - t0 < TIMED - 0.01) early("syscall(nanosleep)", now() - t0);
    return a;
}

static void *t_raw_ppoll_timed(void *a) {
    struct pollfd p = {never_pipe[0], POLLIN, 0};
    struct timespec ts = {2, 0};
    double t0 = now();
    if (syscall(SYS_ppoll, &p, 1, &ts, NULL, 8) != 0) fail("syscall(ppoll, 2 s)");
    if (now() - t0 < TIMED - 0.01) early("syscall(ppoll)", now() - t0);
    return a;
}

static void *t_raw_epoll_pwait_timed(void *a) {
    struct epoll_event ev;
    double t0 = now();
    if (syscall(SYS_epoll_pwait, never_ep, &ev, 1, 2000, NULL, 8) != 0) fail("syscall(epoll_pwait, 2 s)");
    if (now() - t0 < TIMED - 0.01) early("syscall(epoll_pwait)", now() - t0);
    return a;
}

static void *t_raw_poll(void *a) {
    struct pollfd p = {ready_pipe[0], POLLIN, 0};
    if (syscall(SYS_ppoll, &p, 1, NULL, NULL, 8) != 1) fail("syscall(ppoll, no timeout)");
    return a;
}

struct job { const char *name; void *(*fn)(void *); };

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 3;
    if (pipe(ready_pipe) || pipe(never_pipe) || pipe(sel_pipe)) fail("pipe");
    epfd = epoll_create1(0);
    never_ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {0}};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, ready_pipe[0], &ev)) fail("epoll");
    sem_init(&sem, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    struct job jobs[] = {
        {"poll", t_poll},           {"select", t_select},
        {"epoll_wait", t_epoll},    {"sigsuspend", t_sigsuspend},
        {"ppoll-2s", t_ppoll_timed}, {"select-2s", t_select_timed},
        {"sem_timedwait-2s", t_sem_timed}, {"clock_nanosleep-abs-2s", t_abs_sleep},
        {"poll-2s", t_poll_timed},  {"nanosleep-2s", t_nanosleep},
        {"allmasked-sigtimedwait-2s", t_allmasked_sigtimedwait},
        {"epoll_wait-2s", t_epoll_timed},
        {"syscall-nanosleep-2s", t_raw_nanosleep},
        {"syscall-ppoll-2s", t_raw_ppoll_timed}, {"syscall-epoll_pwait-2s", t_raw_epoll_pwait_timed},
        {"syscall-ppoll", t_raw_poll},
    };
    int n = sizeof jobs / sizeof jobs[0];
    pthread_t th[32];
    for (int i = 0; i < n; i++) {
        pthread_create(&th[i], NULL, jobs[i].fn, NULL);
        if (jobs[i].fn == t_sigsuspend) sigsuspend_thread = th[i];
    }
    usleep(200 * 1000);
    printf("ready\n");
    fflush(stdout);
    struct timespec left = {secs, 0};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    if (write(ready_pipe[1], "x", 1) != 1 || write(sel_pipe[1], "x", 1) != 1) fail("write");
    pthread_kill(sigsuspend_thread, SIGUSR2);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        printf("ok %s\n", jobs[i].name);
    }
    printf("eintr ok\n");
    return 0;
}
