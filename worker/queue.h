/*
 * queue: an ordered set of pending tasks (a binary heap with an index by key).
 * Order: rank ascending (priority digit, 10 = unreadable), then time ascending
 * (arrival sequence for realtime tasks, mtime for file tasks), then key by
 * strcmp. Keys are unique. Pure data structure: no I/O.
 */
#ifndef HIVE_QUEUE_H
#define HIVE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;

struct queue *queue_new(void);
/* Free the queue, calling FREE_DATA (may be NULL) on each remaining payload. */
void queue_free(struct queue *q, void (*free_data)(void *));
/* Insert; -1 when KEY is already present (nothing inserted). KEY is copied. */
int queue_push(struct queue *q, const char *key, int rank, int64_t time, void *data);
/* The first payload without removing it, or NULL when empty. */
void *queue_peek(const struct queue *q);
/* Remove and return the first payload, or NULL when empty. */
void *queue_pop(struct queue *q);
/* The payload stored under KEY, or NULL. */
void *queue_find(const struct queue *q, const char *key);
/* The first payload (in no particular order) for which MATCH(data, ctx) is
 * true, or NULL. A linear scan, for rare look-ups by another field. */
void *queue_find_if(const struct queue *q, bool (*match)(const void *data, const void *ctx),
                    const void *ctx);
/* Remove KEY and return its payload, or NULL when absent. */
void *queue_remove(struct queue *q, const char *key);
/* 1-based position KEY would be popped at, or 0 when absent. */
size_t queue_position(const struct queue *q, const char *key);
size_t queue_len(const struct queue *q);
/* The smallest TIME of any entry (a scan), or 0 when the queue is empty. */
int64_t queue_oldest_time(const struct queue *q);

#endif
