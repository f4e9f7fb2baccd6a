/*
 * filequeue: the file queue folder of one bot. It watches the folder with
 * inotify (plus a slow rescan as a safety net), decides when a dropped file is
 * complete (renamed in, or written in place and left alone for min_age), reads
 * its priority and keeps the ready files in SPEC §2.1 order. It never claims:
 * the engine pops a task and asks the store to claim it. In websocket-only
 * mode it watches only the controls folder (the PAUSE file).
 */
#ifndef HIVE_FILEQUEUE_H
#define HIVE_FILEQUEUE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/store.h"
#include "worker/task.h"

struct filequeue;

/* Called when something the engine may care about changed: a file became
 * ready, or the controls folder (PAUSE file) changed. */
typedef void (*filequeue_cb)(void *arg);

/* Told the name of a queue entry that is not a regular file (once). */
typedef void (*filequeue_name_cb)(const char *name, void *arg);
/* Told of a task file seen for the first time (it is queued). */
typedef void (*filequeue_task_cb)(const struct task *task, void *arg);

/* A new inotify instance (non-blocking, close-on-exec), or -1 with errno. */
int filequeue_inotify_new(void);
/* Watch the controls folder, and with WATCH_QUEUE the queue folder too, on
 * INOTIFY_FD (taken over) or, when it is -1, on an instance of its own. A
 * given instance may have outlived an earlier run of the bot in a service
 * manager's fd store: its pending events are discarded (the start scan finds
 * what they were about), adding its watches again keeps their descriptors,
 * and events of watches it does not know are ignored. */
struct filequeue *filequeue_new(struct event_base *base, const struct store_paths *paths,
                                const char *bot_id, int inotify_fd, bool watch_queue,
                                double min_age_s, double rescan_s, filequeue_cb cb, void *arg);
void filequeue_free(struct filequeue *fq);
/* Set the callbacks for strange entries and newly seen tasks (before the
 * first rescan). */
void filequeue_set_hooks(struct filequeue *fq, filequeue_name_cb not_regular,
                         filequeue_task_cb seen, void *arg);
/* The next file task in order, left in the queue, or NULL. */
const struct task *filequeue_peek(const struct filequeue *fq);
/* The next file task in order, removed from the queue (caller owns it), or
 * NULL. */
struct task *filequeue_pop(struct filequeue *fq);
/* True when inotify reports changes (else only the rescan notices). */
bool filequeue_watching(const struct filequeue *fq);
/* Number of ready file tasks. */
size_t filequeue_len(const struct filequeue *fq);
/* The oldest ready file's mtime (wall ns), or 0 when none is ready. */
int64_t filequeue_oldest_ns(const struct filequeue *fq);
/* A queued file task with this task id, or NULL. */
const struct task *filequeue_find(struct filequeue *fq, const char *task_id);
/* Take TASK (one of filequeue_find's) out of the queue (caller owns it):
 * it is being cancelled. */
struct task *filequeue_take(struct filequeue *fq, const struct task *task);
/* NAME in the queue is not a regular file: it is never opened, and
 * reported (not_regular hook) once. */
void filequeue_not_regular(struct filequeue *fq, const char *name);
/* Rescan the folder now. */
void filequeue_rescan(struct filequeue *fq);

#endif
