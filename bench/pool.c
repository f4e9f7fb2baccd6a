/*
 * pool: what the supervisor's pool routing decision (supervisor/pool.c)
 * costs at a thousand bots — pool_choose over one pool of every bot (the
 * worst case: every bot is a candidate), over a pool of a tenth of them
 * asked by pool and tag, and with loads changing between decisions as the
 * channel's status messages change them.
 *
 * Usage: bench-pool [BOTS [ROUNDS]]   (default 1000 bots, 20000 rounds).
 * Built by CMake as build/bench/bench-pool. One JSON line of figures on
 * stdout: microseconds per decision, median and p99 of the rounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "supervisor/pool.h"

/* Ascending doubles, for qsort. */
static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* N bots: every one in pool "all", each tenth also in pool "tenth" with tag
 * "gpu", each bot tagged "t<i % 7>". */
static struct pool *bench_pool(size_t n, char (*ids)[32], char (*tags)[8])
{
    static const char *none[] = {NULL};
    struct pool_bot_def *defs = xcalloc(n, sizeof *defs);
    const char *(*tv)[3] = xcalloc(n, sizeof *tv);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], 32, "BOT-%04zu", i);
        snprintf(tags[i], 8, "t%u", (unsigned)(i % 7));
        tv[i][0] = tags[i];
        tv[i][1] = i % 10 == 0 ? "gpu" : NULL;
        defs[i] = (struct pool_bot_def){ids[i], "all", i % 3 ? tv[i] : none};
    }
    struct pool *p = pool_new();
    pool_set_bots(p, defs, n);
    for (size_t i = 0; i < n; i++)
        pool_note_running(p, i, true);
    free(defs);
    free(tv);
    return p;
}

/* Time ROUNDS decisions of Q, each after one bot's load changed; fills the
 * median and p99 in microseconds. */
static void bench_rounds(struct pool *p, size_t n, const struct pool_query *q, size_t rounds,
                         double *median, double *p99)
{
    double *us = xcalloc(rounds, sizeof *us);
    volatile long sink = 0;
    for (size_t r = 0; r < rounds; r++) {
        size_t i = (r * 7919) % n;
        pool_note_load(p, i, (enum pool_activity)(r % 3), (unsigned)(r % 5), (int64_t)r);
        int64_t t0 = util_mono_ns();
        long best = pool_choose(p, q);
        int64_t t1 = util_mono_ns();
        sink += best;
        if (best >= 0)
            pool_note_sent(p, (size_t)best);
        us[r] = (double)(t1 - t0) / 1e3;
    }
    (void)sink;
    qsort(us, rounds, sizeof *us, bench_cmp);
    *median = us[rounds / 2];
    *p99 = us[rounds * 99 / 100];
    free(us);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    size_t rounds = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    if (n == 0 || rounds == 0) {
        fprintf(stderr, "usage: bench-pool [BOTS [ROUNDS]]\n");
        return 2;
    }
    char(*ids)[32] = xcalloc(n, sizeof *ids);
    char(*tags)[8] = xcalloc(n, sizeof *tags);
    struct pool *p = bench_pool(n, ids, tags);
    const char *gpu[] = {"gpu"}, *two[] = {"t3", "gpu"};
    struct pool_query all = {.pool = "all"}, by_tag = {.tags = gpu, .n_tags = 1},
                      pool_tags = {.pool = "all", .tags = two, .n_tags = 2};
    double m1, q1, m2, q2, m3, q3;
    bench_rounds(p, n, &all, rounds, &m1, &q1);
    bench_rounds(p, n, &by_tag, rounds, &m2, &q2);
    bench_rounds(p, n, &pool_tags, rounds, &m3, &q3);
    printf("{\"bots\":%zu,\"rounds\":%zu,\"pool_all_us\":%.3f,\"pool_all_p99_us\":%.3f,"
           "\"tag_us\":%.3f,\"tag_p99_us\":%.3f,\"pool_tags_us\":%.3f,\"pool_tags_p99_us\":%.3f}\n",
           n, rounds, m1, q1, m2, q2, m3, q3);
    pool_free(p);
    free(ids);
    free(tags);
    return 0;
}
