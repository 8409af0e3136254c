/* Queued signals keep their siginfo and count across a checkpoint: the
 * process blocks SIGRTMIN+2 and SIGHUP, queues three instances of
 * SIGRTMIN+2 to itself with values 11, 22, 33 (sigqueue: process-wide)
 * and SIGHUP with value 7; a worker thread gets two of SIGRTMIN+4 with
 * values 44, 55 (pthread_sigqueue: its own). It prints "waiting", sleeps
 * (the checkpoint comes then), then each thread takes its signals with
 * sigtimedwait and prints what it got: number, code, value, and whether
 * the sender is this program (as it was at the start).
 *
 * usage: siginfo */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pid_t started_as;
static pthread_barrier_t ready, done;

static void drain(const char *who, const sigset_t *set)
{
    struct timespec zero = {0, 0};
    siginfo_t si;
    int n = 0;
    while (sigtimedwait(set, &si, &zero) > 0) {
        n++;
        printf("%s got %s code %s value %d from %s\n", who,
               si.si_signo == SIGHUP ? "SIGHUP" : si.si_signo == SIGRTMIN + 2 ? "RTMIN+2" : "RTMIN+4",
               si.si_code == SI_QUEUE ? "SI_QUEUE" : "other", si.si_value.sival_int,
               si.si_pid == started_as ? "itself" : "another");
    }
    printf("%s: %d signals\n", who, n);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 4);
    drain("worker", &s);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    started_as = getpid();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    sigaddset(&s, SIGRTMIN + 4);
    sigaddset(&s, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_barrier_init(&ready, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    pthread_t w;
    pthread_create(&w, NULL, worker, NULL);
    for (int v = 11; v <= 33; v += 11)
        sigqueue(getpid(), SIGRTMIN + 2, (union sigval){.sival_int = v});
    sigqueue(getpid(), SIGHUP, (union sigval){.sival_int = 7});
    pthread_sigqueue(w, SIGRTMIN + 4, (union sigval){.sival_int = 44});
    pthread_sigqueue(w, SIGRTMIN + 4, (union sigval){.sival_int = 55});
    pthread_barrier_wait(&ready);
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    sigdelset(&s, SIGRTMIN + 4);
    drain("main", &s);
    pthread_barrier_wait(&done);
    pthread_join(w, NULL);
    printf("siginfo ok\n");
    return 0;
}
