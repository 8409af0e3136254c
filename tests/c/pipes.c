/* Pipes and FIFOs across a checkpoint (issue 14).
 *
 * usage: pipes inside FIFO-PATH
 *   A pipe grown to 128 KiB with 70000 bytes queued, its write end
 *   non-blocking and append, a dup of it; a packet-mode pipe (O_DIRECT)
 *   with three packets queued, its read end O_ASYNC owned by the process
 *   with F_SETSIG; a named FIFO opened O_RDWR with 64 KiB queued and a
 *   second, non-blocking read-only open of it. Waits 2 s (the checkpoint
 *   comes then), then prints each descriptor's flags, owner and signal,
 *   the capacities, the queued bytes (read back and checked), the packet
 *   boundaries, and whether the FIFO is still the one at its path.
 *
 * usage: pipes outside
 *   A child holds the other ends of three pipes (it writes a line into
 *   one, reads another, waits for EOF on the third): after the wait the
 *   program closes the third, waits for the child, then reads the first
 *   (its line, then EOF) and writes the second (EPIPE). A restart with
 *   the stand-ins (`--unrestorable=pipe`) gives the same: the other side
 *   is closed.
 *
 * Prints the same in an uninterrupted run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pause_2s(void) {
    printf("waiting\n");
    fflush(stdout);
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static void show_fd(const char *name, int fd) {
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) fail(name);
    int mask = O_ACCMODE | O_NONBLOCK | O_APPEND | O_DIRECT | O_ASYNC;
    int queued = -1;
    ioctl(fd, FIONREAD, &queued);
    printf("%s: flags %o cloexec %d queued %d", name, fl & mask,
           !!(fdfl & FD_CLOEXEC), queued);
    int owner = fcntl(fd, F_GETOWN), sig = fcntl(fd, F_GETSIG);
    if (owner != 0) printf(" owner %s", owner == getpid() ? "self" : "other");
    if (sig != 0) printf(" sig %d", sig);
    printf(" capacity %d\n", fcntl(fd, F_GETPIPE_SZ));
}

static void fill(int fd, size_t n, unsigned seed) {
    char buf[4096];
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = (char)((done + i) * 7 + seed);
        ssize_t w = write(fd, buf, k);
        if (w <= 0) fail("fill");
        done += (size_t)w;
    }
}

/* Reads n bytes (non-blocking allowed: polls), checks the pattern. */
static void drain(const char *name, int fd, size_t n, unsigned seed) {
    char buf[4096];
    size_t done = 0, bad = 0;
    while (done < n) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        ssize_t r = read(fd, buf, k);
        if (r <= 0) fail(name);
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != (char)((done + (size_t)i) * 7 + seed)) bad++;
        done += (size_t)r;
    }
    printf("%s: read %zu bytes, %zu wrong\n", name, done, bad);
}

static int inside(const char *fifo) {
    int a[2], b[2];
    if (pipe2(a, 0) != 0) fail("pipe a");
    if (fcntl(a[1], F_SETPIPE_SZ, 128 << 10) < 0) fail("grow a");
    if (fcntl(a[1], F_SETFL, O_NONBLOCK | O_APPEND) != 0) fail("setfl a");
    int adup = dup(a[1]);
    fill(a[1], 70000, 1);

    if (pipe2(b, O_DIRECT | O_CLOEXEC) != 0) fail("pipe b");
    const char *packets[] = {"p1", "packet-two", "3"};
    for (int i = 0; i < 3; i++)
        if (write(b[1], packets[i], strlen(packets[i])) < 0) fail("packet");
    if (fcntl(b[0], F_SETOWN, getpid()) != 0) fail("setown");
    if (fcntl(b[0], F_SETSIG, SIGRTMIN + 4) != 0) fail("setsig");
    signal(SIGRTMIN + 4, SIG_IGN);
    if (fcntl(b[0], F_SETFL, O_ASYNC | O_DIRECT) != 0) fail("setfl b");

    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) fail("mkfifo");
    int f = open(fifo, O_RDWR);
    if (f < 0) fail("open fifo");
    int f2 = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f2 < 0) fail("open fifo again");
    fill(f, 65536, 3);

    pause_2s();

    show_fd("a read", a[0]);
    show_fd("a write", a[1]);
    show_fd("a dup", adup);
    show_fd("b read", b[0]);
    show_fd("b write", b[1]);
    show_fd("fifo rdwr", f);
    show_fd("fifo read", f2);
    struct stat s1, s2;
    if (fstat(f, &s1) != 0 || stat(fifo, &s2) != 0) fail("stat fifo");
    printf("fifo is the one at its path: %s\n",
           s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev ? "yes" : "no");

    drain("a", a[0], 70000, 1);
    fill(adup, 100, 2);
    drain("a after", a[0], 100, 2);
    char pk[64];
    for (int i = 0; i < 3; i++) {
        ssize_t r = read(b[0], pk, sizeof pk);
        printf("b packet %d: %zd bytes %.*s\n", i, r, (int)(r > 0 ? r : 0), pk);
    }
    drain("fifo", f2, 65536, 3);
    printf("pipes ok\n");
    unlink(fifo);
    return 0;
}

static int outside(void) {
    int up[2], down[2], go[2];
    if (pipe(up) || pipe(down) || pipe(go)) fail("pipe");
    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(up[0]);
        close(down[1]);
        close(go[1]);
        if (write(up[1], "from-child\n", 11) != 11) _exit(2);
        char c;
        while (read(go[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    close(go[0]);
    signal(SIGPIPE, SIG_IGN);

    pause_2s();

    close(go[1]);
    waitpid(child, NULL, 0);
    char buf[64];
    ssize_t r = read(up[0], buf, sizeof buf);
    printf("read: %zd bytes %.*s", r, (int)(r > 0 ? r : 0), buf);
    r = read(up[0], buf, sizeof buf);
    printf("read again: %zd (EOF)\n", r);
    errno = 0;
    r = write(down[1], "x", 1);
    printf("write: %zd %s\n", r, r < 0 && errno == EPIPE ? "EPIPE" : strerror(errno));
    printf("pipes ok\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "inside")) return inside(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "outside")) return outside();
    fprintf(stderr, "usage: pipes inside FIFO | pipes outside\n");
    return 2;
}
