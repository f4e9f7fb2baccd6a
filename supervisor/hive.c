/*
 * hive: the supervisor's table of bots — what the front door sees through
 * hive.h. It owns the roster in force, the bots in roster order with an index
 * by id, the start queue (a hive starts its bots a slice per loop pass, at
 * most a few per core starting at once, each after its depends_on bots
 * run, so the loop serves the front door and reads READY=1 meanwhile), the
 * reaping of workers (SIGCHLD, mapped to their bots), the loop's own clock
 * (a supervisor that was stopped judges no worker on that time), user
 * requests and the shutdown. One bot's processes, sockets and timers are
 * bot.c's, the notify socket notify.c's, registry.json registry.c's, a
 * reload reload.c's; only fsm.c writes a bot's state.
 *
 * A bot removed by a reload is "retired": it leaves the table at once (the
 * front door no longer sees it) and is freed on a later loop pass, once its
 * worker has been reaped, never from inside its own callbacks.
 */
#include "supervisor/hive.h"
#include "supervisor/hive_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/httpclient.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/util.h"
#include "supervisor/cgtree.h"
#include "supervisor/child.h"
#include "supervisor/fsm.h"
#include "supervisor/logcap.h"
#include "supervisor/notify.h"
#include "supervisor/registry.h"
#include "supervisor/remote.h"
#include "supervisor/standin.h"
#include "supervisor/watchlimit.h"

#define HIVE_TICK_MS 1000          /* the loop's own heartbeat (hive_loop_gap) */
#define HIVE_GAP_MS 1500           /* a tick this late: we were not running */
#define HIVE_STORE_NAME "inotify"  /* the one descriptor a worker may store */
#define HIVE_PROXY_FD_NAME "proxy" /* the private socket's LISTEN_FDNAMES name */
#define HIVE_START_PER_CPU 32      /* bots starting at once, per online CPU ... */
#define HIVE_START_MIN 32          /* ... and at least this many */
#define HIVE_START_SLICE_MS 20     /* a slice of spawns gives the loop back after this long */

static void hive_notified(void *arg, struct notify_msg *m);
static void hive_ready_check(struct hive *hive);
static void hive_starter_cb(evutil_socket_t fd, short what, void *arg);

/* ---- paths, registry ---------------------------------------------------- */

/* Derive the paths under the roster's work dir and create the logs folder. */
int hive_paths(struct hive *hive, char *err, size_t errlen)
{
    free(hive->logs_dir);
    hive->logs_dir = xasprintf("%s/.deia/hive/logs", hive->roster->work_dir);
    char *registry = xasprintf("%s/.deia/hive/registry.json", hive->roster->work_dir);
    registry_set_path(hive->registry, registry);
    free(registry);
    if (util_mkdirs(hive->logs_dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", hive->logs_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The I-th bot's registry entry (registry_entry_fn). */
static bool hive_registry_entry(void *arg, size_t i, struct registry_entry *out)
{
    const struct hive *hive = arg;
    if (i >= hive->n_bots)
        return false;
    const struct hive_bot *bot = hive->bots[i];
    *out = (struct registry_entry){.id = bot->id,
                                   .port = bot->def->port,
                                   .pid = bot->pid,
                                   .status = bot->remote ? remote_state(bot->remote)
                                                         : fsm_state_name(bot->fsm.state),
                                   .restarts = bot->fsm.restarts,
                                   .reason = bot->fsm.reason,
                                   .registered_wall_ns = bot->registered_wall_ns,
                                   .heartbeat_wall_ns = bot->heartbeat_wall_ns,
                                   /* A bot without a watchdog says nothing after
                                    * READY=1: while its worker is alive, our own
                                    * look at it is the heartbeat. */
                                   .beat_is_now = !(bot->def->watchdog > 0)};
    return true;
}

/* A state change: the registry is rewritten at the end of this loop pass. */
void hive_registry_changed(struct hive *hive)
{
    registry_changed(hive->registry);
}

/* ---- the loop's own clock ------------------------------------------------ */

/* A fresh period for every worker being judged. */
static void hive_fresh_periods(struct hive *hive)
{
    for (size_t i = 0; i < hive->n_bots; i++)
        bot_fresh_period(hive->bots[i]);
}

/* Were we not running for a while (SIGSTOP, Ctrl-Z, a frozen VM)? The tick
 * runs every HIVE_TICK_MS; a later one means the loop stood still, and the
 * silence of the workers meanwhile says nothing about them (their
 * notifications may have been dropped on a full socket). Then every worker
 * gets a fresh period and true is returned. */
bool hive_loop_gap(struct hive *hive)
{
    int64_t now = util_mono_ms(), gap = now - hive->tick_mono_ms - HIVE_TICK_MS;
    if (gap < HIVE_GAP_MS)
        return false;
    log_warn("the supervisor did not run for %lld ms (stopped?); every worker gets a fresh "
             "watchdog period",
             (long long)gap);
    hive->tick_mono_ms = now;
    hive_fresh_periods(hive);
    return true;
}

/* The tick that lets hive_loop_gap see a stopped loop. */
static void hive_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    (void)fd, (void)what;
    hive_loop_gap(hive);
    hive->tick_mono_ms = util_mono_ms();
}

/* SIGCONT: we were stopped; nobody is judged on that time. */
static void hive_sigcont_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    (void)fd, (void)what;
    log_info("continued (SIGCONT); every worker gets a fresh watchdog period");
    hive->tick_mono_ms = util_mono_ms();
    hive_fresh_periods(hive);
}

/* True when another bot (a retired one, or one that moved by a reload) still
 * holds PORT, in the supervisor or in a worker that is stopping. */
bool hive_port_held(const struct hive *hive, const struct hive_bot *self, int port)
{
    const struct hive_bot *b;
    for (size_t i = 0; i < hive->n_bots; i++) {
        b = hive->bots[i];
        if (b != self && b->bound_port == port && (b->listen_fd >= 0 || b->pid > 0))
            return true;
    }
    TAILQ_FOREACH(b, &hive->retired, entry)
    if (b != self && b->bound_port == port && (b->listen_fd >= 0 || b->pid > 0))
        return true;
    return false;
}

/* After a step: free retired bots later, finish a shutdown when all are done. */
void hive_after_step(struct hive *hive, struct hive_bot *bot)
{
    static const struct timeval now = {0, 0};
    bool all = true;
    if (bot->retired && bot_settled(bot))
        evtimer_add(hive->sweep_ev, &now);
    if (!hive->shutting_down || hive->done_fired)
        return;
    /* Each exit of a shutdown used to look at every bot: O(N^2) for a
     * thousand. Look on from the first bot not yet settled, and once at all
     * of them when that reaches the end (a bot may have moved meanwhile). */
    size_t i = hive->settled_upto;
    while (i < hive->n_bots && bot_settled(hive->bots[i]))
        i++;
    hive->settled_upto = i;
    if (i < hive->n_bots)
        return;
    for (i = 0; i < hive->n_bots && all; i++)
        if (!bot_settled(hive->bots[i])) {
            hive->settled_upto = i;
            all = false;
        }
    struct hive_bot *r;
    TAILQ_FOREACH(r, &hive->retired, entry)
    all = all && bot_settled(r);
    if (all) {
        hive->done_fired = true;
        evtimer_add(hive->done_ev, &now);
    }
}

/* ---- the start queue ---------------------------------------------------- */

/* Have the start queue run at the next loop pass. */
static void hive_starter_kick(struct hive *hive)
{
    static const struct timeval now = {0, 0};
    if (!TAILQ_EMPTY(&hive->pending) && !evtimer_pending(hive->starter_ev, NULL))
        evtimer_add(hive->starter_ev, &now);
}

/* Ask for BOT to be started, and for its dependencies that are not on their
 * way already (the roster has no cycles). */
void hive_bot_want_start(struct hive_bot *bot)
{
    struct hive *hive = bot->hive;
    if (bot->wanted || bot->retired || hive->shutting_down)
        return;
    bot->wanted = true;
    bot->waiting[0] = '\0';
    TAILQ_INSERT_TAIL(&hive->pending, bot, pending_entry);
    for (char **d = bot->def->depends_on; *d; d++) {
        struct hive_bot *dep = hive_bot_named(hive, *d);
        if (dep && (dep->fsm.state == FSM_STATE_STOPPED || dep->fsm.state == FSM_STATE_FATAL))
            hive_bot_want_start(dep);
    }
    hive_starter_kick(hive);
}

/* Withdraw a start BOT was waiting for. */
void hive_bot_unwant(struct hive_bot *bot)
{
    if (!bot->wanted)
        return;
    TAILQ_REMOVE(&bot->hive->pending, bot, pending_entry);
    bot->wanted = false;
    bot->waiting[0] = '\0';
}

/* True when every dependency of BOT runs; otherwise its waiting reason says
 * which one it waits for. */
static bool hive_bot_deps_running(struct hive_bot *bot)
{
    for (char **d = bot->def->depends_on; *d; d++) {
        struct hive_bot *dep = hive_bot_named(bot->hive, *d);
        if (!dep || !bot_running(dep)) {
            snprintf(bot->waiting, sizeof bot->waiting, "waiting for %s", *d);
            return false;
        }
    }
    return true;
}

/* How many bots may be starting at once. A worker's start is CPU work
 * (exec, its store, its queue), and its start_timeout runs from its spawn:
 * a thousand started together on a few cores spend it waiting for each
 * other, and starve the supervisor (which must read their READY=1) of CPU. */
static size_t hive_start_inflight(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = cpus > 0 ? (size_t)cpus * HIVE_START_PER_CPU : HIVE_START_MIN;
    return n < HIVE_START_MIN ? HIVE_START_MIN : n;
}

/* The kernel's shortest CPU slice for us while we start bots from the
 * queue (EEVDF, Linux 6.12; older kernels ignore it). The loop is held in
 * clone(CLONE_VFORK) until each new child execs, and that child, which
 * inherits the slice, then gets a CPU at once instead of waiting behind the
 * workers already starting (a 1,000-bot up: 1.11 -> 1.06 s to READY=1 on 2
 * cores, bench/README.md). Workers take the default back as they start
 * (worker.c). Else (a restart, the loop's other work) we run with the
 * default, as everything else: the short slice all the time measured the
 * same at the up, and changes more. */
static void hive_brisk(struct hive *hive, bool on)
{
    if (hive->brisk == on)
        return;
    if (util_sched_slice_set(on ? UTIL_SCHED_SLICE_BRISK : 0) == 0 || !on)
        hive->brisk = on;
}

/* One slice of the start queue: START the next bots whose dependencies run
 * while fewer than hive_start_inflight() are starting, for at most
 * HIVE_START_SLICE_MS, then give the loop back (the front door, READY=1
 * datagrams, exits). The next slice comes at once while the slice ran out
 * of time, else as starting bots become running (or fail). */
static void hive_starter_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    struct hive_bot *bot, *next;
    size_t inflight = hive_start_inflight();
    int64_t until = util_mono_ms() + HIVE_START_SLICE_MS;
    bool timed_out = false;
    (void)fd, (void)what;
    hive_brisk(hive, !TAILQ_EMPTY(&hive->pending) && hive->starting < inflight);
    for (bot = TAILQ_FIRST(&hive->pending); bot && hive->starting < inflight; bot = next) {
        next = TAILQ_NEXT(bot, pending_entry);
        if (!hive_bot_deps_running(bot))
            continue;
        hive_bot_unwant(bot);
        bot_feed(bot, FSM_EV_START);
        next = TAILQ_FIRST(&hive->pending); /* a step may have changed the queue */
        if ((timed_out = util_mono_ms() >= until))
            break;
    }
    hive_brisk(hive, false);
    if (timed_out)
        hive_starter_kick(hive);
}

/* READY (once) when no autostart bot is left to run. */
static void hive_ready_check(struct hive *hive)
{
    if (hive->ready_left > 0 || !hive->started || !hive->ready)
        return;
    void (*ready)(void *) = hive->ready;
    hive->ready = NULL;
    ready(hive->ready_arg);
}

/* BOT has just become running: its watchdog starts, bots waiting for it may
 * go, and `hive up` may be ready. */
void hive_bot_now_running(struct hive_bot *bot)
{
    struct hive *hive = bot->hive;
    bot_arm_watchdog(bot);
    if (bot->counts_for_ready) {
        bot->counts_for_ready = false;
        hive->ready_left--;
        hive_ready_check(hive);
    }
    hive_starter_kick(hive);
}

/* BOT became fatal or stopped before it ever ran (so did the bots that
 * depend on it): `hive up` is as ready as it will get. Waiting on would leave a service manager
 * without READY=1 until it kills the whole hive (TimeoutStartSec=), healthy bots included. */
void hive_bot_gave_up(struct hive_bot *bot)
{
    struct hive *hive = bot->hive;
    if (!bot->counts_for_ready)
        return;
    bot->counts_for_ready = false;
    hive->ready_left--;
    hive->ready_failed++;
    /* Bots waiting for it will not start either until someone steps in. */
    for (size_t i = 0; i < hive->n_bots; i++)
        for (char *const *d = hive->bots[i]->def->depends_on; *d; d++)
            if (strcmp(*d, bot->id) == 0)
                hive_bot_gave_up(hive->bots[i]);
    hive_ready_check(hive);
}

/* Autostart bots that gave up instead of running before `hive up` was ready. */
size_t hive_ready_failed(const struct hive *hive)
{
    return hive->ready_failed;
}

/* Keep the count of starting bots across a change FROM -> TO; one fewer
 * starting lets the queue go on. */
void hive_count_starting(struct hive *hive, enum fsm_state from, enum fsm_state to)
{
    if (to == FSM_STATE_STARTING)
        hive->starting++;
    if (from == FSM_STATE_STARTING && hive->starting > 0) {
        hive->starting--;
        hive_starter_kick(hive);
    }
}

/* ---- processes: reaping and notifications ------------------------------- */

/* The home slot of PID in the pid index (Fibonacci hashing). */
static size_t hive_pid_home(const struct hive *hive, pid_t pid)
{
    return (size_t)((uint32_t)pid * 2654435761u) & (hive->pid_cap - 1);
}

/* The slot of PID in the pid index, or of the free one where it would go. */
static size_t hive_pid_slot(const struct hive *hive, pid_t pid)
{
    size_t i = hive_pid_home(hive, pid);
    while (hive->by_pid[i] && hive->by_pid[i]->pid != pid)
        i = (i + 1) & (hive->pid_cap - 1);
    return i;
}

/* Put BOT (its pid set) into the pid index, growing it at half full. */
static void hive_pid_insert(struct hive *hive, struct hive_bot *bot)
{
    if ((hive->pid_n + 1) * 2 > hive->pid_cap) {
        struct hive_bot **old = hive->by_pid;
        size_t old_cap = hive->pid_cap;
        hive->pid_cap = old_cap ? old_cap * 2 : 64;
        hive->by_pid = xcalloc(hive->pid_cap, sizeof *hive->by_pid);
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                hive->by_pid[hive_pid_slot(hive, old[i]->pid)] = old[i];
        free(old);
    }
    hive->by_pid[hive_pid_slot(hive, bot->pid)] = bot;
    hive->pid_n++;
}

/* Take PID out of the pid index, moving back the entries after it that
 * would no longer be found (linear probing leaves no holes). */
static void hive_pid_remove(struct hive *hive, pid_t pid)
{
    size_t mask = hive->pid_cap - 1, i = hive_pid_slot(hive, pid), j = i;
    if (!hive->by_pid[i])
        return;
    hive->by_pid[i] = NULL;
    hive->pid_n--;
    for (j = (j + 1) & mask; hive->by_pid[j]; j = (j + 1) & mask) {
        size_t home = hive_pid_home(hive, hive->by_pid[j]->pid);
        /* The entry at J may fill the hole at I unless its home lies
         * cyclically within (I, J]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            hive->by_pid[i] = hive->by_pid[j];
            hive->by_pid[j] = NULL;
            i = j;
        }
    }
}

void hive_pid_set(struct hive *hive, struct hive_bot *bot, pid_t pid)
{
    if (bot->pid > 0 && hive->pid_cap)
        hive_pid_remove(hive, bot->pid);
    bot->pid = pid;
    if (pid > 0)
        hive_pid_insert(hive, bot);
}

/* The bot whose worker is PID (retired ones included), or NULL. */
static struct hive_bot *hive_bot_by_pid(struct hive *hive, pid_t pid)
{
    if (!hive->pid_cap)
        return NULL;
    return hive->by_pid[hive_pid_slot(hive, pid)];
}

/* SIGCHLD: reap every exited child. Each is first looked at without being
 * reaped (WNOWAIT), so that its process group is killed while the zombie
 * still holds the group id and the id cannot have been reused. */
static void hive_sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    struct hive *hive = arg;
    (void)sig, (void)what;
    /* What a worker said before it exited (FDSTOREREMOVE=1 on its way out)
     * is queued already: act on it before on its exit, as systemd does. */
    notify_drain(hive->notify);
    for (;;) {
        siginfo_t si;
        int status;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
            return;
        struct hive_bot *bot = hive_bot_by_pid(hive, si.si_pid);
        if (bot) {
            kill(-si.si_pid, SIGKILL);              /* nothing of it is left running */
            cgtree_bot_kill(hive->cgtree, bot->id); /* nor of its tasks */
        }
        if (waitpid(si.si_pid, &status, WNOHANG) <= 0)
            return;
        if (bot)
            bot_exited(bot, status);
    }
}

/* A datagram on NOTIFY_SOCKET, acted on only when its sender is a bot's
 * current worker (notify_cb). */
static void hive_notified(void *arg, struct notify_msg *m)
{
    struct hive_bot *bot = m->pid > 0 ? hive_bot_by_pid(arg, m->pid) : NULL;
    if (bot)
        bot_notified(bot, m);
}

/* ---- the table ---------------------------------------------------------- */

/* Free the retired bots whose workers are gone. */
static void hive_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    struct hive_bot *bot, *next;
    (void)fd, (void)what;
    for (bot = TAILQ_FIRST(&hive->retired); bot; bot = next) {
        next = TAILQ_NEXT(bot, entry);
        if (!bot_settled(bot))
            continue;
        TAILQ_REMOVE(&hive->retired, bot, entry);
        log_info("%s: removed", bot->id);
        bot_free(bot);
    }
}

/* The shutdown is complete: tell the caller from a fresh loop pass. */
static void hive_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    (void)fd, (void)what;
    log_info("every bot is stopped");
    merge_close_streams(hive->merge); /* their last events are out: the streams end */
    if (hive->done)
        hive->done(hive->done_arg);
}

/* qsort/bsearch order of the id index. */
static int hive_named_order(const void *a, const void *b)
{
    return strcmp(((const struct hive_named *)a)->id, ((const struct hive_named *)b)->id);
}

/* Rebuild the id index after the table changed. */
void hive_index(struct hive *hive)
{
    free(hive->by_id);
    hive->by_id = xcalloc(hive->n_bots + 1, sizeof *hive->by_id);
    for (size_t i = 0; i < hive->n_bots; i++)
        hive->by_id[i] = (struct hive_named){hive->bots[i]->id, hive->bots[i]};
    qsort(hive->by_id, hive->n_bots, sizeof *hive->by_id, hive_named_order);
}

/* The table bot named ID, or NULL. */
struct hive_bot *hive_bot_named(const struct hive *hive, const char *id)
{
    struct hive_named key = {id, NULL}, *hit;
    if (!hive->by_id)
        return NULL;
    hit = bsearch(&key, hive->by_id, hive->n_bots, sizeof key, hive_named_order);
    return hit ? hit->bot : NULL;
}

/* Create the table and bind every port; one message naming the bot on failure. */
static int hive_bind_all(struct hive *hive, char *err, size_t errlen)
{
    const struct roster *r = hive->roster;
    char why[300];
    hive->bots = xcalloc(r->n_bots, sizeof *hive->bots);
    for (size_t i = 0; i < r->n_bots; i++)
        hive->bots[hive->n_bots++] = bot_new(hive, &r->bots[i]);
    hive_index(hive);
    for (size_t i = 0; i < hive->n_bots; i++) {
        if (bot_bind(hive->bots[i], why, sizeof why) == 0)
            continue;
        if (errno == EADDRINUSE)
            snprintf(err, errlen, "bot %s: port %d is already in use (%s:%d)", r->bots[i].id,
                     r->bots[i].port, r->bots[i].bind, r->bots[i].port);
        else
            snprintf(err, errlen, "bot %s: port %d: %s", r->bots[i].id, r->bots[i].port, why);
        return -1;
    }
    return 0;
}

/* The events the hive owns. */
static void hive_events(struct hive *hive)
{
    hive->sigchld_ev = evsignal_new(hive->base, SIGCHLD, hive_sigchld_cb, hive);
    event_add(hive->sigchld_ev, NULL);
    hive->registry = registry_new(hive->base, hive_registry_entry, hive);
    registry_set_name(hive->registry, hive->roster->name);
    hive->tick_ev = event_new(hive->base, -1, EV_PERSIST, hive_tick_cb, hive);
    struct timeval tick = {HIVE_TICK_MS / 1000, HIVE_TICK_MS % 1000 * 1000};
    event_add(hive->tick_ev, &tick);
    hive->tick_mono_ms = util_mono_ms();
    hive->sigcont_ev = evsignal_new(hive->base, SIGCONT, hive_sigcont_cb, hive);
    event_add(hive->sigcont_ev, NULL);
    hive->sweep_ev = evtimer_new(hive->base, hive_sweep_cb, hive);
    hive->done_ev = evtimer_new(hive->base, hive_done_cb, hive);
    hive->starter_ev = evtimer_new(hive->base, hive_starter_cb, hive);
}

/* The hive's cgroups, or the warning that says what contains the bots'
 * processes instead. */
static void hive_cgroups(struct hive *hive)
{
    char desc[1024];
    hive->cgtree = cgtree_open(hive->roster->work_dir, desc, sizeof desc);
    if (hive->cgtree)
        log_info("bot processes: %s", desc);
    else
        log_warn("bot processes: %s; fallback: each worker is a child subreaper and ends "
                 "its tasks' processes itself (and what a killed worker left, at its next start)",
                 desc);
}

/* The hive's event stream (before the bots: remote ones feed it). */
static int hive_merge_open(struct hive *hive)
{
    char *events = xasprintf("%s/.deia/hive/events.jsonl", hive->roster->work_dir);
    hive->merge = merge_new(hive->base, events);
    free(events);
    return 0;
}

/* Bind every port and build the table; NULL with one message (exit 78). */
struct hive *hive_new(struct event_base *base, struct roster *roster, bool foreground, char *err,
                      size_t errlen)
{
    struct hive *hive = xcalloc(1, sizeof *hive);
    hive->base = base;
    hive->roster = roster;
    TAILQ_INIT(&hive->retired);
    TAILQ_INIT(&hive->pending);
    hive_events(hive);
    hive->http = httpclient_new(base, NULL);
    if (foreground)
        hive->echo = logcap_echo_new(base, STDOUT_FILENO);
    hive->worker_path = child_worker_path(err, errlen);
    if (!hive->worker_path || hive_paths(hive, err, errlen) < 0 ||
        !(hive->notify = notify_new(base, hive_notified, hive, err, errlen)) ||
        hive_merge_open(hive) < 0 || hive_bind_all(hive, err, errlen) < 0) {
        hive_free(hive);
        return NULL;
    }
    hive_cgroups(hive);
    return hive;
}

struct merge *hive_merge(const struct hive *hive)
{
    return hive->merge;
}

/* Free an event if there is one. */
static void hive_event_free(struct event *ev)
{
    if (ev)
        event_free(ev);
}

/* Release everything; workers still alive are killed with their groups. */
void hive_free(struct hive *hive)
{
    struct hive_bot *bot;
    if (!hive)
        return;
    for (size_t i = 0; i < hive->n_bots; i++)
        bot_free(hive->bots[i]);
    while ((bot = TAILQ_FIRST(&hive->retired))) {
        TAILQ_REMOVE(&hive->retired, bot, entry);
        bot_free(bot);
    }
    hive->n_bots = 0;
    httpclient_free(hive->http);
    merge_free(hive->merge);
    cgtree_free(hive->cgtree);
    if (hive->started)
        registry_write(hive->registry); /* no bot left: the hive is down */
    free(hive->bots);
    free(hive->by_id);
    free(hive->by_pid);
    hive_event_free(hive->starter_ev);
    hive_event_free(hive->sigchld_ev);
    hive_event_free(hive->tick_ev);
    hive_event_free(hive->sigcont_ev);
    registry_free(hive->registry);
    hive_event_free(hive->sweep_ev);
    hive_event_free(hive->done_ev);
    notify_free(hive->notify);
    logcap_echo_free(hive->echo);
    roster_free(hive->roster);
    free(hive->worker_path);
    free(hive->logs_dir);
    free(hive);
}

/* Make room for an inotify instance per bot that watches its file queue. */
void hive_watch_room(struct hive *hive)
{
    size_t watching = 0;
    for (size_t i = 0; i < hive->n_bots; i++)
        watching += !hive->bots[i]->remote && strcmp(hive->bots[i]->def->mode, "websocket-only");
    watchlimit_ensure(WATCHLIMIT_PROC, watching, watching ? watchlimit_in_use("/proc") : 0);
}

/* Start every autostart bot (a slice per loop pass, each after its
 * dependencies); READY once they all run. */
void hive_start_all(struct hive *hive)
{
    size_t manual = 0;
    hive->started = true;
    hive_registry_changed(hive);
    hive_watch_room(hive);
    for (size_t i = 0; i < hive->n_bots; i++) {
        struct hive_bot *bot = hive->bots[i];
        if (!bot->def->autostart) {
            manual++;
            continue;
        }
        if (bot->remote) { /* up or not, it is not ours to wait for */
            hive_bot_want_start(bot);
            continue;
        }
        bot->counts_for_ready = true;
        hive->ready_left++;
        hive_bot_want_start(bot);
    }
    if (manual)
        log_info("%zu bot(s) with autostart: false stay stopped until `hive start`", manual);
    hive_ready_check(hive);
}

/* Call READY (once) when every autostart bot has run. */
void hive_set_ready_cb(struct hive *hive, void (*ready)(void *arg), void *arg)
{
    hive->ready = ready;
    hive->ready_arg = arg;
}

/* The roster in force (the latest one reloaded). */
const struct roster *hive_roster(const struct hive *hive)
{
    return hive->roster;
}

/* Which roster hive_roster() is: changes at every reload. */
unsigned hive_roster_gen(const struct hive *hive)
{
    return hive->roster_gen;
}

/* Bots in the table. */
size_t hive_bot_count(const struct hive *hive)
{
    return hive->n_bots;
}

/* What the front door may know of a remote BOT. */
static void hive_bot_info_remote(const struct hive_bot *bot, struct hive_bot_info *out)
{
    out->state = remote_state(bot->remote);
    out->running = remote_running(bot->remote) && *remote_address(bot->remote);
    out->uptime_seconds = remote_uptime(bot->remote);
    out->reason = bot->wanted && bot->waiting[0] ? bot->waiting : remote_reason(bot->remote);
    out->bind = remote_address(bot->remote);
    out->proxy_addr = out->bind;
    out->port = remote_port(bot->remote);
    out->proxy_socket = NULL; /* TLS or not, it is reached at its address */
    out->tls = remote_tls(bot->remote);
    out->name = remote_host(bot->remote);
    out->url = bot->def->remote.url;
    out->token = remote_token(bot->remote);
    out->watch = true;
    out->watch_reason = "";
}

/* The last reported samples of FAMILY of the I-th bot when it is remote. */
void hive_bot_remote_metrics(const struct hive *hive, size_t i, const char *family,
                             struct util_buf *b)
{
    if (i < hive->n_bots && hive->bots[i]->remote)
        remote_metrics(hive->bots[i]->remote, family, b);
}

/* What the front door may know of BOT. */
static void hive_bot_info_fill(const struct hive_bot *bot, struct hive_bot_info *out)
{
    const struct fsm_bot *f = &bot->fsm;
    int64_t now = util_mono_ms();
    memset(out, 0, sizeof *out);
    out->id = bot->id;
    out->state = fsm_state_name(f->state);
    out->running = f->state == FSM_STATE_RUNNING;
    out->pid = bot->pid;
    out->port = bot->def->port;
    out->bind = bot->def->bind;
    out->proxy_addr = bot->bound_addr[0] ? bot->bound_addr : bot->def->bind;
    out->proxy_socket = bot->proxy_name;
    out->restarts = f->restarts;
    out->uptime_seconds = out->running ? (double)(now - f->since_ms) / 1000.0 : 0;
    out->reason = bot->wanted && bot->waiting[0] ? bot->waiting : f->reason;
    out->watch = !(bot->pid > 0 && bot->nowatch[0]);
    out->watch_reason = out->watch ? "" : bot->nowatch;
    if (!out->reason[0] && !out->watch)
        out->reason = bot->nowatch;
    out->has_exit = f->last_exit.valid;
    out->exit_code = f->last_exit.code;
    out->exit_signal = f->last_exit.signal;
    if (f->last_exit.valid)
        out->exit_at_wall_ns = util_wall_ns() - (now - f->last_exit.at_ms) * 1000000;
    if (bot->remote)
        hive_bot_info_remote(bot, out);
}

/* Info of the I-th bot in roster order. */
bool hive_bot_at(const struct hive *hive, size_t i, struct hive_bot_info *out)
{
    if (i >= hive->n_bots)
        return false;
    hive_bot_info_fill(hive->bots[i], out);
    return true;
}

/* Info of bot ID. */
bool hive_bot_find(const struct hive *hive, const char *id, struct hive_bot_info *out)
{
    const struct hive_bot *bot = hive_bot_named(hive, id);
    if (!bot)
        return false;
    hive_bot_info_fill(bot, out);
    return true;
}

/* A user request: start, stop or restart one bot. */
int hive_bot_control(struct hive *hive, const char *id, const char *action)
{
    struct hive_bot *bot = hive_bot_named(hive, id);
    enum fsm_event_type type;
    if (!bot)
        return -ENOENT;
    if (strcmp(action, "start") == 0)
        type = FSM_EV_START;
    else if (strcmp(action, "stop") == 0)
        type = FSM_EV_STOP;
    else if (strcmp(action, "restart") == 0)
        type = FSM_EV_RESTART;
    else
        return -EINVAL;
    if (hive->shutting_down && type != FSM_EV_STOP)
        return -EINVAL;
    log_info("%s: %s requested", id, action);
    if (type == FSM_EV_START) {
        hive_bot_want_start(bot);
        return 0;
    }
    hive_bot_unwant(bot);
    bot_feed(bot, type);
    return 0;
}

/* ---- the table's changes (reload.c drives them) ---------------------- */

/* Take BOT out of the table: stop it, free it once its worker is gone. */
void hive_bot_retire(struct hive *hive, struct hive_bot *bot)
{
    bot->retired = true;
    bot->def = NULL;
    hive_bot_unwant(bot);
    bot_standin_drop(bot);
    if (bot->listen_fd >= 0) /* the worker keeps its own copy while it stops */
        close(bot->listen_fd);
    bot->listen_fd = -1;
    bot_proxy_close(bot);
    TAILQ_INSERT_TAIL(&hive->retired, bot, entry);
    log_info("%s: removed from the roster; stopping", bot->id);
    bot_feed(bot, FSM_EV_STOP);
}

/* A retired bot named ID back in the table (removed, then added again before
 * its worker was gone), or NULL. */
struct hive_bot *hive_bot_unretire(struct hive *hive, const char *id)
{
    struct hive_bot *bot;
    TAILQ_FOREACH(bot, &hive->retired, entry)
    if (strcmp(bot->id, id) == 0) {
        TAILQ_REMOVE(&hive->retired, bot, entry);
        bot->retired = false;
        return bot;
    }
    return NULL;
}

/* Re-read the roster file and apply the difference (reload.c). */
int hive_reload(struct hive *hive, char *err, size_t errlen)
{
    return reload_roster(hive, err, errlen);
}

/* ---- shutdown ----------------------------------------------------------- */

/* Stop every bot at once; DONE runs once all are stopped and reaped. */
void hive_shutdown(struct hive *hive, void (*done)(void *arg), void *arg)
{
    struct hive_bot *bot;
    hive->done = done;
    hive->done_arg = arg;
    if (!hive->shutting_down) {
        hive->shutting_down = true;
        hive->settled_upto = 0;
        log_info("stopping %zu bot(s)", hive->n_bots);
        while (!TAILQ_EMPTY(&hive->pending))
            hive_bot_unwant(TAILQ_FIRST(&hive->pending));
        for (size_t i = 0; i < hive->n_bots; i++)
            bot_feed(hive->bots[i], FSM_EV_STOP);
        TAILQ_FOREACH(bot, &hive->retired, entry)
        bot_feed(bot, FSM_EV_STOP);
    }
    if (hive->n_bots == 0 && TAILQ_EMPTY(&hive->retired) && !hive->done_fired) {
        static const struct timeval now = {0, 0};
        hive->done_fired = true;
        evtimer_add(hive->done_ev, &now);
    }
}

/* Cut the stop timeouts short: SIGKILL every worker still stopping. */
void hive_shutdown_now(struct hive *hive)
{
    struct hive_bot *bot;
    if (!hive->shutting_down)
        return;
    log_warn("not waiting for the stop timeout: SIGKILL to every worker still running");
    for (size_t i = 0; i < hive->n_bots; i++)
        bot_feed(hive->bots[i], FSM_EV_STOP_TIMEOUT);
    TAILQ_FOREACH(bot, &hive->retired, entry)
    bot_feed(bot, FSM_EV_STOP_TIMEOUT);
}

/* SIGUSR1: every bot's log file is opened again at its next line. */
void hive_reopen_logs(struct hive *hive)
{
    struct hive_bot *bot;
    for (size_t i = 0; i < hive->n_bots; i++)
        logcap_reopen(hive->bots[i]->logcap);
    TAILQ_FOREACH(bot, &hive->retired, entry)
    logcap_reopen(bot->logcap);
}

/* The folder of the bots' logs (and the supervisor's own, hive.log). */
const char *hive_logs_dir(const struct hive *hive)
{
    return hive->logs_dir;
}
