/*
 * Test program for the CRS module (tests/e2e_crs.rs): restarts an image in
 * place of itself (spawn_child = 0), from a cold start, through the module
 * from selfckpt_crs_query only.
 *
 * usage: crs_exec LOCATION [REMOTE_DIR]
 * On success this process becomes the restarted program (same pid) and
 * its output and exit code are the program's. Exit 1 if the restart could
 * not start (message on stderr), 2 usage.
 */
#include "selfckpt_crs.h"

#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int prio;
    const struct selfckpt_crs_module *crs = selfckpt_crs_query(&prio);
    if (!crs) {
        fprintf(stderr, "crs_exec: query: %s\n", selfckpt_last_error());
        return 1;
    }
    struct selfckpt_snapshot *snap =
        selfckpt_snapshot_from_location(argv[1], argc > 2 ? argv[2] : NULL);
    if (!snap) {
        fprintf(stderr, "crs_exec: %s\n", selfckpt_last_error());
        return 1;
    }
    fprintf(stderr, "crs_exec: pid %d restarts %s\n", (int)getpid(), snap->reference);
    crs->restart(snap, 0, NULL);
    fprintf(stderr, "crs_exec: restart: %s\n", selfckpt_last_error());
    selfckpt_snapshot_free(snap);
    return 1;
}
