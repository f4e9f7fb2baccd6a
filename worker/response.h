/*
 * response: the response file of SPEC §2.2 — its name (timestamped,
 * sanitised, never overwriting), its text, and reading its header back (the
 * one owner of the format). Pure apart from response_pick_name(), which only
 * looks at which names exist.
 */
#ifndef HIVE_RESPONSE_H
#define HIVE_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/task.h"

struct response {
    const char *bot_id;
    const char *task_id;
    const char *to; /* the task's "from" ("user" for http/websocket) */
    enum task_source source;
    bool success;
    double duration_seconds;
    const char *output; /* adapter stdout, may be NULL */
    size_t output_len;
    const char *error;        /* NULL or empty when there is none */
    int64_t finished_wall_ns; /* completion time, for the name and timestamps */
};

/* The name without suffix and extension:
 * "YYYY-MM-DD-HHMM-<BOT>-<to>-RESPONSE-<task_id>-complete" (or -failed), local
 * time, each input-derived part sanitised to [A-Za-z0-9._-]. Caller frees. */
char *response_base_name(const struct response *r);
/* The N-th candidate name of BASE (1: BASE.md, 2: BASE-2.md ...). Caller
 * frees. */
char *response_name(const char *base, unsigned long n);
/* The first of BASE.md, BASE-2.md, BASE-3.md ... that does not exist in DIR.
 * Caller frees. */
char *response_pick_name(const char *dir, const char *base);
/* The file's text per SPEC §2.2; *LEN_OUT gets its length. Caller frees. */
char *response_render(const struct response *r, size_t *len_out);
/* IN as a header value: one line, CR, LF and other control characters
 * replaced by spaces. Caller frees. */
char *response_header_value(const char *in);

/* What a response file says about its task (the reader's side of
 * response_render). */
struct response_header {
    char *task_id;
    char *to;
    bool success;
};

/* Read the header of a whole response file (TEXT, LEN bytes) into H (free
 * with response_header_clear). -1 when it is cut (no trailer) or not one of
 * ours. */
int response_parse(const char *text, size_t len, struct response_header *h);
void response_header_clear(struct response_header *h);

#endif
