/*
 * workspace: a bot's own git worktree (SPEC §12, roster `workspace:
 * {git_worktree: PREFIX}`, hive-worker --git-worktree PREFIX). At the
 * worker's start, before it serves, the bot gets a `git worktree` of the
 * work dir's repository at .deia/hive/worktrees/<BOT-ID> on branch
 * PREFIX/<BOT-ID> (made from HEAD, or the branch as it is when it exists
 * already); a worktree made before is reused as it is, so the bot's work
 * survives restarts. `hive prune BOT` removes it (the branch is kept).
 * git runs as a child with an argv (no shell), bounded by a timeout.
 */
#ifndef HIVE_WORKSPACE_H
#define HIVE_WORKSPACE_H

#include <stddef.h>

#define WORKSPACE_TIMEOUT_S 60 /* one git call (a checkout of a large tree) */

/* The worktree's folder of BOT_ID under WORK_DIR. Caller frees. */
char *workspace_path(const char *work_dir, const char *bot_id);
/* Make (or reuse) BOT_ID's worktree on branch PREFIX/BOT_ID. 0 with its
 * folder in *PATH (caller frees), or -1 with the reason in ERR. */
int workspace_prepare(const char *work_dir, const char *bot_id, const char *prefix, char **path,
                      char *err, size_t errlen);
/* Run git ARGV (argv[0] "git") with stdin and stdout /dev/null; its exit
 * status (0 success), or -1 when it could not run or timed out after
 * TIMEOUT_S (killed). The last line of its stderr goes to ERR. */
int workspace_git(char *const argv[], int timeout_s, char *err, size_t errlen);

#endif
