/*
 * evlog: a bounded, numbered log of events in JSON lines, as the worker's
 * per-bot events file and the supervisor's merged stream keep them. Each
 * line is one JSON object whose integer field KEY ("seq", "hive_seq")
 * numbers it; lines are appended with one write(2) and no fsync. The file
 * is cut at EVLOG_FILE_MAX into two generations (PATH and PATH.1), so what
 * is kept is the newest 4 to 8 MiB.
 */
#ifndef HIVE_EVLOG_H
#define HIVE_EVLOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVLOG_FILE_MAX (4u << 20)

struct evlog;

/* One kept line: its number, parsed object (borrowed) and text. */
typedef void (*evlog_line_cb)(uint64_t n, json_t *obj, const char *line, size_t len, void *arg);

/* Open (or start) the log at PATH numbered by KEY; a last line cut by a
 * crash is removed. A log that does not exist is made by the first append,
 * not here (absent reads as empty). Every line kept is shown to SCAN first (may be NULL),
 * oldest first, so the owner can rebuild what it derives from them. */
struct evlog *evlog_open(const char *path, const char *key, evlog_line_cb scan, void *arg);
/* A point in the log: the file holding it (inode), how far into it, and
 * the number of the line just before it. */
struct evlog_mark {
    unsigned long long ino;
    long long size;
    uint64_t last; /* the number of the last line before it */
};
/* evlog_open, but SCAN is shown only the lines after MARK when the log
 * still holds that point (its file is the current or the previous
 * generation, at least that long, numbered as MARK says; *AFTER true);
 * else every line, as evlog_open (*AFTER false). The owner then rebuilds
 * from what it kept at MARK plus those lines. MARK may be NULL. */
struct evlog *evlog_open_after(const char *path, const char *key, const struct evlog_mark *mark,
                               evlog_line_cb scan, void *arg, bool *after);
/* Where the log ends now (for evlog_open_after); false when unknown. */
bool evlog_mark(const struct evlog *log, struct evlog_mark *out);
void evlog_close(struct evlog *log);
/* The number of the last line (0: none). */
uint64_t evlog_last(const struct evlog *log);
/* Append LINE (LEN bytes, no '\n'); the caller numbered it evlog_last()+1. */
void evlog_append(struct evlog *log, const char *line, size_t len, uint64_t n);
/* Hand CB the kept lines numbered over SINCE, oldest first, at most MAX
 * (0: all). *FIRST gets the number of the oldest line kept (0: none). */
void evlog_replay(struct evlog *log, uint64_t since, size_t max, uint64_t *first, evlog_line_cb cb,
                  void *arg);
/* The number of the oldest line kept (0: none). */
uint64_t evlog_first(const struct evlog *log);
/* True when a reader at cursor SINCE missed lines no longer kept, or SINCE
 * is from the future (the log was lost): it must resync. 0 never does. */
bool evlog_must_resync(uint64_t since, uint64_t first, uint64_t last);

#endif
