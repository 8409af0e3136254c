/*
 * Test program for the C ABI (tests/e2e_abi.rs): critical sections, hooks
 * that close and reopen a UNIX socket connection, an explicit checkpoint.
 *
 * usage: cs_hooks DIR SOCKET STEPS CS_STEP CKPT_STEP SLEEP_MS [REFUSE_STEP]
 *
 * stdout: one deterministic line per step ("step I X"), then "done X".
 * The socket gets "hello start", "step I" per step, "bye" before each
 * checkpoint, "hello continue" / "hello restart" after it.
 * At CS_STEP it checks that a checkpoint asked for inside a critical
 * section (by signal and by selfckpt_checkpoint) waits for the section and
 * runs right after it. At REFUSE_STEP a second checkpoint hook refuses:
 * selfckpt_checkpoint must fail, the continue hooks get SELFCKPT_ERROR
 * (socket: "hello error") and no image may appear.
 * Exit codes: 0 ok, 3..8 a check failed (stderr).
 */
#include "selfckpt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <dirent.h>
#include <unistd.h>

static int conn = -1;
static const char *sock_path;
static int hook_runs;
static int refuse;

static int refusing_hook(int state, void *user) {
    (void)state;
    (void)user;
    return refuse ? 42 : 0;
}

/* Files in DIR (images, temporary files, stats). */
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".ckpt"))
            n++;
    closedir(d);
    return n;
}

static int say(const char *msg) {
    size_t n = strlen(msg);
    return conn >= 0 && write(conn, msg, n) == (ssize_t)n ? 0 : -1;
}

static int connect_to(const char *hello) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return -1;
    }
    return say(hello);
}

static int before_checkpoint(int state, void *user) {
    (void)user;
    if (state != SELFCKPT_CHECKPOINT && state != SELFCKPT_TERM)
        return 1;
    say("bye\n");
    close(conn);
    conn = -1;
    __atomic_add_fetch(&hook_runs, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int after_checkpoint(int state, void *user) {
    (void)user;
    if (conn >= 0)
        return 0; /* the checkpoint was aborted before our hook ran */
    return connect_to(state == SELFCKPT_RESTART ? "hello restart\n"
                      : state == SELFCKPT_ERROR ? "hello error\n"
                                                : "hello continue\n");
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: %s DIR SOCKET STEPS CS_STEP CKPT_STEP SLEEP_MS [REFUSE_STEP]\n",
                argv[0]);
        return 2;
    }
    sock_path = argv[2];
    int steps = atoi(argv[3]), cs_step = atoi(argv[4]), ckpt_step = atoi(argv[5]);
    int sleep_ms = atoi(argv[6]);
    int refuse_step = argc == 8 ? atoi(argv[7]) : -1;

    struct selfckpt_config cfg;
    selfckpt_config_init(&cfg);
    cfg.dir = argv[1];
    cfg.keep = 5;
    cfg.workers = 1;
    if (selfckpt_init_config(&cfg) != 0) {
        fprintf(stderr, "selfckpt_init_config: %s\n", selfckpt_last_error());
        return 3;
    }
    selfckpt_register_hook(SELFCKPT_HOOK_CHECKPOINT, before_checkpoint, NULL);
    selfckpt_register_hook(SELFCKPT_HOOK_CHECKPOINT, refusing_hook, NULL);
    selfckpt_register_hook(SELFCKPT_HOOK_CONTINUE, after_checkpoint, NULL);
    selfckpt_register_hook(SELFCKPT_HOOK_RESTART, after_checkpoint, NULL);
    if (selfckpt_enable() != -1) {
        fprintf(stderr, "FAIL: enable without disable accepted\n");
        return 3;
    }
    if (connect_to("hello start\n") != 0)
        return 4;

    unsigned long long x = 1;
    char line[64];
    for (int step = 0; step < steps; step++) {
        if (step == cs_step) {
            selfckpt_disable();
            selfckpt_disable(); /* nested */
            int seen = __atomic_load_n(&hook_runs, __ATOMIC_SEQ_CST);
            kill(getpid(), SIGUSR1);
            if (selfckpt_checkpoint() != SELFCKPT_DEFERRED) {
                fprintf(stderr, "FAIL: checkpoint inside a critical section not deferred\n");
                return 5;
            }
            usleep(400000);
            selfckpt_enable();
            usleep(100000);
            if (__atomic_load_n(&hook_runs, __ATOMIC_SEQ_CST) != seen) {
                fprintf(stderr, "FAIL: checkpoint ran inside a critical section\n");
                return 5;
            }
            selfckpt_enable();
            for (int i = 0; i < 1000 && __atomic_load_n(&hook_runs, __ATOMIC_SEQ_CST) == seen; i++)
                usleep(10000);
            if (__atomic_load_n(&hook_runs, __ATOMIC_SEQ_CST) == seen) {
                fprintf(stderr, "FAIL: no checkpoint after the critical section ended\n");
                return 5;
            }
            fprintf(stderr, "critical section: checkpoint deferred, then taken\n");
        }
        selfckpt_disable();
        x = x * 6364136223846793005ULL + (unsigned long long)step;
        selfckpt_enable();
        printf("step %d %llu\n", step, x);
        fflush(stdout);
        /* A critical section around the socket: no checkpoint closes it
         * under our feet. */
        selfckpt_disable();
        snprintf(line, sizeof line, "step %d\n", step);
        int sent = say(line);
        selfckpt_enable();
        if (sent != 0) {
            fprintf(stderr, "FAIL: socket write at step %d\n", step);
            return 6;
        }
        if (step == refuse_step) {
            int files = count_files(argv[1]);
            refuse = 1;
            int rc = selfckpt_checkpoint();
            refuse = 0;
            if (rc != SELFCKPT_ERROR || !strstr(selfckpt_last_error(), "42") ||
                count_files(argv[1]) != files || conn < 0) {
                fprintf(stderr, "FAIL: refused checkpoint: rc %d (%s), files %d -> %d, conn %d\n",
                        rc, selfckpt_last_error(), files, count_files(argv[1]), conn);
                return 8;
            }
            fprintf(stderr, "refused checkpoint: %s\n", selfckpt_last_error());
        }
        if (step == ckpt_step) {
            int rc = selfckpt_checkpoint();
            fprintf(stderr, "checkpoint at step %d: %s\n", step,
                    rc == SELFCKPT_CONTINUE  ? "continue"
                    : rc == SELFCKPT_RESTART ? "restart"
                                             : selfckpt_last_error());
            if (rc != SELFCKPT_CONTINUE && rc != SELFCKPT_RESTART)
                return 7;
        }
        usleep(sleep_ms * 1000);
    }
    printf("done %llu\n", x);
    return 0;
}
