/*
 * adapter: owns the run of one task through the bot's adapter, from start to
 * the single call of its done callback. The "mock" adapter answers, after
 * delay_ms (on a later loop pass even when 0), with a markdown summary of the
 * task; a task whose content has the exact line "MOCK-FAIL" gets the same
 * summary but ends failed with "mock failure requested", so failed responses
 * can be produced on purpose. The "cli" adapter forks the configured argv (no
 * shell, PATH lookup) in the work dir and in its own process group, feeds the
 * content on a non-blocking stdin pipe (or substitutes it for "{content}"),
 * streams stdout to the chunk callback, keeps the last 4 KiB of stderr for
 * the error, and enforces the timeout (SIGTERM, then SIGKILL after a grace)
 * and the output cap. stdout goes through an incremental UTF-8 decoder
 * (common/utf8.c), so a character cut between two reads waits for its other
 * bytes and bytes that are not UTF-8 become U+FFFD: every chunk and the
 * output are text that JSON can carry, and the chunks joined are the output.
 * The child's environment never holds the hive's hand-over variables (the
 * token, NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*, FDSTORE). Every process of a
 * task, those that left its process group included, is killed when it ends
 * (worker/contain.c: the child enters the task's cgroup before exec). Exec
 * failures are learnt synchronously through a CLOEXEC status pipe, so
 * adapter_start returns NULL for a command that cannot run. Exit is noticed
 * through one SIGCHLD signal event per event_base, shared by this module's
 * jobs; each job waits for its own pid only, because other modules may own
 * other children. As in tmux's job.c a job completes only when its process
 * has been reaped and both output pipes reached EOF; at exit the whole
 * process group (and the task's cgroup) is SIGKILLed and pipes still open
 * 500 ms later (a descendant that escaped both) are given up on.
 */
#include "worker/adapter.h"

#include "common/cgroup.h"
#include "common/spawn.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/util.h"
#include "worker/agent.h"
#include "worker/contain.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ADAPTER_DEFAULT_CAP ((size_t)8 << 20)
#define ADAPTER_DEFAULT_GRACE_MS 2000
#define ADAPTER_STDERR_TAIL 4096
#define ADAPTER_DRAIN_MS 500
#define ADAPTER_READ_SIZE 65536
#define ADAPTER_PREVIEW_CHARS 300
#define ADAPTER_TITLE_CHARS 80
#define ADAPTER_REAP_WAIT_MS 2000

extern char **environ;

/* Why a cli job was stopped before it exited by itself; the first one wins. */
enum adapter_stop {
    ADAPTER_STOP_NONE,
    ADAPTER_STOP_TIMEOUT,
    ADAPTER_STOP_INTERRUPT,
    ADAPTER_STOP_CAP,
};

/* Where the child failed before its program ran, sent on the status pipe. */
enum adapter_child_stage {
    ADAPTER_CHILD_EXEC,
    ADAPTER_CHILD_CHDIR,
    ADAPTER_CHILD_SETUP,
    ADAPTER_CHILD_CGROUP,
};

struct adapter_child_failure {
    int stage;
    int err;
};

/* A growable NULL-terminated array of owned strings (argv, envp). */
struct adapter_strv {
    char **items;
    size_t n;
    size_t cap;
};

/* The SIGCHLD event of one event_base, alive while it has cli jobs. */
struct adapter_sigchld {
    struct event_base *base;
    struct event *ev;
    int users;
    struct adapter_sigchld *next;
};

struct adapter_job {
    struct event_base *base;
    enum adapter_type type;
    adapter_chunk_cb chunk;
    adapter_done_cb done;
    void *arg;
    int64_t start_ns;
    double duration;
    struct event *finish_ev;  /* calls done on the next loop pass */
    bool finishing;           /* finish_ev is active; nothing else may happen */
    bool in_callback;         /* inside the chunk or done callback */
    bool abandoned;           /* adapter_abandon ran inside a callback */
    struct util_buf output;   /* valid UTF-8, at most cap bytes */
    struct utf8_decoder utf8; /* carries a character cut between two reads */
    char *error;              /* a fixed error (mock, lost child); NULL otherwise */

    /* mock */
    struct event *delay_ev;
    char *mock_text;
    bool mock_fail;

    /* cli */
    pid_t pid;
    bool exited;
    int status;
    enum adapter_stop stop;
    double timeout_s;
    int grace_ms;
    size_t cap;
    int in_fd, out_fd, err_fd;
    struct event *in_ev, *out_ev, *err_ev, *timeout_ev, *kill_ev, *drain_ev;
    char *input;
    size_t input_len, input_off;
    char err_tail[ADAPTER_STDERR_TAIL];
    size_t err_len;
    struct adapter_sigchld *sigchld;
    struct contain_job *contain; /* every process of the task, not only its group */
    /* agent CLIs: stdout is their JSON stream, read by worker/agentstream.c */
    struct agentstream *stream;
    bool resumed; /* started with a session to resume */
    void (*tool)(const char *name, const char *summary, void *arg);
    struct adapter_job *next; /* in adapter_jobs, while sigchld is set */
};

/* What the forked child needs, all prepared before fork. */
struct adapter_spawn {
    char **argv;
    char **envp;
    const char *work_dir;
    int in_fd, out_fd, err_fd, status_fd;
    int cgroup_fd;     /* the task's cgroup.procs, or -1 */
    int cgroup_dir_fd; /* its folder, to start the child inside, or -1 */
    bool in_cgroup;    /* started inside: no move */
    volatile bool ran; /* the child's first instruction ran (spawn.h) */
    int max_fd;
};

static struct adapter_sigchld *adapter_sigchlds;
static struct adapter_job *adapter_jobs;

/* Append S (owned from now on) to V, keeping the array NULL-terminated. */
static void adapter_strv_push(struct adapter_strv *v, char *s)
{
    if (v->n + 2 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->items = xrealloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->n++] = s;
    v->items[v->n] = NULL;
}

/* Free a NULL-terminated array of strings and the array. */
static void adapter_strv_free(char **items)
{
    if (!items)
        return;
    for (char **p = items; *p; p++)
        free(*p);
    free(items);
}

/* Byte length of the first MAX UTF-8 characters of S (never inside one). */
static size_t adapter_utf8_prefix(const char *s, size_t len, size_t max)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && ++chars > max)
            return i;
    }
    return len;
}

/* The event or abort: libevent fails here only when memory is exhausted. */
static struct event *adapter_event_new(struct event_base *base, evutil_socket_t fd, short what,
                                       event_callback_fn cb, void *arg)
{
    struct event *ev = event_new(base, fd, what, cb, arg);
    if (!ev) {
        log_error("adapter: cannot create an event");
        abort();
    }
    return ev;
}

/* Arm the one-shot timer EV to fire after MS milliseconds. */
static void adapter_timer_add_ms(struct event *ev, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* Delete EV if it exists. */
static void adapter_event_stop(struct event *ev)
{
    if (ev)
        event_del(ev);
}

/* Free EV if it exists. */
static void adapter_event_release(struct event *ev)
{
    if (ev)
        event_free(ev);
}

/* Stop watching the pipe of EV and close *FD, which means EOF for the job. */
static void adapter_pipe_close(struct event *ev, int *fd)
{
    adapter_event_stop(ev);
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- the SIGCHLD registry ---------------------------------------------- */

static void adapter_cli_check_exit(struct adapter_job *job);

/* SIGCHLD: look at each running job of this base (only its own pid). */
static void adapter_sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    struct adapter_sigchld *s = arg;
    (void)sig;
    (void)what;
    for (struct adapter_job *job = adapter_jobs; job; job = job->next)
        if (job->base == s->base)
            adapter_cli_check_exit(job);
}

/* Find or create BASE's SIGCHLD event and count one more user; NULL on failure. */
static struct adapter_sigchld *adapter_sigchld_ref(struct event_base *base)
{
    struct adapter_sigchld *s;
    for (s = adapter_sigchlds; s; s = s->next)
        if (s->base == base)
            break;
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->base = base;
        s->ev = evsignal_new(base, SIGCHLD, adapter_sigchld_cb, s);
        if (!s->ev || evsignal_add(s->ev, NULL) < 0) {
            adapter_event_release(s->ev);
            free(s);
            return NULL;
        }
        s->next = adapter_sigchlds;
        adapter_sigchlds = s;
    }
    s->users++;
    return s;
}

/* Drop one user of S; the last one frees the event. */
static void adapter_sigchld_unref(struct adapter_sigchld *s)
{
    if (--s->users > 0)
        return;
    for (struct adapter_sigchld **p = &adapter_sigchlds; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    event_free(s->ev);
    free(s);
}

/* Enter JOB in the registry of running jobs, with its base's SIGCHLD event. */
static int adapter_registry_add(struct adapter_job *job)
{
    job->sigchld = adapter_sigchld_ref(job->base);
    if (!job->sigchld)
        return -1;
    job->next = adapter_jobs;
    adapter_jobs = job;
    return 0;
}

/* Take JOB out of the registry, if it is in. */
static void adapter_registry_remove(struct adapter_job *job)
{
    if (!job->sigchld)
        return;
    for (struct adapter_job **p = &adapter_jobs; *p; p = &(*p)->next) {
        if (*p == job) {
            *p = job->next;
            break;
        }
    }
    adapter_sigchld_unref(job->sigchld);
    job->sigchld = NULL;
}

/* ---- the job record ------------------------------------------------------ */

static void adapter_finish_cb(evutil_socket_t fd, short what, void *arg);

/* A job record with the parts every adapter has. */
static struct adapter_job *adapter_job_new(struct event_base *base, enum adapter_type type,
                                           adapter_chunk_cb chunk, adapter_done_cb done, void *arg)
{
    struct adapter_job *job = xcalloc(1, sizeof *job);
    job->base = base;
    job->type = type;
    job->chunk = chunk;
    job->done = done;
    job->arg = arg;
    job->start_ns = util_mono_ns();
    job->in_fd = job->out_fd = job->err_fd = -1;
    job->finish_ev = adapter_event_new(base, -1, 0, adapter_finish_cb, job);
    util_buf_add(&job->output, "", 0);
    return job;
}

/* Release everything JOB owns: events, pipes, buffers, its registry entry. */
static void adapter_job_free(struct adapter_job *job)
{
    adapter_registry_remove(job);
    contain_job_free(job->contain);
    agentstream_free(job->stream);
    struct event *events[] = {job->finish_ev, job->delay_ev,   job->in_ev,   job->out_ev,
                              job->err_ev,    job->timeout_ev, job->kill_ev, job->drain_ev};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        adapter_event_release(events[i]);
    int fds[] = {job->in_fd, job->out_fd, job->err_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(job->output.data);
    free(job->error);
    free(job->mock_text);
    free(job->input);
    free(job);
}

/* Stop every watcher of JOB so nothing but finish_ev can run any more. */
static void adapter_job_quiesce(struct adapter_job *job)
{
    struct event *events[] = {job->delay_ev,   job->in_ev,   job->out_ev,  job->err_ev,
                              job->timeout_ev, job->kill_ev, job->drain_ev};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        adapter_event_stop(events[i]);
}

/* Mark JOB finished: done runs on the next loop pass, never from here. */
static void adapter_finish(struct adapter_job *job)
{
    if (job->finishing)
        return;
    job->finishing = true;
    job->duration = (double)(util_mono_ns() - job->start_ns) / 1e9;
    adapter_job_quiesce(job);
    event_active(job->finish_ev, EV_TIMEOUT, 1);
}

/* Pass stdout bytes to the chunk callback; false when the callback abandoned
 * the job, which is then freed and must not be touched. */
static bool adapter_emit(struct adapter_job *job, const char *data, size_t len)
{
    if (!job->chunk || len == 0)
        return true;
    job->in_callback = true;
    job->chunk(data, len, job->arg);
    job->in_callback = false;
    if (!job->abandoned)
        return true;
    adapter_job_free(job);
    return false;
}

/* The stderr tail trimmed of surrounding white space (and of a character cut
 * in half at its start). */
static char *adapter_cli_stderr_tail(const struct adapter_job *job)
{
    const char *s = job->err_tail;
    size_t len = job->err_len;
    while (len > 0 && ((unsigned char)*s & 0xC0) == 0x80 && len == ADAPTER_STDERR_TAIL) {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", *s)) {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", s[len - 1]))
        len--;
    return utf8_sanitize(s, len, NULL);
}

/* The error text of a finished cli job; NULL when it succeeded. */
static char *adapter_cli_error(const struct adapter_job *job)
{
    switch (job->stop) {
    case ADAPTER_STOP_TIMEOUT:
        return xasprintf("timed out after %g s", job->timeout_s);
    case ADAPTER_STOP_INTERRUPT:
        return xstrdup("interrupted");
    case ADAPTER_STOP_CAP:
        return xasprintf("output exceeded %zu bytes", job->cap);
    case ADAPTER_STOP_NONE:
        break;
    }
    if (WIFSIGNALED(job->status) && WTERMSIG(job->status) == SIGKILL &&
        contain_job_oom_killed(job->contain))
        return xstrdup("out of memory (killed by signal 9)");
    if (WIFSIGNALED(job->status))
        return xasprintf("killed by signal %d", WTERMSIG(job->status));
    if (!WIFEXITED(job->status) || WEXITSTATUS(job->status) == 0)
        return NULL;
    char *tail = adapter_cli_stderr_tail(job);
    char *error = tail[0] ? xasprintf("exit status %d: %s", WEXITSTATUS(job->status), tail)
                          : xasprintf("exit status %d", WEXITSTATUS(job->status));
    free(tail);
    return error;
}

/* The outcome of an agent CLI or a plain command into RESULT: what its
 * stream said (worker/agent.c decides), a usage limit in a plain command's
 * error. False when a callback abandoned the job (freed here then). */
static bool adapter_agent_outcome(struct adapter_job *job, struct adapter_result *result)
{
    struct agentstream_outcome o = {0};
    char *tail = adapter_cli_stderr_tail(job);
    bool stopped = job->stop != ADAPTER_STOP_NONE || job->error;
    if (job->stream) {
        job->in_callback = true;
        agentstream_finish(job->stream, agent_now(), &o);
        job->in_callback = false;
        if (job->abandoned) {
            agentstream_outcome_clear(&o);
            free(tail);
            free(result->error);
            adapter_job_free(job);
            return false;
        }
    }
    agent_outcome(job->stream != NULL, stopped, job->resumed, &o, tail, job->output.data, result);
    agentstream_outcome_clear(&o);
    free(tail);
    return true;
}

/* Next loop pass after adapter_finish: report the result once, free the job. */
static void adapter_finish_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    (void)fd;
    (void)what;
    struct adapter_result result = {0};
    if (job->error)
        result.error = xstrdup(job->error);
    else if (job->type == ADAPTER_CLI)
        result.error = adapter_cli_error(job);
    if (job->type == ADAPTER_CLI && !adapter_agent_outcome(job, &result))
        return;
    result.success = result.error == NULL;
    result.output = job->output.data;
    result.output_len = job->output.len;
    result.duration_seconds = job->duration;
    job->output.data = NULL;
    job->in_callback = true;
    job->done(&result, job->arg);
    free(result.output);
    free(result.error);
    free(result.session_id);
    adapter_job_free(job);
}

/* ---- mock ------------------------------------------------------------------ */

/* The first non-empty line of CONTENT without leading '#' and spaces, at most
 * 80 characters, into TITLE. */
static void adapter_mock_title(const char *content, char *title, size_t cap)
{
    const char *line = content;
    while (*line) {
        size_t len = strcspn(line, "\n");
        const char *next = line + len + (line[len] == '\n');
        while (len > 0 && strchr("# \t", *line)) {
            line++;
            len--;
        }
        while (len > 0 && strchr(" \t\r", line[len - 1]))
            len--;
        if (len > 0) {
            len = adapter_utf8_prefix(line, len, ADAPTER_TITLE_CHARS);
            snprintf(title, cap, "%.*s", (int)len, line);
            return;
        }
        line = next;
    }
    snprintf(title, cap, "(untitled)");
}

/* True when CONTENT has a line that is exactly "MOCK-FAIL" (CR LF allowed). */
static bool adapter_mock_fail_requested(const char *content)
{
    for (const char *line = content; *line;) {
        size_t len = strcspn(line, "\n");
        if ((len == 9 || (len == 10 && line[9] == '\r')) && strncmp(line, "MOCK-FAIL", 9) == 0)
            return true;
        line += len + (line[len] == '\n');
    }
    return false;
}

/* The markdown summary the mock adapter answers with. */
static char *adapter_mock_summary(const struct adapter_task *task)
{
    const char *content = task->content ? task->content : "";
    size_t size = strlen(content);
    char title[ADAPTER_TITLE_CHARS * 4 + 1];
    adapter_mock_title(content, title, sizeof title);
    size_t preview = adapter_utf8_prefix(content, size, ADAPTER_PREVIEW_CHARS);
    return xasprintf("# Mock response to %s\n\n**Bot:** %s\n**Source:** %s\n**Title:** %s\n"
                     "**Size:** %zu bytes\n\n## Preview\n\n%.*s\n",
                     task->task_id ? task->task_id : "", task->bot_id ? task->bot_id : "",
                     task->source ? task->source : "", title, size, (int)preview, content);
}

/* The mock's delay is over: emit the summary as one chunk and finish. */
static void adapter_mock_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    (void)fd;
    (void)what;
    util_buf_add(&job->output, job->mock_text, strlen(job->mock_text));
    if (job->mock_fail)
        job->error = xstrdup("mock failure requested");
    if (!adapter_emit(job, job->output.data, job->output.len))
        return;
    adapter_finish(job);
}

/* Start a mock job: its answer comes from a timer, never synchronously. */
static struct adapter_job *adapter_mock_new(struct event_base *base,
                                            const struct adapter_config *config,
                                            const struct adapter_task *task, adapter_chunk_cb chunk,
                                            adapter_done_cb done, void *arg)
{
    struct adapter_job *job = adapter_job_new(base, ADAPTER_MOCK, chunk, done, arg);
    char *summary = adapter_mock_summary(task);
    job->mock_text = utf8_sanitize(summary, strlen(summary), NULL);
    free(summary);
    job->mock_fail = adapter_mock_fail_requested(task->content ? task->content : "");
    job->delay_ev = adapter_event_new(base, -1, 0, adapter_mock_delay_cb, job);
    adapter_timer_add_ms(job->delay_ev, config->delay_ms > 0 ? config->delay_ms : 0);
    return job;
}

/* ---- cli: the child's side ------------------------------------------------- */

/* In the child: tell the parent why the program could not run, then exit. */
static void adapter_child_fail(int status_fd, int stage)
{
    struct adapter_child_failure f = {.stage = stage, .err = errno};
    ssize_t unused = write(status_fd, &f, sizeof f);
    (void)unused;
    _exit(127);
}

/* In the child: make every descriptor above 2 close on exec. */
static void adapter_child_cloexec_all(int max_fd)
{
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    for (int fd = 3; fd < max_fd; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC))
            fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
}

/* In the child: put FD on TARGET (the copy above 2 first, so that the three
 * pipes can never overwrite one another). */
static int adapter_child_place(int fd, int target)
{
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (high < 0 || dup2(high, target) < 0)
        return -1;
    return 0;
}

/* In the child (async-signal-safe calls only): default signal dispositions,
 * own process group, pipes on 0-2, the work dir, then exec. Never returns. */
static void adapter_child_exec(const struct adapter_spawn *sp)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    setpgid(0, 0);
    /* Into the task's cgroup before anything of it can fork. */
    if (!sp->in_cgroup && sp->cgroup_fd >= 0 && cgroup_enter_fd(sp->cgroup_fd) < 0)
        adapter_child_fail(sp->status_fd, ADAPTER_CHILD_CGROUP);
    /* Its own process group keeps it out of the worker's group, so make it
     * die with the worker instead: no adapter outlives a killed bot. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (adapter_child_place(sp->in_fd, STDIN_FILENO) < 0 ||
        adapter_child_place(sp->out_fd, STDOUT_FILENO) < 0 ||
        adapter_child_place(sp->err_fd, STDERR_FILENO) < 0)
        adapter_child_fail(sp->status_fd, ADAPTER_CHILD_SETUP);
    if (sp->work_dir && sp->work_dir[0] && chdir(sp->work_dir) < 0)
        adapter_child_fail(sp->status_fd, ADAPTER_CHILD_CHDIR);
    adapter_child_cloexec_all(sp->max_fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    util_nofile_restore();
    execvpe(sp->argv[0], sp->argv, sp->envp);
    adapter_child_fail(sp->status_fd, ADAPTER_CHILD_EXEC);
}

/* ---- cli: argv and environment ------------------------------------------- */

/* ARG with every "{content}", "{task_id}" and "{bot_id}" replaced; sets
 * *USED_CONTENT when "{content}" was among them. */
static char *adapter_cli_subst(const char *arg, const struct adapter_task *task, bool *used_content)
{
    const char *names[] = {"{content}", "{task_id}", "{bot_id}"};
    const char *values[] = {task->content, task->task_id, task->bot_id};
    struct util_buf b = {0};
    util_buf_add(&b, "", 0);
    while (*arg) {
        size_t i;
        for (i = 0; i < 3; i++)
            if (strncmp(arg, names[i], strlen(names[i])) == 0)
                break;
        if (i == 3) {
            util_buf_add(&b, arg++, 1);
            continue;
        }
        const char *value = values[i] ? values[i] : "";
        util_buf_add(&b, value, strlen(value));
        arg += strlen(names[i]);
        *used_content |= i == 0;
    }
    return b.data;
}

/* The child's argv after substitution. */
static char **adapter_cli_argv(char **argv, const struct adapter_task *task, bool *used_content)
{
    struct adapter_strv v = {0};
    for (char **p = argv; *p; p++)
        adapter_strv_push(&v, adapter_cli_subst(*p, task, used_content));
    return v.items;
}

/* True when the "NAME=value" entry ENTRY is named like NAME (itself "NAME" or
 * "NAME=..."). */
static bool adapter_env_same_name(const char *entry, const char *name)
{
    size_t len = strcspn(name, "=");
    return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

/* Remove every entry named like NAME from V. */
static void adapter_env_unset(struct adapter_strv *v, const char *name)
{
    size_t kept = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (adapter_env_same_name(v->items[i], name))
            free(v->items[i]);
        else
            v->items[kept++] = v->items[i];
    }
    v->n = kept;
    if (v->items)
        v->items[kept] = NULL;
}

/* Set ENTRY ("NAME=value", owned from now on) in V, replacing its namesake. */
static void adapter_env_put(struct adapter_strv *v, char *entry)
{
    adapter_env_unset(v, entry);
    adapter_strv_push(v, entry);
}

/* True when the "NAME=value" ENTRY is one of the hive's hand-over variables
 * (SPEC §3.1): the token that opens the whole hive, and the service
 * manager's protocol variables, which describe the worker, not the task. */
static bool adapter_env_handover(const char *entry)
{
    static const char *const names[] = {"HIVE_TOKEN", "HIVE_SUPERVISOR_PID", "NOTIFY_SOCKET",
                                        "FDSTORE"};
    static const char *const prefixes[] = {"LISTEN_", "WATCHDOG_"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (adapter_env_same_name(entry, names[i]))
            return true;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* The child's environment: ours without the hand-over variables, minus
 * env_remove, plus env_set, plus the HIVE_BOT_ID, HIVE_TASK_ID and
 * HIVE_TASK_SOURCE of the task. */
static char **adapter_cli_envp(const struct adapter_config *config, const struct adapter_task *task)
{
    struct adapter_strv v = {0};
    for (char **e = environ; e && *e; e++)
        if (!adapter_env_handover(*e))
            adapter_strv_push(&v, xstrdup(*e));
    for (char **r = config->env_remove; r && *r; r++)
        adapter_env_unset(&v, *r);
    for (char **s = config->env_set; s && *s; s++)
        if (strchr(*s, '=') && **s != '=')
            adapter_env_put(&v, xstrdup(*s));
    adapter_env_put(&v, xasprintf("HIVE_BOT_ID=%s", task->bot_id ? task->bot_id : ""));
    adapter_env_put(&v, xasprintf("HIVE_TASK_ID=%s", task->task_id ? task->task_id : ""));
    adapter_env_put(&v, xasprintf("HIVE_TASK_SOURCE=%s", task->source ? task->source : ""));
    return v.items;
}

/* ---- cli: spawning --------------------------------------------------------- */

/* Close each of the N descriptors that is open. */
static void adapter_close_fds(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The pipes of a child: [0] stdin, [1] stdout, [2] stderr, [3] exec status;
 * each as {read end, write end}. stdin is /dev/null when NULL_STDIN. */
static int adapter_cli_pipes(int p[4][2], bool null_stdin)
{
    for (int i = 0; i < 4; i++)
        p[i][0] = p[i][1] = -1;
    if (null_stdin) {
        p[0][0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (p[0][0] < 0)
            return -1;
    } else if (pipe2(p[0], O_CLOEXEC) < 0) {
        return -1;
    }
    for (int i = 1; i < 4; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0)
            return -1;
    return 0;
}

/* The stack of a child started inside its task's cgroup (one at a time: we
 * wait until it has exec'd); execvpe's path search is its deepest use. */
#define ADAPTER_CHILD_STACK (128 * 1024)
static _Alignas(64) char adapter_child_stack[ADAPTER_CHILD_STACK];

/* The child started by spawn_into_cgroup, on its own stack. */
__attribute__((no_sanitize("address"))) static int adapter_child_main(void *arg)
{
    struct adapter_spawn *sp = arg;
    sp->ran = true;
    adapter_child_exec(sp);
    return 127;
}

/* Start the child on our memory, as vfork() does: no page tables are
 * copied (fork() of the worker cost more than the whole run of a short
 * command). With a task cgroup it starts right inside it (common/spawn.h):
 * a child that moves itself there waits 8-9 ms for the kernel when no other
 * move came just before, each task. The child only makes system calls on
 * data prepared before (adapter_child_exec) and never returns; all signals
 * are blocked around it so that no handler of ours runs in it, and the
 * parent's mask is restored. */
static pid_t adapter_cli_fork(struct adapter_spawn *sp)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = -1;
    if (sp->cgroup_dir_fd >= 0 && spawn_into_cgroup_usable()) {
        sp->in_cgroup = true;
        pid = spawn_into_cgroup(sp->cgroup_dir_fd, 0, adapter_child_stack,
                                sizeof adapter_child_stack, adapter_child_main, sp, &sp->ran);
        sp->in_cgroup = pid > 0;
    }
    if (pid < 0 && (pid = vfork()) == 0)
        adapter_child_exec(sp);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}

/* Wait for the status pipe: 0 once the program runs (EOF), else -1 with the
 * child's failure in F. */
static int adapter_cli_exec_status(int fd, struct adapter_child_failure *f)
{
    ssize_t n;
    do
        n = read(fd, f, sizeof *f);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *f ? -1 : 0;
}

/* Reap PID, which has exited or is about to. */
static void adapter_reap_now(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Describe a child that failed before its program ran. */
static void adapter_cli_describe_failure(const struct adapter_child_failure *f, const char *cmd,
                                         const char *work_dir, char *err, size_t errlen)
{
    if (f->stage == ADAPTER_CHILD_CHDIR)
        snprintf(err, errlen, "cannot run %s: work dir %s: %s", cmd, work_dir, strerror(f->err));
    else if (f->stage == ADAPTER_CHILD_CGROUP)
        snprintf(err, errlen, "cannot run %s: cannot join the task's cgroup: %s", cmd,
                 strerror(f->err));
    else
        snprintf(err, errlen, "cannot run %s: %s", cmd, strerror(f->err));
}

/* The highest descriptor number worth marking close-on-exec in the child. */
static int adapter_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536)
        return 65536;
    return (int)rl.rlim_cur;
}

/* Fork and exec SP for JOB; keeps the parent's pipe ends. -1 with ERR when
 * the program could not be started (the child is reaped then). */
static int adapter_cli_fork_exec(struct adapter_job *job, struct adapter_spawn *sp, int p[4][2],
                                 char *err, size_t errlen)
{
    sp->in_fd = p[0][0];
    sp->out_fd = p[1][1];
    sp->err_fd = p[2][1];
    sp->status_fd = p[3][1];
    sp->cgroup_fd = contain_job_fd(job->contain);
    sp->cgroup_dir_fd = contain_job_dir_fd(job->contain);
    sp->max_fd = adapter_fd_limit();
    job->pid = adapter_cli_fork(sp);
    if (job->pid < 0) {
        snprintf(err, errlen, "cannot run %s: fork: %s", sp->argv[0], strerror(errno));
        return -1;
    }
    contain_job_started(job->contain, job->pid);
    /* No setpgid() here: vfork() returns once the child has called its own
     * and exec'd, so kill(-pid) works at once. */
    int child_ends[] = {p[0][0], p[1][1], p[2][1], p[3][1]};
    adapter_close_fds(child_ends, 4);
    p[0][0] = p[1][1] = p[2][1] = p[3][1] = -1;
    struct adapter_child_failure f;
    if (adapter_cli_exec_status(p[3][0], &f) == 0)
        return 0;
    adapter_reap_now(job->pid);
    job->pid = 0;
    adapter_cli_describe_failure(&f, sp->argv[0], sp->work_dir, err, errlen);
    errno = f.err;
    return -1;
}

/* Start the child of JOB with its pipes; -1 with ERR when it cannot run. */
static int adapter_cli_spawn(struct adapter_job *job, const struct adapter_config *config,
                             const struct adapter_task *task, char *err, size_t errlen)
{
    bool used_content = false;
    struct adapter_spawn sp = {.work_dir = config->work_dir};
    sp.argv = adapter_cli_argv(config->argv, task, &used_content);
    if (config->dialect != AGENTSTREAM_NONE)
        agent_resume_argv(&sp.argv, config->resume_flag, task->resume_session);
    sp.envp = adapter_cli_envp(config, task);
    int p[4][2];
    int rc = -1;
    if (adapter_cli_pipes(p, used_content) < 0) {
        snprintf(err, errlen, "cannot run %s: pipe: %s", sp.argv[0], strerror(errno));
    } else if (adapter_registry_add(job) < 0) {
        snprintf(err, errlen, "cannot run %s: cannot watch SIGCHLD", sp.argv[0]);
        errno = ENOMEM; /* libevent fails here only without memory */
    } else if (!(job->contain = contain_job_new(task->task_id))) {
        snprintf(err, errlen, "cannot run %s: cannot make the task's cgroup: %s", sp.argv[0],
                 strerror(errno));
    } else {
        rc = adapter_cli_fork_exec(job, &sp, p, err, errlen);
    }
    int saved = errno;
    if (rc == 0) {
        job->in_fd = used_content ? -1 : p[0][1];
        job->out_fd = p[1][0];
        job->err_fd = p[2][0];
        p[0][1] = p[1][0] = p[2][0] = -1;
        if (!used_content)
            job->input = xstrdup(task->content ? task->content : "");
    }
    for (int i = 0; i < 4; i++)
        adapter_close_fds(p[i], 2);
    adapter_strv_free(sp.argv);
    adapter_strv_free(sp.envp);
    errno = saved;
    return rc;
}

/* ---- cli: the running job ---------------------------------------------------- */

/* Send SIG to JOB's process group (its pid too, should the group be gone). */
static void adapter_cli_signal(struct adapter_job *job, int sig)
{
    if (job->pid <= 0 || job->exited)
        return;
    if (kill(-job->pid, sig) < 0)
        kill(job->pid, sig);
}

/* The job can complete once reaped with both output pipes at EOF. */
static void adapter_cli_maybe_finish(struct adapter_job *job)
{
    if (job->exited && job->out_fd < 0 && job->err_fd < 0)
        adapter_finish(job);
}

/* Stop feeding stdin: all written, or the child does not read it. */
static void adapter_cli_close_stdin(struct adapter_job *job)
{
    adapter_pipe_close(job->in_ev, &job->in_fd);
    free(job->input);
    job->input = NULL;
}

/* Record that JOB's process was reaped with STATUS; kill what is left of its
 * group and give the pipes ADAPTER_DRAIN_MS more to reach EOF. */
static void adapter_cli_exited(struct adapter_job *job, int status)
{
    job->exited = true;
    job->status = status;
    adapter_event_stop(job->timeout_ev);
    adapter_event_stop(job->kill_ev);
    adapter_cli_close_stdin(job);
    adapter_timer_add_ms(job->drain_ev, ADAPTER_DRAIN_MS);
    adapter_cli_maybe_finish(job);
}

/* Has JOB's process exited? If so, kill its group while the leader is still
 * a zombie (so the group id cannot have been reused), then reap it. */
static void adapter_cli_check_exit(struct adapter_job *job)
{
    if (job->pid <= 0 || job->exited || job->finishing)
        return;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)job->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
        if (errno != ECHILD)
            return;
        job->error = xstrdup("the process was reaped by someone else");
        adapter_cli_exited(job, 0);
        return;
    }
    if (si.si_pid != job->pid)
        return;
    contain_job_kill(job->contain);
    kill(-job->pid, SIGKILL);
    int status = 0;
    while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
        ;
    adapter_cli_exited(job, status);
}

/* One of the output pipes reached EOF. */
static void adapter_cli_pipe_done(struct adapter_job *job)
{
    if (job->out_fd < 0 && job->err_fd < 0)
        adapter_cli_check_exit(job); /* in case a SIGCHLD was missed */
    adapter_cli_maybe_finish(job);
}

/* Over the output cap: kill the group and stop reading stdout. */
static void adapter_cli_over_cap(struct adapter_job *job)
{
    if (job->stop == ADAPTER_STOP_NONE)
        job->stop = ADAPTER_STOP_CAP;
    adapter_cli_signal(job, SIGKILL);
    adapter_pipe_close(job->out_ev, &job->out_fd);
    adapter_cli_pipe_done(job);
}

/* Keep the valid UTF-8 TEXT (up to the cap, never cutting a character) and
 * pass what was kept on as a chunk, so the chunks joined are the output;
 * false when the callback abandoned the job. Past the cap the job stops. */
static bool adapter_cli_take(struct adapter_job *job, const struct util_buf *text)
{
    size_t room = job->cap - job->output.len;
    size_t keep = utf8_cut(text->data, text->len, room);
    util_buf_add(&job->output, text->data, keep);
    if (!adapter_emit(job, text->data, keep))
        return false;
    if (text->len > room && !job->finishing)
        adapter_cli_over_cap(job);
    return true;
}

/* The agent's assistant text (the stream's sink): kept and passed on as
 * the output, up to the cap, as adapter_cli_take does for plain stdout. */
static void adapter_stream_text(void *arg, const char *data, size_t len)
{
    struct adapter_job *job = arg;
    if (job->abandoned || job->stop == ADAPTER_STOP_CAP)
        return;
    size_t room = job->cap - job->output.len;
    size_t keep = utf8_cut(data, len, room);
    util_buf_add(&job->output, data, keep);
    if (job->chunk && keep > 0) {
        job->in_callback = true;
        job->chunk(data, keep, job->arg);
        job->in_callback = false;
    }
    if (len > room && !job->abandoned && !job->finishing)
        adapter_cli_over_cap(job);
}

/* The agent used a tool (the stream's sink): tell the caller. */
static void adapter_stream_tool(void *arg, const char *name, const char *summary)
{
    struct adapter_job *job = arg;
    if (job->abandoned || !job->tool)
        return;
    job->in_callback = true;
    job->tool(name, summary, job->arg);
    job->in_callback = false;
}

/* Feed decoded stdout to the agent's stream reader; false when a callback
 * abandoned the job (freed here then). A line over the cap ends the job. */
static bool adapter_stream_take(struct adapter_job *job, const struct util_buf *text)
{
    int rc = text->len ? agentstream_feed(job->stream, text->data, text->len) : 0;
    if (job->abandoned) {
        adapter_job_free(job);
        return false;
    }
    if (rc < 0 && !job->finishing && job->stop == ADAPTER_STOP_NONE) {
        job->stop = ADAPTER_STOP_CAP;
        adapter_cli_signal(job, SIGKILL);
    }
    return true;
}

/* stdout is readable: decode it (a character cut by the read waits for its
 * next bytes, bad bytes become U+FFFD) and take it; at EOF a dangling
 * character becomes U+FFFD. */
static void adapter_cli_stdout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    char buf[ADAPTER_READ_SIZE];
    (void)what;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    struct util_buf text = {0};
    if (n > 0)
        utf8_decoder_feed(&job->utf8, buf, (size_t)n, &text);
    else
        utf8_decoder_flush(&job->utf8, &text);
    bool alive = job->stream ? adapter_stream_take(job, &text) : adapter_cli_take(job, &text);
    free(text.data);
    if (!alive || n > 0 || job->out_fd < 0)
        return;
    adapter_pipe_close(job->out_ev, &job->out_fd);
    adapter_cli_pipe_done(job);
}

/* Keep the last ADAPTER_STDERR_TAIL bytes of stderr, with DATA appended. */
static void adapter_cli_keep_stderr(struct adapter_job *job, const char *data, size_t len)
{
    if (len >= ADAPTER_STDERR_TAIL) {
        memcpy(job->err_tail, data + len - ADAPTER_STDERR_TAIL, ADAPTER_STDERR_TAIL);
        job->err_len = ADAPTER_STDERR_TAIL;
        return;
    }
    if (job->err_len + len > ADAPTER_STDERR_TAIL) {
        size_t drop = job->err_len + len - ADAPTER_STDERR_TAIL;
        memmove(job->err_tail, job->err_tail + drop, job->err_len - drop);
        job->err_len -= drop;
    }
    memcpy(job->err_tail + job->err_len, data, len);
    job->err_len += len;
}

/* stderr is readable: keep its tail for the error message. */
static void adapter_cli_stderr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    char buf[ADAPTER_READ_SIZE];
    (void)what;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        adapter_pipe_close(job->err_ev, &job->err_fd);
        adapter_cli_pipe_done(job);
        return;
    }
    adapter_cli_keep_stderr(job, buf, (size_t)n);
}

/* write(2) to a pipe that never raises SIGPIPE, the pipe's MSG_NOSIGNAL: the
 * signal is blocked for the call and one the call caused is consumed. */
static ssize_t adapter_write_nosigpipe(int fd, const void *data, size_t len)
{
    sigset_t pipe_set, pending, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = write(fd, data, len);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return n;
}

/* stdin is writable: write what is left of the content; close when done or
 * when the child stopped reading (EPIPE). */
static void adapter_cli_stdin_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    (void)what;
    while (job->input_off < job->input_len) {
        ssize_t n = adapter_write_nosigpipe(fd, job->input + job->input_off,
                                            job->input_len - job->input_off);
        if (n > 0)
            job->input_off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN)
            return;
        else
            break;
    }
    adapter_cli_close_stdin(job);
}

/* The timeout: SIGTERM the group now, SIGKILL after the grace. */
static void adapter_cli_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    (void)fd;
    (void)what;
    if (job->stop == ADAPTER_STOP_NONE)
        job->stop = ADAPTER_STOP_TIMEOUT;
    adapter_cli_signal(job, SIGTERM);
    adapter_timer_add_ms(job->kill_ev, job->grace_ms);
}

/* The grace after SIGTERM is over: SIGKILL the group. */
static void adapter_cli_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    adapter_cli_signal(arg, SIGKILL);
}

/* The pipes stayed open ADAPTER_DRAIN_MS after the exit: stop waiting. */
static void adapter_cli_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct adapter_job *job = arg;
    (void)fd;
    (void)what;
    log_debug("adapter: pid %d exited but its output stayed open; not waiting", (int)job->pid);
    adapter_finish(job);
}

/* Create and arm the events of a freshly started cli JOB. */
static void adapter_cli_watch(struct adapter_job *job, double timeout_s)
{
    struct event_base *base = job->base;
    job->out_ev =
        adapter_event_new(base, job->out_fd, EV_READ | EV_PERSIST, adapter_cli_stdout_cb, job);
    job->err_ev =
        adapter_event_new(base, job->err_fd, EV_READ | EV_PERSIST, adapter_cli_stderr_cb, job);
    job->timeout_ev = adapter_event_new(base, -1, 0, adapter_cli_timeout_cb, job);
    job->kill_ev = adapter_event_new(base, -1, 0, adapter_cli_kill_cb, job);
    job->drain_ev = adapter_event_new(base, -1, 0, adapter_cli_drain_cb, job);
    event_add(job->out_ev, NULL);
    event_add(job->err_ev, NULL);
    if (job->in_fd >= 0) {
        job->in_ev =
            adapter_event_new(base, job->in_fd, EV_WRITE | EV_PERSIST, adapter_cli_stdin_cb, job);
        event_add(job->in_ev, NULL);
    }
    if (timeout_s > 0) {
        struct timeval tv = {.tv_sec = (time_t)timeout_s};
        tv.tv_usec = (suseconds_t)((timeout_s - (double)tv.tv_sec) * 1e6);
        evtimer_add(job->timeout_ev, &tv);
    }
}

/* Make the parent's pipe ends of JOB non-blocking (they are close-on-exec
 * from pipe2(); a fresh pipe end has no other status flag to keep). */
static int adapter_cli_nonblock(struct adapter_job *job)
{
    int fds[] = {job->in_fd, job->out_fd, job->err_fd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0 && fcntl(fds[i], F_SETFL, O_NONBLOCK) < 0)
            return -1;
    return 0;
}

/* Start a cli job; NULL with ERR when its program cannot run. */
static struct adapter_job *adapter_cli_new(struct event_base *base,
                                           const struct adapter_config *config,
                                           const struct adapter_task *task, adapter_chunk_cb chunk,
                                           adapter_done_cb done, void *arg, char *err,
                                           size_t errlen)
{
    if (!config->argv || !config->argv[0] || !config->argv[0][0]) {
        snprintf(err, errlen, "no command configured for the cli adapter");
        errno = EINVAL;
        return NULL;
    }
    struct adapter_job *job = adapter_job_new(base, ADAPTER_CLI, chunk, done, arg);
    job->timeout_s = config->timeout_s;
    job->grace_ms = config->kill_grace_ms > 0 ? config->kill_grace_ms : ADAPTER_DEFAULT_GRACE_MS;
    job->cap = config->output_cap > 0 ? config->output_cap : ADAPTER_DEFAULT_CAP;
    if (config->dialect != AGENTSTREAM_NONE) {
        struct agentstream_sink sink = {adapter_stream_text, adapter_stream_tool, job};
        job->stream = agentstream_new(config->dialect, job->cap, &sink);
        job->tool = task->tool;
        job->resumed = task->resume_session && task->resume_session[0] && config->resume_flag;
    }
    if (adapter_cli_spawn(job, config, task, err, errlen) < 0) {
        int saved = errno;
        adapter_job_free(job);
        errno = saved;
        return NULL;
    }
    job->input_len = job->input ? strlen(job->input) : 0;
    if (job->in_fd >= 0 && job->input_len == 0)
        adapter_cli_close_stdin(job);
    if (adapter_cli_nonblock(job) < 0)
        log_warn("adapter: cannot make the pipes of pid %d non-blocking", (int)job->pid);
    adapter_cli_watch(job, config->timeout_s);
    return job;
}

/* SIGKILL JOB's group and reap it, waiting a bounded time (a SIGKILLed
 * process dies promptly; one that does not is left behind, logged). */
static void adapter_cli_kill_and_reap(struct adapter_job *job)
{
    if (job->pid <= 0 || job->exited)
        return;
    adapter_cli_signal(job, SIGKILL);
    contain_job_kill(job->contain);
    for (int i = 0; i < ADAPTER_REAP_WAIT_MS; i++) {
        pid_t r = waitpid(job->pid, NULL, WNOHANG);
        if (r == job->pid || (r < 0 && errno != EINTR)) {
            job->exited = true;
            return;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    log_warn("adapter: pid %d did not die of SIGKILL; left behind", (int)job->pid);
}

/* ---- the contract ------------------------------------------------------------ */

/* Start TASK with CONFIG's adapter; NULL with ERR when it cannot start. */
struct adapter_job *adapter_start(struct event_base *base, const struct adapter_config *config,
                                  const struct adapter_task *task, adapter_chunk_cb chunk,
                                  adapter_done_cb done, void *arg, char *err, size_t errlen)
{
    if (!base || !config || !task || !done) {
        snprintf(err, errlen, "adapter_start: missing argument");
        errno = EINVAL;
        return NULL;
    }
    if (config->type == ADAPTER_MOCK)
        return adapter_mock_new(base, config, task, chunk, done, arg);
    if (config->type == ADAPTER_CLI)
        return adapter_cli_new(base, config, task, chunk, done, arg, err, errlen);
    snprintf(err, errlen, "unknown adapter type %d", (int)config->type);
    errno = EINVAL;
    return NULL;
}

/* Kill the job's process group now; it ends failed with "interrupted". */
void adapter_interrupt(struct adapter_job *job)
{
    if (!job || job->finishing)
        return;
    if (job->type == ADAPTER_MOCK) {
        free(job->error);
        job->error = xstrdup("interrupted");
        adapter_finish(job);
        return;
    }
    if (job->stop == ADAPTER_STOP_NONE)
        job->stop = ADAPTER_STOP_INTERRUPT;
    if (job->exited)
        adapter_finish(job);
    else
        adapter_cli_signal(job, SIGKILL);
}

/* Kill the job and free it without calling done (shutdown). */
void adapter_abandon(struct adapter_job *job)
{
    if (!job || job->abandoned)
        return;
    adapter_cli_kill_and_reap(job);
    if (job->in_callback) {
        /* Freed by whoever called the callback, once it returns. */
        job->abandoned = true;
        adapter_job_quiesce(job);
        return;
    }
    adapter_job_free(job);
}

/* The child's pid (its process group id), 0 for mock. */
pid_t adapter_pid(const struct adapter_job *job)
{
    return job ? job->pid : 0;
}
