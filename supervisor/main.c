/*
 * main: the `hive` command. `up` runs the supervisor: it validates the roster,
 * takes the work dir's lock, binds the supervisor's own port and (through
 * hive_new) every bot's port before anything starts — so every refusal is
 * immediate and names what is wrong — optionally detaches, then runs one
 * libevent loop until the last bot has stopped. `check` validates a roster.
 * Every other command is a client of a running hive (cli/client.c).
 *
 * Exit status: 0 clean stop, 1 runtime failure (another hive holds the work
 * dir), 2 usage error, 78 configuration error (roster, a port in use).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "cli/client.h"
#include "common/sdnotify.h"
#include "common/util.h"
#include "config/hostcheck.h"
#include "config/roster.h"
#include "supervisor/child.h"
#include "supervisor/front.h"
#include "supervisor/hive.h"

#define MAIN_EXIT_RUNTIME 1
#define MAIN_EXIT_USAGE 2
#define MAIN_EXIT_CONFIG 78

static const char main_usage_text[] =
    "usage: hive COMMAND [options]\n"
    "\n"
    "Run a hive of AI bot workers from a roster (hive.yaml).\n"
    "\n"
    "  up [-d|--detach]                      start the supervisor and every bot\n"
    "  down                                  stop a running hive\n"
    "  status [BOT...] [--json] [--watch]    the bots: state, pid, port, uptime, restarts,\n"
    "                                        ... (exit 0: all listed running, 3: not)\n"
    "  send BOT|@POOL TEXT...|- [--wait]     queue a task (-: from stdin; --wait: stream it,\n"
    "                                        exit 0/1 on its outcome; @POOL: the pool's bot\n"
    "                                        with the least work)\n"
    "  restart|stop|start BOT...|all         control bots (start also clears fatal)\n"
    "  pause|resume|interrupt BOT...|all     pause, resume a bot, or kill its running task\n"
    "  cancel BOT TASK-ID...                 cancel tasks: dequeue, or kill a running one\n"
    "  reset BOT...|all                      agent bots: start a new conversation (session)\n"
    "  reload                                re-read hive.yaml and apply the difference\n"
    "  prune [--force] BOT...                remove a stopped bot's git worktree (branch kept)\n"
    "  logs [BOT...] [-f|--follow] [-n|--tail N] [--since TIME] [--no-prefix]\n"
    "                                        captured output, all bots interleaved in time\n"
    "  events [BOT...] [--since CURSOR] [--count N]\n"
    "                                        follow the hive's event stream, one line each\n"
    "  top                                   live view of the bots and running tasks' output\n"
    "  check                                 validate the roster\n"
    "  export systemd [--user] [-o DIR] [--force]\n"
    "                                        write the roster as systemd units\n"
    "\n"
    "  -f, --file FILE   the roster (default hive.yaml; for logs only --file)\n"
    "  -h, --help        a command's usage (hive COMMAND --help)\n"
    "  -V, --version     the version\n"
    "\n"
    "Options take their value as `--opt value` or `--opt=value`.\n"
    "Exit status: 0 ok, 1 runtime failure, 2 usage error, 3 (status) a bot not running,\n"
    "78 configuration error.\n";

/* The options of `up` and `check`. */
struct main_opts {
    const char *file;
    bool detach;
};

/* Everything `hive up` holds, released by main_up_free. */
struct main_up {
    struct main_opts opts;
    char *lock_path, *pid_path, *log_path;
    int lock_fd, listen_fd, ready_fd;
    bool pidfile_written, stopping;
    struct event_base *base;
    struct hive *hive;
    struct front *front;
    struct event *signals[3];
    struct event *usr1_ev; /* SIGUSR1: reopen the log files */
    int log_fd;            /* hive.log in the foreground (the log sink); -1 */
};

/* Make sure fds 0-2 are open, so no socket or pipe ever lands on them. */
static void main_fds_sane(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            _exit(MAIN_EXIT_RUNTIME);
}

/* Parse the options of `up` (ALLOW_DETACH) or `check`; -1 on a usage error. */
static int main_parse(int argc, char **argv, bool allow_detach, struct main_opts *o)
{
    static const struct option longs[] = {{"file", required_argument, NULL, 'f'},
                                          {"detach", no_argument, NULL, 'd'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int c;
    o->file = "hive.yaml";
    o->detach = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, allow_detach ? "f:dh" : "f:h", longs, NULL)) != -1) {
        if (c == 'f')
            o->file = optarg;
        else if (c == 'd' && allow_detach)
            o->detach = true;
        else if (c == 'h')
            return 1;
        else
            return -1;
    }
    return optind == argc ? 0 : -1;
}

/* Load the roster at PATH and check that this host can run it (users,
 * cgroup controllers: hostcheck.c), printing every problem; 0 or 78. */
static int main_load(const char *path, struct roster **out)
{
    struct roster_errors errs = {NULL, 0};
    if (roster_load(path, out, &errs) == 0 && hostcheck_roster(*out, &errs) == 0) {
        roster_errors_free(&errs);
        return 0;
    }
    roster_free(*out);
    *out = NULL;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.items[i]);
    fprintf(stderr, "hive: %s: %zu error(s); nothing started\n", path, errs.n);
    roster_errors_free(&errs);
    return MAIN_EXIT_CONFIG;
}

/* HOST as it goes in a URL: wildcards mean this machine, IPv6 in brackets. */
static void main_url_host(const char *host, char *buf, size_t cap)
{
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
        strcmp(host, "[::]") == 0)
        snprintf(buf, cap, "127.0.0.1");
    else if (strchr(host, ':') && host[0] != '[')
        snprintf(buf, cap, "[%s]", host);
    else
        snprintf(buf, cap, "%s", host);
}

/* `hive check`: validate, print a short summary. */
static int main_check(int argc, char **argv)
{
    struct main_opts o;
    struct roster *r;
    int rc = main_parse(argc, argv, false, &o);
    if (rc != 0) {
        fputs("usage: hive check [-f hive.yaml]\n", rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : MAIN_EXIT_USAGE;
    }
    if ((rc = main_load(o.file, &r)) != 0)
        return rc;
    printf("%s: ok: hive %s, %zu bot(s), listen %s:%d, work dir %s\n", r->path, r->name, r->n_bots,
           r->listen_host, r->listen_port, r->work_dir);
    for (size_t i = 0; i < r->n_bots; i++) {
        const struct roster_bot *b = &r->bots[i];
        printf("  %-16s port %-5d %-14s %s\n", b->id, b->port, b->mode, b->adapter.type);
    }
    roster_free(r);
    return 0;
}

/* The pid in the pidfile at PATH when it names a live hive, else 0. */
static pid_t main_pidfile_live(const char *path)
{
    char *text = util_read_file(path, 64, NULL), comm[64] = "";
    pid_t pid = text ? (pid_t)atol(text) : 0;
    free(text);
    if (pid <= 0 || pid == getpid() || (kill(pid, 0) < 0 && errno != EPERM))
        return 0;
    char *comm_path = xasprintf("/proc/%d/comm", (int)pid);
    char *c = util_read_file(comm_path, sizeof comm - 1, NULL);
    free(comm_path);
    if (c)
        snprintf(comm, sizeof comm, "%s", c);
    free(c);
    comm[strcspn(comm, "\n")] = '\0';
    return strcmp(comm, "hive") == 0 ? pid : 0;
}

/* Take the work dir's lock so that two `hive up` never share it; 0 or 1. */
static int main_lock(struct main_up *up, const struct roster *r)
{
    pid_t other;
    up->lock_fd = open(up->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (up->lock_fd < 0) {
        fprintf(stderr, "hive: cannot open %s: %s\n", up->lock_path, strerror(errno));
        return MAIN_EXIT_RUNTIME;
    }
    if (flock(up->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        other = main_pidfile_live(up->pid_path);
        fprintf(stderr, "hive: a hive is already running in %s", r->work_dir);
        if (other > 0)
            fprintf(stderr, " (pid %d)", (int)other);
        fputs("; stop it with `hive down`\n", stderr);
        return MAIN_EXIT_RUNTIME;
    }
    if ((other = main_pidfile_live(up->pid_path)) > 0) {
        fprintf(stderr, "hive: %s names a running hive (pid %d); not starting another\n",
                up->pid_path, (int)other);
        return MAIN_EXIT_RUNTIME;
    }
    return 0;
}

/* -d: fork. The parent waits for the child's verdict (one byte on a pipe:
 * its exit status, 0 once it runs) and exits with it; the child returns. */
static int main_detach(struct main_up *up)
{
    int p[2];
    unsigned char code = MAIN_EXIT_RUNTIME;
    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "hive: pipe: %s\n", strerror(errno));
        return MAIN_EXIT_RUNTIME;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "hive: fork: %s\n", strerror(errno));
        return MAIN_EXIT_RUNTIME;
    }
    if (pid == 0) {
        close(p[0]);
        up->ready_fd = p[1];
        setsid();
        return 0;
    }
    close(p[1]);
    while (read(p[0], &code, 1) < 0 && errno == EINTR)
        ;
    _exit(code);
}

/* Tell a waiting parent (-d) how the start went. */
static void main_ready(struct main_up *up, int code)
{
    unsigned char c = (unsigned char)code;
    if (up->ready_fd < 0)
        return;
    if (write(up->ready_fd, &c, 1) < 0)
        log_warn("cannot report to the parent: %s", strerror(errno));
    close(up->ready_fd);
    up->ready_fd = -1;
}

/* -d, once started: stdout and stderr to hive.log, stdin from /dev/null. */
static void main_redirect(struct main_up *up)
{
    int out = util_open_append(up->log_path, O_WRONLY, 0644);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fflush(NULL);
    if (in >= 0)
        dup2(in, STDIN_FILENO);
    if (out >= 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
    }
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
}

/* Write the pidfile (atomically); 0 or 1. */
static int main_pidfile(struct main_up *up)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (util_write_file_atomic(up->pid_path, text, (size_t)n) < 0) {
        fprintf(stderr, "hive: cannot write %s: %s\n", up->pid_path, strerror(errno));
        return MAIN_EXIT_RUNTIME;
    }
    up->pidfile_written = true;
    return 0;
}

/* Every bot's direct and proxied URL. */
static void main_banner(const struct hive *hive)
{
    const struct roster *r = hive_roster(hive);
    char lhost[80], bhost[80];
    struct hive_bot_info info;
    const char *scheme = r->tls.cert ? "https" : "http";
    main_url_host(r->listen_host, lhost, sizeof lhost);
    printf("hive %s: %zu bot(s), supervisor %s://%s:%d/ (pid %d)\n", r->name, r->n_bots, scheme,
           lhost, r->listen_port, (int)getpid());
    for (size_t i = 0; hive_bot_at(hive, i, &info); i++) {
        main_url_host(info.bind, bhost, sizeof bhost);
        printf("  %-16s http://%s:%d  %s://%s:%d/bots/%s/\n", info.id, bhost, info.port, scheme,
               lhost, r->listen_port, info.id);
    }
    fflush(stdout);
}

/* Every bot has stopped: leave the loop. */
static void main_stopped_cb(void *arg)
{
    struct main_up *up = arg;
    event_base_loopexit(up->base, NULL);
}

/* Stop the hive; asked again while stopping, stop waiting for stragglers. */
static void main_stop(struct main_up *up)
{
    if (up->stopping) {
        hive_shutdown_now(up->hive);
        return;
    }
    up->stopping = true;
    hive_shutdown(up->hive, main_stopped_cb, up);
}

/* POST /api/shutdown: the same stop as Ctrl-C (asking twice changes nothing). */
static void main_shutdown_cb(void *arg)
{
    struct main_up *up = arg;
    if (!up->stopping)
        main_stop(up);
}

/* SIGINT, SIGTERM: stop; SIGHUP: reload the roster. */
static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct main_up *up = arg;
    char err[4096];
    (void)what;
    if (sig != SIGHUP) {
        log_info("%s: stopping the hive%s", strsignal((int)sig),
                 up->stopping ? " now (SIGKILL)" : "");
        main_stop(up);
    } else if (hive_reload(up->hive, err, sizeof err) < 0) {
        log_error("reload refused; nothing changed:\n%s", err);
    }
}

/* The log sink of the foreground: every line of ours into hive.log too,
 * beside the bots' logs (detached, stderr is that file already). */
static void main_log_sink(enum log_level level, const char *message, void *arg)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    struct main_up *up = arg;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    if (up->log_fd < 0)
        up->log_fd = util_open_append(up->log_path, O_WRONLY, 0644);
    if (up->log_fd < 0)
        return;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
    /* One write of a formatted line: dprintf sets up a stdio stream (and
     * its buffer) per call, 7 % of the supervisor's CPU while a
     * thousand bots start. */
    char line[2048];
    int n = snprintf(line, sizeof line, "%s hive[%d] %s: %s\n", stamp, (int)getpid(),
                     (unsigned)level < 4 ? names[level] : "?", message);
    if (n >= (int)sizeof line) {
        n = (int)sizeof line;
        line[n - 1] = '\n';
    }
    if (n > 0 && write(up->log_fd, line, (size_t)n) < 0)
        return; /* nowhere else to say it */
}

/* SIGUSR1: open every log file again (logrotate moved them away). */
static void main_usr1_cb(evutil_socket_t sig, short what, void *arg)
{
    struct main_up *up = arg;
    (void)sig, (void)what;
    if (up->log_fd >= 0)
        close(up->log_fd);
    up->log_fd = -1;
    if (up->opts.detach)
        main_redirect(up);
    hive_reopen_logs(up->hive);
    log_info("SIGUSR1: log files reopened");
}

/* The loop's signal events. */
static void main_signals(struct main_up *up)
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        up->signals[i] = evsignal_new(up->base, sigs[i], main_signal_cb, up);
        event_add(up->signals[i], NULL);
    }
    up->usr1_ev = evsignal_new(up->base, SIGUSR1, main_usr1_cb, up);
    event_add(up->usr1_ev, NULL);
    if (!up->opts.detach)
        log_set_sink(LOG_LEVEL_INFO, main_log_sink, up);
}

/* Bind the supervisor's own port, the hive, the front door; 0 or the status. */
static int main_build(struct main_up *up, struct roster *roster)
{
    char err[1024];
    up->listen_fd = util_listen_tcp(roster->listen_host, roster->listen_port, err, sizeof err);
    if (up->listen_fd < 0) {
        fprintf(stderr, "hive: %s (hive.listen)\n", err);
        roster_free(roster);
        return MAIN_EXIT_CONFIG;
    }
    up->base = event_base_new();
    up->hive = hive_new(up->base, roster, !up->opts.detach, err, sizeof err);
    if (!up->hive) {
        fprintf(stderr, "hive: %s\n", err);
        return MAIN_EXIT_CONFIG;
    }
    up->front = front_new(up->base, up->hive, up->listen_fd, err, sizeof err);
    if (!up->front) {
        fprintf(stderr, "hive: %s\n", err);
        return MAIN_EXIT_RUNTIME;
    }
    up->listen_fd = -1; /* the front door's now */
    front_set_shutdown_cb(up->front, main_shutdown_cb, up);
    main_signals(up);
    return main_pidfile(up);
}

/* The work dir's files of `up`; 0 or 1. */
static int main_paths(struct main_up *up, const struct roster *r)
{
    char *dir = xasprintf("%s/.deia/hive/logs", r->work_dir);
    int rc = util_mkdirs(dir);
    if (rc < 0)
        fprintf(stderr, "hive: cannot create %s: %s\n", dir, strerror(errno));
    free(dir);
    up->lock_path = xasprintf("%s/.deia/hive/hive.lock", r->work_dir);
    up->pid_path = xasprintf("%s/.deia/hive/hive.pid", r->work_dir);
    up->log_path = xasprintf("%s/.deia/hive/logs/hive.log", r->work_dir);
    return rc < 0 ? MAIN_EXIT_RUNTIME : 0;
}

/* Release everything `up` holds; the pidfile goes if it is still ours. */
static void main_up_free(struct main_up *up)
{
    for (int i = 0; i < 3; i++)
        if (up->signals[i])
            event_free(up->signals[i]);
    if (up->usr1_ev)
        event_free(up->usr1_ev);
    log_set_sink(LOG_LEVEL_INFO, NULL, NULL);
    if (up->log_fd >= 0)
        close(up->log_fd);
    front_free(up->front);
    hive_free(up->hive);
    if (up->base)
        event_base_free(up->base);
    if (up->listen_fd >= 0)
        close(up->listen_fd);
    if (up->pidfile_written && main_pidfile_live(up->pid_path) == 0)
        unlink(up->pid_path);
    if (up->lock_fd >= 0)
        close(up->lock_fd);
    free(up->lock_path);
    free(up->pid_path);
    free(up->log_path);
}

/* Every autostart bot runs, or gave up: READY=1 to our own service manager
 * (systemd's Type=notify), when there is one, with a STATUS= naming the
 * failures (systemctl status shows it). */
static void main_hive_ready(void *arg)
{
    struct main_up *up = arg;
    size_t failed = hive_ready_failed(up->hive);
    char msg[160];
    if (failed == 0) {
        log_info("every autostart bot is running");
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=every autostart bot is running");
    } else {
        log_warn("%zu autostart bot(s) did not start (see hive status); ready without them",
                 failed);
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=%zu autostart bot(s) did not start", failed);
    }
    if (sdnotify_send(msg) < 0)
        log_warn("cannot tell the service manager we are ready: %s", strerror(errno));
}

/* Run the hive until it is stopped. */
static int main_run(struct main_up *up)
{
    main_banner(up->hive);
    if (up->opts.detach)
        main_redirect(up);
    main_ready(up, 0);
    log_info("hive %s started (pid %d, %zu bot(s))", hive_roster(up->hive)->name, (int)getpid(),
             hive_bot_count(up->hive));
    hive_set_ready_cb(up->hive, main_hive_ready, up);
    hive_start_all(up->hive);
    event_base_dispatch(up->base);
    log_info("hive %s stopped", hive_roster(up->hive)->name);
    return 0;
}

/* `hive up`. */
static int main_up(int argc, char **argv)
{
    struct main_up up = {.lock_fd = -1, .listen_fd = -1, .ready_fd = -1, .log_fd = -1};
    struct roster *roster = NULL;
    int rc = main_parse(argc, argv, true, &up.opts);
    if (rc != 0) {
        fputs("usage: hive up [-f hive.yaml] [-d]\n", rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : MAIN_EXIT_USAGE;
    }
    log_init("hive", LOG_LEVEL_INFO);
    signal(SIGPIPE, SIG_IGN);
    /* Four descriptors per bot and more per proxied connection: the usual
     * soft limit of 1024 would cap a hive at a couple of hundred bots. */
    if (util_nofile_raise() < 0)
        log_warn("cannot raise the open-files limit: %s", strerror(errno));
    if ((rc = main_load(up.opts.file, &roster)) != 0)
        return rc;
    rc = main_paths(&up, roster);
    if (rc == 0)
        rc = main_lock(&up, roster);
    if (rc == 0 && up.opts.detach)
        rc = main_detach(&up);
    if (rc == 0)
        child_reserve_fds(); /* low numbers, before the bots' descriptors */
    if (rc == 0)
        rc = main_build(&up, roster); /* takes the roster */
    else
        roster_free(roster);
    if (rc == 0)
        rc = main_run(&up);
    main_ready(&up, rc);
    main_up_free(&up);
    return rc;
}

/* Dispatch: up and check here, every other command to the client. */
int main(int argc, char **argv)
{
    main_fds_sane();
    if (argc < 2) {
        fputs(main_usage_text, stderr);
        return MAIN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(main_usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        puts("hive " HIVE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "up"))
        return main_up(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return main_check(argc - 1, argv + 1);
    return client_main(argc - 1, argv + 1);
}
