/*
 * check_evlog: the numbered events log (common/evlog.c): numbers read back
 * at open (across both generations), a last line cut by a crash removed,
 * rotation at the bound keeping two generations, replay after a cursor (and
 * bounded batches), and when a reader must resync. Without a scan the open
 * reads only the newest lines, back from the end: the last number must be
 * the same whatever the lines' lengths (windows of 64 KiB and more, lines
 * across them, longer than them, unnumbered ones at the end, an empty
 * current generation). A log that does not exist is made by the first
 * append, not by the open.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/evlog.h"
#include "common/util.h"

#include "tests/check_support.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check-evlog-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ev.jsonl", dir);
}

static void teardown(void)
{
    char p[160];
    snprintf(p, sizeof p, "%s.1", path);
    unlink(p);
    unlink(path);
    rmdir(dir);
}

/* Append event N, numbered under KEY, with PAD bytes of padding. */
static void add_keyed(struct evlog *lg, const char *key, uint64_t n, size_t pad)
{
    char *fill = xcalloc(1, pad + 1);
    memset(fill, 'p', pad);
    char *line =
        xasprintf("{\"type\":\"t\",\"%s\":%llu,\"pad\":\"%s\"}", key, (unsigned long long)n, fill);
    evlog_append(lg, line, strlen(line), n);
    free(line);
    free(fill);
}

/* A worker's event N; a merged one (numbered hive_seq). */
static void add(struct evlog *lg, uint64_t n, size_t pad)
{
    add_keyed(lg, "seq", n, pad);
}

static void add_hive(struct evlog *lg, uint64_t n, size_t pad)
{
    add_keyed(lg, "hive_seq", n, pad);
}

/* Replay collector: the numbers seen, in order. */
struct seen {
    uint64_t n[20000];
    size_t len;
};

static void seen_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    struct seen *s = arg;
    ck_assert(json_is_object(obj));
    ck_assert(len > 0 && line[len] == '\n');
    s->n[s->len++] = n;
}

/* Everything LG keeps, replayed from the start: LEN lines, the first
 * numbered FIRST (0 when none). */
static void check_replay_all(struct evlog *lg, size_t len, uint64_t first)
{
    struct seen *s = xcalloc(1, sizeof *s);
    uint64_t got = 9;
    evlog_replay(lg, 0, 0, &got, seen_cb, s);
    ck_assert_uint_eq(s->len, len);
    ck_assert_uint_eq(got, first);
    free(s);
}

START_TEST(test_reopen_and_cut_line)
{
    struct evlog *lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), 0);
    for (uint64_t n = 1; n <= 5; n++)
        add(lg, n, 10);
    evlog_close(lg);
    FILE *f = fopen(path, "a");
    fputs("{\"type\":\"t\",\"se", f); /* a crash in the middle of a line */
    fclose(f);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), 5);
    add(lg, 6, 10);
    struct seen *s = xcalloc(1, sizeof *s);
    uint64_t first;
    evlog_replay(lg, 3, 0, &first, seen_cb, s);
    ck_assert_uint_eq(first, 1);
    ck_assert_uint_eq(s->len, 3);
    ck_assert_uint_eq(s->n[0], 4);
    ck_assert_uint_eq(s->n[2], 6);
    s->len = 0;
    evlog_replay(lg, 0, 2, &first, seen_cb, s); /* a bounded batch */
    ck_assert_uint_eq(s->len, 2);
    ck_assert_uint_eq(s->n[1], 2);
    free(s);
    evlog_close(lg);
}
END_TEST

/* A log that does not exist is not made by the open (an inode costs a
 * worker's start dearly on an ext4 without a journal): it reads as empty,
 * a cursor from elsewhere resyncs, and the first append makes it. */
START_TEST(test_made_by_the_first_append)
{
    struct stat st;
    struct evlog *lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_int_eq(lstat(path, &st), -1);
    ck_assert_uint_eq(evlog_last(lg), 0);
    ck_assert_uint_eq(evlog_first(lg), 0);
    ck_assert(evlog_must_resync(3, evlog_first(lg), evlog_last(lg)));
    check_replay_all(lg, 0, 0);
    struct evlog_mark mark;
    ck_assert(!evlog_mark(lg, &mark));
    evlog_close(lg);
    ck_assert_int_eq(lstat(path, &st), -1); /* nor by the close */
    lg = evlog_open(path, "seq", NULL, NULL);
    add(lg, 1, 10);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(evlog_mark(lg, &mark));
    check_replay_all(lg, 1, 1);
    evlog_close(lg);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), 1);
    add(lg, 2, 10);
    evlog_close(lg);
}
END_TEST

/* A log whose first append cannot make it (its folder is gone for a
 * while; no descriptors or space would do the same) is made by a later
 * append once it can be: the run's log does not stay off. */
START_TEST(test_made_when_it_can_be)
{
    char sub[160], file[200];
    snprintf(sub, sizeof sub, "%s/later", dir);
    snprintf(file, sizeof file, "%s/ev.jsonl", sub);
    struct evlog *lg = evlog_open(file, "seq", NULL, NULL);
    add(lg, 1, 10); /* no folder: not written */
    struct stat st;
    ck_assert_int_eq(lstat(file, &st), -1);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    add(lg, 2, 10);
    add(lg, 3, 10);
    check_replay_all(lg, 2, 2);
    evlog_close(lg);
    lg = evlog_open(file, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), 3);
    evlog_close(lg);
    ck_assert_int_eq(unlink(file), 0);
    ck_assert_int_eq(rmdir(sub), 0);
}
END_TEST

START_TEST(test_rotation_keeps_two_generations)
{
    struct evlog *lg = evlog_open(path, "seq", NULL, NULL);
    uint64_t n = 0;
    while (n < 10000) /* ~1 KiB each: about 10 MiB, over two cuts */
        add(lg, ++n, 1000);
    evlog_close(lg);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), 10000);
    uint64_t first = evlog_first(lg);
    ck_assert(first > 1);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(st.st_size <= EVLOG_FILE_MAX);
    struct seen *s = xcalloc(1, sizeof *s);
    uint64_t first2;
    evlog_replay(lg, 0, 0, &first2, seen_cb, s);
    ck_assert_uint_eq(first2, first);
    ck_assert_uint_eq(s->len, 10000 - first + 1); /* kept: contiguous to the last */
    for (size_t i = 0; i < s->len; i++)
        ck_assert_uint_eq(s->n[i], first + i);
    ck_assert(s->len * 1030 >= EVLOG_FILE_MAX); /* at least one whole generation */
    free(s);
    ck_assert(evlog_must_resync(first - 2, first, 10000));
    ck_assert(!evlog_must_resync(first - 1, first, 10000));
    ck_assert(!evlog_must_resync(0, first, 10000));
    ck_assert(!evlog_must_resync(10000, first, 10000));
    ck_assert(evlog_must_resync(10001, first, 10000));
    ck_assert(evlog_must_resync(3, 0, 10)); /* nothing kept but numbered */
    ck_assert(!evlog_must_resync(10, 0, 10));
    evlog_close(lg);
}
END_TEST

/* Scan callback: count the lines shown at open. */
static void count_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)n, (void)obj, (void)line, (void)len;
    ++*(int *)arg;
}

START_TEST(test_scan_at_open)
{
    struct evlog *lg = evlog_open(path, "hive_seq", NULL, NULL);
    const char *a = "{\"hive_seq\":1,\"bot_id\":\"A\",\"seq\":7}";
    const char *b = "{\"no_number\":true}";
    evlog_append(lg, a, strlen(a), 1);
    evlog_append(lg, b, strlen(b), 1);
    evlog_close(lg);
    int count = 0;
    lg = evlog_open(path, "hive_seq", count_cb, &count);
    ck_assert_int_eq(count, 1); /* lines without the number are skipped */
    ck_assert_uint_eq(evlog_last(lg), 1);
    evlog_close(lg);
}
END_TEST

/* Append raw TEXT (a line without its '\n') to FILE. */
static void raw_line(const char *file, const char *text)
{
    FILE *f = fopen(file, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", text);
    fclose(f);
}

START_TEST(test_last_read_back_from_the_end)
{
    /* Line lengths around the window (64 KiB) and its doublings. */
    static const size_t pads[] = {0, 10, 65000, 65536, 70000, 131072, 140000, 300000, 5};
    uint64_t n = 0;
    srand(7);
    for (size_t round = 0; round < 40; round++) {
        struct evlog *lg = evlog_open(path, "seq", NULL, NULL);
        ck_assert_uint_eq(evlog_last(lg), n);
        size_t lines = 1 + (size_t)rand() % 3;
        for (size_t i = 0; i < lines; i++)
            add(lg, ++n, pads[(size_t)rand() % (sizeof pads / sizeof *pads)]);
        evlog_close(lg);
        if (round % 5 == 4) /* unnumbered lines after the last numbered one */
            for (size_t i = 0; i < 1 + (size_t)rand() % 2; i++)
                raw_line(path, round % 10 == 4 ? "{\"type\":\"note\"}" : "");
    }
    struct evlog *lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), n);
    evlog_close(lg);
    /* The current generation empty (just cut): the previous one says. */
    char prev[160];
    snprintf(prev, sizeof prev, "%s.1", path);
    ck_assert_int_eq(rename(path, prev), 0);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), n);
    add(lg, n + 1, 100);
    evlog_close(lg);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), n + 1);
    evlog_close(lg);
    /* A line cut by a crash, longer than a window: cut, the one before says. */
    FILE *f = fopen(path, "a");
    fputs("{\"type\":\"t\",\"seq\":99999,\"pad\":\"", f);
    for (int i = 0; i < 200000; i++)
        fputc('p', f);
    fclose(f);
    lg = evlog_open(path, "seq", NULL, NULL);
    ck_assert_uint_eq(evlog_last(lg), n + 1);
    evlog_close(lg);
    /* The same numbers when every line is scanned. */
    int count = 0;
    lg = evlog_open(path, "seq", count_cb, &count);
    ck_assert_uint_eq(evlog_last(lg), n + 1);
    ck_assert_int_gt(count, 1); /* the previous generation's lines, and the last */
    evlog_close(lg);
}
END_TEST

/* Scan callback: the numbers shown at open. */
static void shown_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)obj, (void)line, (void)len;
    struct seen *s = arg;
    s->n[s->len++] = n;
}

START_TEST(test_open_after_a_mark)
{
    struct evlog *lg = evlog_open(path, "hive_seq", NULL, NULL);
    for (uint64_t n = 1; n <= 3; n++)
        add_hive(lg, n, 10);
    struct evlog_mark mark;
    ck_assert(evlog_mark(lg, &mark));
    ck_assert_uint_eq(mark.last, 3);
    add_hive(lg, 4, 10);
    add_hive(lg, 5, 10);
    evlog_close(lg);
    struct seen *s = xcalloc(1, sizeof *s);
    bool after = false;
    lg = evlog_open_after(path, "hive_seq", &mark, shown_cb, s, &after);
    ck_assert(after);
    ck_assert_uint_eq(s->len, 2); /* only the lines after the mark */
    ck_assert_uint_eq(s->n[0], 4);
    ck_assert_uint_eq(evlog_last(lg), 5);
    /* Cut into two generations since: the rest of the marked one, then all
     * of the new one. */
    uint64_t n = 5;
    while (n < 6000)
        add_hive(lg, ++n, 1000);
    evlog_close(lg);
    struct stat st;
    char prev[160];
    snprintf(prev, sizeof prev, "%s.1", path);
    ck_assert_int_eq(stat(prev, &st), 0);
    ck_assert_uint_eq((unsigned long long)st.st_ino, mark.ino); /* once cut */
    s->len = 0;
    lg = evlog_open_after(path, "hive_seq", &mark, shown_cb, s, &after);
    ck_assert(after);
    ck_assert_uint_eq(s->len, 6000 - 3);
    ck_assert_uint_eq(s->n[0], 4);
    ck_assert_uint_eq(s->n[s->len - 1], 6000);
    ck_assert_uint_eq(evlog_last(lg), 6000);
    evlog_close(lg);
    /* A mark that does not match: its number, its file, its length. */
    struct evlog_mark bad[3] = {mark, mark, mark};
    bad[0].last = 2;
    bad[1].ino += 1000003;
    bad[2].size = (long long)st.st_size + 1;
    for (size_t i = 0; i < 3; i++) {
        s->len = 0;
        lg = evlog_open_after(path, "hive_seq", &bad[i], shown_cb, s, &after);
        ck_assert(!after);
        ck_assert_uint_eq(s->len, 6000); /* every line (both generations hold all) */
        ck_assert_uint_eq(s->n[0], 1);
        evlog_close(lg);
    }
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("evlog");
    TCase *tc = tcase_create("evlog");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reopen_and_cut_line);
    tcase_add_test(tc, test_made_by_the_first_append);
    tcase_add_test(tc, test_made_when_it_can_be);
    tcase_add_test(tc, test_rotation_keeps_two_generations);
    tcase_add_test(tc, test_scan_at_open);
    tcase_add_test(tc, test_last_read_back_from_the_end);
    tcase_add_test(tc, test_open_after_a_mark);
    suite_add_tcase(s, tc);
    return check_run(s);
}
