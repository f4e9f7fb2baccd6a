/*
 * log: one line per event on stderr, with a timestamp, a level and the
 * process' identity (a bot id for workers, "hive" for the supervisor).
 */
#ifndef HIVE_LOG_H
#define HIVE_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Set the identity prefix and the lowest level that is printed. */
void log_init(const char *ident, enum log_level level);
/* Parse "debug", "info", "warn" or "error"; -1 when unknown. */
int log_level_parse(const char *name);
/* Print one line at LEVEL. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
