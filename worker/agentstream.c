/*
 * agentstream: owns the reading of an agent CLI's JSON output (see
 * agentstream.h). Line dialects (claude, codex) keep the bytes of the line
 * being read and parse each whole line with jansson as soon as its newline
 * comes, so callbacks follow the agent as it works; a line that is not JSON
 * (a warning the CLI printed) is skipped but remembered for the error. The
 * gemini dialect is one document, parsed at the end. Nothing here trusts the
 * input: every field is type-checked, and a stream without its result (a
 * killed CLI, a truncated line) is an outcome with an error, never a crash.
 * The usage-limit texts are matched with a few POSIX regexes, because each
 * CLI words them its own way.
 */
#include "worker/agentstream.h"

#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

#define AGENTSTREAM_NOTE 200 /* bytes kept of a line that was not JSON */

struct agentstream {
    enum agentstream_dialect dialect;
    size_t max_line;
    struct agentstream_sink sink;
    struct util_buf line;            /* the line being read (gemini: the document) */
    bool overflow;                   /* a line was too long: the rest is ignored */
    bool texted;                     /* some assistant text was passed on */
    char note[AGENTSTREAM_NOTE + 1]; /* the last line that was not JSON */
    struct agentstream_outcome out;  /* built as lines come */
    char *last_error;                /* codex: the last "error" event */
};

/* ---- small helpers ---------------------------------------------------- */

/* The string member KEY of O, or NULL. */
static const char *agentstream_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The non-negative whole number member KEY of O, or 0. */
static uint64_t agentstream_count(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && json_integer_value(v) > 0)
        return (uint64_t)json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) > 0 && json_real_value(v) < 1e19)
        return (uint64_t)json_real_value(v);
    return 0;
}

/* Replace *SLOT by a copy of S (NULL leaves it). */
static void agentstream_set(char **slot, const char *s)
{
    if (!s)
        return;
    free(*slot);
    *slot = xstrdup(s);
}

/* Pass assistant text on, a blank line between two separate pieces. */
static void agentstream_text(struct agentstream *s, const char *text, size_t len)
{
    if (len == 0 || !s->sink.text)
        return;
    if (s->texted)
        s->sink.text(s->sink.arg, "\n\n", 2);
    s->texted = true;
    s->sink.text(s->sink.arg, text, len);
}

/* Byte length of at most MAX bytes of S that never cuts a UTF-8 character. */
static size_t agentstream_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* One line of at most AGENTSTREAM_TOOL_SUMMARY bytes made of S: control
 * characters become spaces. Caller frees. */
static char *agentstream_one_line(const char *s)
{
    size_t len = agentstream_cut(s, strlen(s), AGENTSTREAM_TOOL_SUMMARY);
    char *r = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        r[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    r[len] = '\0';
    return r;
}

/* A tool use NAME with the input INPUT (any JSON): the summary is the first
 * telling member (a command, a path, a pattern ...), else the compact JSON. */
static void agentstream_tool(struct agentstream *s, const char *name, json_t *input)
{
    static const char *const keys[] = {"command", "file_path",   "path",   "pattern",      "url",
                                       "query",   "description", "prompt", "notebook_path"};
    if (!s->sink.tool)
        return;
    const char *pick = NULL;
    for (size_t i = 0; !pick && json_is_object(input) && i < sizeof keys / sizeof keys[0]; i++)
        pick = agentstream_str(input, keys[i]);
    if (!pick && json_is_string(input))
        pick = json_string_value(input);
    char *dump = pick || !input ? NULL : json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
    char *summary = agentstream_one_line(pick ? pick : dump ? dump : "");
    char *n = agentstream_one_line(name && name[0] ? name : "tool");
    s->sink.tool(s->sink.arg, n, summary);
    free(n);
    free(summary);
    free(dump);
}

/* ---- claude ----------------------------------------------------------- */

/* An "assistant" message: its text blocks and tool uses, in order. */
static void agentstream_claude_assistant(struct agentstream *s, json_t *msg)
{
    json_t *content = json_object_get(json_object_get(msg, "message"), "content");
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        const char *type = agentstream_str(block, "type");
        if (!type)
            continue;
        const char *text = agentstream_str(block, "text");
        if (strcmp(type, "text") == 0 && text)
            agentstream_text(s, text, strlen(text));
        else if (strcmp(type, "tool_use") == 0)
            agentstream_tool(s, agentstream_str(block, "name"), json_object_get(block, "input"));
    }
}

/* The "usage" object of a claude result. */
static void agentstream_claude_usage(struct agentstream *s, json_t *usage)
{
    if (!json_is_object(usage))
        return;
    struct agent_usage *u = &s->out.usage;
    u->known = true;
    u->input = agentstream_count(usage, "input_tokens");
    u->output = agentstream_count(usage, "output_tokens");
    u->cache_read = agentstream_count(usage, "cache_read_input_tokens");
    u->cache_write = agentstream_count(usage, "cache_creation_input_tokens");
}

/* The final "result" object. */
static void agentstream_claude_result(struct agentstream *s, json_t *msg)
{
    struct agentstream_outcome *o = &s->out;
    o->have_result = true;
    json_t *is_error = json_object_get(msg, "is_error");
    const char *subtype = agentstream_str(msg, "subtype");
    o->success = !json_is_true(is_error) && (!subtype || strcmp(subtype, "success") == 0);
    free(o->answer);
    o->answer = NULL;
    agentstream_set(&o->answer, agentstream_str(msg, "result"));
    agentstream_set(&o->session_id, agentstream_str(msg, "session_id"));
    agentstream_claude_usage(s, json_object_get(msg, "usage"));
    json_t *cost = json_object_get(msg, "total_cost_usd");
    if (json_is_number(cost) && json_number_value(cost) >= 0 && json_number_value(cost) < 1e12) {
        o->usage.cost_known = true;
        o->usage.cost_usd = json_number_value(cost);
    }
    if (!o->success) {
        free(o->error);
        o->error = xasprintf("agent error (%s): %s", subtype ? subtype : "error",
                             o->answer && o->answer[0] ? o->answer : "no message");
    }
}

/* One JSON line of claude's stream-json. */
static void agentstream_claude_line(struct agentstream *s, json_t *msg)
{
    const char *type = agentstream_str(msg, "type");
    if (!type)
        return;
    if (strcmp(type, "system") == 0)
        agentstream_set(&s->out.session_id, agentstream_str(msg, "session_id"));
    else if (strcmp(type, "assistant") == 0)
        agentstream_claude_assistant(s, msg);
    else if (strcmp(type, "result") == 0)
        agentstream_claude_result(s, msg);
}

/* ---- codex ------------------------------------------------------------ */

/* An item of codex's thread: agent messages are text, the rest tool uses. */
static void agentstream_codex_item(struct agentstream *s, const char *event, json_t *item)
{
    const char *type = agentstream_str(item, "type");
    if (!type)
        return;
    if (strcmp(event, "item.completed") == 0 && strcmp(type, "agent_message") == 0) {
        const char *text = agentstream_str(item, "text");
        if (text)
            agentstream_text(s, text, strlen(text));
        return;
    }
    if (strcmp(event, "item.started") != 0)
        return;
    if (strcmp(type, "command_execution") == 0)
        agentstream_tool(s, "command", json_object_get(item, "command"));
    else if (strcmp(type, "mcp_tool_call") == 0)
        agentstream_tool(s, agentstream_str(item, "tool"), json_object_get(item, "arguments"));
    else if (strcmp(type, "web_search") == 0)
        agentstream_tool(s, "web_search", json_object_get(item, "query"));
    else if (strcmp(type, "file_change") == 0)
        agentstream_tool(s, "file_change", json_object_get(item, "changes"));
}

/* A turn ended: add its usage, note success or failure. */
static void agentstream_codex_turn(struct agentstream *s, json_t *msg, bool ok)
{
    struct agentstream_outcome *o = &s->out;
    o->have_result = true;
    o->success = ok;
    json_t *usage = json_object_get(msg, "usage");
    if (json_is_object(usage)) {
        o->usage.known = true;
        o->usage.input += agentstream_count(usage, "input_tokens");
        o->usage.cache_read += agentstream_count(usage, "cached_input_tokens");
        o->usage.output += agentstream_count(usage, "output_tokens");
    }
    if (!ok) {
        const char *m = agentstream_str(json_object_get(msg, "error"), "message");
        free(o->error);
        o->error = xasprintf("agent error: %s", m               ? m
                                                : s->last_error ? s->last_error
                                                                : "turn failed");
        agentstream_set(&o->answer, m);
    }
}

/* One JSON line of `codex exec --json`. */
static void agentstream_codex_line(struct agentstream *s, json_t *msg)
{
    const char *type = agentstream_str(msg, "type");
    if (!type)
        return;
    if (strcmp(type, "thread.started") == 0)
        agentstream_set(&s->out.session_id, agentstream_str(msg, "thread_id"));
    else if (strncmp(type, "item.", 5) == 0)
        agentstream_codex_item(s, type, json_object_get(msg, "item"));
    else if (strcmp(type, "turn.completed") == 0)
        agentstream_codex_turn(s, msg, true);
    else if (strcmp(type, "turn.failed") == 0)
        agentstream_codex_turn(s, msg, false);
    else if (strcmp(type, "error") == 0)
        agentstream_set(&s->last_error, agentstream_str(msg, "message"));
}

/* ---- gemini ----------------------------------------------------------- */

/* Sum the token counts of every model of gemini's stats. */
static void agentstream_gemini_stats(struct agentstream *s, json_t *stats)
{
    json_t *models = json_object_get(stats, "models"), *model;
    const char *name;
    json_object_foreach(models, name, model)
    {
        json_t *tokens = json_object_get(model, "tokens");
        if (!json_is_object(tokens))
            continue;
        struct agent_usage *u = &s->out.usage;
        u->known = true;
        u->input += agentstream_count(tokens, "prompt");
        u->output += agentstream_count(tokens, "candidates");
        u->cache_read += agentstream_count(tokens, "cached");
    }
}

/* gemini's one document: response, stats, error. */
static void agentstream_gemini_doc(struct agentstream *s, json_t *doc)
{
    struct agentstream_outcome *o = &s->out;
    const char *response = agentstream_str(doc, "response");
    json_t *error = json_object_get(doc, "error");
    if (!response && !json_is_object(error))
        return;
    o->have_result = true;
    o->success = !json_is_object(error);
    agentstream_set(&o->answer, response);
    agentstream_set(&o->session_id, agentstream_str(doc, "session_id"));
    agentstream_gemini_stats(s, json_object_get(doc, "stats"));
    if (response)
        agentstream_text(s, response, strlen(response));
    if (!o->success) {
        const char *m = agentstream_str(error, "message");
        o->error = xasprintf("agent error: %s", m ? m : "unknown error");
        agentstream_set(&o->answer, m);
    }
}

/* ---- lines ------------------------------------------------------------ */

/* Remember LINE, which was not JSON, for the error of a stream without result. */
static void agentstream_note(struct agentstream *s, const char *line, size_t len)
{
    while (len > 0 && strchr(" \t\r", line[len - 1]))
        len--;
    if (len == 0)
        return;
    len = agentstream_cut(line, len, AGENTSTREAM_NOTE);
    memcpy(s->note, line, len);
    s->note[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s->note[i] < 0x20)
            s->note[i] = ' ';
}

/* Parse one whole line (or gemini's document) and act on it. */
static void agentstream_line(struct agentstream *s, const char *line, size_t len)
{
    json_t *msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(msg)) {
        agentstream_note(s, line, len);
        json_decref(msg);
        return;
    }
    if (s->dialect == AGENTSTREAM_CLAUDE)
        agentstream_claude_line(s, msg);
    else if (s->dialect == AGENTSTREAM_CODEX)
        agentstream_codex_line(s, msg);
    else
        agentstream_gemini_doc(s, msg);
    json_decref(msg);
}

enum agentstream_dialect agentstream_dialect_named(const char *name)
{
    if (!name)
        return AGENTSTREAM_NONE;
    if (strcmp(name, "claude") == 0)
        return AGENTSTREAM_CLAUDE;
    if (strcmp(name, "codex") == 0)
        return AGENTSTREAM_CODEX;
    if (strcmp(name, "gemini") == 0)
        return AGENTSTREAM_GEMINI;
    return AGENTSTREAM_NONE;
}

struct agentstream *agentstream_new(enum agentstream_dialect dialect, size_t max_line,
                                    const struct agentstream_sink *sink)
{
    struct agentstream *s = xcalloc(1, sizeof *s);
    s->dialect = dialect;
    s->max_line = max_line ? max_line : (size_t)8 << 20;
    if (sink)
        s->sink = *sink;
    return s;
}

void agentstream_free(struct agentstream *s)
{
    if (!s)
        return;
    free(s->line.data);
    free(s->last_error);
    agentstream_outcome_clear(&s->out);
    free(s);
}

/* Add LEN bytes to the line being read; false (and overflow) past max_line. */
static bool agentstream_keep(struct agentstream *s, const char *data, size_t len)
{
    if (s->line.len + len > s->max_line) {
        s->overflow = true;
        free(s->line.data);
        memset(&s->line, 0, sizeof s->line);
        return false;
    }
    util_buf_add(&s->line, data, len);
    return true;
}

int agentstream_feed(struct agentstream *s, const char *data, size_t len)
{
    if (s->overflow)
        return -1;
    if (s->dialect == AGENTSTREAM_GEMINI)
        return agentstream_keep(s, data, len) ? 0 : -1;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (!agentstream_keep(s, data, take))
            return -1;
        if (!nl)
            return 0;
        agentstream_line(s, s->line.data, s->line.len);
        s->line.len = 0;
        data += take + 1;
        len -= take + 1;
    }
    return 0;
}

/* The error of a stream that ended without its result. */
static char *agentstream_no_result(const struct agentstream *s)
{
    if (s->overflow)
        return xasprintf("the agent's output has a line longer than %zu bytes", s->max_line);
    if (s->last_error)
        return xasprintf("agent error: %s", s->last_error);
    if (s->note[0])
        return xasprintf("the agent's stream ended without a result (last line: %s)", s->note);
    return xstrdup("the agent's stream ended without a result");
}

void agentstream_finish(struct agentstream *s, int64_t now, struct agentstream_outcome *out)
{
    if (!s->overflow && s->line.len > 0)
        agentstream_line(s, s->line.data, s->line.len);
    s->line.len = 0;
    struct agentstream_outcome *o = &s->out;
    if (!o->have_result) {
        o->success = false;
        free(o->error);
        o->error = agentstream_no_result(s);
    }
    if (o->have_result && o->success && !s->texted && o->answer)
        agentstream_text(s, o->answer, strlen(o->answer));
    if (!o->success && o->error)
        o->limited = agentstream_limit_text(o->error, now, &o->limit_reset);
    *out = *o;
    memset(o, 0, sizeof *o);
}

void agentstream_outcome_clear(struct agentstream_outcome *out)
{
    free(out->error);
    free(out->answer);
    free(out->session_id);
    memset(out, 0, sizeof *out);
}

/* ---- usage limits ----------------------------------------------------- */

/* True when the extended, case-insensitive regex RE matches TEXT; its
 * groups go to M (N of them). */
static bool agentstream_match(const char *re, const char *text, regmatch_t *m, size_t n)
{
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_ICASE) != 0)
        return false;
    bool hit = regexec(&r, text, n, m, 0) == 0;
    regfree(&r);
    return hit;
}

/* The number in TEXT at group G of M, or -1. */
static long long agentstream_group_num(const char *text, const regmatch_t *m, size_t g)
{
    if (m[g].rm_so < 0)
        return -1;
    return strtoll(text + m[g].rm_so, NULL, 10);
}

/* The next time after NOW (local) that the clock shows HOUR:MIN. */
static int64_t agentstream_next_clock(int64_t now, int hour, int min)
{
    time_t t = (time_t)now;
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    time_t at = mktime(&tm);
    if (at <= t) {
        tm.tm_mday++;
        tm.tm_isdst = -1;
        at = mktime(&tm);
    }
    return (int64_t)at;
}

/* "resets at 3pm", "resets 15:30": the next such time, or 0. */
static int64_t agentstream_reset_clock(const char *text, int64_t now)
{
    regmatch_t m[6];
    if (!agentstream_match("reset[s]?( at)? ([0-9]{1,2})(:([0-9]{2}))? ?([ap]m)?", text, m, 6))
        return 0;
    long long hour = agentstream_group_num(text, m, 2), min = agentstream_group_num(text, m, 4);
    if (m[5].rm_so >= 0) {
        bool pm = text[m[5].rm_so] == 'p' || text[m[5].rm_so] == 'P';
        if (hour < 1 || hour > 12)
            return 0;
        hour = hour % 12 + (pm ? 12 : 0);
    }
    if (hour < 0 || hour > 23 || min > 59)
        return 0;
    return agentstream_next_clock(now, (int)hour, min < 0 ? 0 : (int)min);
}

/* "try again in 5 minutes", "retry after 30 s": NOW plus that, or 0. */
static int64_t agentstream_reset_after(const char *text, int64_t now)
{
    regmatch_t m[4];
    if (!agentstream_match("(again in|retry after|resets in) ([0-9]{1,6}) ?(h|m|s)", text, m, 4))
        return 0;
    long long n = agentstream_group_num(text, m, 2);
    char unit = (char)(text[m[3].rm_so] | 0x20);
    return now + n * (unit == 'h' ? 3600 : unit == 'm' ? 60 : 1);
}

bool agentstream_limit_text(const char *text, int64_t now, int64_t *reset)
{
    regmatch_t m[2];
    *reset = 0;
    if (!text)
        return false;
    if (agentstream_match("limit reached\\|([0-9]{9,11})", text, m, 2)) {
        *reset = agentstream_group_num(text, m, 1);
        return true;
    }
    if (!agentstream_match("(usage|rate|session|weekly|daily|[0-9]+-hour) limit"
                           "( (has been )?(reached|exceeded|hit))?|limit reached|"
                           "quota (exceeded|exhausted)|too many requests|resource_exhausted",
                           text, m, 1))
        return false;
    *reset = agentstream_reset_clock(text, now);
    if (*reset == 0)
        *reset = agentstream_reset_after(text, now);
    return true;
}

bool agentstream_resume_rejected(const char *text)
{
    regmatch_t m[1];
    return text && agentstream_match("no conversation found|session( id)?[^\n]{0,80}(not found|"
                                     "does not exist|invalid|expired)|invalid session",
                                     text, m, 1);
}
