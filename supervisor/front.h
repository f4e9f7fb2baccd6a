/*
 * front: the supervisor's front door on hive.yaml's `listen` (SPEC §6.3,
 * §7). It owns the HTTP server of that port and its routing: the status and
 * control API (GET /status, GET /health, POST /api/...), the token and Origin
 * rules at the door, and the hand-off of /bots/<id>/... to the proxy
 * (proxy.h). It reads the supervisor's state through hive.h and changes it
 * only through hive_bot_control() and hive_reload(); POST /api/task (pool and
 * tags tasks) goes to pooltask.h; shutting the hive down is
 * left to whoever set the shutdown callback.
 */
#ifndef HIVE_FRONT_H
#define HIVE_FRONT_H

#include <event2/event.h>
#include <stddef.h>

#include "supervisor/hive.h"

struct front;

/* Serve the front door on LISTEN_FD (bound and listening; taken over and
 * closed by front_free). NULL with a reason in ERR. */
struct front *front_new(struct event_base *base, struct hive *hive, int listen_fd, char *err,
                        size_t errlen);
/* Close the listener, every client connection, every proxied exchange. */
void front_free(struct front *front);
/* CB is called (from the event loop, after the 202 is queued) when a client
 * asks for POST /api/shutdown. */
void front_set_shutdown_cb(struct front *front, void (*cb)(void *arg), void *arg);

#endif
