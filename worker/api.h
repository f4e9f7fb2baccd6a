/*
 * api: the bot's HTTP API (SPEC §4) and WebSocket protocol (SPEC §5). It
 * routes each request once, turns it into an engine call, and answers; it
 * subscribes to the bot's events (events.h): a task's started/chunk/response
 * go to the WebSocket client that submitted it, if still connected, and
 * every event to the event stream GET /api/events (SPEC §8).
 */
#ifndef HIVE_API_H
#define HIVE_API_H

#include <stdint.h>
#include <sys/types.h>

#include "common/http.h"
#include "common/ws.h"
#include "worker/engine.h"
#include "worker/events.h"
#include "worker/observe.h"
#include "worker/store.h"

struct api;

struct api_config {
    const char *bot_id;
    const char *mode;
    int port;
    const char *token;                  /* NULL: no authentication */
    const char *const *allowed_origins; /* NULL-terminated, may be NULL */
    const char *const *server_names;    /* NULL-terminated, may be NULL */
    const char *bind;                   /* the address bound (a Host that names us) */
    struct http_limits limits;
    struct ws_config ws;
    int64_t started_mono_ns;
};

struct api *api_new(struct event_base *base, int listen_fd, const struct api_config *config,
                    struct store *store);
/* The engine is made after the API (it reports to it); connect the two. */
void api_set_engine(struct api *api, struct engine *engine);
/* Clients of the event stream now (for hive_event_subscribers). */
size_t api_event_subscribers(void *api);
/* Serve observe's routes (timeline, WebSocket timeline, metrics) too. */
void api_set_observe(struct api *api, struct observe *observe);
/* Close every WebSocket session (1001 going away); they leave one by one.
 * Event streams are closed at once. */
void api_close_sessions(struct api *api);
/* Number of WebSocket sessions still open. */
size_t api_sessions(const struct api *api);
/* Free the API; sessions still open (clients that never answered the close)
 * are dropped. */
/* Serve the API on LISTEN_FD too (another listening socket). 0, or -1 with
 * the fd still the caller's. */
int api_listen(struct api *api, int listen_fd);
void api_free(struct api *api);
/* Subscribe to the bot's events: a task's messages go to the WebSocket
 * client that submitted it, and every event to GET /api/events. */
void api_set_events(struct api *api, struct events *events);

#endif
