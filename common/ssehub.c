/*
 * ssehub: owns the subscribers of an event stream and their connections
 * from the head of the answer to its end. A subscriber leaves when its
 * client goes away (the close callback), when it is too far behind (its
 * connection is aborted: the queued bytes are freed with it) or when the hub
 * is freed. Each published event is framed once per distinct filter result,
 * not once per subscriber.
 *
 * Published events are gathered per subscriber and written together: with
 * many subscribers, one write per event and subscriber was most of what the
 * stream cost the process serving it (a busy bot makes hundreds of events a
 * second). A quiet stream writes at the next turn of the loop; one that
 * wrote less than SSEHUB_BATCH_MS ago waits for the rest of that time, so
 * a busy stream writes at most 1000 / SSEHUB_BATCH_MS times a second.
 */
#include "common/ssehub.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sse.h"
#include "common/util.h"

#define SSEHUB_MAX_TYPES 16
#define SSEHUB_BATCH_MS 5

struct ssehub_sub {
    struct ssehub *hub;
    struct http_conn *conn;
    char *bot;                     /* ?bot= filter, or NULL */
    char *types[SSEHUB_MAX_TYPES]; /* ?type= filter (n_types 0: all) */
    size_t n_types;
    size_t ceiling; /* queued output beyond this: dropped */
    bool live;
    struct util_buf batch;          /* published, not yet written */
    struct ssehub_sub *prev, *next; /* the hub's list (every open subscriber) */
};

struct ssehub {
    struct ssehub_sub *subs;
    size_t n_live;
    size_t max_pending;
    uint64_t dropped;
    struct event *keepalive;
    struct event *flush;   /* one-shot: write the batches */
    int64_t flushed_ms;    /* when they were last written (monotonic) */
    struct util_buf frame; /* the last framed event, reused */
};

/* Keepalive timer: a comment to every subscriber, live or replaying. */
static void ssehub_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct ssehub *hub = arg;
    static const char comment[] = ": keepalive\n\n";
    for (struct ssehub_sub *s = hub->subs; s; s = s->next)
        http_respond_stream_write(s->conn, comment, sizeof comment - 1);
}

static void ssehub_flush_cb(evutil_socket_t fd, short what, void *arg);

struct ssehub *ssehub_new(struct event_base *base, size_t max_pending, int keepalive_ms)
{
    struct ssehub *hub = xcalloc(1, sizeof *hub);
    hub->max_pending = max_pending;
    hub->flush = event_new(base, -1, 0, ssehub_flush_cb, hub);
    hub->keepalive = event_new(base, -1, EV_PERSIST, ssehub_keepalive_cb, hub);
    struct timeval tv = {keepalive_ms / 1000, (keepalive_ms % 1000) * 1000};
    event_add(hub->keepalive, &tv);
    return hub;
}

/* Forget SUB and end its answer (its connection then closes). */
static void ssehub_remove(struct ssehub_sub *s)
{
    struct ssehub *hub = s->hub;
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->live)
        hub->n_live--;
    http_conn_set_close_cb(s->conn, NULL, NULL);
    http_respond_stream_end(s->conn, true);
    free(s->bot);
    for (size_t i = 0; i < s->n_types; i++)
        free(s->types[i]);
    free(s->batch.data);
    free(s);
}

void ssehub_free(struct ssehub *hub)
{
    if (!hub)
        return;
    while (hub->subs)
        ssehub_remove(hub->subs);
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

/* Read ?type=a,b into S; false when it names too many. */
static bool ssehub_parse_types(struct ssehub_sub *s, const char *query)
{
    char *list = http_query_param(query, "type");
    if (!list)
        return true;
    bool ok = true;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (s->n_types == SSEHUB_MAX_TYPES) {
            ok = false;
            break;
        }
        s->types[s->n_types++] = xstrdup(t);
    }
    free(list);
    return ok;
}

struct ssehub_sub *ssehub_open(struct ssehub *hub, struct http_conn *conn,
                               const struct http_request *req)
{
    struct ssehub_sub *s = xcalloc(1, sizeof *s);
    s->hub = hub;
    s->conn = conn;
    s->bot = http_query_param(req->query, "bot");
    if (!ssehub_parse_types(s, req->query)) {
        free(s->bot);
        for (size_t i = 0; i < s->n_types; i++)
            free(s->types[i]);
        free(s);
        http_respond_error(conn, 400, "too many types in type=", NULL);
        return NULL;
    }
    http_respond_stream_begin(conn, 200, NULL,
                              "Content-Type: text/event-stream\r\n"
                              "Cache-Control: no-cache\r\n"
                              "X-Accel-Buffering: no\r\n");
    /* A comment at once: clients (and proxies) see the stream is open. */
    static const char hello[] = ": hive events\n\n";
    http_respond_stream_write(conn, hello, sizeof hello - 1);
    http_conn_set_close_cb(conn, ssehub_closed_cb, s);
    s->next = hub->subs;
    if (hub->subs)
        hub->subs->prev = s;
    hub->subs = s;
    return s;
}

/* True when SUB's filters let an event of TYPE about BOT through. */
static bool ssehub_wants(const struct ssehub_sub *s, const char *type, const char *bot)
{
    if (strcmp(type, "resync") == 0) /* about the stream itself: never filtered */
        return true;
    if (s->bot && (!bot || strcmp(s->bot, bot) != 0))
        return false;
    if (!s->n_types)
        return true;
    for (size_t i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i], type) == 0)
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
    if (!ssehub_wants(s, type, bot))
        return;
    ssehub_frame(s->hub, id, type, json, len);
    http_respond_stream_write(s->conn, s->hub->frame.data, s->hub->frame.len);
}

void ssehub_live(struct ssehub_sub *s)
{
    s->live = true;
    s->hub->n_live++;
    s->ceiling = http_conn_output_pending(s->conn) + s->hub->max_pending;
}

/* Write every subscriber's batch; drop those too far behind. */
static void ssehub_flush(struct ssehub *hub)
{
    struct ssehub_sub *next;
    hub->flushed_ms = util_mono_ms();
    for (struct ssehub_sub *s = hub->subs; s; s = next) {
        next = s->next;
        if (!s->batch.len)
            continue;
        size_t n = s->batch.len;
        s->batch.len = 0;
        if (http_conn_output_pending(s->conn) + n > s->ceiling) {
            hub->dropped++;
            log_info("event stream of %s dropped: %zu bytes behind", http_conn_peer(s->conn),
                     http_conn_output_pending(s->conn));
            http_conn_abort(s->conn); /* its close callback removes it */
            continue;
        }
        http_respond_stream_write(s->conn, s->batch.data, n);
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
    for (struct ssehub_sub *s = hub->subs; s; s = s->next) {
        if (!s->live || !ssehub_wants(s, type, bot))
            continue;
        if (!framed)
            ssehub_frame(hub, id, type, json, len);
        framed = true;
        util_buf_add(&s->batch, hub->frame.data, hub->frame.len);
    }
    if (!framed || event_pending(hub->flush, EV_TIMEOUT, NULL))
        return;
    int64_t wait = hub->flushed_ms + SSEHUB_BATCH_MS - util_mono_ms();
    struct timeval tv = {0, wait > 0 ? (suseconds_t)wait * 1000 : 0};
    event_add(hub->flush, &tv);
}

void ssehub_close_all(struct ssehub *hub)
{
    ssehub_flush(hub); /* what was published before the end goes out first */
    while (hub->subs) {
        struct ssehub_sub *s = hub->subs;
        http_conn_abort(s->conn); /* its close callback removes it */
        if (hub->subs == s)       /* the client had gone already */
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
