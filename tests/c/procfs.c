/* The program's own /proc files held open across a checkpoint (issue 14).
 *
 * usage: procfs
 *   Opens /proc/self/status (read 5 bytes: offset 5), the fdinfo of that
 *   descriptor, its main thread's /proc/self/task/TID/stat and the
 *   /proc/self/fd directory. Waits 2 s (the checkpoint comes then), then
 *   prints whether each is this process's file (the same inode as the
 *   path opened now, the Pid: line its pid), the offset kept, and the
 *   fdinfo's pos.
 *
 * Prints the same in an uninterrupted run (and after a restart with new
 * ids, where the pid differs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static const char *same(int fd, const char *path) {
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0) return "cannot tell";
    return a.st_ino == b.st_ino && a.st_dev == b.st_dev ? "yes" : "no";
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int status = open("/proc/self/status", O_RDONLY);
    char buf[8192], path[128];
    if (status < 0 || read(status, buf, 5) != 5) fail("status");
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", status);
    int info = open(path, O_RDONLY);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", getpid());
    int task = open(path, O_RDONLY);
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY);
    if (info < 0 || task < 0 || dir < 0) fail("open");

    printf("waiting\n");
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }

    printf("status offset %ld\n", (long)lseek(status, 0, SEEK_CUR));
    printf("status is /proc/self/status: %s\n", same(status, "/proc/self/status"));
    ssize_t n = pread(status, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    char *pid = strstr(buf, "\nPid:");
    printf("its Pid is mine: %s\n", pid && atoi(pid + 5) == getpid() ? "yes" : "no");
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", status);
    printf("fdinfo is the status descriptor's: %s\n", same(info, path));
    n = pread(info, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    printf("fdinfo %.*s\n", (int)strcspn(buf, "\n"), buf);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", getpid());
    printf("task stat is the main thread's: %s\n", same(task, path));
    printf("fd directory is mine: %s\n", same(dir, "/proc/self/fd"));
    printf("procfs ok\n");
    return 0;
}
