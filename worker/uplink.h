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

#include <event2/event.h>

#include "worker/engine.h"
#include "worker/events.h"

struct uplink;

/* Serve the channel on FD (taken). ENGINE gives the status; it may be set
 * later (uplink_set_engine). */
struct uplink *uplink_new(struct event_base *base, int fd, struct events *events);
void uplink_set_engine(struct uplink *uplink, struct engine *engine);
void uplink_free(struct uplink *uplink);

#endif
