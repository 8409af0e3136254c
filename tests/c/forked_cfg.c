/*
 * The C ABI's `forked` field (tests/e2e_forked.rs): installs with
 * cfg.forked = 1 (or, with the argument "v1", with the struct_size of the
 * first struct version, which has no `forked` field: accepted, and the
 * field not read), fills 8 MiB, checkpoints itself and prints the stats
 * line's "forked" value ("continued forked:true"), or after a restart
 * checks its memory and prints "restarted ok".
 *
 * usage: forked_cfg DIR [v1]
 */
#define _GNU_SOURCE
#include <selfckpt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N (8u << 20)

static unsigned char *mem;

static unsigned char at(size_t i) { return (unsigned char)(i * 2654435761u >> 13); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: forked_cfg DIR [v1]\n");
        return 2;
    }
    struct selfckpt_config cfg;
    selfckpt_config_init(&cfg);
    cfg.dir = argv[1];
    cfg.forked = 1;
    if (argc > 2 && strcmp(argv[2], "v1") == 0)
        cfg.struct_size = offsetof(struct selfckpt_config, forked);
    if (selfckpt_init_config(&cfg) != 0) {
        fprintf(stderr, "selfckpt_init_config: %s\n", selfckpt_last_error());
        return 3;
    }
    mem = malloc(N);
    for (size_t i = 0; i < N; i++)
        mem[i] = at(i);
    int r = selfckpt_checkpoint();
    if (r == SELFCKPT_RESTART) {
        for (size_t i = 0; i < N; i++)
            if (mem[i] != at(i)) {
                printf("memory differs at %zu\n", i);
                return 4;
            }
        printf("restarted ok\n");
        return 0;
    }
    if (r != SELFCKPT_CONTINUE) {
        fprintf(stderr, "checkpoint: %s\n", selfckpt_last_error());
        return 5;
    }
    char path[4096], line[8192], last[8192] = "";
    snprintf(path, sizeof path, "%s/stats.jsonl", argv[1]);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        strcpy(last, line);
    if (f)
        fclose(f);
    printf("continued %s\n", strstr(last, "\"forked\":true") ? "forked:true" : "forked:false");
    return 0;
}
