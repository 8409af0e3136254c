/*
 * A C pthreads program for the end-to-end tests; it knows nothing of
 * selfckpt (the tests run it under `selfckpt run`, or with the library
 * preloaded). While main sleeps in its "checkpoint window", the threads sit
 * in the states a checkpoint must carry across:
 *
 *   holder_ec   holds an error-checking mutex
 *   holder_rec  holds a recursive mutex twice
 *   reader      blocked in read() on a pipe that a sibling writes later
 *   sleeper     in nanosleep(), with an alternate signal stack
 *   waiter      in pthread_cond_wait()
 *   target      waits for a signal that main sends with pthread_kill()
 *
 * After the window main wakes everyone; each thread checks that what it
 * held is still its own (unlock succeeds, a second lock of the
 * error-checking mutex says EDEADLK, the recursive mutex unlocks exactly
 * twice), main writes to the pipe, pthread_kill()s the target and joins
 * them all. Output is the same whatever the timing: one line per thread,
 * then "pthreads ok". Exit status 0 only if every check passed.
 *
 * usage: pthreads WINDOW_MS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t ec, rec;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase; /* 0: window, 1: go */
static int ready;
static int pipefd[2];
static __thread long tls_mark;

static void wait_phase(void)
{
    pthread_mutex_lock(&lock);
    ready++;
    pthread_cond_broadcast(&cond);
    while (phase == 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static int same_tid(pid_t born)
{
    return born == gettid();
}

static void *holder_ec(void *arg)
{
    static char msg[128];
    pid_t born = gettid();
    tls_mark = 11;
    int a = pthread_mutex_lock(&ec);
    wait_phase();
    int again = pthread_mutex_lock(&ec); /* EDEADLK: we still own it */
    int un = pthread_mutex_unlock(&ec);
    int un2 = pthread_mutex_unlock(&ec); /* EPERM: no longer ours */
    snprintf(msg, sizeof msg, "holder_ec: lock %d relock %s unlock %d unlock-again %s tls %ld tid %s",
             a, again == EDEADLK ? "EDEADLK" : strerror(again), un,
             un2 == EPERM ? "EPERM" : strerror(un2), tls_mark, same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

static void *holder_rec(void *arg)
{
    static char msg[128];
    pid_t born = gettid();
    tls_mark = 22;
    int a = pthread_mutex_lock(&rec), b = pthread_mutex_lock(&rec);
    wait_phase();
    int u1 = pthread_mutex_unlock(&rec), u2 = pthread_mutex_unlock(&rec);
    int u3 = pthread_mutex_unlock(&rec);
    snprintf(msg, sizeof msg, "holder_rec: lock %d %d unlock %d %d unlock-again %s tls %ld tid %s",
             a, b, u1, u2, u3 == EPERM ? "EPERM" : strerror(u3), tls_mark,
             same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

static void *reader(void *arg)
{
    static char msg[128];
    char buf[32] = {0};
    pid_t born = gettid();
    pthread_mutex_lock(&lock);
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    size_t got = 0;
    while (got < 5) {
        ssize_t n = read(pipefd[0], buf + got, 5 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    snprintf(msg, sizeof msg, "reader: read \"%s\" tid %s", buf, same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

static void *sleeper(void *arg)
{
    static char msg[160];
    static char altstack[64 * 1024];
    pid_t born = gettid();
    int naps = 0;
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0}, now;
    sigaltstack(&ss, NULL);
    pthread_mutex_lock(&lock);
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
        naps++;
        pthread_mutex_lock(&lock);
        int go = phase;
        pthread_mutex_unlock(&lock);
        if (go)
            break;
    }
    sigaltstack(NULL, &now);
    int alt_ok = now.ss_sp == (void *)altstack && now.ss_size == sizeof altstack;
    snprintf(msg, sizeof msg, "sleeper: napped %s altstack %s tid %s", naps > 0 ? "yes" : "no",
             alt_ok ? "same" : "CHANGED", same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

static void *waiter(void *arg)
{
    static char msg[128];
    pid_t born = gettid();
    wait_phase();
    snprintf(msg, sizeof msg, "waiter: woken tid %s", same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

static void *target(void *arg)
{
    static char msg[128];
    pid_t born = gettid();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_mutex_lock(&lock);
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    int sig = 0;
    int r = sigwait(&set, &sig);
    snprintf(msg, sizeof msg, "target: sigwait %d signal %s tid %s", r,
             sig == SIGUSR2 ? "SIGUSR2" : "OTHER", same_tid(born) ? "same" : "CHANGED");
    (void)arg;
    return msg;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pthreads WINDOW_MS\n");
        return 2;
    }
    long window = atol(argv[1]);
    /* SIGUSR2 is taken with sigwait by the target: block it everywhere. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec, &at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &at);
    if (pipe(pipefd) != 0) {
        perror("pipe");
        return 1;
    }
    void *(*fns[])(void *) = {holder_ec, holder_rec, reader, sleeper, waiter, target};
    enum { N = sizeof fns / sizeof fns[0] };
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        if (pthread_create(&t[i], NULL, fns[i], NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    pthread_mutex_lock(&lock);
    while (ready < N)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    pthread_t self = pthread_self();
    pid_t main_tid = gettid();
    printf("window open\n");
    fflush(stdout);

    /* The checkpoint window: main sleeps, everyone else is parked. */
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += window / 1000;
    end.tv_nsec += (window % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL) == EINTR)
        ;

    pthread_mutex_lock(&lock);
    phase = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    if (write(pipefd[1], "hello", 5) != 5)
        perror("write");
    int k = pthread_kill(t[5], SIGUSR2);
    int ok = k == 0 && pthread_equal(self, pthread_self()) && main_tid == gettid();
    for (int i = 0; i < N; i++) {
        void *msg = NULL;
        int j = pthread_join(t[i], &msg);
        printf("%s (join %d)\n", j == 0 && msg ? (char *)msg : "?", j);
        ok = ok && j == 0 && msg && !strstr((char *)msg, "CHANGED");
    }
    printf("pthread_kill %d, main identity %s\n", k,
           pthread_equal(self, pthread_self()) && main_tid == gettid() ? "same" : "CHANGED");
    printf(ok ? "pthreads ok\n" : "pthreads FAILED\n");
    return ok ? 0 : 1;
}
