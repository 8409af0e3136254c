/* Sockets with kernel state selfckpt does not bring back, each of which
 * must be named at checkpoint time: "filter" a UDP socket with a classic
 * BPF filter attached (SO_ATTACH_FILTER); "ring" a packet socket whose
 * receive ring is mapped into memory (PACKET_RX_RING); "async" a
 * socketpair end with signal-driven I/O (O_ASYNC, the process as its
 * F_SETOWN owner, F_SETSIG SIGIO); "tun" a /dev/net/tun descriptor
 * attached to a TAP interface of its own; "sender" a bound UNIX datagram
 * socket holding a datagram from a sender bound to an abstract name
 * (closed since: CRIU's socket_snd_addr), whose address recvfrom would
 * give. It prints
 * "waiting" (or "skipped: ..." and exits 0 where the socket cannot be
 * made) and sleeps. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "filter";
    if (strcmp(mode, "filter") == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sock_filter accept_all[] = {{BPF_RET | BPF_K, 0, 0, 0xffffffff}};
        struct sock_fprog prog = {1, accept_all};
        if (s < 0 || setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0)
            return 2;
    } else if (strcmp(mode, "tun") == 0) {
        int t = open("/dev/net/tun", O_RDWR);
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
        strcpy(ifr.ifr_name, "sckpt%d");
        if (t < 0 || ioctl(t, TUNSETIFF, &ifr) != 0) {
            printf("skipped: no TAP interface can be made here\n");
            return 0;
        }
    } else if (strcmp(mode, "sender") == 0) {
        struct sockaddr_un srv = {AF_UNIX, ""}, from = {AF_UNIX, ""};
        snprintf(srv.sun_path + 1, sizeof srv.sun_path - 1, "sks-srv-%d", (int)getpid());
        snprintf(from.sun_path + 1, sizeof from.sun_path - 1, "sks-from-%d", (int)getpid());
        socklen_t sl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(srv.sun_path + 1);
        socklen_t fl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(from.sun_path + 1);
        int r = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (r < 0 || c < 0 || bind(r, (struct sockaddr *)&srv, sl) || bind(c, (struct sockaddr *)&from, fl) ||
            sendto(c, "hello", 5, 0, (struct sockaddr *)&srv, sl) != 5)
            return 6;
        close(c);
    } else if (strcmp(mode, "async") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || fcntl(sv[0], F_SETOWN, getpid()) != 0 ||
            fcntl(sv[0], F_SETSIG, SIGIO) != 0 ||
            fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_ASYNC) != 0)
            return 5;
    } else {
        int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        if (s < 0) {
            printf("skipped: no packet socket here\n");
            return 0;
        }
        struct tpacket_req req = {4096, 1, 2048, 2};
        if (setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0)
            return 3;
        if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0) == MAP_FAILED)
            return 4;
    }
    printf("waiting\n");
    sleep(30);
    printf("done\n");
    return 0;
}
