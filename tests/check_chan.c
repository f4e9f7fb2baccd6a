/*
 * check_chan: the supervisor↔worker channel's framing (common/chan.c):
 * messages written by chan_frame come out of the reader whole and in order
 * whatever the split of the bytes; bad headers (unknown type, reserved bits,
 * a payload over the bound) are refused before any payload is buffered.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chan.h"

#include "tests/check_support.h"

/* The messages read, flattened as "type:payload;". */
static void got_cb(enum chan_type type, const char *payload, size_t len, void *arg)
{
    struct util_buf *b = arg;
    char t[8];
    int n = snprintf(t, sizeof t, "%d:", (int)type);
    util_buf_add(b, t, (size_t)n);
    ck_assert_uint_eq(strlen(payload), len); /* NUL-terminated for the callback */
    util_buf_add(b, payload, len);
    util_buf_add(b, ";", 1);
}

START_TEST(test_every_split)
{
    struct util_buf w = {0};
    chan_frame(&w, CHAN_RESUME, "{\"since\":7}", 11);
    chan_frame(&w, CHAN_EVENT, "", 0);
    char big[70000];
    memset(big, 'x', sizeof big);
    chan_frame(&w, CHAN_STATUS, big, sizeof big);
    chan_frame(&w, CHAN_EVENT, "{}", 2);
    struct util_buf want = {0};
    util_buf_add(&want, "1:{\"since\":7};2:;3:", 19);
    util_buf_add(&want, big, sizeof big);
    util_buf_add(&want, ";2:{};", 6);
    for (size_t cut = 0; cut <= w.len; cut += cut < 40 || cut > w.len - 40 ? 1 : 997) {
        for (size_t cut2 = cut; cut2 <= w.len; cut2 += (w.len - cut) / 3 + 1) {
            struct util_buf got = {0};
            struct chan_reader r;
            chan_reader_init(&r, got_cb, &got);
            ck_assert_int_eq(chan_reader_feed(&r, w.data, cut), CHAN_OK);
            ck_assert_int_eq(chan_reader_feed(&r, w.data + cut, cut2 - cut), CHAN_OK);
            ck_assert_int_eq(chan_reader_feed(&r, w.data + cut2, w.len - cut2), CHAN_OK);
            ck_assert_uint_eq(got.len, want.len);
            ck_assert(memcmp(got.data, want.data, want.len) == 0);
            chan_reader_free(&r);
            free(got.data);
        }
    }
    free(w.data);
    free(want.data);
}
END_TEST

START_TEST(test_byte_by_byte)
{
    struct util_buf w = {0};
    chan_frame(&w, CHAN_EVENT, "{\"seq\":1}", 9);
    chan_frame(&w, CHAN_EVENT, "{\"seq\":2}", 9);
    struct util_buf got = {0};
    struct chan_reader r;
    chan_reader_init(&r, got_cb, &got);
    for (size_t i = 0; i < w.len; i++)
        ck_assert_int_eq(chan_reader_feed(&r, w.data + i, 1), CHAN_OK);
    ck_assert_str_eq(got.data, "2:{\"seq\":1};2:{\"seq\":2};");
    chan_reader_free(&r);
    free(got.data);
    free(w.data);
}
END_TEST

/* Feed the 8-byte header H; the error it gets. */
static enum chan_error feed_header(const unsigned char *h)
{
    struct util_buf got = {0};
    struct chan_reader r;
    chan_reader_init(&r, got_cb, &got);
    enum chan_error e = chan_reader_feed(&r, h, CHAN_HEADER);
    ck_assert_uint_eq(got.len, 0);
    chan_reader_free(&r);
    return e;
}

START_TEST(test_bad_headers)
{
    const unsigned char type0[] = {0, 0, 0, 1, 0, 0, 0, 0};
    const unsigned char type9[] = {0, 0, 0, 1, 0, 9, 0, 0};
    const unsigned char reserved[] = {0, 0, 0, 1, 0, 2, 0, 1};
    const unsigned char huge[] = {0, 0x10, 0, 1, 0, 2, 0, 0};
    const unsigned char max[] = {0, 0x10, 0, 0, 0, 2, 0, 0};
    ck_assert_int_eq(feed_header(type0), CHAN_BAD_TYPE);
    ck_assert_int_eq(feed_header(type9), CHAN_BAD_TYPE);
    ck_assert_int_eq(feed_header(reserved), CHAN_BAD_HEADER);
    ck_assert_int_eq(feed_header(huge), CHAN_TOO_BIG);
    ck_assert_int_eq(feed_header(max), CHAN_OK); /* waits for its payload */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("chan");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_split);
    tcase_add_test(tc, test_byte_by_byte);
    tcase_add_test(tc, test_bad_headers);
    suite_add_tcase(s, tc);
    return check_run(s);
}
