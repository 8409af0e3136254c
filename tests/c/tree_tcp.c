/* A TCP connection between a parent and its forked child: the parent
 * listens on 127.0.0.1 (the kernel picks the port), the child connects,
 * the parent accepts. They exchange counters: the parent keeps two
 * numbers ahead, the child reads each in two halves with a nap between
 * and answers it with n*n + its own count. In round HOLD the parent
 * sends the next number, prints its line 200 ms later and sleeps 1.3 s
 * more before reading the answer queued to it meanwhile, and the child
 * sleeps 1.5 s between the halves of that number: a checkpoint taken
 * once the line is out finds unread data queued at both ends. The child's socket has TCP_NODELAY, the parent's
 * accepted socket is non-blocking (read after poll). At the end each side
 * prints what it sees of its socket; the parent waits for the child and
 * prints its status. Deterministic output.
 *
 * usage: tree_tcp ROUNDS HOLD [close|outside PORT]: with "close" the parent
 * closes its listener once it accepted; with "outside PORT" the parent
 * also holds a connection to a server at 127.0.0.1:PORT outside the tree
 * (it sends "hi" and reads the echo first). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int full_read(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, -1);
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r == 0)
            return -1;
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue; /* the non-blocking end */
        if (r < 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int full_write(int fd, const void *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (r < 0) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, -1);
            continue;
        }
        put += (size_t)r;
    }
    return 0;
}

static void show(const char *who, int fd) {
    int nd = 0;
    socklen_t l = sizeof nd;
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &l);
    int nb = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
    printf("%s: nodelay %d nonblock %d\n", who, nd != 0, nb);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    int hold = argc > 2 ? atoi(argv[2]) : 15;
    const char *mode = argc > 3 ? argv[3] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    int out = -1;
    if (strcmp(mode, "outside") == 0 && argc > 4) {
        struct sockaddr_in o = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
        o.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        out = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(out, (struct sockaddr *)&o, sizeof o) != 0)
            return 6;
        char b[2];
        if (write(out, "hi", 2) != 2 || full_read(out, b, 2) != 0)
            return 6;
        printf("outside: %.2s\n", b);
    }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) != 0)
        return 1;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        close(l);
        if (out >= 0)
            close(out);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c, (struct sockaddr *)&a, sizeof a) != 0)
            _exit(7);
        long mine = 0;
        for (;;) {
            long n;
            int low;
            if (full_read(c, &n, sizeof low) != 0)
                break;
            memcpy(&low, &n, sizeof low);
            nap(low == hold + 2 ? 1500 : 10);
            if (full_read(c, (char *)&n + sizeof low, sizeof n - sizeof low) != 0 || n < 0)
                break;
            mine += 1;
            long ans = n * n + mine;
            full_write(c, &ans, sizeof ans);
        }
        show("child", c);
        _exit((int)(mine % 200));
    }
    int s = accept(l, NULL, NULL);
    if (s < 0)
        return 1;
    if (strcmp(mode, "close") == 0)
        close(l);
    fcntl(s, F_SETFL, O_NONBLOCK);
    /* Two numbers ahead: the child always has one to read. */
    long next = 1;
    for (; next <= 2; next++)
        full_write(s, &next, sizeof next);
    for (long n = 1; n <= rounds; n++) {
        long ans;
        if (full_read(s, &ans, sizeof ans) != 0)
            return 2;
        long v = next <= rounds ? next++ : -1;
        if (n != hold) {
            printf("%ld -> %ld\n", n, ans);
            nap(40);
        }
        if (v > 0 || n == rounds)
            full_write(s, &v, sizeof v);
        if (n == hold) {
            /* The line once the data is queued both ways. */
            nap(200);
            printf("%ld -> %ld\n", n, ans);
            nap(1300);
        }
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 4;
    }
    show("parent", s);
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
