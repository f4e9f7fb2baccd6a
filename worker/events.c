/*
 * events: owns a bot's event vocabulary, its seq, its events file
 * (.deia/bot-logs/<BOT-ID>-events.jsonl, and the generation before it as
 * <...>.1) and the list of subscribers. The file is written with one
 * write(2) per event and no fsync: kill -9 of the worker loses nothing the
 * kernel took, and a power cut may lose the newest events (a resync then
 * tells readers so). A line cut short by a crash is removed at start.
 */
#include "worker/events.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"

#define EVENTS_EXCERPT_MAX 1024

struct events_sub {
    uint64_t id; /* 0: unsubscribed, removed after the dispatch */
    events_cb cb;
    void *arg;
};

struct events {
    char *path, *prev_path; /* the current generation and the one before */
    char *bot_id;
    int fd;
    off_t size;
    uint64_t seq;
    struct activity *activity;
    struct events_sub *subs;
    size_t n_subs, cap_subs;
    uint64_t next_sub;
    int dispatching;
    bool warned;
};

/* Read the whole file PATH (at most a generation and a line); NULL when it
 * cannot be read. */
static char *events_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct util_buf b = {0};
    char chunk[65536];
    ssize_t n;
    while (b.len < 4 * (size_t)EVENTS_FILE_MAX && (n = read(fd, chunk, sizeof chunk)) > 0)
        util_buf_add(&b, chunk, (size_t)n);
    close(fd);
    *len = b.len;
    return b.data ? b.data : xstrdup("");
}

/* The seq of the JSON line LINE (LEN bytes), or 0. */
static uint64_t events_line_seq(const char *line, size_t len, json_t **out)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    json_t *s = json_object_get(o, "seq");
    uint64_t seq =
        json_is_integer(s) && json_integer_value(s) > 0 ? (uint64_t)json_integer_value(s) : 0;
    if (out && seq)
        *out = o;
    else
        json_decref(o);
    return seq;
}

/* The seq of the last complete line of TEXT (LEN bytes), or 0. */
static uint64_t events_last_in(const char *text, size_t len)
{
    while (len > 0) {
        size_t end = len - 1; /* text[end] is the '\n' of the last line */
        size_t start = end;
        while (start > 0 && text[start - 1] != '\n')
            start--;
        uint64_t seq = events_line_seq(text + start, end - start, NULL);
        if (seq)
            return seq;
        len = start;
    }
    return 0;
}

/* Read the last seq back; cut a last line a crash left unfinished. */
static void events_recover(struct events *ev)
{
    size_t len = 0;
    char *text = events_slurp(ev->path, &len);
    if (text) {
        size_t whole = len;
        while (whole > 0 && text[whole - 1] != '\n')
            whole--;
        if (whole < len && ftruncate(ev->fd, (off_t)whole) < 0)
            log_warn("cannot cut the unfinished last line of %s: %s", ev->path, strerror(errno));
        ev->size = (off_t)whole;
        ev->seq = events_last_in(text, whole);
        free(text);
    }
    if (ev->seq == 0 && (text = events_slurp(ev->prev_path, &len))) {
        ev->seq = events_last_in(text, len);
        free(text);
    }
}

struct events *events_open(const char *path, const char *bot_id, struct activity *activity)
{
    struct events *ev = xcalloc(1, sizeof *ev);
    ev->path = xstrdup(path);
    ev->prev_path = xasprintf("%s.1", path);
    ev->bot_id = xstrdup(bot_id);
    ev->activity = activity;
    ev->next_sub = 1;
    ev->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (ev->fd < 0)
        log_warn("cannot open the events file %s: %s", path, strerror(errno));
    events_recover(ev);
    return ev;
}

void events_close(struct events *ev)
{
    if (!ev)
        return;
    if (ev->fd >= 0)
        close(ev->fd);
    free(ev->path);
    free(ev->prev_path);
    free(ev->bot_id);
    free(ev->subs);
    free(ev);
}

uint64_t events_last_seq(const struct events *ev)
{
    return ev->seq;
}

uint64_t events_subscribe(struct events *ev, events_cb cb, void *arg)
{
    if (ev->n_subs == ev->cap_subs) {
        ev->cap_subs = ev->cap_subs ? ev->cap_subs * 2 : 8;
        ev->subs = xrealloc(ev->subs, ev->cap_subs * sizeof *ev->subs);
    }
    ev->subs[ev->n_subs++] = (struct events_sub){ev->next_sub, cb, arg};
    return ev->next_sub++;
}

/* Drop the unsubscribed entries (never during a dispatch). */
static void events_compact(struct events *ev)
{
    size_t j = 0;
    for (size_t i = 0; i < ev->n_subs; i++)
        if (ev->subs[i].id)
            ev->subs[j++] = ev->subs[i];
    ev->n_subs = j;
}

void events_unsubscribe(struct events *ev, uint64_t id)
{
    for (size_t i = 0; i < ev->n_subs; i++)
        if (ev->subs[i].id == id)
            ev->subs[i].id = 0;
    if (!ev->dispatching)
        events_compact(ev);
}

/* Start a new generation: the current file becomes the previous one. */
static void events_rotate(struct events *ev)
{
    if (rename(ev->path, ev->prev_path) < 0) {
        log_warn("cannot rotate %s: %s", ev->path, strerror(errno));
        return;
    }
    close(ev->fd);
    ev->fd = open(ev->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (ev->fd < 0)
        log_warn("cannot open the events file %s: %s", ev->path, strerror(errno));
    ev->size = 0;
}

/* Append one line (the event and its '\n'). */
static void events_store(struct events *ev, const char *line, size_t len)
{
    if (ev->fd >= 0 && ev->size > 0 && ev->size + (off_t)len > (off_t)EVENTS_FILE_MAX)
        events_rotate(ev);
    ssize_t n = ev->fd >= 0 ? write(ev->fd, line, len) : -1;
    if (n == (ssize_t)len) {
        ev->size += n;
        return;
    }
    if (n > 0 && ftruncate(ev->fd, ev->size) == 0) /* a short write: no half line */
        n = -1;
    if (!ev->warned) {
        ev->warned = true;
        log_warn("cannot write the events file %s: %s", ev->path,
                 n < 0 ? strerror(errno) : "short write");
    }
}

/* Hand E to every subscriber (the list may change meanwhile). */
static void events_dispatch(struct events *ev, const struct events_event *e)
{
    ev->dispatching++;
    for (size_t i = 0; i < ev->n_subs; i++)
        if (ev->subs[i].id)
            ev->subs[i].cb(e, ev->subs[i].arg);
    if (--ev->dispatching == 0)
        events_compact(ev);
}

/* The activity log's line for a task event (SPEC §2.3: its own types). */
static void events_activity(struct events *ev, const char *type, const struct task *t)
{
    if (!ev->activity || !t)
        return;
    bool end = strcmp(type, "task_completed") == 0 || strcmp(type, "task_failed") == 0 ||
               strcmp(type, "task_cancelled") == 0;
    struct activity_event a = {.event_type =
                                   strcmp(type, "task_cancelled") == 0 ? "task_failed" : type,
                               .result = end && !t->success ? "failure" : "success",
                               .duration_seconds = end ? t->duration_seconds : 0,
                               .error = end ? t->error : NULL,
                               .task_id = t->id,
                               .source = task_source_name(t->source)};
    activity_log(ev->activity, &a, NULL);
}

/* A new event object of TYPE with the fields every event has. */
static json_t *events_new(struct events *ev, const char *type, const struct task *t)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, util_wall_ns());
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", type, "bot_id", ev->bot_id, "timestamp", ts);
    if (t) {
        json_object_set_new(o, "task_id", json_string(t->id));
        json_object_set_new(o, "source", json_string(task_source_name(t->source)));
    }
    return o;
}

/* Number, store (unless live only), log and hand out event O (stolen). */
static void events_emit(struct events *ev, json_t *o, const struct task *t, bool stored,
                        const char *chunk, size_t chunk_len)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    struct events_event e = {.type = type, .task = t, .chunk = chunk, .chunk_len = chunk_len};
    if (stored) {
        e.seq = ++ev->seq;
        json_object_set_new(o, "seq", json_integer((json_int_t)e.seq));
    }
    size_t len;
    char *text = json_dump_compact(o, &len);
    if (stored) {
        text[len] = '\n'; /* the file's line, then the NUL back for the rest */
        events_store(ev, text, len + 1);
        text[len] = '\0';
        events_activity(ev, type, t);
    }
    e.json = text;
    e.json_len = len;
    events_dispatch(ev, &e);
    free(text);
    json_decref(o);
}

/* LEN bytes of S as a JSON string, made valid UTF-8 first. */
static json_t *events_text(const char *s, size_t len)
{
    char *clean = utf8_sanitize(s ? s : "", s ? len : 0, &len);
    json_t *j = json_stringn(clean, len);
    free(clean);
    return j;
}

void events_task_received(struct events *ev, const struct task *t, size_t position)
{
    json_t *o = events_new(ev, "task_received", t);
    json_object_set_new(o, "priority", t->priority ? json_string(t->priority) : json_null());
    json_object_set_new(o, "from", t->from ? events_text(t->from, strlen(t->from)) : json_null());
    json_object_set_new(o, "position", position ? json_integer((json_int_t)position) : json_null());
    events_emit(ev, o, t, true, NULL, 0);
}

void events_task_started(struct events *ev, const struct task *t)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, t->started_wall_ns ? t->started_wall_ns : util_wall_ns());
    json_t *o = events_new(ev, "task_started", t);
    json_object_set_new(o, "started_at", json_string(ts));
    events_emit(ev, o, t, true, NULL, 0);
}

void events_task_output(struct events *ev, const struct task *t, const char *data, size_t len)
{
    json_t *o = events_new(ev, "task_output", t);
    json_object_set_new(o, "content", events_text(data, len));
    events_emit(ev, o, t, false, data, len);
}

/* The first KiB of the output, cut on a character boundary. */
static json_t *events_excerpt(const struct task *t)
{
    size_t len = t->output_len < EVENTS_EXCERPT_MAX ? t->output_len : EVENTS_EXCERPT_MAX;
    char *clean = utf8_sanitize(t->output ? t->output : "", t->output ? len : 0, &len);
    json_t *j = json_stringn(clean, utf8_cut(clean, len, EVENTS_EXCERPT_MAX));
    free(clean);
    return j;
}

void events_task_done(struct events *ev, const struct task *t)
{
    const char *type = t->success                                       ? "task_completed"
                       : t->error && strcmp(t->error, "cancelled") == 0 ? "task_cancelled"
                                                                        : "task_failed";
    json_t *o = events_new(ev, type, t);
    json_object_set_new(o, "success", json_boolean(t->success));
    json_object_set_new(o, "duration_seconds",
                        json_real((double)(int64_t)(t->duration_seconds * 1000 + 0.5) / 1000));
    json_object_set_new(o, "response_file",
                        t->response_file ? json_string(t->response_file) : json_null());
    json_object_set_new(o, "error",
                        t->error ? events_text(t->error, strlen(t->error)) : json_null());
    json_object_set_new(o, "files_modified", json_array());
    json_object_set_new(o, "output_excerpt", events_excerpt(t));
    events_emit(ev, o, t, true, NULL, 0);
}

void events_bot_paused(struct events *ev, bool paused)
{
    events_emit(ev, events_new(ev, paused ? "bot_paused" : "bot_resumed", NULL), NULL, true, NULL,
                0);
}

/* Hand CB the lines of TEXT (LEN bytes) with a seq over SINCE. */
static void events_replay_text(const char *text, size_t len, uint64_t since, events_cb cb,
                               void *arg)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl)
            break; /* a line being written: it is not an event yet */
        size_t end = (size_t)(nl - text);
        json_t *o = NULL;
        uint64_t seq = events_line_seq(text + i, end - i, &o);
        if (seq > since) {
            struct events_event e = {.type = json_string_value(json_object_get(o, "type")),
                                     .seq = seq,
                                     .json = text + i,
                                     .json_len = end - i};
            if (e.type)
                cb(&e, arg);
        }
        json_decref(o);
        i = end + 1;
    }
}

/* The seq of the first complete line of TEXT that has one, or 0. */
static uint64_t events_first_in(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl)
            return 0;
        uint64_t seq = events_line_seq(text + i, (size_t)(nl - text) - i, NULL);
        if (seq)
            return seq;
        i = (size_t)(nl - text) + 1;
    }
    return 0;
}

/* Tell CB the reader missed events no longer kept (FIRST: the oldest kept). */
static void events_resync(struct events *ev, uint64_t first, events_cb cb, void *arg)
{
    json_t *o = events_new(ev, "resync", NULL);
    json_object_set_new(o, "first_seq", json_integer((json_int_t)first));
    json_object_set_new(o, "last_seq", json_integer((json_int_t)ev->seq));
    size_t len;
    char *text = json_dump_compact(o, &len);
    struct events_event e = {.type = "resync", .json = text, .json_len = len};
    cb(&e, arg);
    free(text);
    json_decref(o);
}

bool events_replay(struct events *ev, uint64_t since, events_cb cb, void *arg)
{
    size_t len[2] = {0, 0};
    char *text[2] = {events_slurp(ev->prev_path, &len[0]), events_slurp(ev->path, &len[1])};
    uint64_t first = 0;
    for (size_t k = 0; k < 2 && !first; k++)
        if (text[k])
            first = events_first_in(text[k], len[k]);
    /* A cursor from the future: the files were lost or replaced. */
    bool resync = since > ev->seq || (since > 0 && (first ? first > since + 1 : since < ev->seq));
    if (resync) {
        events_resync(ev, first, cb, arg);
        if (since > ev->seq)
            since = 0;
    }
    for (size_t k = 0; k < 2; k++) {
        if (text[k])
            events_replay_text(text[k], len[k], since, cb, arg);
        free(text[k]);
    }
    return resync;
}
