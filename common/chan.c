/*
 * chan: owns the channel's wire format, writer and reader alike. The reader
 * checks a header before it buffers the payload, so a bad peer can make it
 * hold at most one message of CHAN_MAX_PAYLOAD.
 */
#include "common/chan.h"

#include <stdlib.h>
#include <string.h>

void chan_frame(struct util_buf *b, enum chan_type type, const char *payload, size_t len)
{
    unsigned char h[CHAN_HEADER] = {(unsigned char)(len >> 24),
                                    (unsigned char)(len >> 16),
                                    (unsigned char)(len >> 8),
                                    (unsigned char)len,
                                    (unsigned char)((unsigned)type >> 8),
                                    (unsigned char)type,
                                    0,
                                    0};
    util_buf_add(b, h, sizeof h);
    util_buf_add(b, payload, len);
}

void chan_reader_init(struct chan_reader *r, chan_msg_cb cb, void *arg)
{
    memset(r, 0, sizeof *r);
    r->cb = cb;
    r->arg = arg;
}

void chan_reader_free(struct chan_reader *r)
{
    free(r->buf.data);
    memset(r, 0, sizeof *r);
}

/* Check the header at H: the payload's length, or an error. */
static long chan_header(const unsigned char *h, enum chan_type *type)
{
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    unsigned t = (unsigned)h[4] << 8 | h[5];
    if (h[6] || h[7])
        return CHAN_BAD_HEADER;
    if (t == 0 || t > CHAN_TYPE_MAX)
        return CHAN_BAD_TYPE;
    if (len > CHAN_MAX_PAYLOAD)
        return CHAN_TOO_BIG;
    *type = (enum chan_type)t;
    return (long)len;
}

enum chan_error chan_reader_feed(struct chan_reader *r, const void *data, size_t len)
{
    util_buf_add(&r->buf, data, len);
    size_t at = 0;
    enum chan_error err = CHAN_OK;
    while (r->buf.len - at >= CHAN_HEADER) {
        enum chan_type type;
        long plen = chan_header((const unsigned char *)r->buf.data + at, &type);
        if (plen < 0) {
            err = (enum chan_error)plen;
            break;
        }
        if (r->buf.len - at - CHAN_HEADER < (size_t)plen)
            break;
        char *payload = r->buf.data + at + CHAN_HEADER;
        char saved = payload[plen];
        payload[plen] = '\0';
        r->cb(type, payload, (size_t)plen, r->arg);
        payload[plen] = saved;
        at += CHAN_HEADER + (size_t)plen;
    }
    memmove(r->buf.data, r->buf.data + at, r->buf.len - at);
    r->buf.len -= at;
    if (r->buf.data)
        r->buf.data[r->buf.len] = '\0';
    return err;
}
