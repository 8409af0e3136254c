/* One stage of a shell pipeline `produce N | filter | consume`: the
 * producer writes N numbered lines quickly, the filter squares each
 * number, the consumer is slow (20 ms a line) and prints a running sum,
 * so both pipes hold data most of the time. Deterministic output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    char line[256];
    if (strcmp(mode, "produce") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 100;
        for (long i = 1; i <= n; i++) {
            printf("%ld\n", i);
            fflush(stdout);
            if (i % 20 == 0)
                nap(5);
        }
        return 0;
    }
    if (strcmp(mode, "filter") == 0) {
        while (fgets(line, sizeof line, stdin)) {
            long v = atol(line);
            printf("%ld\n", v * v);
            fflush(stdout);
        }
        return 0;
    }
    if (strcmp(mode, "consume") == 0) {
        long sum = 0, k = 0;
        setvbuf(stdout, NULL, _IOLBF, 0);
        while (fgets(line, sizeof line, stdin)) {
            sum += atol(line);
            k++;
            printf("%ld: %ld\n", k, sum);
            nap(20);
        }
        printf("total %ld lines\n", k);
        return 0;
    }
    fprintf(stderr, "usage: tree_stage produce N | filter | consume\n");
    return 2;
}
