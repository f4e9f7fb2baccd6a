/*
 * hive_internal: the supervisor's table of bots as the modules split from
 * hive.c see it: bot.c (one bot's executor), reload.c; notify.c and
 * registry.c need none of it. Nothing outside supervisor/ includes it, and
 * the front door keeps to hive.h. hive.c owns the table, bot.c each bot's
 * processes, sockets and timers, and only fsm.c writes a bot's state.
 */
#ifndef HIVE_HIVE_INTERNAL_H
#define HIVE_HIVE_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "common/util.h"
#include "config/roster.h"
#include "supervisor/fsm.h"
#include "supervisor/hive.h"

struct cgtree;
struct logcap;
struct logcap_echo;
struct notify;
struct notify_msg;
struct registry;
struct remote;
struct standin;
struct httpclient;

enum hive_timer_kind {
    HIVE_TIMER_START,
    HIVE_TIMER_BACKOFF,
    HIVE_TIMER_STOP,
    HIVE_TIMER_HEALTHY,
    HIVE_TIMER_WATCHDOG,
    HIVE_TIMER_COUNT
};

/* One of a bot's timers and the event it feeds the FSM when it fires. */
struct hive_timer {
    struct hive_bot *bot;
    enum fsm_event_type fires;
    struct event *ev;
};

struct hive_bot {
    struct hive *hive;
    char *id;
    const struct roster_bot *def; /* in hive->roster; NULL once retired */
    int listen_fd;                /* -1: bound again at the next spawn */
    int bound_port;               /* the address of listen_fd */
    char *bound_bind;
    char bound_addr[48]; /* listen_fd's address, numeric: what the proxy connects to */
    int proxy_fd;        /* the private socket for our proxy; -1: none */
    char proxy_name[UTIL_LOCAL_NAME_MAX]; /* its abstract name; "" when none */
    pid_t pid;                            /* the worker (and its group), 0 when none */
    int stored_fd;           /* its inotify instance, kept across crashes (fd store); -1 */
    struct standin *standin; /* answers on the sockets while stopped or fatal */
    struct fsm_bot fsm;
    struct hive_timer timers[HIVE_TIMER_COUNT];
    struct logcap *logcap;
    int64_t registered_wall_ns; /* when the current worker was started */
    int64_t heartbeat_wall_ns;  /* its last READY=1 or WATCHDOG=1 (or seen waiting) */
    /* Its worker may park (CHAN_IDLE_WATCH): a parked one sends no
     * WATCHDOG=1, and at the end of its period we look whether its loop
     * waits for work (bot_watch_alive). */
    bool watch_second_look; /* the first look found it busy: one more, shortly */
    long long watch_sleeps; /* its voluntary context switches at that first look */
    bool retired;
    TAILQ_ENTRY(hive_bot) entry; /* in hive->retired */
    int stop_signal;             /* of its definition (kept once retired) */
    bool wanted;                 /* in hive->pending: to be started when its turn comes */
    bool counts_for_ready;       /* an autostart bot not yet running since `hive up` */
    TAILQ_ENTRY(hive_bot) pending_entry;
    char waiting[160];     /* "waiting for BOT" while its dependencies are not running */
    char nowatch[160];     /* why its running worker's file queue has no inotify watch; "" */
    long long oom_base;    /* OOM kills in its memory cgroup when its worker started */
    struct event *oom_ev;  /* cgroup v1: the OOM killer met the bot */
    bool oom_ended;        /* cgroup v1: its worker was ended for that (bot_oom_cb) */
    struct remote *remote; /* a remote bot (url:): none of the above is used; NULL: local */
};

/* The table's index by id, for lookups without a scan. */
struct hive_named {
    const char *id;
    struct hive_bot *bot;
};

struct hive {
    struct event_base *base;
    struct roster *roster;
    unsigned roster_gen; /* counts reloads: who keeps roster-derived indexes rebuilds them */
    char *worker_path;
    char *logs_dir;
    struct notify *notify; /* NOTIFY_SOCKET: the workers' datagrams */
    struct event *sigchld_ev, *sweep_ev, *done_ev;
    struct event *tick_ev, *sigcont_ev;
    int64_t tick_mono_ms;      /* when the tick last ran */
    struct registry *registry; /* .deia/hive/registry.json */
    struct logcap_echo *echo;
    struct hive_bot **bots; /* roster order */
    size_t n_bots;
    struct hive_named *by_id; /* the same bots sorted by id */
    struct hive_bot **by_pid; /* bots with a worker (retired ones too), hashed by pid */
    size_t pid_cap, pid_n;    /* its size (a power of 2, or 0) and its bots */
    /* Starts asked for and not done yet: a hive starts its bots a slice per
     * loop pass, so the front door and the workers' READY=1 are served
     * meanwhile, and a bot waits here until its dependencies run. */
    TAILQ_HEAD(, hive_bot) pending;
    struct event *starter_ev;
    size_t ready_left;   /* autostart bots not running yet; READY once 0 */
    size_t ready_failed; /* of them, those that gave up instead (fatal, stopped) */
    size_t starting;     /* bots in state starting (the queue's in-flight count) */
    bool brisk;          /* the shortest CPU slice is ours (hive.c, hive_brisk) */
    void (*ready)(void *arg);
    void *ready_arg;
    struct cgtree *cgtree;   /* a cgroup per bot; NULL: workers contain their tasks alone */
    struct merge *merge;     /* the hive's event stream, fed by the workers' channels */
    struct httpclient *http; /* the remote bots' checks, streams and scrapes */
    TAILQ_HEAD(, hive_bot) retired;
    bool started, shutting_down, done_fired;
    /* During a shutdown, bots[0 .. settled_upto) were settled when last
     * looked at: each step looks on from there, not at every bot again. */
    size_t settled_upto;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---- hive.c: the table, the start queue, reaping ---- */

/* The table bot named ID, or NULL (an index lookup). */
struct hive_bot *hive_bot_named(const struct hive *hive, const char *id);
/* Ask for BOT to be started (and its dependencies) through the start queue. */
void hive_bot_want_start(struct hive_bot *bot);
/* Withdraw a start BOT was waiting for. */
void hive_bot_unwant(struct hive_bot *bot);
/* BOT has just become running: bots waiting for it may go, `hive up` may be ready. */
void hive_bot_now_running(struct hive_bot *bot);
void hive_bot_gave_up(struct hive_bot *bot);
/* The count of starting bots across a change FROM -> TO (the queue's in-flight). */
void hive_count_starting(struct hive *hive, enum fsm_state from, enum fsm_state to);
/* After a step of BOT: free retired bots later, finish a shutdown when all are done. */
void hive_after_step(struct hive *hive, struct hive_bot *bot);
/* True when the loop stood still (SIGSTOP) and every worker got a fresh period. */
bool hive_loop_gap(struct hive *hive);
/* True when another bot still holds PORT (a retired one, or one a reload moved). */
bool hive_port_held(const struct hive *hive, const struct hive_bot *self, int port);
/* Take BOT out of the table: stop it, free it once its worker is gone. */
void hive_bot_retire(struct hive *hive, struct hive_bot *bot);
/* A retired bot named ID back in the table, or NULL. */
struct hive_bot *hive_bot_unretire(struct hive *hive, const char *id);
/* Set BOT's worker pid (0: none), keeping the index by pid in step. */
void hive_pid_set(struct hive *hive, struct hive_bot *bot, pid_t pid);
/* Rebuild the id index after the table changed. */
void hive_index(struct hive *hive);
/* Derive the paths under the roster's work dir and create the logs folder. */
int hive_paths(struct hive *hive, char *err, size_t errlen);
/* A state change: the registry is rewritten at the end of this loop pass. */
void hive_registry_changed(struct hive *hive);
/* Make room for an inotify instance per bot that watches its file queue. */
void hive_watch_room(struct hive *hive);

/* ---- bot.c: one bot's executor ---- */

/* A bot for roster bot DEF, stopped, with no socket yet. */
struct hive_bot *bot_new(struct hive *hive, const struct roster_bot *def);
/* Release BOT; a worker still alive is killed with its group and reaped. */
void bot_free(struct hive_bot *bot);
/* Feed an event without details to BOT's state machine and carry it out. */
void bot_feed(struct hive_bot *bot, enum fsm_event_type type);
/* Its worker was reaped with STATUS. */
void bot_exited(struct hive_bot *bot, int status);
/* One datagram from its worker. */
void bot_notified(struct hive_bot *bot, struct notify_msg *msg);
/* Bind its port (and private proxy socket) unless bound; -1 with WHY. */
int bot_bind(struct hive_bot *bot, char *why, size_t cap);
/* Point BOT at its new definition DEF; a new address is bound at the next spawn. */
void bot_redefine(struct hive_bot *bot, const struct roster_bot *def);
/* (Re)arm the watchdog of a running BOT, when it has one. */
void bot_arm_watchdog(struct hive_bot *bot);
/* A fresh watchdog or start-timeout period (the loop stood still). */
void bot_fresh_period(struct hive_bot *bot);
/* Running: its worker said READY=1, or a remote bot answers its health checks. */
bool bot_running(const struct hive_bot *bot);
/* Stopped or fatal with nothing left to reap. */
bool bot_settled(const struct hive_bot *bot);
/* Its sockets: the stand-in off, the private proxy socket closed. */
void bot_standin_drop(struct hive_bot *bot);
void bot_proxy_close(struct hive_bot *bot);

/* Re-read the roster file and apply the difference (reload.c). */
int reload_roster(struct hive *hive, char *err, size_t errlen);

#endif
