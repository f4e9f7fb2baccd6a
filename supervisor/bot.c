/*
 * bot: the executor of one bot's state machine. fsm.c decides; this file
 * carries out what it returns — timers, the stop signal and SIGKILL to the
 * worker's process group, spawning a worker with its sockets (bound here:
 * the port, and the private proxy socket) and its stored inotify instance —
 * and turns what happens to the worker into the FSM's events: its exit
 * (reaped by hive.c), its notifications (READY=1, WATCHDOG=1, the fd store),
 * the timers firing. While the bot is stopped or fatal its stand-in answers
 * on its sockets. A bot's fsm_bot is written by fsm.c alone.
 *
 * Ownership: a bot owns its fsm_bot, its five timers and its logcap, created
 * in bot_new and released only in bot_free; its listening and proxy sockets
 * (made when first bound); its stored descriptor; its stand-in; its OOM
 * watch (cgroup v1).
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
 * A worker runs with its bot's process settings (roster.h): env_file's and
 * env's variables, its user and group, and its cgroup limits (cgtree.c); a
 * bot whose cgroup counts a new OOM kill when its worker exits is told to
 * the FSM as "out of memory" (under cgroup v1 an eventfd watch ends the
 * whole worker at the first kill, as v2's memory.oom.group does). Its
 * channel (common/chan.h) is a socketpair whose other end goes to the merge.
 *
 * Every state change is logged on one line, sent as a bot_state event and
 * marks registry.json changed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/util.h"
#include "supervisor/cgtree.h"
#include "supervisor/child.h"
#include "supervisor/hive_internal.h"
#include "supervisor/logcap.h"
#include "supervisor/merge.h"
#include "supervisor/notify.h"
#include "supervisor/remote.h"
#include "supervisor/standin.h"

#define BOT_STORE_NAME "inotify"      /* the one descriptor a worker may store */
#define BOT_PROXY_FD_NAME "proxy"     /* the private socket's LISTEN_FDNAMES name */
#define BOT_WATCH_SECOND_LOOK_MS 1000 /* a worker found busy at its watchdog is looked at again */

static void bot_step(struct hive_bot *bot, const struct fsm_event *ev, const char *why);

/* The FSM policy of roster bot DEF. */
static void bot_policy(const struct roster_bot *def, struct fsm_policy *p)
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
void bot_set_policy(struct hive_bot *bot)
{
    struct fsm_policy p;
    bot_policy(bot->def, &p);
    fsm_bot_set_policy(&bot->fsm, &p);
}

/* Bind BOT's port unless it is bound; -1 with the reason in WHY. */
/* Note the numeric address of BOT's listening socket: a bind given as a
 * name is resolved once, here, and the proxy never resolves. */
static void bot_bound_addr(struct hive_bot *bot)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    const void *in = NULL;
    bot->bound_addr[0] = '\0';
    if (getsockname(bot->listen_fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET)
        in = &((struct sockaddr_in *)&ss)->sin_addr;
    else if (ss.ss_family == AF_INET6)
        in = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (!in || !inet_ntop(ss.ss_family, in, bot->bound_addr, sizeof bot->bound_addr))
        bot->bound_addr[0] = '\0';
}

int bot_bind(struct hive_bot *bot, char *why, size_t cap)
{
    char err[256];
    if (bot->listen_fd >= 0 || bot->remote) /* a remote bot listens elsewhere */
        return 0;
    bot->listen_fd = util_listen_tcp(bot->def->bind, bot->def->port, err, sizeof err);
    if (bot->listen_fd >= 0) {
        if (bot->proxy_fd < 0 && (bot->proxy_fd = util_listen_local(bot->proxy_name)) < 0)
            log_warn("%s: no private socket for the proxy (%s); it will use port %d", bot->id,
                     strerror(errno), bot->def->port);
        free(bot->bound_bind);
        bot->bound_bind = xstrdup(bot->def->bind);
        bot->bound_port = bot->def->port;
        bot_bound_addr(bot);
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

static bool bot_watch_alive(struct hive_bot *bot);

/* Fire a timer: feed its event. A worker is not judged (watchdog, start
 * timeout) on a period during which we ourselves were not running. */
static void bot_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive_timer *t = arg;
    (void)fd, (void)what;
    if ((t->fires == FSM_EV_WATCHDOG_TIMEOUT || t->fires == FSM_EV_START_TIMEOUT) &&
        hive_loop_gap(t->bot->hive))
        return;
    if (t->fires == FSM_EV_WATCHDOG_TIMEOUT && bot_watch_alive(t->bot))
        return;
    bot_feed(t->bot, t->fires);
}

/* Arm timer KIND of BOT for MS milliseconds. */
static void bot_arm(struct hive_bot *bot, enum hive_timer_kind kind, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    evtimer_add(bot->timers[kind].ev, &tv);
}

/* BOT's worker said it parked (CHAN_PARKED: no task, no more WATCHDOG=1
 * until it has one) and its watchdog period ended: look before judging.
 * Asleep in its event loop's epoll_wait, it waits for work and is not hung:
 * a fresh period, and that counts as a heartbeat. Found busy (a request being served, or hung), it
 * gets one more look shortly: a loop that went to sleep again meanwhile
 * turns, and only a worker stuck in one place is judged. True when it was
 * found alive (or is being looked at again). */
static bool bot_watch_alive(struct hive_bot *bot)
{
    if (!bot->pid || !merge_parked(bot->hive->merge, bot->id))
        return false;
    enum child_look look = child_look(bot->pid);
    if (look == CHILD_WAITING ||
        (bot->watch_second_look && child_sleeps(bot->pid) != bot->watch_sleeps)) {
        bot->heartbeat_wall_ns = util_wall_ns();
        bot_arm_watchdog(bot);
        return true;
    }
    if (look == CHILD_BUSY && !bot->watch_second_look) {
        bot->watch_second_look = true;
        bot->watch_sleeps = child_sleeps(bot->pid);
        bot_arm(bot, HIVE_TIMER_WATCHDOG, BOT_WATCH_SECOND_LOOK_MS);
        return true;
    }
    return false;
}

/* Cancel every timer of BOT. */
static void bot_cancel_timers(struct hive_bot *bot)
{
    for (int i = 0; i < HIVE_TIMER_COUNT; i++)
        evtimer_del(bot->timers[i].ev);
}

/* (Re)arm the watchdog of a running BOT, when it has one. */
void bot_arm_watchdog(struct hive_bot *bot)
{
    bot->watch_second_look = false;
    if (bot->def && bot->def->watchdog > 0 && bot->fsm.state == FSM_STATE_RUNNING)
        bot_arm(bot, HIVE_TIMER_WATCHDOG, (int64_t)(bot->def->watchdog * 1000));
}

/* A fresh period for BOT's worker if it is being judged: the watchdog of a
 * running one, the start timeout of a starting one. */
void bot_fresh_period(struct hive_bot *bot)
{
    if (bot->fsm.state == FSM_STATE_STARTING)
        bot_arm(bot, HIVE_TIMER_START, bot->fsm.policy.start_timeout_ms);
    else
        bot_arm_watchdog(bot);
}

/* Let go of BOT's stored descriptor. The kernel tears the instance down at
 * its last close, so callers choose when that may be ours. */
void bot_store_drop(struct hive_bot *bot)
{
    if (bot->stored_fd < 0)
        return;
    close(bot->stored_fd);
    bot->stored_fd = -1;
    log_debug("%s: fd store emptied", bot->id);
}

/* Close BOT's private proxy socket (a worker keeps its own copy). */
void bot_proxy_close(struct hive_bot *bot)
{
    if (bot->proxy_fd < 0)
        return;
    close(bot->proxy_fd);
    bot->proxy_fd = -1;
    bot->proxy_name[0] = '\0';
}

/* Send SIG to the worker's whole process group. */
static void bot_kill(struct hive_bot *bot, int sig)
{
    if (bot->pid <= 0)
        return;
    if (sig == SIGKILL && bot->fsm.state == FSM_STATE_STOPPING && bot->stop_signal != SIGKILL)
        log_warn("%s: SIGKILL to pid %d (still running after SIG%s)", bot->id, (int)bot->pid,
                 roster_signal_name(bot->stop_signal));
    else if (sig == SIGKILL)
        log_warn("%s: SIGKILL to pid %d (%s)", bot->id, (int)bot->pid, bot->fsm.reason);
    if (kill(-bot->pid, sig) < 0 && errno == ESRCH)
        kill(bot->pid, sig);
}

/* Stop answering on BOT's sockets (before a worker takes them, or they close). */
void bot_standin_drop(struct hive_bot *bot)
{
    standin_free(bot->standin);
    bot->standin = NULL;
}

/* While BOT is stopped or fatal with no worker, the supervisor answers on
 * its sockets itself (503, SPEC §6.2); otherwise they are the worker's, or
 * the kernel queues connections until one is ready. */
void bot_standin_sync(struct hive_bot *bot)
{
    enum fsm_state s = bot->fsm.state;
    bool fatal = s == FSM_STATE_FATAL;
    if (!bot->def || bot->retired || bot->hive->shutting_down || bot->listen_fd < 0 ||
        bot->pid != 0 || (s != FSM_STATE_STOPPED && !fatal)) {
        bot_standin_drop(bot);
        return;
    }
    if (!bot->standin)
        bot->standin = standin_new(bot->hive->base, bot->def, &bot->hive->roster->limits,
                                   bot->listen_fd, bot->proxy_fd);
    if (bot->standin)
        standin_set_state(bot->standin, fsm_state_name(s), fatal ? bot->fsm.reason : NULL);
}

/* BOT's cgroup for its next worker (caller frees), or NULL (logged). */
static char *bot_cgroup(struct hive_bot *bot, char *why, size_t cap)
{
    char *dir = cgtree_worker_dir(bot->hive->cgtree, bot->id, why, cap);
    if (!dir && bot->hive->cgtree)
        log_warn("%s: %s; its worker runs without a cgroup of its own", bot->id, why);
    return dir;
}

/* cgroup v1 OOM: the kernel killed one process of BOT; end the worker too,
 * so the bot restarts whole, as cgroup v2's memory.oom.group does. */
static void bot_oom_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hive_bot *bot = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) == (ssize_t)sizeof n && bot->pid > 0) {
        log_warn("%s: out of memory (memory_max); ending its worker", bot->id);
        /* The event comes when the group is under OOM, before the kernel
         * kills anything: ended now, the worker may take the OOM with it and
         * the group's oom_kill count stays the same. */
        bot->oom_ended = true;
        kill(bot->pid, SIGKILL);
    }
}

/* Drop BOT's OOM watch. */
static void bot_oom_drop(struct hive_bot *bot)
{
    if (!bot->oom_ev)
        return;
    close(event_get_fd(bot->oom_ev));
    event_free(bot->oom_ev);
    bot->oom_ev = NULL;
}

/* The bot's environment for its worker: env_file's variables, then env's
 * (env wins, as in docker compose). The strings stay the roster's: free
 * only the array. */
static char **bot_env(const struct roster_bot *def)
{
    size_t n = 0, k = 0;
    for (char *const *e = def->exec.file_env; *e; e++)
        n++;
    for (char *const *e = def->exec.env; *e; e++)
        n++;
    char **env = xcalloc(n + 1, sizeof *env);
    for (char *const *e = def->exec.file_env; *e; e++)
        env[k++] = *e;
    for (char *const *e = def->exec.env; *e; e++)
        env[k++] = *e;
    return env;
}

/* What BOT's worker runs with besides its argv: the bot's environment
 * (bot_env, into SPEC, freed by the caller), its user, and its cgroup limits
 * (the v1 groups into SPEC, freed by the caller), with an OOM watch where
 * only v1 can tell. -1 with WHY when a limit cannot be set. */
static int bot_exec_setup(struct hive_bot *bot, struct child_spec *spec, char *why, size_t cap)
{
    const struct roster_bot *def = bot->def;
    const char *wd = bot->hive->roster->work_dir;
    struct cgtree_limits lim = {def->rlimits.memory_max, def->rlimits.cpu_max,
                                def->rlimits.tasks_max};
    char *v1[CGTREE_V1_MAX + 1];
    spec->env = bot_env(def);
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
    bot->oom_ended = false;
    bot_oom_drop(bot);
    int efd = v1[0] && lim.memory_max > 0 ? cgtree_bot_oom_watch(wd, def->id) : -1;
    if (efd >= 0) {
        bot->oom_ev = event_new(bot->hive->base, efd, EV_READ | EV_PERSIST, bot_oom_cb, bot);
        event_add(bot->oom_ev, NULL);
    }
    return 0;
}

/* Free what bot_exec_setup put in SPEC. */
static void bot_exec_release(struct child_spec *spec)
{
    free((char **)spec->env);
    spec->env = NULL;
    for (size_t i = 0; spec->cgroup_v1_dirs[i]; i++)
        free((char *)spec->cgroup_v1_dirs[i]);
    spec->cgroup_v1_dirs[0] = NULL;
}

/* A socketpair for the channel (common/chan.h, merge.h); its worker end
 * handed down in SPEC as the fd named "chan". Without one the worker runs
 * all the same (no events up). */
static void bot_chan_open(struct child_spec *spec, int chan[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) < 0) {
        log_warn("cannot make a channel for a worker: %s", strerror(errno));
        chan[0] = chan[1] = -1;
        return;
    }
    spec->fds[spec->n_fds++] = (struct child_fd){chan[1], HIVE_FD_CHAN};
}

/* After the spawn: our end goes to the merge (when the worker started). */
static void bot_chan_attach(struct hive_bot *bot, int chan[2], bool started)
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
static void bot_emit_state(const struct hive_bot *bot)
{
    merge_bot_state(bot->hive->merge, bot->id, fsm_state_name(bot->fsm.state), bot->pid,
                    bot->fsm.reason, bot->fsm.restarts);
}

/* Start a worker for BOT. 0, or the exit status the failure stands for with
 * the reason in WHY: 78 (permanent) for a port in use by someone else, 1 when
 * one of our own bots is still letting go of it (a reload moved ports). */
static int bot_spawn(struct hive_bot *bot, char *why, size_t cap)
{
    struct hive *hive = bot->hive;
    if (bot_bind(bot, why, cap) < 0) {
        if (errno != EADDRINUSE || !hive_port_held(hive, bot, bot->def->port))
            return FSM_EXIT_PERMANENT;
        snprintf(why, cap, "port %d is still held by another bot's worker", bot->def->port);
        return 1;
    }
    bot_standin_drop(bot); /* the worker accepts from here on */
    char **argv = roster_worker_argv(hive->roster, bot->def, hive->worker_path);
    struct child_spec spec = {.path = hive->worker_path,
                              .argv = argv,
                              .fds = {{bot->listen_fd, "listen"}},
                              .n_fds = 1,
                              .notify_socket = notify_name(hive->notify),
                              .watchdog_usec = (uint64_t)(bot->def->watchdog * 1e6),
                              .token = hive->roster->token,
                              .token_env = hive->roster->token_env};
    if (bot_exec_setup(bot, &spec, why, cap) < 0) {
        roster_argv_free(argv);
        bot_exec_release(&spec);
        return FSM_EXIT_PERMANENT;
    }
    char cg_why[256];
    char *cg = bot_cgroup(bot, cg_why, sizeof cg_why);
    spec.cgroup_dir = cg;
    if (bot->proxy_fd >= 0)
        spec.fds[spec.n_fds++] = (struct child_fd){bot->proxy_fd, BOT_PROXY_FD_NAME};
    if (bot->stored_fd >= 0)
        spec.fds[spec.n_fds++] = (struct child_fd){bot->stored_fd, BOT_STORE_NAME};
    int chan[2] = {-1, -1};
    bot_chan_open(&spec, chan);
    int out_fd;
    pid_t pid = child_spawn(&spec, &out_fd, why, cap);
    roster_argv_free(argv);
    bot_exec_release(&spec);
    free(cg);
    bot_chan_attach(bot, chan, pid >= 0);
    if (pid < 0)
        return 1;
    hive_pid_set(hive, bot, pid);
    bot->nowatch[0] = '\0'; /* the new worker says again */
    bot->registered_wall_ns = bot->heartbeat_wall_ns = util_wall_ns();
    logcap_attach(bot->logcap, out_fd);
    return 0;
}

/* Carry out ACT in fsm.h's order; returns the spawn's result (0 if none). */
static int bot_act(struct hive_bot *bot, const struct fsm_actions *act, char *why, size_t cap)
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
        bot_cancel_timers(bot);
    if (act->flags & FSM_ACT_KILL_TERM) {
        /* A stop on purpose: the worker still holds the stored instance, so
         * dropping ours now costs nothing here and its exit pays. */
        bot_store_drop(bot);
        bot_kill(bot, bot->stop_signal);
    }
    if (act->flags & FSM_ACT_KILL_KILL)
        bot_kill(bot, SIGKILL);
    if (act->flags & FSM_ACT_SPAWN)
        spawn = bot_spawn(bot, why, cap);
    for (size_t i = 0; i < sizeof arms / sizeof arms[0]; i++)
        if (act->flags & arms[i].flag)
            bot_arm(bot, arms[i].kind, act->timer_ms);
    return spawn;
}

/* "exit status 0" or "killed by signal 9" for the last exit. */
static void bot_describe_exit(const struct fsm_exit *e, char *buf, size_t cap)
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
static void bot_log_transition(const struct hive_bot *bot, enum fsm_state from, bool restarted)
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
            bot_describe_exit(&f->last_exit, detail, sizeof detail);
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

/* Running: READY=1 from its worker, or a remote bot's health checks pass. */
bool bot_running(const struct hive_bot *bot)
{
    return bot->remote ? remote_running(bot->remote) : bot->fsm.state == FSM_STATE_RUNNING;
}

/* Stopped or fatal with nothing left to reap. */
bool bot_settled(const struct hive_bot *bot)
{
    return bot->pid == 0 &&
           (bot->fsm.state == FSM_STATE_STOPPED || bot->fsm.state == FSM_STATE_FATAL);
}

/* Feed EV to BOT's FSM, do what it says, log and publish the change. WHY,
 * when set, replaces a reason the step sets. */
static void bot_step(struct hive_bot *bot, const struct fsm_event *ev, const char *why)
{
    enum fsm_state from = bot->fsm.state;
    char err[300] = "";
    struct fsm_event fed = *ev;
    fed.why = why;
    struct fsm_actions act = fsm_step(&bot->fsm, &fed, util_mono_ms());
    int failed = bot_act(bot, &act, err, sizeof err);
    /* An exit that spawned at once: a restart without a backoff state. */
    bool restarted =
        ev->type == FSM_EV_EXITED && (act.flags & FSM_ACT_SPAWN) && act.reason && !failed;
    if (bot->fsm.state != from)
        hive_count_starting(bot->hive, from, bot->fsm.state);
    if (bot->fsm.state != from || restarted) {
        if (bot->fsm.state == FSM_STATE_RUNNING)
            hive_bot_now_running(bot);
        else if (bot->fsm.state == FSM_STATE_FATAL || bot->fsm.state == FSM_STATE_STOPPED)
            hive_bot_gave_up(bot);
        bot_log_transition(bot, from, restarted);
        bot_emit_state(bot);
        hive_registry_changed(bot->hive);
    }
    if (failed) {
        /* As if the worker had exited with that status: the FSM decides. */
        struct fsm_event exited = {FSM_EV_EXITED, failed, 0, NULL};
        if (failed != FSM_EXIT_PERMANENT)
            log_error("%s: %s", bot->id, err);
        bot_step(bot, &exited, failed == FSM_EXIT_PERMANENT ? err : NULL);
    }
    if (bot_settled(bot)) /* no worker and none to come: nothing to keep */
        bot_store_drop(bot);
    bot_standin_sync(bot);
    hive_after_step(bot->hive, bot);
}

/* Feed an event without details. */
/* A remote bot: start or stop checking it (there is no process to drive). */
static void bot_feed_remote(struct hive_bot *bot, enum fsm_event_type type)
{
    if (type == FSM_EV_START) {
        remote_start(bot->remote);
    } else if (type == FSM_EV_RESTART) {
        remote_stop(bot->remote);
        remote_start(bot->remote);
    } else if (type == FSM_EV_STOP || type == FSM_EV_STOP_TIMEOUT) {
        remote_stop(bot->remote);
    }
    hive_after_step(bot->hive, bot);
}

void bot_feed(struct hive_bot *bot, enum fsm_event_type type)
{
    struct fsm_event ev = {type, 0, 0, NULL};
    if (bot->remote)
        return bot_feed_remote(bot, type);
    bot_step(bot, &ev, NULL);
}

/* A remote bot's state changed: bots waiting for it may go. */
static void bot_remote_changed(bool running, void *arg)
{
    struct hive_bot *bot = arg;
    hive_registry_changed(bot->hive);
    if (running)
        hive_bot_now_running(bot);
}

/* A bot for roster bot DEF, stopped, with no socket yet. */
struct hive_bot *bot_new(struct hive *hive, const struct roster_bot *def)
{
    static const enum fsm_event_type fires[HIVE_TIMER_COUNT] = {
        FSM_EV_START_TIMEOUT, FSM_EV_BACKOFF_DONE, FSM_EV_STOP_TIMEOUT, FSM_EV_HEALTHY,
        FSM_EV_WATCHDOG_TIMEOUT};
    struct hive_bot *bot = xcalloc(1, sizeof *bot);
    struct fsm_policy p;
    bot->hive = hive;
    bot->id = xstrdup(def->id);
    bot->def = def;
    bot->stop_signal = def->stop_signal;
    bot->listen_fd = -1;
    bot->proxy_fd = -1;
    bot->stored_fd = -1;
    bot_policy(def, &p);
    fsm_bot_init(&bot->fsm, &p);
    for (int i = 0; i < HIVE_TIMER_COUNT; i++) {
        bot->timers[i] = (struct hive_timer){bot, fires[i], NULL};
        bot->timers[i].ev = evtimer_new(hive->base, bot_timer_cb, &bot->timers[i]);
    }
    char *log_path = xasprintf("%s/%s.log", hive->logs_dir, def->id);
    bot->logcap = logcap_new(hive->base, def->id, log_path, hive->echo);
    logcap_set_rotation(bot->logcap, def->log.max_bytes, def->log.backups);
    free(log_path);
    if (def->remote.url)
        bot->remote = remote_new(hive->base, hive->http, hive->merge, def, bot_remote_changed, bot);
    return bot;
}

/* Release BOT; a worker still alive is killed with its group and reaped. */
void bot_free(struct hive_bot *bot)
{
    if (bot->pid > 0) {
        log_warn("%s: killing pid %d (the supervisor is exiting)", bot->id, (int)bot->pid);
        kill(-bot->pid, SIGKILL);
        kill(bot->pid, SIGKILL);
        while (waitpid(bot->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        hive_pid_set(bot->hive, bot, 0);
    }
    hive_bot_unwant(bot);
    remote_free(bot->remote);
    fsm_bot_free(&bot->fsm);
    cgtree_bot_remove(bot->hive->cgtree, bot->id);
    bot_oom_drop(bot);
    cgtree_bot_limits_remove(bot->hive->roster->work_dir, bot->id);
    for (int i = 0; i < HIVE_TIMER_COUNT; i++)
        event_free(bot->timers[i].ev);
    logcap_free(bot->logcap);
    bot_standin_drop(bot);
    if (bot->listen_fd >= 0)
        close(bot->listen_fd);
    bot_proxy_close(bot);
    bot_store_drop(bot);
    free(bot->bound_bind);
    free(bot->id);
    free(bot);
}

/* A worker was reaped with STATUS. When its cgroup counts an OOM kill more
 * than at its start, or it was ended for an OOM (cgroup v1), the FSM is told
 * why ("out of memory"), not only how. */
void bot_exited(struct hive_bot *bot, int status)
{
    struct fsm_event ev = {FSM_EV_EXITED, 0, 0, NULL};
    if (WIFEXITED(status))
        ev.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        ev.signal = WTERMSIG(status);
    hive_pid_set(bot->hive, bot, 0);
    long long ooms = cgtree_bot_oom_kills(bot->hive->cgtree, bot->hive->roster->work_dir, bot->id);
    bot_oom_drop(bot);
    bool oom = bot->oom_ended || (ooms > bot->oom_base && bot->oom_base >= 0);
    bot_step(bot, &ev, oom ? "out of memory" : NULL);
}

/* FDSTORE=1 or FDSTOREREMOVE=1 from BOT's worker: keep its one inotify
 * instance (taken out of D), or let it go. Anything else is not kept. */
static void bot_fdstore(struct hive_bot *bot, struct notify_msg *n)
{
    struct notify_msg *d = n; /* its descriptors */
    bool named = n->fdname && strcmp(n->fdname, BOT_STORE_NAME) == 0;
    enum fsm_state s = bot->fsm.state;
    if (n->fdstore_remove && named)
        bot_store_drop(bot);
    if (!n->fdstore || d->n_fds == 0)
        return;
    if (!named || d->n_fds != 1 || d->truncated || !sdnotify_fd_is_anon(d->fds[0], "inotify")) {
        log_warn("%s: not keeping what worker pid %d passed (FDSTORE=1 takes one inotify "
                 "instance named %s)",
                 bot->id, (int)bot->pid, BOT_STORE_NAME);
        return;
    }
    /* A worker told to stop (or a retired bot's) has nothing to hand on. */
    if (bot->retired || (s != FSM_STATE_STARTING && s != FSM_STATE_RUNNING))
        return;
    bot_store_drop(bot); /* one per bot: the newer replaces it */
    bot->stored_fd = d->fds[0];
    d->fds[0] = -1;
    log_debug("%s: fd store keeps worker pid %d's inotify instance", bot->id, (int)bot->pid);
}

/* What BOT's worker said of its file queue's watch with READY=1: NOWATCH is
 * why it has none (NULL: it has one). Without a watch, a task file is found
 * by the queue's 30 s rescan only: said loudly, and in /status. */
static void bot_watch(struct hive_bot *bot, const char *nowatch)
{
    if (!nowatch) {
        bot->nowatch[0] = '\0';
        return;
    }
    snprintf(bot->nowatch, sizeof bot->nowatch,
             "no inotify watch (%s): file tasks wait for the queue's rescan", nowatch);
    log_warn("%s: worker pid %d has %s; see fs.inotify.max_user_instances", bot->id, (int)bot->pid,
             bot->nowatch);
}

/* BOT's worker just said READY=1: when we may look at it in /proc (the
 * right to ptrace our own child), tell it so, and it stops waking every
 * half watchdog period while it has no work (at a thousand idle bots those
 * wake-ups were most of the hive's idle CPU). */
static void bot_idle_watch(struct hive_bot *bot)
{
    if (bot->def && bot->def->watchdog > 0 && bot->pid && child_look(bot->pid) != CHILD_UNSEEN)
        merge_send_down(bot->hive->merge, bot->id, CHAN_IDLE_WATCH, "{}", 2);
}

/* One datagram from BOT's worker. */
void bot_notified(struct hive_bot *bot, struct notify_msg *n)
{
    if (n->fdstore || n->fdstore_remove)
        bot_fdstore(bot, n);
    if (n->ready) {
        bot->heartbeat_wall_ns = util_wall_ns();
        bot_watch(bot, n->nowatch);
        bot_idle_watch(bot);
        bot_feed(bot, FSM_EV_READY);
    }
    if (n->watchdog) {
        bot->heartbeat_wall_ns = util_wall_ns(); /* written by the next refresh */
        bot_arm_watchdog(bot);
    }
    if (n->stopping)
        log_info("%s: worker pid %d is stopping", bot->id, (int)bot->pid);
}

/* Point BOT at its new definition DEF; a new address is bound at the next spawn. */
void bot_redefine(struct hive_bot *bot, const struct roster_bot *def)
{
    bot_standin_drop(bot); /* made again below with the new lists */
    if (bot->listen_fd >= 0 &&
        (bot->bound_port != def->port || strcmp(bot->bound_bind, def->bind) != 0)) {
        close(bot->listen_fd);
        bot->listen_fd = -1;
    }
    bot->def = def;
    bot->stop_signal = def->stop_signal;
    if (bot->remote)
        remote_redefine(bot->remote, def);
    logcap_set_rotation(bot->logcap, def->log.max_bytes, def->log.backups);
    bot_set_policy(bot);
    bot_standin_sync(bot);
}
