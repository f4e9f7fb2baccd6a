/*
 * notify: the supervisor's NOTIFY_SOCKET, the server side of systemd's
 * notify protocol. It owns one abstract datagram socket (a name unique to
 * this supervisor, handed to every worker), reads what arrives with the
 * sender's pid (SCM_CREDENTIALS) and passed descriptors (SCM_RIGHTS), parses
 * the keys hive acts on and hands each datagram to its owner, which decides
 * whom it is from. It never blocks a sender: the socket is read on the loop
 * in batches, and a full socket is the sender's to retry.
 */
#ifndef HIVE_NOTIFY_H
#define HIVE_NOTIFY_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NOTIFY_FDS 8 /* descriptors taken with one datagram; more are closed */

/* One datagram: its sender and what it says. Strings point into the
 * datagram and live until the callback returns. */
struct notify_msg {
    pid_t pid; /* SCM_CREDENTIALS; 0 when missing */
    bool ready, watchdog, stopping, fdstore, fdstore_remove;
    const char *fdname;  /* FDNAME=, or NULL */
    const char *nowatch; /* HIVE_NOWATCH=: why the worker's file queue has no inotify watch */
    int fds[NOTIFY_FDS]; /* passed descriptors; a callback that keeps one sets it to -1 */
    size_t n_fds;
    bool truncated; /* MSG_CTRUNC: descriptors were dropped on the way */
};

/* Called for each datagram; descriptors left in MSG are closed after. */
typedef void (*notify_cb)(void *arg, struct notify_msg *msg);

struct notify;

/* Bind the socket and start reading; NULL with ERR set on failure. */
struct notify *notify_new(struct event_base *base, notify_cb cb, void *arg, char *err,
                          size_t errlen);
void notify_free(struct notify *n);
/* Its NOTIFY_SOCKET value, "@name" (abstract). */
const char *notify_name(const struct notify *n);
/* Read what is queued now (before a worker's exit is acted on: what it said
 * on its way out comes first, as with systemd). */
void notify_drain(struct notify *n);
/* Parse the "KEY=VALUE" lines of BUF (NUL-terminated; cut in place) into MSG. */
void notify_parse(char *buf, struct notify_msg *msg);

#endif
