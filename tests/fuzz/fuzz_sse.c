/*
 * fuzz_sse: the event-stream reader (common/sse.c) that reads remote bots'
 * events in the supervisor (supervisor/remote.c), `hive events` and `hive
 * top` (cli/stream.c, cli/top.c), fed arbitrary bytes in arbitrary pieces.
 * The first byte seeds the piece sizes, the second sets the line bound.
 * Checked for every input: the reader hands over the same events (or stops
 * at the same line that is too long) whatever the split; every event's
 * fields are within what the reader promises (a type, an id under 256
 * bytes, data no longer than the input); an event framed by sse_frame()
 * from the input reads back with its id, type and lines; a cursor that
 * sse_cursor_parse() takes prints back as the same digits.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_sse_fail(const char *msg)
{
    fprintf(stderr, "fuzz_sse: %s\n", msg);
    abort();
}

/* What a read saw, flattened for comparison, and the input's length. */
struct fuzz_sse_log {
    struct util_buf buf;
    size_t input_len;
    size_t events;
};

/* Record one event (id, type, data, each with its length). */
static void fuzz_sse_cb(const struct sse_event *ev, void *arg)
{
    struct fuzz_sse_log *log = arg;
    size_t id_len = strlen(ev->id), type_len = strlen(ev->type);
    if (id_len >= 256 || type_len > log->input_len + 7 || ev->data_len > log->input_len)
        fuzz_sse_fail("an event field is over what the input could give");
    size_t lens[3] = {id_len, type_len, ev->data_len};
    util_buf_add(&log->buf, lens, sizeof lens);
    util_buf_add(&log->buf, ev->id, id_len);
    util_buf_add(&log->buf, ev->type, type_len);
    util_buf_add(&log->buf, ev->data, ev->data_len);
    log->events++;
}

/* Read DATA in pieces from STATE (0: whole) into LOG; the status. */
static enum sse_status fuzz_sse_read(const char *data, size_t len, size_t max_line, unsigned state,
                                     struct fuzz_sse_log *log)
{
    struct sse_reader r;
    enum sse_status st = SSE_OK;
    log->input_len = len;
    sse_reader_init(&r, max_line, fuzz_sse_cb, log);
    for (size_t at = 0; at < len && st == SSE_OK;) {
        size_t n = len - at;
        if (state) {
            state = state * 1103515245u + 12345u;
            n = 1 + (state >> 16) % 16;
            if (n > len - at)
                n = len - at;
        }
        st = sse_reader_feed(&r, data + at, n);
        at += n;
    }
    sse_reader_free(&r);
    return st;
}

/* The expected data of a framed event: the lines of DATA joined with \n. */
static void fuzz_sse_lines(const char *data, size_t len, struct util_buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            continue;
        util_buf_add(out, data[i] == '\r' ? "\n" : &data[i], 1);
    }
}

/* One event framed from DATA (id and type cut at the first byte a field
 * cannot hold) reads back as it went in. */
static void fuzz_sse_round_trip(const char *data, size_t len)
{
    char id[32], type[32];
    size_t n = 0;
    while (n < len && n < 8 && data[n] != '\n' && data[n] != '\r' && data[n] != '\0')
        n++;
    memcpy(id, data, n);
    id[n] = '\0';
    snprintf(type, sizeof type, "t%.*s", (int)n, data);
    struct util_buf framed = {0}, want = {0};
    sse_frame(&framed, id, type, data, len);
    struct fuzz_sse_log log = {0};
    if (fuzz_sse_read(framed.data, framed.len, framed.len + 1, 0, &log) != SSE_OK ||
        log.events != 1)
        fuzz_sse_fail("a framed event did not read back as one event");
    fuzz_sse_lines(data, len, &want);
    size_t lens[3];
    memcpy(lens, log.buf.data, sizeof lens);
    const char *p = log.buf.data + sizeof lens;
    if (lens[0] != n || memcmp(p, id, n) != 0)
        fuzz_sse_fail("the framed id read back differently");
    p += lens[0];
    if (lens[1] != strlen(type) || memcmp(p, type, lens[1]) != 0)
        fuzz_sse_fail("the framed type read back differently");
    p += lens[1];
    if (lens[2] != want.len || (want.len && memcmp(p, want.data, want.len) != 0))
        fuzz_sse_fail("the framed data read back differently");
    free(framed.data);
    free(want.data);
    free(log.buf.data);
}

/* A cursor taken is the number the text spells. */
static void fuzz_sse_cursor(const char *data, size_t len)
{
    char text[32], back[32];
    if (len >= sizeof text)
        len = sizeof text - 1;
    memcpy(text, data, len);
    text[len] = '\0';
    uint64_t c;
    if (sse_cursor_parse(text, &c) != 0)
        return;
    snprintf(back, sizeof back, "%" PRIu64, c);
    const char *digits = text;
    while (digits[0] == '0' && digits[1])
        digits++;
    if (strcmp(back, digits) != 0)
        fuzz_sse_fail("a cursor parsed to another number");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned state = data[0] | 1u;
    size_t max_line = 1 + (size_t)(data[1] & 63) * 4;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    struct fuzz_sse_log whole = {0}, pieces = {0};
    enum sse_status s1 = fuzz_sse_read(in, len, max_line, 0, &whole);
    enum sse_status s2 = fuzz_sse_read(in, len, max_line, state, &pieces);
    if (s1 != s2 || whole.events != pieces.events || whole.buf.len != pieces.buf.len ||
        (whole.buf.len && memcmp(whole.buf.data, pieces.buf.data, whole.buf.len) != 0))
        fuzz_sse_fail("the split changed what was read");
    free(whole.buf.data);
    free(pieces.buf.data);
    fuzz_sse_round_trip(in, len);
    fuzz_sse_cursor(in, len);
    return 0;
}
