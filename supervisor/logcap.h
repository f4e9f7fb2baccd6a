/*
 * logcap: captures what workers print. A bot has one logcap: its log file
 * (.deia/hive/logs/<BOT>.log, rotated by size) and the output pipes of its
 * workers — more than one for a moment, when a restarted worker starts
 * writing before the old pipe has drained. Output is split into whole lines;
 * a line longer than LOGCAP_LINE_MAX is cut into pieces of that size.
 *
 * In the foreground every line is also echoed as "BOT | line" through one
 * shared logcap_echo: a bounded buffer written without blocking, which drops
 * lines (and says how many) rather than ever make a worker or the supervisor
 * wait for a slow terminal. The log file always gets everything.
 */
#ifndef HIVE_LOGCAP_H
#define HIVE_LOGCAP_H

#include <event2/event.h>
#include <stddef.h>

#define LOGCAP_LINE_MAX (16u * 1024)
#define LOGCAP_ROTATE_BYTES (10L * 1024 * 1024) /* the default of log.max_bytes */
#define LOGCAP_KEEP 3                           /* default rotated files kept: .log.1 .. .log.3 */
#define LOGCAP_ECHO_MAX (256u * 1024)

struct logcap_echo;
struct logcap;

/* An echo of lines onto FD (stdout), never blocking. */
struct logcap_echo *logcap_echo_new(struct event_base *base, int fd);
/* Try once more to write what is pending, then release (NULL is fine). */
void logcap_echo_free(struct logcap_echo *echo);

/* A capture for bot NAME into the file PATH, echoing through ECHO (may be
 * NULL). The file is opened at the first line. */
struct logcap *logcap_new(struct event_base *base, const char *name, const char *path,
                          struct logcap_echo *echo);
/* Read what is left in every pipe, log it, close everything (NULL is fine). */
void logcap_free(struct logcap *cap);
/* Capture the pipe FD (taken over; closed at its EOF or by logcap_free). */
void logcap_attach(struct logcap *cap, int fd);
/* Write to PATH from the next line on (the work dir changed). */
void logcap_set_path(struct logcap *cap, const char *path);

/* Rotate when the file would grow past MAX_BYTES, keeping BACKUPS rotated
 * files (.log.1 ..; 0 keeps none). Defaults: LOGCAP_ROTATE_BYTES, LOGCAP_KEEP. */
void logcap_set_rotation(struct logcap *cap, long max_bytes, int backups);
/* Close the log file so the next line opens its path again: after a
 * logrotate that moved it away (SIGUSR1). */
void logcap_reopen(struct logcap *cap);

#endif
