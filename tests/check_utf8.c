/*
 * check_utf8: the UTF-8 decoder and sanitiser (common/utf8.c) fed bytes
 * whole, one at a time and split at every offset (and every pair of
 * offsets): valid text passes unchanged, every ill-formed subpart becomes one
 * U+FFFD (overlongs, surrogates, past U+10FFFF, stray continuation bytes,
 * truncated characters), and the output never depends on where the input
 * was cut.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

#include "tests/check_support.h"

#define R UTF8_REPLACEMENT

/* Decode the LEN bytes of IN fed in pieces cut at CUTS[0..NCUTS) (sorted). */
static char *feed_cut(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t *out_len)
{
    struct utf8_decoder d;
    struct util_buf b = {0};
    utf8_decoder_init(&d);
    size_t prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        utf8_decoder_feed(&d, in + prev, end - prev, &b);
        ck_assert(utf8_valid(b.data, b.len));
        prev = end;
    }
    utf8_decoder_flush(&d, &b);
    ck_assert(!utf8_decoder_pending(&d));
    *out_len = b.len;
    return b.data;
}

/* Check that IN sanitises to EXPECT whole, byte by byte, and cut at every
 * offset and at every pair of offsets. */
static void check_all_cuts(const char *in, size_t len, const char *expect, size_t expect_len)
{
    size_t n;
    char *whole = utf8_sanitize(in, len, &n);
    ck_assert_uint_eq(n, expect_len);
    ck_assert(memcmp(whole, expect, n) == 0);
    ck_assert(whole[n] == '\0');
    free(whole);
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            char *out = feed_cut(in, len, cuts, 2, &n);
            ck_assert_msg(n == expect_len && memcmp(out, expect, n) == 0,
                          "cut at %zu and %zu of %zu bytes differs", a, b, len);
            free(out);
        }
    }
    size_t *every = malloc((len + 1) * sizeof *every);
    for (size_t i = 0; i <= len; i++)
        every[i] = i;
    char *out = feed_cut(in, len, every, len, &n);
    ck_assert(n == expect_len && memcmp(out, expect, n) == 0);
    free(out);
    free(every);
}

#define CHECK(in, expect) check_all_cuts(in, sizeof(in) - 1, expect, sizeof(expect) - 1)

START_TEST(test_valid_unchanged)
{
    CHECK("", "");
    CHECK("plain ascii\n", "plain ascii\n");
    CHECK("\xC2\x80 \xDF\xBF", "\xC2\x80 \xDF\xBF");               /* U+0080, U+07FF */
    CHECK("\xE0\xA0\x80\xEF\xBF\xBF", "\xE0\xA0\x80\xEF\xBF\xBF"); /* U+0800, U+FFFF */
    CHECK("\xED\x9F\xBF\xEE\x80\x80", "\xED\x9F\xBF\xEE\x80\x80"); /* around surrogates */
    CHECK("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF",
          "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"); /* U+10000, U+10FFFF */
    CHECK("中文 😀 é", "中文 😀 é");
    CHECK("a\0b", "a\0b"); /* NUL is a character */
}
END_TEST

START_TEST(test_invalid_become_replacement)
{
    CHECK("\x80", R);                   /* stray continuation */
    CHECK("a\xBF\x80z", "a" R R "z");   /* two of them */
    CHECK("\xC0\x80", R R);             /* overlong NUL: C0 is never a lead */
    CHECK("\xC1\xBF", R R);             /* overlong */
    CHECK("\xE0\x80\x80", R R R);       /* overlong 3-byte */
    CHECK("\xF0\x80\x80\x80", R R R R); /* overlong 4-byte */
    CHECK("\xED\xA0\x80", R R R);       /* surrogate U+D800 */
    CHECK("\xED\xBF\xBF", R R R);       /* surrogate U+DFFF */
    CHECK("\xF4\x90\x80\x80", R R R R); /* U+110000 */
    CHECK("\xF5\x80", R R);             /* never a lead */
    CHECK("\xFF\xFE", R R);
    CHECK("\xE4\xB8", R);                      /* truncated at the end: one */
    CHECK("\xE4\xB8z", R "z");                 /* truncated before ASCII */
    CHECK("\xF0\x9F\x98\xE4\xB8\xAD", R "中"); /* truncated before a character */
    CHECK("\xE4\xB8\xE4\xB8", R R);            /* two truncated */
    /* Unicode §3.9's example of maximal subparts. */
    CHECK("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", "a" R R R "b" R "c" R R "d");
}
END_TEST

START_TEST(test_carry_across_feeds)
{
    struct utf8_decoder d;
    struct util_buf b = {0};
    utf8_decoder_init(&d);
    /* 中 = E4 B8 AD cut after each byte: nothing, nothing, the character. */
    ck_assert_uint_eq(utf8_decoder_feed(&d, "\xE4", 1, &b), 0);
    ck_assert(utf8_decoder_pending(&d));
    ck_assert_uint_eq(utf8_decoder_feed(&d, "\xB8", 1, &b), 0);
    ck_assert_uint_eq(utf8_decoder_feed(&d, "\xAD", 1, &b), 3);
    ck_assert(!utf8_decoder_pending(&d));
    ck_assert_str_eq(b.data, "中");
    /* A dangling start at the end becomes one U+FFFD. */
    ck_assert_uint_eq(utf8_decoder_feed(&d, "x\xF0\x9F", 3, &b), 1);
    ck_assert_uint_eq(utf8_decoder_flush(&d, &b), 3);
    ck_assert_str_eq(b.data, "中x" R);
    ck_assert_uint_eq(utf8_decoder_flush(&d, &b), 0);
    free(b.data);
}
END_TEST

START_TEST(test_random_bytes_any_cut)
{
    /* Arbitrary bytes (biased to UTF-8-ish values) cut anywhere decode to
     * the same valid text as all at once. */
    static const unsigned char pool[] = {'a',  0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                         0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE4, 0xED, 0xEF,
                                         0xF0, 0xF4, 0xF5, 0xFF, 0xB8, 0xAD};
    srand(42);
    for (int round = 0; round < 2000; round++) {
        char in[24];
        size_t len = (size_t)(rand() % (int)sizeof in);
        for (size_t i = 0; i < len; i++)
            in[i] = (char)pool[rand() % (int)sizeof pool];
        size_t n;
        char *expect = utf8_sanitize(in, len, &n);
        ck_assert(utf8_valid(expect, n));
        if (utf8_valid(in, len))
            ck_assert(n == len && memcmp(in, expect, len) == 0);
        check_all_cuts(in, len, expect, n);
        free(expect);
    }
}
END_TEST

START_TEST(test_valid_and_cut)
{
    ck_assert(utf8_valid("", 0));
    ck_assert(utf8_valid("中😀", strlen("中😀")));
    ck_assert(!utf8_valid("\xE4\xB8", 2));
    ck_assert(!utf8_valid("\xED\xA0\x80", 3));
    const char *s = "a中😀"; /* 1 + 3 + 4 bytes */
    size_t len = strlen(s);
    ck_assert_uint_eq(utf8_cut(s, len, 100), len);
    ck_assert_uint_eq(utf8_cut(s, len, 8), 8);
    ck_assert_uint_eq(utf8_cut(s, len, 7), 4);
    ck_assert_uint_eq(utf8_cut(s, len, 4), 4);
    ck_assert_uint_eq(utf8_cut(s, len, 3), 1);
    ck_assert_uint_eq(utf8_cut(s, len, 1), 1);
    ck_assert_uint_eq(utf8_cut(s, len, 0), 0);
}
END_TEST

START_TEST(test_char_len_and_valid_prefix)
{
    /* One validator for the whole tree: the per-character length and the
     * valid prefix agree with the decoder on every form Table 3-7 rules out. */
    ck_assert_uint_eq(utf8_char_len("a", 1), 1);
    ck_assert_uint_eq(utf8_char_len("\xC3\xA9", 2), 2);
    ck_assert_uint_eq(utf8_char_len("\xE4\xB8\xAD", 3), 3);
    ck_assert_uint_eq(utf8_char_len("\xF0\x9F\x98\x80", 4), 4);
    ck_assert_uint_eq(utf8_char_len("\xE4\xB8", 2), 0);         /* cut short */
    ck_assert_uint_eq(utf8_char_len("\xC0\x80", 2), 0);         /* overlong */
    ck_assert_uint_eq(utf8_char_len("\xE0\x80\x80", 3), 0);     /* overlong */
    ck_assert_uint_eq(utf8_char_len("\xED\xA0\x80", 3), 0);     /* surrogate */
    ck_assert_uint_eq(utf8_char_len("\xF4\x90\x80\x80", 4), 0); /* past U+10FFFF */
    ck_assert_uint_eq(utf8_char_len("\x80", 1), 0);
    ck_assert_uint_eq(utf8_char_len("", 0), 0);
    ck_assert_uint_eq(utf8_valid_prefix("ab\xE4\xB8\xAD"
                                        "c",
                                        6),
                      6);
    ck_assert_uint_eq(utf8_valid_prefix("ab\xE4\xB8", 4), 2);
    ck_assert_uint_eq(utf8_valid_prefix("ab\xFF"
                                        "cd",
                                        5),
                      2);
    srand(7);
    for (int round = 0; round < 2000; round++) {
        unsigned char in[12];
        size_t len = (size_t)(rand() % (int)sizeof in);
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)(rand() % 3 ? 0x80 + rand() % 0x80 : rand() % 0x80);
        size_t off = utf8_valid_prefix(in, len), n;
        ck_assert(utf8_valid(in, off));
        ck_assert_int_eq(off == len, utf8_valid(in, len));
        char *clean = utf8_sanitize(in, len, &n);
        ck_assert(n >= off && memcmp(clean, in, off) == 0);
        free(clean);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("utf8");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_valid_unchanged);
    tcase_add_test(tc, test_invalid_become_replacement);
    tcase_add_test(tc, test_carry_across_feeds);
    tcase_add_test(tc, test_random_bytes_any_cut);
    tcase_add_test(tc, test_valid_and_cut);
    tcase_add_test(tc, test_char_len_and_valid_prefix);
    suite_add_tcase(s, tc);
    return check_run(s);
}
