/*
 * store: the bot's folders on disk and every durable step of a task's life
 * (SPEC §2, §3): realtime tasks persisted before they are acknowledged (in
 * batches sharing one sync), the claim into _active/, the response file
 * written exactly once, the archive, and the recovery after a crash.
 *
 * Exactly-once responses: the response is first written under a per-task
 * temp name in the bot's pending folder (.pending/<BOT> inside the
 * responses folder, so a hard link reaches the final name); once synced (several responses share
 * one syncfs) it is renamed to its "pending" name, then hard-linked to its
 * final name (link never overwrites), then the task moves to _archive/, then
 * the pending name is removed. Whatever instant the worker dies at, the
 * pending file and its link count tell recovery what already happened; a
 * temp file is a response that was never made durable, and its task runs
 * again.
 */
#ifndef HIVE_STORE_H
#define HIVE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "worker/task.h"

struct store;
struct answers;

struct store_paths {
    char *queue;     /* .deia/hive/tasks/<BOT> */
    char *active;    /* .../_active */
    char *archive;   /* .../_archive */
    char *realtime;  /* .../_realtime */
    char *responses; /* .deia/hive/responses */
    char *pending;   /* .../responses/.pending/<BOT>: answers not yet linked */
    char *controls;  /* .deia/hive/controls */
    char *pause;     /* .deia/hive/controls/<BOT>-PAUSE */
    char *logs;      /* .deia/bot-logs */
    char *activity;  /* .deia/bot-logs/<BOT>-activity.jsonl */
};

/* Lay out (mkdir -p) the folders for BOT_ID under WORK_DIR, but _active/,
 * _realtime/, _archive/ and the pending folder, which the first claim,
 * accepted task and answer make (absent is empty). */
struct store *store_open(const char *work_dir, const char *bot_id, char *err, size_t errlen);
void store_free(struct store *store);
/* Write realtime task files under a temp name and rename them, as on a file
 * system without O_TMPFILE (the fallback is found by itself; for tests). */
void store_use_named_temp_files(struct store *s);
const struct store_paths *store_paths(const struct store *store);

/* Persist N realtime tasks: write each under a temp name, rename each into
 * _realtime/, make them all durable with one syncfs(). OK[i] tells which
 * made it (the others left nothing behind). The three steps below, in one
 * call (for tests and tools). */
void store_persist_realtime(struct store *store, struct task *const *tasks, size_t n, bool *ok);
/* Step 1, on the event loop: write and name each task; FDS[i] its open
 * file (-1 none), OK[i] whether it was written and named. */
void store_realtime_prepare(struct store *store, struct task *const *tasks, size_t n, int *fds,
                            bool *ok);
/* Step 2, on any thread (touches nothing but FDS): make them durable with
 * one syncfs(). 0 or -errno. */
int store_realtime_sync(const int *fds, size_t n);
/* Step 3, on the loop: close FDS; with SYNCED (step 2's result) < 0 the
 * named files are removed and OK[i] cleared. */
void store_realtime_settle(struct store *store, struct task *const *tasks, size_t n, const int *fds,
                           int synced, bool *ok);
/* Load one persisted realtime task file (NAME in _realtime/ or _active/). */
struct task *store_load_realtime(struct store *store, const char *dir, const char *name);

/* Move the task's file into _active/ (unless TASK->claimed already, then it
 * is only read again). For a file task, the content is then read and parsed
 * (a parse error is kept in task->parse_error). 0, or -errno: -ENOENT the
 * file went away; -EINVAL it is not a regular file (a symlink, FIFO, device
 * or folder: left where it is, never opened); a transient error
 * (store_transient) with TASK->claimed telling whether it is in _active/. */
int store_claim(struct store *store, struct task *task, const char *bot_id);
/* Write the response TEXT of the claimed TASK under its temp name, not yet
 * durable. Returns the open descriptor, which store_commit_responses() takes
 * over, or -errno (nothing left behind). */
int store_write_response(struct store *store, const struct task *task, const char *text,
                         size_t len);
/* Commit N responses written by store_write_response() (descriptors FDS,
 * all closed here): one sync makes them durable, then each gets its
 * pending name, its final name built from BASES[i] (see response_name; the
 * chosen one goes to TASKS[i]->response_file), and its task is archived;
 * a second sync (of the folders) makes those names durable, and only then
 * do the pending names go. RC[i]: 0, or -errno with nothing of that
 * response left (write it again; the task stays claimed). The steps below
 * in one call. */
void store_commit_responses(struct store *store, struct task *const *tasks, char *const *bases,
                            const int *fds, size_t n, int *rc);
/* Step 1, on any thread: make the data of the N files FDS durable (one
 * fdatasync or one syncfs). 0 or -1 with errno. */
int store_sync_batch(const int *fds, size_t n);
/* Step 2, on the loop: close FDS; with SYNCED (0 or -errno of step 1) == 0
 * rename, link and archive each (RC[i] as above; TASKS[i]->claimed is
 * cleared when its task left _active/). */
void store_publish_responses(struct store *store, struct task *const *tasks, char *const *bases,
                             const int *fds, size_t n, int synced, int *rc);
/* Step 3, on any thread: make the names step 2 made durable (one syncfs).
 * 0 or -errno. */
int store_sync_names(struct store *store);
/* Steps 1 and 3 in one call, on any thread: the data of the N files FDS
 * and, with NAMES, whatever steps 2 did before (one syncfs when both). A
 * commit pipelines them: each sync makes one batch's data and the previous
 * batch's names durable. 0 or -errno. */
int store_sync_commit(struct store *store, const int *fds, size_t n, bool names);
/* Step 4, on the loop, once step 3 succeeded: drop the pending names of the
 * archived tasks (their answers are done). */
void store_release_responses(struct store *store, struct task *const *tasks, size_t n,
                             const int *rc);
/* Write and commit one response (both steps above). 0 or -errno. */
int store_finish(struct store *store, struct task *task, const char *base, const char *text,
                 size_t len);
/* Put a claimed task back (shutdown before it finished). */
int store_unclaim(struct store *store, struct task *task);

/* Callback for recovered tasks that must run (again), or, with
 * TASK->claimed, be answered failed at once (TASK->parse_error says why). */
typedef void (*store_requeue_cb)(struct task *task, void *arg);
/* Crash recovery at start: finish what was half-finished, return the rest of
 * _active/ to its queue, and hand every realtime task to CB (a task file
 * that does not parse is renamed to a dot name). A task the worker died
 * with 3 times in a row (counted durably in _active/) is poison: it stays
 * claimed and goes to CB to be answered failed. Returns the number of tasks
 * handed over. What a passing shortage (store_transient: no descriptor, no
 * memory) kept it from doing is left for the next call, while
 * store_recover_incomplete() says so: each call goes on from there, never
 * handing a task over twice nor counting a death twice. Until it is done,
 * nothing may be claimed or answered (the next call takes what is in
 * _active/ for what a dead worker left); tasks persisted meanwhile in
 * _realtime/ are handed over too (the caller knows them already). */
int store_recover(struct store *store, const char *bot_id, store_requeue_cb cb, void *arg);
/* True while the last store_recover() left something to do again. */
bool store_recover_incomplete(const struct store *store);

/* The index of this bot's answers by task id (answers.h): kept by the
 * commit and by recovery, read by look-ups. */
struct answers *store_answers(const struct store *store);

/* Read the regular file PATH whole, whatever its size, never through a
 * symlink and never blocking on a FIFO. NULL with errno. Caller frees. */
char *store_read_regular(const char *path, size_t *len_out);
/* True for errors that pass (out of descriptors, memory, disk space): the
 * task waits and is tried again, it does not fail. */
bool store_transient(int err);

/* Create (PAUSED) or remove the bot's PAUSE file. 0 or -errno. */
int store_set_paused(struct store *store, bool paused);
/* True while the PAUSE file exists. */
bool store_paused(const struct store *store);

#endif
