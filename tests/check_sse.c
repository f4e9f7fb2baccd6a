/*
 * check_sse: the event-stream framing and reader (common/sse.c): framing
 * round-trips through the reader whatever the split of the bytes, line ends
 * of every kind are read, comments and unknown fields are skipped, cursors
 * parse strictly, and an over-long line is refused.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"

#include "tests/check_support.h"

/* What the reader handed over, flattened: "id|type|data;" per event. */
struct got {
    struct util_buf text;
    int n;
};

/* Reader callback: record one event. */
static void got_cb(const struct sse_event *ev, void *arg)
{
    struct got *g = arg;
    util_buf_add(&g->text, ev->id, strlen(ev->id));
    util_buf_add(&g->text, "|", 1);
    util_buf_add(&g->text, ev->type, strlen(ev->type));
    util_buf_add(&g->text, "|", 1);
    util_buf_add(&g->text, ev->data, ev->data_len);
    util_buf_add(&g->text, ";", 1);
    g->n++;
}

/* Read STREAM (LEN bytes) in two pieces cut at CUT; the flattened events. */
static char *read_split(const char *stream, size_t len, size_t cut, int *n)
{
    struct got g = {0};
    struct sse_reader r;
    sse_reader_init(&r, 4096, got_cb, &g);
    ck_assert_int_eq(sse_reader_feed(&r, stream, cut), SSE_OK);
    ck_assert_int_eq(sse_reader_feed(&r, stream + cut, len - cut), SSE_OK);
    sse_reader_free(&r);
    *n = g.n;
    return g.text.data ? g.text.data : strdup("");
}

START_TEST(test_frame_exact)
{
    struct util_buf b = {0};
    sse_frame(&b, "7", "task_started", "{\"a\":1}", 7);
    sse_comment(&b, "keepalive");
    ck_assert_str_eq(b.data, "id: 7\nevent: task_started\ndata: {\"a\":1}\n\n: keepalive\n\n");
    free(b.data);
    b = (struct util_buf){0};
    sse_frame(&b, NULL, "resync", "a\nb\r\nc\rd", 8);
    ck_assert_str_eq(b.data, "event: resync\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    free(b.data);
}
END_TEST

START_TEST(test_roundtrip_every_split)
{
    struct util_buf b = {0};
    sse_frame(&b, "1", "task_received", "{\"x\":\"é\"}", strlen("{\"x\":\"é\"}"));
    sse_comment(&b, "hi");
    sse_frame(&b, "2", "task_output", "line1\nline2\n", 12);
    sse_frame(&b, NULL, NULL, "", 0);
    const char *want = "1|task_received|{\"x\":\"é\"};2|task_output|line1\nline2\n;2|message|;";
    for (size_t cut = 0; cut <= b.len; cut++) {
        int n;
        char *got = read_split(b.data, b.len, cut, &n);
        ck_assert_str_eq(got, want);
        ck_assert_int_eq(n, 3);
        free(got);
    }
    free(b.data);
}
END_TEST

START_TEST(test_line_ends_and_fields)
{
    const char *s = "id: 5\r\nevent: a\r\ndata:x\r\nretry: 10\r\nfoo\r\n\r\n"
                    ":c\rdata: y\rdata: z\r\r"
                    "data\n\nevent: no-data\n\n";
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++) {
        int n;
        char *got = read_split(s, len, cut, &n);
        ck_assert_str_eq(got, "5|a|x;5|message|y\nz;5|message|;");
        free(got);
    }
}
END_TEST

START_TEST(test_too_long)
{
    struct got g = {0};
    struct sse_reader r;
    sse_reader_init(&r, 8, got_cb, &g);
    ck_assert_int_eq(sse_reader_feed(&r, "data: 1\n\n", 9), SSE_OK);
    ck_assert_int_eq(sse_reader_feed(&r, "data: 123456789", 15), SSE_TOO_LONG);
    sse_reader_free(&r);
    free(g.text.data);
    ck_assert_int_eq(g.n, 1);
}
END_TEST

START_TEST(test_cursor)
{
    uint64_t c = 9;
    ck_assert_int_eq(sse_cursor_parse("0", &c), 0);
    ck_assert_uint_eq(c, 0);
    ck_assert_int_eq(sse_cursor_parse("18446744073709551615", &c), 0);
    ck_assert(c == UINT64_MAX);
    ck_assert_int_eq(sse_cursor_parse("18446744073709551616", &c), -1);
    ck_assert_int_eq(sse_cursor_parse("", &c), -1);
    ck_assert_int_eq(sse_cursor_parse(NULL, &c), -1);
    ck_assert_int_eq(sse_cursor_parse("-1", &c), -1);
    ck_assert_int_eq(sse_cursor_parse(" 1", &c), -1);
    ck_assert_int_eq(sse_cursor_parse("1x", &c), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");
    tcase_add_test(tc, test_frame_exact);
    tcase_add_test(tc, test_roundtrip_every_split);
    tcase_add_test(tc, test_line_ends_and_fields);
    tcase_add_test(tc, test_too_long);
    tcase_add_test(tc, test_cursor);
    suite_add_tcase(s, tc);
    return check_run(s);
}
