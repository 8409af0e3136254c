/* Deleted-but-open files and a deleted working directory across a
 * checkpoint (issue 14).
 *
 * usage: deleted DIR [BYTES]
 *   Writes BYTES (default 200000) of a pattern into DIR/data, opened
 *   read-write at offset 12345, again write-only with O_APPEND, and dup'ed;
 *   then (as root) gives it owner 1:1, unlinks it, and enters DIR/sub and removes it. Waits 2 s (the
 *   checkpoint comes then; a sparse file DIR/sparse, 4 KiB of data, a
 *   hole, 4 KiB, a hole to 28 KiB, is open and unlinked too), then
 *   prints: where its data and holes are (SEEK_DATA, SEEK_HOLE), each
 *   descriptor's offset and
 *   flags, the file's link count, size, mode and owner, the bytes read from the
 *   offset (checked against the pattern), an appended line read back
 *   through the first descriptor, and what getcwd and creating a file in
 *   the working directory give.
 *
 * Prints the same in an uninterrupted run. */
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

static char at(size_t i) { return (char)(i * 13 + 5); }

static void show(const char *name, int fd) {
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) fail(name);
    printf("%s: offset %ld flags %o cloexec %d\n", name, (long)lseek(fd, 0, SEEK_CUR),
           fl & (O_ACCMODE | O_APPEND | O_NONBLOCK), !!(fdfl & FD_CLOEXEC));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: deleted DIR [BYTES]\n");
        return 2;
    }
    size_t bytes = argc > 2 ? (size_t)atol(argv[2]) : 200000;
    char path[4096], sub[4096];
    snprintf(path, sizeof path, "%s/data", argv[1]);
    snprintf(sub, sizeof sub, "%s/sub", argv[1]);
    int a = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (a < 0) fail("open");
    char *buf = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++) buf[i] = at(i);
    if (write(a, buf, bytes) != (ssize_t)bytes) fail("write");
    if (lseek(a, 12345, SEEK_SET) != 12345) fail("lseek");
    int b = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    if (b < 0) fail("open append");
    int c = dup(a);
    /* Another owner, where the program may give it one (root). */
    if (geteuid() == 0 && fchown(a, 1, 1) != 0) fail("fchown");
    if (unlink(path) != 0) fail("unlink");
    int cwd_fd = -1;
    if (mkdir(sub, 0700) != 0 || chdir(sub) != 0 || (cwd_fd = open(".", O_RDONLY)) < 0 ||
        rmdir(sub) != 0)
        fail("cwd");
    /* A descriptor of a directory deleted since. */
    char held[4096];
    snprintf(held, sizeof held, "%s/held", argv[1]);
    if (mkdir(held, 0700) != 0) fail("mkdir held");
    int d = open(held, O_RDONLY | O_DIRECTORY);
    if (d < 0 || rmdir(held) != 0) fail("held directory");

    char sparse[4096];
    snprintf(sparse, sizeof sparse, "%s/sparse", argv[1]);
    int sp = open(sparse, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (sp < 0 || pwrite(sp, buf, 4096, 0) != 4096 || pwrite(sp, buf, 4096, 12288) != 4096 ||
        ftruncate(sp, 28672) != 0 || unlink(sparse) != 0)
        fail("sparse");

    printf("waiting\n");
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }

    printf("sparse:");
    for (off_t o = 0; o < 28672;) {
        off_t d = lseek(sp, o, SEEK_DATA), h = lseek(sp, o, SEEK_HOLE);
        if (h < 0) fail("SEEK_HOLE");
        if (d < 0) d = 28672;
        printf(" %s@%ld", d == o ? "data" : "hole", (long)o);
        o = d == o ? h : d;
    }
    printf("\n");
    show("rdwr", a);
    show("append", b);
    show("dup", c);
    struct stat st;
    if (fstat(a, &st) != 0) fail("fstat");
    printf("links %ld size %ld mode %o owner %d:%d\n", (long)st.st_nlink, (long)st.st_size,
           st.st_mode & 07777, (int)st.st_uid, (int)st.st_gid);
    size_t want = bytes - 12345, got = 0, bad = 0;
    while (got < want) {
        ssize_t n = read(a, buf, want - got);
        if (n <= 0) fail("read");
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != at(12345 + got + (size_t)i)) bad++;
        got += (size_t)n;
    }
    printf("read %zu bytes from the offset, %zu wrong\n", got, bad);
    if (write(b, "appended\n", 9) != 9) fail("append");
    ssize_t n = read(c, buf, 64);
    printf("read back %zd: %.*s", n, (int)(n > 0 ? n : 0), buf);
    char cwd[4096];
    errno = 0;
    printf("getcwd: %s\n", getcwd(cwd, sizeof cwd) ? "a path" : strerror(errno));
    /* Its name as the kernel shows it. */
    ssize_t l = readlink("/proc/self/cwd", cwd, sizeof cwd - 1);
    cwd[l > 0 ? l : 0] = 0;
    const char *base = strrchr(cwd, '/');
    printf("cwd is %s\n", base ? base + 1 : cwd);
    struct stat dst, cst;
    printf("cwd and a descriptor of it: %s\n",
           fstat(cwd_fd, &dst) == 0 && stat("/proc/self/cwd", &cst) == 0 &&
                   dst.st_ino == cst.st_ino && dst.st_dev == cst.st_dev
               ? "one directory"
               : "two directories");
    int made = openat(d, "new-file", O_WRONLY | O_CREAT | O_EXCL, 0600);
    snprintf(path, sizeof path, "/proc/self/fd/%d", d);
    l = readlink(path, cwd, sizeof cwd - 1);
    cwd[l > 0 ? l : 0] = 0;
    base = strrchr(cwd, '/');
    printf("held directory %s: a directory %d, links %d, create in it: %s\n",
           base ? base + 1 : cwd, fstat(d, &dst) == 0 && S_ISDIR(dst.st_mode),
           (int)dst.st_nlink, made >= 0 ? "made" : strerror(errno));
    int f = open("new-file", O_WRONLY | O_CREAT | O_EXCL, 0600);
    printf("create in cwd: %s\n", f >= 0 ? "made" : strerror(errno));
    printf("deleted ok\n");
    return 0;
}
