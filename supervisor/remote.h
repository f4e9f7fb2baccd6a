/*
 * remote: a bot the supervisor does not start, reached at its roster url
 * (SPEC §11). It is health-checked on GET /health every health.interval
 * (HAProxy's rise/fall counts), its address is resolved without blocking
 * for the proxy, its events are followed on GET /api/events and merged into
 * the hive's stream (resumed after the last seq merged), and its /metrics
 * and /status are read on the same interval for the hive's own /metrics and
 * /status (tasks done, queue, current task). States:
 * stopped, starting (no verdict yet), running, unreachable.
 */
#ifndef HIVE_REMOTE_H
#define HIVE_REMOTE_H

#include <event2/event.h>
#include <stdbool.h>

#include "common/util.h"
#include "config/roster.h"

struct httpclient;
struct merge;
struct remote;
struct ssl_ctx_st;

/* Told when the remote's state changed; RUNNING: it is running now. */
typedef void (*remote_changed_cb)(bool running, void *arg);

/* A stopped remote bot for DEF (whose values are copied). */
struct remote *remote_new(struct event_base *base, struct httpclient *hc, struct merge *merge,
                          const struct roster_bot *def, remote_changed_cb changed, void *arg);
void remote_free(struct remote *r);
/* DEF replaces the definition (a reload); a new url starts over. */
void remote_redefine(struct remote *r, const struct roster_bot *def);
/* Start checking it (starting); stop checking it (stopped). */
void remote_start(struct remote *r);
void remote_stop(struct remote *r);

const char *remote_state(const struct remote *r);
bool remote_running(const struct remote *r);
/* Why it is not running ("" when it is). */
const char *remote_reason(const struct remote *r);
/* Seconds running (0 unless running). */
double remote_uptime(const struct remote *r);
/* Its resolved address for the proxy ("" before the first lookup), and port. */
const char *remote_address(const struct remote *r);
int remote_port(const struct remote *r);
/* An https:// bot's TLS context for connections to it, verifying its
 * certificate (NULL for http:// bots); valid until the next remote_redefine()
 * or remote_free() (a connection pool takes a reference of its own). */
struct ssl_ctx_st *remote_tls(const struct remote *r);
/* The host of its url (without brackets): the name TLS verifies. */
const char *remote_host(const struct remote *r);
/* The token sent to it (NULL: none). */
const char *remote_token(const struct remote *r);

/* Append the samples of FAMILY (and of its histogram series) from its last
 * scrape to B, each labelled bot="ID" of ours. */
void remote_metrics(const struct remote *r, const char *family, struct util_buf *b);

#endif
