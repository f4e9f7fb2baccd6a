/*
 * client: the `hive` subcommands that drive a running hive from a shell:
 * their table, parsing their options (getopt_long: `--opt value` and
 * `--opt=value`), and the small ones — down, send, restart/stop/start,
 * pause/resume/interrupt and cancel (through the proxy to the worker), reload — plus
 * handing the rest to their modules: status.c, wait.c (send --wait), logs.c
 * (which reads the captured files, not the API). The hive itself is reached
 * through api.c. Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 a bot not
 * running for `status`, 78 configuration.
 */
#include "cli/client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/api.h"
#include "cli/logs.h"
#include "cli/stream.h"
#include "cli/prune.h"
#include "cli/sendpool.h"
#include "cli/status.h"
#include "cli/wait.h"
#include "common/json.h"
#include "common/sse.h"
#include "common/util.h"
#include "config/roster.h"

#define CLIENT_DOWN_WAIT_MS 30000
#define CLIENT_POLL_MS 100
#define CLIENT_STDIN_MAX (1024 * 1024)

/* Parsed command line of one subcommand. */
struct client_args {
    const char *file;
    bool json, wait, follow, watch, no_prefix, force;
    long tail;         /* logs -n; -1: all */
    const char *since; /* logs --since */
    char **rest;       /* positional arguments */
    int n_rest;
};

/* ---- hive down ------------------------------------------------------------- */

/* POST /api/shutdown, then wait until the port stops answering. */
static int client_down(struct api *c, struct client_args *a)
{
    struct api_response r;
    (void)a;

    int rc = api_call(c, "POST", "/api/shutdown", "{}", 202, &r);
    if (rc != CLI_EXIT_OK)
        return rc;
    api_response_free(&r);
    for (int waited = 0; waited < CLIENT_DOWN_WAIT_MS; waited += CLIENT_POLL_MS) {
        int fd = api_connect(c);
        if (fd < 0) {
            printf("hive on %s stopped\n", c->addr);
            return CLI_EXIT_OK;
        }
        close(fd);
        api_sleep_ms(CLIENT_POLL_MS);
    }
    fprintf(stderr, "hive: the hive on %s is still running after %d s\n", c->addr,
            CLIENT_DOWN_WAIT_MS / 1000);
    return CLI_EXIT_FAIL;
}

/* ---- hive status ----------------------------------------------------------- */

/* hive status [BOT...] [--json] [--watch]: status.c. */
static int client_status(struct api *c, struct client_args *a)
{
    struct status_opts o = {.ids = a->rest, .n_ids = a->n_rest, .json = a->json, .watch = a->watch};
    return status_run(c, &o);
}

/* ---- hive send ------------------------------------------------------------- */

/* The words of the task joined by spaces. */
static char *client_join(char **words, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(words[i]) + 1;
    char *out = xmalloc(len), *p = out;
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i ? " " : "", words[i]);
    *p = '\0';
    return out;
}

/* `send BOT -`: the task is all of stdin (its final newlines dropped);
 * NULL after saying why. */
static char *client_read_stdin(void)
{
    struct util_buf b = {0};
    char buf[65536];
    ssize_t n;
    while ((n = read(STDIN_FILENO, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || b.len + (size_t)n > CLIENT_STDIN_MAX) {
            fprintf(stderr, "hive: %s\n",
                    n < 0 ? strerror(errno) : "the task on stdin is over 1 MiB");
            free(b.data);
            return NULL;
        }
        util_buf_add(&b, buf, (size_t)n);
    }
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        fprintf(stderr, "hive: the task on stdin is empty\n");
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* POST /bots/BOT/api/task and print the task id (or stream with --wait);
 * @POOL: the supervisor's POST /api/task (sendpool.c). */
static int client_send(struct api *c, struct client_args *a)
{
    const char *bot = a->rest[0];
    bool from_stdin = a->n_rest == 2 && strcmp(a->rest[1], "-") == 0;
    char *text = from_stdin ? client_read_stdin() : client_join(a->rest + 1, a->n_rest - 1);
    int rc;

    if (!text)
        return CLI_EXIT_FAIL;
    if (bot[0] == '@') { /* a pool: the supervisor picks the bot */
        rc = sendpool_send(c, bot + 1, text, a->wait);
        free(text);
        return rc;
    }
    if (a->wait) {
        rc = wait_task(c, bot, text);
        free(text);
        return rc;
    }
    json_t *body = json_pack("{s:s}", "command", text);
    char *json = json_dump_compact(body, NULL);
    char *target = xasprintf("/bots/%s/api/task", bot);
    struct api_response r;
    rc = api_call(c, "POST", target, json, 202, &r);
    if (rc == CLI_EXIT_OK) {
        json_t *j = api_json(&r);
        printf("%s\n", json_get_str(j, "task_id") ? json_get_str(j, "task_id") : r.body);
        json_decref(j);
        api_response_free(&r);
    }
    json_decref(body);
    free(json);
    free(target);
    free(text);
    return rc;
}

/* ---- control --------------------------------------------------------------- */

/* restart|stop|start go to the supervisor (202); pause|resume|interrupt
 * through its proxy to the worker itself (200). */
static int client_control_one(struct api *c, const char *action, const char *bot)
{
    struct api_response r;
    bool worker = strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0 ||
                  strcmp(action, "interrupt") == 0;
    char *target = worker ? xasprintf("/bots/%s/api/%s", bot, action)
                          : xasprintf("/api/bots/%s/%s", bot, action);

    int rc = api_call(c, "POST", target, "{}", worker ? 200 : 202, &r);
    if (rc == CLI_EXIT_OK) {
        json_t *j = worker ? api_json(&r) : NULL;
        const char *said = json_get_str(j, "status");
        if (said && strcmp(action, "interrupt") == 0 && strcmp(said, "idle") == 0)
            printf("%s: idle, nothing to interrupt\n", bot);
        else if (said)
            printf("%s: %s\n", bot, said);
        else
            printf("%s: %s accepted\n", bot, action);
        json_decref(j);
        api_response_free(&r);
    }
    free(target);
    return rc;
}

/* The ids of every bot of the running hive (for `all`); NULL after saying why. */
static json_t *client_all_ids(struct api *c)
{
    struct api_response r;
    json_t *ids = json_array(), *bot;
    size_t i;

    if (api_call(c, "GET", "/status", NULL, 200, &r) != CLI_EXIT_OK) {
        json_decref(ids);
        return NULL;
    }
    json_t *status = api_json(&r);
    json_array_foreach(json_object_get(status, "bots"), i, bot)
    {
        if (json_get_str(bot, "id"))
            json_array_append_new(ids, json_string(json_get_str(bot, "id")));
    }
    json_decref(status);
    api_response_free(&r);
    return ids;
}

/* hive ACTION BOT...|all: each bot in turn; 0 when every one was accepted. */
static int client_control(struct api *c, const char *action, struct client_args *a)
{
    int rc = CLI_EXIT_OK;
    if (a->n_rest == 1 && strcmp(a->rest[0], "all") == 0) {
        json_t *ids = client_all_ids(c), *id;
        size_t i;
        if (!ids)
            return CLI_EXIT_FAIL;
        json_array_foreach(ids, i, id)
        {
            if (client_control_one(c, action, json_string_value(id)) != CLI_EXIT_OK)
                rc = CLI_EXIT_FAIL;
        }
        json_decref(ids);
        return rc;
    }
    for (int i = 0; i < a->n_rest; i++) {
        int one = client_control_one(c, action, a->rest[i]);
        if (one == CLI_EXIT_OK)
            continue;
        rc = CLI_EXIT_FAIL;
        int fd = i == 0 ? api_connect(c) : 0;
        if (fd < 0) /* no hive: say it once */
            break;
        if (i == 0)
            close(fd);
    }
    return rc;
}

/* hive reload: 0, or 78 with the roster's errors. */
static int client_reload(struct api *c, struct client_args *a)
{
    struct api_response r;
    (void)a;

    int rc = api_request(c, "POST", "/api/reload", "{}", &r);
    if (rc == -1)
        return api_not_running(c);
    if (rc == 0 && r.status == 202) {
        printf("reload accepted: %s\n", c->roster->path);
        api_response_free(&r);
        return CLI_EXIT_OK;
    }
    if (rc == 0)
        api_print_error(&r);
    else
        fprintf(stderr, "hive: POST /api/reload: the hive did not answer properly\n");
    int code = rc == 0 && r.status == 400 ? CLI_EXIT_CONFIG : CLI_EXIT_FAIL;
    api_response_free(&r);
    return code;
}

/* ---- hive logs ------------------------------------------------------------- */

/* True when ID is a bot of the roster. */
static bool client_roster_has(const struct api *c, const char *id)
{
    for (size_t i = 0; i < c->roster->n_bots; i++)
        if (strcmp(c->roster->bots[i].id, id) == 0)
            return true;
    return false;
}

/* hive logs [BOT...]: no BOT = every bot of the roster, prefixed. Reads the
 * files, so it works whether the hive runs or not. */
static int client_logs(struct api *c, struct client_args *a)
{
    struct logs_opts o = {.tail = a->tail, .since = -INFINITY, .follow = a->follow};
    char *dir = xasprintf("%s/.deia/hive/logs", c->roster->work_dir);
    int rc;

    if (a->since && logs_parse_since(a->since, (double)util_wall_ns() / 1e9, &o.since) < 0) {
        fprintf(stderr, "hive logs: bad --since '%s' (e.g. 10m, 1h30m, 2026-12-03T22:00:00Z)\n",
                a->since);
        free(dir);
        return CLI_EXIT_USAGE;
    }
    o.dir = dir;
    o.n_ids = a->n_rest ? (size_t)a->n_rest : c->roster->n_bots;
    o.ids = xcalloc(o.n_ids, sizeof *o.ids);
    o.prefix = a->n_rest != 1 && !a->no_prefix;
    for (size_t i = 0; i < o.n_ids; i++) {
        o.ids[i] = a->n_rest ? a->rest[i] : c->roster->bots[i].id;
        char *path = xasprintf("%s/%s.log", dir, o.ids[i]);
        if (a->n_rest && !client_roster_has(c, o.ids[i]) && access(path, F_OK) < 0) {
            fprintf(stderr, "hive: unknown bot %s (not in %s)\n", o.ids[i], c->roster->path);
            free(path);
            free(o.ids);
            free(dir);
            return CLI_EXIT_FAIL;
        }
        free(path);
    }
    rc = logs_run(&o);
    free(o.ids);
    free(dir);
    return rc;
}

/* ---- hive events ----------------------------------------------------------- */

/* hive events [BOT...] [--since CURSOR] [--count N]: stream.c. */
static int client_events(struct api *c, struct client_args *a)
{
    struct stream_opts o = {.bots = a->rest,
                            .n_bots = (size_t)a->n_rest,
                            .since = a->since,
                            .max_events = a->tail > 0 ? (int)a->tail : 0};
    if (a->since) {
        uint64_t cursor;
        if (sse_cursor_parse(a->since, &cursor) < 0) {
            fprintf(stderr, "hive events: bad --since '%s' (a cursor: the id of an event)\n",
                    a->since);
            return CLI_EXIT_USAGE;
        }
    }
    for (int i = 0; i < a->n_rest; i++)
        if (!client_roster_has(c, a->rest[i])) {
            fprintf(stderr, "hive: unknown bot %s (not in %s)\n", a->rest[i], c->roster->path);
            return CLI_EXIT_FAIL;
        }
    return stream_run(c, &o);
}

/* ---- the command line ------------------------------------------------------ */

/* One subcommand: its name, positional arguments and handler. */
struct client_command {
    const char *name;
    const char *usage;
    int min_args, max_args; /* -1: no maximum */
    int (*run)(struct api *c, struct client_args *a);
};

/* hive restart BOT...|all. */
static int client_restart(struct api *c, struct client_args *a)
{
    return client_control(c, "restart", a);
}

/* hive stop BOT...|all. */
static int client_stop(struct api *c, struct client_args *a)
{
    return client_control(c, "stop", a);
}

/* hive start BOT...|all. */
static int client_start(struct api *c, struct client_args *a)
{
    return client_control(c, "start", a);
}

/* hive pause BOT...|all. */
static int client_pause(struct api *c, struct client_args *a)
{
    return client_control(c, "pause", a);
}

/* hive resume BOT...|all. */
static int client_resume(struct api *c, struct client_args *a)
{
    return client_control(c, "resume", a);
}

/* hive interrupt BOT...|all. */
static int client_interrupt(struct api *c, struct client_args *a)
{
    return client_control(c, "interrupt", a);
}

/* Cancel task ID of BOT: answered once the task is answered as cancelled
 * (a running one has been killed by then). */
static int client_cancel_one(struct api *c, const char *bot, const char *id)
{
    if (!util_id_valid(id)) {
        fprintf(stderr, "hive: %s is not a task id\n", id);
        return CLI_EXIT_FAIL;
    }
    struct api_response r;
    char *target = xasprintf("/bots/%s/api/task/%s/cancel", bot, id);
    int rc = api_call(c, "POST", target, "{}", 200, &r);
    if (rc == CLI_EXIT_OK) {
        printf("%s: %s cancelled\n", bot, id);
        api_response_free(&r);
    }
    free(target);
    return rc;
}

/* hive cancel BOT ID...: each id in turn; the worst exit code. */
static int client_cancel(struct api *c, struct client_args *a)
{
    int rc = CLI_EXIT_OK;
    for (int i = 1; i < a->n_rest; i++) {
        int one = client_cancel_one(c, a->rest[0], a->rest[i]);
        if (one != CLI_EXIT_OK)
            rc = one;
    }
    return rc;
}

/* hive prune BOT...: each bot's worktree in turn; the worst exit code. */
static int client_prune(struct api *c, struct client_args *a)
{
    int rc = CLI_EXIT_OK;
    for (int i = 0; i < a->n_rest; i++) {
        int one = prune_bot(c, a->rest[i], a->force);
        if (one != CLI_EXIT_OK)
            rc = one;
    }
    return rc;
}

static const struct client_command client_commands[] = {
    {"down", "hive down [-f hive.yaml]", 0, 0, client_down},
    {"status", "hive status [-f hive.yaml] [BOT...] [--json] [--watch]", 0, -1, client_status},
    {"prune", "hive prune [-f hive.yaml] [--force] BOT...", 1, -1, client_prune},
    {"send", "hive send [-f hive.yaml] [--wait] BOT|@POOL TEXT...|-", 2, -1, client_send},
    {"restart", "hive restart [-f hive.yaml] BOT...|all", 1, -1, client_restart},
    {"stop", "hive stop [-f hive.yaml] BOT...|all", 1, -1, client_stop},
    {"start", "hive start [-f hive.yaml] BOT...|all", 1, -1, client_start},
    {"pause", "hive pause [-f hive.yaml] BOT...|all", 1, -1, client_pause},
    {"resume", "hive resume [-f hive.yaml] BOT...|all", 1, -1, client_resume},
    {"interrupt", "hive interrupt [-f hive.yaml] BOT...|all", 1, -1, client_interrupt},
    {"cancel", "hive cancel [-f hive.yaml] BOT TASK-ID...", 2, -1, client_cancel},
    {"reload", "hive reload [-f hive.yaml]", 0, 0, client_reload},
    {"logs",
     "hive logs [--file hive.yaml] [BOT...] [-f|--follow] [-n|--tail N] [--since TIME] "
     "[--no-prefix]",
     0, -1, client_logs},
    {"events", "hive events [-f hive.yaml] [BOT...] [--since CURSOR] [--count N]", 0, -1,
     client_events},
};

/* The subcommand named NAME, or NULL. */
static const struct client_command *client_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof client_commands / sizeof client_commands[0]; i++)
        if (strcmp(client_commands[i].name, name) == 0)
            return &client_commands[i];
    return NULL;
}

/* Print CMD's usage; returns 2. */
static int client_usage(const struct client_command *cmd, const char *problem)
{
    if (problem)
        fprintf(stderr, "hive %s: %s\n", cmd->name, problem);
    fprintf(stderr, "usage: %s\n", cmd->usage);
    return CLI_EXIT_USAGE;
}

/* -n N / --tail N: a count, or "all"; -1 when neither. */
static int client_parse_tail(const char *s, long *out)
{
    char *end;
    if (strcmp(s, "all") == 0) {
        *out = -1;
        return 0;
    }
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* The option CH (from getopt_long) of command NAME into A; -1 when the
 * command has no such option. For logs -f means follow (the file is
 * --file); everywhere else -f is the file. */
static int client_parse_one(const char *name, int ch, struct client_args *a)
{
    bool logs = strcmp(name, "logs") == 0;
    if (ch == 'F' || (ch == 'f' && !logs))
        a->file = optarg;
    else if ((ch == 'f' || ch == 'l') && logs)
        a->follow = true;
    else if (ch == 'n' && logs)
        return client_parse_tail(optarg, &a->tail);
    else if (ch == 's' && (logs || strcmp(name, "events") == 0))
        a->since = optarg;
    else if (ch == 'n' && strcmp(name, "events") == 0)
        return client_parse_tail(optarg, &a->tail);
    else if (ch == 'p' && logs)
        a->no_prefix = true;
    else if (ch == 'j' && strcmp(name, "status") == 0)
        a->json = true;
    else if (ch == 'W' && strcmp(name, "status") == 0)
        a->watch = true;
    else if (ch == 'w' && strcmp(name, "send") == 0)
        a->wait = true;
    else if (ch == 'o' && strcmp(name, "prune") == 0)
        a->force = true;
    else
        return -1;
    return 0;
}

/* Parse the options of CMD (getopt_long: "--opt value" and "--opt=value").
 * 0, 1 for --help, or -1 on a usage error. */
static int client_parse(const struct client_command *cmd, int argc, char **argv,
                        struct client_args *a)
{
    /* One option a line (clang-format would pack the table past eleven). */
    /* clang-format off */
    static const struct option opts[] = {{"file", required_argument, NULL, 'F'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"watch", no_argument, NULL, 'W'},
                                         {"wait", no_argument, NULL, 'w'},
                                         {"follow", no_argument, NULL, 'l'},
                                         {"tail", required_argument, NULL, 'n'},
                                         {"since", required_argument, NULL, 's'},
                                         {"no-prefix", no_argument, NULL, 'p'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"force", no_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    /* clang-format on */
    bool logs = strcmp(cmd->name, "logs") == 0;
    int ch;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, logs ? ":fn:h" : ":f:h", opts, NULL)) != -1) {
        if (ch == 'h')
            return 1;
        if (client_parse_one(cmd->name, ch, a) < 0)
            return -1;
    }
    a->rest = argv + optind;
    a->n_rest = argc - optind;
    return 0;
}

/* Check the positional arguments of CMD; NULL or the problem. */
static const char *client_check_args(const struct client_command *cmd, const struct client_args *a)
{
    bool all_ids = strcmp(cmd->name, "send") != 0; /* send: BOT then the text */
    if (a->n_rest < cmd->min_args)
        return "missing arguments";
    if (cmd->max_args >= 0 && a->n_rest > cmd->max_args)
        return "too many arguments";
    for (int i = 0; i < a->n_rest && (all_ids || i == 0); i++)
        if (!util_id_valid(a->rest[i] + (!all_ids && a->rest[i][0] == '@')))
            return all_ids || a->rest[i][0] != '@' ? "invalid bot id" : "invalid pool name";
    if (cmd->min_args > 0 && a->n_rest > 1 && strcmp(cmd->name, "send") != 0)
        for (int i = 0; i < a->n_rest; i++)
            if (strcmp(a->rest[i], "all") == 0)
                return "`all` stands alone";
    return NULL;
}

/* Run subcommand ARGV[0] with its arguments; returns the exit code. */
int client_main(int argc, char **argv)
{
    const struct client_command *cmd = argc > 0 ? client_command_find(argv[0]) : NULL;
    struct client_args a = {.file = "hive.yaml", .tail = -1};
    struct api c = {0};

    if (!cmd) {
        fprintf(stderr, "hive: unknown command '%s' (see hive --help)\n", argc > 0 ? argv[0] : "");
        return CLI_EXIT_USAGE;
    }
    int parsed = client_parse(cmd, argc, argv, &a);
    if (parsed != 0) {
        if (parsed > 0) {
            printf("usage: %s\n", cmd->usage);
            return CLI_EXIT_OK;
        }
        return client_usage(cmd, "invalid option");
    }
    const char *problem = client_check_args(cmd, &a);
    if (problem)
        return client_usage(cmd, problem);
    int rc = api_load(&c, a.file);
    if (rc == CLI_EXIT_OK)
        rc = cmd->run(&c, &a);
    roster_free(c.roster);
    return rc;
}
