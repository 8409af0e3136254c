/* Multicast receivers on the loopback interface: before printing
 * "waiting" it makes
 *   - a UDP socket bound to a port that joins two groups on lo: one
 *     plainly (IP_ADD_MEMBERSHIP by address), one by interface index
 *     (MCAST_JOIN_GROUP) with a source blocked (IP_BLOCK_SOURCE);
 *   - a second UDP socket bound to the same port (SO_REUSEADDR) that
 *     joins nothing (both with IP_MULTICAST_ALL off: each receives only
 *     the groups it joined itself);
 *   - an IPv6 UDP socket that joins ff02::4242 on lo (where the kernel
 *     has IPv6);
 * then waits 2 s (the checkpoint comes then), sends a datagram to each
 * group and to a group nobody joined, and prints what each socket
 * receives (a socket that joined a group receives its datagrams; one
 * that did not, nothing), the source filter of the second group, and for
 * the IPv6 one what the kernel says of its membership. Prints the same in an uninterrupted run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT 45123

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int udp_bound(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one))
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (bind(s, (void *)&a, sizeof a))
        die("bind");
    int zero = 0;
    if (setsockopt(s, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero))
        die("IP_MULTICAST_ALL");
    return s;
}

/* Everything queued to `s` within 300 ms, one line. */
static void drain(const char *name, int s) {
    printf("%s:", name);
    int got = 0;
    for (;;) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, got ? 50 : 300) <= 0)
            break;
        char buf[64];
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n < 0)
            break;
        buf[n] = 0;
        printf(" [%s]", buf);
        got++;
    }
    printf("%s\n", got ? "" : " nothing");
}

/* What the kernel says of socket `s`'s membership of `group` on `ifindex`. */
static void filter(const char *name, int s, int level, int family, const char *group,
                   unsigned ifindex) {
    char buf[sizeof(struct group_filter) + 3 * sizeof(struct sockaddr_storage)];
    struct group_filter *gf = (void *)buf;
    memset(buf, 0, sizeof buf);
    gf->gf_interface = ifindex;
    gf->gf_numsrc = 4;
    gf->gf_group.ss_family = family;
    if (family == AF_INET)
        inet_pton(AF_INET, group, &((struct sockaddr_in *)&gf->gf_group)->sin_addr);
    else
        inet_pton(AF_INET6, group, &((struct sockaddr_in6 *)&gf->gf_group)->sin6_addr);
    socklen_t len = sizeof buf;
    if (getsockopt(s, level, MCAST_MSFILTER, buf, &len)) {
        printf("%s %s: %s\n", name, group, strerror(errno));
        return;
    }
    printf("%s %s: member, %s", name, group, gf->gf_fmode == MCAST_INCLUDE ? "include" : "exclude");
    for (unsigned i = 0; i < gf->gf_numsrc && i < 4; i++) {
        char t[INET6_ADDRSTRLEN];
        struct sockaddr_in *a = (void *)&gf->gf_slist[i];
        printf(" %s", inet_ntop(AF_INET, &a->sin_addr, t, sizeof t));
    }
    printf("\n");
}

static void send_to(int s, const char *group, const char *text) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    inet_pton(AF_INET, group, &a.sin_addr);
    if (sendto(s, text, strlen(text), 0, (void *)&a, sizeof a) < 0)
        die("sendto");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned lo = if_nametoindex("lo");
    int r = udp_bound(), idle = udp_bound();
    struct ip_mreq m;
    inet_pton(AF_INET, "239.255.42.1", &m.imr_multiaddr);
    inet_pton(AF_INET, "127.0.0.1", &m.imr_interface);
    if (setsockopt(r, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m))
        die("IP_ADD_MEMBERSHIP");
    struct group_req g = {.gr_interface = lo};
    struct sockaddr_in *ga = (void *)&g.gr_group;
    ga->sin_family = AF_INET;
    inet_pton(AF_INET, "239.255.42.2", &ga->sin_addr);
    if (setsockopt(r, IPPROTO_IP, MCAST_JOIN_GROUP, &g, sizeof g))
        die("MCAST_JOIN_GROUP");
    struct ip_mreq_source ms;
    inet_pton(AF_INET, "239.255.42.2", &ms.imr_multiaddr);
    inet_pton(AF_INET, "127.0.0.1", &ms.imr_interface);
    inet_pton(AF_INET, "10.9.8.7", &ms.imr_sourceaddr);
    if (setsockopt(r, IPPROTO_IP, IP_BLOCK_SOURCE, &ms, sizeof ms))
        die("IP_BLOCK_SOURCE");

    int six = socket(AF_INET6, SOCK_DGRAM, 0);
    struct ipv6_mreq m6 = {.ipv6mr_interface = lo};
    inet_pton(AF_INET6, "ff02::4242", &m6.ipv6mr_multiaddr);
    int have6 = six >= 0 && setsockopt(six, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &m6, sizeof m6) == 0;

    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct in_addr loaddr;
    inet_pton(AF_INET, "127.0.0.1", &loaddr);
    if (tx < 0 || setsockopt(tx, IPPROTO_IP, IP_MULTICAST_IF, &loaddr, sizeof loaddr))
        die("IP_MULTICAST_IF");

    printf("waiting\n");
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
    send_to(tx, "239.255.42.1", "to group 1");
    send_to(tx, "239.255.42.2", "to group 2");
    send_to(tx, "239.255.42.3", "to a group nobody joined");
    drain("member of both", r);
    drain("member of none", idle);
    filter("member of both", r, IPPROTO_IP, AF_INET, "239.255.42.2", lo);
    filter("member of none", idle, IPPROTO_IP, AF_INET, "239.255.42.2", lo);
    if (have6)
        filter("ipv6", six, IPPROTO_IPV6, AF_INET6, "ff02::4242", lo);
    printf("multicast ok\n");
    return 0;
}
