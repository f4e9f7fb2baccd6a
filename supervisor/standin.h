/*
 * standin: the supervisor answering on a bot's own port while the bot is
 * `stopped` or `fatal` (SPEC §6.2). The supervisor holds each bot's
 * listening sockets (its TCP port and the private one of the proxy) for the
 * bot's whole life; with no worker to accept on them, clients would connect
 * and hang. A stand-in serves them with the common HTTP server, answering
 * every request 503 {"detail":"bot BOT-001 is stopped"} and closing, until
 * the bot starts again: then it stops watching the sockets, which stay open
 * for the worker. While a bot is starting or in backoff there is no
 * stand-in, so connections wait in the kernel's queue.
 */
#ifndef HIVE_STANDIN_H
#define HIVE_STANDIN_H

#include <event2/event.h>

#include "config/roster.h"

struct standin;

/* Serve LISTEN_FD and, when it is >= 0, PROXY_FD for bot DEF (its Host and
 * Origin lists are copied; LIMITS are the hive's). The sockets stay the
 * caller's. NULL when they cannot be watched. */
struct standin *standin_new(struct event_base *base, const struct roster_bot *def,
                            const struct roster_limits *limits, int listen_fd, int proxy_fd);
/* The state named in answers ("stopped", "fatal") and the reason, if any. */
void standin_set_state(struct standin *standin, const char *state, const char *reason);
/* Stop serving: every connection closed, the sockets left open. */
void standin_free(struct standin *standin);

#endif
