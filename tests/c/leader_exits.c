/* A process whose main thread has exited (pthread_exit: the thread group
 * leader is a zombie) while another thread goes on (issue 14): checkpointed
 * then, it must come back. The worker prints "waiting", sleeps (the
 * checkpoint comes then), counts to a number and prints it. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    struct timespec t = {0, 100000000};
    nanosleep(&t, NULL); /* the main thread is gone by then */
    printf("waiting\n");
    fflush(stdout);
    t.tv_sec = 1;
    t.tv_nsec = 500000000;
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    unsigned long sum = 0;
    for (unsigned long i = 0; i < 1000000; i++)
        sum += i;
    printf("worker done: %lu\n", sum);
    fflush(stdout);
    /* (Returning would end the process in glibc only once the last thread
     * is gone; selfckpt's own threads stay: say it outright.) */
    exit(0);
}

int main(void) {
    pthread_t w;
    pthread_create(&w, NULL, worker, NULL);
    pthread_exit(NULL);
}
