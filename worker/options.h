/*
 * options: hive-worker's command line (SPEC §1) into a plain struct. Pure:
 * it reads argv and the environment variable HIVE_TOKEN, nothing else.
 */
#ifndef HIVE_OPTIONS_H
#define HIVE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/http.h"
#include "common/ws.h"
#include "worker/adapter.h"

enum options_mode { MODE_CLI_ONLY, MODE_WEBSOCKET_ONLY, MODE_HYBRID };

struct worker_options {
    char *bot_id;
    int port; /* -1: none given; 0: the kernel picks */
    enum options_mode mode;
    bool mode_given; /* --mode was given; else the default follows --port */
    char *work_dir;
    char *bind;
    char *token; /* --token, else $HIVE_TOKEN, else NULL */
    char **allowed_origins;
    char **server_names; /* Host names accepted besides loopback ones (--server-name) */
    struct adapter_config adapter;
    double cooldown_s;
    size_t queue_max;
    double stop_grace_s;
    double file_min_age_s;
    double rescan_s;
    struct http_limits limits;
    struct ws_config ws;
    char *log_level;
    char *git_worktree;   /* --git-worktree: the branch prefix; NULL: none */
    double stall_after_s; /* --stall-after: 0 off */
    /* agent CLIs (SPEC §12, worker/agent.h) */
    char *agent_type;      /* --adapter-type claude|codex|gemini; NULL: mock or cli */
    char *model;           /* --model */
    char **agent_args;     /* --adapter-arg (repeatable), after the preset's */
    bool session_continue; /* --session continue: resume the bot's last session */
    bool auto_resume;      /* --auto-resume false: a usage limit pauses until `hive resume` */
    double budget_usd;     /* --budget-usd per day; 0: none */
    double budget_tokens;  /* --budget-tokens per day; 0: none */
    int budget_reset_min;  /* --budget-reset HH:MM local, in minutes; 0: midnight */
    bool help, version;
};

/* "cli-only", "websocket-only" or "hybrid". */
const char *options_mode_name(enum options_mode mode);
/* Parse ARGV. 0, or -1 with a usage message in ERR (exit 2). */
int options_parse(int argc, char **argv, struct worker_options *o, char *err, size_t errlen);
void options_free(struct worker_options *o);
/* The --help text. */
const char *options_usage(void);

#endif
