/*
 * activity: the bot's activity log (SPEC §2.3), one JSON object per line in
 * .deia/bot-logs/BOT-<BOT-ID>-activity.jsonl (the name DEIA's BotActivityLogger
 * reads), appended with one write each.
 */
#ifndef HIVE_ACTIVITY_H
#define HIVE_ACTIVITY_H

#include <jansson.h>

struct activity;

struct activity_event {
    const char *event_type; /* startup, shutdown, task_received, task_started, ... */
    const char *operation;  /* NULL → the event type */
    const char *result;     /* NULL → "success" */
    double duration_seconds;
    const char *error;   /* NULL → null */
    const char *task_id; /* NULL → null */
    const char *source;  /* NULL → null */
};

struct activity *activity_open(const char *path, const char *bot_id);
void activity_close(struct activity *a);
/* From now on every line logged at WARN is also a `warning` event of A (until
 * activity_close). */
void activity_log_warnings(struct activity *a);
/* The task (id and source; NULL: none) that the warnings logged from now on
 * are about, so their events name it. */
void activity_set_task(struct activity *a, const char *task_id, const char *source);
/* Append one event; CONTEXT (may be NULL) is stolen. Failures are logged once. */
void activity_log(struct activity *a, const struct activity_event *ev, json_t *context);

#endif
