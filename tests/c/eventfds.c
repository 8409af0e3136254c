/* Event and timer descriptors across a checkpoint (issue 14): an eventfd
 * in semaphore mode mid-way and a plain one, timerfds (periodic with an
 * expiration unread, one-shot relative and absolute mid-way, one-shot
 * expired and unread), a signalfd for a blocked signal that is pending,
 * and an epoll set watching them (level, edge and one-shot, with data
 * values; edge-triggered and one-shot ones not ready at the checkpoint:
 * what epoll does not show of them cannot come back). It waits 2 s in epoll_wait (the checkpoint comes then), then
 * checks what it holds: its /proc/self/fdinfo lines as before the wait,
 * readiness, counts, flags. Prints the same in an uninterrupted run.
 *
 * usage: eventfds [stale]  (stale: the descriptor number the edge-triggered
 *        registration names is closed after registering, its file kept
 *        open at another number: that registration cannot come back) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The fdinfo lines that must survive a restart (not pos, mnt_id, ino,
 * eventfd-id, it_value; a registration without pos/ino/sdev). */
static void stable_info(int fd, char *out, size_t cap) {
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY);
    if (f < 0) fail("open fdinfo");
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n < 0) fail("read fdinfo");
    buf[n] = 0;
    out[0] = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "pos:", 4) || !strncmp(line, "mnt_id:", 7) ||
            !strncmp(line, "ino:", 4) || !strncmp(line, "eventfd-id:", 11) ||
            !strncmp(line, "it_value:", 9))
            continue;
        char *cut = strstr(line, "  pos:");
        if (cut) *cut = 0;
        snprintf(out + strlen(out), cap - strlen(out), "fd %d %s\n", fd, line);
    }
}

enum { SEM, PLAIN, T_PERIODIC, T_REL, T_ABS, T_EXPIRED, SIG, GO, EP, N };
static int fd[N];
static const char *name[N] = {"sem", "plain", "t-periodic", "t-rel", "t-abs",
                              "t-expired", "sigfd", "go", "epoll"};

static int cmp_line(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every descriptor's stable lines, sorted (an epoll lists its
 * registrations in the kernel's order, which is by file address). */
static void snapshot(char *out, size_t cap) {
    static char raw[16384];
    char *lines[256];
    int n = 0;
    raw[0] = 0;
    for (int i = 0; i < N; i++) stable_info(fd[i], raw + strlen(raw), sizeof raw - strlen(raw));
    for (char *l = strtok(raw, "\n"); l && n < 256; l = strtok(NULL, "\n")) lines[n++] = l;
    qsort(lines, n, sizeof lines[0], cmp_line);
    out[0] = 0;
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s\n", lines[i]);
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void ready(const char *when) {
    struct epoll_event ev[16];
    int n = epoll_wait(fd[EP], ev, 16, 0);
    if (n < 0) fail("epoll_wait");
    uint64_t d[16];
    for (int i = 0; i < n; i++) d[i] = ev[i].data.u64;
    qsort(d, n, sizeof d[0], cmp);
    printf("ready %s:", when);
    for (int i = 0; i < n; i++) printf(" %#llx", (unsigned long long)d[i]);
    printf("\n");
}

static uint64_t read8(int f, const char *what) {
    uint64_t v;
    if (read(f, &v, 8) != 8) fail(what);
    return v;
}

static void add(int i, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(fd[EP], EPOLL_CTL_ADD, fd[i], &ev)) fail("epoll_ctl");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + 2);
    /* Not the checkpoint signal (SIGUSR1): selfckpt's threads block it, so
     * one this thread blocked would wait here, pending, as without
     * selfckpt. Its handler may interrupt the epoll_wait below: selfckpt
     * makes the call again. */
    if (sigprocmask(SIG_BLOCK, &m, NULL)) fail("sigprocmask");

    fd[SEM] = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
    fd[PLAIN] = eventfd(0, EFD_CLOEXEC);
    fd[GO] = eventfd(0, EFD_NONBLOCK);
    uint64_t seven = 7;
    if (fd[PLAIN] < 0 || write(fd[PLAIN], &seven, 8) != 8) fail("eventfd");
    read8(fd[SEM], "sem read"); /* mid-way: 4 left */

    struct itimerspec periodic = {{30, 0}, {0, 1000000}}, rel = {{0, 0}, {120, 0}},
                      soon = {{0, 0}, {0, 1000000}}, abs = {{0, 0}, {0, 0}};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    abs.it_value.tv_sec = now.tv_sec + 120;
    fd[T_PERIODIC] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    fd[T_REL] = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);
    fd[T_ABS] = timerfd_create(CLOCK_REALTIME, 0);
    fd[T_EXPIRED] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timerfd_settime(fd[T_PERIODIC], 0, &periodic, NULL) ||
        timerfd_settime(fd[T_REL], 0, &rel, NULL) ||
        timerfd_settime(fd[T_ABS], TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &abs, NULL) ||
        timerfd_settime(fd[T_EXPIRED], 0, &soon, NULL))
        fail("timerfd_settime");

    fd[SIG] = signalfd(-1, &m, SFD_NONBLOCK);
    if (fd[SIG] < 0) fail("signalfd");
    kill(getpid(), SIGRTMIN + 2);

    fd[EP] = epoll_create1(EPOLL_CLOEXEC);
    if (fd[EP] < 0) fail("epoll_create1");
    add(SEM, EPOLLIN, 0x1111);
    add(T_REL, EPOLLIN | EPOLLONESHOT, 0x2222);
    add(SIG, EPOLLIN, 0x3333);
    add(GO, EPOLLIN | EPOLLET, 0x4444);
    add(T_PERIODIC, EPOLLIN, 0x5555);
    add(T_EXPIRED, EPOLLIN, 0x6666);
    if (argc > 1 && !strcmp(argv[1], "stale")) {
        int moved = dup(fd[GO]);
        if (moved < 0 || close(fd[GO])) fail("stale");
        fd[GO] = moved;
    }
    usleep(50000); /* both 1 ms timers expired once */
    ready("drain-edges"); /* the edge-triggered ones report their edge now */

    static char before[16384], after[16384];
    snapshot(before, sizeof before);
    fputs(before, stdout);
    int idle = epoll_create1(0);
    int never = eventfd(0, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    if (idle < 0 || never < 0 || epoll_ctl(idle, EPOLL_CTL_ADD, never, &ev)) fail("idle epoll");
    printf("waiting\n");
    int n = epoll_wait(idle, &ev, 1, 2000); /* the checkpoint comes here */
    if (n != 0) fail("idle epoll_wait");

    snapshot(after, sizeof after);
    if (strcmp(before, after)) {
        printf("fdinfo differs; now:\n%s", after);
    } else {
        printf("fdinfo same\n");
    }
    ready("after");
    ready("again");
    uint64_t go = 1;
    if (write(fd[GO], &go, 8) != 8) fail("write go");
    ready("go-written");
    ready("go-again"); /* the edge is not repeated */
    printf("sem reads %llu %llu\n", (unsigned long long)read8(fd[SEM], "sem"),
           (unsigned long long)read8(fd[SEM], "sem"));
    printf("plain reads %llu\n", (unsigned long long)read8(fd[PLAIN], "plain"));
    printf("t-periodic ticks %llu\n", (unsigned long long)read8(fd[T_PERIODIC], "periodic"));
    printf("t-expired ticks %llu\n", (unsigned long long)read8(fd[T_EXPIRED], "expired"));
    struct itimerspec cur;
    timerfd_gettime(fd[T_PERIODIC], &cur);
    printf("t-periodic interval %lds, next within it %d\n", (long)cur.it_interval.tv_sec,
           cur.it_value.tv_sec < 30 && (cur.it_value.tv_sec || cur.it_value.tv_nsec));
    timerfd_gettime(fd[T_REL], &cur);
    /* (generous bounds: a loaded machine may take long to restart) */
    printf("t-rel left 60-120s %d\n", cur.it_value.tv_sec >= 60 && cur.it_value.tv_sec < 120);
    timerfd_gettime(fd[T_ABS], &cur);
    printf("t-abs left 60-120s %d\n", cur.it_value.tv_sec >= 60 && cur.it_value.tv_sec < 120);
    struct signalfd_siginfo si;
    if (read(fd[SIG], &si, sizeof si) != sizeof si) fail("signalfd read");
    printf("sigfd read signal %u\n", si.ssi_signo);
    if (read(fd[SIG], &si, sizeof si) != -1 || errno != EAGAIN) fail("sigfd second read");
    ready("end");
    for (int i = 0; i < N; i++)
        printf("%s fl %#o fd %d\n", name[i], fcntl(fd[i], F_GETFL) & (O_NONBLOCK | O_ACCMODE),
               fcntl(fd[i], F_GETFD));
    printf("eventfds ok\n");
    return 0;
}
