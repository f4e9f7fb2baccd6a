/*
 * child: spawn and exec of a worker. Everything the worker inherits is
 * decided here, so that nothing of the supervisor leaks into it (descriptors,
 * signal dispositions, a stale NOTIFY_SOCKET or HIVE_TOKEN, the roster's
 * token variable), so that it starts in its bot's cgroup, and so that it
 * finds exactly what sdnotify.c expects. The parent prepares all of it (the
 * environment array, the descriptor plan, the cgroup.procs descriptors, the
 * user) and starts the child with clone(CLONE_VM | CLONE_VFORK): the child
 * shares the supervisor's memory, so a fork's copy of the page tables and the
 * copy-on-write faults after it (which grow with the supervisor, and so with
 * the number of bots) never happen. The child side therefore only makes
 * system calls on prepared data.
 */
#include "supervisor/child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/spawn.h"
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

/* The user a worker becomes, looked up before the spawn (NSS is not for a
 * child that shares our memory). */
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

/* The worker's environment, built before the spawn: pointers into ours, and
 * the strings made here (OWN, freed after). */
struct child_env {
    char **v;
    size_t n, cap;
    char **own;
    size_t n_own, cap_own;
};

/* The index of NAME (LEN bytes) in ENV, or -1. */
static ssize_t child_env_find(const struct child_env *env, const char *name, size_t len)
{
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->v[i], name, len) == 0 && env->v[i][len] == '=')
            return (ssize_t)i;
    return -1;
}

/* Drop NAME from ENV. */
static void child_env_del(struct child_env *env, const char *name)
{
    ssize_t i = child_env_find(env, name, strlen(name));
    if (i >= 0)
        env->v[i] = env->v[--env->n];
}

/* Set "NAME=value" ENTRY (kept as is) in ENV, replacing NAME's entry. */
static void child_env_put(struct child_env *env, char *entry)
{
    const char *eq = strchr(entry, '=');
    ssize_t i = child_env_find(env, entry, (size_t)(eq - entry));
    if (i >= 0) {
        env->v[i] = entry;
        return;
    }
    if (env->n + 2 > env->cap) {
        env->cap = env->cap ? env->cap * 2 : 64;
        env->v = xrealloc(env->v, env->cap * sizeof *env->v);
    }
    env->v[env->n++] = entry;
    env->v[env->n] = NULL;
}

/* Set NAME to VALUE in ENV with a string of our own; returns it. */
static char *child_env_set(struct child_env *env, const char *name, const char *value)
{
    if (env->n_own == env->cap_own) {
        env->cap_own = env->cap_own ? env->cap_own * 2 : 16;
        env->own = xrealloc(env->own, env->cap_own * sizeof *env->own);
    }
    char *entry = xasprintf("%s=%s", name, value);
    env->own[env->n_own++] = entry;
    child_env_put(env, entry);
    return entry;
}

static void child_env_free(struct child_env *env)
{
    for (size_t i = 0; i < env->n_own; i++)
        free(env->own[i]);
    free(env->own);
    free(env->v);
}

/* Room for the child to write its own pid into "LISTEN_PID=...". */
#define CHILD_PID_ROOM "                    "

/* Build the worker's environment: ours, then the bot's own variables
 * (env_file's, then env's), then the systemd protocols' and the hive's, which
 * win. Returns where the child writes its pid (after "LISTEN_PID="). */
static char *child_env_build(struct child_env *env, const struct child_spec *spec,
                             const struct child_ident *id, pid_t supervisor)
{
    extern char **environ;
    char num[32];
    memset(env, 0, sizeof *env);
    for (char **e = environ; e && *e; e++)
        if (strchr(*e, '='))
            child_env_put(env, *e);
    if (!env->v) { /* an empty environment is still an array */
        env->cap = 64;
        env->v = xcalloc(env->cap, sizeof *env->v);
    }
    for (char *const *e = spec->env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[256];
        if (!eq || (size_t)(eq - *e) >= sizeof name || eq == *e)
            continue;
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        child_env_set(env, name, eq + 1);
    }
    char *pid_slot = child_env_set(env, "LISTEN_PID", CHILD_PID_ROOM) + strlen("LISTEN_PID=");
    char names[CHILD_FDS_MAX * 64] = "";
    size_t used = 0;
    for (size_t i = 0; i < spec->n_fds && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ":" : "",
                                 spec->fds[i].name);
    snprintf(num, sizeof num, "%zu", spec->n_fds);
    child_env_set(env, "LISTEN_FDS", num);
    child_env_set(env, "LISTEN_FDNAMES", names);
    child_env_set(env, "NOTIFY_SOCKET", spec->notify_socket);
    /* The fd store keeps one descriptor per worker. */
    child_env_set(env, "FDSTORE", "1");
    child_env_del(env, "WATCHDOG_PID");
    if (spec->watchdog_usec > 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)spec->watchdog_usec);
        child_env_set(env, "WATCHDOG_USEC", num);
    } else {
        child_env_del(env, "WATCHDOG_USEC");
    }
    snprintf(num, sizeof num, "%d", (int)supervisor);
    child_env_set(env, "HIVE_SUPERVISOR_PID", num);
    if (spec->token)
        child_env_set(env, "HIVE_TOKEN", spec->token);
    else
        child_env_del(env, "HIVE_TOKEN");
    /* The worker has the token as HIVE_TOKEN; under its roster name it would
     * only reach the worker's adapters. */
    if (spec->token_env && strcmp(spec->token_env, "HIVE_TOKEN") != 0)
        child_env_del(env, spec->token_env);
    if (id->drop) {
        child_env_set(env, "HOME", id->home);
        child_env_set(env, "USER", id->name);
        child_env_set(env, "LOGNAME", id->name);
    }
    return pid_slot;
}

/* Where the child stopped, for the parent to say why. */
enum child_stage {
    CHILD_OK,
    CHILD_CGROUP_V1, /* could not enter a limit group: no start */
    CHILD_FDS,       /* could not place the descriptors */
    CHILD_DROP,      /* could not become the user */
    CHILD_EXEC,      /* execve failed */
    CHILD_UNSHARE,   /* close_range(CLOSE_RANGE_UNSHARE) refused: spawn again without */
};

/* Everything the child does, prepared by the parent: the child shares our
 * memory (CLONE_VM) while we wait (CLONE_VFORK), so it only makes system
 * calls on this, and writes back where and why it stopped. */
struct child_plan {
    const char *path;
    char *const *argv;
    char **envp;
    char *pid_slot; /* LISTEN_PID's value, written by the child */
    int null_fd, out_w;
    int fds[CHILD_FDS_MAX];
    size_t n_fds;
    int cg_fd;                /* the v2 cgroup.procs, or -1 */
    int v1_fds[CHILD_V1_MAX]; /* the v1 limit groups' cgroup.procs (-1: unopenable) */
    int v1_errno[CHILD_V1_MAX];
    size_t n_v1;
    const struct child_ident *id;
    /* Shared descriptor table (CLONE_FILES): the child first takes a copy
     * of only the descriptors below UNSHARE_BELOW (ours from the reserved
     * slots down), so a spawn never touches the supervisor's thousands of
     * others. 0: the child has a whole copy of ours, closed from fd 3 up. */
    int unshare_below;
    bool in_cgroup; /* started inside the v2 cgroup already (clone3 CLONE_INTO_CGROUP) */
    /* Written by the child. */
    volatile bool ran; /* its first instruction ran */
    enum child_stage stage;
    int err, cg_err;
    size_t v1_failed;
};

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
static int child_setup_fds(const struct child_plan *p)
{
    int moved[CHILD_FDS_MAX];
    int first_free = 3 + (int)p->n_fds;
    int out_of_way = first_free > p->unshare_below ? first_free : p->unshare_below;
    if (dup2(p->null_fd, STDIN_FILENO) < 0 || dup2(p->out_w, STDOUT_FILENO) < 0 ||
        dup2(p->out_w, STDERR_FILENO) < 0)
        return -1;
    /* All out of the way first, so none is overwritten by another's dup2. */
    for (size_t i = 0; i < p->n_fds; i++)
        if ((moved[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, out_of_way)) < 0)
            return -1;
    for (size_t i = 0; i < p->n_fds; i++)
        if (child_place_fd(moved[i], 3 + (int)i) < 0)
            return -1;
    if (close_range((unsigned)first_free, ~0u, 0) == 0)
        return 0;
    for (int fd = first_free; fd < 65536; fd++)
        close(fd);
    return 0;
}

/* Child side: PID in decimal at SLOT (the room CHILD_PID_ROOM leaves). */
static void child_put_pid(char *slot, pid_t pid)
{
    char digits[24];
    size_t n = 0;
    unsigned long v = (unsigned long)pid;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof digits);
    for (size_t i = 0; i < n; i++)
        slot[i] = digits[n - 1 - i];
    slot[n] = '\0';
}

/* Child side: become the worker, or exit with the reason in the plan. Only
 * system calls here (no malloc, no stdio, no setenv, and the raw set*id
 * calls: glibc's would broadcast them to threads of ours). */
__attribute__((no_sanitize("address"))) static int child_main(void *arg)
{
    struct child_plan *p = arg;
    p->ran = true;
    setpgid(0, 0);
    /* Into the bot's cgroup before it can start anything: all it and its
     * tasks start is then inside, and killed with it. */
    if (!p->in_cgroup && p->cg_fd >= 0 && cgroup_enter_fd(p->cg_fd) < 0)
        p->cg_err = errno;
    /* The limits are the kernel's only if the worker is inside: no start. */
    for (size_t i = 0; i < p->n_v1; i++)
        if (p->v1_fds[i] < 0 || cgroup_enter_fd(p->v1_fds[i]) < 0) {
            p->stage = CHILD_CGROUP_V1;
            p->v1_failed = i;
            p->err = p->v1_fds[i] < 0 ? p->v1_errno[i] : errno;
            _exit(CHILD_EXIT_NOEXEC);
        }
    /* Our own descriptor table, with only the low descriptors in it (the
     * stdio and the reserved slots); before any dup2 or close, which would
     * until then be the supervisor's too (the cgroup writes above use the
     * shared table as it is). */
    if (p->unshare_below > 0 &&
        close_range((unsigned)p->unshare_below, ~0u, CLOSE_RANGE_UNSHARE) < 0) {
        p->stage = CHILD_UNSHARE;
        p->err = errno;
        _exit(1);
    }
    /* Signals back to their defaults (our handlers must never run here, on
     * our memory), then nothing blocked. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (child_setup_fds(p) < 0) {
        p->stage = CHILD_FDS;
        p->err = errno;
        _exit(1);
    }
    child_put_pid(p->pid_slot, getpid());
    util_nofile_restore();
    if (p->id->drop) {
        const struct child_ident *id = p->id;
        if (syscall(SYS_setgroups, (size_t)id->n_groups, id->groups) < 0 ||
            syscall(SYS_setresgid, id->gid, id->gid, id->gid) < 0 ||
            syscall(SYS_setresuid, id->uid, id->uid, id->uid) < 0) {
            p->stage = CHILD_DROP;
            p->err = errno;
            _exit(CHILD_EXIT_NOEXEC);
        }
        if (syscall(SYS_setuid, 0) == 0) { /* must not be able to come back */
            p->stage = CHILD_DROP;
            p->err = EPERM;
            _exit(CHILD_EXIT_NOEXEC);
        }
    }
    execve(p->path, p->argv, p->envp);
    p->stage = CHILD_EXEC;
    p->err = errno;
    _exit(p->err == ENOENT || p->err == EACCES || p->err == ENOEXEC ? CHILD_EXIT_NOEXEC : 1);
}

/* The child's stack: it runs while we wait, one at a time. */
#define CHILD_STACK_SIZE (64 * 1024)
static _Alignas(64) char child_stack[CHILD_STACK_SIZE];

/* Start child_main(P) on our memory, CLONE_VM | CLONE_VFORK | EXTRA: inside
 * the cgroup CG_DIR (a descriptor of its folder, or -1) from the start when
 * the kernel can (common/spawn.c), else moved there by the child. -1 with
 * errno. */
static pid_t child_clone(struct child_plan *p, unsigned long extra, int cg_dir)
{
    if (cg_dir >= 0 && spawn_into_cgroup_usable()) {
        p->in_cgroup = true;
        pid_t pid = spawn_into_cgroup(cg_dir, extra, child_stack, sizeof child_stack, child_main, p,
                                      &p->ran);
        if (pid > 0)
            return pid;
        p->in_cgroup = false; /* the child's own move then says why, if it fails */
    }
    return clone(child_main, child_stack + sizeof child_stack,
                 (int)(CLONE_VM | CLONE_VFORK | extra | SIGCHLD), p);
}

/* Hand the bot's cgroup v2 to ID's user, as systemd's Delegate= does, so its
 * worker can still nest its tasks' cgroups in it. */
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

/* The reserved slots (child_reserve_fds): low descriptor numbers that hold
 * a placeholder (/dev/null) between spawns and, during one, the descriptors
 * the worker gets (its stdin, its output pipe, the handed-over ones). */
#define CHILD_SLOTS (CHILD_FDS_MAX + 2)
static int child_slot[CHILD_SLOTS];
static int child_placeholder = -1;
static int child_slots_end; /* one above the highest slot; 0: no slots */

void child_reserve_fds(void)
{
    if (child_slots_end > 0)
        return;
    int ph = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (ph < 0)
        return;
    int end = ph + 1;
    for (size_t i = 0; i < CHILD_SLOTS; i++) {
        if ((child_slot[i] = fcntl(ph, F_DUPFD_CLOEXEC, 3)) < 0) {
            while (i-- > 0)
                close(child_slot[i]);
            close(ph);
            return;
        }
        if (child_slot[i] + 1 > end)
            end = child_slot[i] + 1;
    }
    child_placeholder = ph;
    child_slots_end = end;
}

/* Put the worker's descriptors of PLAN into the slots (the plan then names
 * the slots); -1 if one cannot be. */
static int child_slots_fill(struct child_plan *p)
{
    int *want[CHILD_SLOTS] = {&p->null_fd, &p->out_w};
    size_t n = 2;
    for (size_t i = 0; i < p->n_fds; i++)
        want[n++] = &p->fds[i];
    for (size_t i = 0; i < n; i++) {
        if (dup3(*want[i], child_slot[i], O_CLOEXEC) < 0)
            return -1;
        *want[i] = child_slot[i];
    }
    p->unshare_below = child_slots_end;
    return 0;
}

/* Back to placeholders, so that no reference of the worker's is kept. */
static void child_slots_clear(void)
{
    for (size_t i = 0; i < CHILD_SLOTS; i++)
        dup3(child_placeholder, child_slot[i], O_CLOEXEC);
}

/* After the child: say into its output why it did not become the worker
 * (or that it runs outside its cgroup), as the worker's first lines. */
static void child_report(const struct child_spec *spec, const struct child_plan *p, int out_w,
                         int cg_open_errno)
{
    int cg_err = cg_open_errno ? cg_open_errno : p->cg_err;
    if (spec->cgroup_dir && cg_err)
        dprintf(out_w, "hive: cannot enter cgroup %s: %s; the worker runs outside it\n",
                spec->cgroup_dir, strerror(cg_err));
    switch (p->stage) {
    case CHILD_OK:
    case CHILD_UNSHARE: /* spawned again without */
        break;
    case CHILD_CGROUP_V1:
        dprintf(out_w, "hive: cannot enter cgroup %s: %s\n", spec->cgroup_v1_dirs[p->v1_failed],
                strerror(p->err));
        break;
    case CHILD_FDS:
        dprintf(out_w, "hive: cannot set up the worker's descriptors: %s\n", strerror(p->err));
        break;
    case CHILD_DROP:
        dprintf(out_w, "hive: cannot become user %s: %s\n", spec->user, strerror(p->err));
        break;
    case CHILD_EXEC:
        dprintf(out_w, "hive: cannot run %s: %s\n", spec->path, strerror(p->err));
        break;
    }
}

/* Spawn without copying the supervisor: the child shares our memory and we
 * wait until it has exec'd (or exited), so no page table is copied and no
 * page of ours is faulted in copy-on-write; it costs the same at a thousand
 * bots as at one. */
pid_t child_spawn(const struct child_spec *spec, int *out_fd, char *err, size_t errlen)
{
    int p[2];
    struct child_ident id;
    if (child_ident_resolve(spec, &id, err, errlen) < 0)
        return -1;
    /* The worker's own /dev/null: it shares no open file with us but the
     * descriptors handed over. */
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        snprintf(err, errlen, "cannot open /dev/null: %s", strerror(errno));
        return -1;
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        close(null_fd);
        return -1;
    }
    struct child_plan plan = {.path = spec->path,
                              .argv = spec->argv,
                              .null_fd = null_fd,
                              .out_w = p[1],
                              .n_fds = spec->n_fds,
                              .cg_fd = -1,
                              .id = &id};
    for (size_t i = 0; i < spec->n_fds; i++)
        plan.fds[i] = spec->fds[i].fd;
    int cg_open_errno = 0;
    if (spec->cgroup_dir && (plan.cg_fd = cgroup_procs_open(spec->cgroup_dir)) < 0)
        cg_open_errno = errno;
    int cg_dir = plan.cg_fd >= 0 ? open(spec->cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    for (size_t i = 0; i < CHILD_V1_MAX && spec->cgroup_v1_dirs[i]; i++, plan.n_v1++)
        if ((plan.v1_fds[i] = cgroup_procs_open(spec->cgroup_v1_dirs[i])) < 0)
            plan.v1_errno[i] = errno;
    child_delegate_cgroup(spec, &id);
    struct child_env env;
    plan.pid_slot = child_env_build(&env, spec, &id, getpid());
    plan.envp = env.v;
    /* No handler of ours may run in the child before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = -1;
    int clone_errno = 0;
    struct child_plan whole = plan;
    if (child_slots_end > 0 && child_slots_fill(&plan) == 0) {
        pid = child_clone(&plan, CLONE_FILES, cg_dir);
        clone_errno = errno;
        child_slots_clear();
        if (pid > 0 && plan.stage == CHILD_UNSHARE) { /* an old kernel: never again */
            child_slots_end = 0;
            waitpid(pid, NULL, 0);
            pid = -1;
        }
    }
    if (pid < 0 && child_slots_end == 0) {
        plan = whole;
        pid = child_clone(&plan, 0, cg_dir);
        clone_errno = errno;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid > 0)
        child_report(spec, &plan, p[1], cg_open_errno);
    child_env_free(&env);
    if (plan.cg_fd >= 0)
        close(plan.cg_fd);
    if (cg_dir >= 0)
        close(cg_dir);
    for (size_t i = 0; i < plan.n_v1; i++)
        if (plan.v1_fds[i] >= 0)
            close(plan.v1_fds[i]);
    close(p[1]);
    close(null_fd);
    if (pid < 0) {
        snprintf(err, errlen, "cannot start a process: %s", strerror(clone_errno));
        close(p[0]);
        return -1;
    }
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

/* /proc/PID/NAME, NUL-terminated (caller frees), or NULL with errno. */
static char *child_proc_read(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    return util_read_file(path, 1 << 16, NULL);
}

/* What a failed read of /proc/PID says: gone (busy, never waiting) or not
 * ours to look at. */
static enum child_look child_look_failed(void)
{
    return errno == ENOENT || errno == ESRCH ? CHILD_BUSY : CHILD_UNSEEN;
}

/* True when system call number NR is one an event loop sleeps in. */
static bool child_epoll_call(long nr)
{
#ifdef SYS_epoll_wait
    if (nr == SYS_epoll_wait)
        return true;
#endif
#ifdef SYS_epoll_pwait2
    if (nr == SYS_epoll_pwait2)
        return true;
#endif
    return nr == SYS_epoll_pwait;
}

enum child_look child_look(pid_t pid)
{
    /* The state first: a stopped worker (SIGSTOP, a debugger) still shows
     * the call it was in, and it is not waiting for work. */
    char *stat = child_proc_read(pid, "stat");
    if (!stat)
        return child_look_failed();
    const char *close_paren = strrchr(stat, ')');
    bool sleeping = close_paren && close_paren[1] == ' ' && close_paren[2] == 'S';
    free(stat);
    if (!sleeping)
        return CHILD_BUSY;
    /* /proc/PID/syscall: "NR args..." while in a call, "running" or "-1 ..."
     * otherwise. Reading it takes the right to ptrace the process. */
    char *call = child_proc_read(pid, "syscall");
    if (!call)
        return child_look_failed();
    char *end;
    long nr = strtol(call, &end, 10);
    bool in_call = end != call && *end == ' ';
    free(call);
    return in_call && child_epoll_call(nr) ? CHILD_WAITING : CHILD_BUSY;
}

long long child_sleeps(pid_t pid)
{
    char *status = child_proc_read(pid, "status");
    if (!status)
        return -1;
    const char *p = strstr(status, "\nvoluntary_ctxt_switches:");
    long long n = p ? strtoll(p + sizeof "\nvoluntary_ctxt_switches:" - 1, NULL, 10) : -1;
    free(status);
    return n;
}
