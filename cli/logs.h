/*
 * logs: `hive logs` — the captured output of one or more bots, read from
 * the files the supervisor writes (.deia/hive/logs/<BOT>.log and its rotated
 * .1 .. .N), merged in time order with `BOT | ` prefixes as `docker compose
 * logs` does, with -n (last lines per bot), --since and -f (follow).
 */
#ifndef HIVE_CLI_LOGS_H
#define HIVE_CLI_LOGS_H

#include <stdbool.h>
#include <stddef.h>

/* What to show. */
struct logs_opts {
    const char *dir;  /* the folder of the log files */
    const char **ids; /* the bots, in the order of their prefixes */
    size_t n_ids;
    bool prefix; /* "BOT | " before each line */
    bool follow;
    long tail;    /* the last TAIL lines of each bot; -1 for all */
    double since; /* Unix time; lines before it are skipped; -INFINITY for all */
};

/* Print the logs; returns the exit code (0, or 1 when a log is missing). */
int logs_run(const struct logs_opts *o);

/* The time stamped at the start of LINE ("2026-12-03T22:01:13.123Z ..."),
 * as Unix time, or NAN when the line has none. */
double logs_line_time(const char *line, size_t len);

/* Parse --since TEXT relative to NOW: "90s", "10m", "1h30m", "2d", a Unix
 * time, "2026-12-03", or an ISO-8601 time (no zone: local time); 0 or -1. */
int logs_parse_since(const char *text, double now, double *out);

#endif
