/*
 * pooltask: the supervisor's POST /api/task. One forward per client request:
 * choose a bot (pool.c), open a connection of its own to that bot's worker
 * (its private socket first, as the proxy does, else its port), send the
 * task with `Connection: close`, read the whole short answer, and either
 * answer the client (the bot's 202, or its refusal of the task itself, each
 * with bot_id added) or move on to the next candidate (429, 503, 5xx, no
 * connection). The task body goes up without its pool/tags keys, and with
 * a task_id chosen here when it has none.
 *
 * A bot that took the connection and then went away without a whole answer
 * may have stored the task (it is durable before the bot says 202): giving
 * it to another bot could run it twice, so the client gets 502 naming the
 * bot and the task id, and can ask that bot after it once it is back.
 *
 * The loads the choice reads come from the merge's news (merge.h) — each
 * worker's status over its channel and every bot_state — plus one count per
 * task handed over; no worker is polled.
 */
#include "supervisor/pooltask.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/pool.h"

#define POOLTASK_MAX_TRIES 16           /* candidates tried for one task */
#define POOLTASK_TIMEOUT_S 15           /* one bot's answer, connect included */
#define POOLTASK_MAX_ANSWER (64 * 1024) /* a worker's answer to POST /api/task is small */
#define POOLTASK_MAX_TAGS 32

struct pooltask_fwd;

struct pooltask {
    struct event_base *base;
    struct hive *hive;
    struct pool *pool;
    unsigned gen; /* hive_roster_gen() the index was built from */
    bool built;
    int listener; /* on the merge: bots' states and statuses */
    LIST_HEAD(, pooltask_fwd) fwds;
};

/* One client's task on its way to a bot. */
struct pooltask_fwd {
    LIST_ENTRY(pooltask_fwd) entry;
    struct pooltask *pt;
    struct http_conn *conn;
    char *pool;  /* NULL: any */
    char **tags; /* N_TAGS */
    size_t n_tags;
    char *what; /* "pool X" / "tags a, b", for messages */
    char *body; /* the task as the bot gets it */
    size_t tried[POOLTASK_MAX_TRIES];
    size_t n_tried;
    long bot; /* the bot being asked, its index in the pool */
    char bot_id[80];
    char task_id[80];
    bool connected; /* the bot took the connection: the task may be there */
    struct bufferevent *bev;
    http_parser parser;
    struct util_buf answer;
    bool complete;
    int last_refusal; /* the last 429/503/502 met; 0: none */
};

static void pooltask_next(struct pooltask_fwd *f);

/* ---- the index and its loads ---------------------------------------------- */

/* Bot B's load from its worker's status STATUS. */
static void pooltask_note_status(struct pooltask *pt, long i, const json_t *status)
{
    const char *s = json_string_value(json_object_get(status, "status"));
    json_t *q = json_object_get(status, "queue");
    json_int_t queued = json_integer_value(json_object_get(q, "realtime")) +
                        json_integer_value(json_object_get(q, "file"));
    enum pool_activity act = POOL_PAUSED;
    if (!s || strcmp(s, "idle") == 0)
        act = POOL_IDLE;
    else if (strcmp(s, "busy") == 0)
        act = POOL_BUSY;
    pool_note_load(pt->pool, (size_t)i, act, queued > 0 ? (unsigned)queued : 0, util_mono_ns());
}

/* Rebuild the index when the roster is not the one it was built from. A bot
 * in cli-only mode serves no HTTP: it is in no pool. */
static void pooltask_sync(struct pooltask *pt)
{
    const struct roster *r = hive_roster(pt->hive);
    if (pt->built && pt->gen == hive_roster_gen(pt->hive))
        return;
    struct pool_bot_def *defs = xcalloc(r->n_bots + 1, sizeof *defs);
    for (size_t i = 0; i < r->n_bots; i++) {
        const struct roster_bot *b = &r->bots[i];
        bool http = strcmp(b->mode, "cli-only") != 0;
        defs[i] = (struct pool_bot_def){b->id, http ? b->pool : NULL,
                                        http ? (const char *const *)b->tags : NULL};
    }
    pool_set_bots(pt->pool, defs, r->n_bots);
    free(defs);
    pt->gen = hive_roster_gen(pt->hive);
    pt->built = true;
    struct hive_bot_info info;
    for (size_t i = 0; hive_bot_at(pt->hive, i, &info); i++) {
        long p = pool_find(pt->pool, info.id);
        const json_t *st = merge_status(hive_merge(pt->hive), info.id);
        pool_note_running(pt->pool, (size_t)p, info.running);
        if (st)
            pooltask_note_status(pt, p, st);
    }
}

/* The merge's news of a bot: its state or its worker's status. */
static void pooltask_observe(const struct merge_note *note, void *arg)
{
    struct pooltask *pt = arg;
    const char *bot_id = note->bot_id, *state = note->state;
    const json_t *status = note->status;
    if (!pt->built) /* the first request builds it, from the state as it is then */
        return;
    pooltask_sync(pt);
    long i = pool_find(pt->pool, bot_id);
    if (i < 0)
        return;
    if (state)
        pool_note_running(pt->pool, (size_t)i, strcmp(state, "running") == 0);
    if (status)
        pooltask_note_status(pt, i, status);
}

struct pooltask *pooltask_new(struct event_base *base, struct hive *hive)
{
    struct pooltask *pt = xcalloc(1, sizeof *pt);
    pt->base = base;
    pt->hive = hive;
    pt->pool = pool_new();
    LIST_INIT(&pt->fwds);
    pt->listener =
        merge_listen(hive_merge(hive), MERGE_NOTE_STATE | MERGE_NOTE_STATUS, pooltask_observe, pt);
    return pt;
}

/* ---- one forward ----------------------------------------------------------- */

/* Close the connection to the bot being asked. */
static void pooltask_drop_bot(struct pooltask_fwd *f)
{
    if (f->bev)
        bufferevent_free(f->bev);
    f->bev = NULL;
    f->answer.len = 0;
    f->complete = false;
    f->connected = false;
}

/* The client is answered: free F. */
static void pooltask_fwd_free(struct pooltask_fwd *f)
{
    pooltask_drop_bot(f);
    LIST_REMOVE(f, entry);
    for (size_t t = 0; t < f->n_tags; t++)
        free(f->tags[t]);
    free(f->tags);
    free(f->pool);
    free(f->what);
    free(f->body);
    free(f->answer.data);
    free(f);
}

/* Answer the client with BODY (stolen) and free F. */
static void pooltask_answer(struct pooltask_fwd *f, int status, json_t *body, const char *hdr)
{
    http_respond_json(f->conn, status, body, hdr);
    pooltask_fwd_free(f);
}

/* Answer {"detail": ...} and free F. */
static void pooltask_fail(struct pooltask_fwd *f, int status, const char *detail, const char *hdr)
{
    http_respond_error(f->conn, status, detail, hdr);
    pooltask_fwd_free(f);
}

static int pooltask_on_body(http_parser *p, const char *at, size_t len)
{
    struct pooltask_fwd *f = p->data;
    if (f->answer.len + len > POOLTASK_MAX_ANSWER)
        return -1;
    util_buf_add(&f->answer, at, len);
    return 0;
}

static int pooltask_on_complete(http_parser *p)
{
    struct pooltask_fwd *f = p->data;
    f->complete = true;
    return 0;
}

static const http_parser_settings pooltask_parser = {
    .on_body = pooltask_on_body,
    .on_message_complete = pooltask_on_complete,
};

/* The bot answered STATUS with the bytes in f->answer. */
static void pooltask_answered(struct pooltask_fwd *f, int status)
{
    struct pooltask *pt = f->pt;
    if (status == 429 || status == 503 || status >= 500) {
        log_info("pool task (%s): bot %s answered %d; trying the next one", f->what, f->bot_id,
                 status);
        f->last_refusal = status;
        pooltask_drop_bot(f);
        pooltask_next(f);
        return;
    }
    json_t *o = json_loadb(f->answer.data ? f->answer.data : "", f->answer.len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_pack("{s:s}", "detail", "the bot's answer was not JSON");
    }
    json_object_set_new(o, "bot_id", json_string(f->bot_id));
    if (status == 202)
        pool_note_sent(pt->pool, (size_t)f->bot);
    pooltask_answer(f, status, o, NULL);
}

/* The bot could not be asked (WHY): the next one, unless it may have the
 * task already. */
static void pooltask_unreachable(struct pooltask_fwd *f, const char *why)
{
    if (f->connected) {
        log_warn("pool task %s (%s): bot %s: %s after taking the task; not sent elsewhere",
                 f->task_id, f->what, f->bot_id, why);
        char detail[300];
        snprintf(detail, sizeof detail,
                 "bot %s went away before answering; the task may be stored there", f->bot_id);
        return pooltask_answer(f, 502,
                               json_pack("{s:s, s:s, s:s}", "detail", detail, "bot_id", f->bot_id,
                                         "task_id", f->task_id),
                               NULL);
    }
    log_info("pool task (%s): bot %s: %s; trying the next one", f->what, f->bot_id, why);
    f->last_refusal = 502;
    pooltask_drop_bot(f);
    pooltask_next(f);
}

/* Feed LEN bytes (0: the end) of the bot's answer. */
static void pooltask_feed(struct pooltask_fwd *f, const char *data, size_t len)
{
    size_t n = http_parser_execute(&f->parser, &pooltask_parser, data, len);
    if (f->complete)
        return pooltask_answered(f, (int)f->parser.status_code);
    if (n != len || f->parser.http_errno != HPE_OK || len == 0)
        pooltask_unreachable(f, len ? "a bad answer" : "no whole answer");
}

static void pooltask_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    char *data = (char *)evbuffer_pullup(in, (ssize_t)len);
    /* copy first: the feed may free the connection */
    char *copy = xmalloc(len + 1);
    memcpy(copy, data, len);
    evbuffer_drain(in, len);
    pooltask_feed(arg, copy, len);
    free(copy);
}

static void pooltask_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct pooltask_fwd *f = arg;
    if (what & BEV_EVENT_CONNECTED) {
        f->connected = true;
        return;
    }
    if (what & BEV_EVENT_EOF)
        return pooltask_feed(f, NULL, 0);
    pooltask_unreachable(f, what & BEV_EVENT_TIMEOUT ? "timed out" : "connection failed");
}

/* TCP address of HOST:PORT (wildcards mean loopback) and its authority. */
static socklen_t pooltask_tcp_addr(const char *host, int port, struct sockaddr_storage *ss,
                                   char *authority, size_t cap)
{
    const char *h = host && *host ? host : "127.0.0.1";
    if (strcmp(h, "0.0.0.0") == 0 || strcasecmp(h, "localhost") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    snprintf(authority, cap, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
    if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        return sizeof *in4;
    }
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return sizeof *in6;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(h, NULL, &hints, &res) != 0 || !res || res->ai_addrlen > sizeof *ss) {
        if (res)
            freeaddrinfo(res);
        return 0;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    socklen_t len = res->ai_addrlen;
    if (res->ai_family == AF_INET6)
        in6->sin6_port = htons((uint16_t)port);
    else
        in4->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return len;
}

/* A connection to INFO's worker: its private socket when it takes us (a
 * remote https:// bot's is the supervisor's TLS relay), else its port at the
 * numeric address it was bound or resolved to. False when neither can even
 * be tried. */
static bool pooltask_connect(struct pooltask_fwd *f, const struct hive_bot_info *info,
                             char *authority, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = pooltask_tcp_addr(info->proxy_addr, info->port, &ss, authority, cap);
    int fd = -1;
    struct sockaddr_storage un;
    socklen_t un_len = info->proxy_socket ? util_local_addr(info->proxy_socket, &un) : 0;
    if (un_len) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&un, un_len) < 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0 && len == 0)
        return false;
    f->bev = bufferevent_socket_new(f->pt->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!f->bev) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    f->connected = fd >= 0; /* the private socket connects at once */
    if (fd < 0 && bufferevent_socket_connect(f->bev, (struct sockaddr *)&ss, (int)len) < 0) {
        bufferevent_free(f->bev);
        f->bev = NULL;
        return false;
    }
    return true;
}

/* Send the task to bot INFO; false when it cannot be reached at all. */
static bool pooltask_send(struct pooltask_fwd *f, const struct hive_bot_info *info)
{
    char authority[300];
    if (!pooltask_connect(f, info, authority, sizeof authority))
        return false;
    /* A remote bot takes its own token (token_env); local ones the hive's. */
    const char *token = info->url ? info->token : hive_roster(f->pt->hive)->token;
    struct timeval tv = {POOLTASK_TIMEOUT_S, 0};
    http_parser_init(&f->parser, HTTP_RESPONSE);
    f->parser.data = f;
    bufferevent_setcb(f->bev, pooltask_read_cb, NULL, pooltask_event_cb, f);
    bufferevent_set_timeouts(f->bev, &tv, &tv);
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(f->bev),
                        "POST /api/task HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
                        authority, strlen(f->body), token ? "Authorization: Bearer " : "",
                        token ? token : "", token ? "\r\n" : "");
    bufferevent_write(f->bev, f->body, strlen(f->body));
    return true;
}

/* No candidate is left: why, to the client. */
static void pooltask_exhausted(struct pooltask_fwd *f, long why)
{
    char detail[400];
    if (why == POOL_UNKNOWN && f->n_tried == 0) {
        snprintf(detail, sizeof detail, "no bot is in %s", f->what);
        return pooltask_fail(f, 400, detail, NULL);
    }
    if (f->n_tried == 0) {
        snprintf(detail, sizeof detail, "no running bot in %s", f->what);
        return pooltask_fail(f, 503, detail, "Retry-After: 1\r\n");
    }
    if (f->last_refusal == 429) {
        snprintf(detail, sizeof detail, "every bot of %s has a full queue", f->what);
        return pooltask_fail(f, 429, detail, "Retry-After: 1\r\n");
    }
    snprintf(detail, sizeof detail, "no running bot of %s took the task", f->what);
    pooltask_fail(f, 503, detail, "Retry-After: 1\r\n");
}

/* Ask the best candidate not tried yet, or answer when there is none. */
static void pooltask_next(struct pooltask_fwd *f)
{
    struct pooltask *pt = f->pt;
    struct hive_bot_info info;
    for (;;) {
        pooltask_sync(pt);
        struct pool_query q = {f->pool, (const char *const *)f->tags, f->n_tags, f->tried,
                               f->n_tried};
        long i = f->n_tried < POOLTASK_MAX_TRIES ? pool_choose(pt->pool, &q) : POOL_NONE_RUNNING;
        if (i < 0)
            return pooltask_exhausted(f, i);
        const char *id = pool_bot_id(pt->pool, (size_t)i);
        if (!hive_bot_find(pt->hive, id, &info) || !info.running) { /* news not heard yet */
            pool_note_running(pt->pool, (size_t)i, false);
            continue;
        }
        f->tried[f->n_tried++] = (size_t)i;
        f->bot = i;
        snprintf(f->bot_id, sizeof f->bot_id, "%s", id);
        if (pooltask_send(f, &info))
            return;
        f->last_refusal = 502;
    }
}

/* ---- the request ----------------------------------------------------------- */

/* Read "pool" and "tags" of O into F and take them out of O; NULL, or the
 * 400's detail. */
static const char *pooltask_read_target(struct pooltask_fwd *f, json_t *o)
{
    json_t *pool = json_object_get(o, "pool"), *tags = json_object_get(o, "tags");
    if (pool && !json_is_null(pool) && (!json_is_string(pool) || !*json_string_value(pool)))
        return "pool must be a non-empty string";
    if (tags && !json_is_null(tags) &&
        (!json_is_array(tags) || json_array_size(tags) > POOLTASK_MAX_TAGS))
        return "tags must be a list of at most 32 strings";
    f->pool = json_is_string(pool) ? xstrdup(json_string_value(pool)) : NULL;
    f->n_tags = json_is_array(tags) ? json_array_size(tags) : 0;
    f->tags = xcalloc(f->n_tags + 1, sizeof *f->tags);
    struct util_buf what = {0};
    if (f->pool)
        util_buf_add(&what, "pool ", 5), util_buf_add(&what, f->pool, strlen(f->pool));
    bool ok = true;
    for (size_t t = 0; t < f->n_tags; t++) {
        const char *s = json_string_value(json_array_get(tags, t));
        const char *sep = t ? ", " : f->pool ? " with tags " : "tags ";
        f->tags[t] = xstrdup(s ? s : "");
        util_buf_add(&what, sep, strlen(sep));
        util_buf_add(&what, f->tags[t], strlen(f->tags[t]));
        ok = ok && s && *s;
    }
    f->what = what.data ? what.data : xstrdup("");
    if (!ok)
        return "tags must be a list of at most 32 strings";
    if (!f->pool && !f->n_tags)
        return "pool or tags is required (POST /bots/<id>/api/task sends to one bot)";
    json_object_del(o, "pool");
    json_object_del(o, "tags");
    return NULL;
}

void pooltask_serve(struct pooltask *pt, struct http_conn *conn, struct http_request *req)
{
    size_t len = evbuffer_get_length(req->body);
    json_t *o = json_loadb((const char *)evbuffer_pullup(req->body, (ssize_t)len), len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return http_respond_error(conn, 400, "invalid JSON", NULL);
    }
    struct pooltask_fwd *f = xcalloc(1, sizeof *f);
    f->pt = pt;
    f->conn = conn;
    LIST_INSERT_HEAD(&pt->fwds, f, entry);
    const char *bad = pooltask_read_target(f, o);
    if (bad) {
        json_decref(o);
        return pooltask_fail(f, 400, bad, NULL);
    }
    json_t *jid = json_object_get(o, "task_id");
    if (json_is_string(jid)) {
        snprintf(f->task_id, sizeof f->task_id, "%s", json_string_value(jid));
    } else if (!jid || json_is_null(jid)) { /* named here, so a 502 can name it */
        char hex[9];
        util_random_hex(hex, 8);
        snprintf(f->task_id, sizeof f->task_id, "HTTP-%s", hex);
        json_object_set_new(o, "task_id", json_string(f->task_id));
    }
    f->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    pooltask_next(f);
}

void pooltask_free(struct pooltask *pt)
{
    if (!pt)
        return;
    merge_unlisten(hive_merge(pt->hive), pt->listener);
    struct pooltask_fwd *f;
    while ((f = LIST_FIRST(&pt->fwds)))
        pooltask_fail(f, 503, "the hive is stopping", NULL);
    pool_free(pt->pool);
    free(pt);
}
