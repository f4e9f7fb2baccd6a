/*
 * wait: `hive send --wait BOT TEXT` (see wait.c).
 */
#ifndef HIVE_CLI_WAIT_H
#define HIVE_CLI_WAIT_H

#include "cli/api.h"

/* Send TEXT to BOT and stream its output; 0 when the task succeeded, 1 on
 * any other outcome (said on stderr). */
int wait_task(const struct api *c, const char *bot, const char *text);

#endif
