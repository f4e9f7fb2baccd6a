/*
 * events: owns a bot's event vocabulary, its seq, its events file (kept by
 * common/evlog.c)
 * (.deia/bot-logs/<BOT-ID>-events.jsonl, and the generation before it as
 * <...>.1) and the list of subscribers. The file is written with one
 * write(2) per event and no fsync: kill -9 of the worker loses nothing the
 * kernel took, and a power cut may lose the newest events (a resync then
 * tells readers so). A line cut short by a crash is removed at start.
 *
 * Order across tasks (SPEC §2.3): a task's end comes before the next task's
 * task_started. The engine starts the next task as soon as an answer is
 * written and reports the end once the answer is durable (a group commit a
 * few ms later), so the events of a task that started while an earlier one
 * has not ended are held here, in order, and go out right after that end.
 */
#include "worker/events.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/evlog.h"
#include "common/json.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"

#define EVENTS_EXCERPT_MAX 1024
#define EVENTS_HELD_OUTPUT_MAX (1u << 20) /* live output held at most; more is dropped */

/* An event of a task that started before the task ahead of it ended. */
struct events_held {
    json_t *o;
    const struct task *t;
    bool stored;
    char *chunk;
    size_t chunk_len;
};

struct events_sub {
    uint64_t id; /* 0: unsubscribed, removed after the dispatch */
    events_cb cb;
    void *arg;
};

struct events {
    struct evlog *log; /* the events file: numbers and keeps them */
    char *bot_id;
    struct activity *activity;
    struct events_sub *subs;
    size_t n_subs, cap_subs;
    uint64_t next_sub;
    int dispatching;
    const struct task **open; /* started and not ended, in the order they started */
    size_t n_open, cap_open;
    struct events_held *held; /* events of open[1..] waiting for the ends ahead */
    size_t n_held, cap_held;
    size_t held_output; /* bytes of live output among them */
};

struct events *events_open(const char *path, const char *bot_id, struct activity *activity)
{
    struct events *ev = xcalloc(1, sizeof *ev);
    ev->log = evlog_open(path, "seq", NULL, NULL);
    ev->bot_id = xstrdup(bot_id);
    ev->activity = activity;
    ev->next_sub = 1;
    return ev;
}

void events_close(struct events *ev)
{
    if (!ev)
        return;
    evlog_close(ev->log);
    for (size_t i = 0; i < ev->n_held; i++) {
        json_decref(ev->held[i].o);
        free(ev->held[i].chunk);
    }
    free(ev->held);
    free(ev->open);
    free(ev->bot_id);
    free(ev->subs);
    free(ev);
}

uint64_t events_last_seq(const struct events *ev)
{
    return evlog_last(ev->log);
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
        e.seq = evlog_last(ev->log) + 1;
        json_object_set_new(o, "seq", json_integer((json_int_t)e.seq));
    }
    size_t len;
    char *text = json_dump_compact(o, &len);
    if (stored) {
        evlog_append(ev->log, text, len, e.seq);
        events_activity(ev, type, t);
    }
    e.json = text;
    e.json_len = len;
    events_dispatch(ev, &e);
    free(text);
    json_decref(o);
}

/* Where T is among the open tasks, or -1. */
static ssize_t events_open_at(const struct events *ev, const struct task *t)
{
    for (size_t i = 0; i < ev->n_open; i++)
        if (ev->open[i] == t)
            return (ssize_t)i;
    return -1;
}

/* Emit T's event O, or hold it while a task that started before T has not
 * ended. Live output beyond EVENTS_HELD_OUTPUT_MAX is dropped (as a
 * subscriber that lags loses it). */
static void events_emit_task(struct events *ev, json_t *o, const struct task *t, bool stored,
                             const char *chunk, size_t chunk_len)
{
    if (events_open_at(ev, t) <= 0) {
        events_emit(ev, o, t, stored, chunk, chunk_len);
        return;
    }
    if (!stored && ev->held_output + chunk_len > EVENTS_HELD_OUTPUT_MAX) {
        json_decref(o);
        return;
    }
    if (ev->n_held == ev->cap_held) {
        ev->cap_held = ev->cap_held ? ev->cap_held * 2 : 16;
        ev->held = xrealloc(ev->held, ev->cap_held * sizeof *ev->held);
    }
    char *copy = NULL;
    if (chunk) {
        copy = xmalloc(chunk_len + 1);
        memcpy(copy, chunk, chunk_len);
        copy[chunk_len] = '\0';
        ev->held_output += chunk_len;
    }
    ev->held[ev->n_held++] = (struct events_held){o, t, stored, copy, chunk_len};
}

/* Take every held event of T out: emitted in order (EMIT), or dropped. */
static void events_take_held(struct events *ev, const struct task *t, bool emit)
{
    size_t j = 0;
    for (size_t i = 0; i < ev->n_held; i++) {
        struct events_held h = ev->held[i];
        if (h.t != t) {
            ev->held[j++] = h;
            continue;
        }
        if (h.chunk)
            ev->held_output -= h.chunk_len;
        if (emit)
            events_emit(ev, h.o, h.t, h.stored, h.chunk, h.chunk_len);
        else
            json_decref(h.o);
        free(h.chunk);
    }
    ev->n_held = j;
}

/* Emit, in order, every held event of T. */
static void events_release(struct events *ev, const struct task *t)
{
    events_take_held(ev, t, true);
}

/* The open task at AT has ended (or is forgotten): the first one left, if
 * it was the first, no longer waits. */
static void events_unopen(struct events *ev, ssize_t at)
{
    memmove(ev->open + at, ev->open + at + 1, (ev->n_open - (size_t)at - 1) * sizeof *ev->open);
    ev->n_open--;
    if (at == 0 && ev->n_open)
        events_release(ev, ev->open[0]);
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
    if (events_open_at(ev, t) < 0) {
        if (ev->n_open == ev->cap_open) {
            ev->cap_open = ev->cap_open ? ev->cap_open * 2 : 4;
            ev->open = xrealloc(ev->open, ev->cap_open * sizeof *ev->open);
        }
        ev->open[ev->n_open++] = t;
    }
    events_emit_task(ev, o, t, true, NULL, 0);
}

void events_task_output(struct events *ev, const struct task *t, const char *data, size_t len)
{
    json_t *o = events_new(ev, "task_output", t);
    json_object_set_new(o, "content", events_text(data, len));
    events_emit_task(ev, o, t, false, data, len);
}

void events_task_stalled(struct events *ev, const struct task *t, double silent_s)
{
    json_t *o = events_new(ev, "task_stalled", t);
    json_object_set_new(o, "silent_seconds",
                        json_real((double)(int64_t)(silent_s * 10 + 0.5) / 10));
    events_emit_task(ev, o, t, true, NULL, 0);
}

/* An agent's cost on a task end event (SPEC §12): "tokens" and "cost_usd",
 * when the agent told them. */
static void events_usage(json_t *o, const struct agent_usage *u)
{
    if (u->known)
        json_object_set_new(o, "tokens",
                            json_pack("{s:I, s:I, s:I, s:I}", "input", (json_int_t)u->input,
                                      "output", (json_int_t)u->output, "cache_read",
                                      (json_int_t)u->cache_read, "cache_write",
                                      (json_int_t)u->cache_write));
    if (u->cost_known)
        json_object_set_new(o, "cost_usd", json_real(u->cost_usd));
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
    json_t *files = json_array();
    for (size_t i = 0; i < t->n_files_modified; i++)
        json_array_append_new(files,
                              events_text(t->files_modified[i], strlen(t->files_modified[i])));
    json_object_set_new(o, "files_modified", files);
    json_object_set_new(o, "output_excerpt", events_excerpt(t));
    events_usage(o, &t->usage);
    /* Its own held events first (it ends before a task ahead of it only
     * when that one's answer is being written again), then its end, then
     * the next task's held events. */
    ssize_t at = events_open_at(ev, t);
    if (at > 0)
        events_release(ev, t);
    events_emit(ev, o, t, true, NULL, 0);
    if (at >= 0)
        events_unopen(ev, at);
}

void events_task_forget(struct events *ev, const struct task *t)
{
    if (!ev)
        return;
    ssize_t at = events_open_at(ev, t);
    if (at < 0)
        return;
    events_take_held(ev, t, false);
    events_unopen(ev, at);
}

void events_task_forget_all(struct events *ev)
{
    if (!ev)
        return;
    for (size_t i = 0; i < ev->n_held; i++) {
        json_decref(ev->held[i].o);
        free(ev->held[i].chunk);
    }
    ev->n_held = 0;
    ev->held_output = 0;
    ev->n_open = 0;
}

void events_bot_paused(struct events *ev, bool paused)
{
    events_bot_paused_why(ev, paused, NULL, 0);
}

void events_bot_paused_why(struct events *ev, bool paused, const char *reason, int64_t until)
{
    json_t *o = events_new(ev, paused ? "bot_paused" : "bot_resumed", NULL);
    if (reason)
        json_object_set_new(o, "reason", events_text(reason, strlen(reason)));
    if (paused && until > 0) {
        char ts[40];
        util_iso_utc(ts, sizeof ts, until * 1000000000LL);
        json_object_set_new(o, "until", json_string(ts));
    }
    events_emit(ev, o, NULL, true, NULL, 0);
}

void events_task_tool(struct events *ev, const struct task *t, const char *name,
                      const char *summary)
{
    json_t *o = events_new(ev, "task_tool", t);
    json_object_set_new(o, "name", events_text(name, strlen(name)));
    json_object_set_new(o, "summary", events_text(summary, strlen(summary)));
    events_emit_task(ev, o, t, false, NULL, 0);
}

void events_warning(struct events *ev, const char *message)
{
    json_t *o = events_new(ev, "warning", NULL);
    json_object_set_new(o, "message", events_text(message, strlen(message)));
    events_emit(ev, o, NULL, true, NULL, 0);
}

char *events_dropped_json(const struct events *ev, const char *task_id, const char *source,
                          uint64_t n_events, uint64_t bytes, int64_t at_ns, size_t *len)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, at_ns);
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I}", "type", "task_output_dropped",
                          "bot_id", ev->bot_id, "timestamp", ts, "task_id",
                          task_id ? events_text(task_id, strlen(task_id)) : json_null(), "source",
                          source ? json_string(source) : json_null(), "dropped_events",
                          (json_int_t)n_events, "dropped_bytes", (json_int_t)bytes);
    char *text = json_dump_compact(o, len);
    json_decref(o);
    return text;
}

/* Tell CB the reader missed events no longer kept (FIRST: the oldest kept). */
static void events_resync(struct events *ev, uint64_t first, events_cb cb, void *arg)
{
    json_t *o = events_new(ev, "resync", NULL);
    json_object_set_new(o, "first_seq", json_integer((json_int_t)first));
    json_object_set_new(o, "last_seq", json_integer((json_int_t)evlog_last(ev->log)));
    size_t len;
    char *text = json_dump_compact(o, &len);
    struct events_event e = {.type = "resync", .json = text, .json_len = len};
    cb(&e, arg);
    free(text);
    json_decref(o);
}

/* A replay under way: whom to tell. */
struct events_replaying {
    events_cb cb;
    void *arg;
};

/* One kept line as an event. */
static void events_replay_line(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    struct events_replaying *r = arg;
    struct events_event e = {.type = json_string_value(json_object_get(obj, "type")),
                             .seq = n,
                             .json = line,
                             .json_len = len};
    if (e.type)
        r->cb(&e, r->arg);
}

bool events_replay(struct events *ev, uint64_t since, size_t max, events_cb cb, void *arg)
{
    uint64_t first = evlog_first(ev->log), last = evlog_last(ev->log);
    bool resync = evlog_must_resync(since, first, last);
    if (resync) {
        events_resync(ev, first, cb, arg);
        if (since > last) /* the files were lost: all that is kept is new */
            since = 0;
    }
    struct events_replaying r = {cb, arg};
    evlog_replay(ev->log, since, max, &first, events_replay_line, &r);
    return resync;
}
