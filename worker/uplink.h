/*
 * uplink: the worker's end of the channel to its supervisor (common/chan.h).
 * Up go every stored event (from the cursor the supervisor asks for, then
 * live), task_output while the channel keeps up, and a compact status after
 * each event and every second. Never blocks: a supervisor that does not read
 * (stopped, busy) makes the uplink fall behind, and it catches up from the
 * events file by cursor once the channel drains.
 */
#ifndef HIVE_UPLINK_H
#define HIVE_UPLINK_H

#include <stdbool.h>

#include <event2/event.h>

#include "worker/engine.h"
#include "worker/events.h"

struct uplink;

/* Serve the channel on FD (taken). ENGINE gives the status; it may be set
 * later (uplink_set_engine). */
struct uplink *uplink_new(struct event_base *base, int fd, struct events *events);
void uplink_set_engine(struct uplink *uplink, struct engine *engine);
/* Tell the supervisor that the worker stops (PARKED) or starts again its
 * WATCHDOG=1 keep-alives (CHAN_PARKED). False when it cannot hear it. */
bool uplink_parked(struct uplink *uplink, bool parked);
/* CB(ARG) runs when the supervisor says it looks at the idle worker itself
 * (CHAN_IDLE_WATCH). */
void uplink_on_idle_watch(struct uplink *uplink, void (*cb)(void *arg), void *arg);
void uplink_free(struct uplink *uplink);

#endif
