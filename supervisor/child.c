/*
 * child: fork and exec of a worker. Everything the worker inherits is decided
 * here, between fork and exec, so that nothing of the supervisor leaks into
 * it (descriptors, signal dispositions, a stale NOTIFY_SOCKET or HIVE_TOKEN,
 * the roster's token variable), so that it starts in its bot's cgroup, and
 * so that it finds exactly what sdnotify.c expects. The child side only
 * calls async-signal-safe functions plus setenv, which is safe because the
 * supervisor is single-threaded.
 */
#include "supervisor/child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/util.h"

/* The directory of this executable, or NULL. Caller frees. */
static char *child_self_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    return xstrdup(buf[0] ? buf : "/");
}

/* Find hive-worker: the variable, next to us, or in the build tree. */
char *child_worker_path(char *err, size_t errlen)
{
    const char *env = getenv("HIVE_WORKER_BIN");
    if (env && *env) {
        if (access(env, X_OK) == 0)
            return xstrdup(env);
        snprintf(err, errlen, "HIVE_WORKER_BIN=%s is not an executable: %s", env, strerror(errno));
        return NULL;
    }
    char *dir = child_self_dir();
    if (!dir) {
        snprintf(err, errlen,
                 "cannot find hive-worker: /proc/self/exe unreadable; set HIVE_WORKER_BIN");
        return NULL;
    }
    char *next = xasprintf("%s/hive-worker", dir);
    char *tree = xasprintf("%s/../worker/hive-worker", dir);
    free(dir);
    char *found = access(next, X_OK) == 0 ? next : access(tree, X_OK) == 0 ? tree : NULL;
    if (!found)
        snprintf(err, errlen, "cannot find hive-worker (tried %s and %s); set HIVE_WORKER_BIN",
                 next, tree);
    char *path = found ? xstrdup(found) : NULL;
    free(next);
    free(tree);
    return path;
}

/* Close every descriptor from FIRST up. */
static void child_close_from(int first)
{
    if (close_range((unsigned)first, ~0u, 0) == 0)
        return;
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = first; fd < max; fd++)
        close(fd);
}

/* Child side: signals back to their defaults, nothing blocked. */
static void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
}

/* Child side: FD as TARGET, kept across exec (dup2 onto itself would keep
 * close-on-exec). */
static int child_place_fd(int fd, int target)
{
    if (fd != target && dup2(fd, target) < 0)
        return -1;
    int fl = fcntl(target, F_GETFD);
    return fl < 0 || fcntl(target, F_SETFD, fl & ~FD_CLOEXEC) < 0 ? -1 : 0;
}

/* Child side: stdin /dev/null, stdout+stderr the pipe, the handed-over
 * descriptors from fd 3 up, and nothing else. */
static int child_setup_fds(const struct child_spec *spec, int out_w)
{
    int moved[CHILD_FDS_MAX];
    int first_free = 3 + (int)spec->n_fds;
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0)
        return -1;
    if (dup2(out_w, STDOUT_FILENO) < 0 || dup2(out_w, STDERR_FILENO) < 0)
        return -1;
    /* All out of the way first, so none is overwritten by another's dup2. */
    for (size_t i = 0; i < spec->n_fds; i++)
        if ((moved[i] = fcntl(spec->fds[i].fd, F_DUPFD_CLOEXEC, first_free)) < 0)
            return -1;
    for (size_t i = 0; i < spec->n_fds; i++)
        if (child_place_fd(moved[i], 3 + (int)i) < 0)
            return -1;
    child_close_from(first_free);
    return 0;
}

/* Child side: the variables of the systemd protocols and the hive's own. */
static void child_setup_env(const struct child_spec *spec, pid_t supervisor)
{
    char num[32];
    snprintf(num, sizeof num, "%d", (int)getpid());
    setenv("LISTEN_PID", num, 1);
    char names[CHILD_FDS_MAX * 64] = "";
    size_t used = 0;
    for (size_t i = 0; i < spec->n_fds && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ":" : "",
                                 spec->fds[i].name);
    snprintf(num, sizeof num, "%zu", spec->n_fds);
    setenv("LISTEN_FDS", num, 1);
    setenv("LISTEN_FDNAMES", names, 1);
    setenv("NOTIFY_SOCKET", spec->notify_socket, 1);
    /* The fd store keeps one descriptor per worker. */
    setenv("FDSTORE", "1", 1);
    unsetenv("WATCHDOG_PID");
    if (spec->watchdog_usec > 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)spec->watchdog_usec);
        setenv("WATCHDOG_USEC", num, 1);
    } else {
        unsetenv("WATCHDOG_USEC");
    }
    snprintf(num, sizeof num, "%d", (int)supervisor);
    setenv("HIVE_SUPERVISOR_PID", num, 1);
    if (spec->token)
        setenv("HIVE_TOKEN", spec->token, 1);
    else
        unsetenv("HIVE_TOKEN");
    /* The worker has the token as HIVE_TOKEN; under its roster name it would
     * only reach the worker's adapters. */
    if (spec->token_env && strcmp(spec->token_env, "HIVE_TOKEN") != 0)
        unsetenv(spec->token_env);
}

/* The user a worker becomes, looked up before the fork (NSS is not for a
 * forked child). */
struct child_ident {
    bool drop;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int n_groups;
    char name[64], home[PATH_MAX];
};

/* Look up SPEC's user and group into ID; -1 with ERR. */
static int child_ident_resolve(const struct child_spec *spec, struct child_ident *id, char *err,
                               size_t errlen)
{
    memset(id, 0, sizeof *id);
    if (!spec->user)
        return 0;
    struct passwd *pw = getpwnam(spec->user);
    if (!pw) {
        snprintf(err, errlen, "no user '%s'", spec->user);
        return -1;
    }
    id->drop = true;
    id->uid = pw->pw_uid;
    id->gid = pw->pw_gid;
    snprintf(id->name, sizeof id->name, "%s", pw->pw_name);
    snprintf(id->home, sizeof id->home, "%s", pw->pw_dir);
    if (spec->group) {
        struct group *gr = getgrnam(spec->group);
        if (!gr) {
            snprintf(err, errlen, "no group '%s'", spec->group);
            return -1;
        }
        id->gid = gr->gr_gid;
    }
    id->n_groups = (int)(sizeof id->groups / sizeof id->groups[0]);
    if (getgrouplist(pw->pw_name, id->gid, id->groups, &id->n_groups) < 0)
        id->n_groups = 0; /* more than 64: the primary group only */
    return 0;
}

/* Child side: become ID's user for good (groups, then gid, then uid, so
 * nothing of root is kept), with its HOME, USER and LOGNAME. */
static int child_drop(const struct child_ident *id)
{
    if (!id->drop)
        return 0;
    if (setgroups((size_t)id->n_groups, id->groups) < 0 || setgid(id->gid) < 0 ||
        setuid(id->uid) < 0)
        return -1;
    if (setuid(0) == 0) { /* must not be able to come back */
        errno = EPERM;
        return -1;
    }
    setenv("HOME", id->home, 1);
    setenv("USER", id->name, 1);
    setenv("LOGNAME", id->name, 1);
    return 0;
}

/* Child side: into the bot's cgroups (v2, then the v1 limit groups). */
static void child_enter_cgroups(const struct child_spec *spec, int out_w)
{
    /* Into the bot's cgroup before it can start anything: all it and its
     * tasks start is then inside, and killed with it. */
    if (spec->cgroup_dir && cgroup_enter(spec->cgroup_dir, 0) < 0)
        dprintf(out_w, "hive: cannot enter cgroup %s: %s; the worker runs outside it\n",
                spec->cgroup_dir, strerror(errno));
    /* The limits are the kernel's only if the worker is inside: no start. */
    for (size_t i = 0; spec->cgroup_v1_dirs[i]; i++)
        if (cgroup_enter(spec->cgroup_v1_dirs[i], 0) < 0) {
            dprintf(out_w, "hive: cannot enter cgroup %s: %s\n", spec->cgroup_v1_dirs[i],
                    strerror(errno));
            _exit(CHILD_EXIT_NOEXEC);
        }
}

/* Child side: hand the bot's cgroup v2 to ID's user, as systemd's Delegate=
 * does, so its worker can still nest its tasks' cgroups in it. */
static void child_delegate_cgroup(const struct child_spec *spec, const struct child_ident *id)
{
    static const char *const files[] = {"", "/cgroup.procs", "/cgroup.subtree_control",
                                        "/cgroup.threads"};
    char path[PATH_MAX];
    if (!id->drop || !spec->cgroup_dir)
        return;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s%s", spec->cgroup_dir, files[i]);
        if (lchown(path, id->uid, id->gid) < 0)
            return; /* the worker then falls back, and says so */
    }
}

/* Child side: the bot's own variables (env_file's, then env's). */
static void child_bot_env(const struct child_spec *spec)
{
    for (char *const *e = spec->env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[256];
        if (!eq || (size_t)(eq - *e) >= sizeof name)
            continue;
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        setenv(name, eq + 1, 1);
    }
}

/* Child side: become the worker, or exit saying why not (into the pipe). */
static void child_exec(const struct child_spec *spec, const struct child_ident *id, int out_w,
                       pid_t supervisor)
{
    setpgid(0, 0);
    child_enter_cgroups(spec, out_w);
    child_delegate_cgroup(spec, id);
    child_reset_signals();
    if (child_setup_fds(spec, out_w) < 0) {
        dprintf(STDERR_FILENO, "hive: cannot set up the worker's descriptors: %s\n",
                strerror(errno));
        _exit(1);
    }
    child_bot_env(spec);
    child_setup_env(spec, supervisor);
    util_nofile_restore();
    if (child_drop(id) < 0) {
        dprintf(STDERR_FILENO, "hive: cannot become user %s: %s\n", spec->user, strerror(errno));
        _exit(CHILD_EXIT_NOEXEC);
    }
    execv(spec->path, spec->argv);
    int e = errno;
    dprintf(STDERR_FILENO, "hive: cannot run %s: %s\n", spec->path, strerror(e));
    _exit(e == ENOENT || e == EACCES || e == ENOEXEC ? CHILD_EXIT_NOEXEC : 1);
}

/* Fork; the child becomes the worker, the parent gets its pid and pipe. */
pid_t child_spawn(const struct child_spec *spec, int *out_fd, char *err, size_t errlen)
{
    int p[2];
    struct child_ident id;
    if (child_ident_resolve(spec, &id, err, errlen) < 0)
        return -1;
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    pid_t supervisor = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0)
        child_exec(spec, &id, p[1], supervisor);
    /* Both sides set the group, so it exists whichever runs first. */
    setpgid(pid, pid);
    close(p[1]);
    util_set_nonblock_cloexec(p[0]);
    *out_fd = p[0];
    return pid;
}

/* Give PATH (made when DIR is true) to UID:GID; a missing file is fine. */
static int child_give(const char *path, bool dir, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (dir && util_mkdirs(path) < 0) {
        snprintf(err, errlen, "cannot make %s: %s", path, strerror(errno));
        return -1;
    }
    if (lchown(path, uid, gid) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot give %s to uid %u: %s", path, (unsigned)uid, strerror(errno));
        return -1;
    }
    return 0;
}

/* Make the shared folder PATH writable by every bot's user, sticky. */
static int child_share(const char *path, char *err, size_t errlen)
{
    if (util_mkdirs(path) < 0 || chmod(path, 01777) < 0) {
        snprintf(err, errlen, "cannot share %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Hand BOT_ID's layout to USER (see child.h). */
int child_hand_over_layout(const char *work_dir, const char *bot_id, const char *user,
                           const char *group, char *err, size_t errlen)
{
    struct child_spec spec = {.user = user, .group = group};
    struct child_ident id;
    if (child_ident_resolve(&spec, &id, err, errlen) < 0)
        return -1;
    static const char *const own_dirs[] = {
        ".deia/hive/tasks/%s", ".deia/hive/tasks/%s/_active", ".deia/hive/tasks/%s/_archive",
        ".deia/hive/tasks/%s/_realtime", ".deia/hive/responses/.pending/%s"};
    static const char *const own_files[] = {
        ".deia/hive/controls/%s-PAUSE",     ".deia/bot-logs/BOT-%s-activity.jsonl",
        ".deia/bot-logs/%s-timeline.jsonl", ".deia/bot-logs/%s-timeline.idx",
        ".deia/hive/locks/%s.lock",         ".deia/hive/run/%s.procs"};
    static const char *const shared[] = {".deia/hive/responses", ".deia/hive/responses/.pending",
                                         ".deia/hive/controls",  ".deia/bot-logs",
                                         ".deia/hive/run",       ".deia/hive/locks"};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof shared / sizeof *shared; i++) {
        char *path = xasprintf("%s/%s", work_dir, shared[i]);
        rc = child_share(path, err, errlen);
        free(path);
    }
    for (size_t i = 0; rc == 0 && i < sizeof own_dirs / sizeof *own_dirs; i++) {
        char *rel = xasprintf(own_dirs[i], bot_id), *path = xasprintf("%s/%s", work_dir, rel);
        rc = child_give(path, true, id.uid, id.gid, err, errlen);
        free(rel);
        free(path);
    }
    for (size_t i = 0; rc == 0 && i < sizeof own_files / sizeof *own_files; i++) {
        char *rel = xasprintf(own_files[i], bot_id), *path = xasprintf("%s/%s", work_dir, rel);
        rc = child_give(path, false, id.uid, id.gid, err, errlen);
        free(rel);
        free(path);
    }
    return rc;
}
