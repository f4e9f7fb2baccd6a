/*
 * observe: what a worker shows of itself beyond /status (SPEC §8, §9). It
 * owns the bot's durable timeline (the writer), the WebSocket timeline
 * sessions, the task counters and histogram of GET /metrics, and the routes
 * GET /api/timeline, GET /api/bot/<BOT-ID>/timeline,
 * GET /ws/bot/<BOT-ID>/timeline and GET /metrics. The engine's report of a
 * finished task is the one moment a task enters the timeline and the
 * counters.
 */
#ifndef HIVE_OBSERVE_H
#define HIVE_OBSERVE_H

#include <jansson.h>
#include <stdbool.h>

#include "common/http.h"
#include "common/ws.h"
#include "worker/engine.h"
#include "worker/store.h"
#include "worker/task.h"

struct observe;

/* Open BOT_ID's timeline in the store's logs folder (a failure is logged
 * and the timeline routes answer 503; the counters still work). */
struct observe *observe_new(struct store *store, const char *bot_id, const struct ws_config *ws);
void observe_free(struct observe *o);
/* The engine, for the queue families and for refusing upgrades while it
 * stops. */
void observe_set_engine(struct observe *o, struct engine *engine);
/* Recovery at start: answers indexed since the timeline was last written
 * (a crash between the durable answer and its timeline entry) are appended
 * now; those already there are left. Returns how many were added. */
int observe_recover(struct observe *o);
/* A task is finished and durably answered (the engine's task_finished): one
 * timeline entry, the counters, an `update` to WebSocket subscribers. */
void observe_task_finished(struct observe *o, const struct task *task);
/* One event of §8's vocabulary, for the live WebSocket timeline messages
 * (the events module's sink calls this). */
void observe_event(struct observe *o, const json_t *event);
/* hive_event_subscribers: COUNT(ARG) says how many clients the event
 * stream has at the moment of a scrape. */
void observe_count_subscribers(struct observe *o, size_t (*count)(void *arg), void *arg);
/* Answer REQ when it is one of observe's routes (its /metrics and timeline
 * rows, TOKEN checked as on every route); false when it is not (the caller
 * routes it). */
bool observe_route(struct observe *o, struct http_conn *conn, struct http_request *req,
                   const char *token);
/* The worker is stopping: say goodbye to the timeline WebSocket clients. */
void observe_close_sessions(struct observe *o);

#endif
