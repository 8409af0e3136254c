/* A prefork server: the program listens on a TCP port of every address
 * (0.0.0.0), forks two workers that share the listener and answer one
 * request per connection (the number sent, plus one), and then, as the
 * client, connects STEPS times to 127.0.0.1, printing each answer. Then it
 * stops the workers (-1) and prints how they ended.
 *
 * usage: tree_prefork STEPS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int ask(int port, int v) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(3);
    }
    int r = -100;
    if (write(c, &v, sizeof v) != sizeof v || read(c, &r, sizeof r) != sizeof r) r = -99;
    close(c);
    return r;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t n = sizeof any;
    if (bind(l, (struct sockaddr *)&any, sizeof any) || listen(l, 16) ||
        getsockname(l, (struct sockaddr *)&any, &n)) {
        perror("listen");
        return 2;
    }
    int port = ntohs(any.sin_port);
    pid_t w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = fork();
        if (w[i] == 0) {
            for (;;) {
                int c = accept(l, NULL, NULL);
                if (c < 0) _exit(4);
                int v = 0;
                if (read(c, &v, sizeof v) != sizeof v) _exit(5);
                int r = v + 1;
                if (write(c, &r, sizeof r) != sizeof r) _exit(6);
                close(c);
                if (v < 0) _exit(0);
            }
        }
    }
    for (int i = 0; i < steps; i++) {
        printf("req %d -> %d\n", i, ask(port, i * 10));
        nap(50);
    }
    for (int i = 0; i < 2; i++) printf("stop -> %d\n", ask(port, -1));
    for (int i = 0; i < 2; i++) {
        int st = 0;
        waitpid(w[i], &st, 0);
        printf("worker %d: %d\n", i, WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    }
    return 0;
}
