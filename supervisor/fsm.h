/*
 * fsm: the lifecycle of one bot as a pure state machine (a state x event
 * table in fsm.c). It does no I/O, reads no clock and forks nothing: the
 * supervisor feeds it events with the current monotonic time in ms and
 * carries out the actions it returns, in this order: CANCEL_TIMERS, KILL_*,
 * SPAWN, ARM_*. At most one ARM_* bit is set per step and its delay is
 * fsm_actions.timer_ms; the FSM never has more than one timer pending.
 *
 * Choices, so that `hive status` and the logs can be explained:
 * - A bot starts in STOPPED; the supervisor sends START to run it.
 * - RUNNING only after READY (READY=1). The watchdog timer belongs to the
 *   caller (it is re-armed by every WATCHDOG=1): arm it when the state becomes
 *   RUNNING; CANCEL_TIMERS cancels it too.
 * - A failure is an exit from STARTING or RUNNING, or a kill the FSM ordered
 *   there (start timeout, watchdog timeout: SIGKILL, and the exit that follows
 *   is a failure whatever its status, with the timeout as its reason).
 * - Exit status 78 is permanent: FATAL at once, "exit status 78 (configuration
 *   error)", whatever the restart policy, not counted as a restart. While
 *   STOPPING any exit, 78 included, just completes the requested stop.
 * - Policy ALWAYS restarts after any exit; ON_FAILURE after a nonzero status,
 *   a signal or an ordered kill (exit 0 -> STOPPED); NEVER never restarts
 *   (-> STOPPED, the exit kept in last_exit and reason).
 * - A restart is counted when it is decided (on entering BACKOFF). If it would
 *   make more than max_restarts restarts within the last window_ms (one
 *   exactly window_ms old no longer counts), the bot goes FATAL instead with
 *   "more than 10 restarts within 60 s (last: exit status 1)". window_ms <= 0
 *   disables the limit; max_restarts may be any number from 0 (the newest
 *   max_restarts restart times are kept: all that the test needs).
 * - Backoff: the first failure after a healthy run (HEALTHY: reset_after_ms
 *   of uptime) restarts at once, straight from RUNNING to STARTING (SPAWN,
 *   no BACKOFF state, no timer): a worker that served for a while and then
 *   crashed is back without a wait. Every further failure before the next
 *   HEALTHY waits in BACKOFF: the base delay starts at backoff_initial_ms and
 *   doubles after each such restart up to backoff_max_ms. The armed delay is
 *   base * (1 + j) with j uniform in [-jitter_pct, +jitter_pct] %, clamped to
 *   [1, backoff_max_ms]. A bot that has not been healthy yet since its start
 *   (a fresh START included) waits from its first failure: a worker that
 *   cannot start is never respawned in a tight loop. Immediate restarts
 *   count towards max_restarts like the others.
 * - START or RESTART from STOPPED or FATAL begins afresh: restarts, the restart
 *   window, the backoff and the reason are cleared (last_exit is kept).
 *   START or RESTART in BACKOFF skips the wait and spawns now. START in
 *   STARTING or RUNNING does nothing. RESTART in STARTING or RUNNING stops
 *   (SIGTERM) then spawns once the worker has exited; START or RESTART while
 *   STOPPING asks for that too, and STOP while STOPPING withdraws it.
 *   User-requested restarts are not counted in restarts.
 * - Pairs not in the table (READY in BACKOFF, EXITED in STOPPED, ...) are
 *   ignored: no action, no change.
 */
#ifndef HIVE_FSM_H
#define HIVE_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Restart times kept inside struct fsm_bot (the default limit, 10, fits);
 * past that the ring moves to the heap and grows with the restarts that
 * happen, up to max_restarts (fsm_bot_free releases it). Sized up front for
 * max_restarts, a roster with `max_restarts: 1000` cost 8 KB per bot: 8 MiB
 * of a 1,000-bot supervisor's 24. */
#define FSM_RESTARTS_INLINE 16
/* The exit status of a permanent failure (EX_CONFIG): never retried. */
#define FSM_EXIT_PERMANENT 78

enum fsm_state {
    FSM_STATE_STARTING,
    FSM_STATE_RUNNING,
    FSM_STATE_STOPPING,
    FSM_STATE_STOPPED,
    FSM_STATE_BACKOFF,
    FSM_STATE_FATAL,
    FSM_STATE_COUNT
};

enum fsm_event_type {
    FSM_EV_START,            /* user or hive start request */
    FSM_EV_READY,            /* READY=1 received */
    FSM_EV_EXITED,           /* the worker was reaped (code or signal) */
    FSM_EV_START_TIMEOUT,    /* not ready within start_timeout_ms */
    FSM_EV_WATCHDOG_TIMEOUT, /* no WATCHDOG=1 in time */
    FSM_EV_BACKOFF_DONE,     /* the backoff timer fired */
    FSM_EV_STOP,             /* user stop or hive shutdown */
    FSM_EV_STOP_TIMEOUT,     /* still alive stop_timeout_ms after SIGTERM */
    FSM_EV_RESTART,          /* user restart: stop, then start */
    FSM_EV_HEALTHY,          /* running for reset_after_ms: reset the backoff */
    FSM_EVENT_COUNT
};

/* Action bits of fsm_actions.flags. */
#define FSM_ACT_CANCEL_TIMERS 0x01u     /* cancel every timer of the bot */
#define FSM_ACT_KILL_TERM 0x02u         /* SIGTERM the worker's process group */
#define FSM_ACT_KILL_KILL 0x04u         /* SIGKILL the worker's process group */
#define FSM_ACT_SPAWN 0x08u             /* fork and exec a new worker */
#define FSM_ACT_ARM_START_TIMER 0x10u   /* START_TIMEOUT after timer_ms */
#define FSM_ACT_ARM_BACKOFF_TIMER 0x20u /* BACKOFF_DONE after timer_ms */
#define FSM_ACT_ARM_STOP_TIMER 0x40u    /* STOP_TIMEOUT after timer_ms */
#define FSM_ACT_ARM_HEALTHY_TIMER 0x80u /* HEALTHY after timer_ms */

enum fsm_restart { FSM_RESTART_ALWAYS, FSM_RESTART_ON_FAILURE, FSM_RESTART_NEVER };

/* A number in [0, 1) for the jitter; ARG is fsm_policy.random_arg. */
typedef double (*fsm_random_fn)(void *arg);

struct fsm_policy {
    enum fsm_restart restart;
    int max_restarts;           /* more than this within window_ms: FATAL */
    int64_t window_ms;          /* <= 0: no restart limit */
    int64_t backoff_initial_ms; /* first restart delay */
    int64_t backoff_max_ms;     /* the doubling stops here */
    int jitter_pct;             /* +- this percent of the delay, 0..100 */
    int64_t reset_after_ms;     /* healthy uptime that resets the backoff */
    int64_t start_timeout_ms;   /* READY expected within this */
    int64_t stop_timeout_ms;    /* SIGKILL this long after SIGTERM */
    fsm_random_fn random;       /* NULL: libc random() */
    void *random_arg;
};

struct fsm_event {
    enum fsm_event_type type;
    int code;   /* EXITED: exit status when signal is 0 */
    int signal; /* EXITED: the signal that killed it, or 0 */
    /* When set, the reason a step sets is this instead (a spawn that failed
     * says why better than its stand-in exit status). */
    const char *why;
};

struct fsm_actions {
    unsigned flags;     /* FSM_ACT_* */
    int64_t timer_ms;   /* delay of the timer an ARM_* bit asks for */
    const char *reason; /* the bot's new reason when this step set one */
};

struct fsm_exit {
    bool valid;    /* false until the first exit */
    int code;      /* exit status when signal is 0 */
    int signal;    /* killing signal, or 0 */
    int64_t at_ms; /* the now_ms of the EXITED step */
};

struct fsm_bot {
    struct fsm_policy policy; /* a copy, owned by the bot */
    enum fsm_state state;
    int64_t since_ms;         /* when the current state was entered */
    unsigned restarts;        /* automatic restarts since the last fresh start */
    int64_t backoff_ms;       /* base delay of the next restart, before jitter;
                                 0 after HEALTHY: the next restart is immediate */
    int64_t backoff_delay_ms; /* the delay armed by the last restart (0: none) */
    struct fsm_exit last_exit;
    bool restart_pending; /* STOPPING: spawn again once it has exited */
    bool killing;         /* a start/watchdog timeout SIGKILLed it; reason says which */
    char reason[128];     /* why it is in backoff, fatal or stopped; "" if none */
    int64_t restart_inline[FSM_RESTARTS_INLINE]; /* ring of recent restart times */
    int64_t *restart_heap; /* the ring instead, once it outgrew restart_inline */
    size_t restart_cap;    /* the ring's size now: grows up to max_restarts (at least 1) */
    size_t restart_head;   /* index of the oldest entry */
    size_t restart_len;    /* entries in use */
};

/* Fill POLICY with the documented defaults (always, 10 in 60 s, 100 ms..30 s
 * backoff with 20 % jitter, reset after 10 s, 10 s start and stop timeouts). */
void fsm_policy_default(struct fsm_policy *policy);
/* Set BOT to STOPPED with a copy of POLICY and no history. */
void fsm_bot_init(struct fsm_bot *bot, const struct fsm_policy *policy);
/* Give BOT a new POLICY (a reload), keeping its state and history. */
void fsm_bot_set_policy(struct fsm_bot *bot, const struct fsm_policy *policy);
/* Release what BOT holds beyond itself (a large restart ring). */
void fsm_bot_free(struct fsm_bot *bot);
/* Feed EV at NOW_MS; returns what the caller must do (nothing if ignored). */
struct fsm_actions fsm_step(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now_ms);
/* "starting", "running", "stopping", "stopped", "backoff", "fatal"; "unknown". */
const char *fsm_state_name(enum fsm_state state);
/* "start", "ready", "exited", "start-timeout", ...; "unknown". */
const char *fsm_event_name(enum fsm_event_type type);
/* "always", "on-failure", "never"; "unknown". */
const char *fsm_restart_name(enum fsm_restart restart);
/* Parse a restart policy name; -1 when unknown. */
int fsm_restart_parse(const char *name);

#endif
