/*
 * registry: the writer of .deia/hive/registry.json (SPEC §2), the file DEIA's
 * tools read to find live bots. It is shared with them: entries we did not
 * write are kept as they are. It is rewritten at the end of a loop pass in
 * which something changed (once for all the changes of the pass), and
 * otherwise once a minute while a worker runs, to move the heartbeat times on
 * (DEIA calls an entry stale after 5 minutes). An idle hive writes nothing
 * else.
 */
#ifndef HIVE_REGISTRY_H
#define HIVE_REGISTRY_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One bot's entry, as its owner knows it. */
struct registry_entry {
    const char *id;
    int port;
    pid_t pid; /* 0: no worker */
    const char *status;
    unsigned restarts;
    const char *reason;
    int64_t registered_wall_ns; /* when its worker was started; 0: never */
    int64_t heartbeat_wall_ns;  /* its last READY=1 or WATCHDOG=1 */
    bool beat_is_now;           /* no watchdog: our look at a live worker is its heartbeat */
};

/* Fill OUT with the I-th bot's entry; false past the last one. */
typedef bool (*registry_entry_fn)(void *arg, size_t i, struct registry_entry *out);

struct registry;

/* A registry writing ENTRY's bots, nothing written yet. */
struct registry *registry_new(struct event_base *base, registry_entry_fn entry, void *arg);
void registry_free(struct registry *reg);
/* The file (under the work dir) and the hive name our entries carry. */
void registry_set_path(struct registry *reg, const char *path);
void registry_set_name(struct registry *reg, const char *hive_name);
/* Something changed: rewrite at the end of this loop pass. */
void registry_changed(struct registry *reg);
/* Rewrite now (the hive is going down). */
void registry_write(struct registry *reg);

#endif
