/* Threads blocked in socket calls (issue 13): accept on a listener no one
 * connects to yet, connect to a UNIX listener whose backlog is full, read
 * on a socketpair end nothing is written to yet. Each treats EINTR or an
 * early return as fatal. After SECONDS the main thread unblocks them one
 * by one. Checkpoints while they wait must not show.
 *
 * usage: sock_eintr DIR SECONDS
 * prints "ready" once every thread is blocked, then one "ok NAME" line per
 * call in a fixed order, and "sock_eintr ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int lis_accept, lis_full, pair[2];
static struct sockaddr_un full_addr, accept_addr;

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static int listener(struct sockaddr_un *a, const char *dir, const char *name, int backlog) {
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    unlink(a->sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)a, sizeof *a) || listen(l, backlog)) fail("listener");
    return l;
}

static void *t_accept(void *r) {
    int c = accept(lis_accept, NULL, NULL);
    if (c < 0) fail("accept");
    *(int *)r = c;
    return NULL;
}

static void *t_connect(void *r) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&full_addr, sizeof full_addr)) fail("connect");
    *(int *)r = c;
    return NULL;
}

static void *t_read(void *r) {
    char b[8];
    ssize_t n = read(pair[1], b, sizeof b);
    if (n != 5) fail("read");
    *(int *)r = (int)n;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int secs = atoi(argv[2]);
    lis_accept = listener(&accept_addr, argv[1], "accept.sock", 4);
    lis_full = listener(&full_addr, argv[1], "full.sock", 0);
    /* Fill the backlog: the next blocking connect waits. */
    int filler = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(filler, (struct sockaddr *)&full_addr, sizeof full_addr)) fail("filler");
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) fail("socketpair");
    int ra = -1, rc = -1, rr = -1;
    pthread_t ta, tc, tr;
    pthread_create(&ta, NULL, t_accept, &ra);
    pthread_create(&tc, NULL, t_connect, &rc);
    pthread_create(&tr, NULL, t_read, &rr);
    /* Time for every thread to block in its call. */
    struct timespec settle = {0, 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    printf("ready\n");
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct timespec d = {0, 50 * 1000 * 1000};
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < secs);
    if (ra != -1 || rc != -1 || rr != -1) {
        printf("FAIL a call returned early\n");
        return 1;
    }
    /* accept: a client comes. */
    int cl = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(cl, (struct sockaddr *)&accept_addr, sizeof accept_addr)) fail("client");
    pthread_join(ta, NULL);
    printf("ok accept\n");
    /* connect: the full listener accepts its first, room for the next. */
    int a1 = accept(lis_full, NULL, NULL);
    if (a1 < 0) fail("accept full");
    pthread_join(tc, NULL);
    printf("ok connect\n");
    /* read: five bytes come. */
    if (write(pair[0], "hello", 5) != 5) fail("write");
    pthread_join(tr, NULL);
    printf("ok read\n");
    printf("sock_eintr ok\n");
    return 0;
}
