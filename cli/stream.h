/*
 * stream: `hive events [BOT...]` — the supervisor's event stream (GET
 * /api/events, SPEC §8) followed live, one line per event, reconnecting
 * with its cursor when the hive restarts, until interrupted.
 */
#ifndef HIVE_CLI_STREAM_H
#define HIVE_CLI_STREAM_H

#include <stddef.h>

#include "cli/api.h"

struct stream_opts {
    char **bots; /* only these bots (none: all) */
    size_t n_bots;
    const char *since; /* a cursor to start after ("0": all kept); NULL: live */
    int max_events;    /* stop after this many (0: never), for scripts */
};

/* Follow the stream; returns the exit code. */
int stream_run(const struct api *c, const struct stream_opts *o);

#endif
