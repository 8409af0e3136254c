/* Sockets across a checkpoint (issue 14). Sets up, before printing
 * "waiting":
 *   - socketpairs (stream, datagram, seqpacket) with data queued both
 *     ways (datagram messages of 0, 1 and 3000 bytes: boundaries), options
 *     (SO_RCVBUF/SNDBUF, SO_PASSCRED, O_NONBLOCK) and a shut-down half;
 *   - a UNIX stream connection made through a path-bound listener (data
 *     queued both ways; its file chmod 0640) and an abstract listener;
 *   - TCP listeners (IPv4 with SO_REUSEADDR, TCP_NODELAY, SO_KEEPALIVE;
 *     IPv6 with IPV6_V6ONLY and without SO_REUSEADDR), each with its
 *     backlog; bound UDP sockets (IPv4, IPv6 with SO_REUSEPORT);
 *   - an unbound TCP socket (non-blocking), a netlink route socket bound
 *     to a group;
 * then waits 2 s (the checkpoint comes then) and checks what it holds:
 * queued bytes and message boundaries, options read back, addresses as
 * before, listeners accepting a new connection, UDP receiving on the same
 * port. Prints the same in an uninterrupted run.
 *
 * With DAEMON, a datagram socket connected to that path (a daemon's, as
 * syslog's /dev/log) sends "before" and, after the wait, "after".
 *
 * usage: sockets DIR [DAEMON]   (DIR: where the path-bound listener lives) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static int opt(int fd, int level, int name) {
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l)) fail("getsockopt");
    return v;
}

static void set(int fd, int level, int name, int v) {
    if (setsockopt(fd, level, name, &v, sizeof v)) fail("setsockopt");
}

static void put(int fd, const void *b, size_t n) {
    if (send(fd, b, n, MSG_NOSIGNAL) != (ssize_t)n) fail("send");
}

static uint32_t sum(const unsigned char *b, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

/* Reads every message queued, non-blocking: each one's length and hash. */
static void drain(const char *name, int fd) {
    static unsigned char buf[1 << 17];
    int n_msgs = 0;
    printf("%s:", name);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            printf(" (%s)", errno == EAGAIN ? "empty" : strerror(errno));
            break;
        }
        if (n == 0 && opt(fd, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM) {
            printf(" eof");
            break;
        }
        printf(" [%zd %08x]", n, sum(buf, n));
        if (++n_msgs > 64) break;
    }
    printf("\n");
}

static void options(const char *name, int fd) {
    int fl = fcntl(fd, F_GETFL);
    int dom = opt(fd, SOL_SOCKET, SO_DOMAIN), type = opt(fd, SOL_SOCKET, SO_TYPE);
    /* A TCP connection's buffer sizes are the kernel's autotuning. */
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    int tuned = (dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM &&
                getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
    printf("%s: type %d rcvbuf %d sndbuf %d reuseaddr %d reuseport %d keepalive %d nonblock %d cloexec %d",
           name, type, tuned ? -1 : opt(fd, SOL_SOCKET, SO_RCVBUF),
           tuned ? -1 : opt(fd, SOL_SOCKET, SO_SNDBUF),
           opt(fd, SOL_SOCKET, SO_REUSEADDR), opt(fd, SOL_SOCKET, SO_REUSEPORT),
           opt(fd, SOL_SOCKET, SO_KEEPALIVE), !!(fl & O_NONBLOCK),
           !!(fcntl(fd, F_GETFD) & FD_CLOEXEC));
    if (dom == AF_UNIX) printf(" passcred %d", opt(fd, SOL_SOCKET, SO_PASSCRED));
    if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
        printf(" nodelay %d", opt(fd, IPPROTO_TCP, TCP_NODELAY));
    if (dom == AF_INET6) printf(" v6only %d", opt(fd, IPPROTO_IPV6, IPV6_V6ONLY));
    printf(" listening %d", opt(fd, SOL_SOCKET, SO_ACCEPTCONN));
    /* Options a program sets by value. */
    struct timeval rt, wt;
    struct linger lg;
    socklen_t l = sizeof rt;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, &l)) fail("SO_RCVTIMEO");
    l = sizeof wt;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wt, &l)) fail("SO_SNDTIMEO");
    l = sizeof lg;
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l)) fail("SO_LINGER");
    printf(" rcvtimeo %ld.%06ld sndtimeo %ld.%06ld linger %d/%d", (long)rt.tv_sec,
           (long)rt.tv_usec, (long)wt.tv_sec, (long)wt.tv_usec, lg.l_onoff, lg.l_linger);
    {
        /* SO_BUF_LOCK (Linux 5.14): setting a buffer size locks it too. */
        int v = -1;
        socklen_t vl = sizeof v;
        if (getsockopt(fd, SOL_SOCKET, 72, &v, &vl) == 0) printf(" buflock %d", v);
    }
    if (dom != AF_NETLINK)
        printf(" prio %d lowat %d oob %d dontroute %d bcast %d tstamp %d",
               opt(fd, SOL_SOCKET, SO_PRIORITY), opt(fd, SOL_SOCKET, SO_RCVLOWAT),
               opt(fd, SOL_SOCKET, SO_OOBINLINE), opt(fd, SOL_SOCKET, SO_DONTROUTE),
               opt(fd, SOL_SOCKET, SO_BROADCAST), opt(fd, SOL_SOCKET, SO_TIMESTAMP));
    if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
        printf(" keepidle %d keepintvl %d keepcnt %d user_timeout %d defer_accept %d",
               opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), opt(fd, IPPROTO_TCP, TCP_KEEPINTVL),
               opt(fd, IPPROTO_TCP, TCP_KEEPCNT), opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
               opt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT));
    if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
        printf(" cork %d", opt(fd, IPPROTO_TCP, TCP_CORK));
    if (dom == AF_INET || dom == AF_INET6)
        printf(" freebind %d", opt(fd, IPPROTO_IP, IP_FREEBIND));
    if (dom == AF_INET)
        printf(" tos %d ttl %d pktinfo %d recvtos %d", opt(fd, IPPROTO_IP, IP_TOS),
               opt(fd, IPPROTO_IP, IP_TTL), opt(fd, IPPROTO_IP, IP_PKTINFO),
               opt(fd, IPPROTO_IP, IP_RECVTOS));
    /* (An accepted TCP socket's multicast TTL is its SYN's TTL.) */
    if (dom == AF_INET && type != SOCK_STREAM)
        printf(" mcast_ttl %d", opt(fd, IPPROTO_IP, IP_MULTICAST_TTL));
    if (dom == AF_INET6)
        printf(" hops %d tclass %d recvpktinfo %d", opt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS),
               opt(fd, IPPROTO_IPV6, IPV6_TCLASS), opt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO));
    printf("\n");
}

static void set_time(int fd, int name, long sec, long usec) {
    struct timeval tv = {sec, usec};
    if (setsockopt(fd, SOL_SOCKET, name, &tv, sizeof tv)) fail("set a timeout");
}

struct named {
    struct sockaddr_storage a;
    socklen_t len;
};

static struct named name_of(int fd) {
    struct named n;
    n.len = sizeof n.a;
    memset(&n.a, 0, sizeof n.a);
    if (getsockname(fd, (struct sockaddr *)&n.a, &n.len)) fail("getsockname");
    return n;
}

static void same_name(const char *what, int fd, struct named *was) {
    struct named now = name_of(fd);
    printf("%s: address %s\n", what,
           now.len == was->len && !memcmp(&now.a, &was->a, now.len) ? "same" : "CHANGED");
}

/* A new client connects to the listener's address; the listener accepts. */
static void accepts(const char *what, int lis, struct named *at) {
    int fam = ((struct sockaddr *)&at->a)->sa_family;
    int c = socket(fam, SOCK_STREAM, 0);
    if (c < 0) fail("socket");
    if (connect(c, (struct sockaddr *)&at->a, at->len)) fail(what);
    int a = accept(lis, NULL, NULL);
    if (a < 0) fail("accept");
    put(c, "knock", 5);
    char b[8];
    ssize_t n = recv(a, b, sizeof b, 0);
    printf("%s: accepted a new connection, read %zd\n", what, n);
    close(a);
    close(c);
}

/* A datagram sent to the bound socket's address arrives. */
static void receives(const char *what, int s, struct named *at) {
    int fam = ((struct sockaddr *)&at->a)->sa_family;
    int c = socket(fam, SOCK_DGRAM, 0);
    if (sendto(c, "udp!", 4, 0, (struct sockaddr *)&at->a, at->len) != 4) fail("sendto");
    char b[8];
    ssize_t n = recv(s, b, sizeof b, 0);
    printf("%s: received %zd bytes on the same port\n", what, n);
    close(c);
}

/* 2 s, or SOCKETS_WAIT seconds. */
static void wait_2s(void) {
    const char *w = getenv("SOCKETS_WAIT");
    long ms = w ? atol(w) * 1000 : 2000;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct timespec d = {0, 50 * 1000 * 1000};
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sockets DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    static unsigned char big[3000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7 + 1);

    int st[2], dg[2], sq[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st)) fail("socketpair");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg)) fail("socketpair");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq)) fail("socketpair");
    set(st[0], SOL_SOCKET, SO_RCVBUF, 300000);
    set(st[1], SOL_SOCKET, SO_SNDBUF, 300000);
    set(st[1], SOL_SOCKET, SO_PASSCRED, 1);
    fcntl(st[0], F_SETFL, O_NONBLOCK);
    put(st[0], "hello from 0", 12);
    for (int i = 0; i < 20; i++) put(st[1], big, sizeof big);
    put(dg[0], "a", 1);
    put(dg[0], "", 0);
    put(dg[0], big, sizeof big);
    put(dg[1], "reply", 5);
    put(sq[0], "first", 5);
    put(sq[0], big, 100);
    put(sq[1], "other way", 9);
    if (shutdown(sq[0], SHUT_WR)) fail("shutdown");

    /* A UNIX connection through a path-bound listener. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s/listener.sock", argv[1]);
    unlink(un.sun_path);
    int ul = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(ul, (struct sockaddr *)&un, sizeof un) || listen(ul, 7)) fail("unix listener");
    /* Its file's mode is the program's (a restart binds it again). */
    if (chmod(un.sun_path, 0640)) fail("chmod listener");
    int uc = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(uc, (struct sockaddr *)&un, sizeof un)) fail("unix connect");
    int ua = accept(ul, NULL, NULL);
    if (ua < 0) fail("unix accept");
    put(uc, "ping", 4);
    put(ua, "pong!", 5);
    struct named ul_name = name_of(ul);
    struct named ua_name = name_of(ua), uc_name = name_of(uc);
    struct named uc_peer;
    uc_peer.len = sizeof uc_peer.a;
    if (getpeername(uc, (struct sockaddr *)&uc_peer.a, &uc_peer.len)) fail("getpeername");

    /* An abstract listener. */
    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    int ablen = snprintf(ab.sun_path + 1, sizeof ab.sun_path - 1, "selfckpt-test%s", argv[1]);
    int al = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(al, (struct sockaddr *)&ab, offsetof(struct sockaddr_un, sun_path) + 1 + ablen) ||
        listen(al, 3))
        fail("abstract listener");
    struct named al_name = name_of(al);
    /* A connection the abstract listener has not accepted yet. */
    int pc = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(pc, (struct sockaddr *)&ab, offsetof(struct sockaddr_un, sun_path) + 1 + ablen))
        fail("pending connect");

    /* TCP listeners. */
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int t4 = socket(AF_INET, SOCK_STREAM, 0);
    set(t4, SOL_SOCKET, SO_REUSEADDR, 1);
    set(t4, IPPROTO_TCP, TCP_NODELAY, 1);
    set(t4, SOL_SOCKET, SO_KEEPALIVE, 1);
    if (bind(t4, (struct sockaddr *)&in4, sizeof in4) || listen(t4, 5)) fail("tcp4 listener");
    struct named t4_name = name_of(t4);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int t6 = socket(AF_INET6, SOCK_STREAM, 0);
    int have6 = t6 >= 0;
    struct named t6_name = {0};
    int u6 = -1;
    struct named u6_name = {0};
    if (have6) {
        set(t6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        if (bind(t6, (struct sockaddr *)&in6, sizeof in6) || listen(t6, 9)) have6 = 0;
        else t6_name = name_of(t6);
    }
    /* A TCP connection over IPv6 with both ends here (IPV6_V6ONLY on both,
     * from the listener and the socket), data queued one way. */
    int t6c = -1, t6a = -1;
    if (have6) {
        t6c = socket(AF_INET6, SOCK_STREAM, 0);
        set(t6c, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        if (connect(t6c, (struct sockaddr *)&t6_name.a, t6_name.len)) fail("tcp6 connect");
        t6a = accept(t6, NULL, NULL);
        if (t6a < 0) fail("tcp6 accept");
        put(t6c, "over six", 8);
    }
    if (have6) {
        u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        set(u6, SOL_SOCKET, SO_REUSEPORT, 1);
        if (bind(u6, (struct sockaddr *)&in6, sizeof in6)) fail("udp6 bind");
        u6_name = name_of(u6);
    }
    /* A TCP connection with both ends here, made through the listener:
     * data queued both ways, the accepted end's writing half shut. */
    int tc = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(tc, (struct sockaddr *)&t4_name.a, t4_name.len)) fail("tcp connect");
    int tsv = accept(t4, NULL, NULL);
    if (tsv < 0) fail("tcp accept");
    put(tc, "tcp hello", 9);
    put(tsv, big, sizeof big);
    if (shutdown(tsv, SHUT_WR)) fail("tcp shutdown");
    struct named tc_name = name_of(tc), tsv_name = name_of(tsv);
    /* A TCP connection the listener has not accepted yet. */
    int tp = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(tp, (struct sockaddr *)&t4_name.a, t4_name.len)) fail("tcp pending connect");
    struct named tp_name = name_of(tp);

    int u4 = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (bind(u4, (struct sockaddr *)&in4, sizeof in4)) fail("udp4 bind");
    struct named u4_name = name_of(u4);
    fcntl(u4, F_SETFL, 0);

    /* A bound UNIX datagram socket with messages queued, one connected
     * to it (its peer is one-way), and a second number for a socketpair
     * end. */
    struct sockaddr_un ud = {.sun_family = AF_UNIX};
    snprintf(ud.sun_path, sizeof ud.sun_path, "%s/dgram.sock", argv[1]);
    unlink(ud.sun_path);
    int ub = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(ub, (struct sockaddr *)&ud, sizeof ud)) fail("bind dgram");
    int uk = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (connect(uk, (struct sockaddr *)&ud, sizeof ud)) fail("connect dgram");
    put(uk, "to bound", 8);
    put(uk, big, 2000);
    int twin = dup(st[1]);

    int fresh = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    struct sockaddr_nl snl = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    if (nl < 0 || bind(nl, (struct sockaddr *)&snl, sizeof snl)) fail("netlink");

    int logger = -1;
    if (argc > 2) {
        struct sockaddr_un lg = {.sun_family = AF_UNIX};
        snprintf(lg.sun_path, sizeof lg.sun_path, "%s", argv[2]);
        logger = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (connect(logger, (struct sockaddr *)&lg, sizeof lg)) fail("connect to the daemon");
        put(logger, "before", 6);
    }

    /* Options set by value, on sockets of every role. */
    set_time(st[0], SO_RCVTIMEO, 4, 500000);
    set_time(tc, SO_RCVTIMEO, 2, 500000);
    set_time(tc, SO_SNDTIMEO, 1, 250000);
    struct linger lg = {1, 3};
    if (setsockopt(tc, SOL_SOCKET, SO_LINGER, &lg, sizeof lg)) fail("SO_LINGER");
    set(tc, IPPROTO_TCP, TCP_KEEPIDLE, 77);
    set(tc, IPPROTO_TCP, TCP_KEEPINTVL, 11);
    set(tc, IPPROTO_TCP, TCP_KEEPCNT, 4);
    set(tc, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
    set(tc, IPPROTO_IP, IP_TOS, 0x10);
    set(tc, IPPROTO_IP, IP_TTL, 33);
    set(tc, SOL_SOCKET, SO_PRIORITY, 5);
    set(t4, IPPROTO_TCP, TCP_DEFER_ACCEPT, 5);
    set(t4, IPPROTO_TCP, TCP_CORK, 1);
    set(u4, SOL_SOCKET, SO_BROADCAST, 1);
    setsockopt(u4, SOL_SOCKET, 72 /* SO_BUF_LOCK */, &(int){1}, sizeof(int));
    set(u4, IPPROTO_IP, IP_MULTICAST_TTL, 7);
    set(u4, IPPROTO_IP, IP_PKTINFO, 1);
    set(u4, IPPROTO_IP, IP_RECVTOS, 1);
    set(u4, SOL_SOCKET, SO_TIMESTAMP, 1);
    set(fresh, SOL_SOCKET, SO_RCVLOWAT, 10);
    set(fresh, SOL_SOCKET, SO_OOBINLINE, 1);
    set(fresh, SOL_SOCKET, SO_DONTROUTE, 1);
    if (have6) {
        set(t6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 9);
        set(t6, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
        set(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        set(u6, IPPROTO_IP, IP_FREEBIND, 1); /* an IP-level option of an IPv6 socket */
    }

    printf("waiting\n");
    wait_2s(); /* the checkpoint comes here */
    if (logger >= 0) {
        ssize_t n = send(logger, "after", 5, MSG_NOSIGNAL);
        printf("daemon: sent %zd\n", n);
    }

    options("stream 0", st[0]);
    options("stream 1", st[1]);
    options("dgram 0", dg[0]);
    options("seqpacket 0", sq[0]);
    drain("stream 0 reads", st[0]);
    drain("stream 1 reads", st[1]);
    drain("dgram 1 reads", dg[1]);
    drain("dgram 0 reads", dg[0]);
    drain("seqpacket 1 reads", sq[1]);
    drain("seqpacket 0 reads", sq[0]);
    put(sq[1], "still", 5);
    drain("seqpacket 0 reads again", sq[0]);
    ssize_t wr = send(sq[0], "x", 1, MSG_NOSIGNAL);
    printf("seqpacket 0 writes: %zd (%s)\n", wr, wr < 0 && errno == EPIPE ? "EPIPE" : "?");
    put(st[0], "more", 4);
    drain("stream 1 reads more", st[1]);

    drain("bound dgram reads", ub);
    put(uk, "after", 5);
    drain("bound dgram reads after", ub);
    put(twin, "via the twin", 12);
    drain("stream 0 reads the twin's", st[0]);
    close(twin);
    put(st[1], "still open", 10);
    drain("stream 0 reads after closing the twin", st[0]);

    drain("unix client reads", uc);
    drain("unix accepted reads", ua);
    put(uc, "after", 5);
    drain("unix accepted reads after", ua);
    same_name("unix accepted", ua, &ua_name);
    same_name("unix client", uc, &uc_name);
    {
        struct named now;
        now.len = sizeof now.a;
        memset(&now.a, 0, sizeof now.a);
        getpeername(uc, (struct sockaddr *)&now.a, &now.len);
        printf("unix client: peer %s\n",
               now.len == uc_peer.len && !memcmp(&now.a, &uc_peer.a, now.len) ? "same" : "CHANGED");
    }
    options("unix listener", ul);
    same_name("unix listener", ul, &ul_name);
    struct stat sb;
    int is_sock = stat(((struct sockaddr_un *)&ul_name.a)->sun_path, &sb) == 0 && S_ISSOCK(sb.st_mode);
    printf("unix listener file: %s, mode %o\n", is_sock ? "a socket" : "missing",
           is_sock ? (unsigned)(sb.st_mode & 07777) : 0u);
    accepts("unix listener", ul, &ul_name);
    same_name("abstract listener", al, &al_name);
    {
        int pa = accept(al, NULL, NULL);
        if (pa < 0) fail("accept pending");
        put(pc, "late", 4);
        drain("pending connection, accepted now, reads", pa);
        put(pa, "back", 4);
        drain("pending client reads", pc);
        close(pa);
    }
    accepts("abstract listener", al, &al_name);

    {
        struct pollfd pf[2] = {{tc, POLLIN, 0}, {tsv, POLLIN, 0}};
        poll(pf, 2, 2000);
        drain("tcp client reads", tc);
        drain("tcp accepted reads", tsv);
        same_name("tcp client", tc, &tc_name);
        same_name("tcp accepted", tsv, &tsv_name);
        options("tcp client", tc);
        options("tcp accepted", tsv);
        put(tc, "more", 4);
        struct pollfd one = {tsv, POLLIN, 0};
        poll(&one, 1, 2000);
        drain("tcp accepted reads more", tsv);
        ssize_t w = send(tsv, "x", 1, MSG_NOSIGNAL);
        printf("tcp accepted writes: %zd (%s)\n", w, w < 0 && errno == EPIPE ? "EPIPE" : "?");
    }
    {
        int pa = accept(t4, NULL, NULL);
        if (pa < 0) fail("accept the pending tcp connection");
        same_name("tcp pending client", tp, &tp_name);
        put(tp, "late", 4);
        struct pollfd one = {pa, POLLIN, 0};
        poll(&one, 1, 2000);
        drain("tcp pending connection, accepted now, reads", pa);
        close(pa);
    }
    options("tcp4 listener", t4);
    same_name("tcp4 listener", t4, &t4_name);
    accepts("tcp4 listener", t4, &t4_name);
    if (have6) {
        options("tcp6 listener", t6);
        options("tcp6 client", t6c);
        options("tcp6 accepted", t6a);
        struct pollfd six = {t6a, POLLIN, 0};
        poll(&six, 1, 2000);
        drain("tcp6 accepted reads", t6a);
        same_name("tcp6 listener", t6, &t6_name);
        accepts("tcp6 listener", t6, &t6_name);
        options("udp6", u6);
        same_name("udp6", u6, &u6_name);
        receives("udp6", u6, &u6_name);
    } else {
        printf("no IPv6 here\n");
    }
    options("udp4", u4);
    same_name("udp4", u4, &u4_name);
    receives("udp4", u4, &u4_name);
    options("fresh tcp", fresh);
    options("netlink", nl);
    struct sockaddr_nl got;
    socklen_t gl = sizeof got;
    getsockname(nl, (struct sockaddr *)&got, &gl);
    printf("netlink groups %u\n", got.nl_groups);
    printf("sockets ok\n");
    return 0;
}
