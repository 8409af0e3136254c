/* Alternate signal stacks (sigaltstack) of the main thread and of a
 * second thread, and a handler installed with SA_ONSTACK: before printing
 * "waiting" each thread sets its own stack; then both wait 2 s (the
 * checkpoint comes then), and each prints whether its alternate stack is
 * still the one it set (address, size, flags) and whether its handler
 * still runs on it. Prints the same in an uninterrupted run (CRIU's
 * sigaltstack). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char main_stack[65536], thread_stack[65536];
static __thread volatile int on_alt;

static void handler(int s) {
    (void)s;
    int here;
    char *p = (char *)&here;
    on_alt = (p >= main_stack && p < main_stack + sizeof main_stack) ||
             (p >= thread_stack && p < thread_stack + sizeof thread_stack);
}

static void nap(void) {
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static void report(const char *who, char *base, size_t size) {
    stack_t ss;
    sigaltstack(NULL, &ss);
    on_alt = 0;
    pthread_kill(pthread_self(), SIGWINCH);
    printf("%s: alternate stack %s, size %s, flags %d, handler on it %d\n", who,
           ss.ss_sp == base ? "the same" : "another", ss.ss_size == size ? "the same" : "another",
           ss.ss_flags, on_alt);
}

static pthread_barrier_t set;

static void *thread(void *a) {
    (void)a;
    stack_t ss = {.ss_sp = thread_stack, .ss_size = sizeof thread_stack};
    sigaltstack(&ss, NULL);
    pthread_barrier_wait(&set);
    nap();
    report("thread", thread_stack, sizeof thread_stack);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    stack_t ss = {.ss_sp = main_stack, .ss_size = sizeof main_stack};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGWINCH, &sa, NULL);
    pthread_barrier_init(&set, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    pthread_barrier_wait(&set);
    printf("waiting\n");
    nap();
    /* The thread reports first: one order, run or resumed. */
    pthread_join(t, NULL);
    report("main", main_stack, sizeof main_stack);
    printf("altstack ok\n");
    return 0;
}
