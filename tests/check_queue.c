/*
 * check_queue: the pending-task queue — order by rank, time and key, unique
 * keys, removal from anywhere, positions, a long random run checked against
 * a sorted reference, and freeing with payloads still inside.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/queue.h"

#include "tests/check_support.h"

/* Push KEY with its own name as payload (static strings: nothing to free). */
static void check_push(struct queue *q, const char *key, int rank, int64_t time)
{
    ck_assert_int_eq(queue_push(q, key, rank, time, (void *)key), 0);
}

/* Pop and assert the payload is EXPECTED. */
static void check_pop(struct queue *q, const char *expected)
{
    const char *got = queue_pop(q);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, expected);
}

START_TEST(test_empty)
{
    struct queue *q = queue_new();
    ck_assert_uint_eq(queue_len(q), 0);
    ck_assert_ptr_null(queue_peek(q));
    ck_assert_ptr_null(queue_pop(q));
    ck_assert_ptr_null(queue_find(q, "x"));
    ck_assert_ptr_null(queue_remove(q, "x"));
    ck_assert_uint_eq(queue_position(q, "x"), 0);
    queue_free(q, NULL);
}
END_TEST

START_TEST(test_order)
{
    struct queue *q = queue_new();
    check_push(q, "late-p2", 2, 300);
    check_push(q, "b-p0", 0, 500);
    check_push(q, "unreadable", 10, 1);
    check_push(q, "a-p0", 0, 500);
    check_push(q, "early-p2", 2, 100);
    check_push(q, "first", 0, 400);
    check_push(q, "negative-time", 2, -5);
    ck_assert_uint_eq(queue_len(q), 7);
    ck_assert_str_eq(queue_peek(q), "first");
    check_pop(q, "first");
    check_pop(q, "a-p0");
    check_pop(q, "b-p0");
    check_pop(q, "negative-time");
    check_pop(q, "early-p2");
    check_pop(q, "late-p2");
    check_pop(q, "unreadable");
    ck_assert_ptr_null(queue_pop(q));
    queue_free(q, NULL);
}
END_TEST

START_TEST(test_duplicates)
{
    struct queue *q = queue_new();
    check_push(q, "k", 5, 5);
    ck_assert_int_eq(queue_push(q, "k", 0, 0, "other"), -1);
    ck_assert_uint_eq(queue_len(q), 1);
    ck_assert_str_eq(queue_find(q, "k"), "k");
    /* Once gone, the key may come back. */
    check_pop(q, "k");
    ck_assert_int_eq(queue_push(q, "k", 0, 0, "again"), 0);
    ck_assert_str_eq(queue_find(q, "k"), "again");
    queue_free(q, NULL);
}
END_TEST

START_TEST(test_key_copied)
{
    struct queue *q = queue_new();
    char key[8] = "abc";
    ck_assert_int_eq(queue_push(q, key, 1, 1, "payload"), 0);
    strcpy(key, "xyz");
    ck_assert_str_eq(queue_find(q, "abc"), "payload");
    ck_assert_ptr_null(queue_find(q, "xyz"));
    queue_free(q, NULL);
}
END_TEST

START_TEST(test_remove_middle)
{
    struct queue *q = queue_new();
    static const char *keys[] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"};
    for (int i = 0; i < 10; i++)
        check_push(q, keys[i], i % 3, i);
    /* Order: rank 0: k0 k3 k6 k9; rank 1: k1 k4 k7; rank 2: k2 k5 k8. */
    ck_assert_str_eq(queue_remove(q, "k6"), "k6");
    ck_assert_str_eq(queue_remove(q, "k4"), "k4");
    ck_assert_ptr_null(queue_remove(q, "k4"));
    ck_assert_ptr_null(queue_find(q, "k6"));
    ck_assert_uint_eq(queue_position(q, "k6"), 0);
    ck_assert_uint_eq(queue_len(q), 8);
    static const char *rest[] = {"k0", "k3", "k9", "k1", "k7", "k2", "k5", "k8"};
    for (int i = 0; i < 8; i++)
        check_pop(q, rest[i]);
    queue_free(q, NULL);
}
END_TEST

START_TEST(test_find_and_position)
{
    struct queue *q = queue_new();
    check_push(q, "c", 1, 10);
    check_push(q, "a", 1, 20);
    check_push(q, "b", 0, 30);
    check_push(q, "d", 1, 10);
    ck_assert_str_eq(queue_find(q, "d"), "d");
    ck_assert_ptr_null(queue_find(q, "e"));
    ck_assert_uint_eq(queue_position(q, "b"), 1);
    ck_assert_uint_eq(queue_position(q, "c"), 2);
    ck_assert_uint_eq(queue_position(q, "d"), 3);
    ck_assert_uint_eq(queue_position(q, "a"), 4);
    ck_assert_uint_eq(queue_position(q, "e"), 0);
    queue_remove(q, "c");
    ck_assert_uint_eq(queue_position(q, "a"), 3);
    ck_assert_uint_eq(queue_position(q, "d"), 2);
    queue_free(q, NULL);
}
END_TEST

/* queue_find_if predicate: the payload string starts with CTX. */
static bool check_prefix(const void *data, const void *ctx)
{
    return strncmp(data, ctx, strlen(ctx)) == 0;
}

START_TEST(test_find_if)
{
    struct queue *q = queue_new();
    ck_assert_ptr_null(queue_find_if(q, check_prefix, "a"));
    check_push(q, "apple", 3, 1);
    check_push(q, "banana", 1, 2);
    check_push(q, "cherry", 2, 3);
    ck_assert_str_eq(queue_find_if(q, check_prefix, "ch"), "cherry");
    ck_assert_str_eq(queue_find_if(q, check_prefix, "app"), "apple");
    ck_assert_ptr_null(queue_find_if(q, check_prefix, "d"));
    queue_remove(q, "cherry");
    ck_assert_ptr_null(queue_find_if(q, check_prefix, "ch"));
    queue_free(q, NULL);
}
END_TEST

/* The reference model of one queued item. */
struct check_item {
    char key[16];
    int rank;
    int64_t time;
    int live;
};

/* The queue's order: rank, then time, then key. */
static int check_item_order(const struct check_item *a, const struct check_item *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    return strcmp(a->key, b->key);
}

/* check_item_order for qsort over an array of pointers. */
static int check_item_cmp(const void *pa, const void *pb)
{
    return check_item_order(*(struct check_item *const *)pa, *(struct check_item *const *)pb);
}

/* The live item the queue must give next, by a scan of ITEMS. */
static struct check_item *check_reference_first(struct check_item *items, size_t n)
{
    struct check_item *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (items[i].live && (!best || check_item_order(&items[i], best) < 0))
            best = &items[i];
    return best;
}

/* Check every live item's position against a sort of the reference. */
static void check_positions(const struct queue *q, struct check_item *items, size_t n)
{
    struct check_item **live = xmalloc((n ? n : 1) * sizeof *live);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].live)
            live[m++] = &items[i];
    qsort(live, m, sizeof *live, check_item_cmp);
    ck_assert_uint_eq(queue_len(q), m);
    for (size_t i = 0; i < m; i++)
        ck_assert_uint_eq(queue_position(q, live[i]->key), i + 1);
    free(live);
}

/* 1 + the live items ordered before IT, by a scan of the reference. */
static size_t check_reference_position(const struct check_item *items, size_t n,
                                       const struct check_item *it)
{
    size_t before = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].live && check_item_order(&items[i], it) < 0)
            before++;
    return before + 1;
}

START_TEST(test_random_against_reference)
{
    enum { N = 10000 };
    struct check_item *items = xcalloc(N, sizeof *items);
    struct queue *q = queue_new();
    size_t pushed = 0, popped = 0;
    srand(1234);
    for (int step = 0; pushed < N || queue_len(q) > 0; step++) {
        int op = rand() % 10;
        if (pushed < N && op < 6) {
            struct check_item *it = &items[pushed];
            snprintf(it->key, sizeof it->key, "t%zu", (size_t)rand() % 100000 * N + pushed);
            it->rank = rand() % 13 - 1; /* -1 and 11: ranks without a counter */
            /* Mostly later arrivals (a newcomer's position is then counted),
             * sometimes an earlier time, with ties the key decides. */
            it->time = rand() % 4 ? step / 8 : rand() % (step / 8 + 1);
            it->live = 1;
            ck_assert_int_eq(queue_push(q, it->key, it->rank, it->time, it), 0);
            ck_assert_int_eq(queue_push(q, it->key, 0, 0, NULL), -1);
            pushed++;
            ck_assert_uint_eq(queue_position(q, it->key),
                              check_reference_position(items, pushed, it));
        } else if (op < 9) {
            struct check_item *want = check_reference_first(items, pushed);
            struct check_item *got = queue_pop(q);
            ck_assert_ptr_eq(got, want);
            if (got) {
                got->live = 0;
                popped++;
            }
        } else if (pushed > 0) {
            struct check_item *it = &items[(size_t)rand() % pushed];
            ck_assert_ptr_eq(queue_remove(q, it->key), it->live ? it : NULL);
            ck_assert_ptr_null(queue_find(q, it->key));
            it->live = 0;
        }
        if (step % 2000 == 0)
            check_positions(q, items, pushed);
    }
    ck_assert_uint_gt(popped, N / 2);
    queue_free(q, NULL);
    free(items);
}
END_TEST

static int check_freed;

/* free_data for heap payloads: counts the calls. */
static void check_free_data(void *p)
{
    check_freed++;
    free(p);
}

START_TEST(test_free_with_items)
{
    struct queue *q = queue_new();
    check_freed = 0;
    for (int i = 0; i < 1000; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%d", i);
        ck_assert_int_eq(queue_push(q, key, i % 10, -i, xstrdup(key)), 0);
    }
    for (int i = 0; i < 300; i++)
        free(queue_pop(q));
    queue_free(q, check_free_data);
    ck_assert_int_eq(check_freed, 700);
    queue_free(NULL, check_free_data);
}
END_TEST

/* All queue tests in one suite. */
static Suite *check_queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_order);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_key_copied);
    tcase_add_test(tc, test_remove_middle);
    tcase_add_test(tc, test_find_and_position);
    tcase_add_test(tc, test_find_if);
    tcase_add_test(tc, test_random_against_reference);
    tcase_add_test(tc, test_free_with_items);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_queue_suite());
}
