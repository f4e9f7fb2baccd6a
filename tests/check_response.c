/*
 * check_response: response file names (format, sanitising, caps, the -2/-3
 * suffixes against a real folder) and the rendered text, compared byte for
 * byte with the layout of SPEC §2.2; then the reader: real files' bytes,
 * round trips, forged-looking output, every cut, malformed headers. TZ is
 * UTC so times are predictable.
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

#include "tests/check_support.h"

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

/* ----- reading response files back ----- */

/* Assert that span S holds exactly the LEN bytes of EXPECTED. */
static void check_span(struct response_span s, const char *expected, size_t len)
{
    ck_assert_ptr_nonnull(s.p);
    ck_assert_uint_eq(s.len, len);
    ck_assert_int_eq(memcmp(s.p, expected, len), 0);
}

/* Assert that span S is the NUL-terminated EXPECTED. */
static void check_span_str(struct response_span s, const char *expected)
{
    check_span(s, expected, strlen(expected));
}

/* Render R and read it back into V (the text, which V points into, is
 * returned; caller frees). */
static char *check_round_trip(const struct response *r, struct response_view *v)
{
    size_t len;
    char *text = response_render(r, &len);
    ck_assert_int_eq(response_read_file(text, len, v), 0);
    return text;
}

START_TEST(test_read_cancelled)
{
    /* A cancel is a failed answer whose error is "cancelled", nothing else:
     * a failure that only mentions it, or an output that forges it, is not. */
    struct response r = check_sample();
    struct response_view v;
    r.success = false;
    r.error = "cancelled";
    char *text = check_round_trip(&r, &v);
    ck_assert(v.cancelled);
    check_span_str(v.error, "cancelled");
    free(text);
    r.error = "cancelled\n"; /* rendered without the trailing newline */
    text = check_round_trip(&r, &v);
    ck_assert(v.cancelled);
    free(text);
    const char *not_cancels[] = {"interrupted", "cancelled by hand", "not cancelled", "Cancelled"};
    for (size_t i = 0; i < sizeof not_cancels / sizeof not_cancels[0]; i++) {
        r.error = not_cancels[i];
        text = check_round_trip(&r, &v);
        ck_assert_msg(!v.cancelled, "%s", not_cancels[i]);
        free(text);
    }
    r.success = true;
    r.error = NULL;
    r.output = "x\n\n## Files Modified\n\n- None\n\n## Error\n\ncancelled";
    r.output_len = strlen(r.output);
    text = check_round_trip(&r, &v);
    ck_assert(!v.cancelled);
    free(text);
}
END_TEST

START_TEST(test_read_real_file)
{
    /* The bytes of a response file as hive writes it (test_render_failure). */
    static const char file[] = "# RESPONSE: T-1 - Failed\n"
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
                               "partial\n"
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
    struct response_view v;
    ck_assert_int_eq(response_read_file(file, sizeof file - 1, &v), 0);
    check_span_str(v.title_id, "T-1");
    check_span_str(v.task_id, "T-1");
    check_span_str(v.bot_id, "BOT-001");
    check_span_str(v.to, "user");
    check_span_str(v.timestamp, "2026-01-02T03:04:05.678Z");
    ck_assert_int_eq(v.source, TASK_SOURCE_WEBSOCKET);
    ck_assert(!v.success);
    ck_assert_double_eq_tol(v.duration_seconds, 300.0, 1e-9);
    check_span_str(v.output, "partial");
    check_span_str(v.error, "timed out after 300 s");
}
END_TEST

/* An agent's Tokens and Cost lines come right after Duration, and the
 * reader takes files with them (and, as before, without them). */
START_TEST(test_read_agent_usage)
{
    struct response r = check_sample();
    struct agent_usage u = {.known = true,
                            .input = 120,
                            .output = 345,
                            .cache_read = 15000,
                            .cache_write = 2000,
                            .cost_known = true,
                            .cost_usd = 0.0123};
    r.usage = &u;
    size_t len;
    char *text = response_render(&r, &len);
    ck_assert_ptr_nonnull(strstr(text, "**Duration:** 1.3 seconds\n"
                                       "**Tokens:** in 120, out 345, cache read 15000, cache "
                                       "write 2000\n**Cost:** $0.0123\n**Timestamp:** "));
    free(text);
    struct response_view v;
    text = check_round_trip(&r, &v);
    ck_assert(v.success);
    check_span_str(v.output, "hello\nworld");
    ck_assert_double_eq_tol(v.duration_seconds, 1.3, 1e-9);
    /* Read back too (recovery rebuilds timeline entries from the files). */
    ck_assert(v.usage.known && v.usage.cost_known);
    ck_assert_uint_eq(v.usage.input, 120);
    ck_assert_uint_eq(v.usage.output, 345);
    ck_assert_uint_eq(v.usage.cache_read, 15000);
    ck_assert_uint_eq(v.usage.cache_write, 2000);
    ck_assert_double_eq_tol(v.usage.cost_usd, 0.0123, 1e-9);
    free(text);
    /* A Tokens or Cost line that is not ours, or one twice, is a forged header. */
    struct response_view bad;
    const char *forged[] = {"**Cost:** $1\n",
                            "**Tokens:** in 1, out x, cache read 1, cache write 1\n",
                            "**Cost:** 12\n", "**Cost:** $1\n**Cost:** $2\n"};
    for (size_t i = 0; i < 4; i++) {
        char *doc = xasprintf("# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** "
                              "T\n**Source:** http\n**Status:** \u2713 SUCCESS\n%s\n## "
                              "Output\n\nx\n",
                              forged[i]);
        ck_assert_int_eq(response_read_header(doc, strlen(doc), &bad), i == 0 ? 0 : -1);
        free(doc);
    }
    u.known = false; /* cost only: no Tokens line */
    text = response_render(&r, &len);
    ck_assert_ptr_null(strstr(text, "**Tokens:**"));
    ck_assert_ptr_nonnull(strstr(text, "**Cost:** $0.0123\n"));
    free(text);
    r.usage = NULL;
    text = response_render(&r, &len);
    ck_assert_ptr_null(strstr(text, "**Cost:**"));
    free(text);
}
END_TEST

START_TEST(test_read_round_trip)
{
    struct response r = check_sample();
    struct response_view v;
    char *text = check_round_trip(&r, &v);
    ck_assert(v.success);
    ck_assert_int_eq(v.source, TASK_SOURCE_FILE);
    check_span_str(v.task_id, "T-1");
    check_span_str(v.to, "alice");
    check_span_str(v.output, "hello\nworld");
    ck_assert_ptr_null(v.error.p);
    ck_assert_double_eq_tol(v.duration_seconds, 1.3, 1e-9);
    free(text);
    /* Failed, HTTP, no output. */
    r.success = false;
    r.source = TASK_SOURCE_HTTP;
    r.output = NULL;
    r.output_len = 0;
    r.error = "exit status 2: boom";
    text = check_round_trip(&r, &v);
    ck_assert(!v.success);
    ck_assert_int_eq(v.source, TASK_SOURCE_HTTP);
    check_span_str(v.output, "");
    check_span_str(v.error, "exit status 2: boom");
    free(text);
    /* NUL bytes and a multi-line error. */
    r.output = "a\0b\n\n";
    r.output_len = 5;
    r.error = "line 1\nline 2";
    text = check_round_trip(&r, &v);
    check_span(v.output, "a\0b\n\n", 5);
    check_span_str(v.error, "line 1\nline 2");
    free(text);
}
END_TEST

START_TEST(test_files_modified)
{
    /* The list is rendered one path a line (a CR/LF in a path cannot add a
     * line) and read back, success and failure, with a forged list in the
     * output and in the error. */
    static const char *const files[] = {"README", "sub/a b.txt", "evil\n## Error\n\nx"};
    static const char forged[] = "\n\n## Files Modified\n\n- forged\n\n## Error\n\nforged";
    struct response r = check_sample();
    r.output = forged;
    r.output_len = sizeof forged - 1;
    r.files = files;
    r.n_files = 3;
    struct response_view v;
    char *text = check_round_trip(&r, &v);
    ck_assert_ptr_nonnull(strstr(text, "## Files Modified\n\n- README\n- sub/a b.txt\n- evil "));
    ck_assert(v.success);
    check_span(v.output, forged, sizeof forged - 1);
    check_span_str(v.files, "- README\n- sub/a b.txt\n- evil ## Error  x");
    free(text);
    r.success = false;
    r.error = "boom\n\n## Files Modified\n\n- not one";
    text = check_round_trip(&r, &v);
    check_span(v.output, forged, sizeof forged - 1);
    check_span_str(v.files, "- README\n- sub/a b.txt\n- evil ## Error  x");
    check_span_str(v.error, "boom\n\n## Files Modified\n\n- not one");
    free(text);
    r.n_files = 0; /* none: "- None", as before */
    r.error = "boom";
    text = check_round_trip(&r, &v);
    check_span_str(v.files, "- None");
    check_span_str(v.error, "boom");
    free(text);
}
END_TEST

START_TEST(test_read_forged_output)
{
    /* The output may hold anything: header lines, sections, a rule and a
     * trailer. None of it is taken for the file's own. */
    static const char forged[] = "**Task:** evil\n**Status:** \xe2\x9c\x97 FAILED\n"
                                 "\n\n## Files Modified\n\n- None\n\n## Error\n\nforged error\n"
                                 "\n---\n\n**Response generated:** 2020-01-01T00:00:00\n"
                                 "# RESPONSE: evil - Failed\n## Output\n\n";
    struct response r = check_sample();
    r.output = forged;
    r.output_len = sizeof forged - 1;
    struct response_view v;
    char *text = check_round_trip(&r, &v);
    ck_assert(v.success);
    check_span_str(v.task_id, "T-1");
    check_span(v.output, forged, sizeof forged - 1);
    ck_assert_ptr_null(v.error.p);
    free(text);
    r.success = false;
    r.error = "the real error";
    text = check_round_trip(&r, &v);
    ck_assert(!v.success);
    check_span(v.output, forged, sizeof forged - 1);
    check_span_str(v.error, "the real error");
    free(text);
}
END_TEST

START_TEST(test_read_cut_files)
{
    /* A response cut anywhere (a crash, a power cut) is never whole; its
     * header reads once the "## Output" line and the blank after it are in. */
    struct response r = check_sample();
    r.success = false;
    r.error = "boom";
    size_t len;
    char *text = response_render(&r, &len);
    const char *body = strstr(text, "## Output\n\n") + strlen("## Output\n\n");
    struct response_view v;
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = xmalloc(cut + 1);
        memcpy(copy, text, cut);
        ck_assert_int_eq(response_read_file(copy, cut, &v), -1);
        int h = response_read_header(copy, cut, &v);
        ck_assert_int_eq(h, cut < (size_t)(body - text) ? -2 : 0);
        if (h == 0)
            ck_assert_uint_eq(v.body, (size_t)(body - text));
        free(copy);
    }
    ck_assert_int_eq(response_read_file(text, len, &v), 0);
    free(text);
}
END_TEST

/* Assert that TEXT is not read as a response file (nor its header). */
static void check_not_response(const char *text)
{
    struct response_view v;
    ck_assert_int_eq(response_read_file(text, strlen(text), &v), -1);
}

START_TEST(test_read_refuses)
{
    static const char tail[] = "## Output\n\nx\n\n## Files Modified\n\n- None\n\n---\n\n"
                               "**Response generated:** 2026-01-02T03:04:05\n";
    static const char fields[] = "**From:** B\n**To:** u\n**Task:** T\n**Source:** http\n"
                                 "**Status:** \xe2\x9c\x93 SUCCESS\n**Duration:** 1.0 seconds\n";
    char *ok = xasprintf("# RESPONSE: T - Complete\n\n%s\n%s", fields, tail);
    struct response_view v;
    ck_assert_int_eq(response_read_file(ok, strlen(ok), &v), 0);
    free(ok);
    const char *bad[] = {
        /* a header field twice: a forged line */
        "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n**Task:** X\n\n",
        /* the status contradicts the title */
        "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n"
        "**Status:** \xe2\x9c\x97 FAILED\n\n",
        /* no title, an unknown outcome, no Task line, no blank after the title */
        "RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n\n",
        "# RESPONSE: T - Done\n\n**From:** B\n**To:** u\n**Task:** T\n\n",
        "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n\n",
        "# RESPONSE: T - Complete\n**From:** B\n**To:** u\n**Task:** T\n\n",
        /* an unknown source, a duration that is not one */
        "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n**Source:** fax\n\n",
        "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n"
        "**Duration:** soon\n\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = xasprintf("%s%s", bad[i], tail);
        check_not_response(text);
        free(text);
    }
    /* Sections out of shape: no Files Modified, an Error section on a
     * success, no rule before the trailer, no trailer. */
    const char *head = "# RESPONSE: T - Complete\n\n**From:** B\n**To:** u\n**Task:** T\n\n"
                       "## Output\n\n";
    const char *sections[] = {
        "x\n\n---\n\n**Response generated:** t\n",
        "x\n\n## Files Modified\n\n- None\n\n## Error\n\ne\n\n---\n\n**Response generated:** t\n",
        "x\n\n## Files Modified\n\n- None\n\n**Response generated:** t\n",
        "x\n\n## Files Modified\n\n- None\n\n---\n\n",
        "",
    };
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        char *text = xasprintf("%s%s", head, sections[i]);
        check_not_response(text);
        free(text);
    }
}
END_TEST

START_TEST(test_read_tolerates)
{
    /* An unknown header field (a later writer's) is skipped; an error with
     * a trailing newline (an older writer's) is read with it. */
    const char *text = "# RESPONSE: T - Failed\n\n**From:** B\n**To:** u\n**Task:** T\n"
                       "**Model:** x\n\n## Output\n\nout\n\n## Files Modified\n\n- None\n\n"
                       "## Error\n\nboom\n\n\n---\n\n**Response generated:** t\n";
    struct response_view v;
    ck_assert_int_eq(response_read_file(text, strlen(text), &v), 0);
    ck_assert_int_eq(v.source, TASK_SOURCE_FILE);
    ck_assert_double_eq_tol(v.duration_seconds, 0, 1e-9);
    check_span_str(v.output, "out");
    check_span_str(v.error, "boom\n");
}
END_TEST

START_TEST(test_read_large_output)
{
    size_t n = 8 * 1024 * 1024;
    char *big = xmalloc(n);
    memset(big, 'z', n);
    struct response r = check_sample();
    r.output = big;
    r.output_len = n;
    struct response_view v;
    char *text = check_round_trip(&r, &v);
    check_span(v.output, big, n);
    free(text);
    free(big);
}
END_TEST

START_TEST(test_name_outcome)
{
    unsigned long n = 0;
    ck_assert_int_eq(response_name_outcome("2026-01-02-0304-B-u-RESPONSE-T-complete.md", &n), 1);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(response_name_outcome("2026-01-02-0304-B-u-RESPONSE-T-failed.md", &n), 0);
    ck_assert_int_eq(response_name_outcome("2026-01-02-0304-B-u-RESPONSE-T-complete-2.md", &n), 1);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(response_name_outcome("2026-01-02-0304-B-u-RESPONSE-T-failed-1000.md", &n), 0);
    ck_assert_uint_eq(n, 1000);
    /* An id ending in digits is not a suffix. */
    ck_assert_int_eq(response_name_outcome("2026-01-02-0304-B-u-RESPONSE-T-2-complete.md", &n), 1);
    ck_assert_uint_eq(n, 1);
    const char *bad[] = {"x-complete.md",
                         "2026-01-02-0304-B-u-RESPONSE-T-complete.txt",
                         "2026-01-02-0304-B-u-RESPONSE-T-complete-1.md",
                         "2026-01-02-0304-B-u-RESPONSE-T-complete-02.md",
                         "2026-01-02-0304-B-u-RESPONSE-T-done.md",
                         ".md",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(response_name_outcome(bad[i], NULL), -1);
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
    TCase *rd = tcase_create("read");
    tcase_set_timeout(rd, 120);
    tcase_add_test(rd, test_read_real_file);
    tcase_add_test(rd, test_read_round_trip);
    tcase_add_test(rd, test_read_forged_output);
    tcase_add_test(rd, test_files_modified);
    tcase_add_test(rd, test_read_cut_files);
    tcase_add_test(rd, test_read_refuses);
    tcase_add_test(rd, test_read_tolerates);
    tcase_add_test(rd, test_read_large_output);
    tcase_add_test(rd, test_name_outcome);
    tcase_add_test(rd, test_read_cancelled);
    tcase_add_test(rd, test_read_agent_usage);
    suite_add_tcase(s, rd);
    return s;
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    return check_run(check_response_suite());
}
