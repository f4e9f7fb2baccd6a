/*
 * watch: what the supervisor shows of the whole hive beyond /status (SPEC
 * §8, §9), never by asking workers over HTTP. Its task counters and
 * duration histograms count the final events that come up the workers'
 * channels (merge.c's listeners: each bot event once), so a scrape costs no
 * timeline query and the counters survive worker restarts; a supervisor
 * restart starts them again (see watch.c). It opens a bot's read-only
 * timeline only when a query needs it (a small LRU, closed when idle) and
 * serves GET /api/timeline, GET /api/bot/<BOT-ID>/timeline,
 * GET /ws/bot/<BOT-ID>/timeline and GET /metrics.
 */
#ifndef HIVE_WATCH_H
#define HIVE_WATCH_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>

#include "common/http.h"
#include "supervisor/hive.h"
#include "supervisor/proxy.h"

struct watch;

struct watch *watch_new(struct event_base *base, struct hive *hive, const struct proxy *proxy);
void watch_free(struct watch *w);
/* Answer REQ when it is one of watch's routes (its /metrics and timeline
 * rows, TOKEN checked as on every route); false when it is not. */
bool watch_route(struct watch *w, struct http_conn *conn, struct http_request *req,
                 const char *token);
/* One event of §8's vocabulary that came up from a worker, for the live
 * messages of the WebSocket timeline (the events channel's sink calls it). */
void watch_event(struct watch *w, const json_t *event);

#endif
