/*
 * logs: reads the supervisor's captured worker output for `hive logs`.
 *
 * Each bot is a logs_source walking its files oldest first (BOT.log.N ..
 * BOT.log.1, BOT.log) one line at a time, so memory stays O(bots) however
 * big the logs are. A line's time is the stamp the worker's logger puts at
 * its start; a line without one (a continuation, or output not from the
 * logger) takes the time of the line before it, so it stays beside it.
 * The sources are merged by time (ties in the order the bots were named).
 * -n is a first pass counting each bot's lines, then skipping all but the
 * last N. -f then polls each BOT.log for what is appended, across rotation
 * and truncation, as `tail -F` does.
 */
#include "cli/logs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "supervisor/logcap.h"

#define LOGS_FOLLOW_MS 200
#define LOGS_FILES (LOGCAP_KEEP + 1)

/* One bot's log files, read line by line. */
struct logs_source {
    const char *id;
    char *paths[LOGS_FILES]; /* existing files, oldest first */
    int n_paths, cur;
    FILE *f;
    char *line; /* the current line, without its newline */
    size_t cap;
    size_t len;
    bool have;      /* LINE is ready to print */
    double ts;      /* its time */
    double last_ts; /* the time of the line before (inherited by unstamped lines) */
    long skip;      /* lines still to skip for -n */
    /* -f */
    int fd;
    ino_t ino;
    struct util_buf part; /* bytes after the last newline */
};

/* ---- times --------------------------------------------------------------- */

/* Read exactly N digits at S into *OUT; false when they are not digits. */
static bool logs_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY-MM-DD" at S into TM; false when it is not a date. */
static bool logs_parse_date(const char *s, size_t len, struct tm *tm)
{
    int y, mo, d;
    if (len < 10 || !logs_digits(s, 4, &y) || s[4] != '-' || !logs_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !logs_digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    return true;
}

/* "(T| )HH:MM[:SS[.fff]]" at S[*I] into TM and *FRAC, moving *I past it;
 * nothing is read when there is no time. */
static void logs_parse_clock(const char *s, size_t len, size_t *i, struct tm *tm, double *frac)
{
    size_t j = *i;
    if (!(j + 6 <= len && (s[j] == 'T' || s[j] == ' ') && logs_digits(s + j + 1, 2, &tm->tm_hour) &&
          s[j + 3] == ':' && logs_digits(s + j + 4, 2, &tm->tm_min)))
        return;
    j += 6;
    if (j + 3 <= len && s[j] == ':' && logs_digits(s + j + 1, 2, &tm->tm_sec))
        j += 3;
    if (j < len && (s[j] == '.' || s[j] == ',')) {
        double scale = 0.1;
        for (j++; j < len && isdigit((unsigned char)s[j]); j++, scale /= 10)
            *frac += (s[j] - '0') * scale;
    }
    *i = j;
}

/* TM with the zone at S[*I] ("Z", "+HH:MM", "-HH:MM", or none: local time)
 * as Unix time, moving *I past the zone. */
static double logs_parse_zone(const char *s, size_t len, size_t *i, struct tm *tm)
{
    int oh, om;
    size_t j = *i;
    if (j < len && s[j] == 'Z') {
        *i = j + 1;
        return (double)timegm(tm);
    }
    if (j + 6 <= len && (s[j] == '+' || s[j] == '-') && logs_digits(s + j + 1, 2, &oh) &&
        s[j + 3] == ':' && logs_digits(s + j + 4, 2, &om)) {
        *i = j + 6;
        return (double)timegm(tm) - (oh * 3600 + om * 60) * (s[j] == '-' ? -1 : 1);
    }
    tm->tm_isdst = -1;
    return (double)mktime(tm);
}

/* "YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]" at S (LEN bytes) as Unix
 * time; a time without a zone is local. *USED gets the bytes read. */
static int logs_parse_iso(const char *s, size_t len, double *out, size_t *used)
{
    struct tm tm = {0};
    size_t i = 10;
    double frac = 0;
    if (!logs_parse_date(s, len, &tm))
        return -1;
    logs_parse_clock(s, len, &i, &tm, &frac);
    *out = logs_parse_zone(s, len, &i, &tm) + frac;
    *used = i;
    return 0;
}

double logs_line_time(const char *line, size_t len)
{
    double t;
    size_t used;
    /* Only a full date and time counts: a line that merely starts with a
     * date is text, not a stamp. */
    if (len < 19 || line[10] != 'T' || logs_parse_iso(line, len, &t, &used) < 0 || used < 19)
        return NAN;
    return t;
}

/* "1h30m", "90s", "2d": seconds, or -1. */
static double logs_parse_duration(const char *s)
{
    double total = 0;
    bool any = false;
    while (*s) {
        char *end;
        if (!isdigit((unsigned char)*s) && *s != '.')
            return -1; /* strtod would skip spaces and take signs */
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || v < 0)
            return -1;
        double unit = *end == 's'   ? 1
                      : *end == 'm' ? 60
                      : *end == 'h' ? 3600
                      : *end == 'd' ? 86400
                                    : 0;
        if (unit == 0)
            return -1;
        total += v * unit;
        s = end + 1;
        any = true;
    }
    return any ? total : -1;
}

int logs_parse_since(const char *text, double now, double *out)
{
    size_t len = strlen(text), used;
    char *end;
    if (len == 0)
        return -1;
    double dur = logs_parse_duration(text);
    if (dur >= 0) {
        *out = now - dur;
        return 0;
    }
    errno = 0;
    double unix_time = strtod(text, &end);
    if (!errno && *end == '\0' && unix_time >= 0 && isdigit((unsigned char)text[0])) {
        *out = unix_time;
        return 0;
    }
    if (logs_parse_iso(text, len, out, &used) == 0 && used == len)
        return 0;
    return -1;
}

/* ---- one source ------------------------------------------------------------ */

/* Find BOT's existing files in DIR, oldest first. */
static void logs_source_init(struct logs_source *s, const char *dir, const char *id)
{
    struct stat st;
    memset(s, 0, sizeof *s);
    s->id = id;
    s->fd = -1;
    s->last_ts = -INFINITY;
    for (int i = LOGCAP_KEEP; i >= 0; i--) {
        char *p = i ? xasprintf("%s/%s.log.%d", dir, id, i) : xasprintf("%s/%s.log", dir, id);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            s->paths[s->n_paths++] = p;
        else
            free(p);
    }
}

/* Rewind S to its first file (for the second pass of -n). */
static void logs_source_rewind(struct logs_source *s)
{
    if (s->f)
        fclose(s->f);
    s->f = NULL;
    s->cur = 0;
    s->have = false;
    s->last_ts = -INFINITY;
}

/* Free what S holds. */
static void logs_source_free(struct logs_source *s)
{
    logs_source_rewind(s);
    for (int i = 0; i < s->n_paths; i++)
        free(s->paths[i]);
    free(s->line);
    if (s->fd >= 0)
        close(s->fd);
    free(s->part.data);
}

/* The next raw line of S across its files; false at the end of the last.
 * With FOLLOW, an unfinished last line is kept for the follower instead. */
static bool logs_source_read(struct logs_source *s, bool follow)
{
    for (;;) {
        if (!s->f) {
            if (s->cur >= s->n_paths)
                return false;
            s->f = fopen(s->paths[s->cur], "re");
            if (!s->f) {
                s->cur++;
                continue;
            }
        }
        ssize_t n = getline(&s->line, &s->cap, s->f);
        if (n > 0 && s->line[n - 1] == '\n') {
            s->line[--n] = '\0';
            s->len = (size_t)n;
            return true;
        }
        bool last = s->cur == s->n_paths - 1;
        if (n > 0 && !(follow && last)) {
            s->len = (size_t)n;
            return true;
        }
        if (n > 0) /* unfinished: the follower completes it */
            util_buf_add(&s->part, s->line, (size_t)n);
        if (last && follow) {
            s->fd = open(s->paths[s->cur], O_RDONLY | O_CLOEXEC);
            if (s->fd >= 0)
                lseek(s->fd, ftello(s->f), SEEK_SET);
        }
        fclose(s->f);
        s->f = NULL;
        s->cur++;
    }
}

/* The next line of S at or after SINCE (its time in S->ts); false at the end. */
static bool logs_source_next(struct logs_source *s, double since, bool follow)
{
    while (logs_source_read(s, follow)) {
        double t = logs_line_time(s->line, s->len);
        s->ts = s->last_ts = isnan(t) ? s->last_ts : t;
        if (s->ts < since)
            continue;
        if (s->skip > 0) {
            s->skip--;
            continue;
        }
        return s->have = true;
    }
    return s->have = false;
}

/* -n: count S's lines at or after SINCE and skip all but the last TAIL. */
static void logs_source_tail(struct logs_source *s, double since, long tail)
{
    long count = 0;
    while (logs_source_next(s, since, false))
        count++;
    logs_source_rewind(s);
    s->skip = count > tail ? count - tail : 0;
}

/* ---- output ---------------------------------------------------------------- */

/* Print one line with its prefix; -1 when stdout fails. */
static int logs_print(const struct logs_opts *o, int idw, const char *id, const char *line,
                      size_t len)
{
    if (o->prefix)
        printf("%-*s | ", idw, id);
    fwrite(line, 1, len, stdout);
    putchar('\n');
    return ferror(stdout) ? -1 : 0;
}

/* The widest id, for the prefix column. */
static int logs_id_width(const struct logs_opts *o)
{
    int w = 0;
    for (size_t i = 0; i < o->n_ids; i++)
        if ((int)strlen(o->ids[i]) > w)
            w = (int)strlen(o->ids[i]);
    return w;
}

/* Print every source's lines merged by time; -1 when stdout fails. */
static int logs_merge(const struct logs_opts *o, struct logs_source *src, int idw)
{
    for (size_t i = 0; i < o->n_ids; i++)
        logs_source_next(&src[i], o->since, o->follow);
    for (;;) {
        struct logs_source *best = NULL;
        for (size_t i = 0; i < o->n_ids; i++)
            if (src[i].have && (!best || src[i].ts < best->ts))
                best = &src[i];
        if (!best)
            return fflush(stdout) == 0 ? 0 : -1;
        if (logs_print(o, idw, best->id, best->line, best->len) < 0)
            return -1;
        logs_source_next(best, o->since, o->follow);
    }
}

/* ---- -f ---------------------------------------------------------------------- */

/* One line that arrived while following. */
struct logs_fresh {
    double ts;
    size_t order;
    const char *id;
    char *text;
    size_t len;
};

/* Order fresh lines by time, then by arrival. */
static int logs_fresh_cmp(const void *a, const void *b)
{
    const struct logs_fresh *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Split S's complete buffered lines into FRESH (grown as needed). */
static void logs_follow_split(struct logs_source *s, struct logs_fresh **fresh, size_t *n,
                              size_t *cap)
{
    size_t start = 0;
    for (size_t i = 0; i < s->part.len; i++) {
        if (s->part.data[i] != '\n')
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *fresh = xrealloc(*fresh, *cap * sizeof **fresh);
        }
        const char *line = s->part.data + start;
        size_t len = i - start;
        double t = logs_line_time(line, len);
        s->last_ts = isnan(t) ? s->last_ts : t;
        (*fresh)[*n] = (struct logs_fresh){s->last_ts, *n, s->id, xstrndup(line, len), len};
        (*n)++;
        start = i + 1;
    }
    if (start == 0)
        return;
    memmove(s->part.data, s->part.data + start, s->part.len - start);
    s->part.len -= start;
}

/* Read what S->fd has from its offset on into S->part. */
static void logs_follow_drain(struct logs_source *s)
{
    char buf[65536];
    ssize_t n;
    while (s->fd >= 0 && (n = read(s->fd, buf, sizeof buf)) > 0)
        util_buf_add(&s->part, buf, (size_t)n);
}

/* Notice rotation (a new file at the path) and truncation of S's log. */
static void logs_follow_reopen(struct logs_source *s, const char *path)
{
    struct stat now, cur;
    if (stat(path, &now) < 0)
        return;
    if (s->fd >= 0 && fstat(s->fd, &cur) == 0 && cur.st_ino == now.st_ino) {
        if (now.st_size < lseek(s->fd, 0, SEEK_CUR))
            lseek(s->fd, 0, SEEK_SET);
        return;
    }
    logs_follow_drain(s); /* the rest of the rotated file */
    if (s->fd >= 0)
        close(s->fd);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
}

/* Sleep MS milliseconds. */
static void logs_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Print what arrives, every LOGS_FOLLOW_MS, until stdout fails. */
static int logs_follow(const struct logs_opts *o, struct logs_source *src, int idw)
{
    struct logs_fresh *fresh = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0) {
        size_t n = 0;
        for (size_t i = 0; i < o->n_ids; i++) {
            char *path = xasprintf("%s/%s.log", o->dir, src[i].id);
            logs_follow_drain(&src[i]);
            logs_follow_reopen(&src[i], path);
            logs_follow_drain(&src[i]);
            logs_follow_split(&src[i], &fresh, &n, &cap);
            free(path);
        }
        if (n > 1)
            qsort(fresh, n, sizeof *fresh, logs_fresh_cmp);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0 && fresh[i].ts >= o->since)
                rc = logs_print(o, idw, fresh[i].id, fresh[i].text, fresh[i].len);
            free(fresh[i].text);
        }
        if (rc == 0 && fflush(stdout) != 0)
            rc = -1;
        if (rc == 0)
            logs_sleep_ms(LOGS_FOLLOW_MS);
    }
    free(fresh);
    return rc;
}

int logs_run(const struct logs_opts *o)
{
    struct logs_source *src = xcalloc(o->n_ids ? o->n_ids : 1, sizeof *src);
    int idw = logs_id_width(o), rc = 0;
    for (size_t i = 0; i < o->n_ids; i++) {
        logs_source_init(&src[i], o->dir, o->ids[i]);
        if (src[i].n_paths == 0 && !o->follow && o->n_ids == 1) {
            fprintf(stderr, "hive: no log for %s in %s\n", o->ids[i], o->dir);
            rc = 1;
        }
        if (o->tail >= 0)
            logs_source_tail(&src[i], o->since, o->tail);
    }
    if (rc == 0 && logs_merge(o, src, idw) < 0)
        rc = 1;
    if (rc == 0 && o->follow)
        rc = logs_follow(o, src, idw) < 0 ? 1 : 0;
    for (size_t i = 0; i < o->n_ids; i++)
        logs_source_free(&src[i]);
    free(src);
    return rc;
}
