/*
 * ssehub: the subscribers of one Server-Sent Events stream (GET /api/events
 * of the worker and of the supervisor, SPEC §8): their ?bot= and ?type=
 * filters, the keepalive comment every 15 s, and the bound on what may wait
 * for a subscriber that does not read (it is dropped, never waited for).
 * What the events are and how a cursor is replayed is the caller's.
 */
#ifndef HIVE_SSEHUB_H
#define HIVE_SSEHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"

/* A live subscriber may have this much output queued; then it is dropped. */
#define SSEHUB_MAX_PENDING (1u << 20)
#define SSEHUB_KEEPALIVE_MS 15000

struct ssehub;
struct ssehub_sub;

/* WRITER_THREAD: live subscribers that have caught up are written by a
 * thread of the hub's (common/ssefan.h), each through a dup of its socket;
 * else by the loop. */
struct ssehub *ssehub_new(struct event_base *base, size_t max_pending, int keepalive_ms,
                          bool writer_thread);
/* End every stream and free the hub. */
void ssehub_free(struct ssehub *hub);
/* The cursor a request resumes from: its Last-Event-ID header, else ?since=.
 * 1 with *CURSOR set, 0 when there is none, -1 when it is not a cursor. */
int ssehub_cursor(const struct http_request *req, uint64_t *cursor);
/* Answer REQ with a stream. Not live yet: the caller replays with
 * ssehub_send_to(), then calls ssehub_live(). NULL: answered already (a bad
 * filter). */
struct ssehub_sub *ssehub_open(struct ssehub *hub, struct http_conn *conn,
                               const struct http_request *req);
/* Send one event to SUB alone, if its filters let it through. ID, BOT may be
 * NULL. */
void ssehub_send_to(struct ssehub_sub *sub, const char *id, const char *type, const char *bot,
                    const char *json, size_t len);
/* From now on SUB gets what is published; what the replay queued is allowed
 * on top of the bound. */
void ssehub_live(struct ssehub_sub *sub);
/* Send one event to every live subscriber whose filters let it through. */
void ssehub_publish(struct ssehub *hub, const char *id, const char *type, const char *bot,
                    const char *json, size_t len);
/* Close every stream now (a server that stops: the loop still runs, so the
 * connections are gone before it ends). */
void ssehub_close_all(struct ssehub *hub);
/* Live subscribers. */
size_t ssehub_subscribers(const struct ssehub *hub);
/* Subscribers dropped for not reading, since the start. */
uint64_t ssehub_dropped(const struct ssehub *hub);

#endif
