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
    const char *const *files; /* "## Files Modified": N_FILES paths; none: "- None" */
    size_t n_files;
    int64_t finished_wall_ns;        /* completion time, for the name and timestamps */
    const struct agent_usage *usage; /* an agent's tokens and cost, or NULL (SPEC §12) */
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

/* ----- reading a response file back (the reader's side of response_render) ----- */

/* LEN bytes at P inside the text that was read; P is NULL for "absent". */
struct response_span {
    const char *p;
    size_t len;
};

/* A response file as read back: spans into its text (not NUL-terminated;
 * the output may hold NUL bytes). */
struct response_view {
    struct response_span title_id; /* the id of the "# RESPONSE:" line */
    struct response_span bot_id;   /* **From:** */
    struct response_span to;       /* **To:** */
    struct response_span task_id;  /* **Task:** */
    struct response_span timestamp;
    enum task_source source;
    bool success;
    double duration_seconds;
    size_t body;                 /* offset of the output's first byte */
    struct response_span output; /* the "## Output" section (read_file only) */
    struct response_span error;  /* the "## Error" section; p NULL when none */
    struct response_span files;  /* the "- path" lines of "## Files Modified" ("- None") */
    bool cancelled;              /* failed with the error "cancelled" exactly: the task was
                                    cancelled (read_file only; state "cancelled") */
    struct agent_usage usage;    /* **Tokens:** and **Cost:** when the file has them */
};

/* Read the header of a response file, from the title to the "## Output"
 * line: TEXT may be only the file's first LEN bytes. Fills V but its output
 * and error. 0; -1 when it is not the header of a response of ours; -2 when
 * TEXT ends before the header does (read more). */
int response_read_header(const char *text, size_t len, struct response_view *v);
/* Read a whole response file (TEXT, LEN bytes): the header from the top, the
 * sections from the bottom, so that no output can pass for a header line, a
 * section or the trailer. 0, or -1 when it is not a whole response file (cut
 * short, or not one of ours). */
int response_read_file(const char *text, size_t len, struct response_view *v);
/* What a response file's NAME says: 1 for "...-complete[-N].md", 0 for
 * "...-failed[-N].md", -1 when it is no response name; *N (may be NULL) gets
 * the suffix number (1 without one). */
int response_name_outcome(const char *name, unsigned long *n);

#endif
