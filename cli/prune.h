/*
 * prune: `hive prune [--force] BOT...` — remove a bot's git worktree
 * (.deia/hive/worktrees/<BOT-ID>, roster `workspace: {git_worktree}`). As
 * `docker rm` refuses a running container, a bot that runs is refused (stop
 * it first); the branch PREFIX/BOT-ID is kept, with the commits on it.
 * --force removes a worktree with uncommitted changes too (git worktree
 * remove --force). See prune.c.
 */
#ifndef HIVE_CLI_PRUNE_H
#define HIVE_CLI_PRUNE_H

#include <stdbool.h>

#include "cli/api.h"

/* Prune BOT's worktree; the exit code (0, 1). */
int prune_bot(const struct api *c, const char *bot, bool force);

#endif
