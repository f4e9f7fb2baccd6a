/*
 * tlws: the WebSocket timeline of SPEC §8 (DEIA TASK-002-015),
 * GET /ws/bot/<BOT-ID>/timeline, for the worker (its own bot) and the
 * supervisor (any bot) alike. A session is bound to the bot of its path; the
 * client subscribes (optionally from a time and with source/success
 * filters) and gets the newest matching entries at once (initial_entries),
 * then one `update` per new timeline entry and the live task messages
 * (task_started, progress, task_completed, task_failed) fed by the owner.
 * Keep-alive: the WebSocket layer pings after 30 s of quiet and drops a
 * client silent for two intervals (ws_config.ping_interval_ms).
 *
 * Like timeline.c it depends on common/ only, so both programs link it.
 */
#ifndef HIVE_TLWS_H
#define HIVE_TLWS_H

#include <event2/event.h>
#include <jansson.h>

#include "common/http.h"
#include "common/ws.h"
#include "worker/timeline.h"

/* Bot ids are at most this long (task id rules). */
#define TLWS_ID_MAX 64

struct tlws;

/* The timeline of BOT_ID (owned by the caller), or NULL when there is none
 * (yet). */
typedef struct timeline *(*tlws_lookup_fn)(void *arg, const char *bot_id);

/* A hub of timeline sessions; LOOKUP finds a bot's timeline for the
 * initial entries. */
struct tlws *tlws_new(const struct ws_config *config, tlws_lookup_fn lookup, void *arg);
/* Drop every session at once (no close handshake) and free the hub. */
void tlws_free(struct tlws *hub);
/* Say goodbye (1001) to every session; they leave one by one. */
void tlws_close_all(struct tlws *hub);
/* Sessions open. */
size_t tlws_sessions(const struct tlws *hub);
/* The bot id of a timeline WebSocket path "/ws/bot/<id>/timeline" into ID
 * (CAP bytes). True when PATH is one. */
bool tlws_path_bot(const char *path, char *id, size_t cap);
/* Upgrade REQ (checked by the caller with ws_upgrade_check) to a session
 * bound to BOT_ID. */
void tlws_accept(struct tlws *hub, struct http_conn *conn, const struct http_request *req,
                 const char *bot_id);
/* Run a session bound to BOT_ID on BEV after a handshake that already
 * happened (tests; tlws_accept's own second half). Takes BEV. */
void tlws_attach(struct tlws *hub, struct bufferevent *bev, const char *bot_id);
/* A new timeline entry of its bot (ENTRY's bot_id): an `update` to every
 * session subscribed to that bot whose filters it matches. */
void tlws_entry(struct tlws *hub, const json_t *entry);
/* One event of SPEC §8's vocabulary (the events module's sink calls this for
 * every event): task_started, task_output (as `progress`), task_completed
 * and task_failed/task_cancelled (as task_failed) go to the sessions
 * subscribed to the event's bot_id; other types are ignored. */
void tlws_event(struct tlws *hub, const json_t *event);

#endif
