/* Connections to peers outside the process (issue 14): a TCP connection
 * to a server and a UNIX stream connection to a "daemon", both run by the
 * test. They cannot come back: the checkpoint names them and a restart
 * refuses them; with --unrestorable=socket each comes back as a socket of
 * its family and type that fails as a dropped connection does. After the
 * wait it prints what reading and writing each one does. A TCP connection
 * with both ends in the process comes back as it was.
 *
 * usage: sock_outside PORT PATH */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static const char *err_name(int e) {
    switch (e) {
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case EAGAIN: return "EAGAIN";
    case ENOTCONN: return "ENOTCONN";
    default: return strerror(e);
    }
}

static void use(const char *name, int fd) {
    int v, t;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l);
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l);
    printf("%s: family %s type %d\n", name, v == AF_INET ? "inet" : v == AF_UNIX ? "unix" : "?", t);
    char b[16];
    for (int i = 0; i < 2; i++) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n < 0) printf("%s: read: %s\n", name, err_name(errno));
        else printf("%s: read: %zd%s\n", name, n, n == 0 ? " (end of file)" : "");
    }
    ssize_t n = send(fd, "x", 1, MSG_NOSIGNAL);
    if (n < 0) printf("%s: write: %s\n", name, err_name(errno));
    else printf("%s: write: %zd\n", name, n);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int t = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(t, (struct sockaddr *)&in, sizeof in)) fail("connect tcp");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", argv[2]);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(u, (struct sockaddr *)&un, sizeof un)) fail("connect unix");
    /* A TCP connection with both ends here (through a listener of its own). */
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; /* its port can be bound again while the kill's TIME_WAIT lasts */
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t ll = sizeof lo;
    if (bind(l, (struct sockaddr *)&lo, sizeof lo) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&lo, &ll))
        fail("listener");
    int tc = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(tc, (struct sockaddr *)&lo, sizeof lo)) fail("connect pair");
    int ta = accept(l, NULL, NULL);
    if (ta < 0) fail("accept pair");
    printf("waiting\n");
    struct timespec d = {2, 0};
    while (nanosleep(&d, &d) && errno == EINTR) {
    }
    use("tcp", t);
    use("unix", u);
    use("tcp pair", tc);
    printf("outside ok\n");
    return 0;
}
