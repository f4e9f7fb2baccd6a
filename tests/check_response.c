/*
 * check_response: response file names (format, sanitising, caps, the -2/-3
 * suffixes against a real folder) and the rendered text, compared byte for
 * byte with the layout of SPEC §2.2. TZ is UTC so times are predictable.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "worker/response.h"

/* 2026-01-02 03:04:05.678 UTC */
#define CHECK_WHEN (1767323045LL * 1000000000LL + 678000000LL)

/* A successful file response with fixed fields. */
static struct response check_sample(void)
{
    struct response r = {
        .bot_id = "BOT-001",
        .task_id = "T-1",
        .to = "alice",
        .source = TASK_SOURCE_FILE,
        .success = true,
        .duration_seconds = 1.26,
        .output = "hello\nworld",
        .output_len = 11,
        .error = NULL,
        .finished_wall_ns = CHECK_WHEN,
    };
    return r;
}

/* Assert that the base name of R is EXPECTED. */
static void check_base(const struct response *r, const char *expected)
{
    char *name = response_base_name(r);
    ck_assert_str_eq(name, expected);
    free(name);
}

START_TEST(test_base_name)
{
    struct response r = check_sample();
    check_base(&r, "2026-01-02-0304-BOT-001-alice-RESPONSE-T-1-complete");
    r.success = false;
    check_base(&r, "2026-01-02-0304-BOT-001-alice-RESPONSE-T-1-failed");
}
END_TEST

START_TEST(test_base_name_local_time)
{
    struct response r = check_sample();
    setenv("TZ", "IST-5:30", 1); /* +05:30 as a POSIX rule: no tzdata needed */
    tzset();
    check_base(&r, "2026-01-02-0834-BOT-001-alice-RESPONSE-T-1-complete");
    setenv("TZ", "UTC", 1);
    tzset();
}
END_TEST

START_TEST(test_base_name_sanitised)
{
    struct response r = check_sample();
    r.task_id = "../x";
    r.to = "a/b";
    r.bot_id = "my bot";
    check_base(&r, "2026-01-02-0304-my_bot-a_b-RESPONSE-.._x-complete");
    r.task_id = "..";
    r.to = "";
    r.bot_id = NULL;
    check_base(&r, "2026-01-02-0304-_-_-RESPONSE-_-complete");
    r.task_id = "caf\xc3\xa9 \xf0\x9f\x90\x9d";
    r.to = "x\ny";
    r.bot_id = "B.1_ok-";
    check_base(&r, "2026-01-02-0304-B.1_ok--x_y-RESPONSE-caf_______-complete");
}
END_TEST

START_TEST(test_base_name_capped)
{
    char id[301];
    memset(id, 'i', 300);
    id[300] = '\0';
    struct response r = check_sample();
    r.task_id = id;
    r.to = id;
    r.bot_id = id;
    char *name = response_base_name(&r);
    char part[65];
    memset(part, 'i', 64);
    part[64] = '\0';
    char *expected = xasprintf("2026-01-02-0304-%s-%s-RESPONSE-%s-complete", part, part, part);
    ck_assert_str_eq(name, expected);
    ck_assert_uint_lt(strlen(name) + strlen("-99999.md"), 255);
    free(expected);
    free(name);
}
END_TEST

/* Create an empty file DIR/NAME. */
static void check_touch(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    free(path);
}

/* Assert that pick_name in DIR for BASE gives EXPECTED. */
static void check_pick(const char *dir, const char *base, const char *expected)
{
    char *name = response_pick_name(dir, base);
    ck_assert_str_eq(name, expected);
    free(name);
}

/* Remove DIR/NAME. */
static void check_unlink(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    ck_assert_int_eq(unlink(path), 0);
    free(path);
}

START_TEST(test_pick_name)
{
    char dir[] = "/tmp/check_response.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    check_pick(dir, "R", "R.md");
    check_touch(dir, "R.md");
    check_pick(dir, "R", "R-2.md");
    check_touch(dir, "R-2.md");
    check_pick(dir, "R", "R-3.md");
    /* A dangling symlink is a name that exists. */
    char *link = xasprintf("%s/R-3.md", dir);
    ck_assert_int_eq(symlink("/nonexistent/target", link), 0);
    free(link);
    check_pick(dir, "R", "R-4.md");
    /* A gap is not filled: the first free name in order wins. */
    check_unlink(dir, "R-2.md");
    check_pick(dir, "R", "R-2.md");
    check_pick(dir, "other", "other.md");
    check_unlink(dir, "R.md");
    check_unlink(dir, "R-3.md");
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_pick_name_many)
{
    char dir[] = "/tmp/check_response.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    check_touch(dir, "B.md");
    for (int i = 2; i <= 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "B-%d.md", i);
        check_touch(dir, name);
    }
    check_pick(dir, "B", "B-51.md");
    check_unlink(dir, "B.md");
    for (int i = 2; i <= 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "B-%d.md", i);
        check_unlink(dir, name);
    }
    ck_assert_int_eq(rmdir(dir), 0);
    /* A folder that does not exist has no names taken. */
    check_pick(dir, "B", "B.md");
}
END_TEST

START_TEST(test_render_success)
{
    struct response r = check_sample();
    size_t len;
    char *text = response_render(&r, &len);
    const char *expected = "# RESPONSE: T-1 - Complete\n"
                           "\n"
                           "**From:** BOT-001\n"
                           "**To:** alice\n"
                           "**Task:** T-1\n"
                           "**Source:** file\n"
                           "**Status:** \xe2\x9c\x93 SUCCESS\n"
                           "**Duration:** 1.3 seconds\n"
                           "**Timestamp:** 2026-01-02T03:04:05.678Z\n"
                           "\n"
                           "## Output\n"
                           "\n"
                           "hello\nworld\n"
                           "\n"
                           "## Files Modified\n"
                           "\n"
                           "- None\n"
                           "\n"
                           "---\n"
                           "\n"
                           "**Response generated:** 2026-01-02T03:04:05\n";
    ck_assert_str_eq(text, expected);
    ck_assert_uint_eq(len, strlen(expected));
    free(text);
}
END_TEST

START_TEST(test_render_failure)
{
    struct response r = check_sample();
    r.success = false;
    r.source = TASK_SOURCE_WEBSOCKET;
    r.to = "user";
    r.duration_seconds = 300.04;
    r.output = NULL;
    r.output_len = 0;
    r.error = "timed out after 300 s";
    size_t len;
    char *text = response_render(&r, &len);
    const char *expected = "# RESPONSE: T-1 - Failed\n"
                           "\n"
                           "**From:** BOT-001\n"
                           "**To:** user\n"
                           "**Task:** T-1\n"
                           "**Source:** websocket\n"
                           "**Status:** \xe2\x9c\x97 FAILED\n"
                           "**Duration:** 300.0 seconds\n"
                           "**Timestamp:** 2026-01-02T03:04:05.678Z\n"
                           "\n"
                           "## Output\n"
                           "\n"
                           "\n"
                           "\n"
                           "## Files Modified\n"
                           "\n"
                           "- None\n"
                           "\n"
                           "## Error\n"
                           "\n"
                           "timed out after 300 s\n"
                           "\n"
                           "---\n"
                           "\n"
                           "**Response generated:** 2026-01-02T03:04:05\n";
    ck_assert_str_eq(text, expected);
    ck_assert_uint_eq(len, strlen(expected));
    free(text);
}
END_TEST

START_TEST(test_render_binary_output)
{
    struct response r = check_sample();
    r.source = TASK_SOURCE_HTTP;
    r.output = "a\0b";
    r.output_len = 3;
    r.error = ""; /* empty: no Error section */
    size_t len;
    char *text = response_render(&r, &len);
    ck_assert_ptr_nonnull(strstr(text, "**Source:** http\n"));
    const char *out = "## Output\n\na";
    char *at = strstr(text, out);
    ck_assert_ptr_nonnull(at);
    at += strlen(out);
    ck_assert_int_eq(at[0], '\0');
    ck_assert_str_eq(at + 1, "b\n\n## Files Modified\n\n- None\n\n---\n\n"
                             "**Response generated:** 2026-01-02T03:04:05\n");
    ck_assert_uint_eq(len, (size_t)(at - text) + 1 + strlen(at + 1));
    free(text);
}
END_TEST

START_TEST(test_render_large_output)
{
    size_t n = 8 * 1024 * 1024;
    char *big = xmalloc(n);
    memset(big, 'z', n);
    struct response r = check_sample();
    r.output = big;
    r.output_len = n;
    size_t len;
    char *text = response_render(&r, &len);
    ck_assert_uint_gt(len, n);
    ck_assert_uint_eq(strlen(text), len);
    free(text);
    free(big);
}
END_TEST

/* All response tests in one suite. */
START_TEST(test_header_values_one_line)
{
    /* SPEC §2.2: no input forges a header line; recovery reads the header
     * back by position and finds the worker's own lines. */
    struct response r = check_sample();
    r.task_id = "T-9";
    r.to = "evil\n**Task:** FORGED\r\n**Status:** \u2713 SUCCESS\x1b\xc2\x85\xe2\x80\xa8x";
    r.success = false;
    r.error = "boom\n\n";
    size_t len;
    char *text = response_render(&r, &len);
    ck_assert_ptr_nonnull(strstr(text, "**To:** evil **Task:** FORGED  **Status:** \u2713 SUCCESS"
                                       "   x\n**Task:** T-9\n"));
    ck_assert_ptr_nonnull(strstr(text, "## Error\n\nboom\n\n---\n"));
    struct response_header h;
    ck_assert_int_eq(response_parse(text, len, &h), 0);
    ck_assert_str_eq(h.task_id, "T-9");
    ck_assert(!h.success);
    ck_assert_ptr_nonnull(strstr(h.to, "FORGED"));
    response_header_clear(&h);
    /* A cut file (no trailer) is not a response. */
    ck_assert_int_eq(response_parse(text, len - 3, &h), -1);
    free(text);
    char *v = response_header_value("a\tb\x7f");
    ck_assert_str_eq(v, "a b ");
    free(v);
}
END_TEST

static Suite *check_response_suite(void)
{
    Suite *s = suite_create("response");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_base_name);
    tcase_add_test(tc, test_base_name_local_time);
    tcase_add_test(tc, test_base_name_sanitised);
    tcase_add_test(tc, test_base_name_capped);
    tcase_add_test(tc, test_pick_name);
    tcase_add_test(tc, test_pick_name_many);
    tcase_add_test(tc, test_render_success);
    tcase_add_test(tc, test_render_failure);
    tcase_add_test(tc, test_render_binary_output);
    tcase_add_test(tc, test_render_large_output);
    tcase_add_test(tc, test_header_values_one_line);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    SRunner *sr = srunner_create(check_response_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
