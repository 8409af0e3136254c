/*
 * selfckpt_crs.h — selfckpt as a Checkpoint/Restart Service (CRS)
 * component, after Open MPI's OPAL CRS interface.
 *
 * A framework (an MPI library, a job manager) that wants a single-process
 * checkpointer without being tied to one asks the component for its module
 * and then only calls through the module's function pointers:
 *
 *     int prio;
 *     const struct selfckpt_crs_module *crs = selfckpt_crs_query(&prio);
 *     if (!crs) { fprintf(stderr, "%s\n", selfckpt_last_error()); ... }
 *     crs->init();
 *     struct selfckpt_snapshot *snap = selfckpt_snapshot_new();
 *     int state;
 *     if (crs->checkpoint(0, snap, &state) == 0 && state == SELFCKPT_RESTART)
 *         ...;                                  // we were restarted
 *     ...
 *     pid_t child;                              // later, anywhere:
 *     crs->restart(snap, 1, &child);            // new child; waitpid(child)
 *     selfckpt_snapshot_free(snap);
 *
 * Link with libselfckpt.so (-lselfckpt) or libselfckpt.a, as for
 * selfckpt.h. Restarting runs the `selfckpt restart` command (the restorer
 * lives in that binary): the one named by SELFCKPT_BIN, else the one next
 * to libselfckpt.so (or to the program that links libselfckpt.a), or in
 * ../bin from there, else the first `selfckpt` on PATH.
 *
 * Return codes: 0 success, -1 failure; the reason is selfckpt_last_error()
 * (declared in selfckpt.h; per thread). Functions that return a pointer
 * return NULL on failure. Every function accepts NULL and bad pointers of
 * the kinds named below and fails with a message instead of crashing.
 *
 * Thread-safety: every function may be called from any thread. A snapshot
 * must not be used by two threads at the same time (the library's own
 * remote-copy thread is synchronised internally).
 */
#ifndef SELFCKPT_CRS_H
#define SELFCKPT_CRS_H

#include "selfckpt.h"

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* States reported by checkpoint() (and, for CHECKPOINT / CONTINUE /
 * RESTART / TERM / ERROR, passed to hooks; see selfckpt.h):
 *   SELFCKPT_CHECKPOINT 0   hooks: a checkpoint is about to be taken
 *   SELFCKPT_CONTINUE   1   checkpoint(0): the image is durable, the
 *                           caller goes on
 *   SELFCKPT_RESTART    2   checkpoint(0): this process was restarted
 *                           from the image the call took
 *   SELFCKPT_TERM       3   hooks: checkpoint, then exit(0)
 *   SELFCKPT_DEFERRED   4   checkpoint(0) inside the caller's own critical
 *                           section: it runs when the section ends
 *   SELFCKPT_RUNNING    5   checkpoint(pid): the other process took its
 *                           image and runs on
 *   SELFCKPT_ERROR     -1   failed; no new image, older images intact */
#define SELFCKPT_RUNNING 5

/* ------------------------------------------------------------------ */
/* Snapshot descriptor. Allocated and freed by the library only. Fields
 * are read-only for the caller; the strings belong to the snapshot and
 * stay valid until the snapshot is filled again (checkpoint, set_remote)
 * or freed. New fields are only ever added at the end: check
 * struct_size / version before reading a field newer than version 1. */
#define SELFCKPT_SNAPSHOT_VERSION 1
struct selfckpt_snapshot {
    uint32_t struct_size;        /* sizeof as the library knows it */
    uint32_t version;            /* SELFCKPT_SNAPSHOT_VERSION */
    const char *component;       /* "selfckpt" */
    const char *reference;       /* unique name of the image
                                    ("PROG-MS-PID"), NULL until filled */
    const char *local_location;  /* absolute path of the image file */
    const char *remote_location; /* where the remote copy is or goes,
                                    NULL without a remote location */
    int cold_start;              /* 1: rebuilt from the files alone by
                                    selfckpt_snapshot_from_location */
    int reserved;
    void *internal;              /* the library's; do not touch */
};

/* A new, empty snapshot for checkpoint() to fill.
 * Returns the snapshot, or NULL (out of memory). */
struct selfckpt_snapshot *selfckpt_snapshot_new(void);

/* Cold start: rebuilds a snapshot from the files alone, in a process that
 * did not take the checkpoint. `local` is an image file or a directory of
 * images (then the newest image of which a copy, local or in `remote`, has
 * every checksum intact; damaged ones are skipped with a warning).
 * `remote`: NULL, or the remote directory the images were copied to.
 * Returns the snapshot (cold_start = 1), or NULL: NULL or empty `local`,
 * no such file, no valid image there. */
struct selfckpt_snapshot *selfckpt_snapshot_from_location(const char *local,
                                                          const char *remote);

/* Frees a snapshot made by this library (NULL: does nothing). A pointer
 * that is not one (another component's, already freed) is left alone and
 * the reason set in selfckpt_last_error(). Waits for nothing: a running
 * remote copy finishes on its own. */
void selfckpt_snapshot_free(struct selfckpt_snapshot *snapshot);

/* Remote location: each image checkpoint() writes into this snapshot from
 * now on is also copied into directory `dir` (created 0700), by a
 * background thread, once the local image is durable; the copy gets its
 * own fsync and atomic rename. A failed copy (remote full, unreachable)
 * never fails the checkpoint: it is logged as a warning and reported by
 * selfckpt_snapshot_wait_remote(). restart() uses the local image when it
 * is intact, else the remote copy. `dir` NULL: no remote location.
 * Returns 0, or -1 (bad snapshot, empty dir). */
int selfckpt_snapshot_set_remote(struct selfckpt_snapshot *snapshot,
                                 const char *dir);

/* Waits at most `timeout_ms` (negative: no limit) for the remote copy of
 * the snapshot's image. Returns 0 once the copy is durable; -1 if it
 * failed (selfckpt_last_error() says why, e.g. "No space left on
 * device"), is still running at the timeout, or there is none. */
int selfckpt_snapshot_wait_remote(struct selfckpt_snapshot *snapshot,
                                  int timeout_ms);

/* ------------------------------------------------------------------ */
/* The module. Every pointer is set; the struct is static (never freed).
 * New members are only ever added at the end (struct_size, version). */
#define SELFCKPT_CRS_MODULE_VERSION 1
struct selfckpt_crs_module {
    uint32_t struct_size;
    uint32_t version;
    const char *component; /* "selfckpt" */

    /* Prepares checkpoints of this process: installs the checkpointer
     * from the SELFCKPT_* variables (see selfckpt.h) unless the program
     * or `selfckpt run` already did. Needed before checkpoint(0), not for
     * checkpoint(pid) or restart(). Idempotent.
     * Returns 0, or -1 (bad SELFCKPT_* value, image directory not
     * creatable). */
    int (*init)(void);

    /* Waits for the remote copies started so far. The checkpointer stays
     * installed (a process cannot uninstall it). Returns 0. */
    int (*finalize)(void);

    /* pid == 0: checkpoints the calling process and waits until the image
     * is durable. *state = SELFCKPT_CONTINUE in the original,
     * SELFCKPT_RESTART when this process is later restarted from the
     * image (the snapshot then names that image), SELFCKPT_DEFERRED when
     * called inside the caller's own critical section (the checkpoint
     * runs when it ends; snapshot unchanged). Called while another thread
     * holds a critical section, it waits for that section to end.
     * pid != 0: checkpoints another process of the same user that runs
     * selfckpt (as `selfckpt checkpoint PID --wait` does: its trigger
     * signal, its SELFCKPT_DIR or ./ckpt) and waits until its image is
     * durable (120 s at most); *state = SELFCKPT_RUNNING.
     * Fills `snapshot` (reference, local location, remote location) and
     * starts the remote copy when one is set.
     * Returns 0; or -1 with *state = SELFCKPT_ERROR, no new image and
     * older images intact: NULL snapshot or state, snapshot of another
     * component, init not called (pid 0), no such process, a process of
     * another user, one that does not run selfckpt, a failed checkpoint. */
    int (*checkpoint)(pid_t pid, struct selfckpt_snapshot *snapshot,
                      int *state);

    /* Restarts the snapshot's image (the local copy if every checksum
     * verifies, else the remote copy), also from a cold start.
     * spawn_child != 0: the restarted program runs as a new child of the
     * caller, *child_pid is its pid; the caller waitpid()s it and gets the
     * program's exit status. It inherits the caller's stdin, stdout and
     * stderr. spawn_child == 0: the restarted program replaces the caller
     * (like exec: same pid; never returns on success); child_pid may be
     * NULL. Process and thread ids: as SELFCKPT_TIDS says (auto: exact
     * where a PID namespace is possible), as for `selfckpt restart`.
     * Returns 0 (child spawned), or -1: NULL snapshot (or NULL child_pid
     * with spawn_child), snapshot of another component, snapshot naming
     * no image, no intact copy, no `selfckpt` command found. A restart the
     * `selfckpt` command itself refuses (changed executable, ...) shows
     * as the child's exit status 1 and its message on stderr. */
    int (*restart)(struct selfckpt_snapshot *snapshot, int spawn_child,
                   pid_t *child_pid);

    /* Critical section, as selfckpt_disable()/selfckpt_enable(): no
     * checkpoint starts while one is open; one asked for meanwhile waits
     * and runs when the last section ends (and says on stderr that it was
     * delayed when SELFCKPT_LOG=info). Sections nest, per thread; enable
     * on the thread that disabled. enable without disable returns -1. */
    int (*disable_checkpoint)(void);
    int (*enable_checkpoint)(void);
};

/* Asks the component whether it can serve here. Sets *priority (0..100,
 * higher is better): lowered when PAGEMAP_SCAN is missing (slower scans),
 * when user namespaces are not allowed (restarted processes get new ids)
 * and when no `selfckpt` command is found (restart impossible);
 * selfckpt_last_error() then says why ("" at 100).
 * Returns the module, or NULL when selfckpt cannot run at all here (the
 * program runs setuid/setgid, /proc is not mounted) or `priority` is NULL;
 * selfckpt_last_error() says why. Does not install anything. */
const struct selfckpt_crs_module *selfckpt_crs_query(int *priority);

#ifdef __cplusplus
}
#endif

#endif /* SELFCKPT_CRS_H */
