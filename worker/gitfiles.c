/*
 * gitfiles: one git child at a time, read from the loop. A run is: spawn
 * (posix_spawnp, own process group, stdin and stderr /dev/null), read its
 * stdout into a capped buffer, on EOF reap it (WNOHANG, retried on a short
 * timer: the adapter's SIGCHLD event only looks at its own children), then
 * hand the output to the step that asked. A timeout kills the group.
 *
 * Snapshots are sorted arrays of (path, XY, size, mtime); a diff walks both.
 */
#include "worker/gitfiles.h"

#include <errno.h>
#include <fcntl.h>
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
#include "worker/workspace.h"

#define GITFILES_MAX_OUTPUT (8u << 20) /* git status beyond this: too much to list */
#define GITFILES_REAP_MS 2

extern char **environ;

/* One status entry, with what the file was like then. */
struct gitfiles_entry {
    char *path;
    char xy[8];
    bool exists;
    off_t size;
    int64_t mtime_ns;
};

struct gitfiles_snap {
    struct gitfiles_entry *e;
    size_t n, cap;
    char head[64]; /* HEAD's oid, "" when none */
    bool valid;    /* git answered */
};

enum gitfiles_step { GITFILES_IDLE, GITFILES_BASE, GITFILES_AFTER, GITFILES_COMMITS };

struct gitfiles {
    struct event_base *base;
    char *dir;
    char *top; /* the checkout's root: git's paths are relative to it */
    enum gitfiles_step step;
    gitfiles_cb cb;
    void *arg;
    pid_t pid;
    int fd;
    struct event *rev, *timer;
    int64_t deadline_ms;
    bool eof, too_big, timed_out;
    struct util_buf out;
    struct gitfiles_snap before, after;
    bool ready;
    char **list; /* the changes found */
    size_t n_list, cap_list, more;
};

static void gitfiles_output(struct gitfiles *g, bool ok);

/* ---- snapshots ----------------------------------------------------------- */

static void gitfiles_snap_clear(struct gitfiles_snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->e[i].path);
    free(s->e);
    memset(s, 0, sizeof *s);
}

/* Order of entries: by path bytes. */
static int gitfiles_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct gitfiles_entry *)a)->path,
                  ((const struct gitfiles_entry *)b)->path);
}

/* Parse the fields of one v2 entry: SKIP space-separated fields after the
 * kind, then the path. NULL when malformed. */
static const char *gitfiles_v2_path(const char *rec, int skip, char xy[8])
{
    const char *p = rec + 2;
    snprintf(xy, 8, "%.2s", p);
    for (int i = 0; i < skip; i++) {
        p = strchr(p, ' ');
        if (!p)
            return NULL;
        p++;
    }
    return *p ? p : NULL;
}

int gitfiles_parse_status(const char *out, size_t len,
                          void (*fn)(const char *xy, const char *path, void *arg), void *arg)
{
    size_t i = 0;
    bool skip_next = false;
    while (i < len) {
        const char *rec = out + i;
        size_t n = strnlen(rec, len - i);
        if (i + n >= len)
            return -1; /* every record ends with a NUL */
        i += n + 1;
        if (skip_next) { /* a rename's original path */
            skip_next = false;
            continue;
        }
        char xy[8] = "";
        const char *path = NULL;
        if (strncmp(rec, "# branch.oid ", 13) == 0) {
            fn(rec + 13, NULL, arg);
            continue;
        }
        if (rec[0] == '#')
            continue;
        if (n < 3 || rec[1] != ' ')
            return -1;
        if (rec[0] == '1')
            path = gitfiles_v2_path(rec, 7, xy);
        else if (rec[0] == '2')
            path = gitfiles_v2_path(rec, 8, xy), skip_next = true;
        else if (rec[0] == 'u')
            path = gitfiles_v2_path(rec, 9, xy);
        else if (rec[0] == '?' || rec[0] == '!')
            path = rec + 2, snprintf(xy, sizeof xy, "%c%c", rec[0], rec[0]);
        else
            return -1;
        if (!path)
            return -1;
        fn(xy, path, arg);
    }
    return 0;
}

/* True for hive's own files (a .deia folder anywhere in PATH): the worker
 * writes them during every task. */
static bool gitfiles_is_hive_state(const char *path)
{
    return strncmp(path, ".deia/", 6) == 0 || strcmp(path, ".deia") == 0 ||
           strstr(path, "/.deia/") != NULL;
}

/* gitfiles_parse_status's callback: one entry of the snapshot being read. */
static void gitfiles_snap_add(const char *xy, const char *path, void *arg)
{
    struct gitfiles *g = arg;
    struct gitfiles_snap *s = g->step == GITFILES_BASE ? &g->before : &g->after;
    if (!path) {
        snprintf(s->head, sizeof s->head, "%s", xy);
        return;
    }
    if (gitfiles_is_hive_state(path))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->e = xrealloc(s->e, s->cap * sizeof *s->e);
    }
    struct gitfiles_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    e->path = xstrdup(path);
    snprintf(e->xy, sizeof e->xy, "%s", xy);
    char *full = xasprintf("%s/%s", g->top, path);
    struct stat st;
    if (lstat(full, &st) == 0) {
        e->exists = true;
        e->size = st.st_size;
        e->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    free(full);
}

/* The entry of PATH in S, or NULL. */
static const struct gitfiles_entry *gitfiles_snap_find(const struct gitfiles_snap *s,
                                                       const char *path)
{
    struct gitfiles_entry key = {.path = (char *)path};
    return s->n ? bsearch(&key, s->e, s->n, sizeof *s->e, gitfiles_entry_cmp) : NULL;
}

/* ---- the list ------------------------------------------------------------ */

/* Add PATH (one line: control characters become '?') unless listed. */
static void gitfiles_list_add(struct gitfiles *g, const char *path)
{
    for (size_t i = 0; i < g->n_list; i++)
        if (strcmp(g->list[i], path) == 0)
            return;
    if (g->n_list >= GITFILES_MAX_LIST) {
        g->more++;
        return;
    }
    if (g->n_list + 2 > g->cap_list) {
        g->cap_list = g->cap_list ? 2 * g->cap_list : 16;
        g->list = xrealloc(g->list, g->cap_list * sizeof *g->list);
    }
    char *p = xstrdup(path);
    for (char *c = p; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    g->list[g->n_list++] = p;
    g->list[g->n_list] = NULL;
}

/* True when the same path differs between the two entries. */
static bool gitfiles_entry_changed(const struct gitfiles_entry *a, const struct gitfiles_entry *b)
{
    return strcmp(a->xy, b->xy) != 0 || a->exists != b->exists || a->size != b->size ||
           a->mtime_ns != b->mtime_ns;
}

/* Every path whose status appeared, changed or went away. */
static void gitfiles_diff(struct gitfiles *g)
{
    const struct gitfiles_snap *b = &g->before, *a = &g->after;
    for (size_t i = 0; i < a->n; i++) {
        const struct gitfiles_entry *old = gitfiles_snap_find(b, a->e[i].path);
        if (!old || gitfiles_entry_changed(old, &a->e[i]))
            gitfiles_list_add(g, a->e[i].path);
    }
    for (size_t i = 0; i < b->n; i++)
        if (!gitfiles_snap_find(a, b->e[i].path))
            gitfiles_list_add(g, b->e[i].path);
}

/* Free the list of changes. */
static void gitfiles_list_clear(struct gitfiles *g)
{
    for (size_t i = 0; i < g->n_list; i++)
        free(g->list[i]);
    free(g->list);
    g->list = NULL;
    g->n_list = g->cap_list = g->more = 0;
}

/* ---- one git run ----------------------------------------------------------- */

/* The run is over (its output in g->out): forget its process and events. */
static void gitfiles_run_end(struct gitfiles *g)
{
    if (g->rev)
        event_free(g->rev);
    if (g->timer)
        event_free(g->timer);
    g->rev = g->timer = NULL;
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    g->pid = 0;
}

/* Kill and reap the child (a timeout, a cancel, a free). */
static void gitfiles_kill(struct gitfiles *g)
{
    if (g->pid > 0) {
        kill(-g->pid, SIGKILL);
        while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    gitfiles_run_end(g);
}

/* Timer: reap the child once its output ended, or kill it at the deadline. */
static void gitfiles_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct gitfiles *g = arg;
    int status = 0;
    pid_t r = g->eof ? waitpid(g->pid, &status, WNOHANG) : 0;
    if (r == g->pid) {
        g->pid = 0;
        gitfiles_run_end(g);
        return gitfiles_output(g, WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    if (util_mono_ms() >= g->deadline_ms) {
        g->timed_out = true;
        gitfiles_kill(g);
        return gitfiles_output(g, false);
    }
    struct timeval tv = {0, (g->eof ? GITFILES_REAP_MS : 100) * 1000};
    evtimer_add(g->timer, &tv);
}

/* The child's stdout is readable. */
static void gitfiles_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct gitfiles *g = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0 && g->out.len + (size_t)n > GITFILES_MAX_OUTPUT) {
            g->too_big = true;
            gitfiles_kill(g);
            return gitfiles_output(g, false);
        }
        if (n > 0) {
            util_buf_add(&g->out, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        break; /* EOF, or an error: the same end */
    }
    event_del(g->rev);
    g->eof = true;
    event_active(g->timer, EV_TIMEOUT, 0);
}

/* Spawn git ARGV in g->dir; false (logged) when it cannot run. */
static bool gitfiles_spawn(struct gitfiles *g, char *const argv[])
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        log_warn("files modified: cannot run git: %s", strerror(errno));
        return false;
    }
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = xcalloc(n + 2, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "GIT_OPTIONAL_LOCKS=", 19) != 0)
            envp[k++] = environ[i];
    envp[k++] = "GIT_OPTIONAL_LOCKS=0";
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        log_warn("files modified: cannot run git: %s", strerror(rc));
        return false;
    }
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    g->pid = pid;
    g->fd = p[0];
    g->eof = g->too_big = g->timed_out = false;
    g->out.len = 0;
    g->deadline_ms = util_mono_ms() + GITFILES_TIMEOUT_S * 1000;
    g->rev = event_new(g->base, g->fd, EV_READ | EV_PERSIST, gitfiles_read_cb, g);
    g->timer = evtimer_new(g->base, gitfiles_timer_cb, g);
    event_add(g->rev, NULL);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(g->timer, &tv);
    return true;
}

/* `git -C DIR status --porcelain=v2 -z --branch --untracked-files=all`. */
static bool gitfiles_spawn_status(struct gitfiles *g)
{
    char *argv[] = {"git",
                    "-C",
                    g->dir,
                    "status",
                    "--porcelain=v2",
                    "-z",
                    "--branch",
                    "--no-renames",
                    "--untracked-files=all",
                    "--ignore-submodules=dirty",
                    NULL};
    return gitfiles_spawn(g, argv);
}

/* `git -C DIR diff --name-only -z OLD NEW`: the files of the task's commits. */
static bool gitfiles_spawn_commits(struct gitfiles *g)
{
    char *argv[] = {"git",          "-C",          g->dir, "diff",
                    "--no-renames", "--name-only", "-z",   g->before.head,
                    g->after.head,  "--",          NULL};
    return gitfiles_spawn(g, argv);
}

/* ---- steps --------------------------------------------------------------- */

/* The step is over: back to idle, and tell. */
static void gitfiles_step_done(struct gitfiles *g)
{
    gitfiles_cb cb = g->cb;
    void *arg = g->arg;
    g->step = GITFILES_IDLE;
    g->cb = NULL;
    if (cb)
        cb(arg);
}

/* Say why git gave nothing. */
static void gitfiles_warn(const struct gitfiles *g, const char *what)
{
    log_warn("files modified: git %s in %s %s", what, g->dir,
             g->timed_out ? "timed out"
             : g->too_big ? "printed too much (over 8 MiB)"
                          : "failed");
}

/* True when HEAD is an oid that moved. */
static bool gitfiles_head_moved(const struct gitfiles *g)
{
    const char *a = g->before.head, *b = g->after.head;
    return a[0] && b[0] && strcmp(a, "(initial)") != 0 && strcmp(b, "(initial)") != 0 &&
           strcmp(a, b) != 0;
}

/* The paths of the commits' diff, NUL-separated. */
static void gitfiles_add_commits(struct gitfiles *g)
{
    for (size_t i = 0; i < g->out.len;) {
        const char *p = g->out.data + i;
        size_t n = strnlen(p, g->out.len - i);
        if (n && !gitfiles_is_hive_state(p))
            gitfiles_list_add(g, p);
        i += n + 1;
    }
}

/* A run's output is in (OK: git exited 0): the next step. */
static void gitfiles_output(struct gitfiles *g, bool ok)
{
    struct gitfiles_snap *s = g->step == GITFILES_BASE ? &g->before : &g->after;
    if (g->step == GITFILES_COMMITS) {
        if (ok)
            gitfiles_add_commits(g);
        else
            gitfiles_warn(g, "diff");
        return gitfiles_step_done(g);
    }
    gitfiles_snap_clear(s);
    s->valid = ok && gitfiles_parse_status(g->out.data ? g->out.data : "", g->out.len,
                                           gitfiles_snap_add, g) == 0;
    if (s->valid && s->n) /* qsort wants a non-NULL array even for none */
        qsort(s->e, s->n, sizeof *s->e, gitfiles_entry_cmp);
    else if (!s->valid)
        gitfiles_warn(g, "status");
    if (g->step == GITFILES_BASE) {
        g->ready = true;
        return gitfiles_step_done(g);
    }
    if (g->before.valid && s->valid)
        gitfiles_diff(g);
    if (g->before.valid && s->valid && gitfiles_head_moved(g)) {
        g->step = GITFILES_COMMITS;
        if (gitfiles_spawn_commits(g))
            return;
    }
    gitfiles_step_done(g);
}

/* ---- the interface --------------------------------------------------------- */

/* The root of the checkout DIR is in (the nearest folder at or above it
 * holding .git), or NULL. */
static char *gitfiles_checkout_root(const char *dir)
{
    char *p = xstrdup(dir);
    for (;;) {
        char *git = xasprintf("%s/.git", p);
        struct stat st;
        bool found = stat(git, &st) == 0;
        free(git);
        if (found)
            return *p ? p : (free(p), xstrdup("/"));
        char *slash = strrchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    free(p);
    return NULL;
}

/* True when git ignores DIR, a folder below TOP (a build or scratch folder:
 * nothing done there would be listed, so no git runs for it). Asked once,
 * at the start, before the loop serves. */
static bool gitfiles_ignored(const char *top, const char *dir)
{
    size_t n = strlen(top);
    if (strncmp(dir, top, n) != 0 || (dir[n] != '/' && dir[n] != '\0') || !dir[n] || !dir[n + 1])
        return false;
    char *argv[] = {"git", "-C", (char *)top,         "check-ignore",
                    "-q",  "--", (char *)dir + n + 1, NULL};
    char err[256];
    return workspace_git(argv, GITFILES_TIMEOUT_S, err, sizeof err) == 0;
}

struct gitfiles *gitfiles_new(struct event_base *base, const char *dir)
{
    char *abs = dir ? realpath(dir, NULL) : NULL; /* "." walks up too */
    char *top = abs ? gitfiles_checkout_root(abs) : NULL;
    if (top && gitfiles_ignored(top, abs)) {
        log_info("files modified: %s is ignored by git; nothing is listed", dir);
        free(top);
        top = NULL;
    }
    if (!top) {
        free(abs);
        return NULL;
    }
    struct gitfiles *g = xcalloc(1, sizeof *g);
    g->base = base;
    g->dir = abs;
    g->top = top;
    g->fd = -1;
    return g;
}

void gitfiles_free(struct gitfiles *g)
{
    if (!g)
        return;
    gitfiles_kill(g);
    gitfiles_snap_clear(&g->before);
    gitfiles_snap_clear(&g->after);
    gitfiles_list_clear(g);
    free(g->out.data);
    free(g->dir);
    free(g->top);
    free(g);
}

bool gitfiles_ready(const struct gitfiles *g)
{
    return g->ready;
}

bool gitfiles_busy(const struct gitfiles *g)
{
    return g->step != GITFILES_IDLE;
}

void gitfiles_baseline(struct gitfiles *g, gitfiles_cb cb, void *arg)
{
    if (gitfiles_busy(g))
        return;
    g->step = GITFILES_BASE;
    g->cb = cb;
    g->arg = arg;
    if (!gitfiles_spawn_status(g)) {
        gitfiles_snap_clear(&g->before); /* no baseline: nothing is listed */
        g->ready = true;
        gitfiles_step_done(g);
    }
}

void gitfiles_changes(struct gitfiles *g, gitfiles_cb cb, void *arg)
{
    gitfiles_list_clear(g);
    g->ready = false;
    if (gitfiles_busy(g) || !g->before.valid) {
        if (cb)
            cb(arg);
        return;
    }
    g->step = GITFILES_AFTER;
    g->cb = cb;
    g->arg = arg;
    if (!gitfiles_spawn_status(g))
        gitfiles_step_done(g);
}

char **gitfiles_take(struct gitfiles *g, size_t *n)
{
    if (g->more) {
        char line[64];
        snprintf(line, sizeof line, "... and %zu more", g->more);
        g->more = 0;
        if (g->n_list + 2 > g->cap_list) {
            g->cap_list = g->n_list + 2;
            g->list = xrealloc(g->list, g->cap_list * sizeof *g->list);
        }
        g->list[g->n_list++] = xstrdup(line);
        g->list[g->n_list] = NULL;
    }
    char **list = g->list;
    *n = g->n_list;
    g->list = NULL;
    g->n_list = g->cap_list = 0;
    return list;
}

void gitfiles_cancel(struct gitfiles *g)
{
    gitfiles_kill(g);
    g->step = GITFILES_IDLE;
    g->cb = NULL;
}
