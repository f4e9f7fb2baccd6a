/*
 * uplink: owns the worker's end of the channel: its bufferevent, the cursor
 * of what went up (the seq of the last stored event sent) and whether it is
 * behind. While behind, live stored events are not queued (they are in the
 * events file and go up by replay); what waits in memory is bounded by
 * UPLINK_MAX_QUEUED plus one replay batch.
 *
 * Live-only events (task_output, task_tool) that do not fit are dropped, as
 * for any subscriber that lags, but not silently: the supervisor's stream
 * has no other way to learn that it lacks output the worker's own stream
 * had. Each run of drops of one task becomes a gap, sent up as one
 * task_output_dropped event in the place of what it stands for: right
 * after the last stored event that went before it, before any event after
 * it. At most UPLINK_MAX_GAPS wait; beyond, the newest one takes the drops
 * of every further task (and names none).
 */
#include "worker/uplink.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#define UPLINK_MAX_QUEUED (256u << 10)
#define UPLINK_BATCH 4096 /* events replayed per drain of the channel */
#define UPLINK_STATUS_MS 1000
#define UPLINK_MAX_GAPS 64

/* Live events of one task that did not go up. */
struct uplink_gap {
    char *task_id; /* NULL: of several tasks (the list was full) */
    const char *source;
    uint64_t after; /* the seq of the last stored event before them */
    uint64_t events, bytes;
    int64_t at_ns; /* when the first was dropped */
};

struct uplink {
    struct bufferevent *bev; /* NULL once the supervisor is gone */
    struct events *events;
    struct engine *engine;
    uint64_t sub;
    struct chan_reader reader;
    bool resumed;  /* the supervisor said from where (CHAN_RESUME) */
    bool behind;   /* stored events wait in the file, not in the channel */
    bool lagged;   /* behind because the supervisor stopped reading (said once) */
    uint64_t sent; /* the seq of the last stored event queued */
    size_t replayed;
    struct util_buf frame;
    struct event *status_ev;
    char *last_status; /* the status sent last: the same one is not sent again */
    void (*idle_watch_cb)(void *arg);
    void *idle_watch_arg;
    struct uplink_gap gaps[UPLINK_MAX_GAPS]; /* oldest first */
    size_t n_gaps;
    char *told_task; /* the last task whose drops were logged */
};

/* Bytes queued towards the supervisor. */
static size_t uplink_queued(const struct uplink *u)
{
    return u->bev ? evbuffer_get_length(bufferevent_get_output(u->bev)) : 0;
}

/* Queue one message. */
static void uplink_send(struct uplink *u, enum chan_type type, const char *payload, size_t len)
{
    u->frame.len = 0;
    chan_frame(&u->frame, type, payload, len);
    bufferevent_write(u->bev, u->frame.data, u->frame.len);
}

/* Send up, in order, the gaps whose place has come: those after no stored
 * event later than the last one sent. Small, so they go even over the
 * budget. */
static void uplink_gaps_flush(struct uplink *u)
{
    size_t k = 0;
    while (u->bev && k < u->n_gaps && u->gaps[k].after <= u->sent) {
        struct uplink_gap *g = &u->gaps[k++];
        size_t len;
        char *text = events_dropped_json(u->events, g->task_id, g->task_id ? g->source : NULL,
                                         g->events, g->bytes, g->at_ns, &len);
        uplink_send(u, CHAN_EVENT, text, len);
        free(text);
        free(g->task_id);
    }
    u->n_gaps -= k;
    memmove(u->gaps, u->gaps + k, u->n_gaps * sizeof *u->gaps);
}

/* Live event EV did not go up: count it in its task's gap. */
static void uplink_gap_add(struct uplink *u, const struct events_event *ev)
{
    const struct task *t = ev->task;
    struct uplink_gap *g = u->n_gaps ? &u->gaps[u->n_gaps - 1] : NULL;
    bool same = g && g->task_id && t && strcmp(g->task_id, t->id) == 0;
    if (t && (!u->told_task || strcmp(u->told_task, t->id) != 0)) { /* once a task */
        log_info("task %s: the supervisor's channel is full; its live output that does "
                 "not fit goes up as task_output_dropped",
                 t->id);
        free(u->told_task);
        u->told_task = xstrdup(t->id);
    }
    if (!same && u->n_gaps < UPLINK_MAX_GAPS) {
        g = &u->gaps[u->n_gaps++];
        *g = (struct uplink_gap){.task_id = t ? xstrdup(t->id) : NULL,
                                 .source = t ? task_source_name(t->source) : NULL,
                                 .after = events_last_seq(u->events),
                                 .at_ns = util_wall_ns()};
    } else if (!same) { /* full: the newest gap takes it, naming no task */
        free(g->task_id);
        g->task_id = NULL;
    }
    g->events++;
    g->bytes += ev->chunk_len;
}

/* Why the bot paused itself (SPEC §12), for the supervisor's /status. */
static void uplink_status_paused(json_t *o, const struct engine_status *st)
{
    char until[40] = "";
    if (st->paused_reason && st->paused_until)
        util_iso_utc(until, sizeof until, st->paused_until * 1000000000LL);
    json_object_set_new(o, "paused_reason",
                        st->paused_reason ? json_string(st->paused_reason) : json_null());
    json_object_set_new(o, "paused_until", until[0] ? json_string(until) : json_null());
}

/* The once-a-second status runs only while something waits (its age moves);
 * an idle bot's status changes only with an event, which sends it. A
 * thousand idle workers woke every second for nothing. */
static void uplink_status_tick(struct uplink *u, bool waiting)
{
    struct timeval tv = {UPLINK_STATUS_MS / 1000, (UPLINK_STATUS_MS % 1000) * 1000};
    if (!waiting)
        event_del(u->status_ev);
    else if (!event_pending(u->status_ev, EV_TIMEOUT, NULL))
        event_add(u->status_ev, &tv);
}

/* The status the supervisor's /status shows for us, when it changed: an
 * idle bot's is the same every second, and a thousand bots sending theirs
 * kept the supervisor parsing a thousand messages a second for nothing. */
static void uplink_status(struct uplink *u)
{
    if (!u->bev || !u->engine || uplink_queued(u) > UPLINK_MAX_QUEUED)
        return;
    struct engine_status st;
    engine_status(u->engine, &st);
    json_t *cur = json_null();
    if (st.current) {
        char ts[40];
        util_iso_utc(ts, sizeof ts, st.current->started_wall_ns);
        cur = json_pack("{s:s, s:s, s:s}", "task_id", st.current->id, "source",
                        task_source_name(st.current->source), "started_at", ts);
    }
    uplink_status_tick(u, st.realtime + st.file > 0);
    double age = st.oldest_wall_ns ? (double)(util_wall_ns() - st.oldest_wall_ns) / 1e9 : 0;
    json_t *o =
        json_pack("{s:s, s:{s:I, s:I}, s:o, s:I, s:I, s:f}", "status", st.state, "queue",
                  "realtime", (json_int_t)st.realtime, "file", (json_int_t)st.file, "current_task",
                  cur, "tasks_processed", (json_int_t)st.processed, "tasks_failed",
                  (json_int_t)st.failed, "oldest_queued_age_seconds", age > 0 ? age : 0.0);
    uplink_status_paused(o, &st);
    size_t len;
    char *text = json_dump_compact(o, &len);
    json_decref(o);
    if (u->last_status && strcmp(u->last_status, text) == 0) {
        free(text);
        return;
    }
    uplink_send(u, CHAN_STATUS, text, len);
    free(u->last_status);
    u->last_status = text;
}

/* One stored event from the file, on the way up. */
static void uplink_replay_cb(const struct events_event *ev, void *arg)
{
    struct uplink *u = arg;
    u->replayed++;
    if (!ev->seq) /* resync: the supervisor sees the gap in the seqs itself */
        return;
    uplink_gaps_flush(u);
    uplink_send(u, CHAN_EVENT, ev->json, ev->json_len);
    u->sent = ev->seq;
}

/* Send up what the file holds after the cursor, a batch at a time; live
 * again once a batch leaves nothing behind it. */
static void uplink_catch_up(struct uplink *u)
{
    if (!u->bev || !u->behind || uplink_queued(u) > UPLINK_MAX_QUEUED / 2)
        return;
    u->replayed = 0;
    events_replay(u->events, u->sent, UPLINK_BATCH, uplink_replay_cb, u);
    uplink_gaps_flush(u);
    if (u->replayed < UPLINK_BATCH && u->sent >= events_last_seq(u->events)) {
        u->behind = false;
        if (u->lagged)
            log_info("the supervisor's channel caught up (seq %llu)", (unsigned long long)u->sent);
        u->lagged = false;
    }
}

/* A bot event: up the channel unless it must wait in the file. */
static void uplink_event_cb(const struct events_event *ev, void *arg)
{
    struct uplink *u = arg;
    if (!u->bev || !u->resumed)
        return;
    if (!ev->seq) { /* task_output: live only, dropped when the channel lags */
        if (!u->behind && uplink_queued(u) + ev->json_len <= UPLINK_MAX_QUEUED) {
            uplink_gaps_flush(u);
            uplink_send(u, CHAN_EVENT, ev->json, ev->json_len);
        } else {
            uplink_gap_add(u, ev);
        }
        return;
    }
    if (!u->behind && uplink_queued(u) + ev->json_len > UPLINK_MAX_QUEUED) {
        u->behind = true;
        u->lagged = true;
        log_info("the supervisor is not reading its channel; events wait in the events file "
                 "(from seq %llu)",
                 (unsigned long long)ev->seq);
    }
    if (!u->behind) {
        uplink_gaps_flush(u);
        uplink_send(u, CHAN_EVENT, ev->json, ev->json_len);
        u->sent = ev->seq;
    }
    uplink_status(u);
}

/* A message from the supervisor. */
static void uplink_msg_cb(enum chan_type type, const char *payload, size_t len, void *arg)
{
    struct uplink *u = arg;
    if (type == CHAN_IDLE_WATCH && u->idle_watch_cb)
        u->idle_watch_cb(u->idle_watch_arg);
    if (type != CHAN_RESUME)
        return;
    json_t *o = json_loadb(payload, len, 0, NULL);
    json_t *since = json_object_get(o, "since");
    u->sent = json_is_integer(since) && json_integer_value(since) > 0
                  ? (uint64_t)json_integer_value(since)
                  : 0;
    json_decref(o);
    u->resumed = u->behind = true;
    uplink_catch_up(u);
    free(u->last_status); /* the supervisor (re)starts listening: say it anyway */
    u->last_status = NULL;
    uplink_status(u);
}

/* The supervisor is gone (or spoke nonsense): no more channel. */
static void uplink_close(struct uplink *u)
{
    if (u->bev)
        bufferevent_free(u->bev);
    u->bev = NULL;
}

static void uplink_read_cb(struct bufferevent *bev, void *arg)
{
    struct uplink *u = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    enum chan_error err = chan_reader_feed(&u->reader, evbuffer_pullup(in, (ssize_t)n), n);
    evbuffer_drain(in, n);
    if (err != CHAN_OK) {
        log_warn("channel to the supervisor: bad message (%d); closing it", (int)err);
        uplink_close(u);
    }
}

static void uplink_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct uplink *u = arg;
    if (!u->behind) /* a gap at the end of a run of output goes now */
        uplink_gaps_flush(u);
    uplink_catch_up(u);
}

static void uplink_error_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    uplink_close(arg);
}

static void uplink_status_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct uplink *u = arg;
    if (u->resumed)
        uplink_status(u);
}

struct uplink *uplink_new(struct event_base *base, int fd, struct events *events)
{
    struct uplink *u = xcalloc(1, sizeof *u);
    util_set_nonblock_cloexec(fd);
    u->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!u->bev) {
        close(fd);
        free(u);
        return NULL;
    }
    u->events = events;
    chan_reader_init(&u->reader, uplink_msg_cb, u);
    bufferevent_setcb(u->bev, uplink_read_cb, uplink_write_cb, uplink_error_cb, u);
    bufferevent_setwatermark(u->bev, EV_WRITE, UPLINK_MAX_QUEUED / 4, 0);
    /* libevent writes 16 KiB a pass by default, while the adapter's output
     * comes 64 KiB a read: the queue then grew with a supervisor that kept
     * up, and fast output was dropped for nothing. */
    bufferevent_set_max_single_write(u->bev, UPLINK_MAX_QUEUED);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    u->sub = events_subscribe(events, uplink_event_cb, u);
    u->status_ev = event_new(base, -1, EV_PERSIST, uplink_status_cb, u);
    struct timeval tv = {UPLINK_STATUS_MS / 1000, (UPLINK_STATUS_MS % 1000) * 1000};
    event_add(u->status_ev, &tv);
    return u;
}

void uplink_set_engine(struct uplink *u, struct engine *engine)
{
    u->engine = engine;
}

bool uplink_parked(struct uplink *u, bool parked)
{
    if (!u->bev)
        return false;
    const char *msg = parked ? "{\"parked\":true}" : "{\"parked\":false}";
    uplink_send(u, CHAN_PARKED, msg, strlen(msg));
    return true;
}

void uplink_on_idle_watch(struct uplink *u, void (*cb)(void *arg), void *arg)
{
    u->idle_watch_cb = cb;
    u->idle_watch_arg = arg;
}

void uplink_free(struct uplink *u)
{
    if (!u)
        return;
    events_unsubscribe(u->events, u->sub);
    uplink_close(u);
    event_free(u->status_ev);
    chan_reader_free(&u->reader);
    for (size_t i = 0; i < u->n_gaps; i++)
        free(u->gaps[i].task_id);
    free(u->told_task);
    free(u->frame.data);
    free(u->last_status);
    free(u);
}
