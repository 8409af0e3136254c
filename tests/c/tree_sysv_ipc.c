/* System V semaphores and a message queue shared by a parent and its
 * forked child across a checkpoint of the tree: the parent sends round
 * numbers (type 1), the child adds each to semaphore 0 and answers with
 * twice it (type 2); three messages of type 9 stay queued all along. Both
 * members noted the ids (the child through fork): the tree restart must
 * make each object once.
 *
 * usage: tree_sysv_ipc ROUNDS
 *   prints "ids: SEMID MSQID" first, then one line a round (100 ms
 *   apart), then the queued messages, the values, "tree ipc ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun { int val; struct semid_ds *buf; unsigned short *array; };
struct msg { long mtype; char text[64]; };

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static void send(int q, long type, int v) {
    struct msg m = {type, {0}};
    int n = snprintf(m.text, sizeof m.text, "%d", v);
    if (msgsnd(q, &m, n, 0)) { perror("msgsnd"); exit(2); }
}

static int recv(int q, long type) {
    struct msg m;
    ssize_t n = msgrcv(q, &m, sizeof m.text - 1, type, 0);
    if (n < 0) { perror("msgrcv"); exit(2); }
    m.text[n] = 0;
    return atoi(m.text);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    int sem = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (sem < 0 || q < 0) { perror("semget/msgget"); return 2; }
    printf("ids: %d %d\n", sem, q);
    fflush(stdout);
    for (int i = 0; i < 3; i++) send(q, 9, 100 + i);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < rounds; i++) {
            int v = recv(q, 1);
            struct sembuf b = {0, (short)v, 0};
            if (semop(sem, &b, 1)) { perror("semop"); _exit(2); }
            send(q, 2, 2 * v);
        }
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        send(q, 1, i);
        int got = recv(q, 2);
        printf("round %d got %d sem0 %d\n", i, got, semctl(sem, 0, GETVAL));
        fflush(stdout);
        nap(100);
    }
    int st;
    waitpid(child, &st, 0);
    for (int i = 0; i < 3; i++) printf("queued %d\n", recv(q, 9));
    printf("child %d values %d %d\n", WEXITSTATUS(st), semctl(sem, 0, GETVAL),
           semctl(sem, 1, GETVAL));
    semctl(sem, 0, IPC_RMID);
    msgctl(q, IPC_RMID, NULL);
    printf("tree ipc ok\n");
    return 0;
}
