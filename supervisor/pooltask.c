/*
 * pooltask: the supervisor's POST /api/task. One forward per client request:
 * choose a bot (pool.c), send it the task with the supervisor's one HTTP
 * client (common/httpclient.h) on a new connection of the proxy's set (to
 * the bot's private socket first, as the proxy does, else its port; each
 * step bounded by POOLTASK_TIMEOUT_S; kept alive after for the proxy), read
 * the whole short answer, and either answer the client (the bot's 202, or
 * its refusal of the task itself, each with bot_id added) or move on to the
 * next candidate (429, 503, 5xx, no connection). The task body goes up
 * without its pool/tags keys, and with a task_id chosen here when it has
 * none.
 *
 * A bot that may have read the task (httpclient_call_sent: a connection to
 * it was up with the task on it) and then went away without a whole answer
 * may have stored the task (it is durable before the bot says 202): giving
 * it to another bot could run it twice, so the client gets 502 naming the
 * bot and the task id, and can ask that bot after it once it is back. A
 * task is never sent on a kept-alive connection: one the bot closed as the
 * task went up would have to be sent again, and a worker killed after
 * storing it is back in a few ms — the copy sent again met the restarted
 * worker, which rightly answered 409 (already queued) for the client's own
 * task (seen in test_work's pool test under a SIGKILL).
 *
 * The loads the choice reads come from the merge's news (merge.h) — each
 * worker's status over its channel and every bot_state — plus one count per
 * task handed over; no worker is polled.
 */
#include "supervisor/pooltask.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/httpclient.h"
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
    struct hive *hive;
    struct httpclient *http; /* on the proxy's connections to the workers */
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
    struct httpclient_call *call; /* the exchange with that bot */
    int last_refusal;             /* the last 429/503/502 met; 0: none */
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

struct pooltask *pooltask_new(struct event_base *base, struct hive *hive,
                              struct httpconn_set *conns)
{
    struct pooltask *pt = xcalloc(1, sizeof *pt);
    pt->hive = hive;
    pt->http = httpclient_new(base, conns);
    pt->pool = pool_new();
    LIST_INIT(&pt->fwds);
    pt->listener =
        merge_listen(hive_merge(hive), MERGE_NOTE_STATE | MERGE_NOTE_STATUS, pooltask_observe, pt);
    return pt;
}

/* ---- one forward ----------------------------------------------------------- */

/* Stop asking the bot being asked (its connection is closed, never reused). */
static void pooltask_drop_bot(struct pooltask_fwd *f)
{
    httpclient_cancel(f->call);
    f->call = NULL;
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

/* The bot answered STATUS with BODY. */
static void pooltask_answered(struct pooltask_fwd *f, int status, const char *body, size_t len)
{
    struct pooltask *pt = f->pt;
    if (status == 429 || status == 503 || status >= 500) {
        log_info("pool task (%s): bot %s answered %d; trying the next one", f->what, f->bot_id,
                 status);
        f->last_refusal = status;
        pooltask_next(f);
        return;
    }
    json_t *o = json_loadb(body, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_pack("{s:s}", "detail", "the bot's answer was not JSON");
    }
    json_object_set_new(o, "bot_id", json_string(f->bot_id));
    if (status == 202)
        pool_note_sent(pt->pool, (size_t)f->bot);
    pooltask_answer(f, status, o, NULL);
}

/* The bot could not be asked (WHY): the next one, unless the task went up
 * (SENT) and the bot may have it already. */
static void pooltask_unreachable(struct pooltask_fwd *f, const char *why, bool sent)
{
    if (sent) {
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
    pooltask_next(f);
}

/* The exchange with the bot ended: its answer, or why there is none. */
static void pooltask_bot_done(int err, const char *why, int status, const char *body, size_t len,
                              void *arg)
{
    struct pooltask_fwd *f = arg;
    bool sent = httpclient_call_sent(f->call);
    f->call = NULL; /* httpclient frees it when this returns */
    if (err)
        return pooltask_unreachable(f, why, sent);
    pooltask_answered(f, status, body, len);
}

/* Send the task to bot INFO, over its private socket when it takes us, else
 * its port at the numeric address it was bound or resolved to (for a remote
 * bot with its url's host as Host and, over TLS, the name verified). */
static void pooltask_send(struct pooltask_fwd *f, const struct hive_bot_info *info)
{
    static const struct httpclient_callbacks cbs = {pooltask_bot_done, NULL, NULL};
    /* Wildcards mean loopback, as for the proxy: the same Host, so the same
     * pool of connections. */
    const char *host = info->proxy_addr && *info->proxy_addr ? info->proxy_addr : "127.0.0.1";
    if (strcmp(host, "0.0.0.0") == 0 || strcasecmp(host, "localhost") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    /* A remote bot takes its own token (token_env); local ones the hive's. */
    const char *token = info->url ? info->token : hive_roster(f->pt->hive)->token;
    char *headers =
        xasprintf("Content-Type: application/json\r\n%s%s%s", token ? "Authorization: Bearer " : "",
                  token ? token : "", token ? "\r\n" : "");
    struct httpclient_request req = {.method = "POST",
                                     .host = host,
                                     .port = info->port,
                                     .local = info->proxy_socket,
                                     .tls = info->tls,
                                     .name = info->name,
                                     .fresh = true,
                                     .path = "/api/task",
                                     .headers = headers,
                                     .body = f->body,
                                     .body_len = strlen(f->body),
                                     .connect_timeout_ms = POOLTASK_TIMEOUT_S * 1000,
                                     .read_timeout_ms = POOLTASK_TIMEOUT_S * 1000,
                                     .max_body = POOLTASK_MAX_ANSWER};
    f->call = httpclient_send(f->pt->http, &req, &cbs, f);
    free(headers);
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
        return pooltask_send(f, &info);
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
    httpclient_free(pt->http);
    pool_free(pt->pool);
    free(pt);
}
