/* Credentials and scheduling across a checkpoint (issue 14): the main
 * thread takes SCHED_BATCH and nice 7; a worker thread nice 11. As root
 * it also sets supplementary groups, drops CAP_NET_RAW from its bounding
 * set and (main thread only, with capset: per thread) CAP_NET_RAW and
 * CAP_SYS_PTRACE from its capability sets and its real user id (a raw
 * setresuid: per thread), and the worker drops CAP_SYS_ADMIN from its
 * own. The main thread has a parent-death signal (a change of ids clears
 * it: the restart must set it again after the ids). It prints "waiting", sleeps (the checkpoint
 * comes then) and prints what each thread reads back: the same lines in
 * an uninterrupted run, and never a capability it gave up.
 *
 * usage: credentials */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what)
{
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static int drop_caps(unsigned long long drop)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d))
        return -1;
    for (int i = 0; i < 2; i++) {
        unsigned int m = ~(unsigned int)(drop >> (32 * i));
        d[i].effective &= m;
        d[i].permitted &= m;
        d[i].inheritable &= m;
    }
    return syscall(SYS_capset, &h, d);
}

/* The calling thread's lines: policy, nice, ids and capability sets. */
static void report(const char *who)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/thread-self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        fail("status");
    int policy = sched_getscheduler(0);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    int pdeath = 0;
    prctl(PR_GET_PDEATHSIG, &pdeath);
    printf("%s policy %d nice %d pdeathsig %d\n", who, policy, nice, pdeath);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7) ||
            !strncmp(line, "Cap", 3))
            printf("%s %s", who, line);
    fclose(f);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stage;

static void step(int to)
{
    pthread_mutex_lock(&lock);
    stage = to;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void wait_stage(int at)
{
    pthread_mutex_lock(&lock);
    while (stage < at)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static void *worker(void *arg)
{
    int root = *(int *)arg;
    if (setpriority(PRIO_PROCESS, 0, 11) != 0)
        fail("worker setpriority");
    if (root && drop_caps(1ULL << CAP_SYS_ADMIN) != 0)
        fail("worker capset");
    step(1);
    wait_stage(2);
    report("worker");
    step(3);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int root = geteuid() == 0;
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0)
        fail("sched_setscheduler");
    if (setpriority(PRIO_PROCESS, 0, 7) != 0)
        fail("setpriority");
    if (root) {
        gid_t groups[] = {1234, 5678};
        if (setgroups(2, groups) != 0)
            fail("setgroups");
        if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0)
            fail("PR_CAPBSET_DROP");
    }
    pthread_t w;
    pthread_create(&w, NULL, worker, &root);
    wait_stage(1);
    if (root && drop_caps(1ULL << CAP_NET_RAW | 1ULL << CAP_SYS_PTRACE) != 0)
        fail("capset");
    if (root && syscall(SYS_setresuid, 65534, 0, 0) != 0)
        fail("setresuid");
    if (prctl(PR_SET_PDEATHSIG, SIGWINCH) != 0)
        fail("PR_SET_PDEATHSIG");
    printf("root %d\n", root);
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    report("main");
    step(2);
    wait_stage(3);
    pthread_join(w, NULL);
    printf("credentials ok\n");
    return 0;
}
