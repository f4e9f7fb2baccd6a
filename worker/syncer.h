/*
 * syncer: runs the worker's syncs (fsync, fdatasync, syncfs) on a thread of
 * their own, so that no sync blocks the event loop (SPEC §3: /health and
 * /status answer while a sync of the file system takes seconds). A job is a
 * function run on the thread; its completion is called back on the loop,
 * in the order the jobs were given.
 */
#ifndef HIVE_SYNCER_H
#define HIVE_SYNCER_H

#include <event2/event.h>

struct syncer;

/* Runs on the sync thread; returns 0 or -errno. It must touch only what the
 * loop leaves alone until the completion. */
typedef int (*syncer_job_fn)(void *job);
/* Runs on the loop with the job's result. */
typedef void (*syncer_done_cb)(int result, void *arg);

/* A syncer whose completions run on BASE; its thread starts with the first
 * job (when it cannot, jobs run on the loop). NULL with errno when its
 * wake-up descriptor cannot be made. */
struct syncer *syncer_new(struct event_base *base);
/* Wait for the job that runs (queued ones are dropped, their callbacks not
 * called), then free everything. */
void syncer_free(struct syncer *sy);
/* Wait, on the loop's thread, until every job given so far (and those
 * their callbacks give) has run and been called back (a teardown that must
 * not drop work half-done). */
void syncer_drain(struct syncer *sy);
/* Queue FN(JOB) on the thread; DONE(result, ARG) follows on the loop. */
void syncer_run(struct syncer *sy, syncer_job_fn fn, void *job, syncer_done_cb done, void *arg);
/* Replace the small file PATH with LEN bytes of DATA (copied) durably, on
 * the thread: its folder made when missing, a temp file synced and renamed,
 * the folder synced. Writes run in the order given; a failure is logged. */
void syncer_write_file(struct syncer *sy, const char *path, const void *data, size_t len);

#endif
