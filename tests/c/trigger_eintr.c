/* The main thread blocks in one call after another, each treating EINTR as
 * a fatal error, while (in mode "send") a helper thread sends the process
 * SIGUSR1 with kill() -- selfckpt's trigger signal, which the kernel
 * delivers to the main thread -- in the middle of each call. A checkpoint
 * asked for that way must not end any call early. The program's own
 * signals still interrupt its calls as without selfckpt: a handler of its
 * own ends a pause(), and ends a sigsuspend() even when SIGUSR1 arrives at
 * the very same time.
 *
 * usage: trigger_eintr send|quiet   ("quiet": no SIGUSR1, for a run
 * without selfckpt, where SIGUSR1 would end the program)
 * prints "ok NAME" per call and "trigger-eintr ok"; exits 1 with a FAIL
 * line on any early return.
 * Built with -DLINKED (and libselfckpt.a), it installs the checkpointer
 * itself (selfckpt_init, SELFCKPT_DIR) instead of being run under
 * `selfckpt run`: the static library's wrappers are the ones in use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#ifdef LINKED
#include "selfckpt.h"
#endif

static int send_usr1;
static int wake[2], never[2];
static int msq, sem;
static pthread_t main_thread;
static atomic_int step = -1, done_step = -1;
static volatile sig_atomic_t own_seen;

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

static void ok(const char *what) {
    printf("ok %s\n", what);
    fflush(stdout);
}

static void on_own(int s) { (void)s; own_seen++; }

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

enum { S_POLL, S_SELECT, S_EPOLL, S_PPOLL, S_SIGSUSPEND, S_MSGRCV, S_SEMOP,
       S_SIGWAITINFO, S_NANOSLEEP, S_POLL_TIMED, S_EPOLL_PWAIT2, S_SEMTIMEDOP, S_SLEEP,
       S_READ, S_WAITPID, S_FUTEX, S_PAUSE_OWN, S_COUNT };

static atomic_int futex_word;
static int never_ep;

/* Sends SIGUSR1 in the middle of each step's call, then ends the call the
 * way it ends without selfckpt. */
static void *helper(void *a) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (int s = 0; s < S_COUNT; s++) {
        while (atomic_load(&step) != s) sleep_ms(5);
        sleep_ms(150);
        if (send_usr1 && s != S_PAUSE_OWN) kill(getpid(), SIGUSR1);
        sleep_ms(250);
        switch (s) {
        case S_POLL: case S_SELECT: case S_EPOLL: case S_PPOLL: case S_READ:
            if (write(wake[1], "x", 1) != 1) fail("write");
            break;
        case S_FUTEX:
            atomic_store(&futex_word, 1);
            syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            break;
        case S_SIGSUSPEND: case S_PAUSE_OWN:
            pthread_kill(main_thread, SIGRTMIN + 1);
            break;
        case S_MSGRCV: {
            struct { long type; char text[8]; } m = {1, "msg"};
            if (msgsnd(msq, &m, sizeof m.text, 0)) fail("msgsnd");
            break;
        }
        case S_SEMOP: {
            struct sembuf up = {0, 1, 0};
            if (semop(sem, &up, 1)) fail("semop +1");
            break;
        }
        case S_SIGWAITINFO:
            pthread_kill(main_thread, SIGRTMIN + 2);
            break;
        default:
            break; /* timed calls end by themselves */
        }
        while (atomic_load(&done_step) != s) sleep_ms(5);
    }
    return a;
}

static void drain(void) {
    char c;
    if (read(wake[0], &c, 1) != 1) fail("read");
}

static void timed(const char *what, double t0) {
    if (now() - t0 < 0.99) {
        printf("FAIL %s returned after %.3f s, before its 1 s\n", what, now() - t0);
        fflush(stdout);
        exit(1);
    }
}

int main(int argc, char **argv) {
    send_usr1 = argc > 1 && strcmp(argv[1], "send") == 0;
#ifdef LINKED
    if (send_usr1 && selfckpt_init() != 0) {
        printf("FAIL selfckpt_init: %s\n", selfckpt_last_error());
        return 1;
    }
#endif
    main_thread = pthread_self();
    if (pipe(wake) || pipe(never)) fail("pipe");
    msq = msgget(IPC_PRIVATE, 0600);
    sem = semget(IPC_PRIVATE, 1, 0600);
    if (msq < 0 || sem < 0) fail("ipc");
    int ep = epoll_create1(0);
    never_ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {0}};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake[0], &ev)) fail("epoll");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_own;
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGRTMIN + 1);
    sigaddset(&waited, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &waited, NULL);
    pthread_t th;
    pthread_create(&th, NULL, helper, NULL);
    printf("ready\n");
    fflush(stdout);

    for (int s = 0; s < S_COUNT; s++) {
        atomic_store(&step, s);
        double t0 = now();
        switch (s) {
        case S_POLL: {
            struct pollfd p = {wake[0], POLLIN, 0};
            if (poll(&p, 1, -1) != 1) fail("poll(-1)");
            drain();
            ok("poll");
            break;
        }
        case S_SELECT: {
            fd_set r;
            FD_ZERO(&r);
            FD_SET(wake[0], &r);
            if (select(wake[0] + 1, &r, NULL, NULL, NULL) != 1) fail("select(NULL)");
            drain();
            ok("select");
            break;
        }
        case S_EPOLL: {
            struct epoll_event got;
            if (epoll_wait(ep, &got, 1, -1) != 1) fail("epoll_wait(-1)");
            drain();
            ok("epoll_wait");
            break;
        }
        case S_PPOLL: {
            struct pollfd p = {wake[0], POLLIN, 0};
            if (ppoll(&p, 1, NULL, NULL) != 1) fail("ppoll(NULL)");
            drain();
            ok("ppoll");
            break;
        }
        case S_SIGSUSPEND: {
            sigset_t m;
            pthread_sigmask(SIG_BLOCK, NULL, &m);
            sigdelset(&m, SIGRTMIN + 1);
            int before = own_seen;
            sigsuspend(&m);
            if (errno != EINTR || own_seen != before + 1) fail("sigsuspend woke without its signal");
            ok("sigsuspend");
            break;
        }
        case S_MSGRCV: {
            struct { long type; char text[8]; } m;
            if (msgrcv(msq, &m, sizeof m.text, 0, 0) < 0) fail("msgrcv");
            ok("msgrcv");
            break;
        }
        case S_SEMOP: {
            struct sembuf down = {0, -1, 0};
            if (semop(sem, &down, 1)) fail("semop -1");
            ok("semop");
            break;
        }
        case S_SIGWAITINFO: {
            sigset_t w;
            sigemptyset(&w);
            sigaddset(&w, SIGRTMIN + 2);
            if (sigwaitinfo(&w, NULL) != SIGRTMIN + 2) fail("sigwaitinfo");
            ok("sigwaitinfo");
            break;
        }
        case S_NANOSLEEP: {
            struct timespec req = {1, 0};
            if (nanosleep(&req, NULL)) fail("nanosleep(1 s)");
            timed("nanosleep", t0);
            ok("nanosleep");
            break;
        }
        case S_POLL_TIMED: {
            struct pollfd p = {never[0], POLLIN, 0};
            if (poll(&p, 1, 1000) != 0) fail("poll(1 s)");
            timed("poll", t0);
            ok("poll-1s");
            break;
        }
        case S_EPOLL_PWAIT2: {
            struct epoll_event got;
            struct timespec t = {1, 0};
            if (epoll_pwait2(never_ep, &got, 1, &t, NULL) != 0) fail("epoll_pwait2(1 s)");
            timed("epoll_pwait2", t0);
            ok("epoll_pwait2-1s");
            break;
        }
        case S_SEMTIMEDOP: {
            struct sembuf down = {0, -1, 0};
            struct timespec t = {1, 0};
            if (semtimedop(sem, &down, 1, &t) == 0 || errno != EAGAIN) fail("semtimedop(1 s)");
            timed("semtimedop", t0);
            ok("semtimedop-1s");
            break;
        }
        case S_SLEEP:
            if (sleep(1) != 0) fail("sleep(1)");
            timed("sleep", t0);
            ok("sleep");
            break;
        case S_READ: {
            char c;
            if (read(wake[0], &c, 1) != 1) fail("read(pipe)");
            ok("read");
            break;
        }
        case S_WAITPID: {
            pid_t child = fork();
            if (child < 0) fail("fork");
            if (child == 0) {
                sleep_ms(400);
                _exit(7);
            }
            int st;
            if (waitpid(child, &st, 0) != child) fail("waitpid");
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 7) fail("waitpid status");
            ok("waitpid");
            break;
        }
        case S_FUTEX:
            while (atomic_load(&futex_word) == 0) {
                long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
                if (r != 0 && errno != EAGAIN) fail("futex(FUTEX_WAIT)");
            }
            ok("futex");
            break;
        case S_PAUSE_OWN: {
            /* The program's own handler ends pause(), as without selfckpt. */
            int before = own_seen;
            sigset_t own;
            sigemptyset(&own);
            sigaddset(&own, SIGRTMIN + 1);
            pthread_sigmask(SIG_UNBLOCK, &own, NULL);
            if (pause() != -1 || errno != EINTR || own_seen != before + 1) fail("pause");
            ok("pause-own-signal");
            break;
        }
        }
        atomic_store(&done_step, s);
    }
    pthread_join(th, NULL);

    /* SIGUSR1 and the program's own signal pending together when
     * sigsuspend opens the mask: selfckpt's is delivered first (lower
     * number) and the program's handler runs too; sigsuspend returns. */
    sigset_t both, open;
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &both, &open);
    sigdelset(&open, SIGUSR1);
    sigdelset(&open, SIGRTMIN + 1);
    if (send_usr1) raise(SIGUSR1);
    raise(SIGRTMIN + 1);
    int before = own_seen;
    sigsuspend(&open);
    if (errno != EINTR || own_seen != before + 1) fail("sigsuspend with both pending");
    ok("sigsuspend-both-pending");
    printf("trigger-eintr ok\n");
    return 0;
}
