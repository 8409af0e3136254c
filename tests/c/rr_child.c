/* A parent makes its forked child SCHED_RR (priority 3, reset on fork:
 * root only), prints "waiting", sleeps (the checkpoint of the tree comes
 * then) and prints the child's policy and priority as it reads them back.
 *
 * usage: rr_child */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    struct sched_param p = {.sched_priority = 3};
    if (sched_setscheduler(child, SCHED_RR | SCHED_RESET_ON_FORK, &p) != 0) {
        printf("sched_setscheduler: %s\n", strerror(errno));
        kill(child, SIGKILL);
        return 1;
    }
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    struct sched_param q;
    int policy = sched_getscheduler(child);
    sched_getparam(child, &q);
    printf("child policy %s priority %d\n",
           policy == (SCHED_RR | SCHED_RESET_ON_FORK) ? "SCHED_RR|RESET_ON_FORK" : "another",
           q.sched_priority);
    kill(child, SIGKILL);
    return 0;
}
