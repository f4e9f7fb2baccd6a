/*
 * activity: appends the DEIA activity log. Losing a line on a crash is
 * acceptable (it is a log, not state), so there is no fsync here. It also
 * subscribes to the diagnostic log (common/log.c), so that everything the
 * worker logs at WARN is a `warning` event (SPEC §2.3) without the modules
 * that warn knowing of the activity log.
 */
#include "worker/activity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

struct activity {
    int fd;
    char *bot_id;
    bool warned;
    bool sink;     /* the log's sink (activity_log_warnings) */
    char *task_id; /* the task the next warnings are about (activity_set_task) */
    char *source;
};

struct activity *activity_open(const char *path, const char *bot_id)
{
    struct activity *a = xcalloc(1, sizeof *a);
    a->bot_id = xstrdup(bot_id);
    a->fd = util_open_append(path, O_WRONLY, 0644);
    if (a->fd < 0)
        log_warn("cannot open activity log %s: %s", path, strerror(errno));
    return a;
}

/* A line the worker logged at WARN: DEIA's log_warning() shape. */
static void activity_warning_sink(enum log_level level, const char *message, void *arg)
{
    if (level != LOG_LEVEL_WARN) /* errors have their own events, told by the engine */
        return;
    struct activity *a = arg;
    struct activity_event ev = {.event_type = "warning",
                                .operation = "Warning",
                                .result = message,
                                .error = message,
                                .task_id = a->task_id,
                                .source = a->source};
    activity_log(a, &ev, NULL);
}

void activity_log_warnings(struct activity *a)
{
    log_set_sink(LOG_LEVEL_WARN, activity_warning_sink, a);
    a->sink = true;
}

void activity_set_task(struct activity *a, const char *task_id, const char *source)
{
    free(a->task_id);
    free(a->source);
    a->task_id = task_id ? xstrdup(task_id) : NULL;
    a->source = source ? xstrdup(source) : NULL;
}

void activity_close(struct activity *a)
{
    if (!a)
        return;
    if (a->sink)
        log_set_sink(LOG_LEVEL_WARN, NULL, NULL);
    if (a->fd >= 0)
        close(a->fd);
    free(a->bot_id);
    free(a->task_id);
    free(a->source);
    free(a);
}

/* A string or JSON null. */
static json_t *activity_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

void activity_log(struct activity *a, const struct activity_event *ev, json_t *context)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, util_wall_ns());
    json_t *o = json_object();
    json_object_set_new(o, "timestamp", json_string(ts));
    json_object_set_new(o, "bot_id", json_string(a->bot_id));
    json_object_set_new(o, "event_type", json_string(ev->event_type));
    json_object_set_new(o, "operation",
                        json_string(ev->operation ? ev->operation : ev->event_type));
    json_object_set_new(o, "result", json_string(ev->result ? ev->result : "success"));
    json_object_set_new(o, "duration_seconds", json_real(ev->duration_seconds));
    json_object_set_new(o, "error", activity_str(ev->error));
    json_object_set_new(o, "task_id", activity_str(ev->task_id));
    json_object_set_new(o, "source", activity_str(ev->source));
    json_object_set_new(o, "context", context ? context : json_object());
    size_t len;
    char *line = json_dump_compact(o, &len);
    json_decref(o);
    line = xrealloc(line, len + 2);
    line[len++] = '\n';
    if (a->fd >= 0 && write(a->fd, line, len) < 0 && !a->warned) {
        a->warned = true; /* first: the warning comes back here as an event */
        log_warn("cannot write activity log: %s", strerror(errno));
    }
    free(line);
}
