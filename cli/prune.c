/*
 * prune: asks the running hive (GET /status) whether the bot runs — a hive
 * that does not answer runs no bot —, then has git remove the worktree and
 * forget it (git worktree remove, then prune), and drops the worker's
 * ".ready" marker so the next start makes a fresh worktree. git's own
 * messages go to the terminal as they are.
 */
#include "cli/prune.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

extern char **environ;

/* BOT's state in the running hive's /status, or NULL (no hive answers, or
 * it does not know the bot). Caller frees. */
static char *prune_state(const struct api *c, const char *bot)
{
    struct api_response r = {0};
    char *state = NULL;
    if (api_request(c, "GET", "/status", NULL, &r) == 0 && r.status == 200) {
        json_t *j = api_json(&r);
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(j, "bots"), i, b)
        {
            const char *id = json_get_str(b, "id"), *s = json_get_str(b, "state");
            if (id && s && strcmp(id, bot) == 0)
                state = xstrdup(s);
        }
        json_decref(j);
    }
    api_response_free(&r);
    return state;
}

/* Run git ARGV with stdin /dev/null; its exit status, or -1. */
static int prune_git(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "hive: cannot run git: %s\n", strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int prune_bot(const struct api *c, const char *bot, bool force)
{
    const char *work_dir = c->roster->work_dir;
    char *state = prune_state(c, bot);
    if (state && strcmp(state, "stopped") != 0 && strcmp(state, "fatal") != 0) {
        fprintf(stderr, "hive: %s is %s; stop it first (hive stop %s)\n", bot, state, bot);
        free(state);
        return CLI_EXIT_FAIL;
    }
    free(state);
    char *dir = xasprintf("%s/.deia/hive/worktrees/%s", work_dir, bot);
    char *ready = xasprintf("%s.ready", dir);
    struct stat st;
    int rc = CLI_EXIT_OK;
    if (lstat(dir, &st) != 0) {
        fprintf(stderr, "hive: %s has no worktree (%s)\n", bot, dir);
        rc = CLI_EXIT_FAIL;
    } else {
        char *rm[] = {"git", "-C", (char *)work_dir, "worktree", "remove", dir, NULL};
        char *rmf[] = {"git", "-C", (char *)work_dir, "worktree", "remove", "--force", dir, NULL};
        char *pr[] = {"git", "-C", (char *)work_dir, "worktree", "prune", NULL};
        /* As the workers do: our prune must not take a starting bot's
         * half-made worktree entry for a stale one. */
        int lock = util_worktrees_lock(work_dir);
        if (prune_git(force ? rmf : rm) != 0) {
            fprintf(stderr, "hive: cannot remove %s's worktree%s\n", bot,
                    force ? "" : " (uncommitted changes? --force removes them too)");
            rc = CLI_EXIT_FAIL;
        } else {
            unlink(ready);
            prune_git(pr);
            printf("%s: removed the worktree %s (its branch is kept)\n", bot, dir);
        }
        if (lock >= 0)
            close(lock);
    }
    free(ready);
    free(dir);
    return rc;
}
