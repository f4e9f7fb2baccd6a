/*
 * events: the one vocabulary of a bot's events (SPEC §8). The engine says
 * each fact once here (task received, started, output, done; bot paused or
 * resumed); every sink subscribes: the activity log (built in), WebSocket
 * clients, the event stream, the channel to the supervisor. Each event but
 * task_output gets the bot's next `seq` and is appended to the bot's events
 * file before any subscriber hears of it, so a replay from the file and the
 * live events meet without a gap.
 */
#ifndef HIVE_EVENTS_H
#define HIVE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/activity.h"
#include "worker/task.h"

struct events;

/* One event as subscribers see it. */
struct events_event {
    const char *type;
    uint64_t seq;            /* 0: live only (task_output) */
    const struct task *task; /* the task it is about; NULL for bot events and replays */
    const char *json;        /* the whole event as compact JSON */
    size_t json_len;
    const char *chunk; /* task_output: the raw bytes of the adapter */
    size_t chunk_len;
};

typedef void (*events_cb)(const struct events_event *ev, void *arg);

/* Open (or start) the events file PATH of BOT_ID and read its last seq back.
 * ACTIVITY (may be NULL) gets the task events in its own format. */
struct events *events_open(const char *path, const char *bot_id, struct activity *activity);
void events_close(struct events *events);
/* The seq of the last stored event (0: none yet). */
uint64_t events_last_seq(const struct events *events);

/* Subscribe CB; the id to unsubscribe with. Subscribers may unsubscribe (any
 * of them) from inside a callback. */
uint64_t events_subscribe(struct events *events, events_cb cb, void *arg);
void events_unsubscribe(struct events *events, uint64_t id);
/* Hand CB the stored events after SINCE, in order, from the file. When
 * events after SINCE are no longer kept (or SINCE is from the future, the
 * files having been lost), CB first gets a `resync` event (no seq) and the
 * answer is true; what is kept is handed all the same (all of it for a
 * cursor from the future). At most MAX events (0: all). The file keeps the
 * newest 4 to 8 MiB of events (common/evlog.h). */
bool events_replay(struct events *events, uint64_t since, size_t max, events_cb cb, void *arg);

/* The facts, told once each by the engine. POSITION 0: not known. */
void events_task_received(struct events *events, const struct task *task, size_t position);
void events_task_started(struct events *events, const struct task *task);
/* The running TASK printed nothing for SILENT_S (stall_after; stored). */
void events_task_stalled(struct events *events, const struct task *task, double silent_s);
void events_task_output(struct events *events, const struct task *task, const char *data,
                        size_t len);
/* The task's answer is durable: task_completed, task_failed, or
 * task_cancelled (a failure whose error is "cancelled", SPEC §4). */
void events_task_done(struct events *events, const struct task *task);
/* TASK ends without an end of its own (the stop's grace ran out, or a limit
 * was hit while stopping: it is left queued for the next start) and is about
 * to be freed: the events module lets go of it. Its events held back behind
 * an earlier task are dropped (none of them was numbered), and the tasks
 * after it no longer wait for it. Nothing for a task it does not hold. */
void events_task_forget(struct events *events, const struct task *task);
/* The same for every task it holds, without releasing anything (the engine
 * is being freed). */
void events_task_forget_all(struct events *events);
void events_bot_paused(struct events *events, bool paused);
/* The same with why (REASON, may be NULL) and, when paused, until when
 * (UNTIL, Unix seconds; 0 none: until `hive resume`). */
void events_bot_paused_why(struct events *events, bool paused, const char *reason, int64_t until);
/* The agent of TASK used a tool (task_tool): NAME and a one-line SUMMARY of
 * its input. Live only, as task_output. */
void events_task_tool(struct events *events, const struct task *task, const char *name,
                      const char *summary);
/* A `warning` event with MESSAGE (stored; the caller logs it at WARN, which
 * the activity log keeps). */
void events_warning(struct events *events, const char *message);

/* The compact JSON (free it; *LEN its length) of a task_output_dropped
 * event: N_EVENTS live events (task_output, task_tool) of TASK_ID from SOURCE,
 * BYTES of output among them, that one sink could not pass on, the first at
 * AT_NS (wall). Neither stored nor told to subscribers: the sink that
 * dropped them sends it in their place. TASK_ID, SOURCE NULL: of several
 * tasks. */
char *events_dropped_json(const struct events *events, const char *task_id, const char *source,
                          uint64_t n_events, uint64_t bytes, int64_t at_ns, size_t *len);

#endif
