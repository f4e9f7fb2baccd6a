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

/* Lay out (mkdir -p) the folders for BOT_ID under WORK_DIR. */
struct store *store_open(const char *work_dir, const char *bot_id, char *err, size_t errlen);
void store_free(struct store *store);
/* Write realtime task files under a temp name and rename them, as on a file
 * system without O_TMPFILE (the fallback is found by itself; for tests). */
void store_use_named_temp_files(struct store *s);
const struct store_paths *store_paths(const struct store *store);

/* Persist N realtime tasks: write each under a temp name, rename each into
 * _realtime/, make them all durable with one syncfs(). OK[i] tells which
 * made it (the others left nothing behind). */
void store_persist_realtime(struct store *store, struct task *const *tasks, size_t n, bool *ok);
/* Load one persisted realtime task file (NAME in _realtime/ or _active/). */
struct task *store_load_realtime(struct store *store, const char *dir, const char *name);

/* Move the task's file into _active/. For a file task, the content is then
 * read and parsed (a parse error is kept in task->parse_error). 0, or -errno
 * (-ENOENT: the file went away). */
int store_claim(struct store *store, struct task *task, const char *bot_id);
/* Write the response TEXT of the claimed TASK under its temp name, not yet
 * durable. Returns the open descriptor, which store_commit_responses() takes
 * over, or -errno (nothing left behind). */
int store_write_response(struct store *store, const struct task *task, const char *text,
                         size_t len);
/* Commit N responses written by store_write_response() (descriptors FDS,
 * all closed here): one syncfs() makes them durable, then each gets its
 * pending name, its final name built from BASES[i] (see response_name; the
 * chosen one goes to TASKS[i]->response_file), and its task is archived.
 * RC[i]: 0, or -errno with nothing of that response left (write it again;
 * the task stays claimed). */
void store_commit_responses(struct store *store, struct task *const *tasks, char *const *bases,
                            const int *fds, size_t n, int *rc);
/* Write and commit one response (both steps above). 0 or -errno. */
int store_finish(struct store *store, struct task *task, const char *base, const char *text,
                 size_t len);
/* Put a claimed task back (shutdown before it finished). */
int store_unclaim(struct store *store, struct task *task);

/* Callback for recovered tasks that must run (again). */
typedef void (*store_requeue_cb)(struct task *task, void *arg);
/* Crash recovery at start: finish what was half-finished, return the rest of
 * _active/ to its queue, and hand every realtime task to CB (a task file
 * that does not parse is renamed to a dot name). Returns the number of tasks
 * handed over. */
int store_recover(struct store *store, const char *bot_id, store_requeue_cb cb, void *arg);

/* The index of this bot's answers by task id (answers.h): kept by the
 * commit and by recovery, read by look-ups. */
struct answers *store_answers(const struct store *store);

#endif
