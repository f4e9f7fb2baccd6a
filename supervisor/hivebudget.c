/*
 * hivebudget: owns the hive-wide daily budget (see hivebudget.h). The day of
 * an entry is the local date of its completion time minus reset_at; the sum
 * follows the newest day seen and starts from zero on a new one. The clock
 * is the real one plus the test-only shifts the workers read too
 * (HIVE_TEST_CLOCK_OFFSET, HIVE_TEST_CLOCK_FILE; see worker/agent.h), so a
 * test can move the whole hive to the next day.
 */
#include "supervisor/hivebudget.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define HIVEBUDGET_TAG "budget: hive " /* the start of the PAUSE files it writes */

struct hivebudget {
    double usd_limit, tokens_limit;
    int reset_min;
    char day[16];       /* the day of the sums */
    double usd, tokens; /* spent that day */
    char paused[16];    /* the day every bot was paused, "" none */
    char warned[16];    /* the day 80 % was told */
    char *state;        /* .deia/hive/budget/.hive.json: the paused day, kept */
};

/* Now, as the workers' budgets see it (worker/agent.c agent_now). */
static int64_t hivebudget_now(void)
{
    const char *off = getenv("HIVE_TEST_CLOCK_OFFSET"), *file = getenv("HIVE_TEST_CLOCK_FILE");
    int64_t now = (int64_t)time(NULL) + (off ? strtoll(off, NULL, 10) : 0);
    char *text = file ? util_read_file(file, 64, NULL) : NULL;
    if (text)
        now += strtoll(text, NULL, 10);
    free(text);
    return now;
}

/* The budget day of the Unix time T. */
static void hivebudget_day(const struct hivebudget *b, int64_t t, char *out, size_t cap)
{
    time_t at = (time_t)(t - (int64_t)b->reset_min * 60);
    struct tm tm;
    localtime_r(&at, &tm);
    strftime(out, cap, "%Y-%m-%d", &tm);
}

/* The day every bot was paused, as a previous supervisor kept it: a
 * restart on that day does not pause again the bots resumed by hand, and
 * the next day still lifts the pause it made. */
static void hivebudget_load(struct hivebudget *b)
{
    char *text = util_read_file(b->state, 4096, NULL);
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    const char *day = json_string_value(json_object_get(doc, "paused"));
    if (day && strlen(day) < sizeof b->paused)
        snprintf(b->paused, sizeof b->paused, "%s", day);
    json_decref(doc);
    free(text);
}

/* Keep the paused day (once a day at most: a rename and its syncs). */
static void hivebudget_save(const struct hivebudget *b)
{
    char *dir = xstrdup(b->state);
    *strrchr(dir, '/') = '\0';
    json_t *doc = json_pack("{s:s}", "paused", b->paused);
    char *text = json_dumps(doc, JSON_COMPACT);
    if (util_mkdirs(dir) < 0 || util_write_file_atomic(b->state, text, strlen(text)) < 0)
        log_warn("hive budget: cannot write %s: %s", b->state, strerror(errno));
    free(text);
    json_decref(doc);
    free(dir);
}

struct hivebudget *hivebudget_new(const struct roster *roster)
{
    const struct roster_budget *rb = &roster->budget;
    double usd = rb->usd_per_day ? strtod(rb->usd_per_day, NULL) : 0;
    if (!(usd > 0) && rb->tokens_per_day <= 0)
        return NULL;
    struct hivebudget *b = xcalloc(1, sizeof *b);
    b->usd_limit = usd;
    b->tokens_limit = rb->tokens_per_day;
    int h = 0, m = 0;
    if (rb->reset_at && sscanf(rb->reset_at, "%d:%d", &h, &m) == 2)
        b->reset_min = h * 60 + m;
    b->state = xasprintf("%s/.deia/hive/budget/.hive.json", roster->work_dir);
    hivebudget_load(b);
    return b;
}

void hivebudget_free(struct hivebudget *b)
{
    if (b)
        free(b->state);
    free(b);
}

void hivebudget_count(struct hivebudget *b, const json_t *e)
{
    const char *ts = json_string_value(json_object_get(e, "timestamp"));
    struct tm tm = {0};
    if (!b || !ts || !strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm))
        return;
    int64_t shift = hivebudget_now() - (int64_t)time(NULL);
    char day[16];
    hivebudget_day(b, (int64_t)timegm(&tm) + shift, day, sizeof day);
    int cmp = strcmp(day, b->day);
    if (cmp < 0)
        return;
    if (cmp > 0) {
        snprintf(b->day, sizeof b->day, "%s", day);
        b->usd = b->tokens = 0;
    }
    json_t *tokens = json_object_get(e, "tokens");
    const char *kinds[] = {"input", "output", "cache_read", "cache_write"};
    for (int k = 0; k < 4; k++)
        b->tokens += json_number_value(json_object_get(tokens, kinds[k]));
    b->usd += json_number_value(json_object_get(e, "cost_usd"));
}

/* The larger share of a limit used today (0 on another day). */
static double hivebudget_share(const struct hivebudget *b, const char *today)
{
    if (strcmp(today, b->day) != 0)
        return 0;
    double usd = b->usd_limit > 0 ? b->usd / b->usd_limit : 0;
    double tok = b->tokens_limit > 0 ? b->tokens / b->tokens_limit : 0;
    return usd > tok ? usd : tok;
}

/* The PAUSE file of bot ID. Caller frees. */
static char *hivebudget_pause_path(const struct roster *r, const char *id)
{
    return xasprintf("%s/.deia/hive/controls/%s-PAUSE", r->work_dir, id);
}

/* Create PATH holding REASON, whole from its first moment (the worker reads
 * the reason as soon as the file appears): written aside, then linked in,
 * never over a PAUSE file that exists. */
static int hivebudget_pause_file(const char *dir, const char *path, const char *reason)
{
    char *tmp = xasprintf("%s/.hive-budget-%d.tmp", dir, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    int rc = fd < 0 ? -1 : 0;
    if (fd >= 0) {
        rc = write(fd, reason, strlen(reason)) == (ssize_t)strlen(reason) ? 0 : -1;
        close(fd);
        if (rc == 0 && link(tmp, path) < 0 && errno != EEXIST)
            rc = -1;
        int saved = errno;
        unlink(tmp);
        errno = saved;
    }
    free(tmp);
    return rc;
}

/* Pause every bot with REASON (a bot already paused is left as it is). */
static void hivebudget_pause_all(const struct roster *r, const char *reason)
{
    char *dir = xasprintf("%s/.deia/hive/controls", r->work_dir);
    util_mkdirs(dir);
    for (size_t i = 0; i < r->n_bots; i++) {
        char *path = hivebudget_pause_path(r, r->bots[i].id);
        if (hivebudget_pause_file(dir, path, reason) < 0)
            log_warn("hive budget: cannot pause %s: %s", r->bots[i].id, strerror(errno));
        free(path);
    }
    free(dir);
}

/* Remove the PAUSE files this budget wrote (their text starts with its tag). */
static void hivebudget_unpause_all(const struct roster *r)
{
    for (size_t i = 0; i < r->n_bots; i++) {
        char *path = hivebudget_pause_path(r, r->bots[i].id);
        char *text = util_read_file(path, 4096, NULL);
        if (text && strncmp(text, HIVEBUDGET_TAG, strlen(HIVEBUDGET_TAG)) == 0)
            unlink(path);
        free(text);
        free(path);
    }
}

void hivebudget_tick(struct hivebudget *b, const struct roster *r)
{
    if (!b)
        return;
    char today[16], reason[200];
    hivebudget_day(b, hivebudget_now(), today, sizeof today);
    if (b->paused[0] && strcmp(b->paused, today) != 0) {
        log_info("hive budget: a new day, the bots resume");
        hivebudget_unpause_all(r);
        b->paused[0] = '\0';
        hivebudget_save(b);
    }
    double share = hivebudget_share(b, today);
    if (b->usd_limit > 0 && b->usd / b->usd_limit >= share - 1e-12)
        snprintf(reason, sizeof reason, HIVEBUDGET_TAG "$%.2f of $%.2f used today", b->usd,
                 b->usd_limit);
    else
        snprintf(reason, sizeof reason, HIVEBUDGET_TAG "%.0f of %.0f tokens used today", b->tokens,
                 b->tokens_limit);
    if (share >= 0.8 && strcmp(b->warned, today) != 0) {
        snprintf(b->warned, sizeof b->warned, "%s", today);
        log_warn("80%% of the hive's daily budget used (%s)", reason);
    }
    if (share >= 1.0 && strcmp(b->paused, today) != 0) {
        snprintf(b->paused, sizeof b->paused, "%s", today);
        log_warn("every bot pauses until the next day: %s", reason);
        hivebudget_save(b);
        hivebudget_pause_all(r, reason);
    }
}
