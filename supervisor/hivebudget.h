/*
 * hivebudget: the whole hive's daily spend limit (`hive: budget:`, SPEC
 * §12). The supervisor's timeline reader (watch.c) hands it every finished
 * task's cost and tokens; once the day's sum over all bots reaches a limit,
 * every bot is paused by the PAUSE mechanism (a PAUSE file whose text is the
 * reason, which the worker shows as its paused_reason), and the next day the
 * PAUSE files it wrote are removed. `hive resume BOT` removes one by hand and
 * is not undone that day.
 */
#ifndef HIVE_HIVEBUDGET_H
#define HIVE_HIVEBUDGET_H

#include <jansson.h>
#include <stdbool.h>

#include "config/roster.h"

struct hivebudget;

/* The hive budget of ROSTER (NULL when it sets none). */
struct hivebudget *hivebudget_new(const struct roster *roster);
void hivebudget_free(struct hivebudget *b);
/* Count one timeline ENTRY (its timestamp, tokens, cost_usd). */
void hivebudget_count(struct hivebudget *b, const json_t *entry);
/* Once a tick: pause every bot of the roster at 100 %, unpause the next day. */
void hivebudget_tick(struct hivebudget *b, const struct roster *roster);

#endif
