/*
 * utf8: owns the decoding of untrusted bytes into valid UTF-8 (see utf8.h).
 * One step (utf8_step) looks at the bytes at one position and says whether
 * they are a whole character, the start of one that needs more bytes, or an
 * ill-formed subpart of how many bytes; the incremental decoder and the
 * one-shot sanitiser both run on it, which is why they agree.
 */
#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What utf8_step found at one position. */
enum utf8_kind {
    UTF8_CHAR,       /* a well-formed character of N bytes */
    UTF8_INCOMPLETE, /* every available byte fits; more are needed */
    UTF8_INVALID,    /* an ill-formed subpart of N bytes: one U+FFFD */
};

/* The number of bytes of the character that LEAD starts (0: never a lead),
 * and the range its second byte must be in (excludes overlongs, surrogates
 * and code points past U+10FFFF, Unicode Table 3-7). */
static size_t utf8_lead(unsigned char lead, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (lead == 0xE0)
            *lo = 0xA0;
        else if (lead == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (lead == 0xF0)
            *lo = 0x90;
        else if (lead == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Classify the bytes at S (AVAIL > 0 of them); *N gets the length of a
 * character or of an ill-formed subpart. */
static enum utf8_kind utf8_step(const unsigned char *s, size_t avail, size_t *n)
{
    *n = 1;
    if (s[0] < 0x80)
        return UTF8_CHAR;
    unsigned char lo, hi;
    size_t need = utf8_lead(s[0], &lo, &hi);
    if (need == 0)
        return UTF8_INVALID;
    for (size_t i = 1; i < need; i++) {
        if (i >= avail)
            return UTF8_INCOMPLETE;
        if (s[i] < lo || s[i] > hi) {
            *n = i;
            return UTF8_INVALID;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *n = need;
    return UTF8_CHAR;
}

/* Append the valid text of S (LEN bytes) to OUT; an incomplete character at
 * the end is not consumed. Returns how many bytes of S were consumed. */
static size_t utf8_convert(const unsigned char *s, size_t len, struct util_buf *out)
{
    size_t off = 0, run = 0; /* run: valid bytes at off not yet appended */
    while (off + run < len) {
        size_t n;
        enum utf8_kind k = utf8_step(s + off + run, len - off - run, &n);
        if (k == UTF8_CHAR) {
            run += n;
            continue;
        }
        util_buf_add(out, s + off, run);
        off += run;
        run = 0;
        if (k == UTF8_INCOMPLETE)
            return off;
        util_buf_add(out, UTF8_REPLACEMENT, UTF8_REPLACEMENT_LEN);
        off += n;
    }
    util_buf_add(out, s + off, run);
    return len;
}

/* Make D a fresh decoder. */
void utf8_decoder_init(struct utf8_decoder *d)
{
    memset(d, 0, sizeof *d);
}

/* Complete D's carried character from DATA; returns how many bytes of DATA
 * went into it (the rest is decoded as usual). */
static size_t utf8_decoder_finish_tail(struct utf8_decoder *d, const unsigned char *data,
                                       size_t len, struct util_buf *out)
{
    size_t used = 0;
    while (d->tail_len > 0 && used < len) {
        d->tail[d->tail_len++] = data[used++];
        unsigned char copy[4];
        size_t n = d->tail_len;
        memcpy(copy, d->tail, n);
        d->tail_len = 0;
        size_t done = utf8_convert(copy, n, out);
        /* What was not consumed is still incomplete: carry it on. */
        memcpy(d->tail, copy + done, n - done);
        d->tail_len = n - done;
    }
    return used;
}

/* Append the valid UTF-8 of the carried tail and DATA to OUT (see utf8.h). */
size_t utf8_decoder_feed(struct utf8_decoder *d, const void *data, size_t len, struct util_buf *out)
{
    size_t before = out->len;
    const unsigned char *s = data;
    util_buf_add(out, "", 0);
    size_t used = utf8_decoder_finish_tail(d, s, len, out);
    if (d->tail_len == 0 && used < len) {
        size_t done = utf8_convert(s + used, len - used, out);
        d->tail_len = len - used - done;
        memcpy(d->tail, s + used + done, d->tail_len);
    }
    return out->len - before;
}

/* End of input: a carried incomplete character becomes U+FFFD. */
size_t utf8_decoder_flush(struct utf8_decoder *d, struct util_buf *out)
{
    util_buf_add(out, "", 0);
    if (d->tail_len == 0)
        return 0;
    d->tail_len = 0;
    util_buf_add(out, UTF8_REPLACEMENT, UTF8_REPLACEMENT_LEN);
    return UTF8_REPLACEMENT_LEN;
}

/* True when D carries the start of a character. */
bool utf8_decoder_pending(const struct utf8_decoder *d)
{
    return d->tail_len > 0;
}

/* DATA as a new valid UTF-8 string (see utf8.h). */
char *utf8_sanitize(const void *data, size_t len, size_t *out_len)
{
    struct utf8_decoder d;
    struct util_buf b = {0};
    utf8_decoder_init(&d);
    utf8_decoder_feed(&d, data, len, &b);
    utf8_decoder_flush(&d, &b);
    if (out_len)
        *out_len = b.len;
    return b.data;
}

/* Length of the well-formed character at S, or 0 (see utf8.h). */
size_t utf8_char_len(const void *s, size_t avail)
{
    size_t n;
    if (avail == 0 || utf8_step(s, avail, &n) != UTF8_CHAR)
        return 0;
    return n;
}

/* Offset of the first byte that is not part of a well-formed character. */
size_t utf8_valid_prefix(const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t off = 0;
    while (off < len) {
        size_t n = utf8_char_len(s + off, len - off);
        if (n == 0)
            return off;
        off += n;
    }
    return len;
}

/* True when DATA is valid UTF-8. */
bool utf8_valid(const void *data, size_t len)
{
    return utf8_valid_prefix(data, len) == len;
}

/* The longest prefix of S of at most MAX bytes that ends between characters. */
size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}
