/*
 * strmap: a map from strings to pointers, for look-ups that must not grow
 * with the number of entries (a proxy's or a client's pools at 1,000 bots).
 * Keys are copied; values are the caller's and never freed here.
 */
#ifndef HIVE_COMMON_STRMAP_H
#define HIVE_COMMON_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
/* Free MAP and its keys (not its values). NULL is fine. */
void strmap_free(struct strmap *map);
/* The value of KEY, or NULL. */
void *strmap_get(const struct strmap *map, const char *key);
/* Set KEY to VALUE (replacing any value it had). */
void strmap_put(struct strmap *map, const char *key, void *value);
/* Remove KEY; its value, or NULL when it was absent. */
void *strmap_remove(struct strmap *map, const char *key);
size_t strmap_count(const struct strmap *map);

#endif
