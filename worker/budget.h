/*
 * budget: a bot's spend of the day (SPEC §12): USD and tokens the agent
 * reported, against `budget: {usd_per_day, tokens_per_day, reset_at}`, kept
 * durably in .deia/hive/budget/<BOT>.json so that a restart forgets nothing.
 * The day is the local date, starting at reset_at (default midnight).
 */
#ifndef HIVE_BUDGET_H
#define HIVE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/agentstream.h"
#include "worker/syncer.h"

struct budget_config {
    double usd_per_day;    /* 0: no limit */
    double tokens_per_day; /* 0: no limit */
    int reset_min;         /* minutes after midnight the day starts */
};

enum budget_level {
    BUDGET_OK,
    BUDGET_WARN, /* 80 % was crossed just now (told once a day) */
    BUDGET_OVER, /* 100 % reached: pause until the next day */
};

struct budget;

/* The budget of BOT_ID under WORK_DIR; NULL when CFG sets no limit. */
struct budget *budget_open(struct syncer *sy, const char *work_dir, const char *bot_id,
                           const struct budget_config *cfg);
void budget_free(struct budget *b);
/* Count a task's USAGE at NOW (Unix seconds): what the day's spend is now. */
enum budget_level budget_add(struct budget *b, const struct agent_usage *usage, int64_t now);
/* Where the day's spend stands at NOW (OVER unless resumed by hand today). */
enum budget_level budget_level(struct budget *b, int64_t now);
/* When the day of NOW ends (Unix seconds). */
int64_t budget_day_end(const struct budget *b, int64_t now);
/* "budget: $X of $Y used today" (or tokens): why the bot pauses. */
void budget_describe(const struct budget *b, char *buf, size_t cap);
/* `hive resume`: no more pausing for the rest of the day of NOW. */
void budget_override(struct budget *b, int64_t now);

#endif
