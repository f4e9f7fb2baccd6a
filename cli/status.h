/*
 * status: `hive status [BOT...] [--json] [--watch]`.
 */
#ifndef HIVE_CLI_STATUS_H
#define HIVE_CLI_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/api.h"

/* What to show. */
struct status_opts {
    char **ids; /* the bots asked for; none: every bot */
    int n_ids;
    bool json, watch;
    bool colour; /* set by status_run: stdout is a terminal and NO_COLOR unset */
};

/* A duration for people: "42s", "5m03s", "2h07m", "3d04h"; "-" when
 * SECONDS is negative (unknown). `hive status` and `hive top` alike. */
void status_duration(char *out, size_t cap, double seconds);

/* Print the status; returns 0 when every listed bot is running, 3 when one
 * is not (or is unknown, or the hive went away under --watch), 1 when no
 * hive answers. */
int status_run(const struct api *c, struct status_opts *o);

#endif
