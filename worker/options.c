/*
 * options: parses hive-worker's flags. Every flag the supervisor passes is
 * here, so a worker can be run by hand exactly as hive runs it. A flag not
 * given takes the roster's built-in default (config/roster.c's tables), the
 * same one `hive up` would pass: the defaults have one copy.
 */
#include "worker/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "config/roster.h"
#include "worker/agent.h"

/* The --help text; %s and %g are the defaults of the roster's table
 * (options_usage fills them), so the text cannot drift from them. */
static const char options_usage_text[] =
    "usage: hive-worker BOT-ID [options]\n"
    "\n"
    "Run one bot: take tasks from HTTP, WebSocket and its file queue, one at a time.\n"
    "\n"
    "  --port N               TCP port for HTTP/WebSocket (needed by websocket-only and hybrid\n"
    "                         unless a socket is passed with LISTEN_FDS; 0: the kernel picks)\n"
    "  --mode MODE            cli-only (file queue only) | websocket-only (HTTP+WS only) |\n"
    "                         hybrid (both) (default: %s with --port or a passed socket,\n"
    "                         cli-only without, as DEIA's run_single_bot.py BOT-ID)\n"
    "  --work-dir DIR         folder holding .deia/ (default: current directory)\n"
    "  --adapter-type TYPE    mock | cli | claude | codex | gemini (default %s)\n"
    "  --model NAME           the agent CLI's model (claude, codex, gemini)\n"
    "  --adapter-arg ARG      one more argument for the agent CLI (repeatable)\n"
    "  --session MODE         new (default) | continue: resume the bot's last agent session\n"
    "  --auto-resume BOOL     after a usage limit, resume by itself (default true)\n"
    "  --budget-usd N         pause for the day once N USD were spent today (0: none)\n"
    "  --budget-tokens N      pause for the day once N tokens were used today (0: none)\n"
    "  --budget-reset HH:MM   when the budget's day starts, local time (default 00:00)\n"
    "  --adapter-cmd ARGV...  the cli adapter's command, up to the next --option\n"
    "  -- ARGV...             the same, taking every remaining argument\n"
    "  --cooldown SECONDS     pause after each task (default %g)\n"
    "  --timeout SECONDS      per task (default %g)\n"
    "  --queue-max N          pending realtime tasks before 429 (default %d)\n"
    "  --bind ADDR            listen address (default %s; others need a token)\n"
    "  --token TOKEN          bearer token (default: $HIVE_TOKEN)\n"
    "  --allowed-origin O     a web Origin that may use the API, with CORS (repeatable)\n"
    "  --server-name NAME     a Host name to answer besides loopback ones (repeatable)\n"
    "  --cwd DIR              the cli adapter's working directory (default: the work dir)\n"
    "  --git-worktree PREFIX  run the adapter in the bot's own git worktree of the work dir's\n"
    "                         repository, .deia/hive/worktrees/BOT-ID on branch PREFIX/BOT-ID\n"
    "  --stall-after S        a task silent this long raises task_stalled (default 0: off)\n"
    "  --env NAME=VALUE       set for the adapter (repeatable)\n"
    "  --env-remove NAME      remove from the adapter's environment (repeatable)\n"
    "  --mock-delay-ms N      the mock adapter answers after N ms (default %d)\n"
    "  --output-cap BYTES     adapter output limit (default %ld)\n"
    "  --max-header BYTES     request line + headers (default %zu)\n"
    "  --max-body BYTES       request body (default %zu)\n"
    "  --max-message BYTES    WebSocket message (default %zu)\n"
    "  --max-connections N    open connections (default %d)\n"
    "  --header-timeout S     to send a request head (default %g)\n"
    "  --idle-timeout S       keep-alive idle (default %g)\n"
    "  --ws-ping-interval S   ping idle WebSocket clients (default 30)\n"
    "  --stop-grace S         on SIGTERM, how long a running task may finish (default %g)\n"
    "  --file-min-age S       a task file written in place must be this old (default 0.5)\n"
    "  --rescan S             safety-net rescan of the queue folder (default 300\n"
    "                         with an inotify watch on a local file system, else 30)\n"
    "  --log-level LEVEL      debug | info (default) | warn | error\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 clean stop, 1 runtime failure, 2 usage error, 78 configuration error.\n";

const char *options_usage(void)
{
    static char text[sizeof options_usage_text + 512];
    struct roster_bot d;
    struct roster_limits l;

    if (text[0])
        return text;
    roster_builtin_bot(&d);
    roster_builtin_limits(&l);
    snprintf(text, sizeof text, options_usage_text, d.mode, d.adapter.type, d.cooldown, d.timeout,
             d.queue_max, d.bind, d.adapter.delay_ms, d.adapter.output_cap, l.max_header_bytes,
             l.max_body, l.max_message, l.max_connections, l.header_timeout_ms / 1000.0,
             l.idle_timeout_ms / 1000.0, roster_stop_grace(d.stop_timeout));
    roster_builtin_bot_free(&d);
    return text;
}

const char *options_mode_name(enum options_mode mode)
{
    static const char *const names[] = {"cli-only", "websocket-only", "hybrid"};
    return names[mode];
}

/* Append S to the NULL-terminated list *LIST. */
static void options_push(char ***list, const char *s)
{
    size_t n = 0;
    while (*list && (*list)[n])
        n++;
    *list = xrealloc(*list, (n + 2) * sizeof **list);
    (*list)[n] = xstrdup(s);
    (*list)[n + 1] = NULL;
}

/* Parse a non-negative number. */
static int options_number(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The roster's built-in defaults (config/roster.c's tables: one copy for
 * the supervisor and the worker) into O, with the limits of hive.limits. */
static void options_roster_defaults(struct worker_options *o)
{
    struct roster_bot d;
    struct roster_limits l;

    roster_builtin_bot(&d);
    roster_builtin_limits(&l);
    for (int m = 0; m < 3; m++)
        if (strcmp(d.mode, options_mode_name(m)) == 0)
            o->mode = m;
    o->bind = xstrdup(d.bind);
    o->adapter.type = strcmp(d.adapter.type, "cli") == 0 ? ADAPTER_CLI : ADAPTER_MOCK;
    o->adapter.timeout_s = d.timeout;
    o->adapter.delay_ms = d.adapter.delay_ms;
    o->adapter.output_cap = (size_t)d.adapter.output_cap;
    o->cooldown_s = d.cooldown;
    o->queue_max = (size_t)d.queue_max;
    o->stop_grace_s = roster_stop_grace(d.stop_timeout);
    o->limits.max_header_bytes = l.max_header_bytes;
    o->limits.max_body = l.max_body;
    o->limits.max_connections = l.max_connections;
    o->limits.header_timeout_ms = l.header_timeout_ms;
    o->limits.idle_timeout_ms = l.idle_timeout_ms;
    o->ws.max_message = l.max_message;
    roster_builtin_bot_free(&d);
}

/* Defaults before parsing: the roster's, and the worker's own settings
 * that have no roster key (file_min_age, rescan, the ping interval). */
static void options_defaults(struct worker_options *o)
{
    memset(o, 0, sizeof *o);
    o->port = -1;
    o->work_dir = xstrdup(".");
    o->file_min_age_s = 0.5;
    o->rescan_s = 0; /* chosen by the watch (filequeue.c) */
    http_limits_default(&o->limits);
    ws_config_default(&o->ws);
    options_roster_defaults(o);
    o->log_level = xstrdup("info");
    o->auto_resume = true;
}

/* Replace a string option. */
static void options_set_str(char **field, const char *v)
{
    free(*field);
    *field = xstrdup(v);
}

/* Take the adapter argv from ARGV[*I+1...] up to the next "--x" option (or
 * the end when ALL). One argument with spaces is split on whitespace. */
static void options_take_argv(struct worker_options *o, int argc, char **argv, int *i, bool all)
{
    for (char **p = o->adapter.argv; p && *p; p++)
        free(*p);
    free(o->adapter.argv);
    o->adapter.argv = NULL;
    int start = *i + 1, j = start;
    while (j < argc && (all || strncmp(argv[j], "--", 2) != 0))
        options_push(&o->adapter.argv, argv[j++]);
    *i = j - 1;
    if (j - start == 1 && strpbrk(argv[start], " \t")) {
        char *copy = xstrdup(argv[start]), *save = NULL;
        free(o->adapter.argv[0]);
        free(o->adapter.argv);
        o->adapter.argv = NULL;
        for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
            options_push(&o->adapter.argv, w);
        free(copy);
    }
}

/* Apply one "--name value" option with a numeric value. */
static int options_numeric(struct worker_options *o, const char *name, const char *v)
{
    static const char *const numeric[] = {"--port",
                                          "--cooldown",
                                          "--timeout",
                                          "--queue-max",
                                          "--mock-delay-ms",
                                          "--output-cap",
                                          "--max-header",
                                          "--max-body",
                                          "--max-message",
                                          "--max-connections",
                                          "--header-timeout",
                                          "--idle-timeout",
                                          "--ws-ping-interval",
                                          "--stop-grace",
                                          "--file-min-age",
                                          "--rescan",
                                          "--stall-after"};
    bool known = false;
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++)
        known |= strcmp(name, numeric[i]) == 0;
    double d;
    if (!known)
        return -2;
    if (options_number(v, 1e12, &d) < 0)
        return -1;
    if (!strcmp(name, "--port")) {
        if (d > 65535 || d != (int)d)
            return -1;
        o->port = (int)d;
    } else if (!strcmp(name, "--cooldown"))
        o->cooldown_s = d;
    else if (!strcmp(name, "--timeout"))
        o->adapter.timeout_s = d;
    else if (!strcmp(name, "--queue-max"))
        o->queue_max = (size_t)d;
    else if (!strcmp(name, "--mock-delay-ms"))
        o->adapter.delay_ms = (int)d;
    else if (!strcmp(name, "--output-cap"))
        o->adapter.output_cap = (size_t)d;
    else if (!strcmp(name, "--max-header"))
        o->limits.max_header_bytes = (size_t)d;
    else if (!strcmp(name, "--max-body"))
        o->limits.max_body = (size_t)d;
    else if (!strcmp(name, "--max-message"))
        o->ws.max_message = (size_t)d;
    else if (!strcmp(name, "--max-connections"))
        o->limits.max_connections = (int)d;
    else if (!strcmp(name, "--header-timeout"))
        o->limits.header_timeout_ms = (int)(d * 1000);
    else if (!strcmp(name, "--idle-timeout"))
        o->limits.idle_timeout_ms = (int)(d * 1000);
    else if (!strcmp(name, "--ws-ping-interval"))
        o->ws.ping_interval_ms = (int)(d * 1000);
    else if (!strcmp(name, "--stop-grace"))
        o->stop_grace_s = d;
    else if (!strcmp(name, "--file-min-age"))
        o->file_min_age_s = d;
    else if (!strcmp(name, "--rescan"))
        o->rescan_s = d > 0.1 ? d : 0.1;
    else if (!strcmp(name, "--stall-after"))
        o->stall_after_s = d;
    else
        return -2;
    return 0;
}

/* Free a NULL-terminated list. */
static void options_free_list(char **list)
{
    for (char **p = list; p && *p; p++)
        free(*p);
    free(list);
}

/* "HH:MM" into minutes after midnight; -1 when it is not one. */
static int options_clock(const char *v)
{
    int h, m, n = 0;
    if (sscanf(v, "%2d:%2d%n", &h, &m, &n) != 2 || v[n] || h < 0 || h > 23 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

/* Apply one option of the agent CLIs (worker/agent.h); -2 when NAME is not one. */
static int options_agent(struct worker_options *o, const char *name, const char *v)
{
    double d;
    if (!strcmp(name, "--adapter-type") && agent_preset_find(v))
        options_set_str(&o->agent_type, v);
    else if (!strcmp(name, "--model"))
        options_set_str(&o->model, v);
    else if (!strcmp(name, "--adapter-arg"))
        options_push(&o->agent_args, v);
    else if (!strcmp(name, "--session") && (!strcmp(v, "new") || !strcmp(v, "continue")))
        o->session_continue = !strcmp(v, "continue");
    else if (!strcmp(name, "--auto-resume") && (!strcmp(v, "true") || !strcmp(v, "false")))
        o->auto_resume = !strcmp(v, "true");
    else if (!strcmp(name, "--budget-usd") || !strcmp(name, "--budget-tokens")) {
        if (options_number(v, 1e15, &d) < 0)
            return -1;
        *(!strcmp(name, "--budget-usd") ? &o->budget_usd : &o->budget_tokens) = d;
    } else if (!strcmp(name, "--budget-reset")) {
        if ((o->budget_reset_min = options_clock(v)) < 0)
            return -1;
    } else if (!strcmp(name, "--session") || !strcmp(name, "--auto-resume"))
        return -1;
    else
        return -2;
    return 0;
}

/* An agent type: the cli adapter with the preset's argv and dialect. */
static void options_agent_finish(struct worker_options *o)
{
    const struct agent_preset *preset = agent_preset_find(o->agent_type);
    if (!preset)
        return;
    char **argv = agent_preset_argv(preset, o->adapter.argv, o->model, o->agent_args);
    options_free_list(o->adapter.argv);
    o->adapter.argv = argv;
    o->adapter.type = ADAPTER_CLI;
    o->adapter.dialect = preset->dialect;
    o->adapter.resume_flag = preset->resume_flag;
}

/* Apply one "--name value" option with a string value. */
static int options_string(struct worker_options *o, const char *name, const char *v)
{
    if (!strcmp(name, "--mode")) {
        for (int m = 0; m < 3; m++)
            if (!strcmp(v, options_mode_name(m))) {
                o->mode = m;
                o->mode_given = true;
                return 0;
            }
        return -1;
    }
    int agent = options_agent(o, name, v);
    if (agent != -2)
        return agent;
    if (!strcmp(name, "--adapter-type")) {
        if (strcmp(v, "mock") && strcmp(v, "cli"))
            return -1;
        o->adapter.type = strcmp(v, "cli") ? ADAPTER_MOCK : ADAPTER_CLI;
        free(o->agent_type);
        o->agent_type = NULL;
    } else if (!strcmp(name, "--work-dir"))
        options_set_str(&o->work_dir, v);
    else if (!strcmp(name, "--git-worktree"))
        options_set_str(&o->git_worktree, v);
    else if (!strcmp(name, "--cwd")) {
        free((char *)o->adapter.work_dir);
        o->adapter.work_dir = xstrdup(v);
    } else if (!strcmp(name, "--bind"))
        options_set_str(&o->bind, v);
    else if (!strcmp(name, "--token"))
        options_set_str(&o->token, v);
    else if (!strcmp(name, "--log-level"))
        options_set_str(&o->log_level, v);
    else if (!strcmp(name, "--allowed-origin"))
        options_push(&o->allowed_origins, v);
    else if (!strcmp(name, "--server-name"))
        options_push(&o->server_names, v);
    else if (!strcmp(name, "--env")) {
        if (!strchr(v, '=') || v[0] == '=')
            return -1;
        options_push(&o->adapter.env_set, v);
    } else if (!strcmp(name, "--env-remove"))
        options_push(&o->adapter.env_remove, v);
    else
        return -2;
    return 0;
}

/* Apply "--adapter-cmd=ARGV" (the value split on whitespace). 0 or -1. */
static int options_adapter_cmd_inline(struct worker_options *o, const char *value, char *err,
                                      size_t errlen)
{
    char *argv[2] = {"--adapter-cmd", (char *)value};
    int i = 0;
    if (!*value) {
        snprintf(err, errlen, "option --adapter-cmd needs a value");
        return -1;
    }
    options_take_argv(o, 2, argv, &i, true);
    return 0;
}

/* Checks across options once all are read. */
static int options_check(struct worker_options *o, char *err, size_t errlen)
{
    if (!o->bot_id) {
        snprintf(err, errlen, "a BOT-ID is required");
        return -1;
    }
    if (!util_id_valid(o->bot_id)) {
        snprintf(err, errlen, "invalid BOT-ID '%s' (expected [A-Za-z0-9._-]{1,64})", o->bot_id);
        return -1;
    }
    options_agent_finish(o);
    if (o->adapter.type == ADAPTER_CLI && !o->adapter.argv) {
        snprintf(err, errlen, "--adapter-type cli needs --adapter-cmd (or -- ARGV...)");
        return -1;
    }
    /* DEIA's `run_single_bot.py BOT-ID` watched the file queue only; a
     * port (or a socket passed by a service manager) means serve it too. */
    if (!o->mode_given)
        o->mode = o->port >= 0 || getenv("LISTEN_FDS") ? MODE_HYBRID : MODE_CLI_ONLY;
    if (!o->token) {
        const char *t = getenv("HIVE_TOKEN");
        if (t && *t)
            o->token = xstrdup(t);
    }
    return 0;
}

/* Apply the option at ARGV[*I] with its value: "--name=value", or "--name"
 * and the next argument (then *I moves past it). 0, or -1 with ERR set. */
static int options_valued(struct worker_options *o, int argc, char **argv, int *i, char *err,
                          size_t errlen)
{
    const char *a = argv[*i], *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    char *name = eq ? xstrndup(a, (size_t)(eq - a)) : xstrdup(a);
    const char *v = eq ? eq + 1 : *i + 1 < argc ? argv[*i + 1] : NULL;
    int r = -3;
    if (!v)
        snprintf(err, errlen, "option %s needs a value", a);
    else if ((r = options_numeric(o, name, v)) == -2 && (r = options_string(o, name, v)) == -2)
        snprintf(err, errlen, "unknown option %s", name);
    else if (r < 0)
        snprintf(err, errlen, "invalid value for %s: '%s'", name, v);
    else if (!eq)
        (*i)++;
    free(name);
    return r < 0 ? -1 : 0;
}

int options_parse(int argc, char **argv, struct worker_options *o, char *err, size_t errlen)
{
    options_defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            o->help = true;
        else if (!strcmp(a, "--version") || !strcmp(a, "-V"))
            o->version = true;
        else if (!strcmp(a, "--"))
            options_take_argv(o, argc, argv, &i, true);
        else if (!strcmp(a, "--adapter-cmd"))
            options_take_argv(o, argc, argv, &i, false);
        else if (!strncmp(a, "--adapter-cmd=", 14)) {
            if (options_adapter_cmd_inline(o, a + 14, err, errlen) < 0)
                return -1;
        } else if (a[0] == '-') {
            if (options_valued(o, argc, argv, &i, err, errlen) < 0)
                return -1;
        } else if (!o->bot_id)
            o->bot_id = xstrdup(a);
        else {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return -1;
        }
    }
    if (o->help || o->version)
        return 0;
    return options_check(o, err, errlen);
}

void options_free(struct worker_options *o)
{
    free(o->bot_id);
    free(o->work_dir);
    free(o->bind);
    free(o->token);
    free(o->log_level);
    options_free_list(o->allowed_origins);
    options_free_list(o->server_names);
    options_free_list(o->adapter.argv);
    options_free_list(o->agent_args);
    free(o->agent_type);
    free(o->model);
    options_free_list(o->adapter.env_remove);
    options_free_list(o->adapter.env_set);
    free((char *)o->adapter.work_dir);
    free(o->git_worktree);
}
