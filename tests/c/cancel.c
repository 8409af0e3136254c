/* Threads created in a loop and cancelled, deferred (in nanosleep, a
 * cancellation point) and asynchronous (spinning), then joined: every join
 * must report PTHREAD_CANCELED. A checkpoint or a restart at any moment of
 * this must be invisible.
 *
 * usage: cancel ROUNDS     prints "round N" every 100 rounds, "cancel ok".
 *        cancel pending    one thread is cancelled while it blocks SIGCANCEL
 *                          (with the raw system call: glibc never lets a
 *                          program block it), so the cancellation is pending
 *                          for a second, during which it is checkpointed; the
 *                          thread then unblocks it and must be cancelled
 *                          exactly then. Prints "ready", "cancel ok".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *deferred(void *a) {
    (void)a;
    for (;;) {
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static volatile unsigned long spin;

static void *asynchronous(void *a) {
    (void)a;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    for (;;) spin++;
    return NULL;
}

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>

static volatile int go;

static void sigcancel_mask(int how) {
    unsigned long set = 1UL << (32 - 1); /* SIGCANCEL is glibc's signal 32 */
    syscall(SYS_rt_sigprocmask, how, &set, NULL, 8);
}

static void *pending(void *a) {
    (void)a;
    sigcancel_mask(SIG_BLOCK);
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    while (!go) spin++;
    sigcancel_mask(SIG_UNBLOCK); /* the cancellation happens here */
    for (;;) spin++;
    return NULL;
}

static int pending_mode(void) {
    pthread_t t;
    pthread_create(&t, NULL, pending, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (pthread_cancel(t)) {
        printf("FAIL pthread_cancel\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    ts.tv_sec = 1;
    ts.tv_nsec = 0;
    nanosleep(&ts, NULL);
    go = 1;
    void *r;
    if (pthread_join(t, &r) || r != PTHREAD_CANCELED) {
        printf("FAIL not cancelled\n");
        return 1;
    }
    printf("cancel ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "pending") == 0) return pending_mode();
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    printf("ready\n");
    fflush(stdout);
    for (int i = 1; i <= rounds; i++) {
        pthread_t t[2];
        if (pthread_create(&t[0], NULL, deferred, NULL) || pthread_create(&t[1], NULL, asynchronous, NULL)) {
            printf("FAIL pthread_create\n");
            return 1;
        }
        struct timespec ts = {0, 300 * 1000};
        nanosleep(&ts, NULL);
        for (int k = 0; k < 2; k++) {
            void *r;
            if (pthread_cancel(t[k]) || pthread_join(t[k], &r) || r != PTHREAD_CANCELED) {
                printf("FAIL round %d thread %d not cancelled\n", i, k);
                return 1;
            }
        }
        if (i % 100 == 0) {
            printf("round %d\n", i);
            fflush(stdout);
        }
    }
    printf("cancel ok\n");
    return 0;
}
