/*
 * agent: what hive knows about agent CLIs beyond running a command (SPEC
 * §12): the presets (claude, codex, gemini: command, arguments, dialect of
 * their output, how to resume a session), turning what their stream said
 * into a task's result (success, error, usage limit, a refused resume), the
 * bot's stored session (`session: continue`), and the clock that budgets and
 * usage limits read (which tests may move: HIVE_TEST_CLOCK_OFFSET).
 */
#ifndef HIVE_AGENT_H
#define HIVE_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "worker/adapter.h"
#include "worker/syncer.h"
#include "worker/agentstream.h"

/* One agent CLI: how hive runs it. */
struct agent_preset {
    const char *type;                 /* the adapter type of the roster */
    const char *command;              /* the program when the roster names none */
    const char *const *args;          /* always passed, before the roster's args */
    enum agentstream_dialect dialect; /* how its stdout is read */
    const char *model_flag;           /* passes `model:`, or NULL */
    const char *resume_flag;          /* resumes a session, or NULL (not supported) */
};

/* The preset of adapter TYPE, or NULL (mock, cli). */
const struct agent_preset *agent_preset_find(const char *type);
/* The argv of PRESET: COMMAND (or the preset's), its args, the model, then
 * ARGS. NULL-terminated, each element and the array malloc'd. */
char **agent_preset_argv(const struct agent_preset *preset, char *const *command, const char *model,
                         char *const *args);
/* Append FLAG SESSION to *ARGV (a malloc'd NULL-terminated array) when both
 * are set. */
void agent_resume_argv(char ***argv, const char *flag, const char *session);

/* Now, in Unix seconds, as budgets and usage limits see it: the real clock
 * plus HIVE_TEST_CLOCK_OFFSET seconds plus the seconds written in the file
 * HIVE_TEST_CLOCK_FILE names (both for tests only; unset in real use). */
int64_t agent_now(void);

/* Fill RESULT's agent fields and settle its error. STREAMED: the job's
 * stdout was an agent stream whose outcome is O (its strings may be taken);
 * STOPPED: the job was stopped (timeout, interrupt, cap), whose error
 * stands; RESUMED: it was asked to resume a session; STDERR_TAIL and OUTPUT:
 * for usage-limit and refused-resume messages. */
void agent_outcome(bool streamed, bool stopped, bool resumed, struct agentstream_outcome *o,
                   const char *stderr_tail, const char *output, struct adapter_result *result);

/* The session id stored for BOT in WORK_DIR (.deia/hive/sessions/<BOT>.json),
 * or NULL. Caller frees. */
char *agent_session_load(const char *work_dir, const char *bot_id);
/* Store SESSION (NULL: forget it) for BOT, durably, on SY's thread (no sync
 * on the loop, SPEC §3). */
void agent_session_save(struct syncer *sy, const char *work_dir, const char *bot_id,
                        const char *session);

#endif
