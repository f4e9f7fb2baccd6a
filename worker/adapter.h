/*
 * adapter: runs one task through the bot's adapter and reports its output as
 * it comes and its result once. "mock" answers with a markdown summary of the
 * task (after an optional delay); "cli" runs an argv (no shell) in the work
 * dir, in its own process group, content on stdin or substituted for
 * "{content}", with a timeout (SIGTERM, then SIGKILL), an output cap, output
 * made valid UTF-8, and the environment rules of SPEC §3.1 (the hive's
 * hand-over variables never reach it). Everything is driven by the caller's
 * libevent loop; nothing blocks.
 */
#ifndef HIVE_ADAPTER_H
#define HIVE_ADAPTER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "worker/agentstream.h"

enum adapter_type { ADAPTER_MOCK, ADAPTER_CLI };

struct adapter_config {
    enum adapter_type type;
    char **argv;       /* cli: NULL-terminated; "{content}", "{task_id}", "{bot_id}" substituted */
    char **env_remove; /* NULL-terminated names, or NULL */
    char **env_set;    /* NULL-terminated "NAME=value", or NULL */
    const char *work_dir; /* cli: the child's cwd */
    int delay_ms;         /* mock: answer after this long */
    double timeout_s;     /* 0 = none; else SIGTERM at timeout */
    int kill_grace_ms;    /* SIGKILL this long after SIGTERM (default 2000 when 0) */
    size_t output_cap; /* output bytes kept (after UTF-8 repair); more fails the task (0 = 8 MiB) */
    enum agentstream_dialect
        dialect;             /* cli: an agent CLI whose stdout is parsed (worker/agent.h) */
    const char *resume_flag; /* agent: the option that resumes a session, or NULL */
};

struct adapter_task {
    const char *task_id;
    const char *bot_id;
    const char *source; /* "file", "http", "websocket" */
    const char *content;
    const char *resume_session; /* agent: resume this session (with resume_flag), or NULL */
    /* agent: a tool use (name, one-line summary), called with the chunk's arg; may be NULL */
    void (*tool)(const char *name, const char *summary, void *arg);
};

struct adapter_result {
    bool success;
    char *output; /* stdout as valid UTF-8 (NUL-terminated), never NULL */
    size_t output_len;
    char *error; /* NULL on success; "timed out after N s", "interrupted",
                    "exit status N: <stderr tail>", "killed by signal N", ... */
    double duration_seconds;
    /* agent CLIs (dialect set) and usage limits */
    struct agent_usage usage;
    char *session_id;     /* the agent's session, NULL when it told none */
    bool limited;         /* failed for a usage/rate limit: the task did not run */
    int64_t limit_reset;  /* when the limit lifts (Unix seconds), 0 unknown */
    bool resume_rejected; /* the CLI refused resume_session */
};

struct adapter_job;

typedef void (*adapter_chunk_cb)(const char *data, size_t len, void *arg);
/* Called exactly once; RESULT is freed after the callback returns (take
 * ownership of its strings by setting them to NULL). The job is freed too. */
typedef void (*adapter_done_cb)(struct adapter_result *result, void *arg);

/* Start TASK. CHUNK (may be NULL) receives stdout as it arrives, as valid
 * UTF-8: a character cut between two reads comes whole in the next chunk,
 * bytes that are not UTF-8 come as U+FFFD, and the chunks joined are the
 * result's output (which the cap never cuts inside a character).
 * adapter_start returns NULL and sets errno when the process could not be
 * started, with a reason in ERR (done is then not called); EMFILE, ENFILE,
 * ENOMEM, EAGAIN are transient (out of descriptors, memory or processes: the
 * task may be tried again later), anything else is permanent (ENOENT,
 * EACCES: no such program; EINVAL: no command). Every process the task
 * starts is killed when it ends (see worker/contain.h). */
struct adapter_job *adapter_start(struct event_base *base, const struct adapter_config *config,
                                  const struct adapter_task *task, adapter_chunk_cb chunk,
                                  adapter_done_cb done, void *arg, char *err, size_t errlen);
/* Kill the job's process group now; it ends failed with "interrupted". */
void adapter_interrupt(struct adapter_job *job);
/* Kill the job and free it without calling done (shutdown). */
void adapter_abandon(struct adapter_job *job);
/* The child's pid (its process group id), 0 for mock. */
pid_t adapter_pid(const struct adapter_job *job);

#endif
