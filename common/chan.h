/*
 * chan: the typed channel between the supervisor and each of its workers
 * (as relayd's imsg between parent and child), and the names both sides of
 * that boundary share: exit codes, the names of the descriptors handed down
 * in LISTEN_FDNAMES, and the environment variables.
 *
 * The channel is one AF_UNIX stream socketpair; the worker's end is handed
 * down as the fd named HIVE_FD_CHAN. A message is an 8-byte header (payload
 * length, big-endian u32; type, u16; reserved u16, zero) and a JSON payload.
 * Neither side ever waits for the other: a writer that finds the socket full
 * stops sending and later resumes from a cursor.
 */
#ifndef HIVE_CHAN_H
#define HIVE_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* Exit codes of hive-worker and hive. */
#define HIVE_EXIT_CONFIG 78 /* a configuration error: permanent, no restart */

/* The names in LISTEN_FDNAMES of what a supervisor hands down. */
#define HIVE_FD_LISTEN "listen" /* the bot's listening socket (fd 3) */
#define HIVE_FD_PROXY "proxy"   /* the supervisor proxy's private socket */
#define HIVE_FD_STORE "inotify" /* the worker's own inotify instance, kept */
#define HIVE_FD_CHAN "chan"     /* this channel */

/* Environment variables. */
#define HIVE_ENV_SUPERVISOR_PID "HIVE_SUPERVISOR_PID" /* the worker dies with it */
#define HIVE_ENV_TOKEN "HIVE_TOKEN"                   /* the bearer token */
#define HIVE_ENV_WORKER_BIN "HIVE_WORKER_BIN"         /* the worker to run */

#define CHAN_HEADER 8
#define CHAN_MAX_PAYLOAD (1u << 20)

enum chan_type {
    /* down: {"since": SEQ}: send every stored event after SEQ, then live */
    CHAN_RESUME = 1,
    /* up: one event of the bot (SPEC §8), as its stream has it */
    CHAN_EVENT = 2,
    /* up: {"queue":{"realtime","file"},"current_task","tasks_processed",
     * "tasks_failed","oldest_queued_age_seconds"} */
    CHAN_STATUS = 3,
    /* down: {}: the supervisor looks for itself whether the worker's event
     * loop is asleep waiting for work (/proc), so the worker sends
     * WATCHDOG=1 only while it has work and wakes for nothing when idle */
    CHAN_IDLE_WATCH = 4,
    /* up: {"parked": BOOL}: after CHAN_IDLE_WATCH, true with the last
     * WATCHDOG=1 before the worker stops sending them (no task runs), false
     * when it starts again. Only a parked worker is looked at instead of
     * judged: one that stops sending without saying so is killed. */
    CHAN_PARKED = 5,
    CHAN_TYPE_MAX = CHAN_PARKED
};

enum chan_error { CHAN_OK = 0, CHAN_BAD_TYPE = -1, CHAN_TOO_BIG = -2, CHAN_BAD_HEADER = -3 };

/* Append one message to B. */
void chan_frame(struct util_buf *b, enum chan_type type, const char *payload, size_t len);

typedef void (*chan_msg_cb)(enum chan_type type, const char *payload, size_t len, void *arg);

/* An incremental reader of messages from bytes split anywhere. */
struct chan_reader {
    struct util_buf buf;
    chan_msg_cb cb;
    void *arg;
};

void chan_reader_init(struct chan_reader *r, chan_msg_cb cb, void *arg);
/* Feed LEN bytes; each complete message goes to the callback (its payload
 * NUL-terminated). An error leaves the reader spent: close the channel. */
enum chan_error chan_reader_feed(struct chan_reader *r, const void *data, size_t len);
void chan_reader_free(struct chan_reader *r);

#endif
