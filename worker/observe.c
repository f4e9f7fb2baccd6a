/*
 * observe: the worker's timeline, WebSocket timeline and metrics (see
 * observe.h). Counters are this process' (Prometheus counters restart at
 * zero with the process, as /status' tasks_processed does); the timeline
 * is the durable record the supervisor counts from.
 */
#include "worker/observe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/route.h"
#include "worker/answers.h"
#include "worker/timeline.h"
#include "worker/tlws.h"

/* hive_tasks_total's outcomes, in label order. */
enum { OBSERVE_SUCCESS, OBSERVE_FAILURE, OBSERVE_CANCELLED, OBSERVE_OUTCOMES };
static const char *const observe_outcomes[] = {"success", "failure", "cancelled"};
static const char *const observe_sources[] = {"file", "http", "websocket"};
static const char *const observe_token_kinds[] = {"input", "output", "cache_read", "cache_write"};

struct observe {
    struct store *store;
    struct engine *engine;
    char *bot_id;
    struct timeline *tl; /* NULL when it could not be opened */
    char tl_error[256];
    struct tlws *ws;
    unsigned long tasks[3][OBSERVE_OUTCOMES]; /* [source][outcome] */
    unsigned long stalled;                    /* task_stalled events (hive_tasks_stalled_total) */
    struct metrics_histogram duration;
    uint64_t tokens[4];               /* hive_tokens_total by kind (observe_token_kinds) */
    double cost_usd;                  /* hive_cost_usd_total */
    size_t (*subscribers)(void *arg); /* clients of the event stream, asked per scrape */
    void *subscribers_arg;
};

/* The WebSocket timeline's look-up: only our own bot has one here. */
static struct timeline *observe_lookup(void *arg, const char *bot_id)
{
    struct observe *o = arg;
    return strcmp(bot_id, o->bot_id) == 0 ? o->tl : NULL;
}

struct observe *observe_new(struct store *store, const char *bot_id, const struct ws_config *ws)
{
    struct observe *o = xcalloc(1, sizeof *o);
    o->store = store;
    o->bot_id = xstrdup(bot_id);
    o->tl = timeline_open(store_paths(store)->logs, bot_id, true, o->tl_error, sizeof o->tl_error);
    if (!o->tl)
        log_warn("timeline: %s", o->tl_error);
    o->ws = tlws_new(ws, observe_lookup, o);
    return o;
}

void observe_free(struct observe *o)
{
    if (!o)
        return;
    tlws_free(o->ws);
    timeline_close(o->tl);
    free(o->bot_id);
    free(o);
}

void observe_set_engine(struct observe *o, struct engine *engine)
{
    o->engine = engine;
}

/* The outcome of a finished task: a cancel is a failure whose error says
 * so (SPEC §4). */
static int observe_outcome(bool success, const char *error)
{
    if (success)
        return OBSERVE_SUCCESS;
    return error && strcmp(error, "cancelled") == 0 ? OBSERVE_CANCELLED : OBSERVE_FAILURE;
}

/* Append E; a write error is logged (the answer itself is durable). */
static int observe_append(struct observe *o, const struct timeline_entry *e)
{
    if (!o->tl)
        return -1;
    int rc = timeline_append(o->tl, e);
    if (rc < 0)
        log_warn("timeline: cannot append task %s: %s", e->task_id, strerror(errno));
    return rc;
}

/* Send the newest entry of TASK_ID to the WebSocket subscribers. */
static void observe_push_update(struct observe *o, const char *task_id)
{
    if (!o->tl || tlws_sessions(o->ws) == 0)
        return;
    json_t *entry = timeline_find(o->tl, task_id);
    if (entry)
        tlws_entry(o->ws, entry);
    json_decref(entry);
}

/* The timeline's fields for an agent's cost U (SPEC §12): "tokens",
 * "cost_usd"; NULL when the agent told none. */
static json_t *observe_usage_json(const struct agent_usage *u)
{
    if (!u->known && !u->cost_known)
        return NULL;
    json_t *extra = json_object();
    if (u->known)
        json_object_set_new(extra, "tokens",
                            json_pack("{s:I, s:I, s:I, s:I}", "input", (json_int_t)u->input,
                                      "output", (json_int_t)u->output, "cache_read",
                                      (json_int_t)u->cache_read, "cache_write",
                                      (json_int_t)u->cache_write));
    if (u->cost_known)
        json_object_set_new(extra, "cost_usd", json_real(u->cost_usd));
    return extra;
}

/* Count an agent's cost U in this worker's metrics; its timeline fields. */
static json_t *observe_usage(struct observe *o, const struct agent_usage *u)
{
    if (u->known) {
        uint64_t n[4] = {u->input, u->output, u->cache_read, u->cache_write};
        for (int k = 0; k < 4; k++)
            o->tokens[k] += n[k];
    }
    if (u->cost_known)
        o->cost_usd += u->cost_usd;
    return observe_usage_json(u);
}

void observe_task_finished(struct observe *o, const struct task *t)
{
    int outcome = observe_outcome(t->success, t->error);
    o->tasks[t->source][outcome]++;
    metrics_histogram_observe(&o->duration, t->duration_seconds);
    json_t *extra = observe_usage(o, &t->usage);
    struct timeline_entry e = {.task_id = t->id,
                               .source = task_source_name(t->source),
                               .finished_wall_ns = util_wall_ns(),
                               .success = t->success,
                               .cancelled = outcome == OBSERVE_CANCELLED,
                               .output = t->output,
                               .output_len = t->output_len,
                               .error = t->error,
                               .duration_seconds = t->duration_seconds,
                               .response_file = t->response_file,
                               .files_modified = (const char *const *)t->files_modified,
                               .files_count = t->n_files_modified,
                               .extra = extra};
    if (observe_append(o, &e) == 0)
        observe_push_update(o, t->id);
    json_decref(extra);
}

/* The paths of a response file's "## Files Modified" section ("- path"
 * lines; "- None" is none) as an array (*N of them). Caller frees. */
static char **observe_files(struct response_span span, size_t *n)
{
    char **files = NULL;
    *n = 0;
    const char *p = span.p, *end = span.p ? span.p + span.len : NULL;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop - p > 2 && p[0] == '-' && p[1] == ' ' &&
            !(stop - p == 6 && memcmp(p, "- None", 6) == 0)) {
            files = xrealloc(files, (*n + 1) * sizeof *files);
            files[(*n)++] = xstrndup(p + 2, (size_t)(stop - p - 2));
        }
        p = stop + 1;
    }
    return files;
}

/* Append the answer of TASK_ID (indexed at MTIME_NS) unless the timeline
 * has it. 1 added, 0 not. */
static int observe_recover_one(struct observe *o, struct answers *a, const char *task_id,
                               int64_t mtime_ns)
{
    struct answers_entry ae;
    if (answers_load(a, task_id, &ae) != 0)
        return 0;
    json_t *have = timeline_find(o->tl, task_id);
    const char *have_file = have ? json_string_value(json_object_get(have, "response_file")) : NULL;
    int added = 0;
    if (!have_file || strcmp(have_file, ae.name) != 0) {
        const struct response_view *v = &ae.view;
        char *error = v->error.p ? xstrndup(v->error.p, v->error.len) : NULL;
        struct timeline_entry e = {.task_id = task_id,
                                   .source = task_source_name(v->source),
                                   .finished_wall_ns = mtime_ns,
                                   .success = v->success,
                                   .cancelled =
                                       observe_outcome(v->success, error) == OBSERVE_CANCELLED,
                                   .output = v->output.p,
                                   .output_len = v->output.len,
                                   .error = error,
                                   .duration_seconds = v->duration_seconds,
                                   .response_file = ae.name};
        char **files = observe_files(v->files, &e.files_count);
        e.files_modified = (const char *const *)files;
        json_t *extra = observe_usage_json(&v->usage); /* counted by the run that answered it */
        e.extra = extra;
        added = observe_append(o, &e) == 0;
        json_decref(extra);
        for (size_t i = 0; i < e.files_count; i++)
            free(files[i]);
        free(files);
        free(error);
    }
    json_decref(have);
    answers_entry_clear(&ae);
    return added;
}

/* An answer that recovery may put in the timeline: its id and the time its
 * index entry was made. */
struct observe_missing {
    char *task_id;
    int64_t mtime_ns;
};

/* Oldest first (the timeline's file order is time order). */
static int observe_missing_cmp(const void *a, const void *b)
{
    const struct observe_missing *x = a, *y = b;
    return (x->mtime_ns > y->mtime_ns) - (x->mtime_ns < y->mtime_ns);
}

/* The entries of the answers index DIR made at SINCE or later, oldest
 * first, in *OUT (caller frees); their number. */
static size_t observe_missing_list(const char *dir, int64_t since, struct observe_missing **out)
{
    struct stat st;
    DIR *d = opendir(dir);
    struct observe_missing *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !task_id_valid(de->d_name) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (m < since)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = (struct observe_missing){xstrdup(de->d_name), m};
    }
    if (d)
        closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, observe_missing_cmp);
    *out = v;
    return n;
}

int observe_recover(struct observe *o)
{
    if (!o->tl)
        return 0;
    struct stat st;
    char *jsonl = xasprintf("%s/%s-timeline.jsonl", store_paths(o->store)->logs, o->bot_id);
    /* The answers index (answers.h) has one link per answered id, made when
     * the answer became durable: only those made since the timeline's last
     * write (2 s before: writes of the same moments, whatever the clock's
     * grain) can be missing from it. A timeline that does not exist (its
     * first entry makes it) may miss every answer: a crash, or a power cut,
     * between the first answer and its entry leaves none. */
    int64_t since = INT64_MIN;
    int err = stat(jsonl, &st) == 0 ? 0 : errno;
    free(jsonl);
    if (err == 0)
        since = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec - 2000000000LL;
    else if (err != ENOENT)
        return 0;
    char *dir = xasprintf("%s/.index/%s", store_paths(o->store)->responses, o->bot_id);
    /* The folder's mtime is its newest link's: when it is older, nothing
     * was answered since (the usual clean restart), and no scan is due. */
    bool fresh = stat(dir, &st) == 0 &&
                 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec >= since;
    struct observe_missing *v = NULL;
    size_t n = fresh ? observe_missing_list(dir, since, &v) : 0;
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        added += observe_recover_one(o, store_answers(o->store), v[i].task_id, v[i].mtime_ns);
        free(v[i].task_id);
    }
    free(v);
    free(dir);
    if (added)
        log_info("timeline: %d answered task(s) recovered into the timeline", added);
    return added;
}

void observe_event(struct observe *o, const json_t *event)
{
    const char *type = json_string_value(json_object_get(event, "type"));
    if (type && strcmp(type, "task_stalled") == 0)
        o->stalled++;
    tlws_event(o->ws, event);
}

void observe_count_subscribers(struct observe *o, size_t (*count)(void *arg), void *arg)
{
    o->subscribers = count;
    o->subscribers_arg = arg;
}

void observe_close_sessions(struct observe *o)
{
    tlws_close_all(o->ws);
}

/* hive_tasks_total and hive_task_duration_seconds of this process. */
static void observe_metrics_tasks(struct observe *o, struct util_buf *b)
{
    metrics_family(b, "hive_tasks_total", "counter", "Tasks finished, by source and outcome.");
    for (int s = 0; s < 3; s++)
        for (int k = 0; k < OBSERVE_OUTCOMES; k++) {
            struct metrics_label l[] = {{"bot", o->bot_id},
                                        {"source", observe_sources[s]},
                                        {"outcome", observe_outcomes[k]}};
            metrics_sample(b, "hive_tasks_total", l, 3, (double)o->tasks[s][k]);
        }
    metrics_family(b, "hive_task_duration_seconds", "histogram",
                   "How long finished tasks ran, in seconds.");
    struct metrics_label bot[] = {{"bot", o->bot_id}};
    metrics_histogram_render(b, "hive_task_duration_seconds", bot, 1, &o->duration);
    metrics_family(b, "hive_tasks_stalled_total", "counter",
                   "Times a running task printed nothing for stall_after seconds.");
    metrics_sample(b, "hive_tasks_stalled_total", bot, 1, (double)o->stalled);
}

/* hive_queue_depth, hive_queue_oldest_age_seconds, hive_event_subscribers. */
static void observe_metrics_queue(struct observe *o, struct util_buf *b)
{
    struct engine_status st = {0};
    if (o->engine)
        engine_status(o->engine, &st);
    metrics_family(b, "hive_queue_depth", "gauge", "Tasks waiting, by queue.");
    struct metrics_label rt[] = {{"bot", o->bot_id}, {"kind", "realtime"}};
    struct metrics_label file[] = {{"bot", o->bot_id}, {"kind", "file"}};
    metrics_sample(b, "hive_queue_depth", rt, 2, (double)st.realtime);
    metrics_sample(b, "hive_queue_depth", file, 2, (double)st.file);
    int64_t oldest = o->engine ? engine_oldest_waiting_ns(o->engine) : 0;
    double age = oldest ? (double)(util_wall_ns() - oldest) / 1e9 : 0;
    metrics_family(b, "hive_queue_oldest_age_seconds", "gauge",
                   "How long the longest-waiting task has waited, in seconds (0 when none).");
    struct metrics_label bot[] = {{"bot", o->bot_id}};
    metrics_sample(b, "hive_queue_oldest_age_seconds", bot, 1, age > 0 ? age : 0);
    metrics_family(b, "hive_event_subscribers", "gauge", "Clients of the event stream.");
    metrics_sample(b, "hive_event_subscribers", NULL, 0,
                   o->subscribers ? (double)o->subscribers(o->subscribers_arg) : 0);
}

/* hive_tokens_total and hive_cost_usd_total of this process (SPEC §12). */
static void observe_metrics_cost(struct observe *o, struct util_buf *b)
{
    metrics_family(b, "hive_tokens_total", "counter", "Tokens the agent reported, by kind.");
    for (int k = 0; k < 4; k++) {
        struct metrics_label l[] = {{"bot", o->bot_id}, {"kind", observe_token_kinds[k]}};
        metrics_sample(b, "hive_tokens_total", l, 2, (double)o->tokens[k]);
    }
    metrics_family(b, "hive_cost_usd_total", "counter", "Cost the agent reported, in USD.");
    struct metrics_label bot[] = {{"bot", o->bot_id}};
    metrics_sample(b, "hive_cost_usd_total", bot, 1, o->cost_usd);
}

/* GET /metrics. */
static void observe_metrics(struct observe *o, struct http_conn *conn)
{
    struct util_buf b = {0};
    observe_metrics_tasks(o, &b);
    observe_metrics_cost(o, &b);
    observe_metrics_queue(o, &b);
    metrics_process(&b);
    http_respond(conn, 200, METRICS_CONTENT_TYPE, b.data, b.len, NULL);
    free(b.data);
}

/* GET /api/timeline (and the seed's path for our own id). */
static void observe_timeline(struct observe *o, struct http_conn *conn, struct http_request *req)
{
    if (!o->tl) {
        char detail[300];
        snprintf(detail, sizeof detail, "timeline unavailable: %s", o->tl_error);
        return http_respond_error(conn, 503, detail, NULL);
    }
    char *body;
    size_t len;
    int status = timeline_answer(o->tl, req->query, &body, &len);
    http_respond(conn, status, "application/json", body, len, NULL);
    free(body);
}

/* GET /ws/bot/<id>/timeline. */
static void observe_upgrade(struct observe *o, struct http_conn *conn, struct http_request *req)
{
    char detail[200];
    int status = ws_upgrade_check(req, detail, sizeof detail);
    if (status)
        return http_respond_error(
            conn, status, detail,
            status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : NULL);
    if (o->engine && engine_stopping(o->engine))
        return http_respond_error(conn, 503, "bot is stopping", "Retry-After: 1\r\n");
    tlws_accept(o->ws, conn, req, o->bot_id);
}

/* True when the <id> of a /api/bot/<id>/... or /ws/bot/<id>/... path is this
 * bot's; else 404 (another bot's timeline is not here). */
static bool observe_own_bot(struct observe *o, struct http_conn *conn,
                            const struct route_params *pp)
{
    if (pp->len[0] == strlen(o->bot_id) && memcmp(pp->s[0], o->bot_id, pp->len[0]) == 0)
        return true;
    http_respond_error(conn, 404, "Not Found", NULL);
    return false;
}

/* GET /metrics. */
static void observe_route_metrics(struct http_conn *conn, struct http_request *req,
                                  const struct route_params *pp, void *arg)
{
    (void)req, (void)pp;
    observe_metrics(arg, conn);
}

/* GET /api/timeline. */
static void observe_route_timeline(struct http_conn *conn, struct http_request *req,
                                   const struct route_params *pp, void *arg)
{
    (void)pp;
    observe_timeline(arg, conn, req);
}

/* GET /api/bot/<id>/timeline (the seed's path). */
static void observe_route_bot_timeline(struct http_conn *conn, struct http_request *req,
                                       const struct route_params *pp, void *arg)
{
    if (observe_own_bot(arg, conn, pp))
        observe_timeline(arg, conn, req);
}

/* GET /ws/bot/<id>/timeline. */
static void observe_route_ws(struct http_conn *conn, struct http_request *req,
                             const struct route_params *pp, void *arg)
{
    if (observe_own_bot(arg, conn, pp))
        observe_upgrade(arg, conn, req);
}

static const struct route observe_routes[] = {
    {ROUTE_READ, "/metrics", 0, observe_route_metrics},
    {ROUTE_READ, "/api/timeline", 0, observe_route_timeline},
    {ROUTE_READ, "/api/bot/*/timeline", 0, observe_route_bot_timeline},
    {ROUTE_GET, "/ws/bot/*/timeline", 0, observe_route_ws},
};

bool observe_route(struct observe *o, struct http_conn *conn, struct http_request *req,
                   const char *token)
{
    return route_dispatch(observe_routes, sizeof observe_routes / sizeof *observe_routes, conn, req,
                          token, o);
}
