/*
 * timeline: the durable timeline of one bot (SPEC §2, §8) — one JSON line per
 * finished task in .deia/bot-logs/<BOT-ID>-timeline.jsonl, a binary index
 * beside it (<BOT-ID>-timeline.idx) that keeps the §8 queries fast at a
 * million entries, and the queries themselves: GET /api/timeline of one bot
 * and the supervisor's merge of several bots.
 *
 * Depends on common/ only (no worker/ header), so the supervisor may link it
 * for the merge. Parsers and queries return codes; nothing here logs.
 */
#ifndef HIVE_TIMELINE_H
#define HIVE_TIMELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outputs and errors longer than this are cut (on a UTF-8 boundary). */
#define TIMELINE_TEXT_MAX 65536
/* Default and largest page (SPEC §8). */
#define TIMELINE_LIMIT_DEFAULT 100
#define TIMELINE_LIMIT_MAX 1000

struct timeline;

/* A finished task, as timeline_append() records it. */
struct timeline_entry {
    const char *task_id;
    const char *source;       /* "file", "http" or "websocket" */
    int64_t finished_wall_ns; /* completion time */
    bool success;
    bool cancelled;     /* state "cancelled" (success is then false) */
    const char *output; /* the adapter's output, may be NULL */
    size_t output_len;
    const char *error; /* NULL or "" when none */
    double duration_seconds;
    const char *response_file;         /* the response file's name; with task_id the
                                          key that makes appending idempotent */
    const char *const *files_modified; /* FILES_COUNT strings */
    size_t files_count;
    const json_t *extra; /* NULL, or more fields (tokens, cost...); never
                            replaces one of the above */
};

/* A parsed GET /api/timeline query. */
struct timeline_query {
    size_t limit, offset;
    int source;  /* -1 any; 0 file, 1 http, 2 websocket */
    int success; /* -1 any; 0 false; 1 true */
    bool has_start, has_end;
    int64_t start, end; /* inclusive, UTC seconds */
    char *bot;          /* bot= (supervisor), NULL when absent */
};

/* Open the timeline of BOT_ID in DIR (the .deia/bot-logs folder, which must
 * exist). WRITER (the worker; one per bot): when the JSONL is missing the
 * timeline is empty and the first append makes both files (absent is empty,
 * and a start makes no inode), a torn last line is cut off, the index is rebuilt when missing or
 * corrupt and brought up to date when behind. Reader (the supervisor): never
 * writes; a missing or corrupt index is rebuilt in memory. NULL with a reason
 * in ERR when the files cannot be opened. */
struct timeline *timeline_open(const char *dir, const char *bot_id, bool writer, char *err,
                               size_t errlen);
/* Close and free (NULL is fine). */
void timeline_close(struct timeline *tl);
/* The bot id it was opened with. */
const char *timeline_bot_id(const struct timeline *tl);
/* Number of indexed entries. */
size_t timeline_count(const struct timeline *tl);

/* Append one finished task (writer). 0 appended, 1 already there (same
 * task_id and response_file among the last entries), -1 with errno when the
 * JSONL could not be written (nothing appended). No fsync (see timeline.c). */
int timeline_append(struct timeline *tl, const struct timeline_entry *e);

/* Reader: take in what the writer appended since (or reopen after it rebuilt
 * the index). 0, or -1 with errno when the files went away. */
int timeline_refresh(struct timeline *tl);

/* The newest entry of TASK_ID as stored (a new reference), or NULL. */
json_t *timeline_find(struct timeline *tl, const char *task_id);

/* Parse a raw query string (after '?', not decoded; NULL or "" = defaults).
 * 0, or -1 with the 400 detail in ERR. Clear Q afterwards either way.
 * limit: 1..1000 (0 and 1001 are 400s); offset: 0 or more; source: file,
 * http or websocket; success: true, false, 1 or 0 (any case); start_time and
 * end_time: see timeline_parse_time(), both inclusive, whole seconds (a
 * start's fraction rounds up, an end's down), a start after the end is a 400;
 * bot: a bot id. Percent escapes and '+' for a space are decoded (and a space
 * before a zone offset reads as '+', as an unencoded "+01:00" arrives); a
 * parameter given twice takes the last value; unknown parameters are
 * ignored. */
int timeline_query_parse(const char *qs, struct timeline_query *q, char *err, size_t errlen);
void timeline_query_clear(struct timeline_query *q);

/* GET /api/timeline of one bot: the HTTP status (200 or 400) and the JSON
 * body in *BODY (caller frees). bot= is ignored. */
int timeline_answer(struct timeline *tl, const char *qs, char **body, size_t *len);
/* The supervisor's merged timeline over N bots (readers; refreshed here):
 * newest first across bots, same filters plus bot=; BOT (the seed's
 * /api/bot/<id>/timeline) overrides bot= when not NULL. Top-level bot_id is
 * the bot filter or null. Status 200 or 400, body as above. */
int timeline_answer_merged(struct timeline *const *tls, size_t n, const char *qs, const char *bot,
                           char **body, size_t *len);

/* The 200 answer object of §8 for a parsed query Q over N timelines (the
 * body timeline_answer_merged() sends; for the WebSocket timeline's
 * initial_entries too): Q->bot filters the bots and is the top-level bot_id
 * (null without). The timelines are refreshed first. New reference. */
json_t *timeline_query_run(struct timeline *const *tls, size_t n, const struct timeline_query *q);

/* ISO-8601 UTC seconds of S (date, optional time with optional fraction,
 * optional Z or ±HH[:MM]; no zone is UTC). ROUND_UP rounds a fraction up
 * (else down). 0, or -1 when S is not such a time. */
int timeline_parse_time(const char *s, bool round_up, int64_t *out);
/* S (LEN bytes) as a JSON string of at most MAX bytes: cut on a character
 * boundary, bytes that are not UTF-8 become U+FFFD. New reference. */
json_t *timeline_text(const char *s, size_t len, size_t max);
/* Parse one JSONL line into the fields the index keeps. 0, or -1 when the
 * line is not an entry (then it is skipped, not indexed). */
int timeline_parse_line(const char *line, size_t len, int64_t *time_s, int *source, bool *success,
                        uint64_t *id_hash);

#endif
