/*
 * pool: which bot a pool task goes to (SPEC §12). It owns the index of the
 * roster's `pool:` and `tags:` (a candidate list per pool name and per tag,
 * and the bots by id) and what the supervisor knows of each bot's load
 * (running, idle or busy, queue length, idle since when), fed from the
 * workers' channels; it never asks a worker. A choice walks only the
 * candidate list of the pool (or of the rarest tag asked for), so it stays
 * cheap at a thousand bots. Pure: no I/O, no libevent; the caller says the
 * time.
 */
#ifndef HIVE_POOL_H
#define HIVE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;

/* One bot as the roster names it (strings copied by pool_set_bots). */
struct pool_bot_def {
    const char *id;
    const char *pool;        /* NULL: in no pool */
    const char *const *tags; /* NULL-terminated; NULL: none */
};

/* What a bot's worker last said it is doing. */
enum pool_activity {
    POOL_IDLE = 0, /* also: not heard of yet */
    POOL_BUSY = 1,
    POOL_PAUSED = 2, /* paused or stopping: takes tasks, starts none */
};

/* What a task asks for: a pool, tags (all must match), or both. */
struct pool_query {
    const char *pool;        /* NULL: any */
    const char *const *tags; /* N_TAGS names */
    size_t n_tags;
    const size_t *tried; /* bots already tried for this task (skipped) */
    size_t n_tried;
};

/* pool_choose's answers besides a bot index. */
#define POOL_UNKNOWN (-2)      /* no bot of the roster matches */
#define POOL_NONE_RUNNING (-1) /* some match, none runs (or all were tried) */

struct pool *pool_new(void);
void pool_free(struct pool *pool);
/* Index N bots (a roster, after a load or a reload). The load of a bot that
 * was known before is kept; a new one starts not running and idle. */
void pool_set_bots(struct pool *pool, const struct pool_bot_def *defs, size_t n);
/* The index of bot ID, or -1. */
long pool_find(const struct pool *pool, const char *id);
/* Bot I's id (I from pool_find or pool_choose). */
const char *pool_bot_id(const struct pool *pool, size_t i);
/* Bot I is (not) running: only running bots are chosen. */
void pool_note_running(struct pool *pool, size_t i, bool running);
/* Bot I's worker said ACT with QUEUED tasks waiting, at NOW_NS (any
 * monotonic clock): an idle bot's idle time counts from its last busy. */
void pool_note_load(struct pool *pool, size_t i, enum pool_activity act, unsigned queued,
                    int64_t now_ns);
/* A task was just handed to bot I: count it before its worker says so, so
 * tasks sent in a burst spread instead of piling on the bot that was idle. */
void pool_note_sent(struct pool *pool, size_t i);
/* The running bot that matches Q with the least work: idle first, then the
 * shortest queue, then the longest idle; ties go to roster order. A bot
 * index, POOL_UNKNOWN or POOL_NONE_RUNNING. */
long pool_choose(const struct pool *pool, const struct pool_query *q);

#endif
