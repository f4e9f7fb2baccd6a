/*
 * engine: the task engine of one bot. Tasks enter (realtime ones after they
 * are durable), wait in order (realtime by priority and arrival, then file
 * tasks), run one at a time through the adapter, are answered with exactly
 * one response file, indexed by id and archived; GET /api/task/<id> of a
 * finished task reads its response file back (answers.h).
 * The engine never talks to clients: it tells each fact of a task's life
 * once through events.h, where the sinks subscribe.
 */
#ifndef HIVE_ENGINE_H
#define HIVE_ENGINE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/activity.h"
#include "worker/adapter.h"
#include "worker/budget.h"
#include "worker/events.h"
#include "worker/store.h"
#include "worker/task.h"

struct engine;

struct engine_config {
    const char *bot_id;
    struct adapter_config adapter;
    double cooldown_s;
    size_t queue_max;      /* pending realtime tasks */
    double stop_grace_s;   /* how long a running task may finish on stop */
    bool file_queue;       /* watch the file queue (modes cli-only, hybrid) */
    double file_min_age_s; /* a file written in place must be this old */
    double rescan_s;       /* safety-net rescan of the queue folder (0: by the watch) */
    double stall_after_s;  /* a running task silent this long is stalled; 0: off */
    /* Agent CLIs (SPEC §12, worker/agent.h) */
    const char *work_dir;  /* where sessions/ and budget/ are kept */
    bool session_continue; /* resume the bot's last session */
    bool auto_resume;      /* a usage limit's pause ends by itself */
    struct budget_config budget;
};

/* What the engine tells its owner beside the events of events.h (a task's
 * life is told there, once). */
struct engine_events {
    /* engine_stop() is complete: nothing runs any more. */
    void (*stopped)(void *arg);
    void *arg;
};

/* ENGINE_RECOVERING: recovery of the last run's tasks is unfinished (it met
 * a passing shortage and is tried again soon); until it is done an id cannot
 * be checked against the tasks still on disk, so nothing new is taken. */
enum engine_submit_status {
    ENGINE_ACCEPTED,
    ENGINE_DUPLICATE,
    ENGINE_FULL,
    ENGINE_STOPPING,
    ENGINE_RECOVERING
};

/* TASK is NULL when it could not be made durable; POSITION is 1-based. */
typedef void (*engine_accept_cb)(struct task *task, size_t position, void *arg);

struct engine_status {
    const char *state; /* idle, busy, paused, stopping */
    const struct task *current;
    size_t realtime;
    size_t file;
    unsigned long processed;
    unsigned long failed;
    int64_t oldest_wall_ns;    /* when the longest-waiting queued task arrived; 0: none */
    const char *paused_reason; /* the bot paused itself (usage limit, budget); NULL: no */
    int64_t paused_until;      /* ... until then (Unix seconds); 0: until resumed */
};

struct engine *engine_new(struct event_base *base, const struct engine_config *config,
                          struct store *store, struct activity *activity, struct events *events,
                          const struct engine_events *callbacks);
void engine_free(struct engine *engine);
/* Recover what a previous run left and start working; the file queue takes
 * over INOTIFY_FD, or makes its own instance when it is -1. Returns the
 * number of recovered realtime tasks. */
int engine_start(struct engine *engine, int inotify_fd);
/* Offer a realtime task (the engine takes TASK unless the answer is not
 * ENGINE_ACCEPTED). CB runs once it is durable and queued. */
enum engine_submit_status engine_submit(struct engine *engine, struct task *task,
                                        engine_accept_cb cb, void *arg);
/* A task the engine holds (accepting, queued, running, or finished but not
 * yet durably answered), or NULL. */
const struct task *engine_find(const struct engine *engine, const char *task_id);
/* What TASK_ID is to this bot: "queued", "running", "done", "failed",
 * "cancelled" (an answered id, before a restart too; or a cancel waiting for
 * its answer), or NULL when it is unknown. */
const char *engine_task_state(struct engine *engine, const char *task_id);
/* What /status shows; no system call when inotify watches the controls. */
void engine_status(struct engine *engine, struct engine_status *st);
/* Pause or resume through the PAUSE file. 0 or -errno. */
int engine_pause(struct engine *engine, bool paused);
enum engine_cancel_status {
    ENGINE_CANCEL_OK,       /* cancelled: the callback runs once it is answered */
    ENGINE_CANCEL_UNKNOWN,  /* no task of that id */
    ENGINE_CANCEL_FINISHED, /* answered already, or its answer is being committed */
    ENGINE_CANCEL_BUSY,     /* not now: it is being stored, its file's name is in use, or
                               recovery is not done */
    ENGINE_CANCEL_STOPPING
};

/* TASK is the cancelled task once its answer (failed, error "cancelled") is
 * durable and reported; NULL when it will not be answered (the bot stopped
 * first: the task stays queued, or its file went away). */
typedef void (*engine_cancel_cb)(const struct task *task, void *arg);

/* Cancel TASK_ID: a queued task (realtime, file or held) leaves its queue,
 * a running one has its process tree killed; either is answered as failed
 * with the error "cancelled" (state "cancelled") through the normal answer
 * path, and CB runs once that answer is durable. CB runs only after
 * ENGINE_CANCEL_OK, exactly once. */
enum engine_cancel_status engine_cancel(struct engine *engine, const char *task_id,
                                        engine_cancel_cb cb, void *arg);
/* Kill the running task's process group; false when nothing runs. */
bool engine_interrupt(struct engine *engine);
/* Forget the bot's agent session: the next task starts a new one. 0 or -errno. */
int engine_reset_session(struct engine *engine);
/* When the longest-waiting queued task arrived (realtime: accepted; file:
 * its mtime), wall ns; 0 when nothing waits. For the queue-age metric. */
int64_t engine_oldest_waiting_ns(const struct engine *engine);
/* Stop taking tasks; let the running one finish within the grace time or
 * kill it and leave it queued; then report stopped. */
void engine_stop(struct engine *engine);
bool engine_stopping(const struct engine *engine);
/* Something changed outside (a file, the PAUSE file): look for work. */
void engine_kick(struct engine *engine);

#endif
