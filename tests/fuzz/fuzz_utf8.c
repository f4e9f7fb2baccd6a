/*
 * fuzz_utf8: the UTF-8 decoder (common/utf8.c) fed arbitrary bytes in
 * arbitrary pieces. The first byte of an input seeds the piece sizes; the
 * rest is the text. Checked for every input: every feed appends valid UTF-8,
 * the pieces together give exactly what utf8_sanitize gives for the whole,
 * valid input comes out unchanged, and the output is never more than three
 * bytes per input byte (one U+FFFD per ill-formed byte at worst).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_utf8_fail(const char *msg)
{
    fprintf(stderr, "fuzz_utf8: %s\n", msg);
    abort();
}

/* The size of the next piece: from the seed byte, 0 to 7. */
static size_t fuzz_utf8_piece(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) % 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned state = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    struct utf8_decoder d;
    struct util_buf pieces = {0};
    utf8_decoder_init(&d);
    for (size_t off = 0; off < len;) {
        size_t n = fuzz_utf8_piece(&state);
        if (n > len - off)
            n = len - off;
        size_t before = pieces.len;
        if (utf8_decoder_feed(&d, in + off, n, &pieces) != pieces.len - before)
            fuzz_utf8_fail("feed miscounted what it appended");
        if (!utf8_valid(pieces.data + before, pieces.len - before))
            fuzz_utf8_fail("a feed appended invalid UTF-8");
        off += n;
    }
    utf8_decoder_flush(&d, &pieces);
    size_t whole_len;
    char *whole = utf8_sanitize(in, len, &whole_len);
    if (!utf8_valid(whole, whole_len) || !utf8_valid(pieces.data, pieces.len))
        fuzz_utf8_fail("output is not valid UTF-8");
    if (whole_len != pieces.len || memcmp(whole, pieces.data, whole_len) != 0)
        fuzz_utf8_fail("pieces and the whole decode differently");
    if (utf8_valid(in, len) && (whole_len != len || memcmp(whole, in, len) != 0))
        fuzz_utf8_fail("valid input was changed");
    if (whole_len > 3 * len)
        fuzz_utf8_fail("output grew more than U+FFFD per byte");
    free(whole);
    free(pieces.data);
    return 0;
}
