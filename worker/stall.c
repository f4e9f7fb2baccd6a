/*
 * stall: the last output's time and one timer. The timer is armed for the
 * moment the task would have been silent AFTER_S; when it fires early (more
 * output came meanwhile) it re-arms for the rest, so output costs a clock
 * read and no timer change. Once told, a silence is not told again until
 * output ends it.
 */
#include "worker/stall.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/util.h"

struct stall {
    struct event *timer;
    double after_s;
    stall_cb cb;
    void *arg;
    int64_t last_ns; /* the start, or the last output */
    bool running;
    bool told; /* this silence was told */
};

/* Arm the timer IN_S seconds from now. */
static void stall_arm(struct stall *s, double in_s)
{
    if (in_s < 0.001)
        in_s = 0.001;
    struct timeval tv = {(long)in_s, (long)((in_s - (long)in_s) * 1e6)};
    evtimer_add(s->timer, &tv);
}

/* The timer: tell a silence that is long enough, else wait for the rest. */
static void stall_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct stall *s = arg;
    if (!s->running || s->told)
        return;
    double silent = (double)(util_mono_ns() - s->last_ns) / 1e9;
    if (silent + 0.0005 < s->after_s)
        return stall_arm(s, s->after_s - silent);
    s->told = true;
    s->cb(silent, s->arg);
}

struct stall *stall_new(struct event_base *base, double after_s, stall_cb cb, void *arg)
{
    struct stall *s = xcalloc(1, sizeof *s);
    s->timer = evtimer_new(base, stall_timer_cb, s);
    s->after_s = after_s;
    s->cb = cb;
    s->arg = arg;
    return s;
}

void stall_free(struct stall *s)
{
    if (!s)
        return;
    event_free(s->timer);
    free(s);
}

void stall_start(struct stall *s)
{
    s->running = true;
    s->told = false;
    s->last_ns = util_mono_ns();
    stall_arm(s, s->after_s);
}

void stall_output(struct stall *s)
{
    if (!s->running)
        return;
    s->last_ns = util_mono_ns();
    if (s->told || !evtimer_pending(s->timer, NULL)) { /* a new silence starts */
        s->told = false;
        stall_arm(s, s->after_s);
    }
}

void stall_stop(struct stall *s)
{
    s->running = false;
    evtimer_del(s->timer);
}
