/*
 * task: the one record a task is, whatever door it came through. Created when
 * a task is accepted (or found in the file queue), owned by the engine until
 * it is archived and then kept a while for GET /api/task/<id>.
 */
#ifndef HIVE_TASK_H
#define HIVE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/agentstream.h"

enum task_source { TASK_SOURCE_FILE, TASK_SOURCE_HTTP, TASK_SOURCE_WEBSOCKET };

enum task_state {
    TASK_ACCEPTING,
    TASK_QUEUED,
    TASK_RUNNING,
    TASK_DONE,
    TASK_FAILED,
    TASK_CANCELLED /* answered as failed with the error "cancelled" */
};

struct task {
    char *id;
    enum task_source source;
    enum task_state state;
    char *from;          /* "user" for realtime tasks unless given */
    char *to;            /* the bot, unless a task file says otherwise */
    char *priority;      /* as given ("P0" default for realtime) */
    int rank;            /* 0..9, 10 unreadable */
    char *content;       /* NULL for file tasks until claimed */
    int64_t order;       /* realtime: acceptance wall ns; file: mtime ns */
    char *file_name;     /* on-disk name in the queue (X.md) or _realtime (ID.json) */
    char *parse_error;   /* file task that could not be parsed */
    uint64_t ws_session; /* WebSocket session that submitted it, 0 none */
    int64_t started_wall_ns;
    /* Result, once finished. */
    bool success;
    char *output;
    size_t output_len;
    char *error;
    double duration_seconds;
    char *response_file;
    char **files_modified; /* what it changed (gitfiles.h), NULL-terminated; NULL: none */
    size_t n_files_modified;
    struct agent_usage usage; /* what an agent CLI reported it cost (SPEC §12) */
    bool claimed;             /* its file is in _active/ */
    bool cancelled;           /* a cancel was asked: it never runs (again), its answer is
                                 failed with the error "cancelled" (TASK_CANCEL_ERROR) */
};

/* True when ID is a valid task id, [A-Za-z0-9_-][A-Za-z0-9._-]{0,63}: the
 * one check of every door (HTTP, WebSocket, task files). No leading dot, so
 * no id is ever one of the store's own temp or marker names. */
bool task_id_valid(const char *id);
/* A valid id made of a file stem (for a task file whose own id is not
 * valid, so that logs and headers never carry what the name held):
 * characters outside the set become '_', cut to 64. Caller frees. */
char *task_id_from_stem(const char *stem);
/* "file", "http" or "websocket". */
const char *task_source_name(enum task_source source);
/* The error text of a cancelled task's answer: how its response file (a
 * DEIA -failed.md) tells a cancel from a failure. */
#define TASK_CANCEL_ERROR "cancelled"

/* "queued", "running", "done", "failed" or "cancelled" (accepting counts as
 * queued). */
const char *task_state_name(enum task_state state);
/* A new task with ID and SOURCE, everything else empty. */
struct task *task_new(const char *id, enum task_source source);
/* Free a task and all it owns. */
void task_free(struct task *task);

#endif
