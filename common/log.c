/*
 * log: the only place that formats diagnostic lines. Each line is written with
 * one write(2) so that lines from several processes sharing a pipe never mix.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_ident[80] = "hive";
static enum log_level log_min = LOG_LEVEL_INFO;
static const char *const log_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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

/* Print one line at LEVEL: "2026-01-02T03:04:05.678Z INFO [ident] text". */
void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s [%s] ", (long)tv.tv_usec / 1000,
                          log_names[level], log_ident);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, n);
    (void)unused;
}
