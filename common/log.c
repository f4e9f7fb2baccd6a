/*
 * log: the only place that formats diagnostic lines. Each line is written with
 * one write(2) so that lines from several processes sharing a pipe never mix
 * (a line is at most LOG_LINE_MAX bytes, less than PIPE_BUF, so a pipe takes
 * it whole or not at all).
 *
 * A worker's stderr is a pipe to the supervisor's log capture; a supervisor
 * stopped with Ctrl-Z stops reading it, and a blocking write would freeze the
 * worker (and its watchdog) once 64 KiB are waiting. log_nonblocking() gives
 * us a descriptor of our own for that pipe with O_NONBLOCK (the flag is not
 * set on the shared one, which adapters and the shell may use), and a line
 * that does not fit is counted, not waited for.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static char log_ident[80] = "hive";
static enum log_level log_min = LOG_LEVEL_INFO;
static const char *const log_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static int log_fd = STDERR_FILENO;
static bool log_fd_socket;        /* send with MSG_DONTWAIT */
static unsigned long log_dropped; /* lines not written since the last notice */
static log_sink_fn log_sink;
static void *log_sink_arg;
static enum log_level log_sink_min;
static bool log_in_sink;

/* Set the identity prefix and the lowest level that is printed. */
void log_init(const char *ident, enum log_level level)
{
    snprintf(log_ident, sizeof log_ident, "%s", ident);
    log_min = level;
}

/* Parse a level name; -1 when unknown. */
int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, log_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return LOG_LEVEL_WARN;
    return -1;
}

/* Our own non-blocking descriptor for stderr (see the top of the file). */
void log_nonblocking(void)
{
    struct stat st;
    if (log_fd != STDERR_FILENO || fstat(STDERR_FILENO, &st) < 0)
        return;
    if (S_ISSOCK(st.st_mode)) {
        log_fd_socket = true;
        return;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
        return; /* a file never keeps us waiting for long */
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0)
        log_fd = fd;
}

void log_set_sink(enum log_level min, log_sink_fn fn, void *arg)
{
    log_sink = fn;
    log_sink_arg = arg;
    log_sink_min = min;
}

size_t log_escape(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (cap == 0)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[5] = {'\\', 0, 0, 0, 0};
        size_t len = 2;
        if (c >= 0x20 && c != 0x7f) {
            esc[0] = (char)c;
            len = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else {
            esc[1] = 'x', esc[2] = hex[c >> 4], esc[3] = hex[c & 15];
            len = 4;
        }
        if (n + len >= cap)
            break;
        memcpy(out + n, esc, len);
        n += len;
    }
    out[n] = '\0';
    return n;
}

/* Write LINE whole or not at all: 0, or -1 when it was not written. */
static int log_write(const char *line, size_t n)
{
    ssize_t r;
    do
        r = log_fd_socket ? send(log_fd, line, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                          : write(log_fd, line, n);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)n ? 0 : -1;
}

/* "2026-01-02T03:04:05.678Z INFO [ident] " into BUF; its length. */
static size_t log_prefix(char *buf, size_t cap, enum log_level level)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%03ldZ %s [%s] ", (long)tv.tv_usec / 1000,
                          log_names[level], log_ident);
    return n < cap ? n : cap - 1;
}

/* Write LINE, first saying how many lines were dropped when some were. */
static void log_emit(const char *line, size_t n)
{
    if (log_dropped) {
        char note[200];
        size_t m = log_prefix(note, sizeof note, LOG_LEVEL_WARN);
        m += (size_t)snprintf(note + m, sizeof note - m,
                              "%lu log line(s) dropped: stderr was full\n", log_dropped);
        if (m >= sizeof note || log_write(note, m) < 0) {
            log_dropped++;
            return;
        }
        log_dropped = 0;
    }
    if (log_write(line, n) < 0)
        log_dropped++;
}

/* Hand the message to the sink, once (a sink that logs does not recurse). */
static void log_to_sink(enum log_level level, const char *message)
{
    if (!log_sink || level < log_sink_min || log_in_sink)
        return;
    log_in_sink = true;
    log_sink(level, message, log_sink_arg);
    log_in_sink = false;
}

/* Print one line at LEVEL: "2026-01-02T03:04:05.678Z INFO [ident] text". */
void log_msg(enum log_level level, const char *fmt, ...)
{
    bool print = level >= log_min, sink = log_sink && level >= log_sink_min && !log_in_sink;
    if (!print && !sink)
        return;
    char raw[LOG_LINE_MAX], line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    size_t n = log_prefix(line, sizeof line, level), start = n;
    n += log_escape(line + n, sizeof line - n - 1, raw);
    line[n++] = '\n';
    if (print)
        log_emit(line, n);
    if (sink) {
        line[n - 1] = '\0';
        log_to_sink(level, line + start);
    }
}
