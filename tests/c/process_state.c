/* Process state across a checkpoint (issue 14): resource limits (some
 * lowered, soft and hard), oom_score_adj, thread names, the main thread's
 * parent-death signal, DUMPABLE, NO_NEW_PRIVS, CHILD_SUBREAPER,
 * THP_DISABLE, a membarrier registration. It sets them, prints "waiting", sleeps (the checkpoint
 * comes then) and prints each value read back: the same lines in an
 * uninterrupted run.
 *
 * usage: process_state [seccomp]  (seccomp: also installs a seccomp filter
 *        that allows everything; prints the seccomp mode it is in) */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const struct {
    int resource;
    const char *name;
    rlim_t cur, max; /* 0: keep the current hard limit */
} limits[] = {
    {RLIMIT_NOFILE, "NOFILE", 256, 4096},
    {RLIMIT_CORE, "CORE", 0, 0},
    {RLIMIT_STACK, "STACK", 4 << 20, 0},
    {RLIMIT_CPU, "CPU", 5000, 6000},
    {RLIMIT_AS, "AS", 1ULL << 38, 0},
    {RLIMIT_DATA, "DATA", 1ULL << 37, 0},
    {RLIMIT_NPROC, "NPROC", 5000, 0},
    {RLIMIT_MEMLOCK, "MEMLOCK", 1 << 20, 0},
    {RLIMIT_SIGPENDING, "SIGPENDING", 1000, 0},
    {RLIMIT_MSGQUEUE, "MSGQUEUE", 400000, 0},
    {RLIMIT_LOCKS, "LOCKS", 1000, 0},
    {RLIMIT_FSIZE, "FSIZE", 1ULL << 40, 0},
};
#define N_LIMITS (sizeof limits / sizeof limits[0])

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The worker reads its own name when asked (another thread's name is
 * read through /proc/self/task/TID, which a restart with new ids does not
 * translate). */
static volatile int ask, answered;
static char worker_name[16];

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        if (ask && !answered) {
            prctl(PR_GET_NAME, worker_name);
            answered = 1;
        }
        struct timespec t = {0, 5000000};
        nanosleep(&t, NULL);
    }
    return NULL;
}

static long status_field(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static void report(pthread_t w) {
    for (size_t i = 0; i < N_LIMITS; i++) {
        struct rlimit l;
        if (getrlimit(limits[i].resource, &l) != 0)
            fail("getrlimit");
        printf("RLIMIT_%s %llu %llu\n", limits[i].name, (unsigned long long)l.rlim_cur,
               (unsigned long long)l.rlim_max);
    }
    FILE *f = fopen("/proc/self/oom_score_adj", "r");
    int oom = -2000;
    if (!f || fscanf(f, "%d", &oom) != 1)
        fail("oom_score_adj");
    fclose(f);
    printf("oom_score_adj %d\n", oom);
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    printf("main thread name %s\n", name);
    (void)w;
    ask = 1;
    while (!answered)
        usleep(1000);
    printf("worker thread name %s\n", worker_name);
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig);
    printf("pdeathsig %d\n", sig);
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    printf("no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    int sub = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &sub);
    printf("child_subreaper %d\n", sub);
    printf("thp_disable %d\n", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
    /* Registered: the expedited barrier succeeds (EPERM: not registered). */
    errno = 0;
    long mb = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    printf("membarrier expedited %ld %s\n", mb, mb ? strerror(errno) : "ok");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int with_seccomp = argc > 1 && strcmp(argv[1], "seccomp") == 0;
    for (size_t i = 0; i < N_LIMITS; i++) {
        struct rlimit l;
        getrlimit(limits[i].resource, &l);
        l.rlim_cur = limits[i].cur;
        if (limits[i].max || limits[i].resource == RLIMIT_CORE)
            l.rlim_max = limits[i].max;
        if (l.rlim_cur > l.rlim_max)
            l.rlim_cur = l.rlim_max;
        if (setrlimit(limits[i].resource, &l) != 0)
            fail(limits[i].name);
    }
    FILE *f = fopen("/proc/self/oom_score_adj", "w");
    if (!f || fprintf(f, "321\n") < 0 || fclose(f) != 0)
        fail("write oom_score_adj");
    prctl(PR_SET_NAME, "ps-main");
    pthread_t w;
    pthread_create(&w, NULL, worker, NULL);
    pthread_setname_np(w, "ps-worker");
    if (prctl(PR_SET_PDEATHSIG, SIGWINCH) != 0 || prctl(PR_SET_DUMPABLE, 0) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 ||
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
        fail("prctl");
    if (with_seccomp) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {1, &allow};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
            fail("seccomp");
    }
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
        fail("membarrier register");
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    report(w);
    if (with_seccomp)
        printf("seccomp mode %ld\n", status_field("Seccomp:"));
    printf("process state ok\n");
    return 0;
}
