/* A pseudo-terminal pair of the program's own, exchanging lines: the
 * master side writes "line N", the slave side (raw mode, set with
 * tcsetattr) reads it, answers it in capitals, the master side reads the
 * answer and prints it. Each round also prints whether the slave is still
 * in raw mode with its window size, and, in "fork" mode, whether the
 * slave is still the controlling terminal of the child's session.
 *
 * Usage: pty ROUNDS [alone|fork|queued]
 *   alone   one process holds both ends
 *   fork    the parent holds the master, a forked child (a session leader
 *           whose controlling terminal is the slave) the slave
 *   answered like alone, but in round 5 the answer waits in the pty,
 *           queued toward the master, while the program sleeps
 *   queued  like alone, but leaves bytes queued toward the slave while it
 *           waits: a checkpoint then must name them (they cannot be read
 *           without taking them)
 * In "alone" mode the slave's node is given mode 0600 (and, as root, owner
 * 13333:44444) and each round prints its mode and whether its owner is
 * still the one set.
 * After round 5 (in "fork" and "answered" mode: before reading round 5's
 * answer) it prints "waiting" and sleeps 1.5 s (the test checkpoints it
 * then), then goes on. The output is deterministic. */
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Reads up to and including '\n' (at most n-1 bytes). */
static int read_line(int fd, char *buf, int n) {
    int got = 0;
    while (got < n - 1) {
        ssize_t r = read(fd, buf + got, 1);
        if (r <= 0)
            return -1;
        got++;
        if (buf[got - 1] == '\n')
            break;
    }
    buf[got] = 0;
    return got;
}

/* The slave side's answer to one line. */
static int answer(int slave) {
    char buf[64];
    if (read_line(slave, buf, sizeof buf) < 0)
        return -1;
    for (char *p = buf; *p; p++)
        *p = toupper((unsigned char)*p);
    return write(slave, buf, strlen(buf)) == (ssize_t)strlen(buf) ? 0 : -1;
}

static const char *mode_of(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        return "no termios";
    return (t.c_lflag & (ICANON | ECHO)) == 0 ? "raw" : "cooked";
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    const char *mode = argc > 2 ? argv[2] : "alone";
    int fork_mode = strcmp(mode, "fork") == 0;
    int queued = strcmp(mode, "queued") == 0;
    int late = fork_mode || strcmp(mode, "answered") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
        return 1;
    char name[64];
    if (ptsname_r(m, name, sizeof name) != 0)
        return 1;
    int s = open(name, O_RDWR | O_NOCTTY);
    if (s < 0)
        return 1;
    /* The slave's node as a login daemon and `mesg n` leave it: owned
     * by the user (another uid where we may give one), mode 0600. */
    struct stat set_to;
    int alone = strcmp(mode, "alone") == 0;
    if (alone) {
        if (geteuid() == 0 && fchown(s, 13333, 44444) != 0)
            return 1;
        if (fchmod(s, 0600) != 0 || fstat(s, &set_to) != 0)
            return 1;
    }
    struct termios t;
    tcgetattr(s, &t);
    cfmakeraw(&t);
    t.c_oflag |= OPOST | ONLCR; /* answers come back with \r\n */
    tcsetattr(s, TCSANOW, &t);
    struct winsize ws = {33, 101, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    pid_t child = -1;
    if (fork_mode) {
        child = fork();
        if (child < 0)
            return 1;
        if (child == 0) {
            close(m);
            if (setsid() < 0 || ioctl(s, TIOCSCTTY, 0) != 0)
                return 2;
            for (;;) {
                if (answer(s) != 0)
                    return 0; /* the master went away */
                if (tcgetsid(s) != getpid() || strcmp(mode_of(s), "raw") != 0)
                    return 3;
            }
        }
        close(s);
        s = -1;
    }
    for (int i = 1; i <= rounds; i++) {
        char line[64], back[64];
        snprintf(line, sizeof line, "line %d\n", i);
        if (write(m, line, strlen(line)) != (ssize_t)strlen(line))
            return 4;
        if (!fork_mode && answer(s) != 0)
            return 5;
        if (late && i == 5) {
            printf("waiting\n");
            nap(1500);
        }
        if (read_line(m, back, sizeof back) < 0)
            return 6;
        back[strcspn(back, "\r\n")] = 0;
        struct winsize now;
        ioctl(m, TIOCGWINSZ, &now);
        printf("%s (%s %dx%d)\n", back, fork_mode ? "child" : mode_of(s), now.ws_col,
               now.ws_row);
        struct stat node;
        if (alone && fstat(s, &node) == 0)
            printf("slave node %o, owner %s\n", (unsigned)(node.st_mode & 07777),
                   node.st_uid == set_to.st_uid && node.st_gid == set_to.st_gid ? "as set"
                                                                                 : "changed");
        if (i == 5 && !late) {
            if (queued && write(m, "pending\n", 8) != 8)
                return 7;
            printf("waiting\n");
            nap(1500);
        } else {
            nap(20);
        }
    }
    if (fork_mode) {
        close(m);
        int st = 0;
        waitpid(child, &st, 0);
        printf("child ended with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    printf("done\n");
    return 0;
}
