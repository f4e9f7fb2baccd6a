/*
 * ssehub: owns the subscribers of an event stream and their connections
 * from the head of the answer to its end. A subscriber leaves when its
 * client goes away (the close callback), when it is too far behind (its
 * connection is aborted: the queued bytes are freed with it) or when the hub
 * is freed. Subscribers with the same filters form a group: a published
 * event is tested and framed once per group, not once per subscriber.
 *
 * Published events are gathered per subscriber and written together: with
 * many subscribers, one write per event and subscriber was most of what the
 * stream cost the process serving it (a busy bot makes hundreds of events a
 * second). A quiet stream writes at the next turn of the loop; one that
 * wrote less than the batch interval ago waits for the rest of it. The
 * interval is SSEHUB_BATCH_MIN_MS while batches carry an event or two (a
 * tick every 20 ms is written at once), and doubles up to
 * SSEHUB_BATCH_MAX_MS while they carry many: a write costs the same few
 * microseconds for one event as for fifty, and at hundreds of events a
 * second per subscriber those writes, not the bytes, were what the
 * subscribers cost the bot (a busy stream's events then wait at most that
 * long, which nobody watching sees).
 * A group's batch is one buffer, queued by reference (not copied) on the
 * connection of each of its subscribers and freed once the last has sent it.
 *
 * What 100 subscribers cost a busy worker (bench E2, perf): ~25-35 µs per
 * mock task, nearly all of it in the kernel copying the ~1.2 KB of events a
 * task makes into each subscriber's socket (_copy_from_iter under writev,
 * ~115 KB per subscriber per 25 ms batch at 4,000 tasks/s); the hub's own
 * code (framing, groups, references) is under 1% of the samples. A longer
 * interval (100 ms) saves nothing more, and tee(2)+splice(2) of one pipe
 * into every socket (no copy per subscriber) was no cheaper than writev in a
 * stand-alone test on the bench machine: the bytes are the cost.
 *
 * So a live subscriber's bytes are written by a thread (common/ssefan.c):
 * once what its head and replay queued on the connection has gone out, its
 * subscription becomes a lane of the hub's writer thread, and the batches
 * are queued there instead (by reference all the same). The loop still
 * decides everything: what goes to whom, who is too far behind, who is
 * gone. When the subscriber leaves, what the thread had not written goes
 * back to the connection, in order. A subscriber stays on the loop's writes
 * when no lane can be had (out of descriptors, no thread).
 */
#include "common/ssehub.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sse.h"
#include "common/ssefan.h"
#include "common/util.h"

#define SSEHUB_MAX_TYPES 16
#define SSEHUB_BATCH_MIN_MS 5
#define SSEHUB_BATCH_MAX_MS 25
#define SSEHUB_BATCH_BUSY 4 /* events in a batch that make the interval longer */

/* The subscribers that asked for the same ?bot= and ?type= (most often
 * none): what they get is decided and gathered once for all of them. */
struct ssehub_group {
    char *bot;                     /* ?bot= filter, or NULL */
    char *types[SSEHUB_MAX_TYPES]; /* ?type= filter (n_types 0: all) */
    size_t n_types;
    size_t n_live;
    struct util_buf batch;            /* published, not yet written */
    struct ssehub_sub *subs;          /* its subscribers, live or replaying */
    struct ssehub_group *prev, *next; /* the hub's list */
};

struct ssehub_sub {
    struct ssehub *hub;
    struct ssehub_group *group;
    struct http_conn *conn;
    struct ssefan_lane *lane; /* written by the hub's thread (live, caught up) */
    size_t ceiling;           /* queued output beyond this: dropped */
    size_t from;              /* its part of the group's batch starts here (went live) */
    bool live;
    struct ssehub_sub *prev, *next; /* the group's list */
};

struct ssehub {
    struct ssehub_group *groups;
    size_t n_live;
    size_t max_pending;
    uint64_t dropped;
    bool flushing;           /* a group left empty is freed after the flush */
    struct event *keepalive; /* armed only while there are subscribers */
    struct timeval keepalive_tv;
    size_t n_subs;         /* live or replaying */
    struct event *flush;   /* one-shot: write the batches */
    int64_t flushed_ms;    /* when they were last written (monotonic) */
    int batch_ms;          /* the batch interval now */
    size_t batch_events;   /* events gathered since the last write */
    struct util_buf frame; /* the last framed event, reused */
    struct ssefan *fan;    /* the writer thread of the live subscribers */
};

/* One written batch, referenced by the connections and lanes it is queued
 * on (released on the loop or the writer thread). */
struct ssehub_blob {
    atomic_size_t refs;
    char *data;
};

/* Release a copy queued on a lane (ARG is the copy). */
static void ssehub_copy_free(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    free(arg);
}

/* Queue LEN bytes at DATA for S, copied. */
static void ssehub_write_copy(struct ssehub_sub *s, const char *data, size_t len)
{
    if (!s->lane) {
        http_respond_stream_write(s->conn, data, len);
        return;
    }
    char *copy = xmalloc(len);
    memcpy(copy, data, len);
    ssefan_push(s->lane, copy, len, ssehub_copy_free, copy);
}

/* Keepalive timer: a comment to every subscriber, live or replaying. */
static void ssehub_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct ssehub *hub = arg;
    static const char comment[] = ": keepalive\n\n";
    for (struct ssehub_group *g = hub->groups; g; g = g->next)
        for (struct ssehub_sub *s = g->subs; s; s = s->next) {
            if (s->lane)
                ssefan_push(s->lane, comment, sizeof comment - 1, NULL, NULL);
            else
                http_respond_stream_write(s->conn, comment, sizeof comment - 1);
        }
}

static void ssehub_flush_cb(evutil_socket_t fd, short what, void *arg);

struct ssehub *ssehub_new(struct event_base *base, size_t max_pending, int keepalive_ms,
                          bool writer_thread)
{
    struct ssehub *hub = xcalloc(1, sizeof *hub);
    hub->max_pending = max_pending;
    hub->batch_ms = SSEHUB_BATCH_MIN_MS;
    hub->flush = event_new(base, -1, 0, ssehub_flush_cb, hub);
    hub->keepalive = event_new(base, -1, EV_PERSIST, ssehub_keepalive_cb, hub);
    hub->keepalive_tv = (struct timeval){keepalive_ms / 1000, (keepalive_ms % 1000) * 1000};
    hub->fan = writer_thread ? ssefan_new(base) : NULL;
    return hub;
}

/* Free G and what it holds (not in the hub's list, or just taken out). */
static void ssehub_group_destroy(struct ssehub_group *g)
{
    free(g->bot);
    for (size_t i = 0; i < g->n_types; i++)
        free(g->types[i]);
    free(g->batch.data);
    free(g);
}

/* Take G out of the hub's list and free it (it has no subscriber left). */
static void ssehub_group_free(struct ssehub *hub, struct ssehub_group *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        hub->groups = g->next;
    if (g->next)
        g->next->prev = g->prev;
    ssehub_group_destroy(g);
}

/* A range the writer thread had not written: back to the connection
 * (CTX), after what is queued there (nothing: a lane starts drained). */
static void ssehub_unsent(void *ctx, const void *data, size_t len, ssefan_cleanup cleanup,
                          void *arg)
{
    struct http_conn *conn = ctx;
    if (cleanup)
        http_respond_stream_write_ref(conn, data, len, cleanup, arg);
    else
        http_respond_stream_write(conn, data, len);
}

/* Forget SUB and end its answer (its connection then closes). */
static void ssehub_remove(struct ssehub_sub *s)
{
    struct ssehub *hub = s->hub;
    struct ssehub_group *g = s->group;
    if (s->prev)
        s->prev->next = s->next;
    else
        g->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->live) {
        hub->n_live--;
        g->n_live--;
    }
    if (s->lane)
        ssefan_remove(s->lane, ssehub_unsent, s->conn);
    http_conn_set_drain_cb(s->conn, NULL, NULL);
    http_conn_set_close_cb(s->conn, NULL, NULL);
    http_respond_stream_end(s->conn, true);
    free(s);
    /* An idle bot with no one listening must not wake for nobody: at 1,000
     * bots each wake-up of an idle worker is most of the hive's idle CPU. */
    if (--hub->n_subs == 0)
        event_del(hub->keepalive);
    if (!g->subs && !hub->flushing)
        ssehub_group_free(hub, g);
}

/* Any subscriber of the hub, or NULL. */
static struct ssehub_sub *ssehub_any(const struct ssehub *hub)
{
    for (struct ssehub_group *g = hub->groups; g; g = g->next)
        if (g->subs)
            return g->subs;
    return NULL;
}

void ssehub_free(struct ssehub *hub)
{
    if (!hub)
        return;
    struct ssehub_sub *s;
    while ((s = ssehub_any(hub)))
        ssehub_remove(s);
    while (hub->groups)
        ssehub_group_free(hub, hub->groups);
    ssefan_free(hub->fan);
    event_free(hub->keepalive);
    event_free(hub->flush);
    free(hub->frame.data);
    free(hub);
}

int ssehub_cursor(const struct http_request *req, uint64_t *cursor)
{
    const char *h = http_request_header(req, "Last-Event-ID");
    if (h)
        return sse_cursor_parse(h, cursor) == 0 ? 1 : -1;
    char *since = http_query_param(req->query, "since");
    if (!since)
        return 0;
    int r = sse_cursor_parse(since, cursor) == 0 ? 1 : -1;
    free(since);
    return r;
}

/* The client went away. */
static void ssehub_closed_cb(struct http_conn *conn, void *arg)
{
    (void)conn;
    ssehub_remove(arg);
}

/* Read ?type=a,b into G; false when it names too many. */
static bool ssehub_parse_types(struct ssehub_group *g, const char *query)
{
    char *list = http_query_param(query, "type");
    if (!list)
        return true;
    bool ok = true;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (g->n_types == SSEHUB_MAX_TYPES) {
            ok = false;
            break;
        }
        g->types[g->n_types++] = xstrdup(t);
    }
    free(list);
    return ok;
}

/* True when A and B have the same filters. */
static bool ssehub_group_same(const struct ssehub_group *a, const struct ssehub_group *b)
{
    if ((a->bot == NULL) != (b->bot == NULL) || (a->bot && strcmp(a->bot, b->bot) != 0))
        return false;
    if (a->n_types != b->n_types)
        return false;
    for (size_t i = 0; i < a->n_types; i++)
        if (strcmp(a->types[i], b->types[i]) != 0)
            return false;
    return true;
}

/* The group of REQ's filters (made when new); NULL when they are not valid. */
static struct ssehub_group *ssehub_group_for(struct ssehub *hub, const struct http_request *req)
{
    struct ssehub_group *want = xcalloc(1, sizeof *want);
    want->bot = http_query_param(req->query, "bot");
    if (!ssehub_parse_types(want, req->query)) {
        ssehub_group_destroy(want);
        return NULL;
    }
    for (struct ssehub_group *g = hub->groups; g; g = g->next) {
        if (ssehub_group_same(g, want)) {
            ssehub_group_destroy(want);
            return g;
        }
    }
    want->next = hub->groups;
    if (hub->groups)
        hub->groups->prev = want;
    hub->groups = want;
    return want;
}

struct ssehub_sub *ssehub_open(struct ssehub *hub, struct http_conn *conn,
                               const struct http_request *req)
{
    struct ssehub_group *g = ssehub_group_for(hub, req);
    if (!g) {
        http_respond_error(conn, 400, "too many types in type=", NULL);
        return NULL;
    }
    struct ssehub_sub *s = xcalloc(1, sizeof *s);
    s->hub = hub;
    s->group = g;
    s->conn = conn;
    http_respond_stream_begin(conn, 200, NULL,
                              "Content-Type: text/event-stream\r\n"
                              "Cache-Control: no-cache\r\n"
                              "X-Accel-Buffering: no\r\n");
    /* A comment at once: clients (and proxies) see the stream is open. */
    static const char hello[] = ": hive events\n\n";
    http_respond_stream_write(conn, hello, sizeof hello - 1);
    http_conn_set_close_cb(conn, ssehub_closed_cb, s);
    s->next = g->subs;
    if (g->subs)
        g->subs->prev = s;
    g->subs = s;
    if (hub->n_subs++ == 0)
        event_add(hub->keepalive, &hub->keepalive_tv);
    return s;
}

/* True when G's filters let an event of TYPE about BOT through. */
static bool ssehub_wants(const struct ssehub_group *g, const char *type, const char *bot)
{
    if (!g->bot && !g->n_types) /* no filter: the common case, no compare */
        return true;
    if (strcmp(type, "resync") == 0) /* about the stream itself: never filtered */
        return true;
    if (g->bot && (!bot || strcmp(g->bot, bot) != 0))
        return false;
    if (!g->n_types)
        return true;
    for (size_t i = 0; i < g->n_types; i++)
        if (strcmp(g->types[i], type) == 0)
            return true;
    return false;
}

/* Frame one event into the hub's buffer. */
static void ssehub_frame(struct ssehub *hub, const char *id, const char *type, const char *json,
                         size_t len)
{
    hub->frame.len = 0;
    sse_frame(&hub->frame, id, type, json, len);
}

void ssehub_send_to(struct ssehub_sub *s, const char *id, const char *type, const char *bot,
                    const char *json, size_t len)
{
    if (!ssehub_wants(s->group, type, bot))
        return;
    ssehub_frame(s->hub, id, type, json, len);
    ssehub_write_copy(s, s->hub->frame.data, s->hub->frame.len);
}

/* The writer thread found S's socket failed: the client is gone. */
static void ssehub_lane_dead_cb(void *arg)
{
    struct ssehub_sub *s = arg;
    http_conn_abort(s->conn); /* its close callback removes it */
}

/* S's connection has sent all it had queued: from now on the writer thread
 * writes its stream (or the loop still does, when no lane can be had). */
static void ssehub_to_lane(struct ssehub_sub *s)
{
    int fd = http_conn_fd(s->conn);
    if (fd < 0 || !s->hub->fan || !(s->lane = ssefan_add(s->hub->fan, fd, ssehub_lane_dead_cb, s)))
        return;
    s->ceiling = s->hub->max_pending;
}

/* S's connection drained below its low-water mark: a lane once it is empty. */
static void ssehub_drained_cb(struct http_conn *conn, void *arg)
{
    if (http_conn_output_pending(conn) > 0)
        return;
    http_conn_set_drain_cb(conn, NULL, NULL);
    ssehub_to_lane(arg);
}

void ssehub_live(struct ssehub_sub *s)
{
    s->live = true;
    s->from = s->group->batch.len; /* what was gathered before is not its */
    s->hub->n_live++;
    s->group->n_live++;
    s->ceiling = http_conn_output_pending(s->conn) + s->hub->max_pending;
    if (http_conn_output_pending(s->conn) == 0)
        ssehub_to_lane(s);
    else
        http_conn_set_drain_cb(s->conn, ssehub_drained_cb, s);
}

/* A connection has sent (or dropped) its reference to a blob. */
static void ssehub_blob_unref(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    struct ssehub_blob *b = arg;
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        free(b->data);
        free(b);
    }
}

/* Queue G's batch on each of its live subscribers; drop those too far
 * behind. */
static void ssehub_flush_group(struct ssehub *hub, struct ssehub_group *g)
{
    size_t len = g->batch.len;
    struct ssehub_blob *blob = xcalloc(1, sizeof *blob);
    atomic_init(&blob->refs, 1); /* this function's own, until it returns */
    blob->data = g->batch.data;
    g->batch = (struct util_buf){0};
    struct ssehub_sub *next;
    for (struct ssehub_sub *s = g->subs; s; s = next) {
        next = s->next;
        size_t from = s->from;
        s->from = 0;
        if (!s->live || from >= len)
            continue;
        size_t n = len - from;
        /* Behind: what the client's socket refused. A lane's bytes the
         * thread has not tried yet are not (on a loaded machine the thread
         * can lag a reader that reads: counting its queue dropped one, in
         * test_events). */
        size_t behind = s->lane ? ssefan_refused(s->lane) : http_conn_output_pending(s->conn);
        if (behind + n > s->ceiling) {
            hub->dropped++;
            log_info("event stream of %s dropped: %zu bytes behind", http_conn_peer_name(s->conn),
                     behind);
            http_conn_abort(s->conn); /* its close callback removes it */
            continue;
        }
        atomic_fetch_add(&blob->refs, 1);
        if (s->lane)
            ssefan_push(s->lane, blob->data + from, n, ssehub_blob_unref, blob);
        else
            http_respond_stream_write_ref(s->conn, blob->data + from, n, ssehub_blob_unref, blob);
    }
    ssehub_blob_unref(NULL, 0, blob);
}

/* Write every group's batch, then free the groups the flush emptied. */
static void ssehub_flush(struct ssehub *hub)
{
    hub->flushed_ms = util_mono_ms();
    if (hub->batch_events > SSEHUB_BATCH_BUSY && hub->batch_ms < SSEHUB_BATCH_MAX_MS)
        hub->batch_ms =
            hub->batch_ms * 2 < SSEHUB_BATCH_MAX_MS ? hub->batch_ms * 2 : SSEHUB_BATCH_MAX_MS;
    else if (hub->batch_events <= 1 && hub->batch_ms > SSEHUB_BATCH_MIN_MS)
        hub->batch_ms =
            hub->batch_ms / 2 > SSEHUB_BATCH_MIN_MS ? hub->batch_ms / 2 : SSEHUB_BATCH_MIN_MS;
    hub->batch_events = 0;
    hub->flushing = true;
    for (struct ssehub_group *g = hub->groups; g; g = g->next)
        if (g->batch.len)
            ssehub_flush_group(hub, g);
    hub->flushing = false;
    struct ssehub_group *next;
    for (struct ssehub_group *g = hub->groups; g; g = next) {
        next = g->next;
        if (!g->subs)
            ssehub_group_free(hub, g);
    }
}

static void ssehub_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    ssehub_flush(arg);
}

void ssehub_publish(struct ssehub *hub, const char *id, const char *type, const char *bot,
                    const char *json, size_t len)
{
    bool framed = false;
    for (struct ssehub_group *g = hub->groups; g; g = g->next) {
        if (!g->n_live || !ssehub_wants(g, type, bot))
            continue;
        if (!framed)
            ssehub_frame(hub, id, type, json, len);
        framed = true;
        util_buf_add(&g->batch, hub->frame.data, hub->frame.len);
    }
    hub->batch_events += framed;
    if (!framed || event_pending(hub->flush, EV_TIMEOUT, NULL))
        return;
    int64_t wait = hub->flushed_ms + hub->batch_ms - util_mono_ms();
    struct timeval tv = {0, wait > 0 ? (suseconds_t)wait * 1000 : 0};
    event_add(hub->flush, &tv);
}

void ssehub_close_all(struct ssehub *hub)
{
    ssehub_flush(hub); /* what was published before the end goes out first */
    struct ssehub_sub *s;
    while ((s = ssehub_any(hub))) {
        http_conn_abort(s->conn); /* its close callback removes it */
        if (ssehub_any(hub) == s) /* the client had gone already */
            ssehub_remove(s);
    }
}

size_t ssehub_subscribers(const struct ssehub *hub)
{
    return hub->n_live;
}

uint64_t ssehub_dropped(const struct ssehub *hub)
{
    return hub->dropped;
}
