/*
 * merge: the hive's one event stream (SPEC §8). Each worker's channel
 * (common/chan.h) brings up its bot's events and status; merge numbers every
 * stored event of every bot, and the supervisor's own bot_state events, in
 * one sequence (hive_seq), keeps them in .deia/hive/events.jsonl (evlog) and
 * serves them on the supervisor's GET /api/events. Per bot it knows the last
 * bot seq merged (read back from its own file at start), and asks each new
 * worker to resume after it, so the merge misses nothing across a kill -9
 * of either side.
 */
#ifndef HIVE_MERGE_H
#define HIVE_MERGE_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/http.h"

struct merge;

/* Merge into the log at PATH (made if missing). */
struct merge *merge_new(struct event_base *base, const char *path);
void merge_free(struct merge *merge);
/* A worker of BOT_ID was started; FD is the supervisor's end of its channel
 * (taken). A previous channel of that bot is dropped. */
void merge_attach(struct merge *merge, const char *bot_id, int fd);
/* One event of remote bot BOT_ID, its JSON text as its own stream gave it:
 * merged as a channel's (a seq not above the last merged is a repeat). */
void merge_remote_event(struct merge *merge, const char *bot_id, const char *json, size_t len);
/* The last seq of BOT_ID merged: where a stream of its events resumes. */
uint64_t merge_last_seq(struct merge *merge, const char *bot_id);
/* BOT_ID changed state: a bot_state event. PID 0: none; REASON "" none. */
void merge_bot_state(struct merge *merge, const char *bot_id, const char *state, pid_t pid,
                     const char *reason, unsigned restarts);
/* The last status BOT_ID's worker sent up, or NULL (borrowed). */
const json_t *merge_status(const struct merge *merge, const char *bot_id);
/* Close every event stream (the hive stops). */
void merge_close_streams(struct merge *merge);
/* Answer GET /api/events. */
void merge_serve(struct merge *merge, struct http_conn *conn, struct http_request *req);

#endif
