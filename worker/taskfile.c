/*
 * taskfile: turns the bytes of one task file (SPEC §2.1) into a struct
 * taskfile. Two forms exist: YAML front matter between `---` lines (parsed
 * with libyaml's event API, the body after it is the content) and plain
 * markdown whose `**From:**`, `**To:**`, `**Priority:**` lines give the fields
 * (the whole file is the content). The bytes are checked first (no NUL, valid
 * UTF-8), a BOM is dropped and CRLF line ends become LF, so the content handed
 * to adapters always uses LF. Pure: it never logs, exits or touches the disk.
 */
#include "worker/taskfile.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/util.h"
#include "common/utf8.h"
#include "worker/task.h"

/* The lines of a buffer are walked with this cursor. */
struct taskfile_line {
    const char *start;
    size_t len;  /* without the '\n' */
    size_t next; /* offset of the following line */
};

/* Fill ERR with a formatted reason and return -1. */
static int taskfile_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int taskfile_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copy LEN bytes with every CRLF turned into LF; a lone CR is kept. */
static char *taskfile_normalise(const char *data, size_t len, size_t *len_out)
{
    char *out = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            continue;
        out[n++] = data[i];
    }
    out[n] = '\0';
    *len_out = n;
    return out;
}

/* Read the line at offset AT of BUF (LEN bytes); false at the end. */
static bool taskfile_line_at(const char *buf, size_t len, size_t at, struct taskfile_line *line)
{
    if (at >= len)
        return false;
    const char *nl = memchr(buf + at, '\n', len - at);
    line->start = buf + at;
    line->len = nl ? (size_t)(nl - (buf + at)) : len - at;
    line->next = nl ? at + line->len + 1 : len;
    return true;
}

/* True when LINE is MARK followed only by spaces, tabs or CRs. */
static bool taskfile_line_is(const struct taskfile_line *line, const char *mark)
{
    size_t m = strlen(mark);
    if (line->len < m || memcmp(line->start, mark, m) != 0)
        return false;
    for (size_t i = m; i < line->len; i++)
        if (line->start[i] != ' ' && line->start[i] != '\t' && line->start[i] != '\r')
            return false;
    return true;
}

/* True when LINE holds nothing but blanks. */
static bool taskfile_line_blank(const struct taskfile_line *line)
{
    return taskfile_line_is(line, "");
}

/* True when S (LEN bytes) is only whitespace. */
static bool taskfile_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

/* Copy S (LEN bytes) without its leading and trailing whitespace. */
static char *taskfile_trimmed(const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)s[0])) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return xstrndup(s, len);
}

/* Replace *FIELD with VALUE (taken), or drop VALUE when it is empty. */
static void taskfile_set(char **field, char *value)
{
    if (value[0] == '\0') {
        free(value);
        return;
    }
    free(*field);
    *field = value;
}

/* The struct field a front matter key (exact, LEN bytes) names, or NULL. */
static char **taskfile_yaml_field(struct taskfile *tf, const char *key, size_t len)
{
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"task_id", offsetof(struct taskfile, task_id)},
        {"to", offsetof(struct taskfile, to)},
        {"from", offsetof(struct taskfile, from)},
        {"priority", offsetof(struct taskfile, priority)},
        {"created_at", offsetof(struct taskfile, created_at)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strlen(fields[i].name) == len && memcmp(fields[i].name, key, len) == 0)
            return (char **)((char *)tf + fields[i].offset);
    return NULL;
}

/* The struct field a markdown `**Name:**` line names (any case), or NULL. */
static char **taskfile_markdown_slot(struct taskfile *tf, const char *name, size_t len)
{
    if (len == 4 && strncasecmp(name, "from", len) == 0)
        return &tf->from;
    if (len == 2 && strncasecmp(name, "to", len) == 0)
        return &tf->to;
    if (len == 8 && strncasecmp(name, "priority", len) == 0)
        return &tf->priority;
    return NULL;
}

/* Format libyaml's reason, with a line number of the whole file (the front
 * matter starts on line 2); the reader (bad characters) gives no line. */
static int taskfile_yaml_fail(const yaml_parser_t *parser, char *err, size_t errlen)
{
    const char *problem = parser->problem ? parser->problem : "invalid YAML";
    if (parser->error == YAML_READER_ERROR)
        return taskfile_fail(err, errlen, "front matter: %s", problem);
    return taskfile_fail(err, errlen, "front matter: %s at line %zu", problem,
                         parser->problem_mark.line + 2);
}

/* Pull the next event; -1 with ERR filled when libyaml refuses the input. */
static int taskfile_yaml_next(yaml_parser_t *parser, yaml_event_t *ev, char *err, size_t errlen)
{
    if (!yaml_parser_parse(parser, ev))
        return taskfile_yaml_fail(parser, err, errlen);
    return 0;
}

/* Skip the rest of a sequence or mapping whose start event was just read. */
static int taskfile_yaml_skip(yaml_parser_t *parser, char *err, size_t errlen)
{
    int depth = 1;
    while (depth > 0) {
        yaml_event_t ev;
        if (taskfile_yaml_next(parser, &ev, err, errlen) < 0)
            return -1;
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        yaml_event_delete(&ev);
    }
    return 0;
}

/* True for a plain scalar YAML reads as null ("", "~", "null"). */
static bool taskfile_yaml_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Read the value of KEY (its first event is EV) into TF: a scalar of a known
 * key is kept, unknown keys are skipped whatever they hold. */
static int taskfile_yaml_value(yaml_parser_t *parser, yaml_event_t *ev, const char *key,
                               size_t key_len, struct taskfile *tf, char *err, size_t errlen)
{
    char **field = taskfile_yaml_field(tf, key, key_len);
    bool nested = ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT;
    if (field && ev->type != YAML_SCALAR_EVENT)
        return taskfile_fail(err, errlen, "front matter: '%s' must be a scalar", key);
    if (nested)
        return taskfile_yaml_skip(parser, err, errlen);
    if (!field || taskfile_yaml_null(ev))
        return 0;
    const char *value = (const char *)ev->data.scalar.value;
    if (memchr(value, '\0', ev->data.scalar.length))
        return taskfile_fail(err, errlen, "front matter: '%s' holds a NUL character", key);
    taskfile_set(field, xstrndup(value, ev->data.scalar.length));
    return 0;
}

/* Read one key/value pair (KEV is the key's event) into TF. */
static int taskfile_yaml_pair(yaml_parser_t *parser, yaml_event_t *kev, struct taskfile *tf,
                              char *err, size_t errlen)
{
    yaml_event_t vev;
    if (kev->type != YAML_SCALAR_EVENT)
        return taskfile_fail(err, errlen, "front matter: keys must be scalars");
    if (taskfile_yaml_next(parser, &vev, err, errlen) < 0)
        return -1;
    int r = taskfile_yaml_value(parser, &vev, (const char *)kev->data.scalar.value,
                                kev->data.scalar.length, tf, err, errlen);
    yaml_event_delete(&vev);
    return r;
}

/* Read the key/value pairs of the mapping whose start was just read. */
static int taskfile_yaml_pairs(yaml_parser_t *parser, struct taskfile *tf, char *err, size_t errlen)
{
    for (;;) {
        yaml_event_t kev;
        if (taskfile_yaml_next(parser, &kev, err, errlen) < 0)
            return -1;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        int r = taskfile_yaml_pair(parser, &kev, tf, err, errlen);
        yaml_event_delete(&kev);
        if (r < 0)
            return -1;
    }
}

/* Check that the stream holds nothing after the mapping's document. */
static int taskfile_yaml_end(yaml_parser_t *parser, char *err, size_t errlen)
{
    yaml_event_t ev;
    for (;;) {
        if (taskfile_yaml_next(parser, &ev, err, errlen) < 0)
            return -1;
        yaml_event_type_t type = ev.type;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            return 0;
        if (type != YAML_DOCUMENT_END_EVENT)
            return taskfile_fail(err, errlen, "front matter: more than one YAML document");
    }
}

/* Walk the events of a front matter stream: empty, a null document, or one
 * document holding one mapping. */
static int taskfile_yaml_stream(yaml_parser_t *parser, struct taskfile *tf, char *err,
                                size_t errlen)
{
    for (;;) {
        yaml_event_t ev;
        if (taskfile_yaml_next(parser, &ev, err, errlen) < 0)
            return -1;
        yaml_event_type_t type = ev.type;
        bool null_doc = type == YAML_SCALAR_EVENT && taskfile_yaml_null(&ev);
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_START_EVENT)
            continue;
        if (type == YAML_STREAM_END_EVENT)
            return 0;
        if (type == YAML_MAPPING_START_EVENT && taskfile_yaml_pairs(parser, tf, err, errlen) < 0)
            return -1;
        if (type == YAML_MAPPING_START_EVENT || null_doc)
            return taskfile_yaml_end(parser, err, errlen);
        return taskfile_fail(err, errlen, "front matter is not a YAML mapping");
    }
}

/* Parse LEN bytes of YAML front matter into TF. */
static int taskfile_yaml(const char *yaml, size_t len, struct taskfile *tf, char *err,
                         size_t errlen)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return taskfile_fail(err, errlen, "front matter: out of memory");
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int r = taskfile_yaml_stream(&parser, tf, err, errlen);
    yaml_parser_delete(&parser);
    return r;
}

/* The front matter form: BUF starts with a `---` line. */
static int taskfile_front_matter(const char *buf, size_t len, struct taskfile *tf, char *err,
                                 size_t errlen)
{
    struct taskfile_line line;
    size_t yaml_start, at;
    taskfile_line_at(buf, len, 0, &line);
    yaml_start = at = line.next;
    while (taskfile_line_at(buf, len, at, &line)) {
        if (taskfile_line_is(&line, "---") || taskfile_line_is(&line, "..."))
            break;
        at = line.next;
    }
    if (at >= len)
        return taskfile_fail(err, errlen, "unterminated front matter");
    if (taskfile_yaml(buf + yaml_start, at - yaml_start, tf, err, errlen) < 0)
        return -1;
    at = line.next;
    if (taskfile_line_at(buf, len, at, &line) && taskfile_line_blank(&line))
        at = line.next; /* the blank line that separates header and body */
    tf->content = xstrndup(buf + at, len - at);
    return 0;
}

/* If LINE is `**NAME:** value` or `**NAME**: value` for a known NAME, store
 * the value into TF. */
static void taskfile_markdown_field(const struct taskfile_line *line, struct taskfile *tf)
{
    const char *p = line->start, *end = line->start + line->len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (end - p >= 2 && (*p == '-' || *p == '*' || *p == '+') && p[1] == ' ')
        p += 2; /* a list item */
    if (end - p < 2 || memcmp(p, "**", 2) != 0)
        return;
    const char *name = p += 2;
    while (p < end && isalpha((unsigned char)*p))
        p++;
    const char *name_end = p;
    if (end - p >= 3 && memcmp(p, ":**", 3) == 0)
        p += 3;
    else if (end - p >= 3 && memcmp(p, "**:", 3) == 0)
        p += 3;
    else
        return;
    char **field = taskfile_markdown_slot(tf, name, (size_t)(name_end - name));
    if (field && !*field)
        taskfile_set(field, taskfile_trimmed(p, (size_t)(end - p)));
}

/* The markdown form: fields from `**Field:**` lines, the whole text is the
 * content. */
static void taskfile_markdown(const char *buf, size_t len, struct taskfile *tf)
{
    struct taskfile_line line;
    for (size_t at = 0; taskfile_line_at(buf, len, at, &line); at = line.next)
        taskfile_markdown_field(&line, tf);
    tf->content = xstrndup(buf, len);
}

/* Fill the fields nobody set with their defaults and rank the priority. */
static void taskfile_defaults(struct taskfile *tf, const char *stem, const char *bot_id)
{
    if (!tf->task_id)
        tf->task_id = xstrdup(stem ? stem : "");
    if (!tf->from)
        tf->from = xstrdup("unknown");
    if (!tf->to)
        tf->to = xstrdup(bot_id ? bot_id : "");
    if (!tf->priority)
        tf->priority = xstrdup("P2");
    tf->priority_rank = taskfile_priority_rank(tf->priority);
}

/* Check the raw bytes: no NUL, valid UTF-8. */
static int taskfile_check_bytes(const char *data, size_t len, char *err, size_t errlen)
{
    const char *nul = memchr(data, '\0', len);
    if (nul)
        return taskfile_fail(err, errlen, "NUL byte at offset %zu", (size_t)(nul - data));
    size_t bad = utf8_valid_prefix(data, len);
    if (bad < len)
        return taskfile_fail(err, errlen, "invalid UTF-8 at offset %zu", bad);
    return 0;
}

/* Parse the checked, normalised text BUF into TF. */
static int taskfile_parse_text(const char *buf, size_t len, struct taskfile *tf, char *err,
                               size_t errlen)
{
    struct taskfile_line first;
    if (taskfile_line_at(buf, len, 0, &first) && taskfile_line_is(&first, "---")) {
        if (taskfile_front_matter(buf, len, tf, err, errlen) < 0)
            return -1;
    } else {
        taskfile_markdown(buf, len, tf);
    }
    if (taskfile_blank(tf->content, strlen(tf->content)))
        return taskfile_fail(err, errlen, "empty task");
    return 0;
}

/* Check, normalise and parse one task file (see taskfile.h). */
int taskfile_parse(const char *data, size_t len, const char *stem, const char *bot_id,
                   struct taskfile *tf, char *err, size_t errlen)
{
    memset(tf, 0, sizeof *tf);
    if (err && errlen)
        err[0] = '\0';
    if (!data) {
        data = "";
        len = 0;
    }
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
        data += 3;
        len -= 3;
    }
    if (taskfile_check_bytes(data, len, err, errlen) < 0)
        return -1;
    size_t n;
    char *buf = taskfile_normalise(data, len, &n);
    int r = taskfile_parse_text(buf, n, tf, err, errlen);
    free(buf);
    if (r < 0) {
        taskfile_clear(tf);
        return -1;
    }
    taskfile_defaults(tf, stem, bot_id);
    if (!task_id_valid(tf->task_id)) {
        taskfile_clear(tf);
        return taskfile_fail(err, errlen,
                             "invalid task_id (ids match [A-Za-z0-9_-][A-Za-z0-9._-]{0,63})");
    }
    return 0;
}

/* Free every field and leave TF empty (rank 10). */
void taskfile_clear(struct taskfile *tf)
{
    if (!tf)
        return;
    free(tf->task_id);
    free(tf->from);
    free(tf->to);
    free(tf->priority);
    free(tf->created_at);
    free(tf->content);
    memset(tf, 0, sizeof *tf);
    tf->priority_rank = 10;
}

/* The digit right after the "P" (any case, leading blanks skipped), as DEIA
 * reads it: "P0 (BLOCKING - PROCESS ISSUE)" is 0, "P10" is 1; a bare digit
 * counts too. 10 when there is no digit there (such tasks run last). */
int taskfile_priority_rank(const char *priority)
{
    if (!priority)
        return 10;
    while (isspace((unsigned char)*priority))
        priority++;
    if (*priority == 'P' || *priority == 'p')
        priority++;
    if (!isdigit((unsigned char)priority[0]))
        return 10;
    return priority[0] - '0';
}
