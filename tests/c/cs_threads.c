/*
 * Test program for critical sections under load (tests/e2e_abi.rs): THREADS
 * threads enter and leave critical sections (nested) as fast as they can
 * while the main thread asks for checkpoints with SIGUSR1. The checkpoint
 * hook checks that no thread is inside a section when a checkpoint starts.
 *
 * usage: cs_threads DIR THREADS SIGNALS
 * stdout: "checkpoints N violations V sections S"; exit 0 if V == 0 and
 * N > 0, else 1.
 */
#include "selfckpt.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int inside, violations, checkpoints, stop;
static long sections;

static int check_gate(int state, void *user) {
    (void)state;
    (void)user;
    if (__atomic_load_n(&inside, __ATOMIC_SEQ_CST) != 0)
        __atomic_add_fetch(&violations, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&checkpoints, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void *worker(void *arg) {
    (void)arg;
    long n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
        selfckpt_disable();
        __atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST);
        selfckpt_disable(); /* nested */
        for (volatile int i = 0; i < 200; i++)
            ;
        selfckpt_enable();
        __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
        selfckpt_enable();
        n++;
    }
    __atomic_add_fetch(&sections, n, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR THREADS SIGNALS\n", argv[0]);
        return 2;
    }
    struct selfckpt_config cfg;
    selfckpt_config_init(&cfg);
    cfg.dir = argv[1];
    cfg.workers = 1;
    cfg.level = 0;
    if (selfckpt_init_config(&cfg) != 0) {
        fprintf(stderr, "init: %s\n", selfckpt_last_error());
        return 1;
    }
    selfckpt_register_hook(SELFCKPT_HOOK_CHECKPOINT, check_gate, NULL);
    int nthreads = atoi(argv[2]), nsignals = atoi(argv[3]);
    pthread_t t[64];
    for (int i = 0; i < nthreads && i < 64; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < nsignals; i++) {
        kill(getpid(), SIGUSR1);
        usleep(30000);
    }
    /* Let the last requested checkpoint finish. */
    int last = -1;
    for (int i = 0; i < 500 && last != __atomic_load_n(&checkpoints, __ATOMIC_SEQ_CST); i++) {
        last = __atomic_load_n(&checkpoints, __ATOMIC_SEQ_CST);
        usleep(200000);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < nthreads && i < 64; i++)
        pthread_join(t[i], NULL);
    printf("checkpoints %d violations %d sections %ld\n", checkpoints, violations, sections);
    return violations == 0 && checkpoints > 0 ? 0 : 1;
}
