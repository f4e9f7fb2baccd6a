/*
 * merge: owns the supervisor's ends of the workers' channels, the merged
 * events log and its subscribers. An event is written to the log before any
 * subscriber sees it; a bot event whose seq is not above the last merged one
 * of its bot is a repeat (a worker replaying from an older cursor) and is
 * dropped, so each bot event appears once in the merge.
 */
#include "supervisor/merge.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/evlog.h"
#include "common/json.h"
#include "common/log.h"
#include "common/ssehub.h"
#include "common/strmap.h"
#include "common/util.h"

struct merge_bot {
    struct merge *merge;
    char *id;
    uint64_t last_seq; /* the last of its seqs merged */
    json_t *status;    /* its last CHAN_STATUS, or NULL */
    int64_t status_ms; /* when it came (monotonic): queue ages grow from it */
    struct bufferevent *bev;
    struct chan_reader reader;
    bool parked; /* its worker said it stopped its keep-alives (CHAN_PARKED) */
};

struct merge {
    struct event_base *base;
    struct evlog *log;
    char *cursors_path; /* the bots' cursors at the log's end, kept at exit */
    struct ssehub *hub;
    struct merge_bot **bots;
    size_t n_bots, cap_bots;
    struct strmap *by_id;             /* id -> bot: /status asks once per bot */
    struct merge_listener *listeners; /* see merge_listen */
    size_t n_listeners;
    int next_id;
    int telling; /* depth of merge_tell: removals wait for it */
};

struct merge_listener {
    int id; /* 0: removed, compacted after the telling */
    int filter;
    merge_listener_fn fn;
    void *arg;
};

/* Drop the removed listeners (none is being told). */
static void merge_compact(struct merge *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n_listeners; i++)
        if (m->listeners[i].id)
            m->listeners[k++] = m->listeners[i];
    m->n_listeners = k;
}

/* Tell NOTE to the listeners that want it (the list may change meanwhile:
 * one added is told from the next note on). */
static void merge_tell(struct merge *m, const struct merge_note *note)
{
    m->telling++;
    for (size_t i = 0, n = m->n_listeners; i < n; i++)
        if (m->listeners[i].id && (m->listeners[i].filter & note->what))
            m->listeners[i].fn(note, m->listeners[i].arg);
    if (--m->telling == 0)
        merge_compact(m);
}

int merge_listen(struct merge *m, int filter, merge_listener_fn fn, void *arg)
{
    m->listeners = xrealloc(m->listeners, (m->n_listeners + 1) * sizeof *m->listeners);
    m->listeners[m->n_listeners++] = (struct merge_listener){++m->next_id, filter, fn, arg};
    return m->next_id;
}

void merge_unlisten(struct merge *m, int id)
{
    for (size_t i = 0; i < m->n_listeners; i++)
        if (m->listeners[i].id == id)
            m->listeners[i].id = 0;
    if (!m->telling)
        merge_compact(m);
}

/* An event of BOT_ID to the listeners. */
static void merge_tell_event(struct merge *m, const char *bot_id, const json_t *o)
{
    merge_tell(m, &(struct merge_note){.what = MERGE_NOTE_EVENT, .bot_id = bot_id, .event = o});
}

/* The record of bot ID, or NULL. */
static struct merge_bot *merge_find(const struct merge *m, const char *id)
{
    return strmap_get(m->by_id, id);
}

/* The record of bot ID, made when new. */
static struct merge_bot *merge_bot(struct merge *m, const char *id)
{
    struct merge_bot *found = merge_find(m, id);
    if (found)
        return found;
    struct merge_bot *b = xcalloc(1, sizeof *b);
    b->merge = m;
    b->id = xstrdup(id);
    if (m->n_bots == m->cap_bots) {
        m->cap_bots = m->cap_bots ? 2 * m->cap_bots : 16;
        m->bots = xrealloc(m->bots, m->cap_bots * sizeof *m->bots);
    }
    m->bots[m->n_bots++] = b;
    strmap_put(m->by_id, b->id, b);
    return b;
}

/* At open: each kept line tells the last seq merged of its bot. */
static void merge_scan_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)n, (void)line, (void)len;
    const char *bot = json_string_value(json_object_get(obj, "bot_id"));
    json_t *seq = json_object_get(obj, "seq");
    if (bot && json_is_integer(seq)) {
        struct merge_bot *b = merge_bot(arg, bot);
        if ((uint64_t)json_integer_value(seq) > b->last_seq)
            b->last_seq = (uint64_t)json_integer_value(seq);
    }
}

/* The cursors kept at the last exit (merge_keep_cursors), NULL when none
 * can be read; *MARK where the log ended then. */
static json_t *merge_kept_cursors(const char *path, struct evlog_mark *mark)
{
    /* Only a plain file: a FIFO or a link planted there must not hold up
     * the start (an open for reading of a FIFO waits for a writer). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    json_t *o = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= (16 << 20)) {
        char *text = xmalloc((size_t)st.st_size + 1);
        ssize_t n = read(fd, text, (size_t)st.st_size);
        o = n == st.st_size ? json_loadb(text, (size_t)n, 0, NULL) : NULL;
        free(text);
    }
    if (fd >= 0)
        close(fd);
    json_t *ino = json_object_get(o, "ino"), *size = json_object_get(o, "size");
    json_t *last = json_object_get(o, "last"), *bots = json_object_get(o, "bots");
    if (!json_is_integer(ino) || !json_is_integer(size) || !json_is_integer(last) ||
        !json_is_object(bots)) {
        json_decref(o);
        return NULL;
    }
    *mark = (struct evlog_mark){(unsigned long long)json_integer_value(ino),
                                (long long)json_integer_value(size),
                                (uint64_t)json_integer_value(last)};
    json_incref(bots);
    json_decref(o);
    return bots;
}

/* At exit: each bot's cursor and where the log ends, so that the next start
 * reads only the lines after (a full log is 8 MiB of JSON: ~0.1 s of CPU
 * before the supervisor served anything). Not durable, and not needed to
 * be: a start that finds it stale (the log moved on) reads every line, as
 * one that finds none; one after a kill -9 reads the lines since. */
static void merge_keep_cursors(struct merge *m)
{
    struct evlog_mark mark;
    if (!m->log || !evlog_mark(m->log, &mark))
        return;
    json_t *bots = json_object();
    for (size_t i = 0; i < m->n_bots; i++)
        if (m->bots[i]->last_seq)
            json_object_set_new(bots, m->bots[i]->id,
                                json_integer((json_int_t)m->bots[i]->last_seq));
    json_t *o = json_pack("{s:I, s:I, s:I, s:o}", "ino", (json_int_t)mark.ino, "size",
                          (json_int_t)mark.size, "last", (json_int_t)mark.last, "bots", bots);
    size_t len;
    char *text = json_dump_compact(o, &len);
    if (util_replace_file(m->cursors_path, text, len, false) < 0)
        log_warn("cannot keep the event cursors in %s: %s", m->cursors_path, strerror(errno));
    free(text);
    json_decref(o);
}

struct merge *merge_new(struct event_base *base, const char *path)
{
    struct merge *m = xcalloc(1, sizeof *m);
    m->base = base;
    m->by_id = strmap_new();
    m->cursors_path = xasprintf("%s.cursors", path);
    struct evlog_mark mark;
    json_t *kept = merge_kept_cursors(m->cursors_path, &mark);
    bool after = false;
    m->log = evlog_open_after(path, "hive_seq", kept ? &mark : NULL, merge_scan_cb, m, &after);
    const char *id;
    json_t *seq;
    json_object_foreach(after ? kept : NULL, id, seq)
    { /* what came before the mark */
        struct merge_bot *b = merge_bot(m, id);
        if (json_is_integer(seq) && (uint64_t)json_integer_value(seq) > b->last_seq)
            b->last_seq = (uint64_t)json_integer_value(seq);
    }
    json_decref(kept);
    /* The loop writes the merged stream itself: with a writer thread each of
     * 10,000 subscribers would hold a second descriptor (bench E1 timed out
     * there), and the loop's writes met E1's targets. */
    m->hub = ssehub_new(base, SSEHUB_MAX_PENDING, SSEHUB_KEEPALIVE_MS, false);
    return m;
}

/* Drop BOT's channel. */
static void merge_detach(struct merge_bot *b)
{
    if (b->bev)
        bufferevent_free(b->bev);
    b->bev = NULL;
    chan_reader_free(&b->reader);
}

void merge_free(struct merge *m)
{
    if (!m)
        return;
    merge_keep_cursors(m);
    free(m->cursors_path);
    for (size_t i = 0; i < m->n_bots; i++) {
        merge_detach(m->bots[i]);
        json_decref(m->bots[i]->status);
        free(m->bots[i]->id);
        free(m->bots[i]);
    }
    free(m->bots);
    strmap_free(m->by_id);
    free(m->listeners);
    ssehub_free(m->hub);
    evlog_close(m->log);
    free(m);
}

/* Number O (stolen), log it, hand it to the subscribers. */
static void merge_store(struct merge *m, json_t *o)
{
    uint64_t n = evlog_last(m->log) + 1;
    json_object_set_new(o, "hive_seq", json_integer((json_int_t)n));
    size_t len;
    char *text = json_dump_compact(o, &len);
    evlog_append(m->log, text, len, n);
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)n);
    ssehub_publish(m->hub, id, json_string_value(json_object_get(o, "type")),
                   json_string_value(json_object_get(o, "bot_id")), text, len);
    free(text);
    merge_tell_event(m, json_string_value(json_object_get(o, "bot_id")), o);
    json_decref(o);
}

/* One event of bot B: merged once (stored ones), or passed on live. */
static void merge_event(struct merge_bot *b, const char *payload, size_t len)
{
    json_t *o = json_loadb(payload, len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || !type) {
        json_decref(o);
        return;
    }
    json_object_set_new(o, "bot_id", json_string(b->id)); /* the channel says whose */
    json_t *seq = json_object_get(o, "seq");
    if (!json_is_integer(seq)) { /* task_output: live only, no number */
        size_t n;
        char *text = json_dump_compact(o, &n);
        ssehub_publish(b->merge->hub, NULL, type, b->id, text, n);
        free(text);
        merge_tell_event(b->merge, b->id, o);
        json_decref(o);
        return;
    }
    uint64_t s = (uint64_t)json_integer_value(seq);
    if (s <= b->last_seq) {
        json_decref(o);
        return;
    }
    b->last_seq = s;
    merge_store(b->merge, o);
}

/* A message from B's worker. */
static void merge_msg_cb(enum chan_type type, const char *payload, size_t len, void *arg)
{
    struct merge_bot *b = arg;
    if (type == CHAN_EVENT) {
        merge_event(b, payload, len);
    } else if (type == CHAN_PARKED) {
        json_t *o = json_loadb(payload, len, 0, NULL);
        b->parked = json_is_true(json_object_get(o, "parked"));
        json_decref(o);
    } else if (type == CHAN_STATUS) {
        json_t *st = json_loadb(payload, len, 0, NULL);
        if (json_is_object(st)) {
            json_decref(b->status);
            b->status = st;
            b->status_ms = util_mono_ms();
            merge_tell(b->merge, &(struct merge_note){
                                     .what = MERGE_NOTE_STATUS, .bot_id = b->id, .status = st});
        } else {
            json_decref(st);
        }
    }
}

static void merge_read_cb(struct bufferevent *bev, void *arg)
{
    struct merge_bot *b = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    enum chan_error err = chan_reader_feed(&b->reader, evbuffer_pullup(in, (ssize_t)n), n);
    if (!b->bev) /* gone meanwhile */
        return;
    evbuffer_drain(in, n);
    if (err != CHAN_OK) {
        log_warn("%s: bad message on the worker's channel (%d); closing it", b->id, (int)err);
        merge_detach(b);
    }
}

static void merge_error_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    merge_detach(arg);
}

void merge_attach(struct merge *m, const char *bot_id, int fd)
{
    struct merge_bot *b = merge_bot(m, bot_id);
    merge_detach(b);
    b->parked = false; /* a new worker */
    util_set_nonblock_cloexec(fd);
    b->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!b->bev) {
        close(fd);
        return;
    }
    chan_reader_init(&b->reader, merge_msg_cb, b);
    bufferevent_setcb(b->bev, merge_read_cb, NULL, merge_error_cb, b);
    bufferevent_enable(b->bev, EV_READ | EV_WRITE);
    char since[48];
    int n = snprintf(since, sizeof since, "{\"since\":%llu}", (unsigned long long)b->last_seq);
    struct util_buf f = {0};
    chan_frame(&f, CHAN_RESUME, since, (size_t)n);
    bufferevent_write(b->bev, f.data, f.len);
    free(f.data);
}

bool merge_send_down(struct merge *m, const char *bot_id, enum chan_type type, const char *payload,
                     size_t len)
{
    struct merge_bot *b = merge_bot(m, bot_id);
    if (!b->bev)
        return false;
    struct util_buf f = {0};
    chan_frame(&f, type, payload, len);
    int r = bufferevent_write(b->bev, f.data, f.len);
    free(f.data);
    return r == 0;
}

bool merge_parked(const struct merge *m, const char *bot_id)
{
    const struct merge_bot *b = merge_find(m, bot_id);
    return b && b->parked && b->bev;
}

void merge_remote_event(struct merge *m, const char *bot_id, const char *json, size_t len)
{
    merge_event(merge_bot(m, bot_id), json, len);
}

void merge_remote_status(struct merge *m, const char *bot_id, const char *json, size_t len)
{
    merge_msg_cb(CHAN_STATUS, json, len, merge_bot(m, bot_id));
}

void merge_remote_rewind(struct merge *m, const char *bot_id)
{
    merge_bot(m, bot_id)->last_seq = 0;
}

uint64_t merge_last_seq(struct merge *m, const char *bot_id)
{
    return merge_bot(m, bot_id)->last_seq;
}

void merge_bot_state(struct merge *m, const char *bot_id, const char *state, pid_t pid,
                     const char *reason, unsigned restarts)
{
    struct merge_bot *b = merge_bot(m, bot_id);
    if (strcmp(state, "running") != 0 && strcmp(state, "starting") != 0) {
        json_decref(b->status); /* no worker: nothing it said holds */
        b->status = NULL;
    }
    merge_tell(m, &(struct merge_note){.what = MERGE_NOTE_STATE, .bot_id = bot_id, .state = state});
    char ts[40];
    util_iso_utc(ts, sizeof ts, util_wall_ns());
    merge_store(m, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "type", "bot_state", "bot_id",
                             bot_id, "timestamp", ts, "state", state, "pid",
                             pid > 0 ? json_integer(pid) : json_null(), "reason",
                             reason && *reason ? json_string(reason) : json_null(), "restarts",
                             (json_int_t)restarts));
}

void merge_close_streams(struct merge *m)
{
    ssehub_close_all(m->hub);
}

const json_t *merge_status(const struct merge *m, const char *bot_id)
{
    const struct merge_bot *b = merge_find(m, bot_id);
    return b ? b->status : NULL;
}

void merge_queue(const struct merge *m, const char *bot_id, size_t *hint, double *realtime,
                 double *file, double *age)
{
    *realtime = *file = *age = 0;
    for (size_t k = 0; k < m->n_bots; k++) {
        size_t i = (*hint + k) % m->n_bots;
        const struct merge_bot *b = m->bots[i];
        if (strcmp(b->id, bot_id) != 0)
            continue;
        *hint = i + 1;
        if (!b->status)
            return;
        const json_t *q = json_object_get(b->status, "queue");
        *realtime = (double)json_integer_value(json_object_get(q, "realtime"));
        *file = (double)json_integer_value(json_object_get(q, "file"));
        double a = json_number_value(json_object_get(b->status, "oldest_queued_age_seconds"));
        /* The worker said how old it was then; it has waited since. */
        *age = a > 0 ? a + (double)(util_mono_ms() - b->status_ms) / 1e3 : 0;
        return;
    }
}

size_t merge_subscribers(const struct merge *m)
{
    return ssehub_subscribers(m->hub);
}

/* Replay: one kept line to one reader. */
static void merge_replay_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)n);
    const char *type = json_string_value(json_object_get(obj, "type"));
    if (type)
        ssehub_send_to(arg, id, type, json_string_value(json_object_get(obj, "bot_id")), line, len);
}

/* Tell SUB that events it asked for are no longer kept (FIRST..LAST are).
 * An event like every other (SPEC §8): about the whole merge, so of no bot
 * (bot_id null, as the merged timeline's top-level bot_id). */
static void merge_resync(struct ssehub_sub *sub, uint64_t first, uint64_t last)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, util_wall_ns());
    json_t *o = json_pack("{s:s, s:n, s:s, s:I, s:I}", "type", "resync", "bot_id", "timestamp", ts,
                          "first_seq", (json_int_t)first, "last_seq", (json_int_t)last);
    size_t len;
    char *text = json_dump_compact(o, &len);
    ssehub_send_to(sub, NULL, "resync", NULL, text, len);
    free(text);
    json_decref(o);
}

void merge_serve(struct merge *m, struct http_conn *conn, struct http_request *req)
{
    uint64_t since = 0;
    int has = ssehub_cursor(req, &since);
    if (has < 0)
        return http_respond_error(conn, 400, "invalid cursor", NULL);
    struct ssehub_sub *sub = ssehub_open(m->hub, conn, req);
    if (!sub)
        return;
    if (has) {
        uint64_t first = evlog_first(m->log), last = evlog_last(m->log);
        if (evlog_must_resync(since, first, last)) {
            merge_resync(sub, first, last);
            if (since > last)
                since = 0;
        }
        evlog_replay(m->log, since, 0, &first, merge_replay_cb, sub);
    }
    ssehub_live(sub);
}
