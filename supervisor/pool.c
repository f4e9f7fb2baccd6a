/*
 * pool: the index of pools and tags, and each bot's load as the supervisor
 * last heard it. Names are found through small open-addressing hash tables
 * (bots by id, candidate lists by pool name and by tag), built once per
 * roster; a choice is one pass over one candidate list.
 */
#include "supervisor/pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct pool_bot {
    char *id;
    char *pool;  /* NULL: none */
    char **tags; /* N_TAGS names */
    size_t n_tags;
    bool running;
    enum pool_activity act;
    unsigned queued;
    int64_t idle_since_ns; /* when it was last seen busy; 0: never */
};

/* The bots of one pool name or one tag, in roster order. */
struct pool_list {
    const char *name; /* borrowed from its first bot */
    size_t *bots;
    size_t n;
};

/* A string -> index table; CAP is a power of 2 over twice the keys. */
struct pool_hash {
    const char **keys; /* NULL: empty slot */
    size_t *vals;
    size_t cap;
};

struct pool {
    struct pool_bot *bots;
    size_t n_bots;
    struct pool_hash by_id;
    struct pool_list *lists; /* pools, then tags */
    size_t n_lists;
    struct pool_hash pools, tags; /* name -> index in lists */
};

/* ---- hash tables ----------------------------------------------------------- */

/* FNV-1a of S. */
static size_t pool_hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* An empty table with room for N keys. */
static void pool_hash_init(struct pool_hash *h, size_t n)
{
    h->cap = 8;
    while (h->cap < 2 * n + 2)
        h->cap *= 2;
    h->keys = xcalloc(h->cap, sizeof *h->keys);
    h->vals = xcalloc(h->cap, sizeof *h->vals);
}

static void pool_hash_free(struct pool_hash *h)
{
    free(h->keys);
    free(h->vals);
    memset(h, 0, sizeof *h);
}

/* The slot of KEY: where it is, or the empty one where it would go. */
static size_t pool_hash_slot(const struct pool_hash *h, const char *key)
{
    size_t i = pool_hash_of(key) & (h->cap - 1);
    while (h->keys[i] && strcmp(h->keys[i], key) != 0)
        i = (i + 1) & (h->cap - 1);
    return i;
}

/* KEY's value, or -1. */
static long pool_hash_get(const struct pool_hash *h, const char *key)
{
    if (!h->cap || !key)
        return -1;
    size_t i = pool_hash_slot(h, key);
    return h->keys[i] ? (long)h->vals[i] : -1;
}

/* Set KEY (borrowed; it must outlive the table) to VAL. */
static void pool_hash_put(struct pool_hash *h, const char *key, size_t val)
{
    size_t i = pool_hash_slot(h, key);
    h->keys[i] = key;
    h->vals[i] = val;
}

/* ---- the index ------------------------------------------------------------- */

struct pool *pool_new(void)
{
    return xcalloc(1, sizeof(struct pool));
}

/* Free everything the index holds (not the struct). */
static void pool_clear(struct pool *p)
{
    for (size_t i = 0; i < p->n_bots; i++) {
        free(p->bots[i].id);
        free(p->bots[i].pool);
        for (size_t t = 0; t < p->bots[i].n_tags; t++)
            free(p->bots[i].tags[t]);
        free(p->bots[i].tags);
    }
    for (size_t i = 0; i < p->n_lists; i++)
        free(p->lists[i].bots);
    free(p->bots);
    free(p->lists);
    pool_hash_free(&p->by_id);
    pool_hash_free(&p->pools);
    pool_hash_free(&p->tags);
    p->bots = NULL;
    p->lists = NULL;
    p->n_bots = p->n_lists = 0;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_clear(p);
    free(p);
}

/* Add bot I to the list NAME of table H (made when new). */
static void pool_list_add(struct pool *p, struct pool_hash *h, const char *name, size_t i)
{
    long l = pool_hash_get(h, name);
    if (l < 0) {
        l = (long)p->n_lists++;
        p->lists[l] = (struct pool_list){.name = name};
        pool_hash_put(h, name, (size_t)l);
    }
    struct pool_list *list = &p->lists[l];
    list->bots = xrealloc(list->bots, (list->n + 1) * sizeof *list->bots);
    list->bots[list->n++] = i;
}

/* Copy DEF into bot slot B, with the load OLD had (NULL: a new bot). */
static void pool_bot_init(struct pool_bot *b, const struct pool_bot_def *def,
                          const struct pool_bot *old)
{
    *b = old ? *old : (struct pool_bot){0};
    b->id = xstrdup(def->id);
    b->pool = def->pool ? xstrdup(def->pool) : NULL;
    b->n_tags = 0;
    while (def->tags && def->tags[b->n_tags])
        b->n_tags++;
    b->tags = xcalloc(b->n_tags + 1, sizeof *b->tags);
    for (size_t t = 0; t < b->n_tags; t++)
        b->tags[t] = xstrdup(def->tags[t]);
}

void pool_set_bots(struct pool *p, const struct pool_bot_def *defs, size_t n)
{
    struct pool old = *p;
    size_t n_tags = 0;
    memset(p, 0, sizeof *p);
    p->bots = xcalloc(n ? n : 1, sizeof *p->bots);
    pool_hash_init(&p->by_id, n);
    for (size_t i = 0; i < n; i++) {
        long o = pool_hash_get(&old.by_id, defs[i].id);
        pool_bot_init(&p->bots[i], &defs[i], o >= 0 ? &old.bots[o] : NULL);
        pool_hash_put(&p->by_id, p->bots[i].id, i);
        n_tags += p->bots[i].n_tags;
    }
    p->n_bots = n;
    p->lists = xcalloc(n + n_tags + 1, sizeof *p->lists);
    pool_hash_init(&p->pools, n);
    pool_hash_init(&p->tags, n_tags);
    for (size_t i = 0; i < n; i++) {
        if (p->bots[i].pool)
            pool_list_add(p, &p->pools, p->bots[i].pool, i);
        for (size_t t = 0; t < p->bots[i].n_tags; t++)
            pool_list_add(p, &p->tags, p->bots[i].tags[t], i);
    }
    pool_clear(&old);
}

long pool_find(const struct pool *p, const char *id)
{
    return pool_hash_get(&p->by_id, id);
}

const char *pool_bot_id(const struct pool *p, size_t i)
{
    return i < p->n_bots ? p->bots[i].id : NULL;
}

/* ---- loads ----------------------------------------------------------------- */

void pool_note_running(struct pool *p, size_t i, bool running)
{
    if (i >= p->n_bots)
        return;
    struct pool_bot *b = &p->bots[i];
    if (b->running && !running) { /* a new worker starts empty-handed as far as we know */
        b->act = POOL_IDLE;
        b->queued = 0;
    }
    b->running = running;
}

void pool_note_load(struct pool *p, size_t i, enum pool_activity act, unsigned queued,
                    int64_t now_ns)
{
    if (i >= p->n_bots)
        return;
    struct pool_bot *b = &p->bots[i];
    if (b->act != POOL_IDLE || act != POOL_IDLE)
        b->idle_since_ns = now_ns;
    b->act = act;
    b->queued = queued;
}

void pool_note_sent(struct pool *p, size_t i)
{
    if (i >= p->n_bots)
        return;
    struct pool_bot *b = &p->bots[i];
    if (b->act == POOL_IDLE)
        b->act = POOL_BUSY; /* it starts the task at once */
    else
        b->queued++;
}

/* ---- the choice ------------------------------------------------------------ */

/* True when A has less work than B. */
static bool pool_less_work(const struct pool_bot *a, const struct pool_bot *b)
{
    if (a->act != b->act)
        return a->act < b->act;
    if (a->queued != b->queued)
        return a->queued < b->queued;
    return a->idle_since_ns < b->idle_since_ns;
}

/* True when bot B has tag NAME. */
static bool pool_has_tag(const struct pool_bot *b, const char *name)
{
    for (size_t t = 0; t < b->n_tags; t++)
        if (strcmp(b->tags[t], name) == 0)
            return true;
    return false;
}

/* True when bot I matches Q's pool and every tag of Q. */
static bool pool_matches(const struct pool *p, size_t i, const struct pool_query *q)
{
    const struct pool_bot *b = &p->bots[i];
    if (q->pool && (!b->pool || strcmp(b->pool, q->pool) != 0))
        return false;
    for (size_t t = 0; t < q->n_tags; t++)
        if (!pool_has_tag(b, q->tags[t]))
            return false;
    return true;
}

/* True when bot I is in Q's tried list. */
static bool pool_tried(const struct pool_query *q, size_t i)
{
    for (size_t k = 0; k < q->n_tried; k++)
        if (q->tried[k] == i)
            return true;
    return false;
}

/* The shortest candidate list Q draws from (its pool's or its rarest tag's),
 * or NULL when a name of Q has none. */
static const struct pool_list *pool_candidates(const struct pool *p, const struct pool_query *q)
{
    const struct pool_list *best = NULL;
    if (q->pool) {
        long l = pool_hash_get(&p->pools, q->pool);
        if (l < 0)
            return NULL;
        best = &p->lists[l];
    }
    for (size_t t = 0; t < q->n_tags; t++) {
        long l = pool_hash_get(&p->tags, q->tags[t]);
        if (l < 0)
            return NULL;
        if (!best || p->lists[l].n < best->n)
            best = &p->lists[l];
    }
    return best;
}

long pool_choose(const struct pool *p, const struct pool_query *q)
{
    const struct pool_list *list = pool_candidates(p, q);
    long best = -1;
    bool any = false;

    if (!list)
        return POOL_UNKNOWN;
    for (size_t k = 0; k < list->n; k++) {
        size_t i = list->bots[k];
        if (!pool_matches(p, i, q))
            continue;
        any = true;
        if (!p->bots[i].running || (q->n_tried && pool_tried(q, i)))
            continue;
        if (best < 0 || pool_less_work(&p->bots[i], &p->bots[best]))
            best = (long)i;
    }
    if (best >= 0)
        return best;
    return any ? POOL_NONE_RUNNING : POOL_UNKNOWN;
}
