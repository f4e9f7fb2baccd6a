/*
 * hive: the supervisor's core — the table of bots from the roster, each with
 * its lifecycle state machine (fsm.h), its listening socket (bound here
 * before anything starts and handed to the worker as LISTEN_FDS on fd 3), its
 * worker process (own process group, NOTIFY_SOCKET readiness and watchdog,
 * output captured line by line into .deia/hive/logs/<BOT>.log), restarts,
 * reload and .deia/hive/registry.json. The front door (front.h) reads it
 * through the functions below and never touches processes itself.
 */
#ifndef HIVE_HIVE_H
#define HIVE_HIVE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/util.h"
#include "config/roster.h"
#include "supervisor/merge.h"

struct hive;
struct ssl_ctx_st;

/* What the front door may know of one bot. Strings live until the next call
 * into hive that changes state (copy them if kept). */
struct hive_bot_info {
    const char *id;
    const char *state; /* starting, running, stopping, stopped, backoff, fatal */
    bool running;      /* state is running: the proxy may forward */
    pid_t pid;         /* 0 when no worker process */
    int port;
    const char *bind;         /* the worker's address */
    const char *proxy_addr;   /* the same, numeric (resolved without blocking): for the proxy */
    const char *proxy_socket; /* its private abstract Unix socket for the proxy; "" or NULL
                               * when none (remote bots) */
    unsigned restarts;
    double uptime_seconds; /* in the current state "running", else 0 */
    const char *reason;    /* "" when none */
    bool has_exit;
    int exit_code; /* when exit_signal is 0 */
    int exit_signal;
    int64_t exit_at_wall_ns;
    bool watch;               /* false: its worker's file queue has no inotify watch */
    const char *watch_reason; /* why not ("" when watch); also the reason when there is none */
    const char *url;          /* a remote bot's url (then BIND is its resolved address); NULL */
    const char *token;        /* a remote bot's own token for the proxy to send; NULL: none */
    struct ssl_ctx_st *tls;   /* an https:// remote bot's TLS context for the proxy; NULL */
    const char *name;         /* a remote bot's url host, which BIND was resolved from: the
                               * Host its requests carry and, with TLS, the name its
                               * certificate must show; NULL for local bots */
};

/* Bind every bot's port and prepare the table. On failure returns NULL with
 * one clear message in ERR naming the bot and the port (exit 78). Takes
 * ROSTER. FOREGROUND echoes worker output as "BOT | line" on stdout. */
struct hive *hive_new(struct event_base *base, struct roster *roster, bool foreground, char *err,
                      size_t errlen);
void hive_free(struct hive *hive);
/* The hive's event stream (merge.h). */
struct merge *hive_merge(const struct hive *hive);
/* Start every autostart bot: a slice per loop pass (the loop serves between
 * slices), each once its depends_on bots are running. */
void hive_start_all(struct hive *hive);
/* READY is called once, when every autostart bot is running or has given up
 * (fatal, or stopped without a restart) — at once when there is none: `hive
 * up` then says READY=1 to its own manager. */
void hive_set_ready_cb(struct hive *hive, void (*ready)(void *arg), void *arg);
/* How many autostart bots gave up before READY (0: all of them run). */
size_t hive_ready_failed(const struct hive *hive);
const struct roster *hive_roster(const struct hive *hive);
/* Which roster hive_roster() is: changes at every reload (indexes built from
 * it are rebuilt when it does). */
unsigned hive_roster_gen(const struct hive *hive);
size_t hive_bot_count(const struct hive *hive);
/* Info of the I-th bot (roster order); false when out of range. */
bool hive_bot_at(const struct hive *hive, size_t i, struct hive_bot_info *out);
/* Info of bot ID; false when unknown. */
bool hive_bot_find(const struct hive *hive, const char *id, struct hive_bot_info *out);
/* Append the samples of metric FAMILY that the I-th bot (a remote one) last
 * reported, labelled with its id; nothing for a local bot. */
void hive_bot_remote_metrics(const struct hive *hive, size_t i, const char *family,
                             struct util_buf *b);
/* "start" (after its dependencies, which are started too), "stop" or "restart" bot ID: 0, -ENOENT
 * (unknown bot), -EINVAL (unknown action, or start/restart while the hive shuts down). */
int hive_bot_control(struct hive *hive, const char *id, const char *action);
/* Re-read the roster file: start added bots, stop removed ones, restart
 * changed ones, leave the rest untouched. 0, or -1 with the validation
 * errors (one per line) in ERR and nothing changed. */
int hive_reload(struct hive *hive, char *err, size_t errlen);
/* Stop every bot in parallel (SIGTERM, SIGKILL after stop_timeout); DONE is
 * called once all are stopped. */
void hive_shutdown(struct hive *hive, void (*done)(void *arg), void *arg);
/* During a shutdown, SIGKILL the workers still running now instead of at
 * their stop timeout (a second Ctrl-C). */
void hive_shutdown_now(struct hive *hive);

/* Reopen every bot's log file at its next line (SIGUSR1, logrotate). */
void hive_reopen_logs(struct hive *hive);
/* The folder of the logs, .deia/hive/logs under the work dir. */
const char *hive_logs_dir(const struct hive *hive);

#endif
