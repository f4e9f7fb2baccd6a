/*
 * stall: a running task whose adapter prints nothing for `stall_after`
 * seconds (roster stall_after, hive-worker --stall-after) is stalled (SPEC
 * §12): told once per silence (task_stalled, with the seconds of silence),
 * told again only after it printed and went silent again. Nothing is killed
 * here; the task's timeout still applies. One timer, armed while a task
 * runs.
 */
#ifndef HIVE_STALL_H
#define HIVE_STALL_H

#include <event2/event.h>

struct stall;

/* Called on the loop when the running task has been silent SILENT_S. */
typedef void (*stall_cb)(double silent_s, void *arg);

/* A watch of AFTER_S seconds (> 0) on BASE. */
struct stall *stall_new(struct event_base *base, double after_s, stall_cb cb, void *arg);
void stall_free(struct stall *s);
/* A task started: its silence counts from now. */
void stall_start(struct stall *s);
/* The task printed something. */
void stall_output(struct stall *s);
/* The task ended (or was dropped): nothing more to watch. */
void stall_stop(struct stall *s);

#endif
