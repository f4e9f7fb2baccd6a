/*
 * top: `hive top`, the hive in a terminal, live. One GET /status gives the
 * picture at the start; from then on only the supervisor's event stream
 * (GET /api/events, SPEC §8) changes it — bot_state events move a bot's
 * state, pid and restarts, task events its queue, current task and counts,
 * task_output events feed the last lines of the running task — so nothing
 * is polled. A lost stream is resumed with its cursor (Last-Event-ID); a
 * `resync` (events missed) or a reconnection reloads /status once.
 *
 * On a terminal the view is drawn in the alternate screen, redrawn in place
 * on every change (and each second for the clocks), resized on SIGWINCH,
 * and the terminal is given back as it was on `q`, SIGINT, SIGTERM and
 * SIGHUP. Colours only on a terminal and never with NO_COLOR. When stdout
 * is not a terminal, top prints one snapshot of /status and exits, so it
 * can be used in scripts and pipes. Adapter output is untrusted: control
 * characters in it are replaced before it reaches the terminal.
 */
#include "cli/top.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/logs.h"
#include "cli/status.h"
#include "common/json.h"
#include "common/sse.h"
#include "common/util.h"

#define TOP_LINES_MAX 8    /* output lines kept per bot */
#define TOP_LINE_BYTES 512 /* bytes kept of one output line */
#define TOP_TICK_MS 1000   /* redraw of the clocks; also the reconnect delay */
#define TOP_MAX_LINE (2u << 20)
#define TOP_READ_TIMEOUT_MS 40000 /* > the stream's 15 s keepalive */

/* One bot as the view shows it. */
struct top_bot {
    char *id;
    char state[24];
    char *reason;
    long long pid, restarts, queue, done, failed;
    double up_since; /* monotonic seconds when it became running; 0 not */
    char *task;      /* the running task's id, or NULL */
    double task_since;
    char *lines[TOP_LINES_MAX]; /* its output's last complete lines, oldest first */
    size_t n_lines;
    struct util_buf partial; /* the line being written */
};

struct top {
    const struct api *c;
    struct top_bot *bots;
    size_t n_bots;
    char *name;
    bool tty, colour, connected, reload;
    int rows, cols;
    int fd;         /* the event stream, or -1 */
    double last_rx; /* monotonic seconds of the stream's last byte */
    char cursor[32];
    struct sse_reader reader;
    struct termios saved;
    bool term_saved;
};

static int top_sig_pipe[2] = {-1, -1};

/* Monotonic seconds. */
static double top_now(void)
{
    return (double)util_mono_ns() / 1e9;
}

/* ---- the model ------------------------------------------------------------- */

/* Forget the output of bot B. */
static void top_bot_clear_output(struct top_bot *b)
{
    for (size_t i = 0; i < b->n_lines; i++)
        free(b->lines[i]);
    b->n_lines = 0;
    free(b->partial.data);
    memset(&b->partial, 0, sizeof b->partial);
}

/* Free what bot B holds. */
static void top_bot_free(struct top_bot *b)
{
    top_bot_clear_output(b);
    free(b->id);
    free(b->reason);
    free(b->task);
}

/* Free every bot of T. */
static void top_bots_free(struct top *t)
{
    for (size_t i = 0; i < t->n_bots; i++)
        top_bot_free(&t->bots[i]);
    free(t->bots);
    t->bots = NULL;
    t->n_bots = 0;
}

/* The bot called ID, or NULL. */
static struct top_bot *top_bot_find(struct top *t, const char *id)
{
    for (size_t i = 0; id && i < t->n_bots; i++)
        if (strcmp(t->bots[i].id, id) == 0)
            return &t->bots[i];
    return NULL;
}

/* An integer field of O, or DEF. */
static long long top_int(json_t *o, const char *key, long long def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

/* Replace *DST by a copy of SRC (NULL allowed). */
static void top_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? xstrdup(src) : NULL;
}

/* The monotonic time (NOW being now) of STARTED_AT, a task's start as
 * ISO-8601 UTC; NOW when it says none. */
static double top_started(const char *started_at, double now)
{
    double wall = (double)util_wall_ns() / 1e9, at;
    if (!started_at || logs_parse_since(started_at, wall, &at) < 0 || at > wall)
        return now;
    return now - (wall - at);
}

/* Bot B from its entry of GET /status. */
static void top_bot_from_status(struct top_bot *b, json_t *o, double now)
{
    json_t *q = json_object_get(o, "queue"), *cur = json_object_get(o, "current_task");
    snprintf(b->state, sizeof b->state, "%s",
             json_get_str(o, "state") ? json_get_str(o, "state") : "?");
    top_set_str(&b->reason, json_get_str(o, "reason"));
    b->pid = top_int(o, "pid", 0);
    b->restarts = top_int(o, "restarts", 0);
    b->queue = json_is_object(q) ? top_int(q, "realtime", 0) + top_int(q, "file", 0) : -1;
    b->done = top_int(o, "tasks_processed", -1);
    b->failed = top_int(o, "tasks_failed", -1);
    double up = json_number_value(json_object_get(o, "uptime_seconds"));
    b->up_since = strcmp(b->state, "running") == 0 ? now - up : 0;
    top_set_str(&b->task, json_get_str(cur, "task_id"));
    b->task_since = top_started(json_get_str(cur, "started_at"), now);
}

/* Take the bots of a GET /status document; output already seen of a bot
 * that is still there is kept. */
static void top_take_status(struct top *t, json_t *status)
{
    json_t *bots = json_object_get(status, "bots"), *o;
    size_t n = json_array_size(bots), i;
    struct top_bot *fresh = xcalloc(n ? n : 1, sizeof *fresh);
    double now = top_now();

    json_array_foreach(bots, i, o)
    {
        struct top_bot *old = top_bot_find(t, json_get_str(o, "id"));
        fresh[i].id = xstrdup(json_get_str(o, "id") ? json_get_str(o, "id") : "?");
        if (old) { /* keep its output and the clock of its task */
            memcpy(fresh[i].lines, old->lines, sizeof old->lines);
            fresh[i].n_lines = old->n_lines;
            fresh[i].partial = old->partial;
            old->n_lines = 0;
            memset(&old->partial, 0, sizeof old->partial);
        }
        top_bot_from_status(&fresh[i], o, now);
        if (old && old->task && fresh[i].task && strcmp(old->task, fresh[i].task) == 0)
            fresh[i].task_since = old->task_since;
    }
    top_bots_free(t);
    t->bots = fresh;
    t->n_bots = n;
    json_t *hive = json_object_get(status, "hive");
    top_set_str(&t->name, json_get_str(hive, "name") ? json_get_str(hive, "name") : "?");
}

/* GET /status into T; 0, or the exit code after saying what went wrong. */
static int top_load_status(struct top *t)
{
    struct api_response r;
    int rc = api_call(t->c, "GET", "/status", NULL, 200, &r);
    if (rc != CLI_EXIT_OK)
        return rc;
    json_t *status = api_json(&r);
    api_response_free(&r);
    if (!json_is_object(status)) {
        fprintf(stderr, "hive top: GET /status: invalid JSON\n");
        json_decref(status);
        return CLI_EXIT_FAIL;
    }
    top_take_status(t, status);
    json_decref(status);
    return CLI_EXIT_OK;
}

/* Keep the line being written as the newest complete output line of B. */
static void top_bot_push_line(struct top_bot *b)
{
    if (b->n_lines == TOP_LINES_MAX) {
        free(b->lines[0]);
        memmove(b->lines, b->lines + 1, (TOP_LINES_MAX - 1) * sizeof *b->lines);
        b->n_lines--;
    }
    b->lines[b->n_lines++] = xstrndup(b->partial.len ? b->partial.data : "", b->partial.len);
    b->partial.len = 0;
}

/* Add LEN bytes of output to the line being written of B (up to its
 * bound), control characters as spaces: no escape of an adapter reaches
 * the terminal. */
static void top_bot_add(struct top_bot *b, const char *text, size_t len)
{
    size_t room = TOP_LINE_BYTES > b->partial.len ? TOP_LINE_BYTES - b->partial.len : 0;
    for (size_t i = 0; i < len && i < room; i++) {
        char c = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? ' ' : text[i];
        util_buf_add(&b->partial, &c, 1);
    }
}

/* A chunk of B's running task's output: split into lines, the last ones kept. */
static void top_bot_output(struct top_bot *b, const char *content)
{
    for (const char *p = content; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (nl && n > 0 && p[n - 1] == '\r')
            n--;
        top_bot_add(b, p, n);
        if (!nl)
            break;
        top_bot_push_line(b);
        p = nl + 1;
    }
}

/* A bot_state event: state, pid, restarts, reason. */
static void top_apply_state(struct top_bot *b, json_t *d)
{
    const char *state = json_get_str(d, "state");
    if (!state)
        return;
    bool was_running = strcmp(b->state, "running") == 0, running = strcmp(state, "running") == 0;
    snprintf(b->state, sizeof b->state, "%s", state);
    b->pid = top_int(d, "pid", 0);
    b->restarts = top_int(d, "restarts", b->restarts);
    top_set_str(&b->reason, json_get_str(d, "reason"));
    if (running && !was_running)
        b->up_since = top_now();
    if (!running) {
        b->up_since = 0;
        top_set_str(&b->task, NULL);
    }
}

/* The end of a task (completed, failed, cancelled) for bot B. */
static void top_apply_end(struct top_bot *b, const char *type, const char *task)
{
    bool current = b->task && task && strcmp(b->task, task) == 0;
    if (current)
        top_set_str(&b->task, NULL);
    else if (strcmp(type, "task_cancelled") == 0 && b->queue > 0)
        b->queue--; /* cancelled while queued */
    if (b->done >= 0 && (current || strcmp(type, "task_cancelled") != 0))
        b->done++;
    if (b->failed >= 0 && strcmp(type, "task_completed") != 0 &&
        (current || strcmp(type, "task_cancelled") != 0))
        b->failed++;
}

/* One event of the stream applied to the model; true when it changed. */
static bool top_apply(struct top *t, const char *type, json_t *d)
{
    struct top_bot *b = top_bot_find(t, json_get_str(d, "bot_id"));
    const char *task = json_get_str(d, "task_id");
    if (!b)
        return false;
    if (strcmp(type, "bot_state") == 0) {
        top_apply_state(b, d);
    } else if (strcmp(type, "task_received") == 0) {
        b->queue = b->queue < 0 ? 1 : b->queue + 1;
    } else if (strcmp(type, "task_started") == 0) {
        if (b->queue > 0)
            b->queue--;
        top_set_str(&b->task, task);
        b->task_since = top_started(json_get_str(d, "started_at"), top_now());
        top_bot_clear_output(b);
    } else if (strcmp(type, "task_output") == 0) {
        top_bot_output(b, json_get_str(d, "content"));
    } else if (strcmp(type, "task_completed") == 0 || strcmp(type, "task_failed") == 0 ||
               strcmp(type, "task_cancelled") == 0) {
        top_apply_end(b, type, task);
    } else {
        return strcmp(type, "bot_paused") == 0 || strcmp(type, "bot_resumed") == 0;
    }
    return true;
}

/* ---- drawing --------------------------------------------------------------- */

/* The escape that colours STATE ("" without colour). */
static const char *top_colour(const struct top *t, const char *state)
{
    if (!t->colour)
        return "";
    if (strcmp(state, "running") == 0)
        return "\033[32m";
    if (strcmp(state, "fatal") == 0 || strcmp(state, "unreachable") == 0)
        return "\033[1;31m";
    if (strcmp(state, "starting") == 0 || strcmp(state, "backoff") == 0)
        return "\033[33m";
    return "\033[2m";
}

/* Append one screen line to OUT: at most the terminal's width of TEXT
 * (counted in characters, not bytes), then "erase to end of line". */
static void top_put_line(const struct top *t, struct util_buf *out, const char *text)
{
    size_t len = strlen(text), cut = len;
    int cols = 0;
    bool escape = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == 0x1b)
            escape = true;
        else if (escape)
            escape = !(ch >= 0x40 && ch <= 0x7e && ch != '[');
        else if ((ch & 0xc0) != 0x80 && ++cols > t->cols) {
            cut = i;
            break;
        }
    }
    util_buf_add(out, text, cut);
    util_buf_add(out, t->tty ? "\033[K\r\n" : "\n", t->tty ? 5 : 1);
}

/* A count for a column: "-" when unknown. */
static void top_count(char *out, size_t cap, long long v)
{
    if (v < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%lld", v);
}

/* The table line of bot B. */
static void top_draw_bot(const struct top *t, struct util_buf *out, const struct top_bot *b,
                         int idw, double now)
{
    char pid[24] = "-", up[24] = "-", queue[24], done[24], failed[24], task[160] = "-", line[512];
    const char *on = top_colour(t, b->state), *off = *on ? "\033[0m" : "";
    bool running = strcmp(b->state, "running") == 0;

    if (b->pid > 0)
        snprintf(pid, sizeof pid, "%lld", b->pid);
    if (b->up_since > 0)
        status_duration(up, sizeof up, now - b->up_since);
    top_count(queue, sizeof queue, running ? b->queue : -1);
    top_count(done, sizeof done, running ? b->done : -1);
    top_count(failed, sizeof failed, running ? b->failed : -1);
    if (b->task) {
        char took[24];
        status_duration(took, sizeof took, now - b->task_since);
        snprintf(task, sizeof task, "%.100s (%s)", b->task, took);
    } else if (b->reason && !running) {
        snprintf(task, sizeof task, "reason: %.100s", b->reason);
    }
    snprintf(line, sizeof line, "%-*s  %s%-8s%s  %7s  %7s  %8lld  %5s  %5s  %6s  %s", idw, b->id,
             on, b->state, off, pid, up, b->restarts, queue, done, failed, task);
    top_put_line(t, out, line);
}

/* The header and the table of bots. */
static void top_draw_table(const struct top *t, struct util_buf *out, double now)
{
    char line[512], clock[16];
    size_t running = 0;
    int idw = 2;
    time_t wall = time(NULL);

    for (size_t i = 0; i < t->n_bots; i++) {
        running += strcmp(t->bots[i].state, "running") == 0;
        if ((int)strlen(t->bots[i].id) > idw)
            idw = (int)strlen(t->bots[i].id);
    }
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&wall));
    snprintf(line, sizeof line, "hive %s on %s: %zu of %zu bots running  %s%s", t->name, t->c->addr,
             running, t->n_bots, clock,
             t->connected || !t->tty ? "" : "  (event stream lost; reconnecting)");
    top_put_line(t, out, line);
    top_put_line(t, out, "");
    snprintf(line, sizeof line, "%s%-*s  %-8s  %7s  %7s  %8s  %5s  %5s  %6s  %s%s",
             t->colour ? "\033[1m" : "", idw, "ID", "STATE", "PID", "UPTIME", "RESTARTS", "QUEUE",
             "DONE", "FAILED", "TASK", t->colour ? "\033[0m" : "");
    top_put_line(t, out, line);
    for (size_t i = 0; i < t->n_bots; i++)
        top_draw_bot(t, out, &t->bots[i], idw, now);
}

/* The last PER lines of B's output, the line being written included. */
static void top_draw_lines(const struct top *t, struct util_buf *out, const struct top_bot *b,
                           int per)
{
    char line[TOP_LINE_BYTES + 8];
    size_t shown = b->n_lines + (b->partial.len > 0);
    if (shown == 0)
        top_put_line(t, out, "  (no output yet)");
    for (size_t k = shown > (size_t)per ? shown - (size_t)per : 0; k < shown; k++) {
        if (k < b->n_lines)
            snprintf(line, sizeof line, "  %s", b->lines[k]);
        else
            snprintf(line, sizeof line, "  %.*s", (int)b->partial.len, b->partial.data);
        top_put_line(t, out, line);
    }
}

/* The last output lines of each running task, PER lines each at most. */
static void top_draw_output(const struct top *t, struct util_buf *out, int per)
{
    char line[200];
    for (size_t i = 0; i < t->n_bots; i++) {
        const struct top_bot *b = &t->bots[i];
        if (!b->task)
            continue;
        top_put_line(t, out, "");
        snprintf(line, sizeof line, "%s-- %s: %.100s --%s", t->colour ? "\033[1m" : "", b->id,
                 b->task, t->colour ? "\033[0m" : "");
        top_put_line(t, out, line);
        top_draw_lines(t, out, b, per);
    }
}

/* Output lines per running task that fit in the screen. */
static int top_lines_per_task(const struct top *t)
{
    int running = 0;
    for (size_t i = 0; i < t->n_bots; i++)
        running += t->bots[i].task != NULL;
    if (!t->tty || running == 0)
        return TOP_LINES_MAX;
    int left = t->rows - 3 - (int)t->n_bots - 2 - 2 * running;
    int per = left / running;
    return per < 1 ? 1 : per > TOP_LINES_MAX ? TOP_LINES_MAX : per;
}

/* Draw the whole view (in place on a terminal). */
static void top_draw(struct top *t)
{
    struct util_buf out = {0};
    double now = top_now();
    if (t->tty)
        util_buf_add(&out, "\033[H", 3);
    top_draw_table(t, &out, now);
    if (t->tty) /* a snapshot has no stream, so no output to show */
        top_draw_output(t, &out, top_lines_per_task(t));
    if (t->tty) {
        top_put_line(t, &out, "");
        top_put_line(t, &out, "q: quit");
        util_buf_add(&out, "\033[J", 3); /* erase what an older, longer view left */
    }
    for (size_t off = 0; off < out.len;) {
        ssize_t n = write(STDOUT_FILENO, out.data + off, out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    free(out.data);
}

/* ---- the terminal ---------------------------------------------------------- */

/* The terminal's size into T (80x24 when it does not say). */
static void top_term_size(struct top *t)
{
    struct winsize ws;
    t->cols = 80;
    t->rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        t->cols = ws.ws_col;
        t->rows = ws.ws_row;
    }
}

/* A signal: written to the pipe the loop watches. */
static void top_signal_handler(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(top_sig_pipe[1], &b, 1) < 0) { /* full: a redraw is pending anyway */
    }
    errno = saved;
}

/* Route SIGINT, SIGTERM, SIGHUP and SIGWINCH to the loop (or back to
 * their defaults when ON is false). */
static void top_signals(bool on)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    struct sigaction sa = {.sa_handler = on ? top_signal_handler : SIG_DFL};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Enter the alternate screen, hide the cursor, read keys one at a time
 * without echo (signals from keys kept). */
static void top_term_enter(struct top *t)
{
    if (tcgetattr(STDIN_FILENO, &t->saved) == 0) {
        struct termios raw = t->saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        t->term_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
    fflush(stdout);
}

/* Give the terminal back as it was. */
static void top_term_leave(struct top *t)
{
    fputs("\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    if (t->term_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
    t->term_saved = false;
}

/* ---- the event stream ------------------------------------------------------ */

/* One event: into the model; a resync asks for /status again. */
static void top_event_cb(const struct sse_event *ev, void *arg)
{
    struct top *t = arg;
    if (ev->id[0])
        snprintf(t->cursor, sizeof t->cursor, "%s", ev->id);
    if (strcmp(ev->type, "resync") == 0) {
        t->reload = true;
        return;
    }
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (json_is_object(d))
        top_apply(t, ev->type, d);
    json_decref(d);
}

/* Close the stream. */
static void top_disconnect(struct top *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        sse_reader_free(&t->reader);
    }
    t->fd = -1;
    t->connected = false;
}

/* Open the event stream, resuming after the cursor when there is one.
 * 0, -1 when nothing answers, or the HTTP status the hive refused with. */
static int top_connect(struct top *t)
{
    t->fd = api_connect(t->c);
    if (t->fd < 0)
        return -1;
    sse_reader_init(&t->reader, TOP_MAX_LINE, top_event_cb, t);
    char *auth = t->c->token ? xasprintf("Authorization: Bearer %s\r\n", t->c->token) : xstrdup("");
    char *resume = t->cursor[0] ? xasprintf("Last-Event-ID: %s\r\n", t->cursor) : xstrdup("");
    char *head = xasprintf("GET /api/events HTTP/1.1\r\nHost: %s\r\nUser-Agent: hive/%s\r\n"
                           "Accept: text/event-stream\r\n%s%s\r\n",
                           t->c->addr, HIVE_VERSION, auth, resume);
    int status =
        api_send_all(t->fd, head, strlen(head)) < 0 ? -1 : api_stream_head(t->fd, &t->reader);
    free(auth);
    free(resume);
    free(head);
    if (status != 200) {
        top_disconnect(t);
        return status > 0 ? status : -1;
    }
    t->connected = true;
    t->last_rx = top_now();
    return 0;
}

/* The stream is readable: feed what came. False when it broke. */
static bool top_stream_read(struct top *t)
{
    char chunk[65536];
    ssize_t n = recv(t->fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0 || sse_reader_feed(&t->reader, chunk, (size_t)n) != SSE_OK)
        return false;
    t->last_rx = top_now();
    return true;
}

/* Reconnect when the stream is down (resuming after the cursor, so the
 * events missed meanwhile come first); on a resync — they are no longer
 * all kept — the picture is reloaded from /status. */
static void top_ensure_stream(struct top *t)
{
    if (t->fd < 0)
        top_connect(t);
    if (t->reload && t->fd >= 0) {
        t->reload = false;
        struct api_response r;
        if (api_request(t->c, "GET", "/status", NULL, &r) == 0 && r.status == 200) {
            json_t *status = api_json(&r);
            if (json_is_object(status))
                top_take_status(t, status);
            json_decref(status);
        }
        if (r.body)
            api_response_free(&r);
    }
}

/* ---- the loop -------------------------------------------------------------- */

/* A key was typed: true when it asks to quit. */
static bool top_key_quits(void)
{
    char key;
    ssize_t n = read(STDIN_FILENO, &key, 1);
    return n == 0 || (n == 1 && (key == 'q' || key == 'Q'));
}

/* A signal arrived: true when it asks to quit (SIGWINCH resizes). */
static bool top_signal_quits(struct top *t)
{
    unsigned char sig;
    bool quit = false;
    while (read(top_sig_pipe[0], &sig, 1) == 1) {
        if (sig == SIGWINCH)
            top_term_size(t);
        else
            quit = true;
    }
    return quit;
}

/* Until `q` or a signal: wait for the stream, a key, a signal or the next
 * second, then redraw. */
static void top_loop(struct top *t)
{
    bool quit = false, redraw = true;
    while (!quit) {
        top_ensure_stream(t);
        if (redraw)
            top_draw(t);
        redraw = true;
        struct pollfd p[3] = {{.fd = top_sig_pipe[0], .events = POLLIN},
                              {.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = t->fd, .events = POLLIN}};
        int n = poll(p, t->fd >= 0 ? 3 : 2, TOP_TICK_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (n < 0) { /* a signal: its byte is in the pipe, read on the next pass */
            redraw = false;
            continue;
        }
        if (p[0].revents & POLLIN)
            quit = top_signal_quits(t);
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
            quit = quit || top_key_quits();
        if (t->fd >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR)) && !top_stream_read(t))
            top_disconnect(t);
        if (t->fd >= 0 && top_now() - t->last_rx > TOP_READ_TIMEOUT_MS / 1000.0)
            top_disconnect(t); /* silent past its keepalive: a dead link */
    }
}

/* Make the signal pipe (non-blocking, close-on-exec); -1 on failure. */
static int top_pipe_open(void)
{
    if (pipe(top_sig_pipe) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(top_sig_pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(top_sig_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

/* Close the signal pipe. */
static void top_pipe_close(void)
{
    for (int i = 0; i < 2; i++) {
        if (top_sig_pipe[i] >= 0)
            close(top_sig_pipe[i]);
        top_sig_pipe[i] = -1;
    }
}

/* The live view on a terminal. The stream is opened before /status is
 * read, so no event falls between the two. */
static int top_live(struct top *t)
{
    if (top_pipe_open() < 0) {
        fprintf(stderr, "hive top: pipe: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    top_signals(true);
    top_term_size(t);
    int rc = top_connect(t);
    if (rc > 0)
        fprintf(stderr, "hive top: GET /api/events: the hive answered %d\n", rc);
    rc = rc > 0 ? CLI_EXIT_FAIL : top_load_status(t);
    if (rc == CLI_EXIT_OK) {
        top_term_enter(t);
        top_loop(t);
        top_term_leave(t);
    }
    top_disconnect(t);
    top_signals(false);
    top_pipe_close();
    return rc;
}

int top_run(const struct api *c)
{
    const char *no_colour = getenv("NO_COLOR");
    struct top t = {.c = c, .fd = -1, .cols = 1 << 20, .rows = 0};
    t.tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
    t.colour = t.tty && !(no_colour && *no_colour);

    int rc = t.tty ? top_live(&t) : top_load_status(&t);
    if (rc == CLI_EXIT_OK && !t.tty)
        top_draw(&t); /* not a terminal: one snapshot */
    top_bots_free(&t);
    free(t.name);
    return rc;
}
