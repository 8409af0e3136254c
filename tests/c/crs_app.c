/*
 * Test program for the CRS module (tests/e2e_crs.rs): a framework's view
 * of selfckpt. Everything goes through the module from selfckpt_crs_query
 * (its function pointers) and the snapshot constructors/destructor.
 *
 * usage:
 *   crs_app work STEPS SLEEP_MS CKPT [REMOTE_DIR]
 *       SELFCKPT_DIR must be set. Prints "step I X" per step, "done X".
 *       With CKPT=1, steps 1..7 each checkpoint this process (pid 0):
 *       step%3==0 plain; ==1 while another thread holds a critical section
 *       (the call must wait for it); ==2 inside its own section (DEFERRED,
 *       the checkpoint runs at enable), then once more outside. A restarted
 *       copy sees state RESTART, checks the snapshot, says so on stderr and
 *       goes on. With REMOTE_DIR, each image is also copied there; the
 *       result of each copy is said on stderr ("remote ok" / "remote
 *       failed: ..."). At the end: "restarts N", "threads N" on stderr.
 *   crs_app ckpt-pid PID
 *       Checkpoints another process; prints "image PATH".
 *   crs_app restart-child LOCATION [REMOTE_DIR]
 *       Cold start: snapshot from LOCATION, restart as a child, waitpid;
 *       exits with the child's code.
 *   crs_app bad NOT_SELFCKPT_PID OTHER_USER_PID EMPTY_DIR DAMAGED_DIR
 *       Bad inputs: prints "CASE: MESSAGE" for each; exit 0 if every one
 *       failed cleanly, 9 otherwise.
 * Exit codes: 0 ok, 2 usage, 3..8 a check failed (stderr).
 */
#include "selfckpt_crs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const struct selfckpt_crs_module *crs;

static void die(int code, const char *what) {
    fprintf(stderr, "crs_app: %s: %s\n", what, selfckpt_last_error());
    exit(code);
}

static const struct selfckpt_crs_module *get_module(void) {
    int prio = -1;
    const struct selfckpt_crs_module *m = selfckpt_crs_query(&prio);
    if (!m)
        die(3, "query");
    if (prio < 0 || prio > 100 || strcmp(m->component, "selfckpt") != 0 ||
        m->struct_size < sizeof *m)
        die(3, "query returned a strange module");
    fprintf(stderr, "crs_app: priority %d (%s)\n", prio, selfckpt_last_error());
    return m;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0)
        ;
}

/* Images the checkpointer reported as written ("continue" lines). */
static int written(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/stats.jsonl", getenv("SELFCKPT_DIR"));
    FILE *f = fopen(path, "r");
    int n = 0;
    char line[8192];
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"state\":\"continue\""))
            n++;
    fclose(f);
    return n;
}

/* This process's threads (/proc/self/status). */
static int threads(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static volatile int inside, left;

static void *holder(void *arg) {
    (void)arg;
    if (crs->disable_checkpoint() != 0)
        die(4, "disable (holder)");
    __atomic_store_n(&inside, 1, __ATOMIC_SEQ_CST);
    sleep_ms(150);
    __atomic_store_n(&left, 1, __ATOMIC_SEQ_CST);
    if (crs->enable_checkpoint() != 0)
        die(4, "enable (holder)");
    return NULL;
}

static const char *remote;

/* One checkpoint of this process; checks and reports its state. */
static void checkpoint_self(struct selfckpt_snapshot *snap, int step) {
    int state = -100;
    if (crs->checkpoint(0, snap, &state) != 0)
        die(5, "checkpoint");
    if (state == SELFCKPT_RESTART) {
        /* The image it came from: the local copy or (lost) the remote. */
        int readable = access(snap->local_location, R_OK) == 0 ||
                       (snap->remote_location && access(snap->remote_location, R_OK) == 0);
        if (!snap->reference || !snap->local_location || snap->cold_start || !readable ||
            strcmp(snap->component, "selfckpt") != 0)
            die(6, "restarted with a wrong snapshot");
        fprintf(stderr, "crs_app: restarted at step %d from %s\n", step,
                snap->reference);
        return;
    }
    if (state != SELFCKPT_CONTINUE)
        die(5, "checkpoint state is not CONTINUE");
    if (!snap->local_location || access(snap->local_location, R_OK) != 0)
        die(5, "checkpoint names no image");
    fprintf(stderr, "crs_app: checkpoint at step %d: %s\n", step,
            snap->local_location);
    if (remote) {
        if (!snap->remote_location)
            die(5, "no remote location in the snapshot");
        if (selfckpt_snapshot_wait_remote(snap, 20000) == 0)
            fprintf(stderr, "crs_app: remote ok %s\n", snap->remote_location);
        else
            fprintf(stderr, "crs_app: remote failed: %s\n", selfckpt_last_error());
    }
}

static int work(int steps, int ms, int ckpt) {
    if (!getenv("SELFCKPT_DIR"))
        return 2;
    crs = get_module();
    if (crs->init() != 0)
        die(3, "init");
    struct selfckpt_snapshot *snap = selfckpt_snapshot_new();
    if (!snap || snap->struct_size < sizeof *snap ||
        snap->version != SELFCKPT_SNAPSHOT_VERSION || snap->reference)
        die(3, "snapshot_new");
    if (remote && selfckpt_snapshot_set_remote(snap, remote) != 0)
        die(3, "set_remote");
    unsigned long long x = 1;
    for (int i = 1; i <= steps; i++) {
        x = x * 6364136223846793005ULL + (unsigned long long)i;
        printf("step %d %llu\n", i, x);
        fflush(stdout);
        sleep_ms(ms);
        if (!ckpt || i > 7)
            continue;
        if (i % 3 == 1) {
            pthread_t t;
            inside = left = 0;
            pthread_create(&t, NULL, holder, NULL);
            while (!__atomic_load_n(&inside, __ATOMIC_SEQ_CST))
                sleep_ms(1);
            checkpoint_self(snap, i);
            if (!__atomic_load_n(&left, __ATOMIC_SEQ_CST))
                die(7, "checkpoint ran inside another thread's critical section");
            pthread_join(t, NULL);
        } else if (i % 3 == 2) {
            int before = written(), state = -100;
            if (crs->disable_checkpoint() != 0)
                die(4, "disable");
            if (crs->checkpoint(0, snap, &state) != 0 || state != SELFCKPT_DEFERRED)
                die(7, "checkpoint inside a section is not DEFERRED");
            if (crs->enable_checkpoint() != 0)
                die(4, "enable");
            for (int w = 0; written() <= before; w++) {
                if (w > 5000)
                    die(7, "the deferred checkpoint did not run at enable");
                sleep_ms(2);
            }
            checkpoint_self(snap, i);
        } else {
            checkpoint_self(snap, i);
        }
    }
    printf("done %llu\n", x);
    fflush(stdout);
    crs->finalize();
    selfckpt_snapshot_free(snap);
    fprintf(stderr, "crs_app: restarts %llu\n",
            (unsigned long long)selfckpt_restart_count());
    fprintf(stderr, "crs_app: threads %d\n", threads());
    return 0;
}

static int ckpt_pid(pid_t pid) {
    crs = get_module();
    struct selfckpt_snapshot *snap = selfckpt_snapshot_new();
    int state = -100;
    if (crs->checkpoint(pid, snap, &state) != 0)
        die(1, "checkpoint by pid");
    if (state != SELFCKPT_RUNNING || !snap->local_location || !snap->reference)
        die(5, "checkpoint by pid: bad state or snapshot");
    printf("image %s\n", snap->local_location);
    selfckpt_snapshot_free(snap);
    return 0;
}

static int restart_child(const char *loc) {
    crs = get_module();
    struct selfckpt_snapshot *snap = selfckpt_snapshot_from_location(loc, remote);
    if (!snap)
        die(1, "snapshot_from_location");
    if (!snap->cold_start || !snap->reference || !snap->local_location)
        die(6, "cold-start snapshot not filled");
    pid_t child = -1;
    if (crs->restart(snap, 1, &child) != 0)
        die(1, "restart");
    int status;
    if (waitpid(child, &status, 0) != child)
        die(8, "waitpid");
    selfckpt_snapshot_free(snap);
    if (WIFEXITED(status)) {
        fprintf(stderr, "crs_app: child %d exited %d\n", (int)child, WEXITSTATUS(status));
        return WEXITSTATUS(status);
    }
    fprintf(stderr, "crs_app: child %d killed by signal %d\n", (int)child, WTERMSIG(status));
    return 100 + WTERMSIG(status);
}

static int failures;

/* A call that must fail: prints its message. */
static void expect_fail(const char *what, int failed) {
    printf("%s: %s\n", what, failed ? selfckpt_last_error() : "DID NOT FAIL");
    if (!failed)
        failures++;
}

static int bad(pid_t not_selfckpt, pid_t other_user, const char *empty,
               const char *damaged) {
    expect_fail("query-null", selfckpt_crs_query(NULL) == NULL);
    crs = get_module();
    int state;
    pid_t child;
    struct selfckpt_snapshot *snap = selfckpt_snapshot_new();
    expect_fail("checkpoint-null-snapshot", crs->checkpoint(0, NULL, &state) != 0);
    expect_fail("checkpoint-null-state", crs->checkpoint(0, snap, NULL) != 0);
    expect_fail("checkpoint-not-initialised", crs->checkpoint(0, snap, &state) != 0);
    expect_fail("restart-null-snapshot", crs->restart(NULL, 1, &child) != 0);
    expect_fail("restart-null-child", crs->restart(snap, 1, NULL) != 0);
    expect_fail("restart-empty-snapshot", crs->restart(snap, 1, &child) != 0);
    expect_fail("from-location-null", selfckpt_snapshot_from_location(NULL, NULL) == NULL);
    expect_fail("set-remote-null", selfckpt_snapshot_set_remote(NULL, "/tmp") != 0);
    expect_fail("wait-remote-none", selfckpt_snapshot_wait_remote(snap, 10) != 0);
    expect_fail("enable-without-disable", crs->enable_checkpoint() != 0);

    struct selfckpt_snapshot other;
    memset(&other, 0, sizeof other);
    other.struct_size = sizeof other;
    other.version = 1;
    other.component = "blcr";
    other.local_location = "/tmp/context.1234";
    expect_fail("restart-other-component", crs->restart(&other, 1, &child) != 0);
    expect_fail("checkpoint-other-component", crs->checkpoint(not_selfckpt, &other, &state) != 0);
    struct selfckpt_snapshot forged = *snap;
    expect_fail("restart-forged", crs->restart(&forged, 1, &child) != 0);

    expect_fail("checkpoint-not-selfckpt", crs->checkpoint(not_selfckpt, snap, &state) != 0);
    if (state != SELFCKPT_ERROR)
        failures++;
    expect_fail("checkpoint-other-user", crs->checkpoint(other_user, snap, &state) != 0);
    expect_fail("checkpoint-no-process", crs->checkpoint(999999999, snap, &state) != 0);
    expect_fail("checkpoint-negative-pid", crs->checkpoint(-5, snap, &state) != 0);
    expect_fail("from-location-empty-dir", selfckpt_snapshot_from_location(empty, NULL) == NULL);
    expect_fail("from-location-damaged", selfckpt_snapshot_from_location(damaged, NULL) == NULL);
    expect_fail("from-location-missing",
                selfckpt_snapshot_from_location("/nonexistent/ckpt", NULL) == NULL);
    selfckpt_snapshot_free(snap);
    selfckpt_snapshot_free(NULL);
    return failures ? 9 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "work") == 0) {
        remote = argc > 5 ? argv[5] : NULL;
        return work(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 3 && strcmp(argv[1], "ckpt-pid") == 0)
        return ckpt_pid((pid_t)atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "restart-child") == 0) {
        remote = argc > 3 ? argv[3] : NULL;
        return restart_child(argv[2]);
    }
    if (argc == 6 && strcmp(argv[1], "bad") == 0)
        return bad((pid_t)atoi(argv[2]), (pid_t)atoi(argv[3]), argv[4], argv[5]);
    fprintf(stderr, "usage: see the comment at the top of crs_app.c\n");
    return 2;
}
