/*
 * selfckpt.h — C interface of selfckpt, in-process checkpoint/restart.
 *
 * Link with libselfckpt.so (-lselfckpt) or libselfckpt.a (then also
 * -lpthread -ldl -lm -lrt -lgcc_s). Usable from C, from C++ (extern "C"
 * below) and from Fortran through bind(C) (all types are C int, double,
 * uint32_t/uint64_t, pointers).
 *
 * Typical use:
 *
 *     if (selfckpt_init() != 0)                  // SELFCKPT_* variables
 *         fprintf(stderr, "%s\n", selfckpt_last_error());
 *     selfckpt_register_hook(SELFCKPT_HOOK_CHECKPOINT, close_conn, &conn);
 *     selfckpt_register_hook(SELFCKPT_HOOK_CONTINUE, reopen_conn, &conn);
 *     selfckpt_register_hook(SELFCKPT_HOOK_RESTART, reopen_conn, &conn);
 *     for (...) {
 *         selfckpt_disable();   // no checkpoint while the state is torn
 *         update(...);
 *         selfckpt_enable();    // a checkpoint asked for meanwhile runs now
 *     }
 *     switch (selfckpt_checkpoint()) {
 *     case SELFCKPT_CONTINUE: ...; break;   // image written
 *     case SELFCKPT_RESTART:  ...; break;   // we were restarted from it
 *     }
 *
 * Then `kill -USR1 PID` checkpoints, `kill -USR2 PID` checkpoints and exits
 * with code 0, and `selfckpt restart --dir DIR` resumes the newest image.
 *
 * Unless noted, functions return 0 on success and -1 on failure; the text
 * of the last failure on the calling thread is selfckpt_last_error().
 */
#ifndef SELFCKPT_H
#define SELFCKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* States, as returned by selfckpt_checkpoint() and passed to hooks
 * (after Open MPI's checkpoint/restart states). */
#define SELFCKPT_CHECKPOINT 0 /* hook: a checkpoint is about to be taken */
#define SELFCKPT_CONTINUE 1   /* the image was written, the program goes on */
#define SELFCKPT_RESTART 2    /* this process was restarted from the image */
#define SELFCKPT_TERM 3       /* hook: checkpoint, then exit(0) (SIGUSR2) */
#define SELFCKPT_DEFERRED 4   /* asked inside a critical section: runs when
                                 the section ends */
#define SELFCKPT_ERROR (-1)   /* failed; previous images are intact */

/* Explicit configuration. Fill with selfckpt_config_init() first, then set
 * the fields you want; fields left alone take the SELFCKPT_* environment
 * variables, else the defaults. */
struct selfckpt_config {
    uint32_t struct_size;    /* set by selfckpt_config_init */
    uint32_t keep;           /* images to keep (0: SELFCKPT_KEEP or 3) */
    const char *dir;         /* image directory (NULL: SELFCKPT_DIR or
                                "ckpt"); copied */
    int signal;              /* checkpoint signal (0: SIGUSR1) */
    int term_signal;         /* checkpoint-then-exit signal (0: SIGUSR2,
                                -1: none) */
    int level;               /* 0 store, 1..19 zstd, -1..-7 zstd fast
                                (-100: default) */
    uint32_t workers;        /* compression threads (0: one per CPU) */
    double interval_seconds; /* also checkpoint this often (0: never) */
    int forked;              /* 1: forked checkpoints (the program pauses
                                only to fork; a copy-on-write child writes
                                the image), 0: not, -1: SELFCKPT_FORKED or
                                off. Added after interval_seconds: a
                                program built with the older, shorter
                                struct still works */
    int incremental;         /* 1: incremental checkpoints (an image holds
                                only the pages changed since its parent),
                                0: not, -1: SELFCKPT_INCREMENTAL or off */
    uint32_t full_every;     /* incremental: a full image every this many
                                checkpoints (0: SELFCKPT_FULL_EVERY or 10).
                                incremental and full_every were added after
                                forked */
};

/* Sets every field of *cfg to "unset" (the first `size` bytes: a program
 * passes sizeof its struct, so an older, shorter struct gets only the
 * fields it has). */
void selfckpt_config_init_size(struct selfckpt_config *cfg, size_t size);
#define selfckpt_config_init(cfg) selfckpt_config_init_size((cfg), sizeof *(cfg))

/* Installs the checkpointer from SELFCKPT_DIR, SELFCKPT_SIGNAL,
 * SELFCKPT_TERM_SIGNAL, SELFCKPT_INTERVAL, SELFCKPT_KEEP, SELFCKPT_LEVEL,
 * SELFCKPT_WORKERS. Once per process. */
int selfckpt_init(void);

/* Installs the checkpointer with an explicit configuration. */
int selfckpt_init_config(const struct selfckpt_config *cfg);

/* Takes a checkpoint and waits for it. Returns SELFCKPT_CONTINUE in the
 * running process, SELFCKPT_RESTART when the process is later restarted
 * from this image, SELFCKPT_DEFERRED when called inside a critical section
 * of this thread, SELFCKPT_ERROR on failure. */
int selfckpt_checkpoint(void);

/* Critical sections: between selfckpt_disable() and selfckpt_enable() no
 * checkpoint starts; one asked for meanwhile runs as soon as the last open
 * section ends. Sections nest and work from any thread; a thread that
 * enters while a checkpoint is in progress waits for it to finish.
 * selfckpt_enable() without an open section returns -1. Call
 * selfckpt_enable() on the thread that called selfckpt_disable(): nesting
 * (which lets a thread that already holds a section enter another while a
 * checkpoint waits) is tracked per thread. */
int selfckpt_disable(void);
int selfckpt_enable(void);

/* Number of times this process has been restarted. */
uint64_t selfckpt_restart_count(void);

/* Hooks. `fn` is called on selfckpt's checkpoint thread with the state and
 * `user` (which must stay valid and be usable from that thread):
 *   SELFCKPT_HOOK_CHECKPOINT  before the checkpoint, in registration order,
 *                             state SELFCKPT_CHECKPOINT or SELFCKPT_TERM;
 *                             returning non-zero aborts the checkpoint
 *                             (continue hooks then get SELFCKPT_ERROR);
 *   SELFCKPT_HOOK_CONTINUE    after it, reverse order, SELFCKPT_CONTINUE
 *                             or SELFCKPT_ERROR;
 *   SELFCKPT_HOOK_RESTART     after a restart, reverse order,
 *                             SELFCKPT_RESTART.
 * Hooks may allocate and do I/O; they run while the other threads run. */
#define SELFCKPT_HOOK_CHECKPOINT 0
#define SELFCKPT_HOOK_CONTINUE 1
#define SELFCKPT_HOOK_RESTART 2
typedef int (*selfckpt_hook_fn)(int state, void *user);
int selfckpt_register_hook(int when, selfckpt_hook_fn fn, void *user);

/* The last failure on this thread ("" if none); valid until the next
 * selfckpt call on this thread. */
const char *selfckpt_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* SELFCKPT_H */
