/*
 * check_taskfile: the task file parser fed with bytes — both forms, encodings,
 * defaults, priorities, every way a file can be malformed, and every prefix
 * and many corruptions of valid files (which must never crash it).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/taskfile.h"

#include "tests/check_support.h"

/* Parse the NUL-terminated S with stem "stem" and bot "BOT-1". */
static int check_parse(const char *s, struct taskfile *tf, char *err, size_t errlen)
{
    return taskfile_parse(s, strlen(s), "stem", "BOT-1", tf, err, errlen);
}

/* Assert that S is refused with a reason containing WHY. */
static void check_refused(const char *s, size_t len, const char *why)
{
    struct taskfile tf;
    char err[256];
    ck_assert_int_eq(taskfile_parse(s, len, "stem", "BOT-1", &tf, err, sizeof err), -1);
    ck_assert_msg(strstr(err, why) != NULL, "error '%s' lacks '%s'", err, why);
    ck_assert_ptr_null(tf.task_id);
    ck_assert_ptr_null(tf.content);
}

/* check_refused() on a string literal, NULs included. */
#define CHECK_REFUSED(lit, why) check_refused(lit, sizeof(lit) - 1, why)

START_TEST(test_front_matter)
{
    struct taskfile tf;
    char err[256];
    const char *s = "---\ntask_id: T-1\nto: BOT-9\nfrom: alice\npriority: P1\n"
                    "created_at: 2026-01-02T03:04:05Z\n---\n\nDo the thing.\nSecond line.\n";
    ck_assert_int_eq(check_parse(s, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "T-1");
    ck_assert_str_eq(tf.to, "BOT-9");
    ck_assert_str_eq(tf.from, "alice");
    ck_assert_str_eq(tf.priority, "P1");
    ck_assert_int_eq(tf.priority_rank, 1);
    ck_assert_str_eq(tf.created_at, "2026-01-02T03:04:05Z");
    ck_assert_str_eq(tf.content, "Do the thing.\nSecond line.\n");
    taskfile_clear(&tf);
    ck_assert_ptr_null(tf.content);
}
END_TEST

START_TEST(test_front_matter_defaults)
{
    struct taskfile tf;
    char err[256];
    ck_assert_int_eq(check_parse("---\nfoo: bar\n---\nbody\n", &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "stem");
    ck_assert_str_eq(tf.from, "unknown");
    ck_assert_str_eq(tf.to, "BOT-1");
    ck_assert_str_eq(tf.priority, "P2");
    ck_assert_int_eq(tf.priority_rank, 2);
    ck_assert_ptr_null(tf.created_at);
    ck_assert_str_eq(tf.content, "body\n");
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_front_matter_details)
{
    struct taskfile tf;
    char err[256];
    /* Numeric priority kept as written, `...` closes, only one blank line is
     * stripped, empty and null values fall back to defaults, quoting works. */
    const char *s = "--- \ntask_id: \"quoted-id\"\npriority: 1\nfrom:\nto: ~\n...\n\n\nbody";
    ck_assert_int_eq(check_parse(s, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "quoted-id");
    ck_assert_str_eq(tf.priority, "1");
    ck_assert_int_eq(tf.priority_rank, 1);
    ck_assert_str_eq(tf.from, "unknown");
    ck_assert_str_eq(tf.to, "BOT-1");
    ck_assert_str_eq(tf.content, "\nbody");
    taskfile_clear(&tf);
    /* An empty front matter block is no fields at all. */
    ck_assert_int_eq(check_parse("---\n---\nbody\n", &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "stem");
    ck_assert_str_eq(tf.content, "body\n");
    taskfile_clear(&tf);
    ck_assert_int_eq(check_parse("---\n# only a comment\n---\nbody\n", &tf, err, sizeof err), 0);
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_unknown_keys_ignored)
{
    struct taskfile tf;
    char err[256];
    const char *s = "---\ntags: [a, b]\nmeta: {x: 1, y: [1, {z: 2}]}\nlist:\n  - one\n"
                    "  - two\nfrom: bob\nTo: ignored-case\n---\nbody\n";
    ck_assert_int_eq(check_parse(s, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.from, "bob");
    ck_assert_str_eq(tf.to, "BOT-1");
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_front_matter_errors)
{
    CHECK_REFUSED("---\ntask_id: x\nbody without end\n", "unterminated front matter");
    CHECK_REFUSED("---\n", "unterminated front matter");
    CHECK_REFUSED("---", "unterminated front matter");
    CHECK_REFUSED("---\n- a\n- b\n---\nbody\n", "not a YAML mapping");
    CHECK_REFUSED("---\njust text\n---\nbody\n", "not a YAML mapping");
    CHECK_REFUSED("---\nto: [a, b]\n---\nbody\n", "'to' must be a scalar");
    CHECK_REFUSED("---\ntask_id:\n  - a\n---\nbody\n", "'task_id' must be a scalar");
    CHECK_REFUSED("---\npriority: {a: 1}\n---\nbody\n", "'priority' must be a scalar");
    CHECK_REFUSED("---\nfrom: &a x\nto: *a\n---\nbody\n", "'to' must be a scalar");
    CHECK_REFUSED("---\n[a]: 1\n---\nbody\n", "keys must be scalars");
    CHECK_REFUSED("---\nfrom: [unclosed\n---\nbody\n", "front matter:");
    CHECK_REFUSED("---\na: 1\n--- x\nb: 2\n---\nbody\n", "more than one YAML document");
    CHECK_REFUSED("---\nto: \"a\\0b\"\n---\nbody\n", "NUL character");
}
END_TEST

START_TEST(test_markdown)
{
    struct taskfile tf;
    char err[256];
    const char *s = "# Build it\n\n**From:** Q33N \n**To:**BOT-7\n- **priority**: p0\n\nText\n";
    ck_assert_int_eq(check_parse(s, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "stem");
    ck_assert_str_eq(tf.from, "Q33N");
    ck_assert_str_eq(tf.to, "BOT-7");
    ck_assert_str_eq(tf.priority, "p0");
    ck_assert_int_eq(tf.priority_rank, 0);
    ck_assert_ptr_null(tf.created_at);
    ck_assert_str_eq(tf.content, s);
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_markdown_case_and_defaults)
{
    struct taskfile tf;
    char err[256];
    const char *s = "**FROM:** a\n**from:** second is ignored\n**TO:**   \nplain text\n";
    ck_assert_int_eq(check_parse(s, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.from, "a");
    ck_assert_str_eq(tf.to, "BOT-1");
    ck_assert_str_eq(tf.priority, "P2");
    ck_assert_int_eq(tf.priority_rank, 2);
    taskfile_clear(&tf);
    ck_assert_int_eq(check_parse("just words, **From:** not at line start\n", &tf, err, sizeof err),
                     0);
    ck_assert_str_eq(tf.from, "unknown");
    taskfile_clear(&tf);
    /* A `---` later than the first line is a horizontal rule, not front matter. */
    ck_assert_int_eq(check_parse("intro\n---\nmore\n", &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.content, "intro\n---\nmore\n");
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_bom_and_crlf)
{
    struct taskfile tf;
    char err[256];
    const char *fm =
        "\xef\xbb\xbf---\r\ntask_id: T-2\r\nfrom: x\r\n---\r\n\r\nline 1\r\nline 2\r\n";
    ck_assert_int_eq(check_parse(fm, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "T-2");
    ck_assert_str_eq(tf.from, "x");
    ck_assert_str_eq(tf.content, "line 1\nline 2\n");
    taskfile_clear(&tf);
    const char *md = "\xef\xbb\xbf# T\r\n**From:** y\r\n**Priority:** P4\r\n";
    ck_assert_int_eq(check_parse(md, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.from, "y");
    ck_assert_str_eq(tf.priority, "P4");
    ck_assert_str_eq(tf.content, "# T\n**From:** y\n**Priority:** P4\n");
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_priority_rank)
{
    ck_assert_int_eq(taskfile_priority_rank("P0"), 0);
    ck_assert_int_eq(taskfile_priority_rank("p3"), 3);
    ck_assert_int_eq(taskfile_priority_rank(" P1 "), 1);
    ck_assert_int_eq(taskfile_priority_rank("P9"), 9);
    ck_assert_int_eq(taskfile_priority_rank("7"), 7);
    ck_assert_int_eq(taskfile_priority_rank("P10"), 1);
    ck_assert_int_eq(taskfile_priority_rank("P0 (BLOCKING - PROCESS ISSUE)"), 0);
    ck_assert_int_eq(taskfile_priority_rank("P2-high"), 2);
    ck_assert_int_eq(taskfile_priority_rank("high"), 10);
    ck_assert_int_eq(taskfile_priority_rank(""), 10);
    ck_assert_int_eq(taskfile_priority_rank("P"), 10);
    ck_assert_int_eq(taskfile_priority_rank("P 1"), 10);
    ck_assert_int_eq(taskfile_priority_rank("-1"), 10);
    ck_assert_int_eq(taskfile_priority_rank(NULL), 10);
}
END_TEST

START_TEST(test_unreadable_priority)
{
    struct taskfile tf;
    char err[256];
    ck_assert_int_eq(check_parse("---\npriority: urgent\n---\nbody\n", &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.priority, "urgent");
    ck_assert_int_eq(tf.priority_rank, 10);
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_bad_bytes)
{
    CHECK_REFUSED("abc\xff", "invalid UTF-8 at offset 3");
    CHECK_REFUSED("\xc0\xaf", "invalid UTF-8");         /* overlong '/' */
    CHECK_REFUSED("\xed\xa0\x80", "invalid UTF-8");     /* surrogate */
    CHECK_REFUSED("\xf4\x90\x80\x80", "invalid UTF-8"); /* above U+10FFFF */
    CHECK_REFUSED("ok \xe2\x82", "invalid UTF-8");      /* truncated */
    CHECK_REFUSED("ab\0cd", "NUL byte at offset 2");
    CHECK_REFUSED("---\nfrom: a\0\n---\nbody\n", "NUL byte");
    struct taskfile tf;
    char err[256];
    ck_assert_int_eq(
        check_parse("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x9d\n", &tf, err, sizeof err), 0);
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_empty_task)
{
    CHECK_REFUSED("", "empty task");
    CHECK_REFUSED(" \n\t\r\n", "empty task");
    CHECK_REFUSED("\xef\xbb\xbf", "empty task");
    CHECK_REFUSED("---\nfrom: a\n---\n", "empty task");
    CHECK_REFUSED("---\nfrom: a\n---\n\n  \n", "empty task");
    CHECK_REFUSED("---\nfrom: a\n---", "empty task");
}
END_TEST

START_TEST(test_long_input)
{
    size_t n = 4 * 1024 * 1024;
    char *s = xmalloc(n + 1);
    memset(s, 'x', n);
    memcpy(s, "---\ntask_id: ", 13);
    memcpy(s + 100000, "\n---\n", 5);
    for (size_t i = 200000; i < n; i += 80)
        s[i] = '\n';
    s[n] = '\0';
    struct taskfile tf;
    char err[256];
    /* A 100,000-character id is parsed, then refused as an id. */
    ck_assert_int_eq(taskfile_parse(s, n, "stem", "BOT-1", &tf, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "invalid task_id"));
    memcpy(s, "---\nnote___: ", 13); /* an unknown key: the stem is the id */
    ck_assert_int_eq(taskfile_parse(s, n, "stem", "BOT-1", &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.task_id, "stem");
    ck_assert_uint_eq(strlen(tf.content), n - 100005);
    taskfile_clear(&tf);
    /* The same bytes as one giant markdown line. */
    memset(s, 'y', n);
    ck_assert_int_eq(taskfile_parse(s, n, "stem", "BOT-1", &tf, err, sizeof err), 0);
    ck_assert_uint_eq(strlen(tf.content), n);
    taskfile_clear(&tf);
    free(s);
}
END_TEST

/* Parse LEN bytes of S and check the result is consistent either way. */
static void check_survives(const char *s, size_t len)
{
    struct taskfile tf;
    char err[128];
    if (taskfile_parse(s, len, "stem", "BOT-1", &tf, err, sizeof err) == 0) {
        ck_assert_ptr_nonnull(tf.task_id);
        ck_assert_ptr_nonnull(tf.from);
        ck_assert_ptr_nonnull(tf.to);
        ck_assert_ptr_nonnull(tf.content);
        ck_assert_int_le(tf.priority_rank, 10);
    } else {
        ck_assert_ptr_null(tf.content);
        ck_assert_uint_gt(strlen(err), 0);
    }
    taskfile_clear(&tf);
}

static const char *check_samples[] = {
    "\xef\xbb\xbf---\r\ntask_id: T-9\r\nfrom: \"a \\u00e9 b\"\r\nto: 'BOT-2'\r\npriority: P0\r\n"
    "meta: {a: [1, 2, {b: c}]}\r\nlist:\r\n  - x\r\n  - &k y\r\nref: *k\r\n---\r\n\r\n"
    "# Title \xe2\x9c\x93\r\n\r\nBody text.\r\n",
    "# Task\n\n**From:** someone\n**To:** BOT-3\n**Priority:** P1\n\nDo it \xf0\x9f\x90\x9d.\n",
};

START_TEST(test_every_prefix)
{
    for (size_t k = 0; k < sizeof check_samples / sizeof check_samples[0]; k++) {
        const char *s = check_samples[k];
        size_t n = strlen(s);
        for (size_t len = 0; len <= n; len++) {
            char *copy = xmalloc(len ? len : 1); /* exact size: overreads are caught */
            memcpy(copy, s, len);
            check_survives(copy, len);
            free(copy);
        }
    }
}
END_TEST

START_TEST(test_corruptions)
{
    static const char bytes[] = {'\n', '\r', ':', '-',  '[', '{', '&', '*', '"',    '\'',
                                 '\\', '#',  ' ', '\t', '!', '|', '>', '%', '\xc3', '\xff'};
    srand(42);
    for (size_t k = 0; k < sizeof check_samples / sizeof check_samples[0]; k++) {
        size_t n = strlen(check_samples[k]);
        for (int round = 0; round < 3000; round++) {
            char *copy = xmalloc(n);
            memcpy(copy, check_samples[k], n);
            for (int m = 0; m < 1 + rand() % 3; m++)
                copy[rand() % n] = bytes[rand() % (int)sizeof bytes];
            check_survives(copy, n);
            free(copy);
        }
    }
}
END_TEST

START_TEST(test_invalid_ids)
{
    /* SPEC §3: ids match [A-Za-z0-9_-][A-Za-z0-9._-]{0,63}, from the front
     * matter or the file stem alike. */
    struct taskfile tf;
    char err[256];
    const char *bad[] = {"---\ntask_id: .hidden\n---\nbody",
                         "---\ntask_id: \"a\\n**Status:** forged\"\n---\nbody",
                         "---\ntask_id: has space\n---\nbody"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(taskfile_parse(bad[i], strlen(bad[i]), "ok", "B", &tf, err, sizeof err),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "invalid task_id"));
    }
    ck_assert_int_eq(taskfile_parse("body", 4, ".x", "B", &tf, err, sizeof err), -1);
    char stem[70];
    memset(stem, 'a', 64);
    stem[64] = '\0';
    ck_assert_int_eq(taskfile_parse("body", 4, stem, "B", &tf, err, sizeof err), 0);
    taskfile_clear(&tf);
    stem[64] = 'a', stem[65] = '\0';
    ck_assert_int_eq(taskfile_parse("body", 4, stem, "B", &tf, err, sizeof err), -1);
    ck_assert_int_eq(taskfile_parse("body", 4, "a.b_c-D9", "B", &tf, err, sizeof err), 0);
    taskfile_clear(&tf);
}
END_TEST

START_TEST(test_null_stem_and_bot)
{
    struct taskfile tf;
    char err[16];
    ck_assert_int_eq(taskfile_parse("body", 4, "s", NULL, &tf, err, sizeof err), 0);
    ck_assert_str_eq(tf.to, "");
    taskfile_clear(&tf);
    /* No stem: no id, refused. */
    ck_assert_int_eq(taskfile_parse("body", 4, NULL, NULL, &tf, err, sizeof err), -1);
    /* A tiny error buffer is truncated, not overrun. */
    ck_assert_int_eq(taskfile_parse("---\n", 4, "s", "b", &tf, err, sizeof err), -1);
    ck_assert_uint_eq(strlen(err), sizeof err - 1);
    ck_assert_int_eq(taskfile_parse("---\n", 4, "s", "b", &tf, NULL, 0), -1);
}
END_TEST

/* All taskfile tests in one suite. */
static Suite *check_taskfile_suite(void)
{
    Suite *s = suite_create("taskfile");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_front_matter);
    tcase_add_test(tc, test_front_matter_defaults);
    tcase_add_test(tc, test_front_matter_details);
    tcase_add_test(tc, test_unknown_keys_ignored);
    tcase_add_test(tc, test_front_matter_errors);
    tcase_add_test(tc, test_markdown);
    tcase_add_test(tc, test_markdown_case_and_defaults);
    tcase_add_test(tc, test_bom_and_crlf);
    tcase_add_test(tc, test_priority_rank);
    tcase_add_test(tc, test_unreadable_priority);
    tcase_add_test(tc, test_bad_bytes);
    tcase_add_test(tc, test_empty_task);
    tcase_add_test(tc, test_long_input);
    tcase_add_test(tc, test_every_prefix);
    tcase_add_test(tc, test_corruptions);
    tcase_add_test(tc, test_null_stem_and_bot);
    tcase_add_test(tc, test_invalid_ids);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_taskfile_suite());
}
