/*
 * worker: owns the process-level concerns of a bot: the listening socket
 * (from LISTEN_FDS or bound here), SIGTERM/SIGINT, READY/WATCHDOG/STOPPING
 * notifications, the file queue's inotify instance in the service manager's
 * fd store, dying with the supervisor, and the order in which the modules are
 * built and torn down.
 */
#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/util.h"
#include "worker/activity.h"
#include "worker/api.h"
#include "worker/botlock.h"
#include "worker/contain.h"
#include "worker/engine.h"
#include "worker/events.h"
#include "worker/filequeue.h"
#include "worker/observe.h"
#include "worker/store.h"
#include "worker/uplink.h"
#include "worker/workspace.h"

#define WORKER_EXIT_CONFIG HIVE_EXIT_CONFIG
#define WORKER_DRAIN_MS 1000
#define WORKER_INOTIFY_NAME HIVE_FD_STORE /* its name in the fd store */
#define WORKER_MORE_LISTEN_MAX 3          /* inherited listening sockets beside fd 3 */
#define WORKER_NOTIFY_RETRY_MS 100        /* a state that must arrive is tried again */

/* The notifications that must arrive, in the order they are sent. */
enum { WORKER_NOTIFY_READY = 1u << 0, WORKER_NOTIFY_STOPPING = 1u << 1 };
static const char *const worker_notify_states[] = {"READY=1", "STOPPING=1"};

struct worker {
    const struct worker_options *o;
    struct event_base *base;
    struct store *store;
    struct activity *activity;
    struct events *events; /* the bot's events; the API and the channel subscribe */
    int chan_fd;           /* our end of the supervisor's channel (fd named "chan"); -1 */
    struct uplink *uplink; /* what goes up that channel */
    struct api *api;
    struct engine *engine;
    struct observe *observe; /* timeline and metrics */
    struct event *sigterm_ev, *sigint_ev, *sighup_ev, *watchdog_ev, *drain_ev, *notify_ev;
    struct timeval watchdog_tv; /* half the supervisor's watchdog period */
    /* The supervisor sees for itself that an idle loop waits for work
     * (CHAN_IDLE_WATCH): WATCHDOG=1 only while a task runs. */
    bool idle_watch;
    bool parked;             /* said so (CHAN_PARKED) and stopped the keep-alives */
    unsigned notify_pending; /* WORKER_NOTIFY_* states still to be sent */
    int64_t drain_deadline_ms;
    int port;
    int more_fds[WORKER_MORE_LISTEN_MAX]; /* inherited listening sockets after fd 3 */
    size_t n_more;
    int inotify_fd;      /* for the file queue, until engine_start takes it; -1 */
    bool inotify_stored; /* the service manager holds our inotify instance too */
    int lock_fd;         /* one worker per bot per work dir (botlock.c) */
    char *workspace;     /* the bot's git worktree (workspace.h): the adapter's folder */
    /* READY=1, and HIVE_NOWATCH=why when the file queue has no inotify
     * instance (the supervisor shows it in /status); "" until known. */
    char ready_state[160];
};

/* Die with the supervisor that started us (it says so in the environment):
 * by SIGHUP, which we catch to kill our tasks' processes first (a SIGKILL
 * would leave them running). And run with the default CPU slice, not its. */
static void worker_follow_parent(void)
{
    const char *sup = getenv(HIVE_ENV_SUPERVISOR_PID);
    if (!sup || !*sup)
        return;
    prctl(PR_SET_PDEATHSIG, SIGHUP);
    if (getppid() != (pid_t)atol(sup)) /* it died before prctl took effect */
        _exit(1);
    /* The supervisor's short CPU slice of a start burst, inherited: the
     * default back for us and our tasks (supervisor/hive.c, hive_brisk). */
    if (util_sched_slice() == UTIL_SCHED_SLICE_BRISK)
        util_sched_slice_set(0);
}

/* True when FD is a listening stream socket. */
static bool worker_is_listener(int fd)
{
    int v = 0, type = 0;
    socklen_t len = sizeof v, tlen = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v &&
           getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM;
}

/* The listening sockets among the inherited descriptors after fd 3 (the
 * supervisor's private Unix socket for its proxy, or more ListenStream= of a
 * systemd socket unit): served too. Others are left alone, as ever. */
static void worker_listen_more(struct worker *w, int n, int stored)
{
    for (int fd = SDNOTIFY_LISTEN_FDS_START + 1; fd < SDNOTIFY_LISTEN_FDS_START + n; fd++) {
        if (fd == stored || !worker_is_listener(fd))
            continue;
        if (w->n_more == WORKER_MORE_LISTEN_MAX) {
            log_warn("inherited listening socket on fd %d: one too many; not served", fd);
            continue;
        }
        w->more_fds[w->n_more++] = fd; /* made non-blocking by the server */
    }
}

/* The listening socket: inherited (fd 3; more after it go to W's more_fds)
 * or bound here. -1 on failure (already reported); -2 when none is needed.
 * *STORED: an inherited fd named "inotify" (from the fd store), or -1. */
static int worker_listen(struct worker *w, int *exit_code, int *stored)
{
    const struct worker_options *o = w->o;
    int n = sdnotify_listen_fds_named(WORKER_INOTIFY_NAME, stored);
    if (*stored == SDNOTIFY_LISTEN_FDS_START) /* fd 3 is the socket, whatever its name */
        *stored = -1;
    if (n >= 1) {
        util_set_nonblock_cloexec(SDNOTIFY_LISTEN_FDS_START);
        worker_listen_more(w, n, *stored);
        return SDNOTIFY_LISTEN_FDS_START;
    }
    if (o->mode == MODE_CLI_ONLY)
        return -2;
    if (o->port < 0) {
        log_error("--port is required in mode %s", options_mode_name(o->mode));
        *exit_code = 2;
        return -1;
    }
    if (!util_addr_is_loopback(o->bind) && !o->token) {
        log_error("refusing to listen on %s without a token (set HIVE_TOKEN or --token)", o->bind);
        *exit_code = WORKER_EXIT_CONFIG;
        return -1;
    }
    char err[300];
    int fd = util_listen_tcp(o->bind, o->port, err, sizeof err);
    if (fd < 0) {
        log_error("%s", err);
        *exit_code = WORKER_EXIT_CONFIG;
    }
    return fd;
}

/* The file queue's inotify instance when a service manager keeps descriptors
 * for us (hive up): the one it kept from our previous run (STORED), else a
 * new one handed to it with FDSTORE=1. Its reference makes our exit cheap:
 * the last close of an instance with watches waits for the kernel to tear
 * them down, and a crash restart would wait for that. Standalone, the file
 * queue makes its own as always. */
static void worker_inotify(struct worker *w, int stored)
{
    if (stored >= 0 && !sdnotify_fd_is_anon(stored, "inotify")) {
        log_warn("fd %d named %s is not an inotify instance; making a new one", stored,
                 WORKER_INOTIFY_NAME);
        close(stored);
        stored = -1;
    }
    if (stored >= 0) {
        w->inotify_fd = stored;
        w->inotify_stored = true;
        return;
    }
    if (sdnotify_fdstore_max() <= 0)
        return;
    int fd = filequeue_inotify_new();
    if (fd < 0) {
        /* The file queue tries again and says why not; the supervisor hears
         * it with our READY=1 (EMFILE here is fs.inotify.max_user_instances). */
        if (w->o->mode != MODE_WEBSOCKET_ONLY)
            snprintf(w->ready_state, sizeof w->ready_state, "READY=1\nHIVE_NOWATCH=%s",
                     strerror(errno));
        return;
    }
    w->inotify_fd = fd;
    if (sdnotify_send_fd("FDSTORE=1\nFDNAME=" WORKER_INOTIFY_NAME "\n", fd) == 0)
        w->inotify_stored = true;
    else
        log_warn("cannot hand the inotify instance to the fd store: %s", strerror(errno));
}

/* The descriptor the supervisor named HIVE_FD_CHAN, or -1; read before
 * worker_listen() takes the LISTEN_* variables away. */
static int worker_chan_fd(void)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid || !n || !names || atol(pid) != (long)getpid())
        return -1;
    int i = sdnotify_fdnames_index(names, atoi(n), HIVE_FD_CHAN);
    if (i < 0)
        return -1;
    int fd = SDNOTIFY_LISTEN_FDS_START + i, type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        log_warn("fd %d named %s is not a stream socket; no channel to the supervisor", fd,
                 HIVE_FD_CHAN);
        return -1;
    }
    return fd;
}

/* Close the inherited listening sockets no server took. */
static void worker_close_more(struct worker *w)
{
    for (size_t i = 0; i < w->n_more; i++)
        close(w->more_fds[i]);
    w->n_more = 0;
}

/* A failure to notify that passes: a full socket, a moment without
 * descriptors or memory. */
static bool worker_notify_transient(int err)
{
    return err == EAGAIN || err == ENOBUFS || err == EMFILE || err == ENFILE || err == ENOMEM ||
           err == EINTR;
}

/* Send the pending states in order; what the socket does not take now is
 * tried again on the loop (never waited for: a stopped supervisor must not
 * freeze us). */
static void worker_notify_flush(struct worker *w)
{
    for (unsigned i = 0; i < sizeof worker_notify_states / sizeof *worker_notify_states; i++) {
        unsigned bit = 1u << i;
        if (!(w->notify_pending & bit))
            continue;
        const char *state = bit == WORKER_NOTIFY_READY && w->ready_state[0]
                                ? w->ready_state
                                : worker_notify_states[i];
        if (sdnotify_send(state) < 0 && worker_notify_transient(errno)) {
            struct timeval tv = {0, WORKER_NOTIFY_RETRY_MS * 1000};
            evtimer_add(w->notify_ev, &tv);
            return;
        }
        w->notify_pending &= ~bit; /* sent, or no manager could ever take it */
    }
}

/* The retry timer of worker_notify_flush. */
static void worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker_notify_flush(arg);
}

/* Say STATE (WORKER_NOTIFY_*) to the service manager; it will arrive. */
static void worker_notify(struct worker *w, unsigned state)
{
    w->notify_pending |= state;
    if (!evtimer_pending(w->notify_ev, NULL))
        worker_notify_flush(w);
}

/* Send WATCHDOG=1 (at half the interval the supervisor asked for). One the
 * socket cannot take now is dropped: the next one says the same. When the
 * supervisor looks for itself (CHAN_IDLE_WATCH) and no task runs, this is
 * the last one until the bot has work again (worker_watchdog_wake): an idle
 * bot then wakes for nothing. */
static void worker_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd, (void)what;
    sdnotify_send("WATCHDOG=1");
    if (w->idle_watch && !w->parked && w->engine && w->uplink) {
        struct engine_status st;
        engine_status(w->engine, &st);
        if (!st.current && uplink_parked(w->uplink, true)) {
            w->parked = true;
            event_del(w->watchdog_ev);
        }
    }
}

/* Something happened to the bot (an event): keep-alives again, from now. */
static void worker_watchdog_wake(struct worker *w)
{
    if (!w->parked)
        return;
    w->parked = false;
    uplink_parked(w->uplink, false);
    sdnotify_send("WATCHDOG=1");
    event_add(w->watchdog_ev, &w->watchdog_tv);
}

/* The supervisor said it looks at an idle worker itself. */
static void worker_idle_watch_cb(void *arg)
{
    struct worker *w = arg;
    w->idle_watch = true;
    if (w->watchdog_ev) /* idle already: park now, not half a period later */
        worker_watchdog_cb(-1, 0, w);
}

/* Leave the loop once the WebSocket clients are gone (or after a while). */
static void worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    if (!w->api || api_sessions(w->api) == 0 || util_mono_ms() >= w->drain_deadline_ms) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = {0, 20000};
    evtimer_add(w->drain_ev, &tv);
}

/* The engine has stopped: say goodbye to WebSocket clients, then exit. */
static void worker_stopped_cb(void *arg)
{
    struct worker *w = arg;
    if (w->api)
        api_close_sessions(w->api);
    observe_close_sessions(w->observe);
    w->drain_deadline_ms = util_mono_ms() + WORKER_DRAIN_MS;
    struct timeval tv = {0, 0};
    evtimer_add(w->drain_ev, &tv);
}

/* SIGTERM / SIGINT: stop taking tasks and wind down. */
static void worker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    if (engine_stopping(w->engine))
        return;
    log_info("%s received; stopping", strsignal((int)sig));
    worker_notify(w, WORKER_NOTIFY_STOPPING);
    /* Released while we still hold the instance: our exit pays its teardown,
     * not the service manager. */
    if (w->inotify_stored &&
        sdnotify_send("FDSTOREREMOVE=1\nFDNAME=" WORKER_INOTIFY_NAME "\n") == 0)
        w->inotify_stored = false;
    engine_stop(w->engine);
}

/* SIGHUP: the supervisor (or the terminal) is gone. Nothing will answer for
 * us any more: kill every process of our tasks and exit at once, as a
 * SIGKILL would have (the running task stays queued for the next start). */
static void worker_hangup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what, (void)arg;
    log_warn("SIGHUP: the supervisor or terminal is gone; killing the running task's "
             "processes and exiting");
    contain_shutdown();
    _exit(1);
}

/* Choose how our tasks' processes are contained and end what a killed run
 * of this bot left behind (recorded under .deia/hive/run/, which the first
 * task makes: contain.c). */
static void worker_contain(const struct worker_options *o)
{
    char *dir = xasprintf("%s/.deia/hive/run", o->work_dir);
    char *record = xasprintf("%s/%s.procs", dir, o->bot_id);
    char desc[1024];
    if (contain_init(record, o->bot_id, desc, sizeof desc) == CONTAIN_CGROUP)
        log_info("task processes: %s", desc);
    else
        log_warn("task processes: %s", desc);
    free(record);
    free(dir);
}

/* The bot's events file, .deia/bot-logs/<BOT-ID>-events.jsonl, beside its
 * activity log. */
static struct events *worker_events_open(struct worker *w)
{
    char *path = xasprintf("%s/%s-events.jsonl", store_paths(w->store)->logs, w->o->bot_id);
    struct events *ev = events_open(path, w->o->bot_id, w->activity);
    free(path);
    return ev;
}

/* The observe sink of the bot's events: the timeline's entry once a task's
 * answer is durable, and the live messages of the WebSocket timeline. */
static void worker_observe_event(const struct events_event *ev, void *arg)
{
    struct worker *w = arg;
    worker_watchdog_wake(w);
    bool done = !strcmp(ev->type, "task_completed") || !strcmp(ev->type, "task_failed") ||
                !strcmp(ev->type, "task_cancelled");
    json_t *j = json_loadb(ev->json, ev->json_len, 0, NULL);
    if (j) /* the live message first, then the entry's update */
        observe_event(w->observe, j);
    json_decref(j);
    if (done && ev->task)
        observe_task_finished(w->observe, ev->task);
}

/* Build the engine from the options. */
static struct engine *worker_engine(struct worker *w)
{
    const struct worker_options *o = w->o;
    struct engine_config ec = {.bot_id = o->bot_id,
                               .adapter = o->adapter,
                               .cooldown_s = o->cooldown_s,
                               .queue_max = o->queue_max,
                               .stop_grace_s = o->stop_grace_s,
                               .file_queue = o->mode != MODE_WEBSOCKET_ONLY,
                               .file_min_age_s = o->file_min_age_s,
                               .rescan_s = o->rescan_s,
                               .stall_after_s = o->stall_after_s,
                               .work_dir = o->work_dir,
                               .session_continue = o->session_continue,
                               .auto_resume = o->auto_resume,
                               .budget = {o->budget_usd, o->budget_tokens, o->budget_reset_min}};
    if (!ec.adapter.work_dir) /* --cwd */
        ec.adapter.work_dir = o->work_dir;
    if (w->workspace) /* --git-worktree: the worktree's root */
        ec.adapter.work_dir = w->workspace;
    struct engine_events ev = {worker_stopped_cb, w};
    return engine_new(w->base, &ec, w->store, w->activity, w->events, &ev);
}

/* Build the HTTP/WebSocket API on FD. */
static struct api *worker_api(struct worker *w, int fd)
{
    const struct worker_options *o = w->o;
    struct api_config ac = {.bot_id = o->bot_id,
                            .mode = options_mode_name(o->mode),
                            .port = w->port,
                            .token = o->token,
                            .allowed_origins = (const char *const *)o->allowed_origins,
                            .server_names = (const char *const *)o->server_names,
                            .bind = o->bind,
                            .limits = o->limits,
                            .ws = o->ws,
                            .started_mono_ns = util_mono_ns()};
    return api_new(w->base, fd, &ac, w->store);
}

/* Arm signals and the watchdog. */
static void worker_events(struct worker *w)
{
    w->sigterm_ev = evsignal_new(w->base, SIGTERM, worker_signal_cb, w);
    w->sigint_ev = evsignal_new(w->base, SIGINT, worker_signal_cb, w);
    event_add(w->sigterm_ev, NULL);
    event_add(w->sigint_ev, NULL);
    struct sigaction hup;
    if (sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler != SIG_IGN) { /* not nohup */
        w->sighup_ev = evsignal_new(w->base, SIGHUP, worker_hangup_cb, w);
        event_add(w->sighup_ev, NULL);
    }
    w->drain_ev = evtimer_new(w->base, worker_drain_cb, w);
    w->notify_ev = evtimer_new(w->base, worker_notify_cb, w);
    uint64_t usec = sdnotify_watchdog_usec();
    if (usec) {
        w->watchdog_ev = event_new(w->base, -1, EV_PERSIST, worker_watchdog_cb, w);
        w->watchdog_tv = (struct timeval){(long)(usec / 2 / 1000000), (long)(usec / 2 % 1000000)};
        event_add(w->watchdog_ev, &w->watchdog_tv);
    }
}

/* Free everything in the reverse order of building. */
static void worker_teardown(struct worker *w)
{
    uplink_free(w->uplink);
    engine_free(w->engine);
    contain_shutdown(); /* after the engine ended its tasks */
    api_free(w->api);
    observe_free(w->observe);
    if (w->watchdog_ev)
        event_free(w->watchdog_ev);
    if (w->sigterm_ev)
        event_free(w->sigterm_ev);
    if (w->sigint_ev)
        event_free(w->sigint_ev);
    if (w->sighup_ev)
        event_free(w->sighup_ev);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->chan_fd >= 0) /* no uplink took it */
        close(w->chan_fd);
    if (w->inotify_fd >= 0) /* the engine never took it */
        close(w->inotify_fd);
    events_close(w->events);
    activity_close(w->activity);
    store_free(w->store);
    free(w->workspace);
    if (w->base)
        event_base_free(w->base);
    if (w->lock_fd >= 0) /* the last thing: the folders are free for the next worker */
        close(w->lock_fd);
}

/* Log the startup event and say READY=1 (sent again until it is taken). */
static void worker_announce(struct worker *w, int recovered)
{
    const struct worker_options *o = w->o;
    if (w->port >= 0)
        log_info("listening on http://%s:%d (mode %s, adapter %s)", o->bind, w->port,
                 options_mode_name(o->mode), o->adapter.type == ADAPTER_CLI ? "cli" : "mock");
    else
        log_info("watching the file queue (mode %s)", options_mode_name(o->mode));
    if (recovered)
        log_info("recovered %d queued realtime task(s)", recovered);
    struct activity_event ev = {.event_type = "startup"};
    activity_log(w->activity, &ev,
                 json_pack("{s:s, s:i, s:i}", "mode", options_mode_name(o->mode), "port", w->port,
                           "recovered", recovered));
    worker_notify(w, WORKER_NOTIFY_READY);
}

int worker_run(const struct worker_options *o)
{
    struct worker w = {.o = o, .port = -1, .inotify_fd = -1, .lock_fd = -1, .chan_fd = -1};
    int code = 1;
    char err[300];
    signal(SIGPIPE, SIG_IGN);
    log_nonblocking(); /* a stopped supervisor stops reading our stderr */
    /* SPEC's 1024 connections need more than the usual soft limit. */
    if (util_nofile_raise() < 0)
        log_warn("cannot raise the open-files limit: %s", strerror(errno));
    worker_follow_parent();
    /* Before anything touches the folders: a second worker's recovery would
     * take the first one's running task for a crashed one. */
    pid_t holder;
    w.lock_fd = botlock_take(o->work_dir, o->bot_id, &holder, err, sizeof err);
    if (w.lock_fd < 0) {
        log_error("%s", err);
        return WORKER_EXIT_CONFIG;
    }
    char why[1024];
    if (o->git_worktree &&
        workspace_prepare(o->work_dir, o->bot_id, o->git_worktree, &w.workspace, why, sizeof why)) {
        log_error("%s", why);
        close(w.lock_fd);
        return WORKER_EXIT_CONFIG;
    }
    int stored = -1;
    w.chan_fd = worker_chan_fd();
    int fd = worker_listen(&w, &code, &stored);
    if (fd == -1) {
        if (stored >= 0)
            close(stored);
        close(w.lock_fd);
        return code;
    }
    if (fd >= 0)
        w.port = util_socket_port(fd);
    w.store = store_open(o->work_dir, o->bot_id, err, sizeof err);
    if (!w.store) {
        log_error("%s", err);
        if (fd >= 0)
            close(fd);
        if (stored >= 0)
            close(stored);
        worker_close_more(&w);
        close(w.lock_fd);
        return WORKER_EXIT_CONFIG;
    }
    worker_contain(o);
    worker_inotify(&w, stored);
    w.activity = activity_open(store_paths(w.store)->activity, o->bot_id);
    activity_log_warnings(w.activity);
    w.events = worker_events_open(&w);
    w.base = event_base_new();
    w.observe = observe_new(w.store, o->bot_id, &o->ws);
    if (fd >= 0 && !(w.api = worker_api(&w, fd))) {
        log_error("cannot serve HTTP on the listening socket");
        worker_close_more(&w);
        worker_teardown(&w);
        return 1;
    }
    for (size_t i = 0; i < w.n_more; i++)
        if (api_listen(w.api, w.more_fds[i]) < 0) {
            log_warn("cannot serve HTTP on inherited fd %d; closing it", w.more_fds[i]);
            close(w.more_fds[i]);
        }
    w.n_more = 0; /* the server's now */
    if (w.chan_fd >= 0 && (w.uplink = uplink_new(w.base, w.chan_fd, w.events)))
        w.chan_fd = -1; /* the uplink's now */
    w.engine = worker_engine(&w);
    observe_set_engine(w.observe, w.engine);
    events_subscribe(w.events, worker_observe_event, &w);
    if (w.uplink) {
        uplink_set_engine(w.uplink, w.engine);
        uplink_on_idle_watch(w.uplink, worker_idle_watch_cb, &w);
    }
    if (w.api) {
        api_set_engine(w.api, w.engine);
        api_set_observe(w.api, w.observe);
        observe_count_subscribers(w.observe, api_event_subscribers, w.api);
        api_set_events(w.api, w.events);
    }
    worker_events(&w);
    int inotify_fd = w.inotify_fd;
    w.inotify_fd = -1; /* the file queue's now */
    int recovered = engine_start(w.engine, inotify_fd);
    observe_recover(w.observe);
    worker_announce(&w, recovered);
    event_base_dispatch(w.base);
    struct activity_event ev = {.event_type = "shutdown"};
    activity_log(w.activity, &ev, NULL);
    log_info("stopped");
    worker_teardown(&w);
    return 0;
}
