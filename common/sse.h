/*
 * sse: the text of Server-Sent Events (the WHATWG event-stream format), both
 * ways: framing one event or comment for a stream, and an incremental reader
 * of a stream (the CLI's `hive events`) that takes bytes split anywhere.
 * Pure: no I/O, no logging.
 */
#ifndef HIVE_SSE_H
#define HIVE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* Append one event to B: "id: ID\nevent: TYPE\ndata: …\n\n". ID and TYPE may
 * be NULL (left out); DATA is split into one data: line per line it holds. */
void sse_frame(struct util_buf *b, const char *id, const char *type, const char *data, size_t len);
/* Append a comment line (": TEXT\n\n"), the keepalive. */
void sse_comment(struct util_buf *b, const char *text);
/* A cursor as the streams write it: a decimal number without sign or
 * leading junk. 0, or -1 when TEXT is not one. */
int sse_cursor_parse(const char *text, uint64_t *cursor);

/* One event read from a stream. Valid during the callback only. */
struct sse_event {
    const char *id;   /* the last id: seen so far in the stream ("" none) */
    const char *type; /* "message" when the event named none */
    const char *data; /* the data: lines joined with '\n' */
    size_t data_len;
};

typedef void (*sse_event_cb)(const struct sse_event *ev, void *arg);

enum sse_status { SSE_OK = 0, SSE_TOO_LONG = -1 };

struct sse_reader {
    struct util_buf line; /* the line being read */
    struct util_buf data; /* the event being read */
    char *type;
    char id[256];
    bool have_data, after_cr;
    size_t max_line;
    sse_event_cb cb;
    void *arg;
};

/* Ready R to read a stream whose lines are at most MAX_LINE bytes. */
void sse_reader_init(struct sse_reader *r, size_t max_line, sse_event_cb cb, void *arg);
/* Feed LEN more bytes; each complete event goes to the callback.
 * SSE_TOO_LONG when a line is over the bound (the reader is then spent). */
enum sse_status sse_reader_feed(struct sse_reader *r, const char *data, size_t len);
void sse_reader_free(struct sse_reader *r);

#endif
