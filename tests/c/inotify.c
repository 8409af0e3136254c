/* inotify across a checkpoint (issue 14): a directory and two files
 * watched with their masks, a hole in the watch numbers (a watch removed),
 * a non-blocking descriptor; forty watches on a second one. It prints the watch numbers, "waiting",
 * sleeps (the checkpoint comes then), touches the files and prints the
 * events it reads: the same lines in an uninterrupted run.
 *
 * With "queued", a file made in DIR before "waiting" leaves an event
 * queued, not read: the checkpoint must name it.
 *
 * usage: inotify DIR [queued]  (DIR and DIR.many are made; DIR must not
 * hold "new") */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static void touch(const char *dir, const char *name, const char *data) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0 || write(fd, data, strlen(data)) < 0 || close(fd) != 0)
        fail(name);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return 2;
    const char *dir = argv[1];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        fail("mkdir");
    touch(dir, "a", "");
    touch(dir, "b", "");
    touch(dir, "c", "");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0)
        fail("inotify_init1");
    char p[4096];
    int w1 = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
    snprintf(p, sizeof p, "%s/a", dir);
    int w2 = inotify_add_watch(in, p, IN_MODIFY);
    snprintf(p, sizeof p, "%s/b", dir);
    int w3 = inotify_add_watch(in, p, IN_OPEN);
    /* A relative path: the watch is on the file, whatever the cwd. */
    if (chdir(dir) != 0)
        fail("chdir");
    int w4 = inotify_add_watch(in, "c", IN_CLOSE_WRITE);
    if (chdir("/") != 0)
        fail("chdir /");
    if (w1 < 0 || w2 < 0 || w3 < 0 || w4 < 0)
        fail("inotify_add_watch");
    inotify_rm_watch(in, w3);
    char ev[4096];
    while (read(in, ev, sizeof ev) > 0) /* the IN_IGNORED of w3 */
        ;
    printf("watches %d %d %d, flags %s\n", w1, w2, w4,
           fcntl(in, F_GETFL) & O_NONBLOCK ? "nonblock" : "blocking");
    /* Forty more watches on another descriptor: numbers past 9 (the
     * kernel shows them in hex). */
    int many = inotify_init1(IN_NONBLOCK);
    int last = -1;
    snprintf(p, sizeof p, "%s.many", dir);
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        fail("mkdir many");
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof p, "%s.many/m%02d", dir, i);
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            fail("mkdir many");
        last = inotify_add_watch(many, p, IN_CREATE);
        if (last < 0)
            fail("inotify_add_watch many");
    }
    if (argc > 2 && strcmp(argv[2], "queued") == 0)
        touch(dir, "queued", "");
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    touch(dir, "new", "x");
    touch(dir, "a", "y");
    touch(dir, "c", "z");
    snprintf(p, sizeof p, "%s/new", dir);
    unlink(p);
    printf("watches now %d %d %d, flags %s\n", w1, w2, w4,
           fcntl(in, F_GETFL) & O_NONBLOCK ? "nonblock" : "blocking");
    struct pollfd pf = {in, POLLIN, 0};
    int seen = 0;
    while (seen < 4 && poll(&pf, 1, 2000) > 0) {
        ssize_t n = read(in, ev, sizeof ev);
        for (char *q = ev; n > 0 && q < ev + n;) {
            struct inotify_event *e = (struct inotify_event *)q;
            printf("event wd %d mask %#x name %s\n", e->wd, e->mask, e->len ? e->name : "-");
            seen++;
            q += sizeof *e + e->len;
        }
    }
    /* An event in every one of the forty directories, each on its watch. */
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof p, "%s.many/m%02d", dir, i);
        touch(p, "x", "");
    }
    int wrong = 0, got = 0;
    struct pollfd pm = {many, POLLIN, 0};
    while (got < 40 && poll(&pm, 1, 2000) > 0) {
        ssize_t n = read(many, ev, sizeof ev);
        for (char *q = ev; n > 0 && q < ev + n;) {
            struct inotify_event *e = (struct inotify_event *)q;
            wrong += e->wd != last - 39 + got;
            got++;
            q += sizeof *e + e->len;
        }
    }
    printf("many watches: %d events, %d on another watch\n", got, wrong);
    printf("inotify ok\n");
    return 0;
}
