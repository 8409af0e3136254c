/* A file opened before a fork is one open file description for parent
 * and child: one offset. They take turns (a token over pipes) writing
 * lines to it, without O_APPEND; with separate offsets the lines would
 * overwrite each other. A second open of the same file, for reading, is
 * another description (its own offset), which both hold too: the parent
 * reads each round's two lines through it. Prints one line per round on
 * stdout.
 *
 * Usage: tree_file FILE ROUNDS */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(void) {
    struct timespec ts = {0, 30 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void put(int fd, const char *who, int i) {
    char line[64];
    int n = snprintf(line, sizeof line, "%s %d\n", who, i);
    if (write(fd, line, (size_t)n) != n)
        exit(3);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int rounds = atoi(argv[2]);
    int f = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int g = open(argv[1], O_RDONLY);
    int go[2], back[2];
    if (f < 0 || g < 0 || pipe(go) != 0 || pipe(back) != 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t child = fork();
    if (child == 0) {
        close(go[1]);
        close(back[0]);
        char t;
        for (int i = 0; read(go[0], &t, 1) == 1; i++) {
            put(f, "child", i);
            if (write(back[1], &t, 1) != 1)
                _exit(3);
        }
        _exit(0);
    }
    close(go[0]);
    close(back[1]);
    for (int i = 0; i < rounds; i++) {
        put(f, "parent", i);
        char t = 'x';
        if (write(go[1], &t, 1) != 1 || read(back[0], &t, 1) != 1)
            return 4;
        char buf[256];
        printf("round %d, read %zd\n", i, read(g, buf, sizeof buf));
        nap();
    }
    close(go[1]);
    int st;
    waitpid(child, &st, 0);
    printf("done\n");
    return 0;
}
