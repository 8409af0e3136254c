/* A file mapped MAP_SHARED and held open, then unlinked: what is written
 * through the descriptor after the checkpoint must show in the mapping,
 * and what is written through the mapping must be read through the
 * descriptor, as before the restart (one file, not two copies).
 * usage: deleted_mapped DIR */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char path[4096];
    snprintf(path, sizeof path, "%s/mapped", argc > 1 ? argv[1] : "/tmp");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 3 * 4096)) return 1;
    char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 1;
    strcpy(m, "hello");
    strcpy(m + 8192, "third page");
    unlink(path);
    printf("waiting\n");
    fflush(stdout);
    struct timespec t = {2, 0};
    while (nanosleep(&t, &t)) {
    }
    if (pwrite(fd, "HELLO", 5, 0) != 5) return 1;
    strcpy(m + 4096, "through the mapping");
    char back[32] = {0};
    if (pread(fd, back, 19, 4096) != 19) return 1;
    printf("mapping reads %.5s, descriptor reads %s, %s\n", m, back, m + 8192);
    return 0;
}
