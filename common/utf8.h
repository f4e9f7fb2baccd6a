/*
 * utf8: turns arbitrary bytes into valid UTF-8, whole or as they come. Output
 * that crosses a process boundary (adapter stdout, stderr) arrives in reads
 * that cut characters anywhere and may hold bytes that are not UTF-8 at all;
 * JSON, WebSocket text frames and the response files need valid text. The
 * decoder carries an incomplete character to the next feed and turns every
 * ill-formed sequence into U+FFFD, one per maximal subpart (Unicode §3.9,
 * the WHATWG decoder's rule), so the text of a stream does not depend on
 * where it was cut: feeding bytes in any pieces gives the same output as
 * utf8_sanitize of all of them at once. Overlong forms, surrogates and code
 * points past U+10FFFF are ill-formed. Pure: no I/O, no logging.
 */
#ifndef HIVE_UTF8_H
#define HIVE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

/* The replacement character U+FFFD in UTF-8. */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"
#define UTF8_REPLACEMENT_LEN 3

/* An incremental decoder: all zeros (or utf8_decoder_init) is a fresh one. */
struct utf8_decoder {
    unsigned char tail[4]; /* the start of a character not yet complete */
    size_t tail_len;
};

/* Make D a fresh decoder. */
void utf8_decoder_init(struct utf8_decoder *d);
/* Append to OUT the valid UTF-8 of D's carried tail followed by LEN bytes of
 * DATA; a character still incomplete at the end is kept in D for the next
 * feed. Returns the number of bytes appended. */
size_t utf8_decoder_feed(struct utf8_decoder *d, const void *data, size_t len,
                         struct util_buf *out);
/* End of input: a carried incomplete character becomes U+FFFD in OUT. D is
 * fresh afterwards. Returns the number of bytes appended (0 or 3). */
size_t utf8_decoder_flush(struct utf8_decoder *d, struct util_buf *out);
/* True when D carries the start of a character. */
bool utf8_decoder_pending(const struct utf8_decoder *d);

/* LEN bytes of DATA as a new NUL-terminated valid UTF-8 string (its length
 * in *OUT_LEN when not NULL); NUL bytes are kept. Never NULL. */
char *utf8_sanitize(const void *data, size_t len, size_t *out_len);
/* True when the LEN bytes of DATA are valid UTF-8. */
bool utf8_valid(const void *data, size_t len);
/* Offset of the first byte of DATA (LEN bytes) that does not start a
 * well-formed character (a cut one at the end included), or LEN. */
size_t utf8_valid_prefix(const void *data, size_t len);
/* Length of the well-formed character at S (AVAIL bytes left), or 0 when
 * it is cut short, overlong, a surrogate or past U+10FFFF. */
size_t utf8_char_len(const void *s, size_t avail);
/* The longest prefix of the valid UTF-8 text S (LEN bytes) that is at most
 * MAX bytes and does not cut a character. */
size_t utf8_cut(const char *s, size_t len, size_t max);

#endif
