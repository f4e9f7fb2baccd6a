/*
 * sse: owns the event-stream format (framing and reading). The framing is
 * the one place that writes id:/event:/data: lines; the reader follows the
 * WHATWG parsing rules for the fields hive uses (id, event, data, comments)
 * and ignores the others, as a browser does.
 */
#include "common/sse.h"

#include <stdlib.h>
#include <string.h>

/* Append the C string S to B. */
static void sse_add(struct util_buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

void sse_frame(struct util_buf *b, const char *id, const char *type, const char *data, size_t len)
{
    if (id) {
        sse_add(b, "id: ");
        sse_add(b, id);
        sse_add(b, "\n");
    }
    if (type) {
        sse_add(b, "event: ");
        sse_add(b, type);
        sse_add(b, "\n");
    }
    /* Every line of DATA (split at \n, \r\n or \r) is a data: line. */
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        sse_add(b, "data: ");
        util_buf_add(b, data + i, j - i);
        sse_add(b, "\n");
        if (j >= len)
            break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    sse_add(b, "\n");
}

void sse_comment(struct util_buf *b, const char *text)
{
    sse_add(b, ": ");
    sse_add(b, text);
    sse_add(b, "\n\n");
}

int sse_cursor_parse(const char *text, uint64_t *cursor)
{
    if (!text || !*text || strlen(text) > 20)
        return -1;
    uint64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *cursor = v;
    return 0;
}

void sse_reader_init(struct sse_reader *r, size_t max_line, sse_event_cb cb, void *arg)
{
    memset(r, 0, sizeof *r);
    r->max_line = max_line;
    r->cb = cb;
    r->arg = arg;
}

void sse_reader_free(struct sse_reader *r)
{
    free(r->line.data);
    free(r->data.data);
    free(r->type);
    memset(r, 0, sizeof *r);
}

/* A blank line: hand over the event read, if it has data, and start anew. */
static void sse_reader_dispatch(struct sse_reader *r)
{
    if (r->have_data) {
        struct sse_event ev = {.id = r->id,
                               .type = r->type ? r->type : "message",
                               .data = r->data.data ? r->data.data : "",
                               .data_len = r->data.len};
        r->cb(&ev, r->arg);
    }
    r->data.len = 0;
    r->have_data = false;
    free(r->type);
    r->type = NULL;
}

/* One complete line (without its end). */
static void sse_reader_line(struct sse_reader *r, const char *line, size_t len)
{
    if (len == 0)
        return sse_reader_dispatch(r);
    if (line[0] == ':')
        return; /* a comment */
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen && *value == ' ')
        value++, vlen--;
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        if (r->have_data)
            util_buf_add(&r->data, "\n", 1);
        util_buf_add(&r->data, value, vlen);
        r->have_data = true;
    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        free(r->type);
        r->type = strndup(value, vlen);
    } else if (nlen == 2 && memcmp(line, "id", 2) == 0 && vlen < sizeof r->id &&
               !memchr(value, '\0', vlen)) {
        memcpy(r->id, value, vlen);
        r->id[vlen] = '\0';
    }
}

enum sse_status sse_reader_feed(struct sse_reader *r, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (r->after_cr && c == '\n') { /* the \n of a \r\n */
            r->after_cr = false;
            continue;
        }
        r->after_cr = false;
        if (c == '\n' || c == '\r') {
            r->after_cr = c == '\r';
            sse_reader_line(r, r->line.data ? r->line.data : "", r->line.len);
            r->line.len = 0;
            continue;
        }
        if (r->line.len >= r->max_line)
            return SSE_TOO_LONG;
        util_buf_add(&r->line, &c, 1);
    }
    return SSE_OK;
}
