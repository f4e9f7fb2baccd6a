/*
 * status: `hive status` — the supervisor's GET /status as a table for people
 * (with each running bot's task count and queue, which its worker sends up
 * the channel to the supervisor: one request, no N+1 polling), or as
 * JSON; only the bots asked for; colours on a terminal unless NO_COLOR;
 * --watch redraws it every second until the hive goes away. The exit code is
 * `systemctl is-active`'s: 0 when every listed bot is running, 3 otherwise.
 */
#include "cli/status.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

#define STATUS_WATCH_MS 1000

/* A duration for people (see status.h). */
void status_duration(char *out, size_t cap, double seconds)
{
    long s = (long)seconds;

    if (seconds < 0)
        snprintf(out, cap, "-");
    else if (s < 60)
        snprintf(out, cap, "%lds", s);
    else if (s < 3600)
        snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(out, cap, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
}

/* Tasks done and queue depth of a running bot, as its worker last told the
 * supervisor (the fields its GET /status has per bot): one request in all,
 * none to the workers. */
static void status_bot_counts(json_t *bot, char *tasks, char *queue, size_t cap)
{
    json_t *q = json_object_get(bot, "queue");
    snprintf(tasks, cap, "-");
    snprintf(queue, cap, "-");
    if (json_is_integer(json_object_get(bot, "tasks_processed")))
        snprintf(tasks, cap, "%lld",
                 (long long)json_integer_value(json_object_get(bot, "tasks_processed")));
    if (json_is_object(q))
        snprintf(queue, cap, "%lld",
                 (long long)(json_integer_value(json_object_get(q, "realtime")) +
                             json_integer_value(json_object_get(q, "file"))));
}

/* The escape that colours STATE on a terminal ("" without colour). */
static const char *status_colour(bool colour, const char *state)
{
    if (!colour || !state)
        return "";
    if (strcmp(state, "running") == 0)
        return "\033[32m";
    if (strcmp(state, "fatal") == 0 || strcmp(state, "unreachable") == 0)
        return "\033[1;31m";
    if (strcmp(state, "starting") == 0 || strcmp(state, "backoff") == 0)
        return "\033[33m";
    return "\033[2m"; /* stopping, stopped */
}

/* One row of the status table. */
static void status_row(const struct status_opts *o, json_t *bot, int idw)
{
    const char *id = json_get_str(bot, "id"), *state = json_get_str(bot, "state");
    const char *on = status_colour(o->colour, state), *off = *on ? "\033[0m" : "";
    json_t *pid = json_object_get(bot, "pid");
    char pids[24] = "-", up[24], tasks[24], queue[24];

    if (json_is_integer(pid))
        snprintf(pids, sizeof pids, "%lld", (long long)json_integer_value(pid));
    double bot_up = json_number_value(json_object_get(bot, "uptime_seconds"));
    status_duration(up, sizeof up, bot_up > 0 ? bot_up : -1); /* not running: "-" */
    if (state && strcmp(state, "running") == 0) {
        status_bot_counts(bot, tasks, queue, sizeof tasks);
    } else {
        snprintf(tasks, sizeof tasks, "-");
        snprintf(queue, sizeof queue, "-");
    }
    printf("%-*s  %s%-8s%s  %7s  %5lld  %7s  %8lld  %6s  %6s  %s\n", idw, id ? id : "?", on,
           state ? state : "?", off, pids,
           (long long)json_integer_value(json_object_get(bot, "port")), up,
           (long long)json_integer_value(json_object_get(bot, "restarts")), tasks, queue,
           json_get_str(bot, "url") ? json_get_str(bot, "url") : "");
    const char *reason = json_get_str(bot, "reason");
    if (reason && *reason)
        printf("%-*s  reason: %s\n", idw, "", reason);
    const char *paused = json_get_str(bot, "paused_reason");
    const char *until = json_get_str(bot, "paused_until");
    if (paused && *paused)
        printf("%-*s  paused: %s%s%s\n", idw, "", paused, until ? " until " : "",
               until ? until : "");
}

/* Print the table of GET /status (its "bots" already filtered). */
static void status_table(const struct api *c, const struct status_opts *o, json_t *status)
{
    json_t *hive = json_object_get(status, "hive"), *bots = json_object_get(status, "bots"), *bot;
    char up[24];
    size_t i;
    int idw = 2;

    double hive_up = json_number_value(json_object_get(hive, "uptime_seconds"));
    status_duration(up, sizeof up, hive_up > 0 ? hive_up : -1);
    printf("hive %s on %s (pid %lld, up %s): %lld of %lld bots running\n",
           json_get_str(hive, "name") ? json_get_str(hive, "name") : "?", c->addr,
           (long long)json_integer_value(json_object_get(hive, "pid")), up,
           (long long)json_integer_value(json_object_get(hive, "bots_running")),
           (long long)json_integer_value(json_object_get(hive, "bots_total")));
    json_array_foreach(bots, i, bot)
    {
        const char *id = json_get_str(bot, "id");
        if (id && (int)strlen(id) > idw)
            idw = (int)strlen(id);
    }
    printf("%-*s  %-8s  %7s  %5s  %7s  %8s  %6s  %6s  %s\n", idw, "ID", "STATE", "PID", "PORT",
           "UPTIME", "RESTARTS", "TASKS", "QUEUE", "URL");
    json_array_foreach(bots, i, bot) status_row(o, bot, idw);
}

/* The bot of STATUS called ID, or NULL. */
static json_t *status_bot(json_t *status, const char *id)
{
    json_t *bot;
    size_t i;
    json_array_foreach(json_object_get(status, "bots"), i, bot)
    {
        const char *b = json_get_str(bot, "id");
        if (b && strcmp(b, id) == 0)
            return bot;
    }
    return NULL;
}

/* Keep only the bots named in A (all when none are); *ALL_RUNNING says
 * whether every kept bot is running. -1 after naming an unknown bot. */
static int status_filter(json_t *status, const struct status_opts *o, bool *all_running)
{
    json_t *kept = json_array(), *bot;
    size_t i;
    int rc = 0;

    if (o->n_ids == 0)
        json_array_extend(kept, json_object_get(status, "bots"));
    for (int k = 0; k < o->n_ids; k++) {
        if ((bot = status_bot(status, o->ids[k])))
            json_array_append(kept, bot);
        else {
            fprintf(stderr, "hive: unknown bot %s\n", o->ids[k]);
            rc = -1;
        }
    }
    *all_running = rc == 0;
    json_array_foreach(kept, i, bot)
    {
        const char *state = json_get_str(bot, "state");
        *all_running &= state && strcmp(state, "running") == 0;
    }
    json_object_set_new(status, "bots", kept);
    return rc;
}

/* One GET /status, printed; the exit code (0 all listed bots running, 3
 * not). *GONE is set when no hive answered. */
static int status_once(const struct api *c, const struct status_opts *o, bool *gone)
{
    struct api_response r;
    bool running = false;

    int rc = api_request(c, "GET", "/status", NULL, &r);
    *gone = rc < 0;
    if (rc == -1)
        return api_not_running(c);
    if (rc < 0 || r.status != 200) {
        if (rc == 0)
            api_print_error(&r);
        else
            fprintf(stderr, "hive: GET /status: the hive on %s did not answer properly\n", c->addr);
        api_response_free(&r);
        return CLI_EXIT_FAIL;
    }
    json_t *status = api_json(&r);
    api_response_free(&r);
    if (!json_is_object(status)) {
        fprintf(stderr, "hive: GET /status: invalid JSON\n");
        json_decref(status);
        return CLI_EXIT_FAIL;
    }
    status_filter(status, o, &running);
    if (o->json) {
        char *text = json_dump_compact(status, NULL);
        puts(text);
        free(text);
    } else {
        status_table(c, o, status);
    }
    fflush(stdout);
    json_decref(status);
    return running ? CLI_EXIT_OK : CLI_EXIT_INACTIVE;
}

/* --watch: redraw every second (in place on a terminal) until the hive goes
 * away; the exit code is that of the last table shown. */
static int status_watch(const struct api *c, const struct status_opts *o)
{
    bool tty = isatty(STDOUT_FILENO), gone = false;
    int rc = CLI_EXIT_INACTIVE;

    for (;;) {
        if (tty && !o->json)
            fputs("\033[H\033[2J", stdout); /* home, clear */
        int now = status_once(c, o, &gone);
        if (gone || ferror(stdout))
            break;
        rc = now;
        if (!tty && !o->json)
            putchar('\n');
        fflush(stdout);
        api_sleep_ms(STATUS_WATCH_MS);
    }
    if (gone)
        fprintf(stderr, "hive: the hive on %s went away\n", c->addr);
    return gone ? CLI_EXIT_INACTIVE : rc;
}

/* hive status: exit 0 when every listed bot is running, 3 otherwise (as
 * `systemctl is-active`), 1 when no hive answers. */
int status_run(const struct api *c, struct status_opts *o)
{
    bool gone;
    const char *no_colour = getenv("NO_COLOR");
    o->colour = isatty(STDOUT_FILENO) && !(no_colour && *no_colour);
    if (o->watch)
        return status_watch(c, o);
    return status_once(c, o, &gone);
}
