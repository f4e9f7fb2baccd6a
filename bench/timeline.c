/*
 * timeline: what the durable timeline (worker/timeline.c) costs at a million
 * entries — appending, opening, rebuilding the index from the JSONL, and
 * filtered pages of GET /api/timeline (one bot, and merged over 4 bots).
 *
 * Usage: bench-timeline [ENTRIES [DIR]]   (default 1000000, a fresh folder
 * under $TMPDIR or /tmp, removed at the end). Built by CMake as
 * build/bench/bench-timeline. Progress on stderr; one JSON line of figures on
 * stdout. A page's time is the whole timeline_answer() call: query parsing,
 * the index search, reading and parsing the page's JSONL lines and writing
 * the answer's JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "worker/timeline.h"

#define BENCH_T0 1767225600LL /* 2026-01-01T00:00:00Z */
#define BENCH_ROUNDS 200

static unsigned bench_seed = 42;

/* A small deterministic PRNG. */
static unsigned bench_rand(void)
{
    bench_seed = bench_seed * 1103515245u + 12345u;
    return (bench_seed >> 8) & 0xffffff;
}

/* Seconds of CLOCK. */
static double bench_now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Append N entries like a busy bot's; the last entry's time in *LAST. */
static void bench_fill(struct timeline *tl, size_t n, double *wall_us, double *cpu_us,
                       int64_t *last)
{
    static const char *const sources[] = {"file", "file", "file", "file",      "file",
                                          "http", "http", "http", "websocket", "websocket"};
    char out[256], id[32], rf[96];
    memset(out, 'x', sizeof out);
    out[200] = '\0';
    int64_t t = BENCH_T0;
    double w0 = bench_now(CLOCK_MONOTONIC), c0 = bench_now(CLOCK_PROCESS_CPUTIME_ID);
    for (size_t i = 0; i < n; i++) {
        t += bench_rand() % 4;
        snprintf(id, sizeof id, "TASK-%zu", i);
        snprintf(rf, sizeof rf, "2026-01-01-0000-BOT-1-user-RESPONSE-%s-complete.md", id);
        bool ok = bench_rand() % 10 != 0;
        struct timeline_entry e = {.task_id = id,
                                   .source = sources[bench_rand() % 10],
                                   .finished_wall_ns = t * 1000000000LL,
                                   .success = ok,
                                   .output = out,
                                   .output_len = 200,
                                   .error = ok ? NULL : "exit status 1",
                                   .duration_seconds = (bench_rand() % 100000) / 1000.0,
                                   .response_file = rf};
        if (timeline_append(tl, &e) != 0) {
            perror("timeline_append");
            exit(1);
        }
        if (i % 100000 == 99999)
            fprintf(stderr, "  %zu appended\n", i + 1);
    }
    *wall_us = (bench_now(CLOCK_MONOTONIC) - w0) * 1e6 / (double)n;
    *cpu_us = (bench_now(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e6 / (double)n;
    *last = t;
}

/* Open BOT in DIR (writer or reader), timed in *MS. */
static struct timeline *bench_open(const char *dir, const char *bot, bool writer, double *ms)
{
    char err[256];
    double w0 = bench_now(CLOCK_MONOTONIC);
    struct timeline *tl = timeline_open(dir, bot, writer, err, sizeof err);
    *ms = (bench_now(CLOCK_MONOTONIC) - w0) * 1e3;
    if (!tl) {
        fprintf(stderr, "timeline_open: %s\n", err);
        exit(1);
    }
    return tl;
}

/* Ascending doubles. */
static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Time BENCH_ROUNDS answers of QS over TLS (one: timeline_answer; more:
 * merged): wall and CPU times; a JSON row of them is appended to OUT. */
static void bench_query(struct timeline **tls, size_t n, const char *qs, struct util_buf *out)
{
    double ms[BENCH_ROUNDS], cpu[BENCH_ROUNDS];
    char *body = NULL;
    size_t len = 0;
    int status = 0;
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        free(body);
        double w0 = bench_now(CLOCK_MONOTONIC), c0 = bench_now(CLOCK_THREAD_CPUTIME_ID);
        status = n == 1 ? timeline_answer(tls[0], qs, &body, &len)
                        : timeline_answer_merged(tls, n, qs, NULL, &body, &len);
        ms[r] = (bench_now(CLOCK_MONOTONIC) - w0) * 1e3;
        cpu[r] = (bench_now(CLOCK_THREAD_CPUTIME_ID) - c0) * 1e3;
    }
    qsort(ms, BENCH_ROUNDS, sizeof ms[0], bench_cmp);
    qsort(cpu, BENCH_ROUNDS, sizeof cpu[0], bench_cmp);
    const char *tc = strstr(body, "\"total_count\":");
    long long total = tc ? atoll(tc + 14) : -1;
    const char *ec = strstr(body, "\"entries_count\":");
    long long count = ec ? atoll(ec + 16) : -1;
    if (status != 200) {
        fprintf(stderr, "%s: %d %s\n", qs, status, body);
        exit(1);
    }
    double med = ms[BENCH_ROUNDS / 2], p99 = ms[BENCH_ROUNDS * 99 / 100],
           max = ms[BENCH_ROUNDS - 1];
    double cmed = cpu[BENCH_ROUNDS / 2], cp99 = cpu[BENCH_ROUNDS * 99 / 100];
    fprintf(stderr,
            "  bots=%zu %s\n    wall median %.3f ms, p99 %.3f, max %.3f; CPU median %.3f ms, "
            "p99 %.3f; %lld of %lld\n",
            n, qs, med, p99, max, cmed, cp99, count, total);
    char *row = xasprintf("%s{\"query\":\"%s\",\"bots\":%zu,\"median_ms\":%.3f,\"p99_ms\":%.3f,"
                          "\"max_ms\":%.3f,\"cpu_median_ms\":%.3f,\"cpu_p99_ms\":%.3f,"
                          "\"entries\":%lld,\"total\":%lld,\"bytes\":%zu}",
                          out->len ? "," : "", qs, n, med, p99, max, cmed, cp99, count, total, len);
    util_buf_add(out, row, strlen(row));
    free(row);
    free(body);
}

/* "YYYY-MM-DDTHH:MM:SSZ" of T. */
static void bench_iso(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    char dir[512];
    bool own = argc <= 2;
    if (own) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/bench-timeline.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
    } else {
        snprintf(dir, sizeof dir, "%s", argv[2]);
    }
    fprintf(stderr, "bench-timeline: %zu entries in %s\n", n, dir);
    double append_wall, append_cpu, open_ms, rebuild_ms, open_again_ms;
    int64_t last;
    struct timeline *tl = bench_open(dir, "BOT-1", true, &open_ms);
    bench_fill(tl, n, &append_wall, &append_cpu, &last);
    timeline_close(tl);
    char *jsonl = xasprintf("%s/BOT-1-timeline.jsonl", dir);
    char *idx = xasprintf("%s/BOT-1-timeline.idx", dir);
    FILE *f = fopen(jsonl, "r");
    fseek(f, 0, SEEK_END);
    long jsonl_bytes = ftell(f);
    fclose(f);
    tl = bench_open(dir, "BOT-1", true, &open_ms);
    timeline_close(tl);
    unlink(idx);
    tl = bench_open(dir, "BOT-1", true, &rebuild_ms);
    fprintf(stderr,
            "  append %.2f µs/entry wall (%.2f CPU); JSONL %.1f MB; open %.1f ms; "
            "rebuild of the index %.0f ms\n",
            append_wall, append_cpu, jsonl_bytes / 1e6, open_ms, rebuild_ms);

    /* Pages: newest, filtered, deep offsets, a time window. */
    char from[40], to[40], q[256];
    bench_iso(BENCH_T0 + (last - BENCH_T0) / 3, from, sizeof from);
    bench_iso(BENCH_T0 + (last - BENCH_T0) / 2, to, sizeof to);
    struct util_buf rows = {0};
    bench_query(&tl, 1, "limit=100", &rows);
    bench_query(&tl, 1, "source=http&success=false&limit=100", &rows);
    bench_query(&tl, 1, "source=websocket&success=true&limit=100&offset=100000", &rows);
    bench_query(&tl, 1, "success=false&limit=100&offset=90000", &rows);
    snprintf(q, sizeof q, "source=file&start_time=%s&end_time=%s&limit=100&offset=1000", from, to);
    bench_query(&tl, 1, q, &rows);
    bench_query(&tl, 1, "limit=1000", &rows);

    /* GET /api/task/<id> of a task long done, and of one never seen. */
    double find_old_ms, find_missing_ms;
    char old_id[32];
    snprintf(old_id, sizeof old_id, "TASK-%zu", n / 10);
    double w0 = bench_now(CLOCK_MONOTONIC);
    json_t *found = timeline_find(tl, old_id);
    find_old_ms = (bench_now(CLOCK_MONOTONIC) - w0) * 1e3;
    json_decref(timeline_find(tl, "NOT-THERE")); /* the first pass maps the pages in */
    w0 = bench_now(CLOCK_MONOTONIC);
    json_t *none = timeline_find(tl, "NOT-THERE");
    find_missing_ms = (bench_now(CLOCK_MONOTONIC) - w0) * 1e3;
    if (!found || none) {
        fprintf(stderr, "timeline_find is wrong\n");
        return 1;
    }
    json_decref(found);
    fprintf(stderr, "  find: %s %.2f ms, a missing id %.2f ms\n", old_id, find_old_ms,
            find_missing_ms);

    /* The supervisor's merge over 4 bots (hard links of the same files). */
    struct timeline *m[4];
    for (int i = 0; i < 4; i++) {
        char bot[16];
        snprintf(bot, sizeof bot, "BOT-M%d", i);
        char *j = xasprintf("%s/%s-timeline.jsonl", dir, bot);
        char *x = xasprintf("%s/%s-timeline.idx", dir, bot);
        if (link(jsonl, j) != 0 || link(idx, x) != 0) {
            perror("link");
            return 1;
        }
        free(j);
        free(x);
        m[i] = bench_open(dir, bot, false, &open_again_ms);
    }
    fprintf(stderr, "  reader open (index valid) %.1f ms\n", open_again_ms);
    bench_query(m, 4, "limit=100", &rows);
    bench_query(m, 4, "source=http&success=false&limit=100&offset=10000", &rows);
    snprintf(q, sizeof q, "source=file&start_time=%s&end_time=%s&limit=100&offset=1000", from, to);
    bench_query(m, 4, q, &rows);
    for (int i = 0; i < 4; i++)
        timeline_close(m[i]);
    timeline_close(tl);

    printf("{\"entries\":%zu,\"append_us_wall\":%.2f,\"append_us_cpu\":%.2f,\"jsonl_bytes\":%ld,"
           "\"open_ms\":%.1f,\"reader_open_ms\":%.1f,\"rebuild_ms\":%.0f,\"find_old_ms\":%.2f,"
           "\"find_missing_ms\":%.2f,\"pages\":[%s]}\n",
           n, append_wall, append_cpu, jsonl_bytes, open_ms, open_again_ms, rebuild_ms, find_old_ms,
           find_missing_ms, rows.data ? rows.data : "");
    free(rows.data);
    if (own) {
        char *cmd = xasprintf("rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
        free(cmd);
    }
    free(jsonl);
    free(idx);
    return 0;
}
