/*
 * top: `hive top` — a live terminal view of the hive's bots and of their
 * running tasks' last output lines, like `pm2 monit`. See top.c.
 */
#ifndef HIVE_CLI_TOP_H
#define HIVE_CLI_TOP_H

#include "cli/api.h"

/* Show the hive until `q`, SIGINT or SIGTERM (on a terminal), or print one
 * snapshot (stdout not a terminal); returns the exit code. */
int top_run(const struct api *c);

#endif
