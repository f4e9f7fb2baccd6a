/*
 * hive: the supervisor's table of bots and the executor of their state
 * machines. fsm.c decides; this file only carries out what it returns
 * (timers, signals, spawning) and turns the outside world into its events:
 * SIGCHLD into EXITED, NOTIFY_SOCKET datagrams into READY and the watchdog,
 * timers into timeouts, user requests into START/STOP/RESTART.
 *
 * Ownership: a hive owns its roster, its bots, the notify socket, the SIGCHLD
 * event and the shared echo. A bot owns its fsm_bot, its five timers and its
 * logcap, all created in hive_bot_new and released only in hive_bot_free; its
 * listening socket and proxy socket (below), made when it is first bound; and
 * its stored descriptor (below). A bot removed by a reload
 * is "retired": it leaves the table at once (the front door no longer sees
 * it) and is freed on a later loop pass, once its worker has been reaped,
 * never from inside its own callbacks.
 *
 * The fd store (systemd's FDSTORE=1): a worker hands us its inotify instance
 * and we pass it back to its replacement after its sockets (fd 5, "inotify"
 * in LISTEN_FDNAMES=listen:proxy:inotify). Our reference is what keeps a
 * crash cheap: the last close of an inotify instance with watches waits for
 * the kernel to tear them down (milliseconds), and with ours left the dying
 * worker's exit only drops a reference. So it is kept across crash restarts,
 * dropped when a stop on purpose begins (the worker still holds it then and
 * pays the teardown in its own exit), and dropped once a bot that will not
 * restart is gone.
 *
 * The proxy socket: besides its TCP port, every worker gets a private Unix
 * listening socket (abstract, named by the kernel) as fd 4 ("proxy" in
 * LISTEN_FDNAMES), and our proxy reaches the worker through it: a request over
 * a Unix socket costs both sides less kernel time than over loopback TCP (no
 * TCP/IP stack, no softirq). Like the port it outlives crashes, so a request
 * sent while the worker restarts waits in its backlog. Without one (it could
 * not be made) the proxy uses the port.
 *
 * Every state change is logged on one line and rewrites
 * .deia/hive/registry.json; otherwise it is rewritten once a minute while a
 * worker runs, to move the heartbeat times on. The file is shared with DEIA's
 * tools: entries we did not write are kept as they are.
 */
#include "supervisor/hive.h"

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

#include <jansson.h>

#include "common/chan.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/util.h"
#include "supervisor/cgtree.h"
#include "supervisor/child.h"
#include "supervisor/fsm.h"
#include "supervisor/logcap.h"
#include "supervisor/standin.h"

#define HIVE_REGISTRY_REFRESH_S 60 /* DEIA calls an entry stale after 300 s */
#define HIVE_REGISTRY_READ_MAX (16 * 1024 * 1024)
#define HIVE_REGISTRY_OWNER "hive" /* metadata.managed_by of our entries */
#define HIVE_TICK_MS 1000          /* the loop's own heartbeat (hive_loop_gap) */
#define HIVE_GAP_MS 1500           /* a tick this late: we were not running */
#define HIVE_NOTIFY_MAX 4096
#define HIVE_NOTIFY_BATCH 64       /* datagrams read per wakeup, so others get a turn */
#define HIVE_NOTIFY_FDS 8          /* descriptors received with one datagram; more are dropped */
#define HIVE_STORE_NAME "inotify"  /* the one descriptor a worker may store */
#define HIVE_PROXY_FD_NAME "proxy" /* the private socket's LISTEN_FDNAMES name */

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
    int proxy_fd;                         /* the private socket for our proxy; -1: none */
    char proxy_name[UTIL_LOCAL_NAME_MAX]; /* its abstract name; "" when none */
    pid_t pid;                            /* the worker (and its group), 0 when none */
    int stored_fd;           /* its inotify instance, kept across crashes (fd store); -1 */
    struct standin *standin; /* answers on the sockets while stopped or fatal */
    struct fsm_bot fsm;
    struct hive_timer timers[HIVE_TIMER_COUNT];
    struct logcap *logcap;
    int64_t registered_wall_ns; /* when the current worker was started */
    int64_t heartbeat_wall_ns;  /* its last READY=1 or WATCHDOG=1 */
    long long oom_base;         /* OOM kills in its memory cgroup when it started */
    struct event *oom_ev;       /* cgroup v1: the OOM killer met the bot */
    bool retired;
    TAILQ_ENTRY(hive_bot) entry; /* in hive->retired */
};

struct hive {
    struct event_base *base;
    struct roster *roster;
    char *worker_path;
    char *logs_dir;
    char *registry_path;
    int notify_fd;
    char notify_name[80]; /* "@hive-notify-PID-RANDOM", abstract */
    struct event *notify_ev, *sigchld_ev, *registry_ev, *refresh_ev, *sweep_ev, *done_ev;
    struct event *tick_ev, *sigcont_ev;
    int64_t tick_mono_ms;     /* when the tick last ran */
    json_t *registry_foreign; /* the other tools' entries, as last read */
    bool registry_warned;
    struct logcap_echo *echo;
    struct hive_bot **bots; /* roster order */
    size_t n_bots;
    struct cgtree *cgtree; /* a cgroup per bot; NULL: workers contain their tasks alone */
    struct merge *merge;   /* the hive's event stream, fed by the workers' channels */
    TAILQ_HEAD(, hive_bot) retired;
    bool started, shutting_down, done_fired;
    void (*done)(void *arg);
    void *done_arg;
};

static void hive_bot_feed(struct hive_bot *bot, enum fsm_event_type type);
static void hive_notify_cb(evutil_socket_t fd, short what, void *arg);
static void hive_bot_step(struct hive_bot *bot, const struct fsm_event *ev, const char *why);

/* ---- paths, registry ---------------------------------------------------- */

/* Derive the paths under the roster's work dir and create the logs folder. */
static int hive_paths(struct hive *hive, char *err, size_t errlen)
{
    free(hive->logs_dir);
    free(hive->registry_path);
    hive->logs_dir = xasprintf("%s/.deia/hive/logs", hive->roster->work_dir);
    hive->registry_path = xasprintf("%s/.deia/hive/registry.json", hive->roster->work_dir);
    if (util_mkdirs(hive->logs_dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", hive->logs_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* A time as DEIA writes it (Python's datetime.now().isoformat(): local
 * time, no zone, microseconds), or null when never. DEIA compares these
 * with its own naive local now; a zone would make every entry stale. */
static json_t *hive_json_time(int64_t wall_ns)
{
    char ts[64];
    struct tm tm;
    if (wall_ns == 0)
        return json_null();
    time_t sec = (time_t)(wall_ns / 1000000000);
    localtime_r(&sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%06ld", (long)(wall_ns % 1000000000 / 1000));
    return json_string(ts);
}

/* One bot's registry entry (SPEC §2, plus restarts and reason); metadata
 * marks it as ours, so the next write knows which entries it may replace. */
static json_t *hive_registry_bot(const struct hive_bot *bot)
{
    const struct hive *hive = bot->hive;
    bool live = bot->pid > 0;
    /* A bot without a watchdog says nothing after READY=1: while its worker
     * is alive, our own look at it is the heartbeat. */
    int64_t beat =
        live && !(bot->def && bot->def->watchdog > 0) ? util_wall_ns() : bot->heartbeat_wall_ns;
    json_t *meta = json_pack("{s:s, s:s, s:i}", "managed_by", HIVE_REGISTRY_OWNER, "hive",
                             hive->roster->name, "supervisor_pid", (int)getpid());
    return json_pack("{s:i, s:o, s:s, s:s, s:o, s:o, s:o, s:i, s:s}", "port", bot->def->port, "pid",
                     live ? json_integer(bot->pid) : json_null(), "repo", hive->roster->name,
                     "status", fsm_state_name(bot->fsm.state), "registered_at",
                     hive_json_time(bot->registered_wall_ns), "last_heartbeat",
                     hive_json_time(beat), "metadata", meta, "restarts", (int)bot->fsm.restarts,
                     "reason", bot->fsm.reason);
}

/* True when ENTRY was written by a hive (this one or an earlier run in the
 * same work dir: the work dir's lock allows one hive at a time). */
static bool hive_registry_is_ours(json_t *entry)
{
    json_t *owner = json_object_get(json_object_get(entry, "metadata"), "managed_by");
    return json_is_string(owner) && strcmp(json_string_value(owner), HIVE_REGISTRY_OWNER) == 0;
}

/* The registry file as it is now, with only its foreign entries left in
 * "bots". A file that cannot be read or parsed (DEIA writes it in place, so
 * we may catch it half-written) gives the foreign entries we saw last time:
 * an entry is never dropped because of a torn read. */
static json_t *hive_registry_read(struct hive *hive)
{
    size_t len;
    char *text = util_read_file(hive->registry_path, HIVE_REGISTRY_READ_MAX, &len);
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    bool missing = !text && errno == ENOENT;
    free(text);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "bots"))) {
        json_decref(root);
        root = json_object();
        json_object_set_new(root, "bots",
                            missing || !hive->registry_foreign
                                ? json_object()
                                : json_deep_copy(hive->registry_foreign));
        return root;
    }
    json_t *bots = json_object_get(root, "bots"), *entry;
    const char *id;
    void *tmp;
    json_object_foreach_safe(bots, tmp, id, entry)
    {
        if (hive_registry_is_ours(entry))
            json_object_del(bots, id);
    }
    json_decref(hive->registry_foreign);
    hive->registry_foreign = json_deep_copy(bots);
    return root;
}

/* Rewrite .deia/hive/registry.json by atomic rename: the foreign entries as
 * they are, ours replaced (and those of bots we no longer have dropped). */
static void hive_registry_write(struct hive *hive)
{
    json_t *root = hive_registry_read(hive);
    json_t *bots = json_object_get(root, "bots");
    for (size_t i = 0; i < hive->n_bots; i++)
        json_object_set_new(bots, hive->bots[i]->id, hive_registry_bot(hive->bots[i]));
    json_object_set_new(root, "updated_at", hive_json_time(util_wall_ns()));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    memcpy(text + len, "\n", 2);
    /* Atomic but not fsynced: the registry is a snapshot of live state, stale
     * after a crash whatever the disk kept, and a flush would stall the loop
     * (proxy, READY handling, API) at every state change. */
    if (util_replace_file(hive->registry_path, text, len + 1, false) < 0 &&
        !hive->registry_warned) {
        log_warn("cannot write %s: %s", hive->registry_path, strerror(errno));
        hive->registry_warned = true;
    }
    free(text);
    json_decref(root);
}

/* The slow refresh: heartbeat times move on while nothing else changes, so
 * that DEIA's stale check (5 minutes) keeps seeing live bots. */
static void hive_registry_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    (void)fd, (void)what;
    for (size_t i = 0; i < hive->n_bots; i++)
        if (hive->bots[i]->pid > 0) {
            hive_registry_write(hive);
            return;
        }
}

/* A state change: rewrite the registry at the end of this loop pass, once
 * for all the changes of the pass (a hive starting is one write, not one per
 * bot). */
static void hive_registry_changed(struct hive *hive)
{
    static const struct timeval now = {0, 0};
    evtimer_add(hive->registry_ev, &now);
}

/* The deferred write. */
static void hive_registry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    hive_registry_write(arg);
}

/* ---- the worker's command line ----------------------------------------- */

/* A growing NULL-terminated argv. */
struct hive_argv {
    char **v;
    size_t n;
};

/* Append S (taken over). */
static void hive_argv_add(struct hive_argv *a, char *s)
{
    a->v = xrealloc(a->v, (a->n + 2) * sizeof *a->v);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

/* Append "NAME VALUE" (VALUE taken over). */
static void hive_argv_opt(struct hive_argv *a, const char *name, char *value)
{
    hive_argv_add(a, xstrdup(name));
    hive_argv_add(a, value);
}

/* Append "NAME V" for every V of the NULL-terminated LIST. */
static void hive_argv_each(struct hive_argv *a, const char *name, char *const *list)
{
    for (; list && *list; list++)
        hive_argv_opt(a, name, xstrdup(*list));
}

/* Free an argv built here. */
static void hive_argv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

/* The roster's limits as hive-worker flags. */
static void hive_argv_limits(struct hive_argv *a, const struct roster_limits *l)
{
    hive_argv_opt(a, "--max-header", xasprintf("%zu", l->max_header_bytes));
    hive_argv_opt(a, "--max-body", xasprintf("%zu", l->max_body));
    hive_argv_opt(a, "--max-message", xasprintf("%zu", l->max_message));
    hive_argv_opt(a, "--max-connections", xasprintf("%d", l->max_connections));
    hive_argv_opt(a, "--header-timeout", xasprintf("%.3f", l->header_timeout_ms / 1000.0));
    hive_argv_opt(a, "--idle-timeout", xasprintf("%.3f", l->idle_timeout_ms / 1000.0));
}

/* hive-worker's argv for bot DEF (the flags of worker/options.c). */
static char **hive_worker_argv(const struct hive *hive, const struct roster_bot *def)
{
    struct hive_argv a = {NULL, 0};
    double grace = def->stop_timeout - 1.0 < 0.5 ? 0.5 : def->stop_timeout - 1.0;
    hive_argv_add(&a, xstrdup(hive->worker_path));
    hive_argv_add(&a, xstrdup(def->id));
    hive_argv_opt(&a, "--work-dir", xstrdup(hive->roster->work_dir));
    hive_argv_opt(&a, "--mode", xstrdup(def->mode));
    hive_argv_opt(&a, "--bind", xstrdup(def->bind));
    hive_argv_opt(&a, "--cooldown", xasprintf("%.3f", def->cooldown));
    hive_argv_opt(&a, "--timeout", xasprintf("%.3f", def->timeout));
    hive_argv_opt(&a, "--queue-max", xasprintf("%d", def->queue_max));
    hive_argv_opt(&a, "--stop-grace", xasprintf("%.3f", grace));
    hive_argv_opt(&a, "--adapter-type", xstrdup(def->adapter.type));
    hive_argv_opt(&a, "--mock-delay-ms", xasprintf("%d", def->adapter.delay_ms));
    hive_argv_opt(&a, "--output-cap", xasprintf("%ld", def->adapter.output_cap));
    hive_argv_each(&a, "--env", def->adapter.env);
    hive_argv_each(&a, "--env-remove", def->adapter.env_remove);
    hive_argv_limits(&a, &hive->roster->limits);
    hive_argv_each(&a, "--allowed-origin", def->allowed_origins);
    hive_argv_each(&a, "--server-name", def->server_names);
    if (def->exec.cwd)
        hive_argv_opt(&a, "--cwd", xstrdup(def->exec.cwd));
    if (def->adapter.command[0]) {
        hive_argv_add(&a, xstrdup("--"));
        for (char **p = def->adapter.command; *p; p++)
            hive_argv_add(&a, xstrdup(*p));
    }
    return a.v;
}

/* ---- one bot: sockets, timers, processes -------------------------------- */

/* The FSM policy of roster bot DEF. */
static void hive_policy(const struct roster_bot *def, struct fsm_policy *p)
{
    int restart = fsm_restart_parse(def->restart.policy);
    fsm_policy_default(p);
    p->restart = restart < 0 ? FSM_RESTART_ALWAYS : (enum fsm_restart)restart;
    p->max_restarts = def->restart.max_restarts;
    p->window_ms = (int64_t)(def->restart.window * 1000);
    p->start_timeout_ms = (int64_t)(def->start_timeout * 1000);
    p->stop_timeout_ms = (int64_t)(def->stop_timeout * 1000);
}

/* Give BOT the policy of its (new) definition, keeping its history. */
static void hive_bot_set_policy(struct hive_bot *bot)
{
    struct fsm_policy p;
    struct fsm_bot clamped;
    hive_policy(bot->def, &p);
    fsm_bot_init(&clamped, &p); /* for its clamping of the values */
    bot->fsm.policy = clamped.policy;
}

/* Bind BOT's port unless it is bound; -1 with the reason in WHY. */
static int hive_bot_bind(struct hive_bot *bot, char *why, size_t cap)
{
    char err[256];
    if (bot->listen_fd >= 0)
        return 0;
    bot->listen_fd = util_listen_tcp(bot->def->bind, bot->def->port, err, sizeof err);
    if (bot->listen_fd >= 0) {
        if (bot->proxy_fd < 0 && (bot->proxy_fd = util_listen_local(bot->proxy_name)) < 0)
            log_warn("%s: no private socket for the proxy (%s); it will use port %d", bot->id,
                     strerror(errno), bot->def->port);
        free(bot->bound_bind);
        bot->bound_bind = xstrdup(bot->def->bind);
        bot->bound_port = bot->def->port;
        return 0;
    }
    int saved = errno;
    if (saved == EADDRINUSE)
        snprintf(why, cap, "port %d in use", bot->def->port);
    else
        snprintf(why, cap, "%s", err);
    errno = saved;
    return -1;
}

static bool hive_loop_gap(struct hive *hive);

/* Fire a timer: feed its event. A worker is not judged (watchdog, start
 * timeout) on a period during which we ourselves were not running. */
static void hive_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive_timer *t = arg;
    (void)fd, (void)what;
    if ((t->fires == FSM_EV_WATCHDOG_TIMEOUT || t->fires == FSM_EV_START_TIMEOUT) &&
        hive_loop_gap(t->bot->hive))
        return;
    hive_bot_feed(t->bot, t->fires);
}

/* Arm timer KIND of BOT for MS milliseconds. */
static void hive_bot_arm(struct hive_bot *bot, enum hive_timer_kind kind, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    evtimer_add(bot->timers[kind].ev, &tv);
}

/* Cancel every timer of BOT. */
static void hive_bot_cancel_timers(struct hive_bot *bot)
{
    for (int i = 0; i < HIVE_TIMER_COUNT; i++)
        evtimer_del(bot->timers[i].ev);
}

/* (Re)arm the watchdog of a running BOT, when it has one. */
static void hive_bot_arm_watchdog(struct hive_bot *bot)
{
    if (bot->def && bot->def->watchdog > 0 && bot->fsm.state == FSM_STATE_RUNNING)
        hive_bot_arm(bot, HIVE_TIMER_WATCHDOG, (int64_t)(bot->def->watchdog * 1000));
}

/* A fresh period for every worker being judged: the watchdog of the
 * running ones, the start timeout of the starting ones. */
static void hive_fresh_periods(struct hive *hive)
{
    for (size_t i = 0; i < hive->n_bots; i++) {
        struct hive_bot *bot = hive->bots[i];
        if (bot->fsm.state == FSM_STATE_STARTING)
            hive_bot_arm(bot, HIVE_TIMER_START, bot->fsm.policy.start_timeout_ms);
        else
            hive_bot_arm_watchdog(bot);
    }
}

/* Were we not running for a while (SIGSTOP, Ctrl-Z, a frozen VM)? The tick
 * runs every HIVE_TICK_MS; a later one means the loop stood still, and the
 * silence of the workers meanwhile says nothing about them (their
 * notifications may have been dropped on a full socket). Then every worker
 * gets a fresh period and true is returned. */
static bool hive_loop_gap(struct hive *hive)
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

/* Let go of BOT's stored descriptor. The kernel tears the instance down at
 * its last close, so callers choose when that may be ours. */
static void hive_bot_store_drop(struct hive_bot *bot)
{
    if (bot->stored_fd < 0)
        return;
    close(bot->stored_fd);
    bot->stored_fd = -1;
    log_debug("%s: fd store emptied", bot->id);
}

/* Close BOT's private proxy socket (a worker keeps its own copy). */
static void hive_bot_proxy_close(struct hive_bot *bot)
{
    if (bot->proxy_fd < 0)
        return;
    close(bot->proxy_fd);
    bot->proxy_fd = -1;
    bot->proxy_name[0] = '\0';
}

/* Send SIG to the worker's whole process group. */
static void hive_bot_kill(struct hive_bot *bot, int sig)
{
    if (bot->pid <= 0)
        return;
    if (sig == SIGKILL)
        log_warn("%s: SIGKILL to pid %d (%s)", bot->id, (int)bot->pid,
                 bot->fsm.state == FSM_STATE_STOPPING ? "still running after SIGTERM"
                                                      : bot->fsm.reason);
    if (kill(-bot->pid, sig) < 0 && errno == ESRCH)
        kill(bot->pid, sig);
}

/* True when another bot (a retired one, or one that moved by a reload) still
 * holds PORT, in the supervisor or in a worker that is stopping. */
static bool hive_port_held(const struct hive *hive, const struct hive_bot *self, int port)
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

/* Stop answering on BOT's sockets (before a worker takes them, or they close). */
static void hive_bot_standin_drop(struct hive_bot *bot)
{
    standin_free(bot->standin);
    bot->standin = NULL;
}

/* While BOT is stopped or fatal with no worker, the supervisor answers on
 * its sockets itself (503, SPEC §6.2); otherwise they are the worker's, or
 * the kernel queues connections until one is ready. */
static void hive_bot_standin_sync(struct hive_bot *bot)
{
    enum fsm_state s = bot->fsm.state;
    bool fatal = s == FSM_STATE_FATAL;
    if (!bot->def || bot->retired || bot->hive->shutting_down || bot->listen_fd < 0 ||
        bot->pid != 0 || (s != FSM_STATE_STOPPED && !fatal)) {
        hive_bot_standin_drop(bot);
        return;
    }
    if (!bot->standin)
        bot->standin = standin_new(bot->hive->base, bot->def, &bot->hive->roster->limits,
                                   bot->listen_fd, bot->proxy_fd);
    if (bot->standin)
        standin_set_state(bot->standin, fsm_state_name(s), fatal ? bot->fsm.reason : NULL);
}

/* BOT's cgroup for its next worker (caller frees), or NULL (logged). */
static char *hive_bot_cgroup(struct hive_bot *bot, char *why, size_t cap)
{
    char *dir = cgtree_bot_dir(bot->hive->cgtree, bot->id, why, cap);
    if (!dir && bot->hive->cgtree)
        log_warn("%s: %s; its worker runs without a cgroup of its own", bot->id, why);
    return dir;
}

/* cgroup v1 OOM: the kernel killed one process of BOT; end the worker too,
 * so the bot restarts whole, as cgroup v2's memory.oom.group does. */
static void hive_bot_oom_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive_bot *bot = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) == (ssize_t)sizeof n && bot->pid > 0) {
        log_warn("%s: out of memory (memory_max); ending its worker", bot->id);
        kill(bot->pid, SIGKILL);
    }
}

/* Drop BOT's OOM watch. */
static void hive_bot_oom_drop(struct hive_bot *bot)
{
    if (!bot->oom_ev)
        return;
    close(event_get_fd(bot->oom_ev));
    event_free(bot->oom_ev);
    bot->oom_ev = NULL;
}

/* What BOT's worker runs with besides its argv: the bot's environment
 * (env_file's, then env's, into ENV), its user, and its cgroup limits (the
 * v1 groups into SPEC). -1 with WHY when a limit cannot be set. */
static int hive_bot_exec_setup(struct hive_bot *bot, struct child_spec *spec, struct hive_argv *env,
                               char *why, size_t cap)
{
    const struct roster_bot *def = bot->def;
    const char *wd = bot->hive->roster->work_dir;
    struct cgtree_limits lim = {def->rlimits.memory_max, def->rlimits.cpu_max,
                                def->rlimits.tasks_max};
    char *v1[CGTREE_V1_MAX + 1];
    for (char *const *e = def->exec.file_env; *e; e++)
        hive_argv_add(env, xstrdup(*e));
    for (char *const *e = def->exec.env; *e; e++) /* env wins over env_file, as in compose */
        hive_argv_add(env, xstrdup(*e));
    spec->env = env->v;
    spec->user = def->exec.user;
    spec->group = def->exec.group;
    if (def->exec.user &&
        child_hand_over_layout(wd, def->id, def->exec.user, def->exec.group, why, cap) < 0)
        return -1;
    if (cgtree_bot_limit(bot->hive->cgtree, wd, def->id, &lim, v1, why, cap) < 0)
        return -1;
    for (size_t i = 0; i <= CGTREE_V1_MAX; i++)
        spec->cgroup_v1_dirs[i] = v1[i];
    bot->oom_base = cgtree_bot_oom_kills(bot->hive->cgtree, wd, def->id);
    hive_bot_oom_drop(bot);
    int efd = v1[0] && lim.memory_max > 0 ? cgtree_bot_oom_watch(wd, def->id) : -1;
    if (efd >= 0) {
        bot->oom_ev = event_new(bot->hive->base, efd, EV_READ | EV_PERSIST, hive_bot_oom_cb, bot);
        event_add(bot->oom_ev, NULL);
    }
    return 0;
}

/* ---- the channel to a worker (common/chan.h, merge.h) ---------------------- */

/* A socketpair for the channel; its worker end handed down in SPEC as the
 * fd named "chan". Without one the worker runs all the same (no events up). */
static void hive_bot_chan_open(struct child_spec *spec, int chan[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) < 0) {
        log_warn("cannot make a channel for a worker: %s", strerror(errno));
        chan[0] = chan[1] = -1;
        return;
    }
    spec->fds[spec->n_fds++] = (struct child_fd){chan[1], HIVE_FD_CHAN};
}

/* After the spawn: our end goes to the merge (when the worker started). */
static void hive_bot_chan_attach(struct hive_bot *bot, int chan[2], bool started)
{
    if (chan[1] >= 0)
        close(chan[1]);
    if (chan[0] < 0)
        return;
    if (started)
        merge_attach(bot->hive->merge, bot->id, chan[0]);
    else
        close(chan[0]);
}

/* A bot_state event for BOT's current state. */
static void hive_bot_emit_state(const struct hive_bot *bot)
{
    merge_bot_state(bot->hive->merge, bot->id, fsm_state_name(bot->fsm.state), bot->pid,
                    bot->fsm.reason, bot->fsm.restarts);
}

/* Start a worker for BOT. 0, or the exit status the failure stands for with
 * the reason in WHY: 78 (permanent) for a port in use by someone else, 1 when
 * one of our own bots is still letting go of it (a reload moved ports). */
static int hive_bot_spawn(struct hive_bot *bot, char *why, size_t cap)
{
    struct hive *hive = bot->hive;
    if (hive_bot_bind(bot, why, cap) < 0) {
        if (errno != EADDRINUSE || !hive_port_held(hive, bot, bot->def->port))
            return FSM_EXIT_PERMANENT;
        snprintf(why, cap, "port %d is still held by another bot's worker", bot->def->port);
        return 1;
    }
    hive_bot_standin_drop(bot); /* the worker accepts from here on */
    char **argv = hive_worker_argv(hive, bot->def);
    struct child_spec spec = {.path = hive->worker_path,
                              .argv = argv,
                              .fds = {{bot->listen_fd, "listen"}},
                              .n_fds = 1,
                              .notify_socket = hive->notify_name,
                              .watchdog_usec = (uint64_t)(bot->def->watchdog * 1e6),
                              .token = hive->roster->token,
                              .token_env = hive->roster->token_env};
    struct hive_argv env = {NULL, 0};
    if (hive_bot_exec_setup(bot, &spec, &env, why, cap) < 0) {
        hive_argv_free(argv);
        hive_argv_free(env.v);
        return FSM_EXIT_PERMANENT;
    }
    char cg_why[256];
    char *cg = hive_bot_cgroup(bot, cg_why, sizeof cg_why);
    spec.cgroup_dir = cg;
    if (bot->proxy_fd >= 0)
        spec.fds[spec.n_fds++] = (struct child_fd){bot->proxy_fd, HIVE_PROXY_FD_NAME};
    if (bot->stored_fd >= 0)
        spec.fds[spec.n_fds++] = (struct child_fd){bot->stored_fd, HIVE_STORE_NAME};
    int chan[2] = {-1, -1};
    hive_bot_chan_open(&spec, chan);
    int out_fd;
    pid_t pid = child_spawn(&spec, &out_fd, why, cap);
    hive_argv_free(argv);
    hive_argv_free(env.v);
    for (size_t i = 0; spec.cgroup_v1_dirs[i]; i++)
        free((char *)spec.cgroup_v1_dirs[i]);
    free(cg);
    hive_bot_chan_attach(bot, chan, pid >= 0);
    if (pid < 0)
        return 1;
    bot->pid = pid;
    bot->registered_wall_ns = bot->heartbeat_wall_ns = util_wall_ns();
    logcap_attach(bot->logcap, out_fd);
    return 0;
}

/* Carry out ACT in fsm.h's order; returns the spawn's result (0 if none). */
static int hive_bot_act(struct hive_bot *bot, const struct fsm_actions *act, char *why, size_t cap)
{
    static const struct {
        unsigned flag;
        enum hive_timer_kind kind;
    } arms[] = {{FSM_ACT_ARM_START_TIMER, HIVE_TIMER_START},
                {FSM_ACT_ARM_BACKOFF_TIMER, HIVE_TIMER_BACKOFF},
                {FSM_ACT_ARM_STOP_TIMER, HIVE_TIMER_STOP},
                {FSM_ACT_ARM_HEALTHY_TIMER, HIVE_TIMER_HEALTHY}};
    int spawn = 0;
    if (act->flags & FSM_ACT_CANCEL_TIMERS)
        hive_bot_cancel_timers(bot);
    if (act->flags & FSM_ACT_KILL_TERM) {
        /* A stop on purpose: the worker still holds the stored instance, so
         * dropping ours now costs nothing here and its exit pays. */
        hive_bot_store_drop(bot);
        hive_bot_kill(bot, SIGTERM);
    }
    if (act->flags & FSM_ACT_KILL_KILL)
        hive_bot_kill(bot, SIGKILL);
    if (act->flags & FSM_ACT_SPAWN)
        spawn = hive_bot_spawn(bot, why, cap);
    for (size_t i = 0; i < sizeof arms / sizeof arms[0]; i++)
        if (act->flags & arms[i].flag)
            hive_bot_arm(bot, arms[i].kind, act->timer_ms);
    return spawn;
}

/* "exit status 0" or "killed by signal 9" for the last exit. */
static void hive_describe_exit(const struct fsm_exit *e, char *buf, size_t cap)
{
    if (!e->valid)
        snprintf(buf, cap, "never started");
    else if (e->signal)
        snprintf(buf, cap, "killed by signal %d", e->signal);
    else
        snprintf(buf, cap, "exit status %d", e->code);
}

/* Log one transition: "BOT-001: starting -> running (pid 123)". RESTARTED:
 * the step restarted a failed worker at once ("... -> starting (killed by
 * signal 9; restart 2 now, pid 124)"). */
static void hive_bot_log_transition(const struct hive_bot *bot, enum fsm_state from, bool restarted)
{
    const struct fsm_bot *f = &bot->fsm;
    char detail[300];
    enum log_level level = LOG_LEVEL_INFO;
    if (restarted) {
        snprintf(detail, sizeof detail, "%s; restart %u now, pid %d", f->reason, f->restarts,
                 (int)bot->pid);
        log_msg(LOG_LEVEL_WARN, "%s: %s -> %s (%s)", bot->id, fsm_state_name(from),
                fsm_state_name(f->state), detail);
        return;
    }
    switch (f->state) {
    case FSM_STATE_BACKOFF:
        snprintf(detail, sizeof detail, "%s; restart %u in %lld ms", f->reason, f->restarts,
                 (long long)f->backoff_delay_ms);
        level = LOG_LEVEL_WARN;
        break;
    case FSM_STATE_FATAL:
        snprintf(detail, sizeof detail, "%s", f->reason);
        level = LOG_LEVEL_ERROR;
        break;
    case FSM_STATE_STOPPED:
        if (f->reason[0])
            snprintf(detail, sizeof detail, "%s", f->reason);
        else
            hive_describe_exit(&f->last_exit, detail, sizeof detail);
        break;
    default:
        if (bot->pid > 0)
            snprintf(detail, sizeof detail, "pid %d", (int)bot->pid);
        else
            snprintf(detail, sizeof detail, "no worker");
        break;
    }
    log_msg(level, "%s: %s -> %s (%s)", bot->id, fsm_state_name(from), fsm_state_name(f->state),
            detail);
}

/* Stopped or fatal with nothing left to reap. */
static bool hive_bot_settled(const struct hive_bot *bot)
{
    return bot->pid == 0 &&
           (bot->fsm.state == FSM_STATE_STOPPED || bot->fsm.state == FSM_STATE_FATAL);
}

/* After a step: free retired bots later, finish a shutdown when all are done. */
static void hive_after_step(struct hive *hive, struct hive_bot *bot)
{
    static const struct timeval now = {0, 0};
    bool all = true;
    if (bot->retired && hive_bot_settled(bot))
        evtimer_add(hive->sweep_ev, &now);
    if (!hive->shutting_down || hive->done_fired)
        return;
    for (size_t i = 0; i < hive->n_bots && all; i++)
        all = hive_bot_settled(hive->bots[i]);
    struct hive_bot *r;
    TAILQ_FOREACH(r, &hive->retired, entry)
    all = all && hive_bot_settled(r);
    if (all) {
        hive->done_fired = true;
        evtimer_add(hive->done_ev, &now);
    }
}

/* Feed EV to BOT's FSM, do what it says, log and publish the change. WHY,
 * when set, replaces a reason the step sets. */
static void hive_bot_step(struct hive_bot *bot, const struct fsm_event *ev, const char *why)
{
    enum fsm_state from = bot->fsm.state;
    char err[300] = "";
    struct fsm_actions act = fsm_step(&bot->fsm, ev, util_mono_ms());
    if (why && act.reason)
        snprintf(bot->fsm.reason, sizeof bot->fsm.reason, "%s", why);
    int failed = hive_bot_act(bot, &act, err, sizeof err);
    /* An exit that spawned at once: a restart without a backoff state. */
    bool restarted =
        ev->type == FSM_EV_EXITED && (act.flags & FSM_ACT_SPAWN) && act.reason && !failed;
    if (bot->fsm.state != from || restarted) {
        if (bot->fsm.state == FSM_STATE_RUNNING)
            hive_bot_arm_watchdog(bot);
        hive_bot_log_transition(bot, from, restarted);
        hive_bot_emit_state(bot);
        hive_registry_changed(bot->hive);
    }
    if (failed) {
        /* As if the worker had exited with that status: the FSM decides. */
        struct fsm_event exited = {FSM_EV_EXITED, failed, 0};
        if (failed != FSM_EXIT_PERMANENT)
            log_error("%s: %s", bot->id, err);
        hive_bot_step(bot, &exited, failed == FSM_EXIT_PERMANENT ? err : NULL);
    }
    if (hive_bot_settled(bot)) /* no worker and none to come: nothing to keep */
        hive_bot_store_drop(bot);
    hive_bot_standin_sync(bot);
    hive_after_step(bot->hive, bot);
}

/* Feed an event without details. */
static void hive_bot_feed(struct hive_bot *bot, enum fsm_event_type type)
{
    struct fsm_event ev = {type, 0, 0};
    hive_bot_step(bot, &ev, NULL);
}

/* A bot for roster bot DEF, stopped, with no socket yet. */
static struct hive_bot *hive_bot_new(struct hive *hive, const struct roster_bot *def)
{
    static const enum fsm_event_type fires[HIVE_TIMER_COUNT] = {
        FSM_EV_START_TIMEOUT, FSM_EV_BACKOFF_DONE, FSM_EV_STOP_TIMEOUT, FSM_EV_HEALTHY,
        FSM_EV_WATCHDOG_TIMEOUT};
    struct hive_bot *bot = xcalloc(1, sizeof *bot);
    struct fsm_policy p;
    bot->hive = hive;
    bot->id = xstrdup(def->id);
    bot->def = def;
    bot->listen_fd = -1;
    bot->proxy_fd = -1;
    bot->stored_fd = -1;
    hive_policy(def, &p);
    fsm_bot_init(&bot->fsm, &p);
    for (int i = 0; i < HIVE_TIMER_COUNT; i++) {
        bot->timers[i] = (struct hive_timer){bot, fires[i], NULL};
        bot->timers[i].ev = evtimer_new(hive->base, hive_timer_cb, &bot->timers[i]);
    }
    char *log_path = xasprintf("%s/%s.log", hive->logs_dir, def->id);
    bot->logcap = logcap_new(hive->base, def->id, log_path, hive->echo);
    logcap_set_rotation(bot->logcap, def->log.max_bytes, def->log.backups);
    free(log_path);
    return bot;
}

/* Release BOT; a worker still alive is killed with its group and reaped. */
static void hive_bot_free(struct hive_bot *bot)
{
    if (bot->pid > 0) {
        log_warn("%s: killing pid %d (the supervisor is exiting)", bot->id, (int)bot->pid);
        kill(-bot->pid, SIGKILL);
        kill(bot->pid, SIGKILL);
        while (waitpid(bot->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    cgtree_bot_remove(bot->hive->cgtree, bot->id);
    hive_bot_oom_drop(bot);
    cgtree_bot_limits_remove(bot->hive->roster->work_dir, bot->id);
    for (int i = 0; i < HIVE_TIMER_COUNT; i++)
        event_free(bot->timers[i].ev);
    logcap_free(bot->logcap);
    hive_bot_standin_drop(bot);
    if (bot->listen_fd >= 0)
        close(bot->listen_fd);
    hive_bot_proxy_close(bot);
    hive_bot_store_drop(bot);
    free(bot->bound_bind);
    free(bot->id);
    free(bot);
}

/* ---- processes: reaping and notifications ------------------------------- */

/* The bot whose worker is PID (retired ones included), or NULL. */
static struct hive_bot *hive_bot_by_pid(struct hive *hive, pid_t pid)
{
    struct hive_bot *bot;
    for (size_t i = 0; i < hive->n_bots; i++)
        if (hive->bots[i]->pid == pid)
            return hive->bots[i];
    TAILQ_FOREACH(bot, &hive->retired, entry)
    if (bot->pid == pid)
        return bot;
    return NULL;
}

/* A worker was reaped with STATUS. */
static void hive_bot_exited(struct hive_bot *bot, int status)
{
    struct fsm_event ev = {FSM_EV_EXITED, 0, 0};
    if (WIFEXITED(status))
        ev.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        ev.signal = WTERMSIG(status);
    bot->pid = 0;
    const struct roster *r = bot->hive->roster;
    long long ooms = cgtree_bot_oom_kills(bot->hive->cgtree, r->work_dir, bot->id);
    hive_bot_oom_drop(bot);
    hive_bot_step(bot, &ev, ooms > bot->oom_base && bot->oom_base >= 0 ? "out of memory" : NULL);
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
    hive_notify_cb(hive->notify_fd, EV_READ, hive);
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
            hive_bot_exited(bot, status);
    }
}

/* What one datagram says: the keys of systemd's notify protocol hive acts on. */
struct hive_notice {
    bool ready, watchdog, stopping, fdstore, fdstore_remove;
    const char *fdname; /* FDNAME=, or NULL */
};

/* A received datagram's sender and the descriptors that came with it. */
struct hive_datagram {
    pid_t pid; /* SCM_CREDENTIALS; 0 when missing */
    int fds[HIVE_NOTIFY_FDS];
    size_t n_fds;
    bool truncated; /* MSG_CTRUNC: descriptors were dropped on the way */
};

/* Read the "KEY=VALUE" lines of BUF (NUL-terminated; cut in place) into N. */
static void hive_notice_parse(char *buf, struct hive_notice *n)
{
    char *save = NULL;
    memset(n, 0, sizeof *n);
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strcmp(l, "READY=1") == 0)
            n->ready = true;
        else if (strcmp(l, "WATCHDOG=1") == 0)
            n->watchdog = true;
        else if (strcmp(l, "STOPPING=1") == 0)
            n->stopping = true;
        else if (strcmp(l, "FDSTORE=1") == 0)
            n->fdstore = true;
        else if (strcmp(l, "FDSTOREREMOVE=1") == 0)
            n->fdstore_remove = true;
        else if (strncmp(l, "FDNAME=", 7) == 0)
            n->fdname = l + 7;
    }
}

/* FDSTORE=1 or FDSTOREREMOVE=1 from BOT's worker: keep its one inotify
 * instance (taken out of D), or let it go. Anything else is not kept. */
static void hive_bot_fdstore(struct hive_bot *bot, const struct hive_notice *n,
                             struct hive_datagram *d)
{
    bool named = n->fdname && strcmp(n->fdname, HIVE_STORE_NAME) == 0;
    enum fsm_state s = bot->fsm.state;
    if (n->fdstore_remove && named)
        hive_bot_store_drop(bot);
    if (!n->fdstore || d->n_fds == 0)
        return;
    if (!named || d->n_fds != 1 || d->truncated || !sdnotify_fd_is_anon(d->fds[0], "inotify")) {
        log_warn("%s: not keeping what worker pid %d passed (FDSTORE=1 takes one inotify "
                 "instance named %s)",
                 bot->id, (int)bot->pid, HIVE_STORE_NAME);
        return;
    }
    /* A worker told to stop (or a retired bot's) has nothing to hand on. */
    if (bot->retired || (s != FSM_STATE_STARTING && s != FSM_STATE_RUNNING))
        return;
    hive_bot_store_drop(bot); /* one per bot: the newer replaces it */
    bot->stored_fd = d->fds[0];
    d->fds[0] = -1;
    log_debug("%s: fd store keeps worker pid %d's inotify instance", bot->id, (int)bot->pid);
}

/* One datagram from BOT's worker. */
static void hive_bot_notified(struct hive_bot *bot, const struct hive_notice *n,
                              struct hive_datagram *d)
{
    if (n->fdstore || n->fdstore_remove)
        hive_bot_fdstore(bot, n, d);
    if (n->ready) {
        bot->heartbeat_wall_ns = util_wall_ns();
        hive_bot_feed(bot, FSM_EV_READY);
    }
    if (n->watchdog) {
        bot->heartbeat_wall_ns = util_wall_ns(); /* written by the next refresh */
        hive_bot_arm_watchdog(bot);
    }
    if (n->stopping)
        log_info("%s: worker pid %d is stopping", bot->id, (int)bot->pid);
}

/* The sender (SCM_CREDENTIALS) and passed descriptors (SCM_RIGHTS) of MH. */
static void hive_notify_sender(struct msghdr *mh, struct hive_datagram *d)
{
    memset(d, 0, sizeof *d);
    d->truncated = (mh->msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            d->pid = cred.pid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                if (d->n_fds < HIVE_NOTIFY_FDS)
                    d->fds[d->n_fds++] = fd;
                else
                    close(fd);
            }
        }
    }
}

/* Close the descriptors of D that nobody kept. */
static void hive_datagram_close(struct hive_datagram *d)
{
    for (size_t i = 0; i < d->n_fds; i++)
        if (d->fds[i] >= 0)
            close(d->fds[i]);
}

/* Datagrams on NOTIFY_SOCKET, each acted on only when its sender is a bot's
 * current worker: READY=1, WATCHDOG=1, STOPPING=1 and the fd store. */
static void hive_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive *hive = arg;
    (void)what;
    for (int i = 0; i < HIVE_NOTIFY_BATCH; i++) {
        char buf[HIVE_NOTIFY_MAX + 1];
        union {
            struct cmsghdr align;
            char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(HIVE_NOTIFY_FDS * sizeof(int))];
        } ctl;
        struct iovec iov = {buf, HIVE_NOTIFY_MAX};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        buf[n] = '\0';
        struct hive_datagram d;
        struct hive_notice notice;
        hive_notify_sender(&mh, &d);
        struct hive_bot *bot = d.pid > 0 ? hive_bot_by_pid(hive, d.pid) : NULL;
        if (bot) {
            hive_notice_parse(buf, &notice);
            hive_bot_notified(bot, &notice, &d);
        }
        hive_datagram_close(&d);
    }
}

/* Bind the notify socket to an abstract name unique to this supervisor. */
static int hive_notify_open(struct hive *hive, char *err, size_t errlen)
{
    char rnd[17];
    int one = 1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    util_random_hex(rnd, 16);
    snprintf(hive->notify_name, sizeof hive->notify_name, "@hive-notify-%d-%s", (int)getpid(), rnd);
    size_t len = strlen(hive->notify_name);
    memcpy(sa.sun_path, hive->notify_name, len);
    sa.sun_path[0] = '\0';
    hive->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (hive->notify_fd < 0 ||
        setsockopt(hive->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ||
        bind(hive->notify_fd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
        snprintf(err, errlen, "cannot create the notify socket: %s", strerror(errno));
        return -1;
    }
    hive->notify_ev =
        event_new(hive->base, hive->notify_fd, EV_READ | EV_PERSIST, hive_notify_cb, hive);
    event_add(hive->notify_ev, NULL);
    return 0;
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
        if (!hive_bot_settled(bot))
            continue;
        TAILQ_REMOVE(&hive->retired, bot, entry);
        log_info("%s: removed", bot->id);
        hive_bot_free(bot);
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

/* The table bot named ID, or NULL. */
static struct hive_bot *hive_bot_named(const struct hive *hive, const char *id)
{
    for (size_t i = 0; i < hive->n_bots; i++)
        if (strcmp(hive->bots[i]->id, id) == 0)
            return hive->bots[i];
    return NULL;
}

/* Create the table and bind every port; one message naming the bot on failure. */
static int hive_bind_all(struct hive *hive, char *err, size_t errlen)
{
    const struct roster *r = hive->roster;
    char why[300];
    hive->bots = xcalloc(r->n_bots, sizeof *hive->bots);
    for (size_t i = 0; i < r->n_bots; i++)
        hive->bots[hive->n_bots++] = hive_bot_new(hive, &r->bots[i]);
    for (size_t i = 0; i < hive->n_bots; i++) {
        if (hive_bot_bind(hive->bots[i], why, sizeof why) == 0)
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
    hive->registry_ev = evtimer_new(hive->base, hive_registry_cb, hive);
    hive->refresh_ev = event_new(hive->base, -1, EV_PERSIST, hive_registry_refresh_cb, hive);
    struct timeval refresh = {HIVE_REGISTRY_REFRESH_S, 0};
    event_add(hive->refresh_ev, &refresh);
    hive->tick_ev = event_new(hive->base, -1, EV_PERSIST, hive_tick_cb, hive);
    struct timeval tick = {HIVE_TICK_MS / 1000, HIVE_TICK_MS % 1000 * 1000};
    event_add(hive->tick_ev, &tick);
    hive->tick_mono_ms = util_mono_ms();
    hive->sigcont_ev = evsignal_new(hive->base, SIGCONT, hive_sigcont_cb, hive);
    event_add(hive->sigcont_ev, NULL);
    hive->sweep_ev = evtimer_new(hive->base, hive_sweep_cb, hive);
    hive->done_ev = evtimer_new(hive->base, hive_done_cb, hive);
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

/* Bind every port and build the table; NULL with one message (exit 78). */
struct hive *hive_new(struct event_base *base, struct roster *roster, bool foreground, char *err,
                      size_t errlen)
{
    struct hive *hive = xcalloc(1, sizeof *hive);
    hive->base = base;
    hive->roster = roster;
    hive->notify_fd = -1;
    TAILQ_INIT(&hive->retired);
    hive_events(hive);
    if (foreground)
        hive->echo = logcap_echo_new(base, STDOUT_FILENO);
    hive->worker_path = child_worker_path(err, errlen);
    if (!hive->worker_path || hive_paths(hive, err, errlen) < 0 ||
        hive_notify_open(hive, err, errlen) < 0 || hive_bind_all(hive, err, errlen) < 0) {
        hive_free(hive);
        return NULL;
    }
    hive_cgroups(hive);
    char *events = xasprintf("%s/.deia/hive/events.jsonl", roster->work_dir);
    hive->merge = merge_new(base, events);
    free(events);
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
        hive_bot_free(hive->bots[i]);
    while ((bot = TAILQ_FIRST(&hive->retired))) {
        TAILQ_REMOVE(&hive->retired, bot, entry);
        hive_bot_free(bot);
    }
    hive->n_bots = 0;
    merge_free(hive->merge);
    cgtree_free(hive->cgtree);
    if (hive->started)
        hive_registry_write(hive); /* no bot left: the hive is down */
    free(hive->bots);
    hive_event_free(hive->notify_ev);
    hive_event_free(hive->sigchld_ev);
    hive_event_free(hive->registry_ev);
    hive_event_free(hive->refresh_ev);
    hive_event_free(hive->tick_ev);
    hive_event_free(hive->sigcont_ev);
    json_decref(hive->registry_foreign);
    hive_event_free(hive->sweep_ev);
    hive_event_free(hive->done_ev);
    if (hive->notify_fd >= 0)
        close(hive->notify_fd);
    logcap_echo_free(hive->echo);
    roster_free(hive->roster);
    free(hive->worker_path);
    free(hive->logs_dir);
    free(hive->registry_path);
    free(hive);
}

/* Send START to every bot. */
void hive_start_all(struct hive *hive)
{
    hive->started = true;
    hive_registry_changed(hive);
    for (size_t i = 0; i < hive->n_bots; i++)
        hive_bot_feed(hive->bots[i], FSM_EV_START);
}

/* The roster in force (the latest one reloaded). */
const struct roster *hive_roster(const struct hive *hive)
{
    return hive->roster;
}

/* Bots in the table. */
size_t hive_bot_count(const struct hive *hive)
{
    return hive->n_bots;
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
    out->proxy_socket = bot->proxy_name;
    out->restarts = f->restarts;
    out->uptime_seconds = out->running ? (double)(now - f->since_ms) / 1000.0 : 0;
    out->reason = f->reason;
    out->has_exit = f->last_exit.valid;
    out->exit_code = f->last_exit.code;
    out->exit_signal = f->last_exit.signal;
    if (f->last_exit.valid)
        out->exit_at_wall_ns = util_wall_ns() - (now - f->last_exit.at_ms) * 1000000;
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
    hive_bot_feed(bot, type);
    return 0;
}

/* ---- reload ------------------------------------------------------------- */

enum hive_change { HIVE_SAME, HIVE_ADDED, HIVE_CHANGED };

/* Take BOT out of the table: stop it, free it once its worker is gone. */
static void hive_bot_retire(struct hive *hive, struct hive_bot *bot)
{
    bot->retired = true;
    bot->def = NULL;
    hive_bot_standin_drop(bot);
    if (bot->listen_fd >= 0) /* the worker keeps its own copy while it stops */
        close(bot->listen_fd);
    bot->listen_fd = -1;
    hive_bot_proxy_close(bot);
    TAILQ_INSERT_TAIL(&hive->retired, bot, entry);
    log_info("%s: removed from the roster; stopping", bot->id);
    hive_bot_feed(bot, FSM_EV_STOP);
}

/* A retired bot named ID back in the table (removed, then added again before
 * its worker was gone), or NULL. */
static struct hive_bot *hive_bot_unretire(struct hive *hive, const char *id)
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

/* Point BOT at its new definition DEF; a new address is bound at the next spawn. */
static void hive_bot_redefine(struct hive_bot *bot, const struct roster_bot *def)
{
    hive_bot_standin_drop(bot); /* made again below with the new lists */
    if (bot->listen_fd >= 0 &&
        (bot->bound_port != def->port || strcmp(bot->bound_bind, def->bind) != 0)) {
        close(bot->listen_fd);
        bot->listen_fd = -1;
    }
    bot->def = def;
    logcap_set_rotation(bot->logcap, def->log.max_bytes, def->log.backups);
    hive_bot_set_policy(bot);
    hive_bot_standin_sync(bot);
}

/* Build the new table for NEXT, noting what changed for each bot in HOW. */
static struct hive_bot **hive_reload_table(struct hive *hive, const struct roster *next,
                                           enum hive_change *how)
{
    bool shared = roster_shared_equal(hive->roster, next);
    struct hive_bot **table = xcalloc(next->n_bots, sizeof *table);
    for (size_t j = 0; j < next->n_bots; j++) {
        const struct roster_bot *def = &next->bots[j];
        struct hive_bot *bot = hive_bot_named(hive, def->id);
        if (!bot) {
            bot = hive_bot_unretire(hive, def->id);
            if (bot)
                hive_bot_redefine(bot, def);
            table[j] = bot ? bot : hive_bot_new(hive, def);
            how[j] = HIVE_ADDED;
            continue;
        }
        how[j] = shared && roster_bot_equal(bot->def, def) ? HIVE_SAME : HIVE_CHANGED;
        if (how[j] == HIVE_SAME)
            bot->def = def;
        else
            hive_bot_redefine(bot, def);
        table[j] = bot;
    }
    return table;
}

/* Start the added bots and restart the changed ones that are meant to run. */
static void hive_reload_kick(struct hive *hive, const enum hive_change *how)
{
    for (size_t j = 0; j < hive->n_bots; j++) {
        struct hive_bot *bot = hive->bots[j];
        enum fsm_state s = bot->fsm.state;
        if (how[j] == HIVE_ADDED)
            hive_bot_feed(bot, FSM_EV_START);
        else if (how[j] == HIVE_CHANGED && s != FSM_STATE_STOPPED &&
                 !(s == FSM_STATE_STOPPING && !bot->fsm.restart_pending))
            hive_bot_feed(bot, FSM_EV_RESTART);
    }
}

/* Count the HOW entries equal to WHAT. */
static size_t hive_count(const enum hive_change *how, size_t n, enum hive_change what)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += how[i] == what;
    return c;
}

/* Point every bot's log at the (new) work dir. */
static void hive_reload_paths(struct hive *hive)
{
    char err[300];
    if (hive_paths(hive, err, sizeof err) < 0)
        log_warn("reload: %s", err);
    for (size_t i = 0; i < hive->n_bots; i++) {
        char *path = xasprintf("%s/%s.log", hive->logs_dir, hive->bots[i]->id);
        logcap_set_path(hive->bots[i]->logcap, path);
        free(path);
    }
}

/* Switch to roster NEXT (taken over): retire, add, redefine, then act. */
static void hive_reload_apply(struct hive *hive, struct roster *next)
{
    size_t removed = 0, n_old = hive->n_bots;
    struct hive_bot **old = hive->bots;
    enum hive_change *how = xcalloc(next->n_bots, sizeof *how);
    bool moved = strcmp(hive->roster->work_dir, next->work_dir) != 0;
    if (strcmp(hive->roster->listen_host, next->listen_host) ||
        hive->roster->listen_port != next->listen_port)
        log_warn("reload: a new listen address takes effect at the next `hive up`");
    hive->bots = hive_reload_table(hive, next, how);
    hive->n_bots = next->n_bots;
    for (size_t i = 0; i < n_old; i++)
        if (!roster_find_bot(next, old[i]->id))
            old[i]->def = NULL; /* it points into the roster freed below */
    roster_free(hive->roster);
    hive->roster = next;
    if (moved)
        hive_reload_paths(hive);
    for (size_t i = 0; i < n_old; i++) {
        if (old[i]->def)
            continue;
        removed++;
        hive_bot_retire(hive, old[i]);
    }
    free(old);
    log_info("reload: %zu added, %zu removed, %zu changed, %zu unchanged",
             hive_count(how, hive->n_bots, HIVE_ADDED), removed,
             hive_count(how, hive->n_bots, HIVE_CHANGED), hive_count(how, hive->n_bots, HIVE_SAME));
    hive_reload_kick(hive, how);
    hive_registry_changed(hive);
    free(how);
}

/* Join roster messages, one per line, into ERR. */
static void hive_join_errors(const struct roster_errors *errs, char *err, size_t errlen)
{
    size_t used = 0;
    err[0] = '\0';
    for (size_t i = 0; i < errs->n && used + 1 < errlen; i++) {
        int n = snprintf(err + used, errlen - used, "%s%s", i ? "\n" : "", errs->items[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Re-read the roster file and apply the difference, or change nothing. */
int hive_reload(struct hive *hive, char *err, size_t errlen)
{
    struct roster *next = NULL;
    struct roster_errors errs = {NULL, 0};
    if (hive->shutting_down) {
        snprintf(err, errlen, "the hive is shutting down");
        return -1;
    }
    if (roster_load(hive->roster->path, &next, &errs) < 0) {
        hive_join_errors(&errs, err, errlen);
        roster_errors_free(&errs);
        return -1;
    }
    roster_errors_free(&errs);
    hive_reload_apply(hive, next);
    return 0;
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
        log_info("stopping %zu bot(s)", hive->n_bots);
        for (size_t i = 0; i < hive->n_bots; i++)
            hive_bot_feed(hive->bots[i], FSM_EV_STOP);
        TAILQ_FOREACH(bot, &hive->retired, entry)
        hive_bot_feed(bot, FSM_EV_STOP);
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
        hive_bot_feed(hive->bots[i], FSM_EV_STOP_TIMEOUT);
    TAILQ_FOREACH(bot, &hive->retired, entry)
    hive_bot_feed(bot, FSM_EV_STOP_TIMEOUT);
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
