/*
 * strmap: separate chaining over a power-of-two table that doubles when it
 * holds as many entries as buckets, so a look-up costs one hash and a short
 * chain whatever the size (see strmap.h).
 */
#include "common/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct strmap_entry {
    struct strmap_entry *next;
    uint32_t hash;
    char *key;
    void *value;
};

struct strmap {
    struct strmap_entry **buckets;
    size_t n_buckets; /* a power of two */
    size_t count;
};

/* FNV-1a of S. */
static uint32_t strmap_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

struct strmap *strmap_new(void)
{
    struct strmap *map = xcalloc(1, sizeof *map);
    map->n_buckets = 16;
    map->buckets = xcalloc(map->n_buckets, sizeof *map->buckets);
    return map;
}

void strmap_free(struct strmap *map)
{
    if (!map)
        return;
    for (size_t i = 0; i < map->n_buckets; i++)
        for (struct strmap_entry *e = map->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->key);
            free(e);
        }
    free(map->buckets);
    free(map);
}

/* The link that points at KEY's entry (or at the NULL ending its chain). */
static struct strmap_entry **strmap_find(const struct strmap *map, const char *key, uint32_t h)
{
    struct strmap_entry **link = &map->buckets[h & (map->n_buckets - 1)];
    while (*link && ((*link)->hash != h || strcmp((*link)->key, key) != 0))
        link = &(*link)->next;
    return link;
}

/* Twice as many buckets, every entry moved. */
static void strmap_grow(struct strmap *map)
{
    size_t n = map->n_buckets * 2;
    struct strmap_entry **buckets = xcalloc(n, sizeof *buckets);
    for (size_t i = 0; i < map->n_buckets; i++)
        for (struct strmap_entry *e = map->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = buckets[e->hash & (n - 1)];
            buckets[e->hash & (n - 1)] = e;
        }
    free(map->buckets);
    map->buckets = buckets;
    map->n_buckets = n;
}

void *strmap_get(const struct strmap *map, const char *key)
{
    struct strmap_entry *e = *strmap_find(map, key, strmap_hash(key));
    return e ? e->value : NULL;
}

void strmap_put(struct strmap *map, const char *key, void *value)
{
    uint32_t h = strmap_hash(key);
    struct strmap_entry **link = strmap_find(map, key, h);
    if (*link) {
        (*link)->value = value;
        return;
    }
    struct strmap_entry *e = xcalloc(1, sizeof *e);
    e->hash = h;
    e->key = xstrdup(key);
    e->value = value;
    *link = e;
    if (++map->count > map->n_buckets)
        strmap_grow(map);
}

void *strmap_remove(struct strmap *map, const char *key)
{
    struct strmap_entry **link = strmap_find(map, key, strmap_hash(key));
    struct strmap_entry *e = *link;
    if (!e)
        return NULL;
    void *value = e->value;
    *link = e->next;
    free(e->key);
    free(e);
    map->count--;
    return value;
}

size_t strmap_count(const struct strmap *map)
{
    return map->count;
}
