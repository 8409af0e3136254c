/* A private view of shared anonymous memory (CRIU's shmemfd-priv): the
 * program maps its shared mapping again, MAP_PRIVATE, through
 * /proc/self/map_files, one page in, and writes one page of the view.
 * After the checkpoint it prints what the view shows: the page it wrote
 * (its own copy) and the pages it never touched (the shared object's). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    long pg = sysconf(_SC_PAGESIZE);
    char *shared = mmap(NULL, 5 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return 2;
    for (int i = 0; i < 5; i++)
        *(int *)(shared + i * pg) = 11 * (i + 1);
    char path[128];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)shared,
             (unsigned long)(shared + 5 * pg));
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return 3;
    char *view = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, pg);
    if (view == MAP_FAILED)
        return 4;
    close(fd);
    *(int *)(view + pg) = 99;
    printf("waiting\n");
    sleep(2);
    for (int i = 0; i < 4; i++)
        printf("view page %d: %d\n", i, *(int *)(view + i * pg));
    return 0;
}
