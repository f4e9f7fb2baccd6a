/*
 * check_pool: the pool routing choice (supervisor/pool.c): only running bots
 * of the pool (or with every tag asked) are chosen; idle first, then the
 * shortest queue, then the longest idle; tried bots are skipped; unknown
 * names and pools with nothing running are told apart; loads survive a
 * re-index, and a task handed over counts before its worker says so.
 */
#include "supervisor/pool.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_support.h"

static const char *gpu[] = {"gpu", NULL}, *gpu_big[] = {"gpu", "big", NULL};

/* A-1..A-3 in pool "a" (A-2 tagged gpu, A-3 gpu and big), B-1 in pool "b",
 * N-1 in no pool; all running and idle. */
static struct pool *make(void)
{
    struct pool_bot_def defs[] = {
        {"A-1", "a", NULL}, {"A-2", "a", gpu},   {"A-3", "a", gpu_big},
        {"B-1", "b", NULL}, {"N-1", NULL, NULL},
    };
    struct pool *p = pool_new();
    pool_set_bots(p, defs, 5);
    for (size_t i = 0; i < 5; i++)
        pool_note_running(p, i, true);
    return p;
}

/* The id pool_choose picks for Q, or "unknown"/"none". */
static const char *pick(struct pool *p, const struct pool_query *q)
{
    long i = pool_choose(p, q);
    return i == POOL_UNKNOWN ? "unknown" : i == POOL_NONE_RUNNING ? "none" : pool_bot_id(p, i);
}

START_TEST(test_idle_first_then_queue_then_longest_idle)
{
    struct pool *p = make();
    struct pool_query q = {.pool = "a"};
    ck_assert_str_eq(pick(p, &q), "A-1"); /* all alike: roster order */
    pool_note_load(p, 0, POOL_BUSY, 0, 100);
    ck_assert_str_eq(pick(p, &q), "A-2");
    pool_note_load(p, 1, POOL_BUSY, 0, 110);
    pool_note_load(p, 2, POOL_BUSY, 3, 120);
    ck_assert_str_eq(pick(p, &q), "A-1"); /* all busy: the shortest queue */
    pool_note_load(p, 0, POOL_BUSY, 5, 130);
    ck_assert_str_eq(pick(p, &q), "A-2");
    /* two idle: the one idle the longest */
    pool_note_load(p, 2, POOL_IDLE, 0, 200);
    pool_note_load(p, 1, POOL_IDLE, 0, 300);
    ck_assert_str_eq(pick(p, &q), "A-3");
    /* a paused bot comes after a busy one */
    pool_note_load(p, 2, POOL_PAUSED, 0, 400);
    pool_note_load(p, 1, POOL_PAUSED, 0, 400);
    ck_assert_str_eq(pick(p, &q), "A-1");
    pool_free(p);
}
END_TEST

START_TEST(test_only_running_and_not_tried)
{
    struct pool *p = make();
    struct pool_query q = {.pool = "a"};
    pool_note_running(p, 0, false);
    ck_assert_str_eq(pick(p, &q), "A-2");
    size_t tried[] = {1};
    q.tried = tried;
    q.n_tried = 1;
    ck_assert_str_eq(pick(p, &q), "A-3");
    size_t tried2[] = {1, 2};
    q.tried = tried2;
    q.n_tried = 2;
    ck_assert_str_eq(pick(p, &q), "none");
    struct pool_query b = {.pool = "b"};
    pool_note_running(p, 3, false);
    ck_assert_int_eq(pool_choose(p, &b), POOL_NONE_RUNNING);
    pool_free(p);
}
END_TEST

START_TEST(test_unknown_names)
{
    struct pool *p = make();
    struct pool_query q = {.pool = "zzz"};
    ck_assert_int_eq(pool_choose(p, &q), POOL_UNKNOWN);
    const char *t[] = {"nope"};
    struct pool_query qt = {.tags = t, .n_tags = 1};
    ck_assert_int_eq(pool_choose(p, &qt), POOL_UNKNOWN);
    /* known names that no bot has together */
    const char *g[] = {"gpu"};
    struct pool_query qb = {.pool = "b", .tags = g, .n_tags = 1};
    ck_assert_int_eq(pool_choose(p, &qb), POOL_UNKNOWN);
    pool_free(p);
}
END_TEST

START_TEST(test_tags_all_must_match)
{
    struct pool *p = make();
    const char *g[] = {"gpu"}, *gb[] = {"big", "gpu"};
    struct pool_query q1 = {.tags = g, .n_tags = 1}, q2 = {.tags = gb, .n_tags = 2};
    ck_assert_str_eq(pick(p, &q1), "A-2");
    ck_assert_str_eq(pick(p, &q2), "A-3");
    pool_note_load(p, 1, POOL_BUSY, 0, 5);
    ck_assert_str_eq(pick(p, &q1), "A-3");
    struct pool_query q3 = {.pool = "a", .tags = g, .n_tags = 1};
    pool_note_load(p, 2, POOL_BUSY, 1, 5);
    ck_assert_str_eq(pick(p, &q3), "A-2");
    pool_free(p);
}
END_TEST

START_TEST(test_sent_counts_until_the_worker_says)
{
    struct pool *p = make();
    struct pool_query q = {.pool = "a"};
    const char *seen[6];
    for (int k = 0; k < 6; k++) { /* a burst spreads: each bot gets one, then queues */
        long i = pool_choose(p, &q);
        ck_assert_int_ge(i, 0);
        seen[k] = pool_bot_id(p, i);
        pool_note_sent(p, i);
    }
    ck_assert_str_eq(seen[0], "A-1");
    ck_assert_str_eq(seen[1], "A-2");
    ck_assert_str_eq(seen[2], "A-3");
    ck_assert_str_ne(seen[3], seen[4]);
    ck_assert_str_ne(seen[4], seen[5]);
    ck_assert_str_ne(seen[3], seen[5]);
    pool_free(p);
}
END_TEST

START_TEST(test_reindex_keeps_loads)
{
    struct pool *p = make();
    pool_note_load(p, 0, POOL_BUSY, 4, 10);
    struct pool_bot_def defs[] = {{"X-1", "a", NULL}, {"A-1", "a", NULL}, {"A-2", "c", NULL}};
    pool_set_bots(p, defs, 3);
    ck_assert_int_eq(pool_find(p, "A-3"), -1);
    ck_assert_int_eq(pool_find(p, "A-1"), 1);
    struct pool_query q = {.pool = "a"};
    ck_assert_str_eq(pick(p, &q), "A-1"); /* X-1 is new: not known to run */
    pool_note_running(p, 0, true);
    ck_assert_str_eq(pick(p, &q), "X-1"); /* A-1 kept its busy load */
    struct pool_query c = {.pool = "c"};
    ck_assert_str_eq(pick(p, &c), "A-2");
    /* a worker that stopped comes back with nothing known of it */
    pool_note_running(p, 1, false);
    pool_note_running(p, 1, true);
    pool_note_load(p, 0, POOL_BUSY, 0, 20);
    ck_assert_str_eq(pick(p, &q), "A-1");
    pool_free(p);
}
END_TEST

START_TEST(test_many_bots)
{
    enum { N = 1000 };
    static char ids[N][16];
    struct pool_bot_def *defs = calloc(N, sizeof *defs);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "B-%d", i);
        defs[i] = (struct pool_bot_def){ids[i], i % 2 ? "odd" : "even", NULL};
    }
    struct pool *p = pool_new();
    pool_set_bots(p, defs, N);
    for (int i = 0; i < N; i++) {
        pool_note_running(p, i, true);
        pool_note_load(p, i, POOL_BUSY, (unsigned)(N - i), 1);
    }
    struct pool_query q = {.pool = "odd"};
    ck_assert_str_eq(pick(p, &q), "B-999");
    ck_assert_int_eq(pool_find(p, "B-500"), 500);
    pool_free(p);
    free(defs);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_idle_first_then_queue_then_longest_idle);
    tcase_add_test(tc, test_only_running_and_not_tried);
    tcase_add_test(tc, test_unknown_names);
    tcase_add_test(tc, test_tags_all_must_match);
    tcase_add_test(tc, test_sent_counts_until_the_worker_says);
    tcase_add_test(tc, test_reindex_keeps_loads);
    tcase_add_test(tc, test_many_bots);
    suite_add_tcase(s, tc);
    return check_run(s);
}
