/*
 * check_fsm: the bot lifecycle state machine, driven by scripted events with a
 * fixed clock and a fixed jitter source, so every delay is exact.
 */
#include "supervisor/fsm.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check_support.h"

#define ALL_ACTIONS 0xffu

/* The jitter source the tests control; 0.5 means no jitter. */
static double fsm_test_random_value = 0.5;

static double fsm_test_random(void *arg)
{
    (void)arg;
    return fsm_test_random_value;
}

/* Defaults with the test's jitter source. */
static struct fsm_policy fsm_test_policy(void)
{
    struct fsm_policy p;

    fsm_policy_default(&p);
    p.random = fsm_test_random;
    fsm_test_random_value = 0.5;
    return p;
}

static struct fsm_actions fsm_test_send(struct fsm_bot *bot, enum fsm_event_type type, int64_t now)
{
    struct fsm_event ev = {type, 0, 0, NULL};
    return fsm_step(bot, &ev, now);
}

static struct fsm_actions fsm_test_exit(struct fsm_bot *bot, int code, int sig, int64_t now)
{
    struct fsm_event ev = {FSM_EV_EXITED, code, sig, NULL};
    return fsm_step(bot, &ev, now);
}

/* A bot under POLICY brought to RUNNING at NOW. */
static void fsm_test_running(struct fsm_bot *bot, const struct fsm_policy *policy, int64_t now)
{
    fsm_bot_init(bot, policy);
    fsm_test_send(bot, FSM_EV_START, now);
    fsm_test_send(bot, FSM_EV_READY, now);
    ck_assert_int_eq(bot->state, FSM_STATE_RUNNING);
}

START_TEST(test_names)
{
    ck_assert_str_eq(fsm_state_name(FSM_STATE_STARTING), "starting");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_RUNNING), "running");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_STOPPING), "stopping");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_STOPPED), "stopped");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_BACKOFF), "backoff");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_FATAL), "fatal");
    ck_assert_str_eq(fsm_state_name(FSM_STATE_COUNT), "unknown");
    ck_assert_str_eq(fsm_event_name(FSM_EV_WATCHDOG_TIMEOUT), "watchdog-timeout");
    ck_assert_str_eq(fsm_event_name(FSM_EV_HEALTHY), "healthy");
    ck_assert_str_eq(fsm_event_name(FSM_EVENT_COUNT), "unknown");
    for (int e = 0; e < FSM_EVENT_COUNT; e++)
        ck_assert_str_ne(fsm_event_name((enum fsm_event_type)e), "unknown");
    ck_assert_str_eq(fsm_restart_name(FSM_RESTART_ON_FAILURE), "on-failure");
    ck_assert_int_eq(fsm_restart_parse("always"), FSM_RESTART_ALWAYS);
    ck_assert_int_eq(fsm_restart_parse("on-failure"), FSM_RESTART_ON_FAILURE);
    ck_assert_int_eq(fsm_restart_parse("never"), FSM_RESTART_NEVER);
    ck_assert_int_eq(fsm_restart_parse("sometimes"), -1);
}
END_TEST

START_TEST(test_start_ready)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_bot_init(&bot, &p);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    a = fsm_test_send(&bot, FSM_EV_START, 1000);
    ck_assert_uint_eq(a.flags, FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_int_eq(bot.since_ms, 1000);

    a = fsm_test_send(&bot, FSM_EV_READY, 1500);
    ck_assert_int_eq(bot.state, FSM_STATE_RUNNING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_ARM_HEALTHY_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_int_eq(bot.since_ms, 1500);
    ck_assert_uint_eq(bot.restarts, 0);

    a = fsm_test_send(&bot, FSM_EV_START, 1600);
    ck_assert_uint_eq(a.flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_RUNNING);
    a = fsm_test_send(&bot, FSM_EV_READY, 1700);
    ck_assert_uint_eq(a.flags, 0);
    ck_assert_int_eq(bot.since_ms, 1500);
}
END_TEST

START_TEST(test_crash_backoff)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 1, 0, 2000);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_ARM_BACKOFF_TIMER);
    ck_assert_int_eq(a.timer_ms, 100);
    ck_assert_ptr_nonnull(a.reason);
    ck_assert_str_eq(a.reason, "exit status 1");
    ck_assert_str_eq(bot.reason, "exit status 1");
    ck_assert_uint_eq(bot.restarts, 1);
    ck_assert(bot.last_exit.valid);
    ck_assert_int_eq(bot.last_exit.code, 1);
    ck_assert_int_eq(bot.last_exit.signal, 0);
    ck_assert_int_eq(bot.last_exit.at_ms, 2000);

    a = fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 2100);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags & (FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER),
                      FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_str_eq(bot.reason, "exit status 1");

    a = fsm_test_send(&bot, FSM_EV_READY, 2200);
    ck_assert_int_eq(bot.state, FSM_STATE_RUNNING);
    ck_assert_str_eq(bot.reason, "");
}
END_TEST

START_TEST(test_backoff_doubles_to_cap)
{
    static const int64_t expect[] = {100,  200,   400,   800,   1600,  3200,
                                     6400, 12800, 25600, 30000, 30000, 30000};
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;
    int64_t now = 0;

    fsm_test_running(&bot, &p, now);
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        a = fsm_test_exit(&bot, 1, 0, now);
        ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
        ck_assert_uint_eq(a.flags & FSM_ACT_ARM_BACKOFF_TIMER, FSM_ACT_ARM_BACKOFF_TIMER);
        ck_assert_int_eq(a.timer_ms, expect[i]);
        ck_assert_int_eq(bot.backoff_delay_ms, expect[i]);
        now += a.timer_ms;
        fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, now);
        ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    }
    ck_assert_uint_eq(bot.restarts, 12);
}
END_TEST

START_TEST(test_jitter)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    fsm_test_random_value = 0.0;
    a = fsm_test_exit(&bot, 1, 0, 0);
    ck_assert_int_eq(a.timer_ms, 80);
    fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 80);
    fsm_test_random_value = 0.75;
    a = fsm_test_exit(&bot, 1, 0, 100);
    ck_assert_int_eq(a.timer_ms, 220);

    /* At the cap the jitter may only pull the delay down. */
    p.backoff_initial_ms = 30000;
    fsm_test_running(&bot, &p, 0);
    fsm_test_random_value = 0.99;
    a = fsm_test_exit(&bot, 1, 0, 0);
    ck_assert_int_eq(a.timer_ms, 30000);
    fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 30000);
    fsm_test_random_value = 0.0;
    a = fsm_test_exit(&bot, 1, 0, 31000);
    ck_assert_int_eq(a.timer_ms, 24000);

    /* Without a source of its own the FSM uses random(), within the bounds. */
    p = fsm_test_policy();
    p.random = NULL;
    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 1, 0, 0);
    ck_assert_int_ge(a.timer_ms, 80);
    ck_assert_int_le(a.timer_ms, 120);
}
END_TEST

START_TEST(test_healthy_resets_backoff)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;
    int64_t now = 0;

    fsm_test_running(&bot, &p, now);
    for (int i = 0; i < 4; i++) {
        a = fsm_test_exit(&bot, 1, 0, now);
        now += a.timer_ms;
        fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, now);
    }
    ck_assert_int_eq(bot.backoff_ms, 1600);
    a = fsm_test_send(&bot, FSM_EV_READY, now);
    ck_assert_uint_eq(a.flags & FSM_ACT_ARM_HEALTHY_TIMER, FSM_ACT_ARM_HEALTHY_TIMER);
    now += a.timer_ms;
    a = fsm_test_send(&bot, FSM_EV_HEALTHY, now);
    ck_assert_uint_eq(a.flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_RUNNING);
    ck_assert_int_eq(bot.backoff_ms, 0);

    /* The first failure after a healthy run restarts at once, counted. */
    a = fsm_test_exit(&bot, 1, 0, now + 5000);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_ptr_nonnull(a.reason);
    ck_assert_str_eq(a.reason, "exit status 1");
    ck_assert_str_eq(bot.reason, "exit status 1");
    ck_assert_int_eq(bot.since_ms, now + 5000);
    ck_assert_int_eq(bot.backoff_delay_ms, 0);
    ck_assert_int_eq(bot.last_exit.at_ms, now + 5000);
    ck_assert_uint_eq(bot.restarts, 5);

    /* Consecutive failures then back off from the initial delay, doubling. */
    now += 5000;
    a = fsm_test_exit(&bot, 1, 0, now + 10);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_int_eq(a.timer_ms, 100);
    now += 110;
    fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, now);
    fsm_test_send(&bot, FSM_EV_READY, now);
    a = fsm_test_exit(&bot, 0, 9, now + 3000);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_int_eq(a.timer_ms, 200);
    ck_assert_uint_eq(bot.restarts, 7);

    /* Healthy again: at once again. */
    now += 3200;
    fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, now);
    fsm_test_send(&bot, FSM_EV_READY, now);
    fsm_test_send(&bot, FSM_EV_HEALTHY, now + 10000);
    a = fsm_test_exit(&bot, 0, 9, now + 20000);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags & FSM_ACT_SPAWN, FSM_ACT_SPAWN);
    ck_assert_str_eq(bot.reason, "killed by signal 9");
}
END_TEST

START_TEST(test_healthy_restart_limit)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;
    int64_t now = 0;

    /* Immediate restarts count towards max_restarts within the window. */
    p.max_restarts = 2;
    fsm_test_running(&bot, &p, now);
    for (int i = 0; i < 2; i++) {
        now += 10000;
        fsm_test_send(&bot, FSM_EV_HEALTHY, now);
        a = fsm_test_exit(&bot, 0, 9, now + 1);
        ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
        ck_assert_uint_eq(a.flags & FSM_ACT_SPAWN, FSM_ACT_SPAWN);
        fsm_test_send(&bot, FSM_EV_READY, now + 2);
    }
    now += 10000;
    fsm_test_send(&bot, FSM_EV_HEALTHY, now);
    a = fsm_test_exit(&bot, 0, 9, now + 1);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_str_eq(bot.reason, "more than 2 restarts within 60 s (last: killed by signal 9)");

    /* Under policy never a healthy bot that exits just stops. */
    p = fsm_test_policy();
    p.restart = FSM_RESTART_NEVER;
    fsm_test_running(&bot, &p, 0);
    fsm_test_send(&bot, FSM_EV_HEALTHY, 10000);
    a = fsm_test_exit(&bot, 1, 0, 10001);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);

    /* A fresh start has not been healthy: its first failure waits. */
    p = fsm_test_policy();
    fsm_test_running(&bot, &p, 0);
    fsm_test_send(&bot, FSM_EV_HEALTHY, 10000);
    fsm_test_send(&bot, FSM_EV_STOP, 10001);
    fsm_test_exit(&bot, 0, 0, 10002);
    fsm_test_send(&bot, FSM_EV_START, 10003);
    a = fsm_test_exit(&bot, 1, 0, 10004);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_int_eq(a.timer_ms, 100);
}
END_TEST

START_TEST(test_exit_78_fatal)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    a = fsm_test_exit(&bot, 78, 0, 50);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_str_eq(a.reason, "exit status 78 (configuration error)");
    ck_assert_str_eq(bot.reason, "exit status 78 (configuration error)");
    ck_assert_uint_eq(bot.restarts, 0);
    ck_assert_int_eq(bot.last_exit.code, 78);

    /* Nothing but a start gets it out of fatal. */
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 60).flags, 0);
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_STOP, 60).flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);

    a = fsm_test_send(&bot, FSM_EV_START, 70);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_str_eq(bot.reason, "");
    ck_assert(bot.last_exit.valid);

    /* Even under policy never and from running, 78 is fatal. */
    p.restart = FSM_RESTART_NEVER;
    fsm_test_running(&bot, &p, 0);
    fsm_test_exit(&bot, 78, 0, 10);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    a = fsm_test_send(&bot, FSM_EV_RESTART, 20);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
}
END_TEST

/* Crash the bot at the times in AT, restarting after each backoff. */
static void fsm_test_crash_at(struct fsm_bot *bot, const int64_t *at, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (bot->state == FSM_STATE_BACKOFF)
            fsm_test_send(bot, FSM_EV_BACKOFF_DONE, at[i]);
        ck_assert_int_eq(bot->state, FSM_STATE_STARTING);
        fsm_test_exit(bot, 1, 0, at[i]);
    }
}

/* BOT afresh under P, started at 0, then crashed N times STEP ms apart. */
static void fsm_test_crash_every(struct fsm_bot *bot, const struct fsm_policy *p, size_t n,
                                 int64_t step)
{
    int64_t at[64];
    ck_assert_uint_le(n, 64);
    for (size_t i = 0; i < n; i++)
        at[i] = (int64_t)i * step;
    fsm_bot_init(bot, p);
    fsm_test_send(bot, FSM_EV_START, 0);
    fsm_test_crash_at(bot, at, n);
}

START_TEST(test_intensity_fatal)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;
    int64_t now = 0;

    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    for (int i = 0; i < 10; i++) {
        a = fsm_test_exit(&bot, 1, 0, now);
        ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
        now += 1000;
        fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, now);
    }
    ck_assert_uint_eq(bot.restarts, 10);
    a = fsm_test_exit(&bot, 1, 0, now);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_str_eq(bot.reason, "more than 10 restarts within 60 s (last: exit status 1)");
    ck_assert_str_eq(a.reason, bot.reason);
    ck_assert_uint_eq(bot.restarts, 10);

    a = fsm_test_send(&bot, FSM_EV_START, now + 1);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(bot.restarts, 0);
    ck_assert_int_eq(bot.backoff_ms, 100);
    a = fsm_test_exit(&bot, 1, 0, now + 2);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_int_eq(a.timer_ms, 100);
}
END_TEST

START_TEST(test_intensity_window_slides)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;

    /* One crash every 6.5 s: never more than 10 within any 60 s. */
    fsm_test_crash_every(&bot, &p, 40, 6500);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_uint_eq(bot.restarts, 40);

    /* Eleven crashes spread over just more than the window. */
    fsm_test_crash_every(&bot, &p, 11, 6001);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);

    /* A restart exactly window_ms old has left the window. */
    fsm_test_crash_every(&bot, &p, 11, 6000);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);

    /* The same within less than the window is one too many. */
    fsm_test_crash_every(&bot, &p, 11, 5999);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);

    /* max_restarts 0: the first failure is fatal; window 0: no limit at all. */
    p.max_restarts = 0;
    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    fsm_test_exit(&bot, 1, 0, 5);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_str_eq(bot.reason, "more than 0 restarts within 60 s (last: exit status 1)");
    p.window_ms = 0;
    fsm_test_crash_every(&bot, &p, 40, 1);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);

    /* Any limit is honoured, far above the inline ring (issue 12): 1000
     * restarts within the window are allowed, the 1001st is fatal. */
    p.window_ms = 1500;
    p.max_restarts = 1000;
    fsm_bot_init(&bot, &p);
    ck_assert_int_eq(bot.policy.max_restarts, 1000);
    /* ... with no room taken for them before they happen: 8 KB a bot up
     * front was a third of a 1,000-bot supervisor's memory. */
    ck_assert_ptr_null(bot.restart_heap);
    ck_assert_uint_le(bot.restart_cap, FSM_RESTARTS_INLINE);
    fsm_test_send(&bot, FSM_EV_START, 0);
    for (int i = 0; i < 1000; i++) {
        fsm_test_crash_at(&bot, &(int64_t){i}, 1);
        ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
        ck_assert_uint_le(bot.restart_cap, 2 * (size_t)(i + 1) + FSM_RESTARTS_INLINE);
    }
    ck_assert_uint_eq(bot.restart_cap, 1000);
    fsm_test_crash_at(&bot, &(int64_t){1000}, 1);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_str_eq(bot.reason, "more than 1000 restarts within 1500 ms (last: exit status 1)");

    /* A new policy resizes the ring and keeps the newest times: with 5 allowed,
     * the next crash within the window is fatal at once. */
    p.max_restarts = 5;
    fsm_test_send(&bot, FSM_EV_START, 2000);
    for (int i = 0; i < 5; i++)
        fsm_test_crash_at(&bot, &(int64_t){2001 + i}, 1);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    fsm_bot_set_policy(&bot, &p);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    fsm_test_crash_at(&bot, &(int64_t){2010}, 1);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    fsm_bot_free(&bot);
}
END_TEST

START_TEST(test_intensity_ring_wraps)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    int64_t t;

    /* A restart every 10 ms with 100 allowed per second: always just under the
     * limit, through several laps of the ring (grown from the inline slots to
     * the heap on the way); one more crash tips it over. */
    p.max_restarts = 100;
    p.window_ms = 1000;
    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    for (t = 0; t <= 5000; t += 10) {
        fsm_test_crash_at(&bot, &t, 1);
        ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    }
    ck_assert_uint_eq(bot.restarts, 501);
    t = 5005;
    fsm_test_crash_at(&bot, &t, 1);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    fsm_bot_free(&bot);
}
END_TEST

/* An event's why replaces the reason its step sets: the FSM stays the only
 * writer of the bot's state (a spawn that failed says why itself). */
START_TEST(test_event_why)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    struct fsm_event ev = {FSM_EV_EXITED, 78, 0, "port 8001 in use"};
    struct fsm_actions a = fsm_step(&bot, &ev, 5);
    ck_assert_int_eq(bot.state, FSM_STATE_FATAL);
    ck_assert_str_eq(bot.reason, "port 8001 in use");
    ck_assert_ptr_eq(a.reason, bot.reason);
    /* A step that sets no reason keeps it. */
    struct fsm_event stop = {FSM_EV_STOP, 0, 0, "ignored"};
    a = fsm_step(&bot, &stop, 6);
    ck_assert_ptr_null(a.reason);
    ck_assert_str_eq(bot.reason, "port 8001 in use");
}
END_TEST

START_TEST(test_start_timeout)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    a = fsm_test_send(&bot, FSM_EV_START_TIMEOUT, 10000);
    ck_assert_uint_eq(a.flags, FSM_ACT_KILL_KILL);
    ck_assert_str_eq(a.reason, "not ready within 10 s");
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);

    /* A READY=1 racing the kill does not make it running. */
    a = fsm_test_send(&bot, FSM_EV_READY, 10001);
    ck_assert_uint_eq(a.flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);

    a = fsm_test_exit(&bot, 0, 9, 10002);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_ARM_BACKOFF_TIMER);
    ck_assert_int_eq(a.timer_ms, 100);
    ck_assert_str_eq(bot.reason, "not ready within 10 s");
    ck_assert_int_eq(bot.last_exit.signal, 9);
    ck_assert_uint_eq(bot.restarts, 1);
    ck_assert(!bot.killing);

    /* A timed-out start is a failure even for on-failure if it exits 0. */
    p.restart = FSM_RESTART_ON_FAILURE;
    p.start_timeout_ms = 2500;
    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    a = fsm_test_send(&bot, FSM_EV_START_TIMEOUT, 2500);
    ck_assert_str_eq(a.reason, "not ready within 2500 ms");
    fsm_test_exit(&bot, 0, 0, 2600);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
}
END_TEST

START_TEST(test_watchdog_timeout)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_send(&bot, FSM_EV_WATCHDOG_TIMEOUT, 30000);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_KILL_KILL);
    ck_assert_str_eq(a.reason, "watchdog timeout");
    ck_assert_int_eq(bot.state, FSM_STATE_RUNNING);

    /* A healthy tick racing the kill does not reset the backoff. */
    bot.backoff_ms = 400;
    fsm_test_send(&bot, FSM_EV_HEALTHY, 30001);
    ck_assert_int_eq(bot.backoff_ms, 400);

    a = fsm_test_exit(&bot, 0, 9, 30002);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_int_eq(a.timer_ms, 400);
    ck_assert_str_eq(bot.reason, "watchdog timeout");
    a = fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 30402);
    ck_assert_uint_eq(a.flags & FSM_ACT_SPAWN, FSM_ACT_SPAWN);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);

    /* The watchdog is not watched before READY. */
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_WATCHDOG_TIMEOUT, 30500).flags, 0);
}
END_TEST

START_TEST(test_policy_on_failure)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    p.restart = FSM_RESTART_ON_FAILURE;
    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 0, 0, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_str_eq(bot.reason, "exit status 0");
    ck_assert_uint_eq(bot.restarts, 0);

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 2, 0, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_str_eq(bot.reason, "exit status 2");
    ck_assert_int_eq(a.timer_ms, 100);

    fsm_test_running(&bot, &p, 0);
    fsm_test_exit(&bot, 0, 15, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_str_eq(bot.reason, "killed by signal 15");

    /* Under always, even a clean exit restarts. */
    p.restart = FSM_RESTART_ALWAYS;
    fsm_test_running(&bot, &p, 0);
    fsm_test_exit(&bot, 0, 0, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_str_eq(bot.reason, "exit status 0");
}
END_TEST

START_TEST(test_policy_never)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    p.restart = FSM_RESTART_NEVER;
    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 1, 0, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_str_eq(bot.reason, "exit status 1");
    ck_assert_int_eq(bot.last_exit.code, 1);
    ck_assert_uint_eq(bot.restarts, 0);

    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    fsm_test_exit(&bot, 0, 6, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_str_eq(bot.reason, "killed by signal 6");
}
END_TEST

START_TEST(test_stop_running)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_send(&bot, FSM_EV_STOP, 1000);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_KILL_TERM | FSM_ACT_ARM_STOP_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_int_eq(bot.since_ms, 1000);

    a = fsm_test_send(&bot, FSM_EV_STOP_TIMEOUT, 11000);
    ck_assert_uint_eq(a.flags, FSM_ACT_KILL_KILL);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPING);

    a = fsm_test_exit(&bot, 0, 9, 11001);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_uint_eq(bot.restarts, 0);
    ck_assert_str_eq(bot.reason, "");
    ck_assert_int_eq(bot.last_exit.signal, 9);

    /* A stop of a stopped bot does nothing. */
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_STOP, 12000).flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);

    /* Stopping a starting bot works the same; an exit 78 then is just the stop. */
    fsm_bot_init(&bot, &p);
    fsm_test_send(&bot, FSM_EV_START, 0);
    a = fsm_test_send(&bot, FSM_EV_STOP, 10);
    ck_assert_uint_eq(a.flags & FSM_ACT_KILL_TERM, FSM_ACT_KILL_TERM);
    fsm_test_exit(&bot, 78, 0, 20);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
}
END_TEST

START_TEST(test_stop_in_backoff)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    fsm_test_exit(&bot, 1, 0, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    a = fsm_test_send(&bot, FSM_EV_STOP, 150);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS);
    ck_assert_int_eq(bot.since_ms, 150);

    /* A late backoff timer is ignored. */
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_BACKOFF_DONE, 200).flags, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);

    /* START in backoff skips the wait, keeping the count. */
    fsm_test_running(&bot, &p, 0);
    fsm_test_exit(&bot, 1, 0, 100);
    a = fsm_test_send(&bot, FSM_EV_START, 120);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_uint_eq(bot.restarts, 1);
}
END_TEST

START_TEST(test_restart_running)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_send(&bot, FSM_EV_RESTART, 500);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_KILL_TERM | FSM_ACT_ARM_STOP_TIMER);
    ck_assert(bot.restart_pending);

    a = fsm_test_exit(&bot, 0, 0, 700);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_CANCEL_TIMERS | FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
    ck_assert_int_eq(a.timer_ms, 10000);
    ck_assert_uint_eq(bot.restarts, 0);
    ck_assert(!bot.restart_pending);

    /* STOP during a restart withdraws the restart; START puts it back. */
    fsm_test_send(&bot, FSM_EV_READY, 800);
    fsm_test_send(&bot, FSM_EV_RESTART, 900);
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_STOP, 950).flags, 0);
    ck_assert(!bot.restart_pending);
    fsm_test_exit(&bot, 0, 0, 1000);
    ck_assert_int_eq(bot.state, FSM_STATE_STOPPED);

    fsm_test_running(&bot, &p, 0);
    fsm_test_send(&bot, FSM_EV_STOP, 100);
    ck_assert_uint_eq(fsm_test_send(&bot, FSM_EV_START, 150).flags, 0);
    ck_assert(bot.restart_pending);
    a = fsm_test_exit(&bot, 0, 15, 200);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags & FSM_ACT_SPAWN, FSM_ACT_SPAWN);

    /* RESTART of a stopped bot is a start. */
    fsm_bot_init(&bot, &p);
    a = fsm_test_send(&bot, FSM_EV_RESTART, 0);
    ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
    ck_assert_uint_eq(a.flags, FSM_ACT_SPAWN | FSM_ACT_ARM_START_TIMER);
}
END_TEST

START_TEST(test_killed_by_signal)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    struct fsm_actions a;

    fsm_test_running(&bot, &p, 0);
    a = fsm_test_exit(&bot, 0, 9, 100);
    ck_assert_int_eq(bot.state, FSM_STATE_BACKOFF);
    ck_assert_str_eq(a.reason, "killed by signal 9");
    ck_assert_str_eq(bot.reason, "killed by signal 9");
    ck_assert(bot.last_exit.valid);
    ck_assert_int_eq(bot.last_exit.signal, 9);
    ck_assert_int_eq(bot.last_exit.code, 0);
}
END_TEST

/* What each event does from each state, reached the plain way; written from
 * the contract, independently of fsm.c's table. */
static const enum fsm_state fsm_test_next[FSM_STATE_COUNT][FSM_EVENT_COUNT] = {
#define S FSM_STATE_STARTING
#define R FSM_STATE_RUNNING
#define T FSM_STATE_STOPPING
#define D FSM_STATE_STOPPED
#define B FSM_STATE_BACKOFF
#define F FSM_STATE_FATAL
    /*            start ready exited s-to wd-to b-done stop stop-to restart healthy */
    [FSM_STATE_STARTING] = {S, R, B, S, S, S, T, S, T, S},
    [FSM_STATE_RUNNING] = {R, R, B, R, R, R, T, R, T, R},
    [FSM_STATE_STOPPING] = {T, T, D, T, T, T, T, T, T, T},
    [FSM_STATE_STOPPED] = {S, D, D, D, D, D, D, D, S, D},
    [FSM_STATE_BACKOFF] = {S, B, B, B, B, S, D, B, S, B},
    [FSM_STATE_FATAL] = {S, F, F, F, F, F, F, F, S, F},
#undef S
#undef R
#undef T
#undef D
#undef B
#undef F
};

/* Pairs that must leave the bot byte for byte as it was. */
static bool fsm_test_ignored(enum fsm_state s, enum fsm_event_type e)
{
    switch (s) {
    case FSM_STATE_STARTING:
        return e == FSM_EV_START || e == FSM_EV_WATCHDOG_TIMEOUT || e == FSM_EV_BACKOFF_DONE ||
               e == FSM_EV_STOP_TIMEOUT || e == FSM_EV_HEALTHY;
    case FSM_STATE_RUNNING:
        return e == FSM_EV_START || e == FSM_EV_READY || e == FSM_EV_START_TIMEOUT ||
               e == FSM_EV_BACKOFF_DONE || e == FSM_EV_STOP_TIMEOUT;
    case FSM_STATE_STOPPING:
        return e == FSM_EV_READY || e == FSM_EV_START_TIMEOUT || e == FSM_EV_WATCHDOG_TIMEOUT ||
               e == FSM_EV_BACKOFF_DONE || e == FSM_EV_HEALTHY;
    case FSM_STATE_STOPPED:
    case FSM_STATE_FATAL:
        return e != FSM_EV_START && e != FSM_EV_RESTART;
    case FSM_STATE_BACKOFF:
        return e == FSM_EV_READY || e == FSM_EV_EXITED || e == FSM_EV_START_TIMEOUT ||
               e == FSM_EV_WATCHDOG_TIMEOUT || e == FSM_EV_STOP_TIMEOUT || e == FSM_EV_HEALTHY;
    default:
        return true;
    }
}

/* Bring BOT to STATE by the plain path. */
static void fsm_test_reach(struct fsm_bot *bot, const struct fsm_policy *p, enum fsm_state state)
{
    fsm_bot_init(bot, p);
    if (state == FSM_STATE_STOPPED)
        return;
    fsm_test_send(bot, FSM_EV_START, 10);
    if (state == FSM_STATE_FATAL)
        fsm_test_exit(bot, 78, 0, 20);
    if (state == FSM_STATE_STARTING || state == FSM_STATE_FATAL)
        goto done;
    fsm_test_send(bot, FSM_EV_READY, 30);
    if (state == FSM_STATE_STOPPING)
        fsm_test_send(bot, FSM_EV_STOP, 40);
    if (state == FSM_STATE_BACKOFF)
        fsm_test_exit(bot, 1, 0, 40);
done:
    ck_assert_int_eq(bot->state, state);
}

/* Every action set is well formed: known bits, one timer at most, with a delay. */
static void fsm_test_check_actions(const struct fsm_actions *a)
{
    unsigned arms = a->flags & (FSM_ACT_ARM_START_TIMER | FSM_ACT_ARM_BACKOFF_TIMER |
                                FSM_ACT_ARM_STOP_TIMER | FSM_ACT_ARM_HEALTHY_TIMER);

    ck_assert_uint_eq(a->flags & ~ALL_ACTIONS, 0);
    ck_assert_int_le(__builtin_popcount(arms), 1);
    if (arms)
        ck_assert_int_gt(a->timer_ms, 0);
    ck_assert((a->flags & (FSM_ACT_KILL_TERM | FSM_ACT_KILL_KILL)) == 0 ||
              (a->flags & FSM_ACT_SPAWN) == 0);
}

START_TEST(test_exhaustive)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot, before;

    for (int s = 0; s < FSM_STATE_COUNT; s++) {
        for (int e = 0; e < FSM_EVENT_COUNT; e++) {
            struct fsm_event ev = {(enum fsm_event_type)e, 1, 0, NULL};
            struct fsm_actions a;

            fsm_test_reach(&bot, &p, (enum fsm_state)s);
            memcpy(&before, &bot, sizeof bot);
            a = fsm_step(&bot, &ev, 1000);
            fsm_test_check_actions(&a);
            ck_assert_msg(bot.state == fsm_test_next[s][e], "%s + %s -> %s, expected %s",
                          fsm_state_name((enum fsm_state)s), fsm_event_name(ev.type),
                          fsm_state_name(bot.state), fsm_state_name(fsm_test_next[s][e]));
            if (fsm_test_ignored((enum fsm_state)s, ev.type)) {
                ck_assert_msg(a.flags == 0 && a.reason == NULL, "%s + %s acted",
                              fsm_state_name((enum fsm_state)s), fsm_event_name(ev.type));
                ck_assert_msg(memcmp(&before, &bot, sizeof bot) == 0, "%s + %s changed the bot",
                              fsm_state_name((enum fsm_state)s), fsm_event_name(ev.type));
            }
            /* Whatever happened, every event from the new state keeps it valid. */
            for (int e2 = 0; e2 < FSM_EVENT_COUNT; e2++) {
                struct fsm_bot copy;
                struct fsm_event ev2 = {(enum fsm_event_type)e2, e2 % 2 ? 78 : 0, e2 % 3 ? 0 : 9,
                                        NULL};
                struct fsm_actions a2;

                memcpy(&copy, &bot, sizeof bot);
                a2 = fsm_step(&copy, &ev2, 2000);
                fsm_test_check_actions(&a2);
                ck_assert_int_ge(copy.state, 0);
                ck_assert_int_lt(copy.state, FSM_STATE_COUNT);
                ck_assert_uint_le(copy.restart_len, copy.restart_cap);
                ck_assert_uint_lt(copy.restart_head, copy.restart_cap);
                ck_assert_ptr_nonnull(memchr(copy.reason, '\0', sizeof copy.reason));
            }
        }
    }

    /* Out-of-range events and states are ignored too. */
    fsm_test_reach(&bot, &p, FSM_STATE_RUNNING);
    memcpy(&before, &bot, sizeof bot);
    {
        struct fsm_event bad = {FSM_EVENT_COUNT, 0, 0, NULL};
        struct fsm_actions a = fsm_step(&bot, &bad, 5);
        ck_assert_uint_eq(a.flags, 0);
        bad.type = (enum fsm_event_type) - 1;
        a = fsm_step(&bot, &bad, 5);
        ck_assert_uint_eq(a.flags, 0);
        ck_assert(memcmp(&before, &bot, sizeof bot) == 0);
        bot.state = FSM_STATE_COUNT;
        bad.type = FSM_EV_START;
        a = fsm_step(&bot, &bad, 5);
        ck_assert_uint_eq(a.flags, 0);
        ck_assert_int_eq(bot.state, FSM_STATE_COUNT);
    }
}
END_TEST

START_TEST(test_random_walk)
{
    struct fsm_policy p = fsm_test_policy();
    struct fsm_bot bot;
    unsigned seed = 12345;
    int64_t now = 0;

    p.max_restarts = 5;
    p.window_ms = 3000;
    fsm_bot_init(&bot, &p);
    for (int i = 0; i < 200000; i++) {
        struct fsm_event ev = {FSM_EV_START, 0, 0, NULL};
        struct fsm_actions a;
        enum fsm_state from = bot.state;

        seed = seed * 1103515245u + 12345u;
        ev.type = (enum fsm_event_type)((seed >> 16) % FSM_EVENT_COUNT);
        ev.code = (int)((seed >> 8) % 4) == 3 ? 78 : (int)((seed >> 8) % 3);
        ev.signal = (seed >> 4) % 5 == 0 ? 9 : 0;
        now += (seed >> 20) % 700;
        a = fsm_step(&bot, &ev, now);
        fsm_test_check_actions(&a);
        ck_assert_int_lt(bot.state, FSM_STATE_COUNT);
        if (bot.state != from)
            ck_assert_int_eq(bot.since_ms, now);
        if (a.flags & FSM_ACT_SPAWN)
            ck_assert_int_eq(bot.state, FSM_STATE_STARTING);
        if (bot.state == FSM_STATE_BACKOFF && from != FSM_STATE_BACKOFF)
            ck_assert_int_le(a.timer_ms, p.backoff_max_ms);
        ck_assert_int_le(bot.backoff_ms, p.backoff_max_ms);
        ck_assert_ptr_nonnull(memchr(bot.reason, '\0', sizeof bot.reason));
    }
}
END_TEST

static Suite *fsm_suite(void)
{
    Suite *s = suite_create("fsm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);

    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_start_ready);
    tcase_add_test(tc, test_crash_backoff);
    tcase_add_test(tc, test_backoff_doubles_to_cap);
    tcase_add_test(tc, test_jitter);
    tcase_add_test(tc, test_healthy_resets_backoff);
    tcase_add_test(tc, test_healthy_restart_limit);
    tcase_add_test(tc, test_exit_78_fatal);
    tcase_add_test(tc, test_intensity_fatal);
    tcase_add_test(tc, test_intensity_window_slides);
    tcase_add_test(tc, test_intensity_ring_wraps);
    tcase_add_test(tc, test_event_why);
    tcase_add_test(tc, test_start_timeout);
    tcase_add_test(tc, test_watchdog_timeout);
    tcase_add_test(tc, test_policy_on_failure);
    tcase_add_test(tc, test_policy_never);
    tcase_add_test(tc, test_stop_running);
    tcase_add_test(tc, test_stop_in_backoff);
    tcase_add_test(tc, test_restart_running);
    tcase_add_test(tc, test_killed_by_signal);
    tcase_add_test(tc, test_exhaustive);
    tcase_add_test(tc, test_random_walk);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(fsm_suite());
}
