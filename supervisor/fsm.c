/*
 * fsm: the per-bot lifecycle state machine. The whole of it is the table
 * fsm_table (state x event -> handler) below and the small handlers above
 * it; an empty cell means the event is ignored in that state. Handlers change
 * the bot and add actions; they never do I/O, so the supervisor's process
 * code stays a thin executor and the policy can be tested by feeding events.
 */
#include "supervisor/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*fsm_handler)(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                            struct fsm_actions *act);

static const char *const fsm_state_names[FSM_STATE_COUNT] = {
    [FSM_STATE_STARTING] = "starting", [FSM_STATE_RUNNING] = "running",
    [FSM_STATE_STOPPING] = "stopping", [FSM_STATE_STOPPED] = "stopped",
    [FSM_STATE_BACKOFF] = "backoff",   [FSM_STATE_FATAL] = "fatal",
};

static const char *const fsm_event_names[FSM_EVENT_COUNT] = {
    [FSM_EV_START] = "start",
    [FSM_EV_READY] = "ready",
    [FSM_EV_EXITED] = "exited",
    [FSM_EV_START_TIMEOUT] = "start-timeout",
    [FSM_EV_WATCHDOG_TIMEOUT] = "watchdog-timeout",
    [FSM_EV_BACKOFF_DONE] = "backoff-done",
    [FSM_EV_STOP] = "stop",
    [FSM_EV_STOP_TIMEOUT] = "stop-timeout",
    [FSM_EV_RESTART] = "restart",
    [FSM_EV_HEALTHY] = "healthy",
};

static const char *const fsm_restart_names[] = {
    [FSM_RESTART_ALWAYS] = "always",
    [FSM_RESTART_ON_FAILURE] = "on-failure",
    [FSM_RESTART_NEVER] = "never",
};

/* Write MS as "10 s" when it is whole seconds, else "1500 ms". */
static void fsm_format_ms(char *buf, size_t cap, int64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, cap, "%lld s", (long long)(ms / 1000));
    else
        snprintf(buf, cap, "%lld ms", (long long)ms);
}

/* Describe an exit for the reason field: "exit status 1", "killed by signal 9". */
static void fsm_describe_exit(char *buf, size_t cap, const struct fsm_event *ev)
{
    if (ev->signal != 0)
        snprintf(buf, cap, "killed by signal %d", ev->signal);
    else if (ev->code == FSM_EXIT_PERMANENT)
        snprintf(buf, cap, "exit status %d (configuration error)", ev->code);
    else
        snprintf(buf, cap, "exit status %d", ev->code);
}

/* Make the reason the step's news, so the caller can log it. */
static void fsm_publish_reason(struct fsm_bot *bot, struct fsm_actions *act)
{
    act->reason = bot->reason;
}

/* Enter STATE at NOW; leaving a state that may own a timer cancels it. */
static void fsm_enter(struct fsm_bot *bot, enum fsm_state state, int64_t now,
                      struct fsm_actions *act)
{
    if (bot->state != FSM_STATE_STOPPED && bot->state != FSM_STATE_FATAL)
        act->flags |= FSM_ACT_CANCEL_TIMERS;
    bot->state = state;
    bot->since_ms = now;
}

/* Spawn a new worker and wait for its READY=1. */
static void fsm_spawn(struct fsm_bot *bot, int64_t now, struct fsm_actions *act)
{
    fsm_enter(bot, FSM_STATE_STARTING, now, act);
    bot->killing = false;
    bot->restart_pending = false;
    act->flags |= FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER;
    act->timer_ms = bot->policy.start_timeout_ms;
}

/* Forget the restart history: a user start is a fresh beginning. */
static void fsm_clear_history(struct fsm_bot *bot)
{
    bot->restarts = 0;
    bot->restart_head = 0;
    bot->restart_len = 0;
    bot->backoff_ms = bot->policy.backoff_initial_ms;
    bot->backoff_delay_ms = 0;
    bot->reason[0] = '\0';
}

/* Ask the worker to stop: SIGTERM now, SIGKILL if still alive at the stop timeout. */
static void fsm_begin_stop(struct fsm_bot *bot, int64_t now, struct fsm_actions *act)
{
    fsm_enter(bot, FSM_STATE_STOPPING, now, act);
    bot->killing = false;
    bot->restart_pending = false;
    bot->reason[0] = '\0';
    act->flags |= FSM_ACT_KILL_TERM | FSM_ACT_ARM_STOP_TIMER;
    act->timer_ms = bot->policy.stop_timeout_ms;
}

/* Keep EV as the bot's last exit. */
static void fsm_record_exit(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now)
{
    bot->last_exit.valid = true;
    bot->last_exit.code = ev->signal != 0 ? 0 : ev->code;
    bot->last_exit.signal = ev->signal;
    bot->last_exit.at_ms = now;
}

/* Whether the restart policy restarts after EV (ORDERED: we killed it). */
static bool fsm_policy_restarts(const struct fsm_bot *bot, const struct fsm_event *ev, bool ordered)
{
    switch (bot->policy.restart) {
    case FSM_RESTART_ALWAYS:
        return true;
    case FSM_RESTART_ON_FAILURE:
        return ordered || ev->signal != 0 || ev->code != 0;
    case FSM_RESTART_NEVER:
        break;
    }
    return false;
}

/* The ring of restart times. */
static int64_t *fsm_ring(struct fsm_bot *bot)
{
    return bot->restart_heap ? bot->restart_heap : bot->restart_inline;
}

/* True when one more restart now would exceed max_restarts within window_ms. */
static bool fsm_restart_limit_hit(struct fsm_bot *bot, int64_t now)
{
    size_t recent = 0;
    const int64_t *ring = fsm_ring(bot);

    if (bot->policy.window_ms <= 0)
        return false;
    for (size_t i = 0; i < bot->restart_len; i++) {
        int64_t at = ring[(bot->restart_head + i) % bot->restart_cap];
        if (now - at < bot->policy.window_ms)
            recent++;
    }
    return recent + 1 > (size_t)bot->policy.max_restarts;
}

/* The most restart times the limit ever needs: the newest max_restarts. */
static size_t fsm_ring_limit(const struct fsm_bot *bot)
{
    return bot->policy.max_restarts > 0 ? (size_t)bot->policy.max_restarts : 1;
}

/* Lay the ring out again in CAP slots (inline when they fit), keeping the
 * newest times that fit. False, with nothing changed, when out of memory. */
static bool fsm_ring_relayout(struct fsm_bot *bot, size_t cap)
{
    size_t keep = bot->restart_len < cap ? bot->restart_len : cap;
    int64_t tmp[FSM_RESTARTS_INLINE];
    int64_t *heap = cap > FSM_RESTARTS_INLINE ? calloc(cap, sizeof *heap) : NULL;
    int64_t *dst = heap ? heap : tmp;
    const int64_t *old = fsm_ring(bot);

    if (cap > FSM_RESTARTS_INLINE && !heap)
        return false;
    for (size_t i = 0; i < keep; i++)
        dst[i] = old[(bot->restart_head + bot->restart_len - keep + i) % bot->restart_cap];
    if (!heap)
        memcpy(bot->restart_inline, tmp, keep * sizeof *tmp);
    free(bot->restart_heap);
    bot->restart_heap = heap;
    bot->restart_cap = cap;
    bot->restart_head = 0;
    bot->restart_len = keep;
    return true;
}

/* Count a restart at NOW. A full ring smaller than the limit needs doubles
 * first; at the limit (or out of memory) the oldest time makes room. */
static void fsm_record_restart(struct fsm_bot *bot, int64_t now)
{
    size_t limit = fsm_ring_limit(bot);
    if (bot->restart_len == bot->restart_cap && bot->restart_cap < limit)
        fsm_ring_relayout(bot, bot->restart_cap * 2 < limit ? bot->restart_cap * 2 : limit);
    int64_t *ring = fsm_ring(bot);
    if (bot->restart_len < bot->restart_cap) {
        ring[(bot->restart_head + bot->restart_len) % bot->restart_cap] = now;
        bot->restart_len++;
    } else {
        ring[bot->restart_head] = now;
        bot->restart_head = (bot->restart_head + 1) % bot->restart_cap;
    }
    bot->restarts++;
}

/* Fit the ring to the policy's limit: larger than the limit needs, keep only
 * the newest; smaller than what fits inline, use the inline slots. A ring
 * between the two grows with the restarts (fsm_record_restart). */
static void fsm_ring_resize(struct fsm_bot *bot)
{
    size_t limit = fsm_ring_limit(bot);
    size_t inline_cap = limit < FSM_RESTARTS_INLINE ? limit : FSM_RESTARTS_INLINE;
    if (bot->restart_cap > limit)
        fsm_ring_relayout(bot, limit); /* out of memory: the old ring stays, larger */
    else if (bot->restart_cap < inline_cap)
        fsm_ring_relayout(bot, inline_cap);
}

/* BASE spread by +-jitter_pct % with the policy's random source, in [1, max]. */
static int64_t fsm_jitter(const struct fsm_bot *bot, int64_t base)
{
    const struct fsm_policy *p = &bot->policy;
    double r, delay;

    if (p->random)
        r = p->random(p->random_arg);
    else
        r = (double)random() / ((double)RAND_MAX + 1.0);
    if (!(r >= 0.0))
        r = 0.0;
    if (r > 1.0)
        r = 1.0;
    delay = (double)base * (1.0 + (2.0 * r - 1.0) * p->jitter_pct / 100.0) + 0.5;
    if (delay < 1.0)
        return 1;
    if (delay > (double)p->backoff_max_ms)
        return p->backoff_max_ms;
    return (int64_t)delay;
}

/* Go FATAL with "more than N restarts within W (last: <reason>)". */
static void fsm_give_up(struct fsm_bot *bot, int64_t now, struct fsm_actions *act)
{
    char last[sizeof bot->reason], window[32];
    int n;

    memcpy(last, bot->reason, sizeof last);
    fsm_format_ms(window, sizeof window, bot->policy.window_ms);
    n = snprintf(bot->reason, sizeof bot->reason, "more than %d restarts within %s (last: %s)",
                 bot->policy.max_restarts, window, last);
    if (n >= (int)sizeof bot->reason)
        memcpy(bot->reason + sizeof bot->reason - 5, "...)", 5);
    fsm_enter(bot, FSM_STATE_FATAL, now, act);
}

/* Count a restart; spawn at once after a healthy run, else wait the
 * current backoff before spawning again. */
static void fsm_schedule_backoff(struct fsm_bot *bot, int64_t now, struct fsm_actions *act)
{
    fsm_record_restart(bot, now);
    if (bot->backoff_ms == 0) {
        bot->backoff_ms = bot->policy.backoff_initial_ms;
        bot->backoff_delay_ms = 0;
        fsm_spawn(bot, now, act);
        return;
    }
    bot->backoff_delay_ms = fsm_jitter(bot, bot->backoff_ms);
    if (bot->backoff_ms > bot->policy.backoff_max_ms / 2)
        bot->backoff_ms = bot->policy.backoff_max_ms;
    else
        bot->backoff_ms *= 2;
    fsm_enter(bot, FSM_STATE_BACKOFF, now, act);
    act->flags |= FSM_ACT_ARM_BACKOFF_TIMER;
    act->timer_ms = bot->backoff_delay_ms;
}

/* STOPPED, FATAL: START or RESTART begins afresh. */
static void fsm_on_start_fresh(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                               struct fsm_actions *act)
{
    (void)ev;
    fsm_clear_history(bot);
    fsm_spawn(bot, now, act);
}

/* BACKOFF: the timer fired, or the user does not want to wait: spawn now. */
static void fsm_on_backoff_done(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                struct fsm_actions *act)
{
    (void)ev;
    fsm_spawn(bot, now, act);
}

/* BACKOFF: STOP cancels the pending restart. */
static void fsm_on_backoff_stop(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                struct fsm_actions *act)
{
    (void)ev;
    bot->reason[0] = '\0';
    fsm_enter(bot, FSM_STATE_STOPPED, now, act);
}

/* STARTING: READY=1 makes it RUNNING, unless we are already killing it. */
static void fsm_on_ready(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                         struct fsm_actions *act)
{
    (void)ev;
    if (bot->killing)
        return;
    bot->reason[0] = '\0';
    fsm_enter(bot, FSM_STATE_RUNNING, now, act);
    act->flags |= FSM_ACT_ARM_HEALTHY_TIMER;
    act->timer_ms = bot->policy.reset_after_ms;
}

/* STARTING: not ready in time counts as a failed start; kill it, its exit follows. */
static void fsm_on_start_timeout(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                 struct fsm_actions *act)
{
    char limit[32];

    (void)ev;
    (void)now;
    fsm_format_ms(limit, sizeof limit, bot->policy.start_timeout_ms);
    snprintf(bot->reason, sizeof bot->reason, "not ready within %s", limit);
    bot->killing = true;
    act->flags |= FSM_ACT_KILL_KILL;
    fsm_publish_reason(bot, act);
}

/* RUNNING: no WATCHDOG=1 in time; kill it, its exit takes the restart path. */
static void fsm_on_watchdog_timeout(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                    struct fsm_actions *act)
{
    (void)ev;
    (void)now;
    snprintf(bot->reason, sizeof bot->reason, "watchdog timeout");
    bot->killing = true;
    act->flags |= FSM_ACT_CANCEL_TIMERS | FSM_ACT_KILL_KILL;
    fsm_publish_reason(bot, act);
}

/* RUNNING: reset_after_ms of uptime; the next failure restarts at once. */
static void fsm_on_healthy(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                           struct fsm_actions *act)
{
    (void)ev;
    (void)now;
    (void)act;
    if (!bot->killing)
        bot->backoff_ms = 0;
}

/* STARTING, RUNNING: the worker went away by itself (or by our timeout kill). */
static void fsm_on_exit_unexpected(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                   struct fsm_actions *act)
{
    bool ordered = bot->killing;

    fsm_record_exit(bot, ev, now);
    bot->killing = false;
    if (!ordered || (ev->signal == 0 && ev->code == FSM_EXIT_PERMANENT))
        fsm_describe_exit(bot->reason, sizeof bot->reason, ev);
    fsm_publish_reason(bot, act);
    if (ev->signal == 0 && ev->code == FSM_EXIT_PERMANENT)
        fsm_enter(bot, FSM_STATE_FATAL, now, act);
    else if (!fsm_policy_restarts(bot, ev, ordered))
        fsm_enter(bot, FSM_STATE_STOPPED, now, act);
    else if (fsm_restart_limit_hit(bot, now))
        fsm_give_up(bot, now, act);
    else
        fsm_schedule_backoff(bot, now, act);
}

/* STARTING, RUNNING: STOP. */
static void fsm_on_stop(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                        struct fsm_actions *act)
{
    (void)ev;
    fsm_begin_stop(bot, now, act);
}

/* STARTING, RUNNING: RESTART stops, then spawns once the worker has exited. */
static void fsm_on_restart(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                           struct fsm_actions *act)
{
    (void)ev;
    fsm_begin_stop(bot, now, act);
    bot->restart_pending = true;
}

/* STOPPING: START or RESTART asks for a spawn after the exit. */
static void fsm_on_stopping_start(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                  struct fsm_actions *act)
{
    (void)ev;
    (void)now;
    (void)act;
    bot->restart_pending = true;
}

/* STOPPING: a second STOP withdraws a pending restart. */
static void fsm_on_stopping_stop(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                 struct fsm_actions *act)
{
    (void)ev;
    (void)now;
    (void)act;
    bot->restart_pending = false;
}

/* STOPPING: still alive after stop_timeout_ms; SIGKILL the group. */
static void fsm_on_stop_timeout(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                struct fsm_actions *act)
{
    (void)bot;
    (void)ev;
    (void)now;
    act->flags |= FSM_ACT_KILL_KILL;
}

/* STOPPING: the requested stop is done; spawn again if a restart was asked. */
static void fsm_on_stopping_exit(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now,
                                 struct fsm_actions *act)
{
    fsm_record_exit(bot, ev, now);
    if (bot->restart_pending)
        fsm_spawn(bot, now, act);
    else
        fsm_enter(bot, FSM_STATE_STOPPED, now, act);
}

/* The lifecycle: what each event does in each state; empty cells are ignored. */
static const fsm_handler fsm_table[FSM_STATE_COUNT][FSM_EVENT_COUNT] = {
    [FSM_STATE_STARTING] =
        {
            [FSM_EV_READY] = fsm_on_ready,
            [FSM_EV_EXITED] = fsm_on_exit_unexpected,
            [FSM_EV_START_TIMEOUT] = fsm_on_start_timeout,
            [FSM_EV_STOP] = fsm_on_stop,
            [FSM_EV_RESTART] = fsm_on_restart,
        },
    [FSM_STATE_RUNNING] =
        {
            [FSM_EV_EXITED] = fsm_on_exit_unexpected,
            [FSM_EV_WATCHDOG_TIMEOUT] = fsm_on_watchdog_timeout,
            [FSM_EV_STOP] = fsm_on_stop,
            [FSM_EV_RESTART] = fsm_on_restart,
            [FSM_EV_HEALTHY] = fsm_on_healthy,
        },
    [FSM_STATE_STOPPING] =
        {
            [FSM_EV_START] = fsm_on_stopping_start,
            [FSM_EV_EXITED] = fsm_on_stopping_exit,
            [FSM_EV_STOP] = fsm_on_stopping_stop,
            [FSM_EV_STOP_TIMEOUT] = fsm_on_stop_timeout,
            [FSM_EV_RESTART] = fsm_on_stopping_start,
        },
    [FSM_STATE_STOPPED] =
        {
            [FSM_EV_START] = fsm_on_start_fresh,
            [FSM_EV_RESTART] = fsm_on_start_fresh,
        },
    [FSM_STATE_BACKOFF] =
        {
            [FSM_EV_START] = fsm_on_backoff_done,
            [FSM_EV_BACKOFF_DONE] = fsm_on_backoff_done,
            [FSM_EV_STOP] = fsm_on_backoff_stop,
            [FSM_EV_RESTART] = fsm_on_backoff_done,
        },
    [FSM_STATE_FATAL] =
        {
            [FSM_EV_START] = fsm_on_start_fresh,
            [FSM_EV_RESTART] = fsm_on_start_fresh,
        },
};

/* Clamp an int64 into [lo, hi]. */
static int64_t fsm_clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void fsm_policy_default(struct fsm_policy *policy)
{
    memset(policy, 0, sizeof *policy);
    policy->restart = FSM_RESTART_ALWAYS;
    policy->max_restarts = 10;
    policy->window_ms = 60000;
    policy->backoff_initial_ms = 100;
    policy->backoff_max_ms = 30000;
    policy->jitter_pct = 20;
    policy->reset_after_ms = 10000;
    policy->start_timeout_ms = 10000;
    policy->stop_timeout_ms = 10000;
}

void fsm_bot_init(struct fsm_bot *bot, const struct fsm_policy *policy)
{
    struct fsm_policy *p = &bot->policy;

    memset(bot, 0, sizeof *bot);
    *p = *policy;
    if ((unsigned)p->restart > FSM_RESTART_NEVER)
        p->restart = FSM_RESTART_ALWAYS;
    p->max_restarts = (int)fsm_clamp(p->max_restarts, 0, INT32_MAX);
    p->backoff_initial_ms = fsm_clamp(p->backoff_initial_ms, 1, INT64_MAX / 4);
    p->backoff_max_ms = fsm_clamp(p->backoff_max_ms, p->backoff_initial_ms, INT64_MAX / 4);
    p->jitter_pct = (int)fsm_clamp(p->jitter_pct, 0, 100);
    p->reset_after_ms = fsm_clamp(p->reset_after_ms, 0, INT64_MAX);
    p->start_timeout_ms = fsm_clamp(p->start_timeout_ms, 0, INT64_MAX);
    p->stop_timeout_ms = fsm_clamp(p->stop_timeout_ms, 0, INT64_MAX);
    bot->state = FSM_STATE_STOPPED;
    bot->backoff_ms = p->backoff_initial_ms;
    bot->restart_cap = FSM_RESTARTS_INLINE;
    fsm_ring_resize(bot);
}

void fsm_bot_set_policy(struct fsm_bot *bot, const struct fsm_policy *policy)
{
    struct fsm_bot clamped;
    fsm_bot_init(&clamped, policy); /* the same clamping as a new bot's */
    fsm_bot_free(&clamped);
    bot->policy = clamped.policy;
    fsm_ring_resize(bot);
}

void fsm_bot_free(struct fsm_bot *bot)
{
    free(bot->restart_heap);
    bot->restart_heap = NULL;
    bot->restart_cap = FSM_RESTARTS_INLINE;
    bot->restart_head = bot->restart_len = 0;
}

struct fsm_actions fsm_step(struct fsm_bot *bot, const struct fsm_event *ev, int64_t now_ms)
{
    struct fsm_actions act = {0, 0, NULL};
    fsm_handler handler;

    if ((unsigned)bot->state >= FSM_STATE_COUNT || (unsigned)ev->type >= FSM_EVENT_COUNT)
        return act;
    handler = fsm_table[bot->state][ev->type];
    if (handler)
        handler(bot, ev, now_ms, &act);
    if (ev->why && act.reason) { /* the caller knows better why it failed */
        snprintf(bot->reason, sizeof bot->reason, "%s", ev->why);
        act.reason = bot->reason;
    }
    return act;
}

const char *fsm_state_name(enum fsm_state state)
{
    if ((unsigned)state >= FSM_STATE_COUNT)
        return "unknown";
    return fsm_state_names[state];
}

const char *fsm_event_name(enum fsm_event_type type)
{
    if ((unsigned)type >= FSM_EVENT_COUNT)
        return "unknown";
    return fsm_event_names[type];
}

const char *fsm_restart_name(enum fsm_restart restart)
{
    if ((unsigned)restart > FSM_RESTART_NEVER)
        return "unknown";
    return fsm_restart_names[restart];
}

int fsm_restart_parse(const char *name)
{
    for (size_t i = 0; i < sizeof fsm_restart_names / sizeof fsm_restart_names[0]; i++)
        if (strcmp(name, fsm_restart_names[i]) == 0)
            return (int)i;
    return -1;
}
