/*
 * response: everything about a response file but writing it (SPEC §2.2). The
 * name is built from the completion time and sanitised task fields, so no
 * input can reach outside the responses folder; response_pick_name() adds the
 * -2, -3 ... suffix that keeps an existing response from being overwritten;
 * response_render() produces the DEIA layout byte for byte. The caller creates
 * the file (with O_EXCL, since the name may be taken between pick and create).
 * response_read_file() reads a response back (GET /api/task/<id> of a
 * finished task, recovery), so the module that writes the format parses it.
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

/* An agent's tokens and cost (SPEC §12), after the duration, when known:
 * additive lines that DEIA's readers and ours skip. */
static void response_render_usage(struct response_buf *b, const struct agent_usage *u)
{
    if (u && u->known)
        response_printf(b, "**Tokens:** in %llu, out %llu, cache read %llu, cache write %llu\n",
                        (unsigned long long)u->input, (unsigned long long)u->output,
                        (unsigned long long)u->cache_read, (unsigned long long)u->cache_write);
    if (u && u->cost_known)
        response_printf(b, "**Cost:** $%.4f\n", u->cost_usd);
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
    response_render_usage(b, r->usage);
    response_printf(b, "**Timestamp:** %s\n\n", utc);
}

/* The "- path" lines of "## Files Modified" (each one line, as header values
 * are), or "- None"; then the blank line. */
static void response_render_files(struct response_buf *b, const struct response *r)
{
    if (r->n_files == 0)
        response_printf(b, "- None\n");
    for (size_t i = 0; i < r->n_files; i++)
        response_header_line(b, "- ", r->files[i], "");
    response_printf(b, "\n");
}

/* The whole response file text; output is copied by length, NULs included. */
char *response_render(const struct response *r, size_t *len_out)
{
    struct response_buf b = {0};
    char local[40];
    response_render_header(&b, r);
    response_printf(&b, "## Output\n\n");
    response_put(&b, r->output ? r->output : "", r->output ? r->output_len : 0);
    response_printf(&b, "\n\n## Files Modified\n\n");
    response_render_files(&b, r);
    size_t elen = r->error ? strlen(r->error) : 0;
    while (elen > 0 && (r->error[elen - 1] == '\n' || r->error[elen - 1] == '\r'))
        elen--; /* exactly one blank line before the rule, as in SPEC §2.2 */
    /* A failed task always has its Error section (the reader finds it from
     * the end; without one, an output holding a forged one would be split
     * there: found by fuzz_response). */
    if (elen)
        response_printf(&b, "## Error\n\n%.*s\n\n", (int)elen, r->error);
    else if (!r->success)
        response_printf(&b, "## Error\n\nunknown error\n\n");
    util_iso_local(local, sizeof local, r->finished_wall_ns);
    response_printf(&b, "---\n\n**Response generated:** %s\n", local);
    if (len_out)
        *len_out = b.len;
    return b.data;
}

/* ----- reading a response file back ----- */

/* What opens the "## Files Modified" section (its "- " lines follow), and
 * what opens "## Error". */
#define RESPONSE_FILES_HEAD "\n\n## Files Modified\n\n"
#define RESPONSE_ERROR_HEAD "\n\n## Error\n\n"
/* What follows the last section: the rule, then the trailer line. */
#define RESPONSE_RULE "\n\n---\n\n"
#define RESPONSE_TRAILER "**Response generated:** "

/* True when the span S is exactly the string LIT. */
static bool response_span_is(struct response_span s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* The next line of [*AT, END) without its LF, moving *AT past it; false when
 * no whole line is left. */
static bool response_next_line(const char **at, const char *end, struct response_span *line)
{
    const char *nl = memchr(*at, '\n', (size_t)(end - *at));
    if (!nl)
        return false;
    *line = (struct response_span){*at, (size_t)(nl - *at)};
    *at = nl + 1;
    return true;
}

/* The title "# RESPONSE: <id> - Complete|Failed": the id into V. */
static int response_read_title(struct response_span line, struct response_view *v)
{
    static const char head[] = "# RESPONSE: ", ok[] = " - Complete", bad[] = " - Failed";
    size_t h = sizeof head - 1;
    if (line.len < h || memcmp(line.p, head, h) != 0)
        return -1;
    struct response_span rest = {line.p + h, line.len - h};
    size_t tail = 0;
    if (rest.len >= sizeof ok - 1 &&
        memcmp(rest.p + rest.len - (sizeof ok - 1), ok, sizeof ok - 1) == 0) {
        tail = sizeof ok - 1;
        v->success = true;
    } else if (rest.len >= sizeof bad - 1 &&
               memcmp(rest.p + rest.len - (sizeof bad - 1), bad, sizeof bad - 1) == 0) {
        tail = sizeof bad - 1;
        v->success = false;
    } else {
        return -1;
    }
    v->title_id = (struct response_span){rest.p, rest.len - tail};
    return 0;
}

/* The value of the header field "**NAME:** value" in LINE, or a NULL span. */
static struct response_span response_field(struct response_span line, const char *name)
{
    size_t n = strlen(name);
    if (line.len < n + 6 || memcmp(line.p, "**", 2) != 0 || memcmp(line.p + 2, name, n) != 0 ||
        memcmp(line.p + 2 + n, ":** ", 4) != 0)
        return (struct response_span){NULL, 0};
    return (struct response_span){line.p + n + 6, line.len - n - 6};
}

/* "12.5 seconds" to 12.5; -1 when it is not a duration. */
static double response_duration(struct response_span s)
{
    char buf[32], *end;
    if (s.len == 0 || s.len >= sizeof buf)
        return -1;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    double d = strtod(buf, &end);
    return end != buf && strcmp(end, " seconds") == 0 && d >= 0 ? d : -1;
}

/* "in N, out N, cache read N, cache write N" (response_render_usage) into
 * U; 0, or -1 when it is not that (or seen twice). */
static int response_tokens(struct response_span s, struct agent_usage *u)
{
    char buf[160];
    unsigned long long n[4];
    int used = 0;
    if (u->known || s.len >= sizeof buf)
        return -1;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    if (sscanf(buf, "in %llu, out %llu, cache read %llu, cache write %llu%n", &n[0], &n[1], &n[2],
               &n[3], &used) != 4 ||
        (size_t)used != s.len)
        return -1;
    *u = (struct agent_usage){.known = true,
                              .input = n[0],
                              .output = n[1],
                              .cache_read = n[2],
                              .cache_write = n[3],
                              .cost_known = u->cost_known,
                              .cost_usd = u->cost_usd};
    return 0;
}

/* "$0.0123" into U's cost; 0, or -1 when it is not that (or seen twice). */
static int response_cost(struct response_span s, struct agent_usage *u)
{
    char buf[40], *end;
    if (u->cost_known || s.len < 2 || s.len >= sizeof buf || s.p[0] != '$')
        return -1;
    memcpy(buf, s.p + 1, s.len - 1);
    buf[s.len - 1] = '\0';
    double d = strtod(buf, &end);
    if (end == buf || *end || !(d >= 0))
        return -1;
    u->cost_known = true;
    u->cost_usd = d;
    return 0;
}

/* Take the value of LINE if it is one of the header fields: 0 taken, 1 not a
 * known field (left alone: a later writer may add some), -1 a field seen
 * twice or with a bad value (a forged header). */
static int response_read_field(struct response_span line, struct response_view *v)
{
    struct response_span *spans[] = {&v->bot_id, &v->to, &v->task_id, &v->timestamp};
    static const char *const names[] = {"From", "To", "Task", "Timestamp"};
    for (size_t i = 0; i < 4; i++) {
        struct response_span f = response_field(line, names[i]);
        if (!f.p)
            continue;
        if (spans[i]->p)
            return -1;
        *spans[i] = f;
        return 0;
    }
    static const char *const sources[] = {"file", "http", "websocket"};
    static const enum task_source ids[] = {TASK_SOURCE_FILE, TASK_SOURCE_HTTP,
                                           TASK_SOURCE_WEBSOCKET};
    struct response_span f = response_field(line, "Source");
    for (size_t i = 0; f.p && i < 3; i++)
        if (response_span_is(f, sources[i])) {
            v->source = ids[i];
            return 0;
        }
    if (f.p)
        return -1;
    f = response_field(line, "Status");
    if (f.p)
        return response_span_is(f, v->success ? "\u2713 SUCCESS" : "\u2717 FAILED") ? 0 : -1;
    f = response_field(line, "Duration");
    if (f.p)
        return (v->duration_seconds = response_duration(f)) < 0 ? -1 : 0;
    f = response_field(line, "Tokens");
    if (f.p)
        return response_tokens(f, &v->usage);
    f = response_field(line, "Cost");
    if (f.p)
        return response_cost(f, &v->usage);
    return 1;
}

int response_read_header(const char *text, size_t len, struct response_view *v)
{
    memset(v, 0, sizeof *v);
    const char *at = text, *end = text + len;
    struct response_span line;
    if (!response_next_line(&at, end, &line))
        return -2;
    if (response_read_title(line, v) < 0)
        return -1;
    if (!response_next_line(&at, end, &line))
        return -2;
    if (line.len != 0)
        return -1;
    /* Field lines up to the blank line; every value is one line (the
     * writer replaces line breaks), so a field twice is a forgery. */
    for (;;) {
        if (!response_next_line(&at, end, &line))
            return -2;
        if (line.len == 0)
            break;
        if (response_read_field(line, v) < 0)
            return -1;
    }
    if (!response_next_line(&at, end, &line))
        return -2;
    if (!response_span_is(line, "## Output"))
        return -1;
    if (!response_next_line(&at, end, &line))
        return -2;
    if (line.len != 0 || !v->task_id.p || !v->bot_id.p || !v->to.p)
        return -1;
    v->body = (size_t)(at - text);
    return 0;
}

/* The last occurrence of NEEDLE in [P, P + LEN), or NULL. */
static const char *response_find_last(const char *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = len; i >= n; i--) {
        const char *at = memrchr(p, needle[0], i - n + 1);
        if (!at)
            return NULL;
        if (memcmp(at, needle, n) == 0)
            return at;
        i = (size_t)(at - p) + n;
    }
    return NULL;
}

/* True when [P, P + LEN) is one or more "- X" lines joined by LF. */
static bool response_is_files_list(const char *p, size_t len)
{
    const char *end = p + len;
    if (len == 0)
        return false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop - p < 3 || p[0] != '-' || p[1] != ' ')
            return false;
        p = nl ? nl + 1 : end;
        if (nl && p == end)
            return false; /* no empty last line */
    }
    return true;
}

/* The last "## Files Modified" heading in [START, END) whose list runs up
 * to END, or NULL. */
static const char *response_files_before(const char *start, const char *end)
{
    size_t hl = strlen(RESPONSE_FILES_HEAD), len = (size_t)(end - start);
    while (len >= hl) {
        const char *at = response_find_last(start, len, RESPONSE_FILES_HEAD);
        if (!at)
            return NULL;
        if (response_is_files_list(at + hl, (size_t)(end - at - hl)))
            return at;
        len = (size_t)(at - start) + hl - 1; /* the ones that start before AT */
    }
    return NULL;
}

/* A failed task's sections: the last "## Error" heading right after a files
 * list; its error into V. The files heading, or NULL. */
static const char *response_files_and_error(struct response_span s, struct response_view *v)
{
    size_t eh = strlen(RESPONSE_ERROR_HEAD), len = s.len;
    while (len >= eh) {
        const char *err = response_find_last(s.p, len, RESPONSE_ERROR_HEAD);
        if (!err)
            return NULL;
        const char *files = response_files_before(s.p, err);
        if (files) {
            const char *text = err + eh;
            v->error = (struct response_span){text, (size_t)(s.p + s.len - text)};
            v->files = (struct response_span){files + strlen(RESPONSE_FILES_HEAD),
                                              (size_t)(err - files) - strlen(RESPONSE_FILES_HEAD)};
            return files;
        }
        len = (size_t)(err - s.p) + eh - 1;
    }
    return NULL;
}

/* Where the sections end: the offset of the rule before the trailer line,
 * or 0 when TEXT does not end with the rule and the trailer (a cut file). */
static size_t response_sections_end(const char *text, size_t len, size_t body)
{
    if (len == 0 || text[len - 1] != '\n')
        return 0;
    const char *nl = len > 1 ? memrchr(text, '\n', len - 1) : NULL;
    size_t last = nl ? (size_t)(nl - text) + 1 : 0;
    size_t rule = strlen(RESPONSE_RULE);
    if (len - last < strlen(RESPONSE_TRAILER) ||
        memcmp(text + last, RESPONSE_TRAILER, strlen(RESPONSE_TRAILER)) != 0 ||
        last < body + rule || memcmp(text + last - rule, RESPONSE_RULE, rule) != 0)
        return 0;
    return last - rule;
}

int response_read_file(const char *text, size_t len, struct response_view *v)
{
    if (response_read_header(text, len, v) != 0)
        return -1;
    size_t end = response_sections_end(text, len, v->body);
    if (end == 0)
        return -1;
    /* Between the output and the rule: "## Files Modified", then for a
     * failed task "## Error". Both are found from the end: the output comes
     * first and may contain anything, a forged "## Error" included. (An
     * error text holding a whole forged "Files Modified" heading and error
     * heading is the one split this cannot tell apart: the format has no
     * lengths.) */
    struct response_span sections = {text + v->body, end - v->body};
    const char *cut = v->success ? NULL : response_files_and_error(sections, v);
    if (!cut && (cut = response_files_before(sections.p, sections.p + sections.len)))
        v->files = (struct response_span){cut + strlen(RESPONSE_FILES_HEAD),
                                          (size_t)(sections.p + sections.len - cut) -
                                              strlen(RESPONSE_FILES_HEAD)};
    if (!cut)
        return -1;
    v->output = (struct response_span){sections.p, (size_t)(cut - sections.p)};
    v->cancelled = response_span_is(v->error, TASK_CANCEL_ERROR);
    return 0;
}

int response_name_outcome(const char *name, unsigned long *n)
{
    static const char *const kinds[] = {"-failed", "-complete"};
    size_t len = strlen(name);
    if (len < 3 || strcmp(name + len - 3, ".md") != 0)
        return -1;
    len -= 3;
    /* An optional "-N" (N >= 2, no leading zero) before ".md". */
    size_t digits = 0;
    while (digits < len && digits < 10 && name[len - 1 - digits] >= '0' &&
           name[len - 1 - digits] <= '9')
        digits++;
    unsigned long num = 1;
    if (digits > 0 && digits < len && name[len - 1 - digits] == '-' && name[len - digits] != '0') {
        num = strtoul(name + len - digits, NULL, 10);
        if (num >= 2)
            len -= digits + 1;
        else
            num = 1;
    }
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(kinds[k]);
        if (len > kl && memcmp(name + len - kl, kinds[k], kl) == 0 &&
            memmem(name, len - kl, "-RESPONSE-", 10)) {
            if (n)
                *n = num;
            return k;
        }
    }
    return -1;
}

int response_parse(const char *text, size_t len, struct response_header *h)
{
    memset(h, 0, sizeof *h);
    struct response_view v;
    /* A whole file only (a cut one is an answer never made durable), read
     * by the one reader of the format, which no output or error can fool. */
    if (!text || response_read_file(text, len, &v) != 0)
        return -1;
    h->to = xstrndup(v.to.p, v.to.len);
    h->task_id = xstrndup(v.task_id.p, v.task_id.len);
    h->success = v.success;
    return 0;
}

void response_header_clear(struct response_header *h)
{
    free(h->to);
    free(h->task_id);
    memset(h, 0, sizeof *h);
}
