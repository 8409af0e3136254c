/* Mappings whose object no restart can open again, whose pages the
 * program never touched before the checkpoint: a file mapped MAP_PRIVATE
 * and one mapped MAP_SHARED, both then closed and unlinked, and a memfd
 * mapped MAP_PRIVATE (its descriptor closed). After the checkpoint each
 * must still read the object's bytes, not zeros.
 * usage: deleted_untouched DIR    (prints "waiting", then one line each) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LEN (64 * 4096)

static char *mapped_file(const char *dir, const char *name, int flags) {
    char path[4096], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return NULL;
    for (int i = 0; i < LEN / 4096; i++) {
        memset(buf, 'a' + i % 26, sizeof buf);
        if (write(fd, buf, sizeof buf) != sizeof buf) return NULL;
    }
    char *m = mmap(NULL, LEN, PROT_READ, flags, fd, 0);
    unlink(path);
    /* Out of the page cache too, where the kernel lets it go. */
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return m == MAP_FAILED ? NULL : m;
}

static void check(const char *what, const char *m) {
    int bad = 0;
    for (int i = 0; i < LEN / 4096; i++)
        if (m[i * 4096] != 'a' + i % 26 || m[i * 4096 + 4095] != 'a' + i % 26) bad++;
    printf("%s: %d of %d pages wrong\n", what, bad, LEN / 4096);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char *p = mapped_file(dir, "private", MAP_PRIVATE);
    char *s = mapped_file(dir, "shared", MAP_SHARED);
    int mfd = memfd_create("untouched", 0);
    char buf[4096];
    for (int i = 0; mfd >= 0 && i < LEN / 4096; i++) {
        memset(buf, 'a' + i % 26, sizeof buf);
        if (write(mfd, buf, sizeof buf) != sizeof buf) return 1;
    }
    char *q = mfd < 0 ? MAP_FAILED : mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, mfd, 0);
    if (!p || !s || q == MAP_FAILED) return 1;
    close(mfd);
    printf("waiting\n");
    fflush(stdout);
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t)) {
    }
    check("private deleted file", p);
    check("shared deleted file", s);
    check("private memfd", q);
    printf("untouched ok\n");
    return 0;
}
