/*
 * logcap: the worker output path — pipe, lines, log file, echo. Each pipe is
 * a logcap_stream owned by its logcap: a bufferevent that reads whenever
 * there is data, so a worker never blocks on its own stderr however much it
 * prints. Lines go to the log file with plain write(2) (a local file) and to
 * the echo, which holds at most LOGCAP_ECHO_MAX bytes and drops the rest.
 *
 * The echo writes to its own descriptor: for a pipe or a terminal it opens
 * /proc/self/fd/N anew with O_NONBLOCK, so the flag does not leak into the
 * descriptor the shell (and our own stderr) share; a regular file is written
 * as is (it never blocks for long); anything else gets O_NONBLOCK on the
 * shared descriptor, restored when the echo is freed.
 */
#include "supervisor/logcap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "common/util.h"

/* The bytes read from a pipe when the logcap is freed, at most. */
#define LOGCAP_FINAL_READ (1024 * 1024)

struct logcap_echo {
    int fd;
    bool own_fd;       /* opened here: close it */
    int restore_flags; /* file status flags to put back, or -1 */
    struct evbuffer *out;
    struct event *write_ev;
    unsigned long dropped; /* lines not echoed since the last notice */
    bool broken;           /* a write failed for good: echo nothing more */
};

struct logcap_stream {
    struct logcap *cap;
    struct bufferevent *bev;
    LIST_ENTRY(logcap_stream) entry;
};

struct logcap {
    struct event_base *base;
    char *name;
    char *path;
    int fd; /* the log file, -1 until the first line */
    off_t size;
    bool open_warned;
    long max_bytes; /* rotate past this (the roster's log.max_bytes) */
    int backups;    /* rotated files kept (log.backups); 0: the file starts over */
    struct logcap_echo *echo;
    LIST_HEAD(, logcap_stream) streams;
};

/* Write out as much of the echo buffer as FD takes now. */
static void logcap_echo_flush(struct logcap_echo *echo)
{
    while (!echo->broken && evbuffer_get_length(echo->out) > 0) {
        int n = evbuffer_write(echo->out, echo->fd);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if ((n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) &&
            event_add(echo->write_ev, NULL) == 0)
            return;
        echo->broken = true; /* stdout went away: keep the log files only */
        evbuffer_drain(echo->out, evbuffer_get_length(echo->out));
    }
}

/* The terminal can take more. */
static void logcap_echo_writable_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    logcap_echo_flush(arg);
}

/* A descriptor for FD of its own, non-blocking (see the top of the file). */
static void logcap_echo_open(struct logcap_echo *echo, int fd)
{
    struct stat st;
    echo->fd = fd;
    echo->restore_flags = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        return;
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int own = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (own >= 0) {
            echo->fd = own;
            echo->own_fd = true;
            return;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
        echo->restore_flags = fl;
}

/* An echo onto FD with its own non-blocking descriptor. */
struct logcap_echo *logcap_echo_new(struct event_base *base, int fd)
{
    struct logcap_echo *echo = xcalloc(1, sizeof *echo);
    logcap_echo_open(echo, fd);
    echo->out = evbuffer_new();
    echo->write_ev = event_new(base, echo->fd, EV_WRITE, logcap_echo_writable_cb, echo);
    return echo;
}

/* One last non-blocking write, then release. */
void logcap_echo_free(struct logcap_echo *echo)
{
    if (!echo)
        return;
    event_free(echo->write_ev);
    if (!echo->broken && evbuffer_get_length(echo->out) > 0)
        evbuffer_write(echo->out, echo->fd);
    evbuffer_free(echo->out);
    if (echo->restore_flags >= 0)
        fcntl(echo->fd, F_SETFL, echo->restore_flags);
    if (echo->own_fd)
        close(echo->fd);
    free(echo);
}

/* Queue "NAME | LINE" unless the buffer is full; then count it as dropped. */
static void logcap_echo_line(struct logcap_echo *echo, const char *name, const char *line,
                             size_t len)
{
    char note[96];
    size_t pending = evbuffer_get_length(echo->out);
    size_t need = strlen(name) + 3 + len + 1;
    if (echo->broken)
        return;
    if (pending + need + sizeof note > LOGCAP_ECHO_MAX) {
        echo->dropped++;
        return;
    }
    if (echo->dropped > 0) {
        snprintf(note, sizeof note, "hive | (%lu lines not echoed: stdout is slow; see the logs)\n",
                 echo->dropped);
        evbuffer_add(echo->out, note, strlen(note));
        echo->dropped = 0;
    }
    evbuffer_add_printf(echo->out, "%s | ", name);
    evbuffer_add(echo->out, line, len);
    evbuffer_add(echo->out, "\n", 1);
    logcap_echo_flush(echo);
}

/* Open (or reopen) the log file for appending. */
static int logcap_open(struct logcap *cap)
{
    struct stat st;
    cap->fd = util_open_append(cap->path, O_WRONLY, 0644);
    if (cap->fd < 0) {
        if (!cap->open_warned)
            log_warn("%s: cannot open %s: %s", cap->name, cap->path, strerror(errno));
        cap->open_warned = true;
        return -1;
    }
    cap->open_warned = false;
    cap->size = fstat(cap->fd, &st) == 0 ? st.st_size : 0;
    return 0;
}

/* BOT.log -> BOT.log.1 -> ... -> BOT.log.KEEP (the oldest is overwritten). */
static void logcap_rotate(struct logcap *cap)
{
    close(cap->fd);
    cap->fd = -1;
    if (cap->backups == 0 && unlink(cap->path) < 0 && errno != ENOENT)
        log_warn("%s: cannot rotate %s: %s", cap->name, cap->path, strerror(errno));
    for (int i = cap->backups; i >= 1; i--) {
        char *from = i == 1 ? xstrdup(cap->path) : xasprintf("%s.%d", cap->path, i - 1);
        char *to = xasprintf("%s.%d", cap->path, i);
        if (rename(from, to) < 0 && errno != ENOENT)
            log_warn("%s: cannot rotate %s: %s", cap->name, from, strerror(errno));
        free(from);
        free(to);
    }
    logcap_open(cap);
}

/* One whole line of output: to the file, and to the echo. */
static void logcap_line(struct logcap *cap, const char *line, size_t len)
{
    if (cap->fd < 0)
        logcap_open(cap);
    if (cap->fd >= 0 && cap->size > 0 && cap->size + (off_t)len + 1 > cap->max_bytes)
        logcap_rotate(cap);
    if (cap->fd >= 0) {
        struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
        ssize_t n = writev(cap->fd, iov, 2);
        if (n > 0)
            cap->size += n;
    }
    if (cap->echo)
        logcap_echo_line(cap->echo, cap->name, line, len);
}

/* Pass every complete line of IN on (and the rest too at EOF). */
static void logcap_split(struct logcap *cap, struct evbuffer *in, bool eof)
{
    for (;;) {
        size_t len = evbuffer_get_length(in), take, skip = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
        if (len == 0)
            return;
        if (eol.pos >= 0 && (size_t)eol.pos <= LOGCAP_LINE_MAX) {
            take = (size_t)eol.pos;
            skip = 1;
        } else if (len >= LOGCAP_LINE_MAX) {
            take = LOGCAP_LINE_MAX;
        } else if (eof) {
            take = len;
        } else {
            return;
        }
        const char *line = (const char *)evbuffer_pullup(in, (ev_ssize_t)(take + skip));
        logcap_line(cap, line, take);
        evbuffer_drain(in, take + skip);
    }
}

/* Unlink and free a stream; its bufferevent closes the pipe. */
static void logcap_stream_free(struct logcap_stream *s)
{
    LIST_REMOVE(s, entry);
    bufferevent_free(s->bev);
    free(s);
}

/* Output arrived. */
static void logcap_stream_read_cb(struct bufferevent *bev, void *arg)
{
    struct logcap_stream *s = arg;
    logcap_split(s->cap, bufferevent_get_input(bev), false);
}

/* EOF (every writer of the pipe is gone) or a read error. */
static void logcap_stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct logcap_stream *s = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    logcap_split(s->cap, bufferevent_get_input(bev), true);
    logcap_stream_free(s);
}

/* Read what a pipe still holds without waiting, and log it. */
static void logcap_stream_drain(struct logcap_stream *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    size_t total = 0;
    while (total < LOGCAP_FINAL_READ) {
        int n = evbuffer_read(in, fd, 16384);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (size_t)n;
        logcap_split(s->cap, in, false);
    }
    logcap_split(s->cap, in, true);
}

/* A capture for one bot; the file is opened at the first line. */
struct logcap *logcap_new(struct event_base *base, const char *name, const char *path,
                          struct logcap_echo *echo)
{
    struct logcap *cap = xcalloc(1, sizeof *cap);
    cap->base = base;
    cap->name = xstrdup(name);
    cap->path = xstrdup(path);
    cap->max_bytes = LOGCAP_ROTATE_BYTES;
    cap->backups = LOGCAP_KEEP;
    cap->fd = -1;
    cap->echo = echo;
    LIST_INIT(&cap->streams);
    return cap;
}

/* Drain and close every pipe, then the file. */
void logcap_free(struct logcap *cap)
{
    if (!cap)
        return;
    while (!LIST_EMPTY(&cap->streams)) {
        struct logcap_stream *s = LIST_FIRST(&cap->streams);
        logcap_stream_drain(s);
        logcap_stream_free(s);
    }
    if (cap->fd >= 0)
        close(cap->fd);
    free(cap->name);
    free(cap->path);
    free(cap);
}

/* Read the pipe FD from now on. */
void logcap_attach(struct logcap *cap, int fd)
{
    struct logcap_stream *s = xcalloc(1, sizeof *s);
    s->cap = cap;
    s->bev = bufferevent_socket_new(cap->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(s->bev, logcap_stream_read_cb, NULL, logcap_stream_event_cb, s);
    bufferevent_enable(s->bev, EV_READ);
    LIST_INSERT_HEAD(&cap->streams, s, entry);
}

/* Switch the log file (the work dir moved). */
void logcap_set_path(struct logcap *cap, const char *path)
{
    free(cap->path);
    cap->path = xstrdup(path);
    if (cap->fd >= 0)
        close(cap->fd);
    cap->fd = -1;
}

/* Rotate past MAX_BYTES, keeping BACKUPS files (see logcap.h). */
void logcap_set_rotation(struct logcap *cap, long max_bytes, int backups)
{
    cap->max_bytes = max_bytes > 0 ? max_bytes : LOGCAP_ROTATE_BYTES;
    cap->backups = backups >= 0 ? backups : LOGCAP_KEEP;
}

/* Close the log file; the next line opens PATH again (see logcap.h). */
void logcap_reopen(struct logcap *cap)
{
    if (cap->fd >= 0)
        close(cap->fd);
    cap->fd = -1;
}
