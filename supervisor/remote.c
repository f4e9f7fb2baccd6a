/*
 * remote: owns a remote bot's timer, its health check, its address lookup,
 * its event stream and its last metrics scrape (see remote.h). Everything
 * runs from one timer, every health.interval (each bot's ticks at a phase of
 * its own, so a hive's bots are not all checked at one instant): a check of
 * GET /health (with health.timeout for connecting and answering), a lookup
 * of the url's host (so a moved name is followed; the proxy is only ever
 * given a numeric address and never resolves), a scrape of /metrics and a
 * read of /status while it runs and they may have changed, and a new event
 * stream when none is open.
 *
 * What /status and /metrics give the hive (queue, current task, counts,
 * pause, task counters and durations) changes only with the bot's events,
 * so they are read again after an event came, while tasks wait, while the
 * stream is down, and every REMOTE_REFRESH_TICKS ticks besides: at 300 idle
 * bots, 600 requests (and 300 JSON parses) a second fewer for the front
 * door's loop than reading both at every tick.
 *
 * A check's verdict moves the state: the first success of a starting bot, or
 * health.rise successes in a row of an unreachable one, make it running;
 * health.fall failures in a row make it unreachable. Each change is a
 * bot_state event in the hive's stream.
 *
 * The event stream asks for everything after the last seq of this bot the
 * merge holds (the merge reads that back from its own log, so a cut of the
 * network and a restart of the supervisor alike resume where they were);
 * the merge drops repeats.
 */
#include "supervisor/remote.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpclient.h"
#include "common/log.h"
#include "common/sse.h"
#include "common/tls.h"
#include "supervisor/merge.h"

#define REMOTE_SSE_LINE_MAX (4 * 1024 * 1024) /* an event's data line (a 1 MiB body, escaped) */
#define REMOTE_SSE_SILENCE_MS 45000           /* the bot comments every 15 s: 3 missed = gone */
#define REMOTE_METRICS_MAX (8 * 1024 * 1024)  /* a scrape larger than this is refused */
#define REMOTE_REFRESH_TICKS 10               /* /status and /metrics read at least this often */

enum remote_state { REMOTE_STOPPED, REMOTE_STARTING, REMOTE_RUNNING, REMOTE_UNREACHABLE };
static const char *const remote_state_names[] = {"stopped", "starting", "running", "unreachable"};

struct remote {
    struct event_base *base;
    struct httpclient *hc;
    struct merge *merge;
    struct roster_health health; /* copies: a reload frees the old roster */
    char *token;
    remote_changed_cb changed;
    void *changed_arg;
    char *id;
    char *url;      /* as the definition had it */
    char host[256]; /* of the url, without brackets */
    int port;
    char *headers; /* "Authorization: Bearer …\r\n" or NULL */
    enum remote_state state;
    int64_t since_ms;
    int ok_run, fail_run; /* checks in a row with this outcome */
    char reason[240];
    char address[INET6_ADDRSTRLEN];
    struct event *tick;
    bool first_tick; /* the next tick is the first since remote_start() */
    struct httpclient_call *check, *scrape, *stream, *status;
    struct httpclient_lookup *lookup;
    struct sse_reader sse;
    bool stream_ok;       /* the stream answered 200 */
    bool stale;           /* /status and /metrics may have changed since they were read */
    bool waiting;         /* its last /status had tasks queued */
    unsigned quiet_ticks; /* ticks since they were last read */
    /* https:// only: the context of its checks, scrapes and stream, and of
     * the proxy's connections (which verify HOST with it themselves). */
    SSL_CTX *tls;
    struct util_buf metrics;
};

/* ---- state ------------------------------------------------------------- */

/* Move R to STATE (with WHY when not running); a bot_state event. */
static void remote_set_state(struct remote *r, enum remote_state state, const char *why)
{
    snprintf(r->reason, sizeof r->reason, "%s", state == REMOTE_RUNNING ? "" : why);
    r->stale = true; /* read /status and /metrics at the next tick */
    if (state == r->state)
        return;
    enum remote_state from = r->state;
    r->state = state;
    r->since_ms = util_mono_ms();
    if (state != REMOTE_RUNNING && r->stream) {
        /* Its connection may be dead without knowing it yet (a cut link):
         * a fresh stream resumes from the merge's cursor once it is back. */
        httpclient_cancel(r->stream);
        r->stream = NULL;
    }
    if (state == REMOTE_UNREACHABLE)
        log_warn("%s: %s -> unreachable (%s)", r->id, remote_state_names[from], why);
    else
        log_info("%s: %s -> %s%s%s", r->id, remote_state_names[from], remote_state_names[state],
                 *r->reason ? ": " : "", r->reason);
    merge_bot_state(r->merge, r->id, remote_state_names[state], 0, r->reason, 0);
    if (r->changed)
        r->changed(state == REMOTE_RUNNING, r->changed_arg);
}

/* One health check's verdict. */
static void remote_verdict(struct remote *r, bool ok, const char *why)
{
    if (r->state == REMOTE_STOPPED)
        return;
    r->ok_run = ok ? r->ok_run + 1 : 0;
    r->fail_run = ok ? 0 : r->fail_run + 1;
    if (ok && (r->state == REMOTE_STARTING ||
               (r->state == REMOTE_UNREACHABLE && r->ok_run >= r->health.rise)))
        remote_set_state(r, REMOTE_RUNNING, "");
    else if (!ok && r->state != REMOTE_UNREACHABLE && r->fail_run >= r->health.fall)
        remote_set_state(r, REMOTE_UNREACHABLE, why);
    else if (!ok && r->state != REMOTE_RUNNING)
        snprintf(r->reason, sizeof r->reason, "%s", why);
}

/* ---- the health check --------------------------------------------------- */

static void remote_check_done(int err, const char *why, int status, const char *body, size_t len,
                              void *arg)
{
    struct remote *r = arg;
    char text[240];
    (void)body, (void)len;
    r->check = NULL;
    if (err == 0 && status == 200)
        return remote_verdict(r, true, "");
    if (err == 0)
        snprintf(text, sizeof text, "GET /health answered %d", status);
    else
        snprintf(text, sizeof text, "GET /health: %s", why);
    remote_verdict(r, false, text);
}

/* A request to R for PATH with its token and the health timeout. */
static struct httpclient_request remote_request(const struct remote *r, const char *path)
{
    int ms = (int)(r->health.timeout * 1000);
    return (struct httpclient_request){.host = r->host,
                                       .port = r->port,
                                       .path = path,
                                       .headers = r->headers,
                                       .connect_timeout_ms = ms,
                                       .read_timeout_ms = ms,
                                       .tls = r->tls};
}

/* ---- the address for the proxy ------------------------------------------ */

static void remote_resolved(int err, const char *why, const struct sockaddr *addr, socklen_t len,
                            void *arg)
{
    struct remote *r = arg;
    (void)len;
    r->lookup = NULL;
    if (err) {
        log_debug("%s: %s: %s", r->id, r->host, why);
        return;
    }
    const void *in = addr->sa_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)addr)->sin_addr;
    inet_ntop(addr->sa_family, in, r->address, sizeof r->address);
}

/* ---- metrics ------------------------------------------------------------ */

static void remote_scrape_done(int err, const char *why, int status, const char *body, size_t len,
                               void *arg)
{
    struct remote *r = arg;
    (void)why;
    r->scrape = NULL;
    if (err != 0 || status != 200) {
        r->stale = true; /* the last good scrape stays until a new one */
        return;
    }
    r->metrics.len = 0;
    util_buf_add(&r->metrics, body, len);
}

/* Copy the labels in [P, END) of a sample to B without any "bot" label. */
static void remote_labels_rest(const char *p, const char *end, struct util_buf *b)
{
    while (p < end) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || eq[1] != '"')
            return;
        const char *v = eq + 2;
        while (v < end && *v != '"')
            v += *v == '\\' ? 2 : 1;
        const char *next = v + 1 < end && v[1] == ',' ? v + 2 : v + 1;
        if (!(eq - p == 3 && memcmp(p, "bot", 3) == 0)) {
            util_buf_add(b, ",", 1);
            util_buf_add(b, p, (size_t)(v + 1 - p));
        }
        p = next;
    }
}

/* True when NAME (LEN bytes) is FAMILY or one of its histogram series. */
static bool remote_in_family(const char *name, size_t len, const char *family)
{
    static const char *const tails[] = {"", "_bucket", "_sum", "_count"};
    size_t flen = strlen(family);
    if (len < flen || memcmp(name, family, flen) != 0)
        return false;
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++)
        if (len - flen == strlen(tails[i]) && memcmp(name + flen, tails[i], len - flen) == 0)
            return true;
    return false;
}

/* Append the samples of FAMILY from the last scrape, relabelled. */
void remote_metrics(const struct remote *r, const char *family, struct util_buf *b)
{
    const char *p = r->metrics.data, *end = p + r->metrics.len;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        eol = eol ? eol : end;
        size_t nlen = strcspn(p, "{ \n");
        const char *after = p + nlen;
        if (*p != '#' && after < eol && remote_in_family(p, nlen, family)) {
            util_buf_add(b, p, nlen);
            util_buf_add(b, "{bot=\"", 6);
            util_buf_add(b, r->id, strlen(r->id));
            util_buf_add(b, "\"", 1);
            if (*after == '{') {
                const char *close = memchr(after, '}', (size_t)(eol - after));
                if (!close)
                    goto next;
                remote_labels_rest(after + 1, close, b);
                after = close + 1;
            }
            util_buf_add(b, "}", 1);
            util_buf_add(b, after, (size_t)(eol - after));
            util_buf_add(b, "\n", 1);
        }
    next:
        p = eol + 1;
    }
}

/* Its GET /status: the counters and queue /status and the dashboard show. */
static void remote_status_done(int err, const char *why, int status, const char *body, size_t len,
                               void *arg)
{
    struct remote *r = arg;
    (void)why;
    r->status = NULL;
    if (err != 0 || status != 200) {
        r->stale = true; /* not read: read again at the next tick */
        return;
    }
    if (r->state != REMOTE_RUNNING)
        return;
    merge_remote_status(r->merge, r->id, body, len);
    const json_t *q = json_object_get(merge_status(r->merge, r->id), "queue");
    r->waiting = json_integer_value(json_object_get(q, "realtime")) +
                     json_integer_value(json_object_get(q, "file")) >
                 0;
}

/* ---- the event stream --------------------------------------------------- */

/* The remote kept fewer events than our cursor asked for. When its log is
 * behind our cursor it started over (a new work dir): its numbers begin
 * again, and so must our cursor, or its new events would all look like
 * repeats. Otherwise the older ones are gone and the rest follow. */
static void remote_resync(struct remote *r, const char *data, size_t len)
{
    json_t *o = json_loadb(data, len, 0, NULL);
    json_t *last = json_object_get(o, "last_seq");
    uint64_t cursor = merge_last_seq(r->merge, r->id);
    if (json_is_integer(last) && (uint64_t)json_integer_value(last) < cursor) {
        log_warn("%s: its events log is behind ours (seq %lld < %llu): it started over; "
                 "merging its events from the start",
                 r->id, (long long)json_integer_value(last), (unsigned long long)cursor);
        merge_remote_rewind(r->merge, r->id);
    } else {
        log_warn("%s: events after seq %llu are no longer kept there; some are lost", r->id,
                 (unsigned long long)cursor);
    }
    json_decref(o);
}

/* One event of the remote's stream, into the merge. */
static void remote_sse_event(const struct sse_event *ev, void *arg)
{
    struct remote *r = arg;
    if (!ev->data_len)
        return;
    r->stale = true;
    if (strcmp(ev->type, "resync") == 0)
        return remote_resync(r, ev->data, ev->data_len);
    merge_remote_event(r->merge, r->id, ev->data, ev->data_len);
}

static void remote_stream_head(int status, void *arg)
{
    struct remote *r = arg;
    r->stream_ok = status == 200;
    if (!r->stream_ok)
        log_warn("%s: GET /api/events answered %d", r->id, status);
}

static void remote_stream_chunk(const char *data, size_t len, void *arg)
{
    struct remote *r = arg;
    if (!r->stream_ok)
        return;
    if (sse_reader_feed(&r->sse, data, len) != SSE_OK) {
        log_warn("%s: an event stream line over %d bytes; reconnecting", r->id,
                 REMOTE_SSE_LINE_MAX);
        httpclient_cancel(r->stream);
        r->stream = NULL;
    }
}

static void remote_stream_done(int err, const char *why, int status, const char *body, size_t len,
                               void *arg)
{
    struct remote *r = arg;
    (void)status, (void)body, (void)len;
    r->stream = NULL;
    if (err)
        log_debug("%s: event stream ended: %s", r->id, why);
}

/* Open the event stream after the last event merged. */
static void remote_stream_open(struct remote *r)
{
    static const struct httpclient_callbacks cbs = {remote_stream_done, remote_stream_head,
                                                    remote_stream_chunk};
    char path[64];
    snprintf(path, sizeof path, "/api/events?since=%llu",
             (unsigned long long)merge_last_seq(r->merge, r->id));
    struct httpclient_request req = remote_request(r, path);
    req.stream = true;
    req.read_timeout_ms = REMOTE_SSE_SILENCE_MS;
    sse_reader_free(&r->sse);
    sse_reader_init(&r->sse, REMOTE_SSE_LINE_MAX, remote_sse_event, r);
    r->stream_ok = false;
    r->stream = httpclient_send(r->hc, &req, &cbs, r);
}

/* ---- the tick ------------------------------------------------------------ */

/* Arm the next tick: an interval from now, plus, after the first tick, a
 * part of an interval proper to this bot. A hive's remote bots all start at
 * one instant; without that part their checks, scrapes and status reads
 * would all fall due at the same instant of every interval, one burst of
 * work (at 300 bots, tens of ms) that every proxied request arriving
 * meanwhile waits behind. Spread, each bot costs the loop a fraction of a
 * ms at its own moment. A whole interval always passes between two checks,
 * so a check in flight is never judged early. */
static void remote_tick_arm(struct remote *r)
{
    double iv = r->health.interval;
    if (r->first_tick) {
        uint32_t h = 2166136261u; /* FNV-1a of the id: the same phase at every start */
        for (const char *p = r->id; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
        iv += iv * (double)(h % 1000) / 1000.0;
        r->first_tick = false;
    }
    struct timeval tv = {(time_t)iv, (suseconds_t)((iv - (double)(time_t)iv) * 1e6)};
    event_add(r->tick, &tv);
}

/* Every interval: check, look the name up, scrape, follow the events. */
static void remote_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct remote *r = arg;
    (void)fd, (void)what;
    remote_tick_arm(r);
    if (r->check) { /* no answer within the interval: a failure, as HAProxy counts it */
        httpclient_cancel(r->check);
        r->check = NULL;
        remote_verdict(r, false, "GET /health: no answer within the interval");
        if (r->state == REMOTE_STOPPED)
            return;
    }
    static const struct httpclient_callbacks check_cbs = {remote_check_done, NULL, NULL};
    struct httpclient_request req = remote_request(r, "/health");
    r->check = httpclient_send(r->hc, &req, &check_cbs, r);
    if (!r->lookup)
        r->lookup = httpclient_resolve(r->hc, r->host, r->port, remote_resolved, r);
    if (r->state != REMOTE_RUNNING)
        return;
    /* Read /status and /metrics again when they may have changed (both
     * calls done: one still in flight may predate what made them stale). */
    bool live = r->stream && r->stream_ok;
    bool due = r->stale || r->waiting || !live || ++r->quiet_ticks >= REMOTE_REFRESH_TICKS;
    if (due && !r->scrape && !r->status) {
        static const struct httpclient_callbacks scrape_cbs = {remote_scrape_done, NULL, NULL};
        static const struct httpclient_callbacks status_cbs = {remote_status_done, NULL, NULL};
        struct httpclient_request scrape = remote_request(r, "/metrics");
        struct httpclient_request status = remote_request(r, "/status");
        scrape.max_body = REMOTE_METRICS_MAX;
        r->stale = false;
        r->quiet_ticks = 0;
        r->scrape = httpclient_send(r->hc, &scrape, &scrape_cbs, r);
        r->status = httpclient_send(r->hc, &status, &status_cbs, r);
    }
    if (!r->stream)
        remote_stream_open(r);
}

/* Cancel every call in flight. */
static void remote_calls_cancel(struct remote *r)
{
    httpclient_cancel(r->check);
    httpclient_cancel(r->scrape);
    httpclient_cancel(r->stream);
    httpclient_cancel(r->status);
    httpclient_lookup_cancel(r->lookup);
    r->check = r->scrape = r->stream = r->status = NULL;
    r->lookup = NULL;
}

/* Take the url and token of DEF. */
static void remote_take_def(struct remote *r, const struct roster_bot *def)
{
    r->health = def->health;
    free(r->token);
    r->token = def->remote.token ? xstrdup(def->remote.token) : NULL;
    free(r->url);
    r->url = xstrdup(def->remote.url);
    bool tls = false;
    char err[300];
    if (!roster_url_split(def->remote.url, &tls, r->host, sizeof r->host, &r->port))
        r->host[0] = '\0'; /* the roster refused it already */
    if (r->tls)
        SSL_CTX_free(r->tls); /* pools still using it hold references of their own */
    r->tls = NULL;
    if (tls && !(r->tls = tls_client_ctx(def->remote.ca, err, sizeof err)))
        log_warn("%s: %s", r->id, err); /* its checks fail, and say so */
    free(r->headers);
    r->headers =
        def->remote.token ? xasprintf("Authorization: Bearer %s\r\n", def->remote.token) : NULL;
}

struct remote *remote_new(struct event_base *base, struct httpclient *hc, struct merge *merge,
                          const struct roster_bot *def, remote_changed_cb changed, void *arg)
{
    struct remote *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->hc = hc;
    r->merge = merge;
    r->id = xstrdup(def->id);
    r->changed = changed;
    r->changed_arg = arg;
    r->tick = evtimer_new(base, remote_tick_cb, r);
    sse_reader_init(&r->sse, REMOTE_SSE_LINE_MAX, remote_sse_event, r);
    remote_take_def(r, def);
    snprintf(r->reason, sizeof r->reason, "not started");
    return r;
}

void remote_free(struct remote *r)
{
    if (!r)
        return;
    remote_calls_cancel(r);
    if (r->tls)
        SSL_CTX_free(r->tls);
    event_free(r->tick);
    sse_reader_free(&r->sse);
    free(r->metrics.data);
    free(r->headers);
    free(r->url);
    free(r->token);
    free(r->id);
    free(r);
}

void remote_redefine(struct remote *r, const struct roster_bot *def)
{
    bool moved = strcmp(r->url, def->remote.url) != 0;
    remote_take_def(r, def);
    if (r->state == REMOTE_STOPPED)
        return;
    if (moved) {
        r->address[0] = '\0';
        remote_calls_cancel(r);
    }
    remote_start(r);
}

/* Start checking: at once, then every interval. */
void remote_start(struct remote *r)
{
    if (r->state == REMOTE_STOPPED) {
        r->ok_run = r->fail_run = 0;
        remote_set_state(r, REMOTE_STARTING, "no health check answered yet");
    }
    r->first_tick = true;
    event_del(r->tick);
    event_active(r->tick, EV_TIMEOUT, 1);
}

void remote_stop(struct remote *r)
{
    event_del(r->tick);
    remote_calls_cancel(r);
    remote_set_state(r, REMOTE_STOPPED, "stopped");
}

const char *remote_state(const struct remote *r)
{
    return remote_state_names[r->state];
}

bool remote_running(const struct remote *r)
{
    return r->state == REMOTE_RUNNING;
}

const char *remote_reason(const struct remote *r)
{
    return r->reason;
}

double remote_uptime(const struct remote *r)
{
    return r->state == REMOTE_RUNNING ? (double)(util_mono_ms() - r->since_ms) / 1000.0 : 0;
}

const char *remote_address(const struct remote *r)
{
    return r->address;
}

int remote_port(const struct remote *r)
{
    return r->port;
}

struct ssl_ctx_st *remote_tls(const struct remote *r)
{
    return r->tls;
}

const char *remote_host(const struct remote *r)
{
    return r->host;
}

const char *remote_token(const struct remote *r)
{
    return r->token;
}
