/*
 * The C ABI's `forked` field (tests/e2e_forked.rs): installs with
 * cfg.forked = 1 (or, with the argument "v1", with the struct_size of the
 * first struct version, which has no `forked` field: accepted, and the
 * field not read), fills 8 MiB, checkpoints itself and prints the stats
 * line's "forked" value ("continued forked:true"), or after a restart
 * checks its memory and prints "restarted ok". With "incremental" it sets
 * cfg.incremental = 1 (and not forked), checkpoints twice and prints
 * whether the second image names a parent ("continued incremental:true");
 * with "v2" the same with the struct_size of the second version, which
 * has no `incremental` field ("incremental:false").
 *
 * usage: forked_cfg DIR [v1|incremental|v2]
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
    const char *mode = argc > 2 ? argv[2] : "";
    int incremental = strcmp(mode, "incremental") == 0 || strcmp(mode, "v2") == 0;
    if (strcmp(mode, "v1") == 0)
        cfg.struct_size = offsetof(struct selfckpt_config, forked);
    if (incremental) {
        cfg.forked = 0;
        cfg.incremental = 1;
        cfg.full_every = 5;
    }
    if (strcmp(mode, "v2") == 0)
        cfg.struct_size = offsetof(struct selfckpt_config, incremental) + sizeof(int);
    if (selfckpt_init_config(&cfg) != 0) {
        fprintf(stderr, "selfckpt_init_config: %s\n", selfckpt_last_error());
        return 3;
    }
    mem = malloc(N);
    for (size_t i = 0; i < N; i++)
        mem[i] = at(i);
    int r = selfckpt_checkpoint();
    if (incremental && r == SELFCKPT_CONTINUE)
        r = selfckpt_checkpoint();
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
    if (incremental)
        printf("continued %s\n", strstr(last, "\"parent\"") ? "incremental:true" : "incremental:false");
    else
        printf("continued %s\n", strstr(last, "\"forked\":true") ? "forked:true" : "forked:false");
    return 0;
}
