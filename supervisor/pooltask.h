/*
 * pooltask: POST /api/task on the supervisor (SPEC §12): a task for a pool
 * (`{"pool": NAME, ...}`) or for bots with tags (`{"tags": [...], ...}`)
 * goes to the matching running bot with the least work (pool.h), forwarded
 * to that bot's own POST /api/task; the client hears 202 only once that bot
 * answered 202 (it has stored the task), with the chosen bot_id. A bot that
 * answers 429 or 503, or cannot be reached, is skipped for the next one.
 * It owns the pool index (rebuilt at each reload), keeps it fed from the
 * merge's channel news, and its in-flight forwards.
 */
#ifndef HIVE_POOLTASK_H
#define HIVE_POOLTASK_H

#include <event2/event.h>

#include "common/http.h"
#include "supervisor/hive.h"

struct pooltask;

struct httpconn_set;

/* Pool tasks of HIVE on BASE, sent to the workers over connections drawn
 * from CONNS (the proxy's, so both reuse the same ones). */
struct pooltask *pooltask_new(struct event_base *base, struct hive *hive,
                              struct httpconn_set *conns);
/* Answer every forward still in flight (503) and free. */
void pooltask_free(struct pooltask *pt);
/* Answer POST /api/task (a complete request, after the token check). */
void pooltask_serve(struct pooltask *pt, struct http_conn *conn, struct http_request *req);

#endif
