/*
 * response: everything about a response file but writing it (SPEC §2.2). The
 * name is built from the completion time and sanitised task fields, so no
 * input can reach outside the responses folder; response_pick_name() adds the
 * -2, -3 ... suffix that keeps an existing response from being overwritten;
 * response_render() produces the DEIA layout byte for byte. The caller creates
 * the file (with O_EXCL, since the name may be taken between pick and create).
 */
#include "worker/response.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* Longest sanitised component: keeps names well below NAME_MAX. */
#define RESPONSE_PART_MAX 64

/* A growing text buffer. */
struct response_buf {
    char *data;
    size_t len, cap;
};

/* Make room for LEN more bytes and a NUL in B. */
static void response_reserve(struct response_buf *b, size_t len)
{
    if (b->len + len + 1 <= b->cap)
        return;
    while (b->len + len + 1 > b->cap)
        b->cap = b->cap ? b->cap * 2 : 1024;
    b->data = xrealloc(b->data, b->cap);
}

/* Append LEN bytes to B. */
static void response_put(struct response_buf *b, const char *s, size_t len)
{
    response_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Append formatted text to B. */
static void response_printf(struct response_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void response_printf(struct response_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    response_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* S, or "" for NULL. */
static const char *response_str(const char *s)
{
    return s ? s : "";
}

/* Sanitise IN into OUT (RESPONSE_PART_MAX + 1 bytes). */
static void response_part(const char *in, char *out)
{
    util_sanitize(in, out, RESPONSE_PART_MAX + 1);
}

/* "<local YYYY-MM-DD-HHMM>-<bot>-<to>-RESPONSE-<id>-complete|failed". */
char *response_base_name(const struct response *r)
{
    char bot[RESPONSE_PART_MAX + 1], to[RESPONSE_PART_MAX + 1], id[RESPONSE_PART_MAX + 1];
    char when[32];
    time_t t = (time_t)(r->finished_wall_ns / 1000000000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d-%H%M", &tm);
    response_part(r->bot_id, bot);
    response_part(r->to, to);
    response_part(r->task_id, id);
    return xasprintf("%s-%s-%s-RESPONSE-%s-%s", when, bot, to, id,
                     r->success ? "complete" : "failed");
}

/* True when NAME exists in the folder DIRFD; a dangling symlink exists. */
static bool response_name_taken(int dirfd, const char *name)
{
    struct stat st;
    /* On errors other than ENOENT the name is offered anyway: the caller's
     * O_EXCL create is the final judge. */
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The N-th candidate name of BASE: BASE.md, then BASE-2.md, BASE-3.md ... */
char *response_name(const char *base, unsigned long n)
{
    return n <= 1 ? xasprintf("%s.md", base) : xasprintf("%s-%lu.md", base, n);
}

/* The first free name of BASE.md, BASE-2.md ... in DIR (a name, not a path). */
char *response_pick_name(const char *dir, const char *base)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *name = response_name(base, 1);
    if (dirfd < 0)
        return name;
    for (unsigned long n = 2; response_name_taken(dirfd, name); n++) {
        free(name);
        name = response_name(base, n);
    }
    close(dirfd);
    return name;
}

/* Length of the line break or control character at S (N bytes left), 0
 * when there is none: C0 controls, DEL, C1 controls (U+0080..U+009F) and the
 * Unicode line and paragraph separators, all of which some reader takes as
 * the end of a line or hides. */
static size_t response_control_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x20 || s[0] == 0x7f)
        return 1;
    if (n >= 2 && s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)
        return 2;
    if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9))
        return 3;
    return 0;
}

char *response_header_value(const char *in)
{
    const unsigned char *s = (const unsigned char *)response_str(in);
    size_t n = strlen((const char *)s);
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n;) {
        size_t c = response_control_len(s + i, n - i);
        if (c) {
            *o++ = ' ';
            i += c;
        } else {
            *o++ = (char)s[i++];
        }
    }
    *o = '\0';
    return out;
}

/* Append "PREFIX<value>\n" to B, VALUE made one line (see
 * response_header_value). */
static void response_header_line(struct response_buf *b, const char *prefix, const char *value,
                                 const char *suffix)
{
    char *v = response_header_value(value);
    response_printf(b, "%s%s%s\n", prefix, v, suffix);
    free(v);
}

/* The header lines, from the title to the timestamp. Every value that comes
 * from input is one line, so no input can forge a header line that a reader
 * (recovery among them) would take for the worker's. */
static void response_render_header(struct response_buf *b, const struct response *r)
{
    char utc[40];
    util_iso_utc(utc, sizeof utc, r->finished_wall_ns);
    response_header_line(b, "# RESPONSE: ", r->task_id,
                         r->success ? " - Complete\n" : " - Failed\n");
    response_header_line(b, "**From:** ", r->bot_id, "");
    response_header_line(b, "**To:** ", r->to, "");
    response_header_line(b, "**Task:** ", r->task_id, "");
    response_printf(b, "**Source:** %s\n", task_source_name(r->source));
    response_printf(b, "**Status:** %s\n", r->success ? "\u2713 SUCCESS" : "\u2717 FAILED");
    response_printf(b, "**Duration:** %.1f seconds\n", r->duration_seconds);
    response_printf(b, "**Timestamp:** %s\n\n", utc);
}

/* The whole response file text; output is copied by length, NULs included. */
char *response_render(const struct response *r, size_t *len_out)
{
    struct response_buf b = {0};
    char local[40];
    response_render_header(&b, r);
    response_printf(&b, "## Output\n\n");
    response_put(&b, r->output ? r->output : "", r->output ? r->output_len : 0);
    response_printf(&b, "\n\n## Files Modified\n\n- None\n\n");
    size_t elen = r->error ? strlen(r->error) : 0;
    while (elen > 0 && (r->error[elen - 1] == '\n' || r->error[elen - 1] == '\r'))
        elen--; /* exactly one blank line before the rule, as in SPEC §2.2 */
    if (elen)
        response_printf(&b, "## Error\n\n%.*s\n\n", (int)elen, r->error);
    util_iso_local(local, sizeof local, r->finished_wall_ns);
    response_printf(&b, "---\n\n**Response generated:** %s\n", local);
    if (len_out)
        *len_out = b.len;
    return b.data;
}

/* Copy the value of line LINE (0-based) of TEXT if it starts with PREFIX;
 * NULL otherwise. */
static char *response_line_value(const char *text, size_t len, int line, const char *prefix)
{
    const char *p = text, *end = text + len;
    for (int i = 0; i < line; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t plen = strlen(prefix);
    if (!nl || (size_t)(nl - p) < plen || memcmp(p, prefix, plen) != 0)
        return NULL;
    return xstrndup(p + plen, (size_t)(nl - p) - plen);
}

/* True when TEXT (LEN bytes) ends with the trailer line: the file is whole. */
static bool response_complete(const char *text, size_t len)
{
    static const char trailer[] = "**Response generated:** ";
    if (len < 2 || text[len - 1] != '\n')
        return false;
    size_t i = len - 1;
    while (i > 0 && text[i - 1] != '\n')
        i--;
    return len - i > sizeof trailer - 1 && memcmp(text + i, trailer, sizeof trailer - 1) == 0;
}

int response_parse(const char *text, size_t len, struct response_header *h)
{
    memset(h, 0, sizeof *h);
    if (!text || !response_complete(text, len))
        return -1;
    /* The header is read by position: each value is one line (see
     * response_render_header), so only the worker's own lines are there. */
    h->to = response_line_value(text, len, 3, "**To:** ");
    h->task_id = response_line_value(text, len, 4, "**Task:** ");
    char *status = response_line_value(text, len, 6, "**Status:** ");
    if (!h->to || !h->task_id || !status) {
        free(status);
        response_header_clear(h);
        return -1;
    }
    h->success = strcmp(status, "\u2713 SUCCESS") == 0;
    free(status);
    return 0;
}

void response_header_clear(struct response_header *h)
{
    free(h->to);
    free(h->task_id);
    memset(h, 0, sizeof *h);
}
