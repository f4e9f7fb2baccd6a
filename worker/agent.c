/*
 * agent: owns the knowledge of agent CLIs that is not parsing (see agent.h).
 * A preset is a row of a table, not a code path: the cli adapter runs every
 * agent, and only the dialect of its stdout differs. The outcome rules are
 * here so that the adapter stays a process runner: a stream's result decides
 * success (an exit status that is not 0 still fails it), a stream without a
 * result is a failure that says so, and a usage limit is told apart from a
 * failure, so the engine can put the task back instead of answering it.
 */
#include "worker/agent.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define AGENT_OUTPUT_TAIL 2048 /* bytes of output searched for a limit message */
#define AGENT_SESSION_MAX 4096 /* bytes of a session file */

static const char *const agent_claude_args[] = {"-p", "--output-format", "stream-json", "--verbose",
                                                NULL};
static const char *const agent_codex_args[] = {"exec", "--json", NULL};
static const char *const agent_gemini_args[] = {"--output-format", "json", "-p", "{content}", NULL};

/* The agent CLIs whose machine-readable output is documented. */
static const struct agent_preset agent_presets[] = {
    {"claude", "claude", agent_claude_args, AGENTSTREAM_CLAUDE, "--model", "--resume"},
    {"codex", "codex", agent_codex_args, AGENTSTREAM_CODEX, "--model", NULL},
    {"gemini", "gemini", agent_gemini_args, AGENTSTREAM_GEMINI, "--model", NULL},
};

const struct agent_preset *agent_preset_find(const char *type)
{
    for (size_t i = 0; type && i < sizeof agent_presets / sizeof agent_presets[0]; i++)
        if (strcmp(agent_presets[i].type, type) == 0)
            return &agent_presets[i];
    return NULL;
}

/* Append a copy of S to the NULL-terminated *V of *N elements. */
static void agent_push(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 2) * sizeof **v);
    (*v)[(*n)++] = xstrdup(s);
    (*v)[*n] = NULL;
}

char **agent_preset_argv(const struct agent_preset *preset, char *const *command, const char *model,
                         char *const *args)
{
    char **v = NULL;
    size_t n = 0;
    if (command && command[0] && command[0][0])
        for (char *const *c = command; *c; c++)
            agent_push(&v, &n, *c);
    else
        agent_push(&v, &n, preset->command);
    for (const char *const *a = preset->args; a && *a; a++)
        agent_push(&v, &n, *a);
    if (model && model[0] && preset->model_flag) {
        agent_push(&v, &n, preset->model_flag);
        agent_push(&v, &n, model);
    }
    for (char *const *a = args; a && *a; a++)
        agent_push(&v, &n, *a);
    return v;
}

void agent_resume_argv(char ***argv, const char *flag, const char *session)
{
    if (!flag || !session || !session[0])
        return;
    size_t n = 0;
    while ((*argv)[n])
        n++;
    agent_push(argv, &n, flag);
    agent_push(argv, &n, session);
}

int64_t agent_now(void)
{
    const char *off = getenv("HIVE_TEST_CLOCK_OFFSET"), *file = getenv("HIVE_TEST_CLOCK_FILE");
    int64_t now = (int64_t)time(NULL) + (off ? strtoll(off, NULL, 10) : 0);
    char *text = file ? util_read_file(file, 64, NULL) : NULL;
    if (text)
        now += strtoll(text, NULL, 10);
    free(text);
    return now;
}

/* True when TEXT (or the last AGENT_OUTPUT_TAIL bytes of OUTPUT) reports a
 * usage limit; *RESET as agentstream_limit_text. */
static bool agent_limit_in(const char *text, const char *output, int64_t *reset)
{
    if (agentstream_limit_text(text, agent_now(), reset))
        return true;
    size_t len = output ? strlen(output) : 0;
    return len &&
           agentstream_limit_text(output + (len > AGENT_OUTPUT_TAIL ? len - AGENT_OUTPUT_TAIL : 0),
                                  agent_now(), reset);
}

/* The error of a stream that failed: its own, with the process's when the
 * stream ended without a result (a killed or crashed CLI). */
static char *agent_stream_error(struct agentstream_outcome *o, const char *process_error)
{
    if (!o->have_result && process_error)
        return xasprintf("%s; %s", o->error, process_error);
    char *e = o->error;
    o->error = NULL;
    return e;
}

void agent_outcome(bool streamed, bool stopped, bool resumed, struct agentstream_outcome *o,
                   const char *stderr_tail, const char *output, struct adapter_result *result)
{
    if (!streamed) {
        if (!stopped && result->error)
            result->limited = agent_limit_in(result->error, output, &result->limit_reset);
        return;
    }
    result->usage = o->usage;
    result->session_id = o->session_id;
    o->session_id = NULL;
    if (stopped)
        return;
    if (!o->success) {
        char *e = agent_stream_error(o, result->error);
        free(result->error);
        result->error = e;
    }
    if (!result->error)
        return;
    result->limited =
        o->limited || agent_limit_in(result->error, stderr_tail, &result->limit_reset);
    if (o->limited)
        result->limit_reset = o->limit_reset;
    result->resume_rejected =
        resumed && !result->limited &&
        (agentstream_resume_rejected(result->error) || agentstream_resume_rejected(stderr_tail));
}

/* .deia/hive/sessions/<BOT>.json of WORK_DIR. Caller frees. */
static char *agent_session_path(const char *work_dir, const char *bot_id)
{
    return xasprintf("%s/.deia/hive/sessions/%s.json", work_dir, bot_id);
}

char *agent_session_load(const char *work_dir, const char *bot_id)
{
    char *path = agent_session_path(work_dir, bot_id);
    size_t len;
    char *text = util_read_file(path, AGENT_SESSION_MAX, &len);
    free(path);
    if (!text)
        return NULL;
    json_t *doc = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *id = json_object_get(doc, "session_id");
    char *session = json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) < 512
                        ? xstrdup(json_string_value(id))
                        : NULL;
    json_decref(doc);
    return session;
}

void agent_session_save(struct syncer *sy, const char *work_dir, const char *bot_id,
                        const char *session)
{
    char *path = agent_session_path(work_dir, bot_id);
    json_t *doc = json_pack("{s:s, s:o, s:I}", "bot_id", bot_id, "session_id",
                            session ? json_string(session) : json_null(), "updated_at",
                            (json_int_t)agent_now());
    char *text = json_dumps(doc, JSON_COMPACT);
    syncer_write_file(sy, path, text, strlen(text));
    free(text);
    json_decref(doc);
    free(path);
}
