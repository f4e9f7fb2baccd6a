/*
 * check_timeline: the durable timeline of a bot (worker/timeline.c). Entries
 * go in through timeline_append() and come back through the query answers of
 * SPEC §8, checked field by field against a brute-force model of the same
 * entries (filters, order, pagination, the merge of several bots). The index
 * is damaged on disk in each of the ways a crash or a user can leave it —
 * missing, garbage, zeroed records, behind, a torn last line — and must come
 * back to the same answers. A writer makes no file until its first append.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "common/utf8.h"
#include "worker/timeline.h"

#include "tests/check_support.h"

static char check_dir[256];
static void check_reset(void);

/* A fresh folder and an empty model for each test. */
static void check_setup(void)
{
    check_reset();
    snprintf(check_dir, sizeof check_dir, "/tmp/check_timeline.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(check_dir));
}

/* Remove the folder. */
static void check_teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", check_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Open BOT's timeline in the test folder. */
static struct timeline *check_open(const char *bot, bool writer)
{
    char err[256] = "";
    struct timeline *tl = timeline_open(check_dir, bot, writer, err, sizeof err);
    ck_assert_msg(tl != NULL, "timeline_open: %s", err);
    return tl;
}

/* The path of BOT's file with SUFFIX ("jsonl" or "idx"). Caller frees. */
static char *check_path(const char *bot, const char *suffix)
{
    return xasprintf("%s/%s-timeline.%s", check_dir, bot, suffix);
}

/* ---- the model ---- */

#define CHECK_T0 1767225600LL /* 2026-01-01T00:00:00Z */
#define CHECK_MAX 12000

static const char *const check_sources[] = {"file", "http", "websocket"};

/* One entry as the model keeps it. */
struct check_entry {
    char id[24];
    int source, bot;
    bool success;
    int64_t time; /* as the timeline must report it (never before the last) */
    size_t pos;   /* append order within its bot */
};

static struct check_entry check_model[CHECK_MAX];
static size_t check_n;
static unsigned check_seed = 12345;
static int64_t check_last[8]; /* the model's last time per bot */

/* Empty the model. */
static void check_reset(void)
{
    check_n = 0;
    memset(check_last, 0, sizeof check_last);
}

/* A small deterministic PRNG (tests must not depend on libc's rand). */
static unsigned check_rand(void)
{
    check_seed = check_seed * 1103515245u + 12345u;
    return (check_seed >> 8) & 0xffffff;
}

/* Append one entry to TL and to the model (bot index BOT). */
static void check_add(struct timeline *tl, int bot, int64_t t, int source, bool success,
                      const char *output)
{
    struct check_entry *m = &check_model[check_n];
    snprintf(m->id, sizeof m->id, "T-%zu", check_n);
    m->source = source;
    m->bot = bot;
    m->success = success;
    m->time = t > check_last[bot] ? t : check_last[bot];
    check_last[bot] = m->time;
    m->pos = timeline_count(tl);
    char rf[64];
    snprintf(rf, sizeof rf, "resp-%s.md", m->id);
    struct timeline_entry e = {.task_id = m->id,
                               .source = check_sources[source],
                               .finished_wall_ns = t * 1000000000LL + 123456789,
                               .success = success,
                               .output = output,
                               .output_len = output ? strlen(output) : 0,
                               .error = success ? NULL : "it broke",
                               .duration_seconds = 1.25,
                               .response_file = rf};
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    check_n++;
}

/* Fill the model and N bots' timelines with COUNT entries: times that move
 * 0-2 s (so seconds repeat), sometimes back (the clock stepped). */
static void check_fill(struct timeline **tls, int nbots, size_t count)
{
    int64_t t = CHECK_T0;
    for (size_t i = 0; i < count; i++) {
        t += check_rand() % 3;
        int64_t at = check_rand() % 97 == 0 ? t - 50 : t;
        int bot = (int)(check_rand() % (unsigned)nbots);
        check_add(tls[bot], bot, at, (int)(check_rand() % 3), check_rand() % 5 != 0, "out");
    }
}

/* A query and what the model says it answers. */
struct check_query {
    int source, success, bot; /* -1 any */
    bool has_start, has_end;
    int64_t start, end;
    size_t limit, offset;
};

/* Model order: newest first, then bot order, then newest appended. */
static int check_cmp(const void *a, const void *b)
{
    const struct check_entry *x = *(const struct check_entry *const *)a;
    const struct check_entry *y = *(const struct check_entry *const *)b;
    if (x->time != y->time)
        return x->time > y->time ? -1 : 1;
    if (x->bot != y->bot)
        return x->bot < y->bot ? -1 : 1;
    return x->pos > y->pos ? -1 : 1;
}

/* The model's matches of Q, in order; their number in *N. Caller frees. */
static struct check_entry **check_expect(const struct check_query *q, size_t *n)
{
    struct check_entry **v = xmalloc((check_n + 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; i < check_n; i++) {
        struct check_entry *m = &check_model[i];
        if ((q->source < 0 || m->source == q->source) &&
            (q->success < 0 || m->success == q->success) && (q->bot < 0 || m->bot == q->bot) &&
            (!q->has_start || m->time >= q->start) && (!q->has_end || m->time <= q->end))
            v[(*n)++] = m;
    }
    qsort(v, *n, sizeof *v, check_cmp);
    return v;
}

/* T written in one of several ISO-8601 spellings that all mean T (as a
 * start when START: a fraction rounds up; as an end: down), URL-encoded. */
static void check_time_text(int64_t t, bool start, char *buf, size_t cap)
{
    char base[40];
    unsigned form = check_rand() % 5;
    int64_t shown = form == 2 ? t + 7200 : form == 3 ? t - 5400 : form == 4 && start ? t - 1 : t;
    time_t tt = (time_t)shown;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *suffix[] = {"Z", "", "%2B02:00", "-01:30", start ? ".5Z" : ".999"};
    snprintf(buf, cap, "%s%s", base, suffix[form]);
}

/* The query string of Q (bot names BOTS). */
static void check_qs(const struct check_query *q, const char *const *bots, char *buf, size_t cap)
{
    char t[80];
    int n = snprintf(buf, cap, "limit=%zu&offset=%zu", q->limit, q->offset);
    if (q->source >= 0)
        n += snprintf(buf + n, cap - (size_t)n, "&source=%s", check_sources[q->source]);
    if (q->success >= 0)
        n += snprintf(buf + n, cap - (size_t)n, "&success=%s", q->success ? "true" : "false");
    if (q->bot >= 0)
        n += snprintf(buf + n, cap - (size_t)n, "&bot=%s", bots[q->bot]);
    if (q->has_start) {
        check_time_text(q->start, true, t, sizeof t);
        n += snprintf(buf + n, cap - (size_t)n, "&start_time=%s", t);
    }
    if (q->has_end) {
        check_time_text(q->end, false, t, sizeof t);
        snprintf(buf + n, cap - (size_t)n, "&end_time=%s", t);
    }
}

/* Check a 200 answer BODY against the model's answer to Q. */
static void check_answer(const char *body, const struct check_query *q, const char *bot_id,
                         const char *const *bots)
{
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    ck_assert_msg(o != NULL, "answer is not JSON: %s", je.text);
    size_t n;
    struct check_entry **want = check_expect(q, &n);
    size_t from = q->offset < n ? q->offset : n;
    size_t count = n - from < q->limit ? n - from : q->limit;
    json_t *entries = json_object_get(o, "entries");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_count")), (json_int_t)n);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "entries_count")), (json_int_t)count);
    ck_assert_int_eq(json_array_size(entries), count);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "offset")), (json_int_t)q->offset);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "limit")), (json_int_t)q->limit);
    ck_assert(json_is_true(json_object_get(o, "has_more")) == (from + count < n));
    if (bot_id)
        ck_assert_str_eq(json_string_value(json_object_get(o, "bot_id")), bot_id);
    else
        ck_assert(json_is_null(json_object_get(o, "bot_id")));
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_array_get(entries, i);
        const struct check_entry *m = want[from + i];
        ck_assert_str_eq(json_string_value(json_object_get(e, "task_id")), m->id);
        ck_assert_str_eq(json_string_value(json_object_get(e, "bot_id")), bots[m->bot]);
        ck_assert_str_eq(json_string_value(json_object_get(e, "source")), check_sources[m->source]);
        ck_assert(json_is_true(json_object_get(e, "success")) == m->success);
        int64_t t;
        ck_assert_int_eq(
            timeline_parse_time(json_string_value(json_object_get(e, "timestamp")), false, &t), 0);
        ck_assert_int_eq(t, m->time);
    }
    free(want);
    json_decref(o);
}

/* A random query over the model's time span. */
static struct check_query check_random_query(int nbots)
{
    struct check_query q = {.source = -1, .success = -1, .bot = -1};
    int64_t span = check_model[check_n - 1].time - CHECK_T0 + 10;
    q.limit = check_rand() % 4 == 0 ? 1000 : 1 + check_rand() % 150;
    unsigned o = check_rand() % 6;
    q.offset = o == 0 ? 0 : o == 1 ? check_rand() % 20 : check_rand() % (check_n + 50);
    if (check_rand() % 2)
        q.source = (int)(check_rand() % 3);
    if (check_rand() % 2)
        q.success = (int)(check_rand() % 2);
    if (nbots > 1 && check_rand() % 3 == 0)
        q.bot = (int)(check_rand() % (unsigned)nbots);
    if ((q.has_start = check_rand() % 2))
        q.start = CHECK_T0 - 5 + (int64_t)(check_rand() % (unsigned)span);
    if ((q.has_end = check_rand() % 2))
        q.end = CHECK_T0 - 5 + (int64_t)(check_rand() % (unsigned)span);
    if (q.has_start && q.has_end && q.start > q.end) {
        int64_t x = q.start;
        q.start = q.end;
        q.end = x;
    }
    return q;
}

/* ROUNDS random queries of one bot against the model. */
static void check_queries_one(struct timeline *tl, int rounds)
{
    const char *bots[] = {timeline_bot_id(tl)};
    for (int r = 0; r < rounds; r++) {
        struct check_query q = check_random_query(1);
        char qs[512];
        check_qs(&q, bots, qs, sizeof qs);
        char *body;
        size_t len;
        int status = timeline_answer(tl, qs, &body, &len);
        ck_assert_msg(status == 200, "%s: %d %s", qs, status, body);
        check_answer(body, &q, bots[0], bots);
        free(body);
    }
}

/* The default page of TL: its status; the body in *BODY. */
static int check_get(struct timeline *tl, const char *qs, json_t **body)
{
    char *s;
    size_t len;
    int status = timeline_answer(tl, qs, &s, &len);
    ck_assert_uint_eq(strlen(s), len);
    *body = json_loads(s, 0, NULL);
    ck_assert_ptr_nonnull(*body);
    free(s);
    return status;
}

START_TEST(test_round_trip)
{
    struct timeline *tl = check_open("BOT-1", true);
    const char *files[] = {"a.c", "b/c.h"};
    struct timeline_entry e = {.task_id = "T-1",
                               .source = "http",
                               .finished_wall_ns = (CHECK_T0 + 61) * 1000000000LL + 999000000,
                               .success = false,
                               .output = "partial output\n",
                               .output_len = 15,
                               .error = "timed out after 5 s",
                               .duration_seconds = 5.0004,
                               .response_file = "2026-01-01-0001-BOT-1-user-RESPONSE-T-1-failed.md",
                               .files_modified = files,
                               .files_count = 2};
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    e.task_id = "T-2";
    e.source = "file";
    e.success = true;
    e.error = NULL;
    e.files_count = 0;
    e.response_file = "r2.md";
    e.finished_wall_ns += 2000000000LL;
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    ck_assert_uint_eq(timeline_count(tl), 2);
    /* A cancelled task, with fields of later issues that never replace ours. */
    json_t *extra = json_pack("{s:i,s:f,s:b}", "tokens_out", 42, "cost_usd", 0.5, "success", 1);
    struct timeline_entry c = {.task_id = "T-C",
                               .source = "websocket",
                               .finished_wall_ns = e.finished_wall_ns,
                               .cancelled = true,
                               .error = "cancelled",
                               .response_file = "rc.md",
                               .extra = extra};
    ck_assert_int_eq(timeline_append(tl, &c), 0);
    json_decref(extra);
    json_t *co = timeline_find(tl, "T-C");
    ck_assert_str_eq(json_string_value(json_object_get(co, "state")), "cancelled");
    ck_assert(json_is_false(json_object_get(co, "success")));
    ck_assert_int_eq(json_integer_value(json_object_get(co, "tokens_out")), 42);
    json_decref(co);
    json_t *cpage;
    ck_assert_int_eq(check_get(tl, "source=websocket&success=false", &cpage), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(cpage, "total_count")), 1);
    json_decref(cpage);
    ck_assert_int_eq(check_get(tl, "source=websocket&success=true", &cpage), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(cpage, "total_count")), 0);
    json_decref(cpage);
    ck_assert_int_eq(check_get(tl, "source=file&success=true", &cpage), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(cpage, "total_count")), 1);
    json_decref(cpage);

    json_t *o;
    ck_assert_int_eq(check_get(tl, NULL, &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "bot_id")), "BOT-1");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "limit")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_count")), 3);
    ck_assert(json_is_false(json_object_get(o, "has_more")));
    const char *now = json_string_value(json_object_get(o, "timestamp"));
    ck_assert(now && now[strlen(now) - 1] == 'Z');
    json_t *newest = json_array_get(json_object_get(o, "entries"), 1);
    json_t *oldest = json_array_get(json_object_get(o, "entries"), 2);
    ck_assert_str_eq(json_string_value(json_object_get(newest, "task_id")), "T-2");
    ck_assert(json_is_null(json_object_get(newest, "error")));
    ck_assert_str_eq(json_string_value(json_object_get(newest, "state")), "done");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "task_id")), "T-1");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "bot_id")), "BOT-1");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "source")), "http");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "timestamp")),
                     "2026-01-01T00:01:01Z");
    ck_assert(json_is_false(json_object_get(oldest, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "response")), "partial output\n");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "error")), "timed out after 5 s");
    ck_assert(json_real_value(json_object_get(oldest, "duration_seconds")) == 5.0);
    json_t *fm = json_object_get(oldest, "files_modified");
    ck_assert_int_eq(json_array_size(fm), 2);
    ck_assert_str_eq(json_string_value(json_array_get(fm, 1)), "b/c.h");
    ck_assert_str_eq(json_string_value(json_object_get(oldest, "state")), "failed");
    json_decref(o);

    /* The JSONL is what DEIA tools read: one compact object per line. */
    char *path = check_path("BOT-1", "jsonl");
    size_t len;
    char *text = util_read_file(path, 1 << 20, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text,
                                 "{\"task_id\":\"T-1\",\"bot_id\":\"BOT-1\",\"source\":\"http\","
                                 "\"timestamp\":\"2026-01-01T00:01:01Z\",\"success\":false,"));
    ck_assert_int_eq(text[len - 1], '\n');
    free(text);
    free(path);

    /* The same page as an object, for the WebSocket timeline. */
    struct timeline_query q;
    char err[160];
    ck_assert_int_eq(timeline_query_parse("source=http", &q, err, sizeof err), 0);
    json_t *page = timeline_query_run(&tl, 1, &q);
    ck_assert(json_is_null(json_object_get(page, "bot_id")));
    ck_assert_int_eq(json_integer_value(json_object_get(page, "total_count")), 1);
    json_decref(page);
    timeline_query_clear(&q);

    json_t *found = timeline_find(tl, "T-1");
    ck_assert_ptr_nonnull(found);
    ck_assert_str_eq(json_string_value(json_object_get(found, "error")), "timed out after 5 s");
    json_decref(found);
    ck_assert_ptr_null(timeline_find(tl, "T-3"));
    timeline_close(tl);
}
END_TEST

START_TEST(test_filters_against_model)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 10000);
    check_queries_one(tl, 150);
    /* Every filter alone and every page edge, not only random ones. */
    const char *bots[] = {"BOT-1"};
    struct check_query fixed[] = {
        {.source = -1, .success = -1, .bot = -1, .limit = 100},
        {.source = -1, .success = -1, .bot = -1, .limit = 1000, .offset = 9500},
        {.source = -1, .success = -1, .bot = -1, .limit = 1000, .offset = 10000},
        {.source = -1, .success = -1, .bot = -1, .limit = 1, .offset = 9999},
        {.source = 0, .success = -1, .bot = -1, .limit = 100},
        {.source = 1, .success = -1, .bot = -1, .limit = 100, .offset = 3000},
        {.source = 2, .success = 0, .bot = -1, .limit = 1000},
        {.source = -1, .success = 1, .bot = -1, .limit = 100, .offset = 7000},
        {.source = -1, .success = 0, .bot = -1, .limit = 100, .offset = 1500},
        {.source = -1,
         .success = -1,
         .bot = -1,
         .limit = 100,
         .has_start = true,
         .start = CHECK_T0 + 100},
        {.source = -1,
         .success = -1,
         .bot = -1,
         .limit = 100,
         .has_end = true,
         .end = CHECK_T0 + 100},
        {.source = -1,
         .success = -1,
         .bot = -1,
         .limit = 100,
         .has_start = true,
         .start = CHECK_T0 + 500,
         .has_end = true,
         .end = CHECK_T0 + 500},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        char qs[512], *body;
        size_t len;
        check_qs(&fixed[i], bots, qs, sizeof qs);
        ck_assert_int_eq(timeline_answer(tl, qs, &body, &len), 200);
        check_answer(body, &fixed[i], "BOT-1", bots);
        free(body);
    }
    timeline_close(tl);
}
END_TEST

START_TEST(test_sparse_filters)
{
    /* A class so rare that most blocks of the index hold 0, 1 or 2 of it:
     * the block skipping of counts, offsets and pages must be exact. */
    struct timeline *tl[2] = {check_open("BOT-1", true), check_open("BOT-2", true)};
    int64_t t = CHECK_T0;
    for (int i = 0; i < 8000; i++) {
        t += check_rand() % 2;
        bool rare = check_rand() % 230 == 0 || (i >= 2560 && i < 2570);
        int bot = (int)(check_rand() % 2);
        check_add(tl[bot], bot, t, rare ? 2 : (int)(check_rand() % 2), !rare, "x");
    }
    const char *bots[] = {"BOT-1", "BOT-2"};
    for (size_t off = 0; off < 45; off++) {
        for (int limit = 1; limit <= 3; limit++) {
            struct check_query q = {
                .source = 2, .success = 0, .bot = -1, .limit = (size_t)limit, .offset = off};
            char qs[256], *body;
            size_t len;
            check_qs(&q, bots, qs, sizeof qs);
            ck_assert_int_eq(timeline_answer_merged(tl, 2, qs, NULL, &body, &len), 200);
            check_answer(body, &q, NULL, bots);
            free(body);
            q.bot = (int)(off % 2);
            check_qs(&q, bots, qs, sizeof qs);
            ck_assert_int_eq(timeline_answer(tl[q.bot], qs, &body, &len), 200);
            check_answer(body, &q, bots[q.bot], bots);
            free(body);
        }
    }
    timeline_close(tl[0]);
    timeline_close(tl[1]);
}
END_TEST

START_TEST(test_foreign_jsonl)
{
    /* A JSONL written by another tool, timestamps out of order and in other
     * spellings: file order stays the order, a time never goes back. */
    char *jsonl = check_path("BOT-1", "jsonl");
    const char text[] = "{\"task_id\":\"a\",\"source\":\"file\",\"success\":true,"
                        "\"timestamp\":\"2026-01-01T00:00:10Z\"}\n"
                        "{\"task_id\":\"b\",\"source\":\"http\",\"success\":true,"
                        "\"timestamp\":\"2026-01-01T00:00:05.5+00:00\"}\n"
                        "{\"task_id\":\"c\",\"source\":\"file\",\"success\":false,"
                        "\"timestamp\":\"2026-01-01T01:00:20+01:00\"}\n";
    ck_assert_int_eq(util_replace_file(jsonl, text, sizeof text - 1, false), 0);
    struct timeline *tl = check_open("BOT-1", true);
    ck_assert_uint_eq(timeline_count(tl), 3);
    json_t *o;
    /* b counts as 00:00:10 (after a), c as 00:00:20. */
    ck_assert_int_eq(
        check_get(tl, "start_time=2026-01-01T00:00:10Z&end_time=2026-01-01T00:00:10Z", &o), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_count")), 2);
    json_t *e = json_object_get(o, "entries");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(e, 0), "task_id")), "b");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(e, 1), "task_id")), "a");
    json_decref(o);
    ck_assert_int_eq(check_get(tl, "start_time=2026-01-01T00:00:11Z", &o), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_count")), 1);
    json_decref(o);
    timeline_close(tl);
    free(jsonl);
}
END_TEST

START_TEST(test_merge_against_model)
{
    const char *bots[] = {"BOT-A", "BOT-B", "BOT-C"};
    struct timeline *w[3], *r[3];
    for (int i = 0; i < 3; i++)
        w[i] = check_open(bots[i], true);
    check_fill(w, 3, 6000);
    for (int i = 0; i < 3; i++)
        r[i] = check_open(bots[i], false); /* the supervisor's view */
    for (int round = 0; round < 120; round++) {
        struct check_query q = check_random_query(3);
        char qs[512], *body;
        size_t len;
        check_qs(&q, bots, qs, sizeof qs);
        int status = timeline_answer_merged(r, 3, qs, NULL, &body, &len);
        ck_assert_msg(status == 200, "%s: %s", qs, body);
        check_answer(body, &q, q.bot >= 0 ? bots[q.bot] : NULL, bots);
        free(body);
    }
    /* The seed's /api/bot/<id>/timeline: the path's bot wins over bot=. */
    struct check_query q = {.source = -1, .success = -1, .bot = 1, .limit = 50, .offset = 10};
    char *body;
    size_t len;
    ck_assert_int_eq(
        timeline_answer_merged(r, 3, "bot=BOT-C&limit=50&offset=10", "BOT-B", &body, &len), 200);
    check_answer(body, &q, "BOT-B", bots);
    free(body);
    /* A bot that has no timeline here: an empty page, not an error. */
    ck_assert_int_eq(timeline_answer_merged(r, 3, "bot=BOT-Z", NULL, &body, &len), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"total_count\":0"));
    free(body);

    /* Readers follow what the writers append after they opened. */
    check_add(w[2], 2, CHECK_T0 + 100000, 1, true, "late");
    struct check_query latest = {.source = -1, .success = -1, .bot = -1, .limit = 3};
    ck_assert_int_eq(timeline_answer_merged(r, 3, "limit=3", NULL, &body, &len), 200);
    check_answer(body, &latest, NULL, bots);
    ck_assert_ptr_nonnull(strstr(body, "late"));
    free(body);
    for (int i = 0; i < 3; i++) {
        timeline_close(w[i]);
        timeline_close(r[i]);
    }
}
END_TEST

START_TEST(test_bad_parameters)
{
    struct timeline *tl = check_open("BOT-1", true);
    const char *bad[] = {"limit=0",
                         "limit=1001",
                         "limit=-5",
                         "limit=abc",
                         "limit=",
                         "limit=99999999999999999999999",
                         "offset=-1",
                         "offset=1.5",
                         "source=email",
                         "source=",
                         "success=maybe",
                         "success=",
                         "start_time=yesterday",
                         "start_time=2026-13-01T00:00:00Z",
                         "start_time=2026-02-30",
                         "end_time=2026-01-01T25:00:00Z",
                         "end_time=2026-01-01T10:00:00+25:00",
                         "end_time=2026-01-01T10:00:00Zjunk",
                         "start_time=2026-01-02&end_time=2026-01-01",
                         "limit=%zz",
                         "limit=%",
                         "source=fi%00le",
                         "bot=../etc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *o;
        ck_assert_msg(check_get(tl, bad[i], &o) == 400, "%s was accepted", bad[i]);
        const char *detail = json_string_value(json_object_get(o, "detail"));
        ck_assert_msg(detail && *detail, "%s: no detail", bad[i]);
        ck_assert_int_eq(json_object_size(o), 1);
        json_decref(o);
    }
    /* Accepted spellings. */
    const char *good[] = {"",
                          "limit=1000",
                          "limit=1",
                          "offset=0",
                          "source=websocket",
                          "success=TRUE",
                          "success=0",
                          "start_time=2026-01-01",
                          "start_time=2026-01-01T10:00",
                          "start_time=2026-01-01T10:00:00.123456Z",
                          "start_time=2026-01-01T10:00:00%2B01:00",
                          "start_time=2026-01-01T10:00:00+01:00", /* '+' read as a space */
                          "end_time=2026-01-01t10:00:00-0130",
                          "unknown=1&&limit=5",
                          "limit=5&limit=7"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        json_t *o;
        ck_assert_msg(check_get(tl, good[i], &o) == 200, "%s was refused", good[i]);
        json_decref(o);
    }
    json_t *o;
    check_get(tl, "limit=5&limit=7", &o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "limit")), 7);
    json_decref(o);
    timeline_close(tl);
}
END_TEST

START_TEST(test_parse_time)
{
    int64_t t;
    ck_assert_int_eq(timeline_parse_time("2026-01-01T00:00:00Z", false, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2026-01-01", false, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2026-01-01T01:00:00+01:00", false, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2025-12-31T23:00:00-0100", false, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2025-12-31T23:59:59.001", true, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2026-01-01T00:00:00.999", false, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2026-01-01T00:00:00.000", true, &t), 0);
    ck_assert_int_eq(t, CHECK_T0);
    ck_assert_int_eq(timeline_parse_time("2024-02-29T12:00:00Z", false, &t), 0);
    ck_assert_int_eq(t, 1709208000);
    ck_assert_int_eq(timeline_parse_time("1970-01-01T00:00:00Z", false, &t), 0);
    ck_assert_int_eq(t, 0);
    const char *bad[] = {"",
                         "2026",
                         "2026-1-01",
                         "2026-01-01T",
                         "2026-01-01T10",
                         "2023-02-29",
                         "2026-01-01T10:00:60",
                         "2026-01-01T10:00:00.",
                         "0000-01-01",
                         "2026-01-01T10:00:00+1",
                         "2026-01-01T10:00:00 +01:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(timeline_parse_time(bad[i], false, &t) == -1, "%s parsed", bad[i]);
}
END_TEST

/* Reader R, refreshed, counts N entries. */
static void check_reader_sees(struct timeline *r, size_t n)
{
    ck_assert_int_eq(timeline_refresh(r), 0);
    ck_assert_uint_eq(timeline_count(r), n);
}

/* Check the answers of TL against the model (one bot) on fixed pages. */
static void check_same_answers(struct timeline *tl)
{
    ck_assert_uint_eq(timeline_count(tl), check_n);
    check_queries_one(tl, 25);
}

/* Write LEN bytes of DATA at OFF in PATH. */
static void check_poke(const char *path, off_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

START_TEST(test_index_rebuilt)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 3000);
    timeline_close(tl);
    char *idx = check_path("BOT-1", "idx");

    /* Missing. */
    ck_assert_int_eq(unlink(idx), 0);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    timeline_close(tl);
    struct stat st;
    ck_assert_int_eq(stat(idx, &st), 0); /* written again */

    /* A garbage header. */
    check_poke(idx, 8, "garbage!", 8);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    timeline_close(tl);

    /* Records zeroed in the middle (a crash with unwritten pages). */
    char zeros[32 * 8] = {0};
    check_poke(idx, 64 + 32 * 1500, zeros, sizeof zeros);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    timeline_close(tl);

    /* The last record pointing at another line. */
    char rec[32];
    int fd = open(idx, O_RDONLY);
    ck_assert_int_eq(pread(fd, rec, 32, 64 + 32 * 2998), 32);
    close(fd);
    check_poke(idx, 64 + 32 * 2999, rec, 32);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);

    /* A reader copes with a bad index without writing anything. */
    timeline_close(tl);
    check_poke(idx, 0, "XXXX", 4);
    tl = check_open("BOT-1", false);
    check_same_answers(tl);
    timeline_close(tl);
    char head[4];
    fd = open(idx, O_RDONLY);
    ck_assert_int_eq(pread(fd, head, 4, 0), 4);
    close(fd);
    ck_assert(memcmp(head, "XXXX", 4) == 0);
    free(idx);
}
END_TEST

START_TEST(test_index_behind)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 2000);
    timeline_close(tl);
    char *idx = check_path("BOT-1", "idx");
    size_t len;
    char *old = util_read_file(idx, 1 << 26, &len);
    ck_assert_ptr_nonnull(old);
    tl = check_open("BOT-1", true);
    for (int i = 0; i < 700; i++)
        check_add(tl, 0, CHECK_T0 + 5000 + i, i % 3, i % 4 != 0, "more");
    timeline_close(tl);
    /* The index as it was 700 entries ago (a crash lost its writes). */
    ck_assert_int_eq(util_replace_file(idx, old, len, false), 0);
    free(old);
    tl = check_open("BOT-1", false);
    ck_assert_uint_eq(timeline_count(tl), 2000); /* a reader reads what is indexed */
    timeline_close(tl);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    timeline_close(tl);
    tl = check_open("BOT-1", false);
    check_same_answers(tl);
    timeline_close(tl);
    free(idx);
}
END_TEST

START_TEST(test_torn_last_line)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 50);
    timeline_close(tl);
    char *jsonl = check_path("BOT-1", "jsonl");
    struct stat st;
    ck_assert_int_eq(stat(jsonl, &st), 0);
    const char torn[] = "{\"task_id\":\"T-torn\",\"bot_id\":\"BOT-1\",\"sou";
    check_poke(jsonl, st.st_size, torn, sizeof torn - 1);

    /* A reader ignores it; the writer cuts it off and appends after it. */
    tl = check_open("BOT-1", false);
    check_same_answers(tl);
    timeline_close(tl);
    tl = check_open("BOT-1", true);
    struct stat st2;
    ck_assert_int_eq(stat(jsonl, &st2), 0);
    ck_assert_int_eq(st2.st_size, st.st_size);
    check_add(tl, 0, CHECK_T0 + 9999, 2, true, "after the tear");
    check_same_answers(tl);
    timeline_close(tl);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    timeline_close(tl);

    /* A JSONL that is nothing but a torn line. */
    char *j2 = check_path("BOT-2", "jsonl");
    int fd = open(j2, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_eq(write(fd, torn, sizeof torn - 1), (ssize_t)sizeof torn - 1);
    close(fd);
    tl = check_open("BOT-2", true);
    ck_assert_uint_eq(timeline_count(tl), 0);
    ck_assert_int_eq(stat(j2, &st2), 0);
    ck_assert_int_eq(st2.st_size, 0);
    timeline_close(tl);
    free(j2);
    free(jsonl);
}
END_TEST

START_TEST(test_bad_lines_skipped)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 20);
    timeline_close(tl);
    char *jsonl = check_path("BOT-1", "jsonl");
    char *idx = check_path("BOT-1", "idx");
    int fd = open(jsonl, O_WRONLY | O_APPEND);
    const char junk[] = "not json\n\n[1,2]\n{\"task_id\":\"x\",\"source\":\"fax\"}\n"
                        "{\"task_id\":\"x\",\"source\":\"file\",\"success\":true,"
                        "\"timestamp\":\"never\"}\n";
    ck_assert_int_eq(write(fd, junk, sizeof junk - 1), (ssize_t)sizeof junk - 1);
    close(fd);
    unlink(idx);
    tl = check_open("BOT-1", true);
    check_add(tl, 0, CHECK_T0 + 500, 0, false, "after junk");
    check_same_answers(tl);
    timeline_close(tl);
    free(jsonl);
    free(idx);
}
END_TEST

START_TEST(test_survives_reopen)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_fill(&tl, 1, 1000);
    timeline_close(tl);
    tl = check_open("BOT-1", true);
    check_same_answers(tl);
    check_add(tl, 0, CHECK_T0 + 99999, 1, true, "x");
    timeline_close(tl);
    tl = check_open("BOT-1", false);
    check_same_answers(tl);
    timeline_close(tl);
}
END_TEST

START_TEST(test_append_idempotent)
{
    struct timeline *tl = check_open("BOT-1", true);
    struct timeline_entry e = {.task_id = "T-1",
                               .source = "file",
                               .finished_wall_ns = CHECK_T0 * 1000000000LL,
                               .success = true,
                               .response_file = "r1.md"};
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    ck_assert_int_eq(timeline_append(tl, &e), 1); /* recovery appends it again */
    ck_assert_uint_eq(timeline_count(tl), 1);
    e.response_file = "r1-2.md"; /* a second task file with the same id */
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    e.response_file = NULL;
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    ck_assert_int_eq(timeline_append(tl, &e), 1);
    ck_assert_uint_eq(timeline_count(tl), 3);
    timeline_close(tl);
    tl = check_open("BOT-1", true);
    e.response_file = "r1.md";
    ck_assert_int_eq(timeline_append(tl, &e), 1);
    e.source = "email";
    ck_assert_int_eq(timeline_append(tl, &e), -1);
    /* An id that is not UTF-8 is stored, indexed and found as U+FFFD. */
    e.source = "http";
    e.task_id = "T-\xff";
    e.response_file = "r-\xfe.md";
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    ck_assert_int_eq(timeline_append(tl, &e), 1);
    json_t *found = timeline_find(tl, "T-\xef\xbf\xbd");
    ck_assert_ptr_nonnull(found);
    ck_assert_str_eq(json_string_value(json_object_get(found, "response_file")),
                     "r-\xef\xbf\xbd.md");
    json_decref(found);
    timeline_close(tl);
    tl = check_open("BOT-1", false);
    e.source = "file";
    ck_assert_int_eq(timeline_append(tl, &e), -1); /* readers never write */
    ck_assert_uint_eq(timeline_count(tl), 4);
    timeline_close(tl);
}
END_TEST

/* The answer's response of the newest entry after appending OUTPUT. */
static char *check_response_of(const char *output, size_t len)
{
    struct timeline *tl = check_open("BOT-1", true);
    struct timeline_entry e = {.task_id = "U",
                               .source = "websocket",
                               .finished_wall_ns = CHECK_T0 * 1000000000LL,
                               .success = true,
                               .output = output,
                               .output_len = len,
                               .response_file = output};
    ck_assert_int_eq(timeline_append(tl, &e), 0);
    json_t *o;
    ck_assert_int_eq(check_get(tl, "limit=1", &o), 200);
    json_t *s = json_object_get(json_array_get(json_object_get(o, "entries"), 0), "response");
    char *r = xstrndup(json_string_value(s), json_string_length(s));
    ck_assert_uint_eq(strlen(r), json_string_length(s));
    json_decref(o);
    timeline_close(tl);
    return r;
}

START_TEST(test_response_cut_utf8)
{
    /* 3-byte characters: 64 KiB is not a multiple of 3, the cut falls
     * inside one and must move back to its start. */
    size_t n = 30000;
    char *big = xmalloc(n * 3 + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(big + i * 3, "\xe2\x82\xac", 3);
    big[n * 3] = '\0';
    char *r = check_response_of(big, n * 3);
    ck_assert_uint_eq(strlen(r), TIMELINE_TEXT_MAX / 3 * 3);
    ck_assert_uint_eq(utf8_valid_prefix(r, strlen(r)), strlen(r));
    free(r);
    free(big);
    /* Bytes that are not UTF-8 become U+FFFD; short text is whole. */
    r = check_response_of("ok \xff\xc3 end", 9);
    ck_assert_str_eq(r, "ok \xef\xbf\xbd\xef\xbf\xbd end");
    free(r);
    json_t *j = timeline_text("abc", 3, 2);
    ck_assert_str_eq(json_string_value(j), "ab");
    json_decref(j);
    j = timeline_text("\xf0\x9f\x98\x80", 4, 3);
    ck_assert_str_eq(json_string_value(j), "");
    json_decref(j);
}
END_TEST

START_TEST(test_clock_step_back)
{
    struct timeline *tl = check_open("BOT-1", true);
    check_add(tl, 0, CHECK_T0 + 100, 0, true, "a");
    check_add(tl, 0, CHECK_T0 + 40, 1, true, "b"); /* the clock stepped back */
    json_t *o;
    ck_assert_int_eq(check_get(tl, "limit=5", &o), 200);
    json_t *first = json_array_get(json_object_get(o, "entries"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "task_id")), "T-1");
    ck_assert_str_eq(json_string_value(json_object_get(first, "timestamp")),
                     "2026-01-01T00:01:40Z");
    json_decref(o);
    timeline_close(tl);
}
END_TEST

/* A writer's open makes no file: the timeline is empty until the first
 * append makes the JSONL and the index (an inode a start makes is slow on an
 * ext4 without a journal). Absent reads as empty for writer and reader. */
START_TEST(test_made_by_the_first_append)
{
    char *jsonl = check_path("BOT-1", "jsonl"), *idx = check_path("BOT-1", "idx");
    struct stat st;
    struct timeline *w = check_open("BOT-1", true);
    struct timeline *r = check_open("BOT-1", false);
    ck_assert_int_eq(lstat(jsonl, &st), -1);
    ck_assert_int_eq(lstat(idx, &st), -1);
    json_t *o;
    ck_assert_int_eq(check_get(w, "limit=5", &o), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_count")), 0);
    json_decref(o);
    ck_assert_ptr_null(timeline_find(w, "T-0"));
    check_reader_sees(r, 0);
    timeline_close(w);
    ck_assert_int_eq(lstat(jsonl, &st), -1); /* nor by the close */
    /* A stale index without its JSONL is replaced at the first append. */
    int fd = open(idx, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "garbage", 7), 7);
    close(fd);
    w = check_open("BOT-1", true);
    check_add(w, 0, CHECK_T0, 0, true, "first");
    ck_assert(lstat(jsonl, &st) == 0 && S_ISREG(st.st_mode));
    ck_assert(lstat(idx, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 64 + 32);
    ck_assert_uint_eq(timeline_count(w), 1);
    check_reader_sees(r, 1);
    check_add(w, 0, CHECK_T0 + 1, 1, false, "second");
    check_same_answers(w);
    timeline_close(w);
    /* Reopened: the index made by the first append checks out. */
    w = check_open("BOT-1", true);
    ck_assert_uint_eq(timeline_count(w), 2);
    check_same_answers(w);
    check_reader_sees(r, 2);
    timeline_close(w);
    timeline_close(r);
    free(jsonl);
    free(idx);
}
END_TEST

START_TEST(test_open_errors)
{
    char err[256];
    ck_assert_ptr_null(timeline_open(check_dir, "../x", true, err, sizeof err));
    char *missing = xasprintf("%s/nope", check_dir);
    /* A writer in a folder that is not there opens empty (its files are
     * made by the first append): the append fails, and works once the
     * folder is back. */
    struct timeline *gone = timeline_open(missing, "BOT-1", true, err, sizeof err);
    ck_assert_ptr_nonnull(gone);
    struct timeline_entry e = {.task_id = "G-1", .source = "http", .success = true};
    ck_assert_int_eq(timeline_append(gone, &e), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_uint_eq(timeline_count(gone), 0);
    ck_assert_int_eq(mkdir(missing, 0755), 0);
    ck_assert_int_eq(timeline_append(gone, &e), 0);
    ck_assert_uint_eq(timeline_count(gone), 1);
    timeline_close(gone);
    /* A reader of a bot that never finished a task: empty, then follows. */
    struct timeline *r = timeline_open(check_dir, "BOT-1", false, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(timeline_count(r), 0);
    struct timeline *w = check_open("BOT-1", true);
    check_add(w, 0, CHECK_T0, 0, true, "first");
    check_reader_sees(r, 1);
    check_add(w, 0, CHECK_T0 + 1, 0, true, "second");
    check_reader_sees(r, 2);
    timeline_close(w);
    timeline_close(r);
    /* A symlinked JSONL is not followed: the writer replaces the link. */
    char *link = check_path("BOT-L", "jsonl");
    ck_assert_int_eq(symlink("/etc/passwd", link), 0);
    w = check_open("BOT-L", true);
    ck_assert_uint_eq(timeline_count(w), 0);
    struct stat st;
    ck_assert(lstat(link, &st) == 0 && S_ISREG(st.st_mode));
    timeline_close(w);
    free(link);
    free(missing);
}
END_TEST

/* A FIFO where a file belongs: no open waits for a writer or a reader. */
START_TEST(test_planted_fifos)
{
    char *jsonl = check_path("BOT-F", "jsonl"), *idx = check_path("BOT-F", "idx");
    ck_assert_int_eq(mkfifo(jsonl, 0644), 0);
    struct timeline *r = check_open("BOT-F", false); /* a reader: no file yet */
    ck_assert_uint_eq(timeline_count(r), 0);
    struct timeline *w = check_open("BOT-F", true); /* the writer: a file of its own */
    struct stat st;
    ck_assert(lstat(jsonl, &st) == 0 && S_ISREG(st.st_mode));
    check_add(w, 0, CHECK_T0, 0, true, "first");
    timeline_close(w);
    ck_assert_int_eq(unlink(idx), 0);
    ck_assert_int_eq(mkfifo(idx, 0644), 0);
    check_reader_sees(r, 1);       /* reads the JSONL itself */
    w = check_open("BOT-F", true); /* the index is rebuilt over the FIFO */
    ck_assert_uint_eq(timeline_count(w), 1);
    ck_assert(lstat(idx, &st) == 0 && S_ISREG(st.st_mode));
    check_add(w, 0, CHECK_T0 + 1, 0, true, "second");
    check_reader_sees(r, 2);
    timeline_close(w);
    timeline_close(r);
    free(jsonl);
    free(idx);
}
END_TEST

START_TEST(test_reader_follows_rebuild)
{
    struct timeline *w = check_open("BOT-1", true);
    check_fill(&w, 1, 600);
    struct timeline *r = check_open("BOT-1", false);
    ck_assert_uint_eq(timeline_count(r), 600);
    timeline_close(w);
    /* The worker restarts and finds its index gone: it writes a new one
     * (another file) and goes on appending; the reader moves over. */
    char *idx = check_path("BOT-1", "idx");
    ck_assert_int_eq(unlink(idx), 0);
    w = check_open("BOT-1", true);
    check_add(w, 0, CHECK_T0 + 50000, 1, false, "after restart");
    ck_assert_int_eq(timeline_refresh(r), 0);
    check_same_answers(r);
    timeline_close(w);
    timeline_close(r);

    /* A reader of a bad index reads the JSONL itself, and its new lines. */
    check_poke(idx, 0, "XXXX", 4);
    r = check_open("BOT-1", false);
    check_same_answers(r);
    char *jsonl = check_path("BOT-1", "jsonl");
    int fd = open(jsonl, O_WRONLY | O_APPEND);
    const char line[] =
        "{\"task_id\":\"T-x\",\"bot_id\":\"BOT-1\",\"source\":\"http\","
        "\"timestamp\":\"2027-01-01T00:00:00Z\",\"success\":true,\"response\":\"\"}\n";
    ck_assert_int_eq(write(fd, line, sizeof line - 1), (ssize_t)sizeof line - 1);
    ck_assert_int_eq(write(fd, line, 20), 20); /* and half of another */
    close(fd);
    check_reader_sees(r, check_n + 1);
    json_t *o;
    ck_assert_int_eq(check_get(r, "limit=1&source=http&success=true", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(o, "entries"), 0), "task_id")),
                     "T-x");
    json_decref(o);
    timeline_close(r);
    free(jsonl);
    free(idx);
}
END_TEST

/* The suite. */
static Suite *check_suite(void)
{
    Suite *s = suite_create("timeline");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, check_setup, check_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_filters_against_model);
    tcase_add_test(tc, test_merge_against_model);
    tcase_add_test(tc, test_sparse_filters);
    tcase_add_test(tc, test_foreign_jsonl);
    tcase_add_test(tc, test_bad_parameters);
    tcase_add_test(tc, test_parse_time);
    tcase_add_test(tc, test_index_rebuilt);
    tcase_add_test(tc, test_index_behind);
    tcase_add_test(tc, test_torn_last_line);
    tcase_add_test(tc, test_bad_lines_skipped);
    tcase_add_test(tc, test_survives_reopen);
    tcase_add_test(tc, test_append_idempotent);
    tcase_add_test(tc, test_response_cut_utf8);
    tcase_add_test(tc, test_clock_step_back);
    tcase_add_test(tc, test_made_by_the_first_append);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_planted_fifos);
    tcase_add_test(tc, test_reader_follows_rebuild);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_suite());
}
