/* O_PATH descriptors across a checkpoint: one of a regular file, one of a
 * directory (used with openat afterwards), and one O_PATH|O_NOFOLLOW of
 * a symlink itself. Each must come back O_PATH, of the same object (a
 * symlink stays the symlink, not its target). It prints "waiting", sleeps
 * (the checkpoint comes then) and prints what it reads back.
 *
 * usage: opath DIR  (DIR: a scratch directory it fills) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, int fd)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fstat(fd, &st) != 0) {
        printf("%s: %s\n", what, strerror(errno));
        return;
    }
    printf("%s: O_PATH %d cloexec %d %s size %lld\n", what, !!(fl & O_PATH), !!(fdfl & FD_CLOEXEC),
           S_ISLNK(st.st_mode) ? "symlink" : S_ISDIR(st.st_mode) ? "dir" : "file",
           (long long)st.st_size);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || chdir(argv[1]) != 0) {
        printf("usage: opath DIR\n");
        return 2;
    }
    FILE *f = fopen("target", "w");
    fputs("twelve bytes", f);
    fclose(f);
    mkdir("sub", 0755);
    unlink("link");
    if (symlink("target", "link") != 0)
        return 1;
    int file = open("target", O_PATH);
    int dir = open("sub", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int link = open("link", O_PATH | O_NOFOLLOW);
    if (file < 0 || dir < 0 || link < 0) {
        printf("open: %s\n", strerror(errno));
        return 1;
    }
    show("file", file);
    show("dir", dir);
    show("link", link);
    printf("waiting\n");
    struct timespec t = {1, 500000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    show("file", file);
    show("dir", dir);
    show("link", link);
    /* An O_PATH descriptor cannot be read: EBADF, as before. */
    char b;
    printf("read through O_PATH: %s\n", read(file, &b, 1) < 0 ? strerror(errno) : "succeeded");
    int made = openat(dir, "made", O_CREAT | O_WRONLY, 0644);
    printf("openat in dir: %s\n", made >= 0 ? "ok" : strerror(errno));
    char target[64] = {0};
    printf("readlinkat of link: %s\n",
           readlinkat(link, "", target, sizeof target - 1) >= 0 ? target : strerror(errno));
    printf("opath ok\n");
    return 0;
}
