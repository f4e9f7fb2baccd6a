/*
 * queue: the pending tasks of one source, in the order they will run. A
 * binary min-heap gives the next task in O(log n); a chained hash table from
 * key to entry (each entry knows its heap slot) makes find and remove by key
 * O(1) and O(log n), which the HTTP API needs for GET /api/task/<id>, 409 on
 * duplicate ids and interrupting a queued task. Per-rank counts and the last
 * entry of each rank make the position of a newcomer (the 202's "position")
 * O(ranks) instead of a scan of the whole queue. Pure data structure: no I/O.
 */
#include "worker/queue.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct queue_entry {
    char *key;
    uint64_t hash;
    int rank;
    int64_t time;
    void *data;
    size_t slot;              /* index in the heap */
    struct queue_entry *next; /* hash bucket chain */
};

/* Ranks 0..QUEUE_RANKS-1 are counted (priorities P0-P9, 10 = unreadable);
 * others work, their positions by a scan. */
#define QUEUE_RANKS 16

struct queue {
    struct queue_entry **heap;
    size_t len, cap;
    struct queue_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count[QUEUE_RANKS];
    size_t below; /* entries of a rank < 0: before every counted one */
    /* The entry ordered last within its rank, or NULL when that is not
     * known (it was removed while others of its rank stayed). */
    struct queue_entry *last[QUEUE_RANKS];
};

/* True when RANK has a counter. */
static bool queue_rank_counted(int rank)
{
    return rank >= 0 && rank < QUEUE_RANKS;
}

/* FNV-1a of KEY. */
static uint64_t queue_hash(const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *key; key++) {
        h ^= (unsigned char)*key;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Order of two entries: rank, then time, then key. */
static int queue_cmp(const struct queue_entry *a, const struct queue_entry *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    return strcmp(a->key, b->key);
}

/* Put E at heap slot I. */
static void queue_place(struct queue *q, size_t i, struct queue_entry *e)
{
    q->heap[i] = e;
    e->slot = i;
}

/* Move the entry at slot I up while it precedes its parent. */
static void queue_sift_up(struct queue *q, size_t i)
{
    struct queue_entry *e = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (queue_cmp(e, q->heap[parent]) >= 0)
            break;
        queue_place(q, i, q->heap[parent]);
        i = parent;
    }
    queue_place(q, i, e);
}

/* Move the entry at slot I down while a child precedes it. */
static void queue_sift_down(struct queue *q, size_t i)
{
    struct queue_entry *e = q->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= q->len)
            break;
        if (child + 1 < q->len && queue_cmp(q->heap[child + 1], q->heap[child]) < 0)
            child++;
        if (queue_cmp(q->heap[child], e) >= 0)
            break;
        queue_place(q, i, q->heap[child]);
        i = child;
    }
    queue_place(q, i, e);
}

/* The bucket chain head for HASH. */
static struct queue_entry **queue_bucket(const struct queue *q, uint64_t hash)
{
    return &q->buckets[hash & (q->nbuckets - 1)];
}

/* Double the bucket array and rehash every entry. */
static void queue_grow_index(struct queue *q)
{
    size_t old_n = q->nbuckets;
    struct queue_entry **old = q->buckets;
    q->nbuckets = old_n * 2;
    q->buckets = xcalloc(q->nbuckets, sizeof *q->buckets);
    for (size_t i = 0; i < old_n; i++) {
        struct queue_entry *e = old[i], *next;
        for (; e; e = next) {
            next = e->next;
            struct queue_entry **head = queue_bucket(q, e->hash);
            e->next = *head;
            *head = e;
        }
    }
    free(old);
}

/* The entry stored under KEY, or NULL. */
static struct queue_entry *queue_lookup(const struct queue *q, const char *key)
{
    if (!key)
        return NULL;
    uint64_t hash = queue_hash(key);
    struct queue_entry *e = *queue_bucket(q, hash);
    for (; e; e = e->next)
        if (e->hash == hash && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Unlink E from its bucket chain. */
static void queue_unindex(struct queue *q, struct queue_entry *e)
{
    struct queue_entry **p = queue_bucket(q, e->hash);
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
}

/* Take the entry at heap slot I out of the queue; return its payload. */
static void *queue_remove_at(struct queue *q, size_t i)
{
    struct queue_entry *e = q->heap[i];
    void *data = e->data;
    queue_unindex(q, e);
    if (queue_rank_counted(e->rank)) {
        q->count[e->rank]--;
        if (q->last[e->rank] == e)
            q->last[e->rank] = NULL;
    } else if (e->rank < 0) {
        q->below--;
    }
    struct queue_entry *last = q->heap[--q->len];
    if (i < q->len) {
        queue_place(q, i, last);
        queue_sift_down(q, i);
        queue_sift_up(q, last->slot);
    }
    free(e->key);
    free(e);
    return data;
}

/* An empty queue. */
struct queue *queue_new(void)
{
    struct queue *q = xcalloc(1, sizeof *q);
    q->cap = 16;
    q->heap = xcalloc(q->cap, sizeof *q->heap);
    q->nbuckets = 16;
    q->buckets = xcalloc(q->nbuckets, sizeof *q->buckets);
    return q;
}

/* Free the queue and its keys, handing each payload to FREE_DATA. */
void queue_free(struct queue *q, void (*free_data)(void *))
{
    if (!q)
        return;
    for (size_t i = 0; i < q->len; i++) {
        if (free_data)
            free_data(q->heap[i]->data);
        free(q->heap[i]->key);
        free(q->heap[i]);
    }
    free(q->heap);
    free(q->buckets);
    free(q);
}

/* Add KEY unless present: index it, then sift it up the heap. */
int queue_push(struct queue *q, const char *key, int rank, int64_t time, void *data)
{
    if (!key || queue_lookup(q, key))
        return -1;
    if (q->len == q->cap) {
        q->cap *= 2;
        q->heap = xrealloc(q->heap, q->cap * sizeof *q->heap);
    }
    if (q->len + 1 > q->nbuckets)
        queue_grow_index(q);
    struct queue_entry *e = xcalloc(1, sizeof *e);
    e->key = xstrdup(key);
    e->hash = queue_hash(key);
    e->rank = rank;
    e->time = time;
    e->data = data;
    struct queue_entry **head = queue_bucket(q, e->hash);
    e->next = *head;
    *head = e;
    queue_place(q, q->len++, e);
    queue_sift_up(q, e->slot);
    if (queue_rank_counted(rank)) {
        /* A newcomer after the known last of its rank (the usual case: a
         * later arrival) is the new last; an empty rank's first is too. */
        struct queue_entry *l = q->last[rank];
        if (q->count[rank]++ == 0 || (l && queue_cmp(l, e) < 0))
            q->last[rank] = e;
    } else if (rank < 0) {
        q->below++;
    }
    return 0;
}

/* The payload at the top of the heap. */
void *queue_peek(const struct queue *q)
{
    return q->len ? q->heap[0]->data : NULL;
}

/* Take the top of the heap. */
void *queue_pop(struct queue *q)
{
    return q->len ? queue_remove_at(q, 0) : NULL;
}

/* The payload under KEY, through the index. */
void *queue_find(const struct queue *q, const char *key)
{
    struct queue_entry *e = queue_lookup(q, key);
    return e ? e->data : NULL;
}

/* The first payload in heap order that MATCH accepts: a linear scan. */
void *queue_find_if(const struct queue *q, bool (*match)(const void *data, const void *ctx),
                    const void *ctx)
{
    for (size_t i = 0; i < q->len; i++)
        if (match(q->heap[i]->data, ctx))
            return q->heap[i]->data;
    return NULL;
}

/* Take KEY out wherever it sits in the heap. */
void *queue_remove(struct queue *q, const char *key)
{
    struct queue_entry *e = queue_lookup(q, key);
    return e ? queue_remove_at(q, e->slot) : NULL;
}

/* 1 + the number of entries ordered before KEY: O(ranks) for the last of
 * its rank (what a newcomer usually is), else O(n), the heap is unsorted. */
size_t queue_position(const struct queue *q, const char *key)
{
    struct queue_entry *e = queue_lookup(q, key);
    if (!e)
        return 0;
    if (queue_rank_counted(e->rank) && q->last[e->rank] == e) {
        size_t before = q->below;
        for (int r = 0; r <= e->rank; r++)
            before += q->count[r];
        return before;
    }
    size_t before = 0;
    for (size_t i = 0; i < q->len; i++)
        if (queue_cmp(q->heap[i], e) < 0)
            before++;
    return before + 1;
}

/* Number of entries. */
size_t queue_len(const struct queue *q)
{
    return q->len;
}

int64_t queue_oldest_time(const struct queue *q)
{
    int64_t oldest = 0;
    for (size_t i = 0; i < q->len; i++)
        if (i == 0 || q->heap[i]->time < oldest)
            oldest = q->heap[i]->time;
    return oldest;
}
