/*
 * task: names of the task record's enumerations, as they appear in response
 * files, the activity log and the JSON APIs.
 */
#include "worker/task.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/util.h"

/* A character of a task id. */
static bool task_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

bool task_id_valid(const char *id)
{
    if (!id || !id[0] || id[0] == '.')
        return false;
    size_t n = 0;
    for (; id[n]; n++)
        if (n >= 64 || !task_id_char(id[n]))
            return false;
    return true;
}

char *task_id_from_stem(const char *stem)
{
    char id[65];
    util_sanitize(stem, id, sizeof id);
    if (id[0] == '.')
        id[0] = '_';
    return xstrdup(id);
}

/* "file", "http" or "websocket"; "file" for anything unknown. */
const char *task_source_name(enum task_source source)
{
    switch (source) {
    case TASK_SOURCE_HTTP:
        return "http";
    case TASK_SOURCE_WEBSOCKET:
        return "websocket";
    case TASK_SOURCE_FILE:
    default:
        return "file";
    }
}

/* "queued", "running", "done" or "failed"; a task being made durable counts
 * as queued. */
const char *task_state_name(enum task_state state)
{
    switch (state) {
    case TASK_RUNNING:
        return "running";
    case TASK_DONE:
        return "done";
    case TASK_FAILED:
        return "failed";
    case TASK_CANCELLED:
        return "cancelled";
    default:
        return "queued";
    }
}

/* A new task with ID and SOURCE; the caller fills the rest. */
struct task *task_new(const char *id, enum task_source source)
{
    struct task *t = xcalloc(1, sizeof *t);
    t->id = xstrdup(id);
    t->source = source;
    t->rank = 10;
    return t;
}

/* Free a task and everything it owns. */
void task_free(struct task *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->from);
    free(t->to);
    free(t->priority);
    free(t->content);
    free(t->file_name);
    free(t->parse_error);
    free(t->output);
    free(t->error);
    free(t->response_file);
    for (size_t i = 0; i < t->n_files_modified; i++)
        free(t->files_modified[i]);
    free(t->files_modified);
    free(t);
}
