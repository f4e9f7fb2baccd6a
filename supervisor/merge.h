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
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/http.h"

struct merge;

/* Merge into the log at PATH (made if missing). */
struct merge *merge_new(struct event_base *base, const char *path);
void merge_free(struct merge *merge);
/* A worker of BOT_ID was started; FD is the supervisor's end of its channel
 * (taken). A previous channel of that bot is dropped. */
void merge_attach(struct merge *merge, const char *bot_id, int fd);
/* True when BOT_ID's worker said (CHAN_PARKED) that it sends no more
 * WATCHDOG=1 until it has work. */
bool merge_parked(const struct merge *merge, const char *bot_id);
/* Send one message down BOT_ID's channel. False when it has none. */
bool merge_send_down(struct merge *merge, const char *bot_id, enum chan_type type,
                     const char *payload, size_t len);
/* One event of remote bot BOT_ID, its JSON text as its own stream gave it:
 * merged as a channel's (a seq not above the last merged is a repeat). */
void merge_remote_event(struct merge *merge, const char *bot_id, const char *json, size_t len);
/* The status remote bot BOT_ID's GET /status last gave (JSON text): what
 * merge_status() answers for it, as a worker's channel status. */
void merge_remote_status(struct merge *merge, const char *bot_id, const char *json, size_t len);
/* Remote bot BOT_ID's own log started over (its last seq is below our
 * cursor): merge its events from seq 1 again. */
void merge_remote_rewind(struct merge *merge, const char *bot_id);
/* The last seq of BOT_ID merged: where a stream of its events resumes. */
uint64_t merge_last_seq(struct merge *merge, const char *bot_id);
/* BOT_ID changed state: a bot_state event. PID 0: none; REASON "" none. */
void merge_bot_state(struct merge *merge, const char *bot_id, const char *state, pid_t pid,
                     const char *reason, unsigned restarts);
/* What a listener is told (one of MERGE_NOTE_*; see merge_listen). */
enum {
    MERGE_NOTE_EVENT = 1,  /* an event merged, or a live task_output */
    MERGE_NOTE_STATUS = 2, /* what a bot's worker sent up as its status */
    MERGE_NOTE_STATE = 4,  /* a bot changed state (before its bot_state event) */
    MERGE_NOTE_ALL = 7
};
struct merge_note {
    int what;             /* one MERGE_NOTE_* */
    const char *bot_id;   /* whose news */
    const json_t *event;  /* EVENT: its JSON as the stream has it */
    const json_t *status; /* STATUS */
    const char *state;    /* STATE */
};
typedef void (*merge_listener_fn)(const struct merge_note *note, void *arg);
/* FN is told, in the order they listen, each note of the kinds in FILTER (an
 * or of MERGE_NOTE_*); events after the stream's own subscribers. The one
 * hook of every other consumer of the merge (counters, the WebSocket
 * timeline, pool routing). A positive id for merge_unlisten; a listener may
 * stop listening (itself or another) while it is told. */
int merge_listen(struct merge *merge, int filter, merge_listener_fn fn, void *arg);
void merge_unlisten(struct merge *merge, int id);
/* The last status BOT_ID's worker sent up, or NULL (borrowed). */
const json_t *merge_status(const struct merge *merge, const char *bot_id);
/* What BOT_ID's worker last said of its queue: tasks waiting in *REALTIME
 * and *FILE, and how long the oldest has waited by now, in seconds (all 0
 * when none, or nothing said). HINT: where to start looking; a loop over
 * the roster passes the same variable (from 0) for each bot, which makes
 * each look-up O(1) when the orders agree. */
void merge_queue(const struct merge *merge, const char *bot_id, size_t *hint, double *realtime,
                 double *file, double *age);
/* Subscribers of GET /api/events now. */
size_t merge_subscribers(const struct merge *merge);
/* Close every event stream (the hive stops). */
void merge_close_streams(struct merge *merge);
/* Answer GET /api/events. */
void merge_serve(struct merge *merge, struct http_conn *conn, struct http_request *req);

#endif
