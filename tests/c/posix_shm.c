/* POSIX shared memory and a named semaphore (files in /dev/shm, a tmpfs):
 * a checkpoint must not call them "device mappings"; after a restart the
 * mappings are the same shared files, with their contents.
 *
 * usage: posix_shm NAME [named-sem]
 *   prints "ready", waits 1 s, checks and prints "shm ok VALUE sem N". The
 *   semaphore lives in the shared memory (sem_init, pshared); with
 *   named-sem it is a named one (sem_open), whose mapping glibc makes
 *   from a temporary file it then unlinks.
 */
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/selfckpt-test";
    char semname[256];
    snprintf(semname, sizeof semname, "%s-sem", name);
    int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 65536)) { perror("shm_open"); return 2; }
    unsigned char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    sem_t *sem = (sem_t *)(p + 65536 - 64);
    if (argc > 2 && strcmp(argv[2], "named-sem") == 0)
        sem = sem_open(semname, O_CREAT, 0600, 3);
    else if (sem_init(sem, 1, 3))
        sem = SEM_FAILED;
    if (p == MAP_FAILED || sem == SEM_FAILED) { perror("map"); return 2; }
    for (int i = 0; i < 65536 - 64; i++) p[i] = (unsigned char)(i * 7);
    sem_wait(sem);
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    unsigned long sum = 0;
    for (int i = 0; i < 65536 - 64; i++) {
        if (p[i] != (unsigned char)(i * 7)) { printf("FAIL byte %d\n", i); return 1; }
        sum += p[i];
    }
    int v = -1;
    sem_getvalue(sem, &v);
    sem_post(sem);
    printf("shm ok %lu sem %d\n", sum, v);
    return 0;
}
