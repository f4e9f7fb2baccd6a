/*
 * budget: owns a bot's day of spend (see budget.h). The state is tiny (the
 * day, USD, tokens, whether 80 % was told, whether a hand resumed it) and
 * rewritten whole, atomically, after each task that cost something. A new
 * day (its key is the local date of now minus reset_at) starts from zero.
 * Time comes in as an argument: the caller's clock (agent_now) may be moved
 * by tests.
 */
#include "worker/budget.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

#define BUDGET_WARN_SHARE 0.8

struct budget {
    struct budget_config cfg;
    struct syncer *syncer; /* writes the state off the loop */
    char *dir, *path;
    char day[16]; /* YYYY-MM-DD of the budget's day */
    double usd, tokens;
    bool warned, overridden;
};

/* The key of the budget day holding NOW: the local date of NOW - reset_at. */
static void budget_day_key(const struct budget *b, int64_t now, char *out, size_t cap)
{
    time_t t = (time_t)(now - (int64_t)b->cfg.reset_min * 60);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d", &tm);
}

/* Read the stored state; a missing or bad file is an empty day. */
static void budget_load(struct budget *b)
{
    size_t len;
    char *text = util_read_file(b->path, 4096, &len);
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    const char *day = json_string_value(json_object_get(doc, "day"));
    if (day && strlen(day) < sizeof b->day) {
        snprintf(b->day, sizeof b->day, "%s", day);
        b->usd = json_number_value(json_object_get(doc, "usd"));
        b->tokens = json_number_value(json_object_get(doc, "tokens"));
        b->warned = json_is_true(json_object_get(doc, "warned"));
        b->overridden = json_is_true(json_object_get(doc, "overridden"));
    }
    json_decref(doc);
}

/* Write the state durably (temp file, fsync, rename, fsync of the folder),
 * on the syncer's thread: no sync on the loop. */
static void budget_save(struct budget *b)
{
    json_t *doc = json_pack("{s:s, s:f, s:f, s:b, s:b}", "day", b->day, "usd", b->usd, "tokens",
                            b->tokens, "warned", b->warned, "overridden", b->overridden);
    char *text = json_dumps(doc, JSON_COMPACT);
    syncer_write_file(b->syncer, b->path, text, strlen(text));
    free(text);
    json_decref(doc);
}

/* Move to the day of NOW, from zero when it is a new one. */
static void budget_roll(struct budget *b, int64_t now)
{
    char day[16];
    budget_day_key(b, now, day, sizeof day);
    if (strcmp(day, b->day) == 0)
        return;
    snprintf(b->day, sizeof b->day, "%s", day);
    b->usd = b->tokens = 0;
    b->warned = b->overridden = false;
}

/* The larger share of either limit used, 0 when neither is set. */
static double budget_share(const struct budget *b)
{
    double usd = b->cfg.usd_per_day > 0 ? b->usd / b->cfg.usd_per_day : 0;
    double tok = b->cfg.tokens_per_day > 0 ? b->tokens / b->cfg.tokens_per_day : 0;
    return usd > tok ? usd : tok;
}

struct budget *budget_open(struct syncer *sy, const char *work_dir, const char *bot_id,
                           const struct budget_config *cfg)
{
    if (!(cfg->usd_per_day > 0) && !(cfg->tokens_per_day > 0))
        return NULL;
    struct budget *b = xcalloc(1, sizeof *b);
    b->cfg = *cfg;
    b->syncer = sy;
    b->dir = xasprintf("%s/.deia/hive/budget", work_dir);
    b->path = xasprintf("%s/%s.json", b->dir, bot_id);
    budget_load(b);
    return b;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    free(b->dir);
    free(b->path);
    free(b);
}

enum budget_level budget_add(struct budget *b, const struct agent_usage *u, int64_t now)
{
    budget_roll(b, now);
    if (u->cost_known)
        b->usd += u->cost_usd;
    if (u->known)
        b->tokens += (double)(u->input + u->output + u->cache_read + u->cache_write);
    enum budget_level level = budget_level(b, now);
    if (level == BUDGET_OK && !b->warned && budget_share(b) >= BUDGET_WARN_SHARE) {
        b->warned = true;
        level = BUDGET_WARN;
    }
    if (u->known || u->cost_known || level != BUDGET_OK)
        budget_save(b);
    return level;
}

enum budget_level budget_level(struct budget *b, int64_t now)
{
    budget_roll(b, now);
    return !b->overridden && budget_share(b) >= 1.0 ? BUDGET_OVER : BUDGET_OK;
}

int64_t budget_day_end(const struct budget *b, int64_t now)
{
    time_t t = (time_t)(now - (int64_t)b->cfg.reset_min * 60);
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_mday++;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) + (int64_t)b->cfg.reset_min * 60;
}

void budget_describe(const struct budget *b, char *buf, size_t cap)
{
    double usd = b->cfg.usd_per_day > 0 ? b->usd / b->cfg.usd_per_day : 0;
    double tok = b->cfg.tokens_per_day > 0 ? b->tokens / b->cfg.tokens_per_day : 0;
    if (usd >= tok)
        snprintf(buf, cap, "budget: $%.2f of $%.2f used today", b->usd, b->cfg.usd_per_day);
    else
        snprintf(buf, cap, "budget: %.0f of %.0f tokens used today", b->tokens,
                 b->cfg.tokens_per_day);
}

void budget_override(struct budget *b, int64_t now)
{
    budget_roll(b, now);
    if (budget_share(b) < 1.0)
        return;
    b->overridden = true;
    budget_save(b);
}
