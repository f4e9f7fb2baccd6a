/*
 * ssefan: a thread that writes the live part of event streams (see
 * ssehub.c). Each stream is a lane: a socket of its own (a dup of the
 * connection's) and a queue of byte ranges, referenced, not copied, each
 * with the cleanup that releases it once written or handed back. The loop
 * queues and decides (how far behind is too far); the thread only calls
 * sendmsg. A lane whose socket fails is told back to the loop.
 */
#ifndef HIVE_COMMON_SSEFAN_H
#define HIVE_COMMON_SSEFAN_H

#include <stddef.h>

#include <event2/event.h>

struct ssefan;
struct ssefan_lane;

/* Releases a queued range; runs on either thread, once per range (given a
 * tail of it when ssefan_remove handed the range back part-written). */
typedef void (*ssefan_cleanup)(const void *data, size_t len, void *arg);
/* On the loop: the lane's socket failed (the peer is gone). */
typedef void (*ssefan_dead_cb)(void *arg);
/* On the loop, from ssefan_remove: a range the thread had not written. */
typedef void (*ssefan_unsent_cb)(void *ctx, const void *data, size_t len, ssefan_cleanup cleanup,
                                 void *arg);

struct ssefan *ssefan_new(struct event_base *base);
/* Stop the thread and free F; lanes still there are removed (their queues
 * released, nothing handed back). */
void ssefan_free(struct ssefan *f);
/* A lane writing to a dup of FD (the thread starts with the first lane).
 * NULL when no descriptor or thread can be had, or when the dup would not be
 * in the lowest quarter of RLIMIT_NOFILE: the caller writes itself. */
struct ssefan_lane *ssefan_add(struct ssefan *f, int fd, ssefan_dead_cb dead, void *arg);
/* Queue LEN bytes at DATA; CLEANUP(DATA, LEN, ARG) once written (NULL: DATA
 * lives as long as the process). */
void ssefan_push(struct ssefan_lane *l, const void *data, size_t len, ssefan_cleanup cleanup,
                 void *arg);
/* Bytes queued on L and not written yet. */
size_t ssefan_pending(struct ssefan_lane *l);
/* Bytes queued on L that its socket refused: what L's client has not taken.
 * 0 while the socket takes more, however much the thread has yet to write
 * (its own lag is not the client's). */
size_t ssefan_refused(struct ssefan_lane *l);
/* Take L out and free it: when this returns the thread no longer writes to
 * its socket (its dup is closed). What it had not written goes, in order, to
 * UNSENT (with CTX), or is cleaned up when UNSENT is NULL. */
void ssefan_remove(struct ssefan_lane *l, ssefan_unsent_cb unsent, void *ctx);

#endif
