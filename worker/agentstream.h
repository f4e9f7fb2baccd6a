/*
 * agentstream: reads the machine-readable output of an agent CLI (SPEC §12)
 * as it comes, fed bytes split anywhere: the assistant's text, its tool
 * uses, and at the end the outcome (success, answer, session id, tokens,
 * cost, a usage limit). Three dialects: "claude" (`claude -p --output-format
 * stream-json --verbose`: one JSON object per line, a final "result"
 * object), "codex" (`codex exec --json`: thread.started, item.*,
 * turn.completed/turn.failed lines) and "gemini" (`gemini --output-format
 * json`: one JSON document at the end). Pure: no I/O, no logging; the caller
 * gets callbacks and an error code.
 */
#ifndef HIVE_AGENTSTREAM_H
#define HIVE_AGENTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agentstream_dialect {
    AGENTSTREAM_NONE, /* plain text: not parsed (the cli adapter) */
    AGENTSTREAM_CLAUDE,
    AGENTSTREAM_CODEX,
    AGENTSTREAM_GEMINI,
};

/* What a task cost, as the agent reported it; known false: nothing was. */
struct agent_usage {
    bool known;
    uint64_t input, output, cache_read, cache_write; /* tokens */
    bool cost_known;
    double cost_usd;
};

/* The longest tool summary, in bytes (one line, never cut inside a character). */
#define AGENTSTREAM_TOOL_SUMMARY 200

struct agentstream_sink {
    /* A piece of the assistant's text (valid UTF-8 when the input is); the
     * pieces joined are the task's output. */
    void (*text)(void *arg, const char *text, size_t len);
    /* A tool use: its NAME and a one-line SUMMARY of its input. */
    void (*tool)(void *arg, const char *name, const char *summary);
    void *arg;
};

/* The outcome, filled by agentstream_finish (strings owned, freed by
 * agentstream_outcome_clear). */
struct agentstream_outcome {
    bool have_result; /* the final result came */
    bool success;     /* it said success */
    char *error;      /* NULL on success: why the task failed */
    char *answer;     /* the result's text (may be NULL) */
    char *session_id; /* may be NULL */
    struct agent_usage usage;
    bool limited;        /* a usage or rate limit stopped the agent */
    int64_t limit_reset; /* when it lifts (Unix seconds), 0 unknown */
};

struct agentstream;

/* The dialect named NAME ("claude", "codex", "gemini"), or AGENTSTREAM_NONE. */
enum agentstream_dialect agentstream_dialect_named(const char *name);
/* A reader of DIALECT whose lines (gemini: whole document) may be MAX_LINE
 * bytes long; SINK is copied. */
struct agentstream *agentstream_new(enum agentstream_dialect dialect, size_t max_line,
                                    const struct agentstream_sink *sink);
void agentstream_free(struct agentstream *s);
/* Feed LEN bytes. 0; -1 once a line is longer than max_line (the reader then
 * ignores the rest, and the outcome says so). */
int agentstream_feed(struct agentstream *s, const char *data, size_t len);
/* The stream is over: read what is left (a last line without a newline),
 * then fill OUT. NOW (Unix seconds) dates a limit's "resets at 3pm". */
void agentstream_finish(struct agentstream *s, int64_t now, struct agentstream_outcome *out);
void agentstream_outcome_clear(struct agentstream_outcome *out);

/* True when TEXT reports a usage or rate limit ("usage limit reached",
 * "rate limit exceeded", "quota exhausted", ...); *RESET gets when it lifts
 * (Unix seconds; "…|1767225600", "resets at 3pm", "try again in 5 minutes"),
 * or 0 when TEXT does not say. NOW is the current time, local time of day. */
bool agentstream_limit_text(const char *text, int64_t now, int64_t *reset);
/* True when TEXT is the agent refusing a session to resume ("No
 * conversation found with session ID ..."). */
bool agentstream_resume_rejected(const char *text);

#endif
