/*
 * sendpool: `hive send @POOL TEXT…|- [--wait]` — the task goes to the
 * supervisor's POST /api/task with {"pool"}, which picks the pool's bot with
 * the least work. See sendpool.c.
 */
#ifndef HIVE_CLI_SENDPOOL_H
#define HIVE_CLI_SENDPOOL_H

#include <stdbool.h>

#include "cli/api.h"

/* Send TEXT to POOL; print "TASK-ID BOT-ID". With WAIT, say the bot on
 * stderr, follow the task until it ends, print its output and return 0/1 on
 * its success. */
int sendpool_send(const struct api *c, const char *pool, const char *text, bool wait);

#endif
