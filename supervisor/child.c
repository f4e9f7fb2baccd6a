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
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* Child side: become the worker, or exit saying why not (into the pipe). */
static void child_exec(const struct child_spec *spec, int out_w, pid_t supervisor)
{
    setpgid(0, 0);
    /* Into the bot's cgroup before it can start anything: all it and its
     * tasks start is then inside, and killed with it. */
    if (spec->cgroup_dir && cgroup_enter(spec->cgroup_dir, 0) < 0)
        dprintf(out_w, "hive: cannot enter cgroup %s: %s; the worker runs outside it\n",
                spec->cgroup_dir, strerror(errno));
    child_reset_signals();
    if (child_setup_fds(spec, out_w) < 0) {
        dprintf(STDERR_FILENO, "hive: cannot set up the worker's descriptors: %s\n",
                strerror(errno));
        _exit(1);
    }
    child_setup_env(spec, supervisor);
    util_nofile_restore();
    execv(spec->path, spec->argv);
    int e = errno;
    dprintf(STDERR_FILENO, "hive: cannot run %s: %s\n", spec->path, strerror(e));
    _exit(e == ENOENT || e == EACCES || e == ENOEXEC ? CHILD_EXIT_NOEXEC : 1);
}

/* Fork; the child becomes the worker, the parent gets its pid and pipe. */
pid_t child_spawn(const struct child_spec *spec, int *out_fd, char *err, size_t errlen)
{
    int p[2];
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
        child_exec(spec, p[1], supervisor);
    /* Both sides set the group, so it exists whichever runs first. */
    setpgid(pid, pid);
    close(p[1]);
    util_set_nonblock_cloexec(p[0]);
    *out_fd = p[0];
    return pid;
}
