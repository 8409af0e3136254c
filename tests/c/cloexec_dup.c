/* Descriptors whose close-on-exec flag is not their description's: a
 * pty slave opened with O_CLOEXEC through its master (TIOCGPTPEER, as
 * selfckpt's own restart opens slaves) and a pipe made with O_CLOEXEC,
 * then dup2'd to 7 and 8 without it (as a terminal emulator gives a
 * child its terminal); the originals keep it. Before printing "waiting"
 * it sets them up; then waits 2 s (the checkpoint comes then), then
 * executes itself as "child", which prints which of them are open: 7
 * (a terminal) and 8 are, the originals are not. (The kernel shows
 * O_CLOEXEC in F_GETFL and fdinfo for every descriptor of a slave so
 * opened, whatever its close-on-exec flag.)
 *
 * usage: cloexec_dup */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 2 && strcmp(argv[1], "child") == 0) {
        int fds[] = {7, 8, atoi(argv[2]), atoi(argv[3])};
        const char *names[] = {"pty slave at 7", "pipe at 8", "slave opened close-on-exec",
                               "pipe opened close-on-exec"};
        for (int i = 0; i < 4; i++)
            printf("%s: %s\n", names[i], fcntl(fds[i], F_GETFD) >= 0 ? "open" : "closed");
        printf("7 is a terminal: %d\n", isatty(7));
        return 0;
    }
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    int f = m < 0 || unlockpt(m) != 0 ? -1 : ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int p[2];
    if (f < 0 || pipe2(p, O_CLOEXEC) != 0 || dup2(f, 7) != 7 || dup2(p[1], 8) != 8) {
        perror("setup");
        return 1;
    }
    printf("waiting\n");
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", f);
    snprintf(b, sizeof b, "%d", p[1]);
    pid_t c = fork();
    if (c == 0) {
        execl("/proc/self/exe", argv[0], "child", a, b, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(c, &st, 0);
    printf("cloexec_dup ok\n");
    return 0;
}
