/*
 * watch: the hive's timeline, WebSocket timeline and metrics (see watch.h).
 *
 * Counting: the task counters (hive_tasks_total, the duration histogram,
 * tokens and cost) and the hive budget's spend count the final events
 * (task_completed, task_failed, task_cancelled) that come up the workers'
 * channels: merge.c hands each bot event to its listeners once (a seq not
 * above the last merged of its bot is a repeat and is dropped, and those
 * cursors are read back from the merged log at start), so a worker that
 * replays after a reconnect or a kill -9 is never counted twice. One event
 * vocabulary feeds every sink; nothing re-reads the timelines to count.
 *
 * A supervisor restart starts the counters again from zero (a Prometheus
 * counter reset: process_start_time_seconds tells it, and rate()/increase()
 * take it in); from then they count every final event this process merges,
 * those its workers replay from while it was down included. They keep
 * counting across worker restarts (SPEC §9). The hive budget is a day's
 * spend, not a counter: at start it is read once from the timelines (only
 * when a hive budget is set), and then only events stamped after the start
 * are added to it.
 *
 * Timelines are opened only when a query needs one (GET /api/timeline, the
 * WebSocket timeline's subscribe and its `update`s of a bot someone
 * follows), kept open for the next query in a small LRU of WATCH_OPEN_MAX
 * and closed after WATCH_IDLE_MS unused: an idle supervisor holds no
 * timeline and does no per-bot work. A followed bot's final event makes its
 * new entries be read at once; the worker may append the entry just after
 * it sent the event, so a read that finds nothing new looks again
 * WATCH_SOON_MS later (WATCH_SOON_TRIES times).
 */
#include "supervisor/watch.h"

#include "supervisor/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/ws.h"
#include "common/route.h"
#include "supervisor/hivebudget.h"
#include "worker/timeline.h"
#include "worker/tlws.h"

#define WATCH_TICK_MS 5000   /* the hive budget's clock; idle timelines closed */
#define WATCH_SOON_MS 20     /* a final event came before its timeline entry */
#define WATCH_SOON_TRIES 100 /* ... for at most 2 s; the next event reads it */
#define WATCH_OPEN_MAX 16    /* timelines kept open between queries */
#define WATCH_IDLE_MS 30000  /* a timeline unused this long is closed */
#define WATCH_BUDGET_DAYS 2  /* the start's read of the day's spend goes this far back */

enum { WATCH_SUCCESS, WATCH_FAILURE, WATCH_CANCELLED, WATCH_OUTCOMES };
static const char *const watch_outcomes[] = {"success", "failure", "cancelled"};
static const char *const watch_sources[] = {"file", "http", "websocket"};
static const char *const watch_token_kinds[] = {"input", "output", "cache_read", "cache_write"};
static const char *const watch_states[] = {"starting", "running", "stopping",   "stopped",
                                           "backoff",  "fatal",   "unreachable"};

/* One bot's counters, and its timeline while a query needs it. */
struct watch_bot {
    char *id;
    struct timeline *tl; /* NULL unless in the open list */
    int64_t used_ms;     /* when TL was last used */
    bool followed;       /* a WebSocket timeline client subscribed to it */
    bool pending;        /* followed: a final event came, its entry not read yet */
    size_t seen;         /* followed: entries its clients have (initial or update) */
    unsigned long tasks[3][WATCH_OUTCOMES];
    struct metrics_histogram duration;
    double tokens[4]; /* an agent's tokens by kind (watch_token_kinds), SPEC §12 */
    double cost_usd;
    unsigned long stalled; /* task_stalled events */
    /* Live output its worker could not send up (task_output_dropped). */
    double dropped_events, dropped_bytes;
};

struct watch {
    struct hive *hive;
    const struct proxy *proxy;
    struct event *tick;
    struct event *soon; /* one-shot: read the pending bots again */
    int soon_tries;
    struct tlws *ws;
    struct watch_bot *bots;
    size_t n_bots, cap_bots;
    size_t *open; /* indexes into BOTS of the open timelines, least recently used first */
    size_t n_open;
    struct timeline **tls;     /* scratch for merged queries */
    struct hivebudget *budget; /* `hive: budget:`, NULL: none */
    char started[40];          /* ISO time of the start: budget events after it count */
    int listener;              /* on the merge: its events */
    struct util_buf scrape;    /* kept between scrapes: a big hive's is megabytes,
                                  and growing it again each time costs more than
                                  writing it */
};

/* BOT_ID's record, made when new. */
static struct watch_bot *watch_bot(struct watch *w, const char *id)
{
    for (size_t i = 0; i < w->n_bots; i++)
        if (strcmp(w->bots[i].id, id) == 0)
            return &w->bots[i];
    if (w->n_bots == w->cap_bots) {
        w->cap_bots = w->cap_bots ? w->cap_bots * 2 : 16;
        w->bots = xrealloc(w->bots, w->cap_bots * sizeof *w->bots);
        w->tls = xrealloc(w->tls, w->cap_bots * sizeof *w->tls);
        w->open = xrealloc(w->open, w->cap_bots * sizeof *w->open);
    }
    struct watch_bot *b = &w->bots[w->n_bots++];
    *b = (struct watch_bot){.id = xstrdup(id)};
    return b;
}

/* The record of the I-th bot of the roster, ID: where it usually is (the
 * same index), else found or made. */
static struct watch_bot *watch_bot_at(struct watch *w, size_t i, const char *id)
{
    if (i < w->n_bots && strcmp(w->bots[i].id, id) == 0)
        return &w->bots[i];
    return watch_bot(w, id);
}

/* Close the K-th open timeline. */
static void watch_close_at(struct watch *w, size_t k)
{
    struct watch_bot *b = &w->bots[w->open[k]];
    timeline_close(b->tl);
    b->tl = NULL;
    memmove(&w->open[k], &w->open[k + 1], (w->n_open - k - 1) * sizeof *w->open);
    w->n_open--;
}

/* Keep at most WATCH_OPEN_MAX timelines open: the least recently used go. */
static void watch_trim(struct watch *w)
{
    while (w->n_open > WATCH_OPEN_MAX)
        watch_close_at(w, 0);
}

/* B's timeline, opened when it is not (and made the most recently used);
 * NULL when its files do not exist (yet). Open ones are trimmed by
 * watch_trim() once the query is done. */
static struct timeline *watch_open(struct watch *w, struct watch_bot *b)
{
    size_t i = (size_t)(b - w->bots);
    b->used_ms = util_mono_ms();
    if (b->tl) {
        for (size_t k = 0; k < w->n_open; k++)
            if (w->open[k] == i) {
                memmove(&w->open[k], &w->open[k + 1], (w->n_open - k - 1) * sizeof *w->open);
                w->open[w->n_open - 1] = i;
                break;
            }
        return b->tl;
    }
    char *dir = xasprintf("%s/.deia/bot-logs", hive_roster(w->hive)->work_dir), err[256];
    b->tl = timeline_open(dir, b->id, false, err, sizeof err);
    free(dir);
    if (b->tl)
        w->open[w->n_open++] = i;
    return b->tl;
}

/* Close the timelines unused for WATCH_IDLE_MS. */
static void watch_close_idle(struct watch *w)
{
    int64_t now = util_mono_ms();
    while (w->n_open && now - w->bots[w->open[0]].used_ms >= WATCH_IDLE_MS)
        watch_close_at(w, 0);
}

/* A followed bot B: its entries past SEEN as `update`s, oldest first. True
 * when it is read to the end (or cannot be read: nothing to wait for). */
static bool watch_follow(struct watch *w, struct watch_bot *b)
{
    struct timeline *tl = watch_open(w, b);
    if (!tl || timeline_refresh(tl) < 0)
        return true;
    for (int round = 0; round < 100; round++) {
        size_t total = timeline_count(tl);
        if (total <= b->seen) {
            if (total < b->seen) /* the files were rebuilt shorter: start from here */
                b->seen = total;
            return false;
        }
        size_t n = total - b->seen;
        n = n < TIMELINE_LIMIT_MAX ? n : TIMELINE_LIMIT_MAX;
        /* Newest first: the oldest N not sent sit just before the sent. */
        struct timeline_query q = {
            .limit = n, .offset = total - b->seen - n, .source = -1, .success = -1};
        json_t *page = timeline_query_run(&tl, 1, &q);
        json_t *entries = json_object_get(page, "entries");
        size_t got = json_array_size(entries);
        if ((size_t)json_integer_value(json_object_get(page, "total_count")) != total || got != n) {
            json_decref(page); /* it grew under us: again soon */
            return false;
        }
        for (size_t k = got; k-- > 0;)
            tlws_entry(w->ws, json_array_get(entries, k));
        b->seen += got;
        json_decref(page);
        if (b->seen == total)
            return true;
    }
    return false;
}

/* Read again in MS milliseconds (unless that is planned already). */
static void watch_soon(struct watch *w, int ms)
{
    if (event_pending(w->soon, EV_TIMEOUT, NULL))
        return;
    struct timeval tv = {ms / 1000, ms % 1000 * 1000};
    event_add(w->soon, &tv);
}

/* The WebSocket timeline's look-up, as a client subscribes: the bot is
 * followed from now on. Entries its other clients have not had yet go to
 * them first, so the new one's initial entries are never sent again as
 * updates. */
static struct timeline *watch_lookup(void *arg, const char *bot_id)
{
    struct watch *w = arg;
    struct hive_bot_info info;
    if (!hive_bot_find(w->hive, bot_id, &info))
        return NULL;
    struct watch_bot *b = watch_bot(w, bot_id);
    if (b->followed)
        watch_follow(w, b);
    struct timeline *tl = watch_open(w, b);
    if (!tl || timeline_refresh(tl) < 0)
        return NULL;
    b->seen = timeline_count(tl);
    b->followed = true;
    b->pending = false;
    return tl;
}

/* Count one final event E of B (merged once). */
static void watch_count(struct watch *w, struct watch_bot *b, const char *type, const json_t *e)
{
    const char *src = json_string_value(json_object_get(e, "source"));
    int s = 0;
    while (s < 3 && (!src || strcmp(src, watch_sources[s]) != 0))
        s++;
    if (s == 3)
        return;
    int k = strcmp(type, "task_completed") == 0   ? WATCH_SUCCESS
            : strcmp(type, "task_cancelled") == 0 ? WATCH_CANCELLED
                                                  : WATCH_FAILURE;
    b->tasks[s][k]++;
    metrics_histogram_observe(&b->duration,
                              json_number_value(json_object_get(e, "duration_seconds")));
    json_t *tokens = json_object_get(e, "tokens");
    for (int t = 0; t < 4; t++)
        b->tokens[t] += json_number_value(json_object_get(tokens, watch_token_kinds[t]));
    b->cost_usd += json_number_value(json_object_get(e, "cost_usd"));
    const char *ts = json_string_value(json_object_get(e, "timestamp"));
    if (w->budget && ts && strcmp(ts, w->started) >= 0) /* older: in the start's read */
        hivebudget_count(w->budget, e);
}

/* The followed bots whose final event came before their entry: read again. */
static void watch_soon_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct watch *w = arg;
    bool waiting = false;
    for (size_t i = 0; i < w->n_bots; i++) {
        struct watch_bot *b = &w->bots[i];
        if (b->pending && (!tlws_sessions(w->ws) || watch_follow(w, b)))
            b->pending = false;
        waiting |= b->pending;
    }
    watch_trim(w);
    if (waiting && ++w->soon_tries < WATCH_SOON_TRIES)
        watch_soon(w, WATCH_SOON_MS);
    else
        for (size_t i = 0; i < w->n_bots; i++) /* given up: the next event reads them */
            w->bots[i].pending = false;
}

/* An event from the merge: a live WebSocket message; a task's final event
 * is counted, and a followed bot's new timeline entries are read. */
static void watch_sink(const struct merge_note *note, void *arg)
{
    struct watch *w = arg;
    const json_t *event = note->event;
    watch_event(w, event);
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *bot = note->bot_id;
    if (!type || !bot)
        return;
    bool stalled = strcmp(type, "task_stalled") == 0;
    bool dropped = strcmp(type, "task_output_dropped") == 0;
    if (!stalled && !dropped && strcmp(type, "task_completed") != 0 &&
        strcmp(type, "task_failed") != 0 && strcmp(type, "task_cancelled") != 0)
        return;
    struct hive_bot_info info;
    if (!hive_bot_find(w->hive, bot, &info))
        return;
    struct watch_bot *b = watch_bot(w, bot);
    if (stalled) {
        b->stalled++;
        return;
    }
    if (dropped) { /* live only, never replayed: each counted once */
        json_t *n = json_object_get(event, "dropped_events");
        json_t *bytes = json_object_get(event, "dropped_bytes");
        b->dropped_events += json_is_integer(n) ? (double)json_integer_value(n) : 0;
        b->dropped_bytes += json_is_integer(bytes) ? (double)json_integer_value(bytes) : 0;
        return;
    }
    if (info.url) /* a remote bot counts itself (its /metrics is merged) */
        return;
    watch_count(w, b, type, event);
    if (!b->followed || !tlws_sessions(w->ws))
        return;
    if (!watch_follow(w, b)) {
        b->pending = true;
        w->soon_tries = 0;
        watch_soon(w, WATCH_SOON_MS);
    }
    watch_trim(w);
}

/* The tick: the hive budget's clock; timelines unused for a while closed. */
static void watch_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct watch *w = arg;
    watch_close_idle(w);
    hivebudget_tick(w->budget, hive_roster(w->hive));
}

/* A hive budget's spend so far today, from the timelines, read once at the
 * start (each bot's entries of the last WATCH_BUDGET_DAYS days; the budget
 * keeps today's). */
static void watch_budget_start(struct watch *w)
{
    struct hive_bot_info info;
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++) {
        struct watch_bot *b = watch_bot_at(w, i, info.id);
        struct timeline *tl = info.url ? NULL : watch_open(w, b);
        for (size_t off = 0; tl;) {
            struct timeline_query q = {.limit = TIMELINE_LIMIT_MAX,
                                       .offset = off,
                                       .source = -1,
                                       .success = -1,
                                       .has_start = true,
                                       .start = (int64_t)time(NULL) - WATCH_BUDGET_DAYS * 86400};
            json_t *page = timeline_query_run(&tl, 1, &q);
            json_t *entries = json_object_get(page, "entries");
            for (size_t k = 0; k < json_array_size(entries); k++)
                hivebudget_count(w->budget, json_array_get(entries, k));
            size_t got = json_array_size(entries);
            json_decref(page);
            if (got < TIMELINE_LIMIT_MAX)
                break;
            off += got;
        }
        watch_trim(w);
    }
    while (w->n_open) /* a start's read is not a query to keep them for */
        watch_close_at(w, 0);
}

struct watch *watch_new(struct event_base *base, struct hive *hive, const struct proxy *proxy)
{
    struct watch *w = xcalloc(1, sizeof *w);
    w->hive = hive;
    w->proxy = proxy;
    struct ws_config wc;
    ws_config_default(&wc);
    w->ws = tlws_new(&wc, watch_lookup, w);
    util_iso_utc(w->started, sizeof w->started, util_wall_ns());
    /* The records in the roster's order: a scrape's loops over the roster
     * then find each at its own index (watch_bot_at), not by a search;
     * events would make them in the order bots first finish a task. */
    struct hive_bot_info info;
    for (size_t i = 0; hive_bot_at(hive, i, &info); i++)
        watch_bot(w, info.id);
    w->budget = hivebudget_new(hive_roster(hive));
    if (w->budget)
        watch_budget_start(w);
    w->tick = event_new(base, -1, EV_PERSIST, watch_tick_cb, w);
    w->soon = event_new(base, -1, 0, watch_soon_cb, w);
    struct timeval tv = {WATCH_TICK_MS / 1000, WATCH_TICK_MS % 1000 * 1000};
    event_add(w->tick, &tv);
    w->listener = merge_listen(hive_merge(hive), MERGE_NOTE_EVENT, watch_sink, w);
    return w;
}

void watch_free(struct watch *w)
{
    if (!w)
        return;
    merge_unlisten(hive_merge(w->hive), w->listener);
    event_free(w->tick);
    event_free(w->soon);
    hivebudget_free(w->budget);
    tlws_free(w->ws);
    for (size_t i = 0; i < w->n_bots; i++) {
        timeline_close(w->bots[i].tl);
        free(w->bots[i].id);
    }
    free(w->bots);
    free(w->open);
    free(w->tls);
    free(w->scrape.data);
    free(w);
}

void watch_event(struct watch *w, const json_t *event)
{
    tlws_event(w->ws, event);
}

/* hive_bot_up, hive_bot_state and hive_bot_restarts_total. */
static void watch_metrics_bots(struct watch *w, struct util_buf *b)
{
    struct hive_bot_info info;
    metrics_family(b, "hive_bot_up", "gauge", "1 when the bot's worker is running.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_bot_up", &(struct metrics_label){"bot", info.id}, 1, info.running);
    metrics_family(b, "hive_bot_state", "gauge", "1 for the bot's current state.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        for (size_t s = 0; s < sizeof watch_states / sizeof *watch_states; s++) {
            struct metrics_label l[] = {{"bot", info.id}, {"state", watch_states[s]}};
            metrics_sample(b, "hive_bot_state", l, 2, strcmp(info.state, watch_states[s]) == 0);
        }
    metrics_family(b, "hive_bot_restarts_total", "counter", "Restarts of the bot's worker.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_bot_restarts_total", &(struct metrics_label){"bot", info.id}, 1,
                       info.restarts);
}

/* hive_tasks_total and hive_task_duration_seconds from the final events. */
static void watch_metrics_tasks(struct watch *w, struct util_buf *b)
{
    struct hive_bot_info info;
    metrics_family(b, "hive_tasks_total", "counter",
                   "Tasks finished, by source and outcome (from their final events).");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++) {
        struct watch_bot *bot = watch_bot_at(w, i, info.id);
        if (info.url) { /* a remote bot: what its last scrape said */
            hive_bot_remote_metrics(w->hive, i, "hive_tasks_total", b);
            continue;
        }
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < WATCH_OUTCOMES; k++) {
                struct metrics_label l[] = {
                    {"bot", info.id}, {"source", watch_sources[s]}, {"outcome", watch_outcomes[k]}};
                metrics_sample(b, "hive_tasks_total", l, 3, (double)bot->tasks[s][k]);
            }
    }
    metrics_family(b, "hive_task_duration_seconds", "histogram",
                   "How long finished tasks ran, in seconds.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        if (info.url)
            hive_bot_remote_metrics(w->hive, i, "hive_task_duration_seconds", b);
        else
            metrics_histogram_render(b, "hive_task_duration_seconds",
                                     &(struct metrics_label){"bot", info.id}, 1,
                                     &watch_bot_at(w, i, info.id)->duration);
    metrics_family(b, "hive_tasks_stalled_total", "counter",
                   "Times a running task printed nothing for stall_after seconds.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_tasks_stalled_total", &(struct metrics_label){"bot", info.id}, 1,
                       (double)watch_bot_at(w, i, info.id)->stalled);
    metrics_family(b, "hive_task_output_dropped_events_total", "counter",
                   "Live output chunks a worker did not send up to the supervisor because its "
                   "channel was behind (told as task_output_dropped).");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_task_output_dropped_events_total",
                       &(struct metrics_label){"bot", info.id}, 1,
                       watch_bot_at(w, i, info.id)->dropped_events);
    metrics_family(b, "hive_task_output_dropped_bytes_total", "counter", "Bytes of those chunks.");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_task_output_dropped_bytes_total",
                       &(struct metrics_label){"bot", info.id}, 1,
                       watch_bot_at(w, i, info.id)->dropped_bytes);
}

/* hive_queue_depth, hive_queue_oldest_age_seconds (what each worker last
 * said up its channel; 0 for a bot without a worker) and
 * hive_event_subscribers (the supervisor's SSE and WebSocket timeline
 * clients). */
static void watch_metrics_queue(struct watch *w, struct util_buf *b)
{
    const struct merge *m = hive_merge(w->hive);
    struct hive_bot_info info;
    size_t n = 0, hint = 0;
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        n++;
    /* One pass over what the workers said; the families are written after. */
    double(*q)[3] = xcalloc(n ? n : 1, sizeof *q);
    for (size_t i = 0; i < n && hive_bot_at(w->hive, i, &info); i++)
        merge_queue(m, info.id, &hint, &q[i][0], &q[i][1], &q[i][2]);
    metrics_family(b, "hive_queue_depth", "gauge", "Tasks waiting, by queue.");
    for (size_t i = 0; i < n && hive_bot_at(w->hive, i, &info); i++) {
        struct metrics_label rt[] = {{"bot", info.id}, {"kind", "realtime"}};
        struct metrics_label file[] = {{"bot", info.id}, {"kind", "file"}};
        metrics_sample(b, "hive_queue_depth", rt, 2, q[i][0]);
        metrics_sample(b, "hive_queue_depth", file, 2, q[i][1]);
    }
    metrics_family(b, "hive_queue_oldest_age_seconds", "gauge",
                   "How long the longest-waiting task has waited, in seconds (0 when none).");
    for (size_t i = 0; i < n && hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_queue_oldest_age_seconds", &(struct metrics_label){"bot", info.id},
                       1, q[i][2]);
    free(q);
    metrics_family(b, "hive_event_subscribers", "gauge",
                   "Clients of the event stream and of the WebSocket timeline.");
    metrics_sample(b, "hive_event_subscribers", NULL, 0,
                   (double)(merge_subscribers(m) + tlws_sessions(w->ws)));
}

/* hive_tokens_total and hive_cost_usd_total from the final events (SPEC §12). */
static void watch_metrics_cost(struct watch *w, struct util_buf *b)
{
    struct hive_bot_info info;
    metrics_family(b, "hive_tokens_total", "counter",
                   "Tokens the bots' agents reported, by kind (from the task events).");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        for (int t = 0; t < 4; t++) {
            struct metrics_label l[] = {{"bot", info.id}, {"kind", watch_token_kinds[t]}};
            metrics_sample(b, "hive_tokens_total", l, 2, watch_bot_at(w, i, info.id)->tokens[t]);
        }
    metrics_family(b, "hive_cost_usd_total", "counter",
                   "Cost the bots' agents reported, in USD (from the task events).");
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++)
        metrics_sample(b, "hive_cost_usd_total", &(struct metrics_label){"bot", info.id}, 1,
                       watch_bot_at(w, i, info.id)->cost_usd);
}

/* hive_proxy_requests_total: one series per code seen. */
static void watch_metrics_proxy(struct watch *w, struct util_buf *b)
{
    metrics_family(b, "hive_proxy_requests_total", "counter",
                   "Requests answered through /bots/<id>/, by status code.");
    for (int code = 100; code < 100 + PROXY_CODES; code++) {
        unsigned long n = w->proxy ? proxy_requests(w->proxy, code) : 0;
        char text[8];
        snprintf(text, sizeof text, "%d", code);
        if (n)
            metrics_sample(b, "hive_proxy_requests_total", &(struct metrics_label){"code", text}, 1,
                           (double)n);
    }
}

/* GET /metrics. */
static void watch_metrics(struct watch *w, struct http_conn *conn)
{
    struct util_buf *b = &w->scrape;
    b->len = 0;
    watch_metrics_bots(w, b);
    watch_metrics_tasks(w, b);
    watch_metrics_queue(w, b);
    watch_metrics_cost(w, b);
    watch_metrics_proxy(w, b);
    metrics_process(b);
    http_respond(conn, 200, METRICS_CONTENT_TYPE, b->data, b->len, NULL);
}

/* The merged timeline of every bot of the roster (BOT: the seed's path). */
static void watch_timeline(struct watch *w, struct http_conn *conn, struct http_request *req,
                           const char *bot)
{
    struct hive_bot_info info;
    size_t n = 0;
    for (size_t i = 0; hive_bot_at(w->hive, i, &info); i++) {
        struct watch_bot *b = watch_bot_at(w, i, info.id);
        if ((!bot || strcmp(bot, info.id) == 0) && watch_open(w, b))
            w->tls[n++] = b->tl;
    }
    char *body;
    size_t len;
    int status = timeline_answer_merged(w->tls, n, req->query, bot, &body, &len);
    watch_trim(w);
    http_respond(conn, status, "application/json", body, len, NULL);
    free(body);
}

/* GET /ws/bot/<id>/timeline. */
static void watch_upgrade(struct watch *w, struct http_conn *conn, struct http_request *req,
                          const char *id)
{
    char detail[200];
    int status = ws_upgrade_check(req, detail, sizeof detail);
    if (status)
        return http_respond_error(
            conn, status, detail,
            status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : NULL);
    tlws_accept(w->ws, conn, req, id);
}

/* The <id> of a /api/bot/<id>/... or /ws/bot/<id>/... path into ID when it
 * names a bot of the hive; else 404. */
static bool watch_known_bot(struct watch *w, struct http_conn *conn, const struct route_params *pp,
                            char id[TLWS_ID_MAX + 1])
{
    struct hive_bot_info info;
    bool fits = route_param(pp, 0, id, TLWS_ID_MAX + 1);
    if (fits && hive_bot_find(w->hive, id, &info))
        return true;
    char detail[TLWS_ID_MAX + 40];
    snprintf(detail, sizeof detail, "unknown bot %.*s", TLWS_ID_MAX, pp->s[0]);
    http_respond_error(conn, 404, detail, NULL);
    return false;
}

/* GET /metrics. */
static void watch_route_metrics(struct http_conn *conn, struct http_request *req,
                                const struct route_params *pp, void *arg)
{
    (void)req, (void)pp;
    watch_metrics(arg, conn);
}

/* GET /api/timeline. */
static void watch_route_timeline(struct http_conn *conn, struct http_request *req,
                                 const struct route_params *pp, void *arg)
{
    (void)pp;
    watch_timeline(arg, conn, req, NULL);
}

/* GET /api/bot/<id>/timeline (the seed's path). */
static void watch_route_bot_timeline(struct http_conn *conn, struct http_request *req,
                                     const struct route_params *pp, void *arg)
{
    char id[TLWS_ID_MAX + 1];
    if (watch_known_bot(arg, conn, pp, id))
        watch_timeline(arg, conn, req, id);
}

/* GET /ws/bot/<id>/timeline. */
static void watch_route_ws(struct http_conn *conn, struct http_request *req,
                           const struct route_params *pp, void *arg)
{
    char id[TLWS_ID_MAX + 1];
    if (watch_known_bot(arg, conn, pp, id))
        watch_upgrade(arg, conn, req, id);
}

static const struct route watch_routes[] = {
    {ROUTE_READ, "/metrics", 0, watch_route_metrics},
    {ROUTE_READ, "/api/timeline", 0, watch_route_timeline},
    {ROUTE_READ, "/api/bot/*/timeline", 0, watch_route_bot_timeline},
    {ROUTE_GET, "/ws/bot/*/timeline", 0, watch_route_ws},
};

bool watch_route(struct watch *w, struct http_conn *conn, struct http_request *req,
                 const char *token)
{
    return route_dispatch(watch_routes, sizeof watch_routes / sizeof *watch_routes, conn, req,
                          token, w);
}
