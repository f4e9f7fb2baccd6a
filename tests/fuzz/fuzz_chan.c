/*
 * fuzz_chan: the channel's message reader (common/chan.c) and the event
 * stream's reader (common/sse.c) fed arbitrary bytes in arbitrary pieces.
 * The first byte seeds the piece sizes. Checked for every input: the channel
 * reader gives the same messages whatever the split (or fails at the same
 * point), every payload it hands over is within the bound, and re-framing
 * those messages reads back identical.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chan.h"
#include "common/sse.h"

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_chan_fail(const char *msg)
{
    fprintf(stderr, "fuzz_chan: %s\n", msg);
    abort();
}

/* Record each message re-framed, so that two reads can be compared. */
static void fuzz_chan_cb(enum chan_type type, const char *payload, size_t len, void *arg)
{
    if (len > CHAN_MAX_PAYLOAD || payload[len] != '\0')
        fuzz_chan_fail("payload over the bound or not terminated");
    chan_frame(arg, type, payload, len);
}

/* The SSE reader must simply survive. */
static void fuzz_chan_sse_cb(const struct sse_event *ev, void *arg)
{
    (void)arg;
    if (strlen(ev->type) == 0 && ev->data_len > (1u << 20))
        fuzz_chan_fail("impossible event");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned state = data[0];
    data++, size--;
    struct util_buf whole = {0}, pieces = {0};
    struct chan_reader r;
    chan_reader_init(&r, fuzz_chan_cb, &whole);
    enum chan_error e1 = chan_reader_feed(&r, data, size);
    chan_reader_free(&r);
    chan_reader_init(&r, fuzz_chan_cb, &pieces);
    enum chan_error e2 = CHAN_OK;
    for (size_t at = 0; at < size && e2 == CHAN_OK;) {
        state = state * 1103515245u + 12345u;
        size_t n = 1 + (state >> 16) % 16;
        if (n > size - at)
            n = size - at;
        e2 = chan_reader_feed(&r, data + at, n);
        at += n;
    }
    chan_reader_free(&r);
    if (e1 != e2 || whole.len != pieces.len ||
        (whole.len && memcmp(whole.data, pieces.data, whole.len)))
        fuzz_chan_fail("the split changed what was read");
    /* What was read, framed again, reads back the same. */
    struct util_buf again = {0};
    chan_reader_init(&r, fuzz_chan_cb, &again);
    if (whole.len && chan_reader_feed(&r, whole.data, whole.len) != CHAN_OK)
        fuzz_chan_fail("re-framed messages refused");
    if (again.len != whole.len || (whole.len && memcmp(again.data, whole.data, whole.len)))
        fuzz_chan_fail("re-framed messages differ");
    chan_reader_free(&r);
    struct sse_reader s;
    sse_reader_init(&s, 4096, fuzz_chan_sse_cb, NULL);
    sse_reader_feed(&s, (const char *)data, size);
    sse_reader_free(&s);
    free(whole.data);
    free(pieces.data);
    free(again.data);
    return 0;
}
