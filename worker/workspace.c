/*
 * workspace: the worktree of a bot, made once and kept. A worktree whose
 * checkout was cut short (the worker killed during `git worktree add`) must
 * not be taken for a finished one: a marker beside it, BOT-ID.ready, is
 * written once the add succeeded; a folder without it is removed (git
 * worktree remove --force) and made again. git's own bookkeeping of
 * worktrees whose folder is gone is cleaned first (git worktree prune).
 */
#include "worker/workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

extern char **environ;

char *workspace_path(const char *work_dir, const char *bot_id)
{
    return xasprintf("%s/.deia/hive/worktrees/%s", work_dir, bot_id);
}

/* Keep the last non-empty line of BUF (LEN bytes) in ERR. */
static void workspace_last_line(const char *buf, size_t len, char *err, size_t errlen)
{
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    size_t start = len;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    snprintf(err, errlen, "%.*s", (int)(len - start), buf + start);
}

/* Read the child's stderr from FD until EOF or the deadline; false on
 * timeout. */
static bool workspace_read_until(int fd, int64_t deadline_ms, char *buf, size_t cap, size_t *len)
{
    for (;;) {
        int64_t left = deadline_ms - util_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0;
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return true;
        if (*len + (size_t)n >= cap) { /* keep the tail */
            size_t drop = *len + (size_t)n - cap + 1;
            drop = drop > *len ? *len : drop;
            memmove(buf, buf + drop, *len - drop);
            *len -= drop;
        }
        size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
        memcpy(buf + *len, tmp + (size_t)n - take, take);
        *len += take;
    }
}

int workspace_git(char *const argv[], int timeout_s, char *err, size_t errlen)
{
    int p[2];
    err[0] = '\0';
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot run git: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        snprintf(err, errlen, "cannot run git: %s", strerror(rc));
        return -1;
    }
    char buf[2048];
    size_t len = 0;
    bool done =
        workspace_read_until(p[0], util_mono_ms() + timeout_s * 1000, buf, sizeof buf, &len);
    close(p[0]);
    if (!done)
        kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    workspace_last_line(buf, len, err, errlen);
    if (!done) {
        snprintf(err, errlen, "git %s timed out after %d s", argv[3] ? argv[3] : "", timeout_s);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* True when PATH exists. */
static bool workspace_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* mkdir -p of DIR's folders up to and including DIR (0755 by the umask). */
static void workspace_mkdirs(const char *dir)
{
    char *p = xstrdup(dir);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
    free(p);
}

/* git -C WORK_DIR worktree add [-b BRANCH] PATH [HEAD|BRANCH]. */
static int workspace_add(const char *work_dir, const char *path, const char *branch, char *err,
                         size_t errlen)
{
    char ref[300];
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    char *show[] = {"git", "-C", (char *)work_dir, "show-ref", "--verify", "--quiet", ref, NULL};
    char e2[64];
    bool exists = workspace_git(show, WORKSPACE_TIMEOUT_S, e2, sizeof e2) == 0;
    char *with_branch[] = {"git", "-C",           (char *)work_dir, "worktree", "add",
                           "-b",  (char *)branch, (char *)path,     "HEAD",     NULL};
    char *on_branch[] = {"git", "-C",         (char *)work_dir, "worktree",
                         "add", (char *)path, (char *)branch,   NULL};
    int rc = workspace_git(exists ? on_branch : with_branch, WORKSPACE_TIMEOUT_S, err, errlen);
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "git worktree add failed");
    return rc == 0 ? 0 : -1;
}

int workspace_prepare(const char *work_dir, const char *bot_id, const char *prefix, char **path,
                      char *err, size_t errlen)
{
    char *dir = workspace_path(work_dir, bot_id), *ready = xasprintf("%s.ready", dir);
    char branch[256], why[512];
    snprintf(branch, sizeof branch, "%s/%s", prefix, bot_id);
    char *top[] = {"git", "-C", (char *)work_dir, "rev-parse", "--git-dir", NULL};
    int rc = 0;
    if (workspace_exists(ready) && workspace_exists(dir)) {
        log_info("workspace: reusing the worktree %s (branch %s)", dir, branch);
    } else if (workspace_git(top, WORKSPACE_TIMEOUT_S, why, sizeof why) != 0) {
        snprintf(err, errlen, "workspace: the work dir %s is not a git repository (%s)", work_dir,
                 why);
        rc = -1;
    } else {
        char *prune[] = {"git", "-C", (char *)work_dir, "worktree", "prune", NULL};
        char *remove[] = {"git", "-C", (char *)work_dir, "worktree", "remove", "--force",
                          dir,   NULL};
        /* One bot at a time in the repository's worktree bookkeeping: a
         * prune run by one bot while another's add is under way removes
         * that add's half-made entry (.git/worktrees/ID without its
         * gitdir yet), and the add fails ("could not open
         * .git/worktrees/ID/gitdir"), as when a hive starts its bots.
         * Each git call is bounded, so the wait is too. */
        int lock = util_worktrees_lock(work_dir);
        unlink(ready);
        if (workspace_exists(dir)) /* an add cut short: start again */
            workspace_git(remove, WORKSPACE_TIMEOUT_S, why, sizeof why);
        workspace_git(prune, WORKSPACE_TIMEOUT_S, why, sizeof why);
        char *parent = xasprintf("%s/.deia/hive/worktrees", work_dir);
        workspace_mkdirs(parent);
        free(parent);
        if (workspace_add(work_dir, dir, branch, why, sizeof why) < 0) {
            snprintf(err, errlen, "workspace: cannot make the worktree %s on branch %s: %s", dir,
                     branch, why);
            rc = -1;
        } else {
            int fd = open(ready, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
            log_info("workspace: made the worktree %s on branch %s", dir, branch);
        }
        if (lock >= 0)
            close(lock);
    }
    free(ready);
    if (rc == 0)
        *path = dir;
    else
        free(dir);
    return rc;
}
