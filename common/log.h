/*
 * log: one line per event on stderr, with a timestamp, a level and the
 * process' identity (a bot id for workers, "hive" for the supervisor).
 * Control characters in a message are escaped, so no input that reaches a
 * message can forge a line of its own.
 */
#ifndef HIVE_LOG_H
#define HIVE_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Where log lines at or above a level also go: MESSAGE is the text of the
 * line without its timestamp, level and identity (control characters
 * escaped). A sink is not called again from inside itself. */
typedef void (*log_sink_fn)(enum log_level level, const char *message, void *arg);

/* Set the identity prefix and the lowest level that is printed. */
void log_init(const char *ident, enum log_level level);
/* Parse "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);
/* Print one line at LEVEL. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Never wait on stderr: when it is a pipe or socket that is full (its reader
 * is stopped), a line is dropped, and the next line that gets through is
 * preceded by one saying how many were. */
void log_nonblocking(void);
/* Send the lines at MIN or above to FN too (NULL: no sink). One sink. */
void log_set_sink(enum log_level min, log_sink_fn fn, void *arg);
/* Copy S into OUT (of CAP bytes, NUL-terminated) with every control
 * character escaped (\n, \r, \t, \xHH); the length written. */
size_t log_escape(char *out, size_t cap, const char *s);

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
