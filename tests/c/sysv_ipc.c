/* System V semaphores and message queues across a checkpoint: a keyed
 * set of three semaphores whose values change over time (one raised
 * with SEM_UNDO, which the kill would undo), a keyed queue with messages
 * of several types, and a private queue with one larger message. The ids
 * the program got from semget/msgget must still name its objects, with
 * their values and messages, after a restart.
 *
 * usage: sysv_ipc SEMKEY MSGKEY IDFILE
 *   sets up, writes "SEMID MSQID PRIVID" to IDFILE, prints "waiting",
 *   sleeps 2 s (the test checkpoints it meanwhile and kills it), then
 *   prints the values and messages it reads through its ids, removes the
 *   objects and prints "ipc ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <time.h>

union semun { int val; struct semid_ds *buf; unsigned short *array; };
struct msg { long mtype; char text[256]; };

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static void send(int q, long type, const char *text) {
    struct msg m = {type, {0}};
    strcpy(m.text, text);
    if (msgsnd(q, &m, strlen(text), IPC_NOWAIT)) { perror("msgsnd"); exit(2); }
}

static void op(int id, int num, int delta, int flags) {
    struct sembuf b = {(unsigned short)num, (short)delta, (short)flags};
    if (semop(id, &b, 1)) { perror("semop"); exit(2); }
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: sysv_ipc SEMKEY MSGKEY IDFILE\n"); return 2; }
    key_t skey = (key_t)strtol(argv[1], NULL, 0), mkey = (key_t)strtol(argv[2], NULL, 0);
    int sem = semget(skey, 3, IPC_CREAT | IPC_EXCL | 0640);
    int q = msgget(mkey, IPC_CREAT | IPC_EXCL | 0600);
    int priv = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (sem < 0 || q < 0 || priv < 0) { perror("semget/msgget"); return 2; }
    unsigned short init[3] = {1, 2, 3};
    union semun u = {.array = init};
    if (semctl(sem, 0, SETALL, u)) { perror("SETALL"); return 2; }
    op(sem, 0, 5, 0);
    nap(20);
    op(sem, 1, -1, 0);
    op(sem, 2, 4, SEM_UNDO);
    send(q, 3, "c-first");
    send(q, 1, "a-only");
    send(q, 2, "b-only");
    send(q, 3, "c-second");
    char big[201];
    for (int i = 0; i < 200; i++) big[i] = 'a' + i % 26;
    big[200] = 0;
    send(priv, 7, big);
    FILE *f = fopen(argv[3], "w");
    if (!f) { perror(argv[3]); return 2; }
    fprintf(f, "%d %d %d\n", sem, q, priv);
    fclose(f);

    printf("waiting\n");
    fflush(stdout);
    nap(2000);

    unsigned short v[3] = {0, 0, 0};
    u.array = v;
    if (semctl(sem, 0, GETALL, u)) { printf("FAIL GETALL: %s\n", strerror(errno)); return 1; }
    printf("values %u %u %u\n", v[0], v[1], v[2]);
    printf("same set by key: %d\n", semget(skey, 0, 0) == sem);
    printf("same queue by key: %d\n", msgget(mkey, 0) == q);
    op(sem, 0, -6, IPC_NOWAIT);
    printf("sem0 taken\n");
    struct msg m;
    ssize_t n = msgrcv(q, &m, sizeof m.text, 3, IPC_NOWAIT);
    printf("type 3 first: %.*s\n", (int)(n < 0 ? 0 : n), m.text);
    while ((n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT)) >= 0)
        printf("message %ld: %.*s\n", m.mtype, (int)n, m.text);
    n = msgrcv(priv, &m, sizeof m.text, 0, IPC_NOWAIT);
    printf("private %ld: %zd bytes, same %d\n", m.mtype, n,
           n == 200 && memcmp(m.text, big, 200) == 0);
    struct msqid_ds ds;
    msgctl(q, IPC_STAT, &ds);
    printf("queue mode %o\n", ds.msg_perm.mode & 0777);
    semctl(sem, 0, IPC_RMID);
    msgctl(q, IPC_RMID, NULL);
    msgctl(priv, IPC_RMID, NULL);
    printf("ipc ok\n");
    return 0;
}
