/* TCP connections that are over while the program holds them (CRIU's
 * socket-tcp-closed): before printing "waiting" it makes
 *   - a connection with both ends here, each end shut for writing, both
 *     in state CLOSE once the FINs are acknowledged;
 *   - a connection its peer reset (SO_LINGER 0), the reset's error read;
 *   - a fresh socket shut for reading (the kernel sets the bit and says
 *     ENOTCONN);
 *   - UDP sockets, connected to each other, one shut for writing (a send
 *     fails with EPIPE), one for reading (CRIU's socket_udp_shutdown);
 * then waits 2 s (the checkpoint comes then) and prints, for each, what a
 * program sees: its TCP state, what read, write and poll give, its error,
 * and whether its own and its peer's addresses (SO_PEERNAME) are those
 * of before. Prints the same in an uninterrupted run.
 *
 * With "unread", the reset's error is left unread: the checkpoint must
 * name that socket (its error would not come back).
 *
 * usage: tcp_closed [unread] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static int state(int fd) {
    struct tcp_info ti;
    socklen_t l = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l)) fail("TCP_INFO");
    return ti.tcpi_state;
}

static void until_closed(int fd) {
    for (int i = 0; i < 5000 && state(fd) != TCP_CLOSE; i++) usleep(1000);
    if (state(fd) != TCP_CLOSE) fail("the connection does not end");
}

struct names {
    struct sockaddr_in me, peer;
    int has_peer;
};

static struct names names_of(int fd) {
    struct names n;
    memset(&n, 0, sizeof n);
    socklen_t l = sizeof n.me;
    if (getsockname(fd, (struct sockaddr *)&n.me, &l)) fail("getsockname");
    l = sizeof n.peer;
    n.has_peer = getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &n.peer, &l) == 0;
    return n;
}

static const char *err_name(int e) {
    switch (e) {
    case 0: return "none";
    case ENOTCONN: return "ENOTCONN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    default: return strerror(e);
    }
}

static void show(const char *what, int fd, const struct names *was) {
    printf("%s: state %d", what, state(fd));
    struct names now = names_of(fd);
    printf(" own address %s", memcmp(&now.me, &was->me, sizeof now.me) ? "changed" : "same");
    printf(" peer %s", !now.has_peer ? "none"
                       : !was->has_peer ? "new"
                       : memcmp(&now.peer, &was->peer, sizeof now.peer) ? "changed" : "same");
    struct sockaddr_in p;
    socklen_t l = sizeof p;
    errno = 0;
    int r = getpeername(fd, (struct sockaddr *)&p, &l);
    printf(" getpeername %d %s", r, r ? err_name(errno) : "");
    struct pollfd pf = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
    poll(&pf, 1, 0);
    printf(" poll %#x", pf.revents);
    int e = -1;
    l = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
    printf(" error %s", err_name(e));
    char c;
    errno = 0;
    ssize_t n = read(fd, &c, 1);
    printf(" read %zd %s", n, n < 0 ? err_name(errno) : "");
    errno = 0;
    n = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    printf(" write %zd %s\n", n, n < 0 ? err_name(errno) : "");
}

int main(int argc, char **argv) {
    int unread = argc > 1 && !strcmp(argv[1], "unread");
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&any, sizeof any) || listen(l, 4)) fail("listener");
    struct sockaddr_in at;
    socklen_t al = sizeof at;
    if (getsockname(l, (struct sockaddr *)&at, &al)) fail("getsockname");

    /* Both ends here, both shut: FINs both ways. */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&at, sizeof at)) fail("connect");
    int a = accept(l, NULL, NULL);
    if (a < 0) fail("accept");
    if (shutdown(c, SHUT_WR)) fail("shutdown client");
    char b;
    if (read(a, &b, 1) != 0) fail("the accepted end reads its FIN");
    if (shutdown(a, SHUT_WR)) fail("shutdown accepted");
    if (read(c, &b, 1) != 0) fail("the client reads its FIN");
    until_closed(c);
    until_closed(a);

    /* Reset by its peer. */
    int r = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(r, (struct sockaddr *)&at, sizeof at)) fail("connect");
    int ra = accept(l, NULL, NULL);
    if (ra < 0) fail("accept");
    struct linger lg = {1, 0};
    if (setsockopt(ra, SOL_SOCKET, SO_LINGER, &lg, sizeof lg)) fail("SO_LINGER");
    close(ra);
    until_closed(r);
    if (!unread && (read(r, &b, 1) != -1 || errno != ECONNRESET)) fail("the reset is read");

    /* Fresh, shut for reading. */
    int f = socket(AF_INET, SOCK_STREAM, 0);
    if (shutdown(f, SHUT_RD) == 0 || errno != ENOTCONN) fail("shutdown of a fresh socket");

    /* UDP, shut one way each. */
    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = any, ub = any;
    socklen_t ul = sizeof ua;
    if (bind(u1, (struct sockaddr *)&ua, sizeof ua) || getsockname(u1, (struct sockaddr *)&ua, &ul) ||
        bind(u2, (struct sockaddr *)&ub, sizeof ub) ||
        getsockname(u2, (struct sockaddr *)&ub, &(socklen_t){sizeof ub}) ||
        connect(u1, (struct sockaddr *)&ub, sizeof ub) || connect(u2, (struct sockaddr *)&ua, sizeof ua))
        fail("udp");
    if (shutdown(u1, SHUT_WR) || shutdown(u2, SHUT_RD)) fail("udp shutdown");
    struct names nc = names_of(c), na = names_of(a), nr = names_of(r), nf = names_of(f);
    printf("waiting\n");
    fflush(stdout);
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
    show("client", c, &nc);
    show("accepted", a, &na);
    show("reset", r, &nr);
    show("fresh", f, &nf);
    for (int i = 0; i < 2; i++) {
        int u = i ? u2 : u1;
        struct pollfd pf = {u, POLLIN | POLLOUT | POLLRDHUP, 0};
        poll(&pf, 1, 0);
        errno = 0;
        ssize_t n = send(u, "d", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        printf("udp shut for %s: poll %#x send %zd %s\n", i ? "reading" : "writing", pf.revents,
               n, n < 0 ? err_name(errno) : "");
    }
    /* The listener still takes connections. */
    int n = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(n, (struct sockaddr *)&at, sizeof at)) fail("connect again");
    int na2 = accept(l, NULL, NULL);
    printf("listener accepts: %s\n", na2 >= 0 ? "yes" : "no");
    printf("tcp_closed ok\n");
    return 0;
}
