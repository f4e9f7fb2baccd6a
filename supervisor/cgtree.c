/*
 * cgtree: owns the supervisor's cgroups (see cgtree.h). The file operations
 * are common/cgroup.c's; this file only decides names and when.
 */
#include "supervisor/cgtree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/log.h"
#include "common/util.h"

#define CGTREE_REMOVE_WAIT_MS 1000

struct cgtree {
    char *dir;
    unsigned long runs; /* worker cgroups made: the next one's number */
};

/* FNV-1a of S: a short stable name for a work dir. */
static uint64_t cgtree_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void cgtree_limits_sweep(const char *work_dir);

/* Open the tree of WORK_DIR's hive (see cgtree.h). */
struct cgtree *cgtree_open(const char *work_dir, char *desc, size_t desclen)
{
    char why[512];
    cgtree_limits_sweep(work_dir);
    const char *force = getenv("HIVE_CONTAIN");
    if (force && strcmp(force, "subreaper") == 0) {
        snprintf(desc, desclen, "no cgroup v2 wanted (HIVE_CONTAIN=subreaper)");
        return NULL;
    }
    char *self = cgroup_self_dir(why, sizeof why);
    if (!self) {
        snprintf(desc, desclen, "no usable cgroup v2 (%s)", why);
        return NULL;
    }
    char *dir = xasprintf("%s/hive-%016llx", self, (unsigned long long)cgtree_hash(work_dir));
    /* What a supervisor killed before us left: end it. */
    cgroup_remove(dir, CGTREE_REMOVE_WAIT_MS);
    if (cgroup_make(dir, why, sizeof why) < 0) {
        snprintf(desc, desclen, "no usable cgroup v2 (%s)", why);
        free(dir);
        free(self);
        return NULL;
    }
    /* Ours while we run; what hives of other work dirs (and standalone
     * workers) killed before they could clean up left beside it, empty, goes. */
    cgroup_own(dir);
    size_t swept = cgroup_sweep(self, "hive-", dir);
    if (swept)
        log_info("removed %zu empty cgroup(s) that killed hives or workers left in %s", swept,
                 self);
    free(self);
    struct cgtree *tree = xcalloc(1, sizeof *tree);
    tree->dir = dir;
    snprintf(desc, desclen, "cgroup v2: a cgroup per bot under %s, ended by cgroup.kill", dir);
    return tree;
}

/* The path of BOT_ID's cgroup (caller frees). */
static char *cgtree_path(const struct cgtree *tree, const char *bot_id)
{
    return xasprintf("%s/%s", tree->dir, bot_id);
}

/* The tree itself, made again if someone removed it: another hive's
 * cgroup_sweep that could not see our pid (another pid namespace, a /proc
 * with hidepid) takes an idle tree for a dead one's. */
static void cgtree_ensure(struct cgtree *tree)
{
    char why[512];
    if (!tree || access(tree->dir, F_OK) == 0 || errno != ENOENT)
        return;
    if (cgroup_make(tree->dir, why, sizeof why) < 0) {
        log_warn("%s", why);
        return;
    }
    cgroup_own(tree->dir);
    log_warn("the hive's cgroup %s had been removed by another process; made again", tree->dir);
}

/* BOT_ID's cgroup, made if needed (caller frees); NULL with a reason in ERR. */
static char *cgtree_bot_dir(struct cgtree *tree, const char *bot_id, char *err, size_t errlen)
{
    cgtree_ensure(tree);
    char *dir = cgtree_path(tree, bot_id);
    if (cgroup_make(dir, err, errlen) < 0) {
        free(dir);
        return NULL;
    }
    return dir;
}

/* Remove the cgroups of BOT_DIR's earlier runs that are empty now. */
static void cgtree_prune_runs(const char *bot_dir)
{
    DIR *d = opendir(bot_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_type == DT_DIR && strncmp(e->d_name, "run-", 4) == 0) {
            char *run = xasprintf("%s/%s", bot_dir, e->d_name);
            cgroup_prune(run);
            free(run);
        }
    closedir(d);
}

/* A new cgroup for BOT_ID's next worker (see cgtree.h). */
char *cgtree_worker_dir(struct cgtree *tree, const char *bot_id, char *err, size_t errlen)
{
    if (!tree)
        return NULL;
    char *bot_dir = cgtree_bot_dir(tree, bot_id, err, errlen);
    if (!bot_dir)
        return NULL;
    cgtree_prune_runs(bot_dir);
    char *dir = NULL;
    for (int tries = 0; !dir && tries < 100; tries++) {
        dir = xasprintf("%s/run-%lu", bot_dir, tree->runs++);
        if (mkdir(dir, 0755) == 0)
            break;
        if (errno != EEXIST) {
            snprintf(err, errlen, "cannot make cgroup %s: %s", dir, strerror(errno));
            free(dir);
            free(bot_dir);
            return NULL;
        }
        free(dir);
        dir = NULL;
    }
    if (!dir)
        snprintf(err, errlen, "cannot make a new cgroup in %s: every name is taken", bot_dir);
    free(bot_dir);
    return dir;
}

/* SIGKILL everything in BOT_ID's cgroup. */
void cgtree_bot_kill(struct cgtree *tree, const char *bot_id)
{
    if (!tree)
        return;
    char *dir = cgtree_path(tree, bot_id);
    cgroup_kill(dir);
    free(dir);
}

/* Kill and remove BOT_ID's cgroup. */
void cgtree_bot_remove(struct cgtree *tree, const char *bot_id)
{
    if (!tree)
        return;
    char *dir = cgtree_path(tree, bot_id);
    cgroup_remove(dir, CGTREE_REMOVE_WAIT_MS);
    free(dir);
}

/* Kill and remove the tree. */
void cgtree_free(struct cgtree *tree)
{
    if (!tree)
        return;
    cgroup_remove(tree->dir, CGTREE_REMOVE_WAIT_MS);
    free(tree->dir);
    free(tree);
}

/* ---- limits ------------------------------------------------------------ */

/* The controllers behind the limits, in CGTREE_V1_MAX order. */
static const char *const cgtree_controllers[CGTREE_V1_MAX] = {"memory", "cpu", "pids"};

/* Which cgroup version limits CONTROLLER, and our v1 group of it (NULL but
 * for v1), asked of the kernel once per process: each answer reads
 * /proc/self/mountinfo and /proc/self/cgroup twice, and a restart asked
 * about a dozen of them before the fork (~1 ms of a 10 ms restart). The
 * mounts and our own groups do not change under a running supervisor. */
static enum cgroup_api cgtree_api(const char *controller, const char **v1_self)
{
    static struct {
        bool known;
        enum cgroup_api api;
        char *v1_self;
    } cache[CGTREE_V1_MAX];
    size_t i = 0;
    while (i < CGTREE_V1_MAX - 1 && strcmp(cgtree_controllers[i], controller) != 0)
        i++;
    if (!cache[i].known) {
        char why[512];
        cache[i].api = cgroup_limit_api(controller, &cache[i].v1_self, why, sizeof why);
        cache[i].known = true;
    }
    if (v1_self)
        *v1_self = cache[i].api == CGROUP_API_V1 ? cache[i].v1_self : NULL;
    return cache[i].api;
}

/* BOT_ID's group in the cgroup v1 hierarchy of CONTROLLER (caller frees), or
 * NULL when that hierarchy is not ours to use. */
static char *cgtree_v1_path(const char *controller, const char *work_dir, const char *bot_id)
{
    const char *self = NULL;
    if (cgtree_api(controller, &self) != CGROUP_API_V1)
        return NULL;
    return xasprintf("%s/hive-%016llx/%s", self, (unsigned long long)cgtree_hash(work_dir), bot_id);
}

/* The values for CONTROLLER's files: v1 first, v2 second; "" for none. */
static void cgtree_values(const struct cgtree_limits *lim, size_t i, char v1[][32], char v2[][32])
{
    v1[0][0] = v1[1][0] = v2[0][0] = v2[1][0] = '\0';
    if (i == 0 && lim->memory_max > 0) {
        snprintf(v1[0], 32, "%ld", lim->memory_max);
        snprintf(v2[0], 32, "%ld", lim->memory_max);
        snprintf(v2[1], 32, "1");
    } else if (i == 1 && lim->cpu_max > 0) {
        snprintf(v1[0], 32, "100000");
        snprintf(v1[1], 32, "%d", lim->cpu_max * 1000);
        snprintf(v2[0], 32, "%d 100000", lim->cpu_max * 1000);
    } else if (i == 2 && lim->tasks_max > 0) {
        snprintf(v1[0], 32, "%d", lim->tasks_max);
        snprintf(v2[0], 32, "%d", lim->tasks_max);
    }
}

/* The limit files of controller I: v1 names, then v2 names. */
static const char *const cgtree_files[CGTREE_V1_MAX][2][2] = {
    {{"memory.limit_in_bytes", NULL}, {"memory.max", "memory.oom.group"}},
    {{"cpu.cfs_period_us", "cpu.cfs_quota_us"}, {"cpu.max", NULL}},
    {{"pids.max", NULL}, {"pids.max", NULL}}};

/* Write the NAMES[k] = VALUES[k] pairs into DIR; -1 with ERR. */
static int cgtree_write_all(const char *dir, const char *const names[2], char values[][32],
                            char *err, size_t errlen)
{
    for (int k = 0; k < 2; k++)
        if (names[k] && values[k][0] && cgroup_set(dir, names[k], values[k]) < 0) {
            snprintf(err, errlen, "cannot set %s/%s to %s: %s", dir, names[k], values[k],
                     strerror(errno));
            return -1;
        }
    return 0;
}

/* Enable CONTROLLER for the tree's bots (our own cgroup and the tree's
 * cgroup.subtree_control); -1 with ERR. */
static int cgtree_v2_enable(struct cgtree *tree, const char *controller, char *err, size_t errlen)
{
    char *plus = xasprintf("+%s", controller), *parent = xasprintf("%s/..", tree->dir);
    int rc = 0;
    const char *dirs[2] = {parent, tree->dir};
    for (int i = 0; i < 2 && rc == 0; i++)
        if (cgroup_set(dirs[i], "cgroup.subtree_control", plus) < 0) {
            snprintf(err, errlen, "cannot enable the %s controller in %s: %s", controller, dirs[i],
                     strerror(errno));
            rc = -1;
        }
    free(plus);
    free(parent);
    return rc;
}

/* Set controller I's limit of LIM through cgroup v2 on BOT_ID's cgroup. */
static int cgtree_limit_v2(struct cgtree *tree, const char *bot_id, size_t i,
                           const struct cgtree_limits *lim, char *err, size_t errlen)
{
    char v1[2][32], v2[2][32];
    cgtree_values(lim, i, v1, v2);
    if (!v2[0][0])
        return 0;
    if (!tree) {
        snprintf(err, errlen, "the %s limit needs the hive's cgroup v2 tree, which is off",
                 cgtree_controllers[i]);
        return -1;
    }
    cgtree_ensure(tree); /* the enable below writes into the tree itself */
    if (cgtree_v2_enable(tree, cgtree_controllers[i], err, errlen) < 0)
        return -1;
    char *dir = cgtree_bot_dir(tree, bot_id, err, errlen);
    int rc = dir ? cgtree_write_all(dir, cgtree_files[i][1], v2, err, errlen) : -1;
    free(dir);
    return rc;
}

/* Set controller I's limit through a cgroup v1 group, added to V1_DIRS. */
static int cgtree_limit_v1(const char *work_dir, const char *bot_id, size_t i,
                           const struct cgtree_limits *lim, char **v1_dirs, size_t *n, char *err,
                           size_t errlen)
{
    char v1[2][32], v2[2][32];
    cgtree_values(lim, i, v1, v2);
    if (!v1[0][0])
        return 0;
    char *dir = cgtree_v1_path(cgtree_controllers[i], work_dir, bot_id);
    char *parent = dir ? xstrdup(dir) : NULL;
    int rc = -1;
    if (parent)
        *strrchr(parent, '/') = '\0'; /* hive-<hash>, made first */
    if (!dir)
        snprintf(err, errlen, "no writable cgroup %s controller", cgtree_controllers[i]);
    else if ((mkdir(parent, 0755) < 0 && errno != EEXIST) ||
             (mkdir(dir, 0755) < 0 && errno != EEXIST))
        snprintf(err, errlen, "cannot make cgroup %s: %s", dir, strerror(errno));
    else
        rc = cgtree_write_all(dir, cgtree_files[i][0], v1, err, errlen);
    free(parent);
    if (rc == 0)
        v1_dirs[(*n)++] = dir;
    else
        free(dir);
    return rc;
}

/* Set every limit of LIM (see cgtree.h). */
int cgtree_bot_limit(struct cgtree *tree, const char *work_dir, const char *bot_id,
                     const struct cgtree_limits *lim, char *v1_dirs[CGTREE_V1_MAX + 1], char *err,
                     size_t errlen)
{
    size_t n = 0;
    memset(v1_dirs, 0, (CGTREE_V1_MAX + 1) * sizeof *v1_dirs);
    for (size_t i = 0; i < CGTREE_V1_MAX; i++) {
        enum cgroup_api api = cgtree_api(cgtree_controllers[i], NULL);
        int rc = api == CGROUP_API_V2
                     ? cgtree_limit_v2(tree, bot_id, i, lim, err, errlen)
                     : cgtree_limit_v1(work_dir, bot_id, i, lim, v1_dirs, &n, err, errlen);
        if (rc < 0) {
            for (size_t k = 0; k < n; k++)
                free(v1_dirs[k]), v1_dirs[k] = NULL;
            return -1;
        }
    }
    return 0;
}

/* OOM kills in BOT_ID's memory cgroup (see cgtree.h). */
long long cgtree_bot_oom_kills(struct cgtree *tree, const char *work_dir, const char *bot_id)
{
    long long n = -1;
    if (cgtree_api("memory", NULL) == CGROUP_API_V2 && tree) {
        char *dir = cgtree_path(tree, bot_id);
        n = cgroup_read_key(dir, "memory.events", "oom_kill");
        free(dir);
    } else {
        char *dir = cgtree_v1_path("memory", work_dir, bot_id);
        n = dir ? cgroup_read_key(dir, "memory.oom_control", "oom_kill") : -1;
        free(dir);
    }
    return n;
}

/* An eventfd for BOT_ID's v1 memory group's OOM events (see cgtree.h). */
int cgtree_bot_oom_watch(const char *work_dir, const char *bot_id)
{
    char *dir = cgtree_v1_path("memory", work_dir, bot_id), *path, line[64];
    if (!dir)
        return -1;
    path = xasprintf("%s/memory.oom_control", dir);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), cfd = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(line, sizeof line, "%d %d", efd, cfd);
    if (efd < 0 || cfd < 0 || cgroup_set(dir, "cgroup.event_control", line) < 0) {
        if (efd >= 0)
            close(efd);
        efd = -1;
    }
    if (cfd >= 0)
        close(cfd);
    free(path);
    free(dir);
    return efd;
}

/* Remove BOT_ID's v1 groups (see cgtree.h). */
void cgtree_bot_limits_remove(const char *work_dir, const char *bot_id)
{
    for (size_t i = 0; i < CGTREE_V1_MAX; i++) {
        char *dir = cgtree_v1_path(cgtree_controllers[i], work_dir, bot_id);
        if (dir && rmdir(dir) == 0) {
            char *parent = xstrdup(dir);
            *strrchr(parent, '/') = '\0';
            rmdir(parent); /* fails while another bot's group is in it */
            free(parent);
        }
        free(dir);
    }
}

/* Remove the cgroup v1 groups a killed supervisor of WORK_DIR's hive left
 * (their processes were in its cgroup v2 tree, ended with it). */
static void cgtree_limits_sweep(const char *work_dir)
{
    for (size_t i = 0; i < CGTREE_V1_MAX; i++) {
        char *any = cgtree_v1_path(cgtree_controllers[i], work_dir, "x");
        if (!any)
            continue;
        *strrchr(any, '/') = '\0';
        DIR *d = opendir(any);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_type == DT_DIR && e->d_name[0] != '.') {
                char *sub = xasprintf("%s/%s", any, e->d_name);
                rmdir(sub);
                free(sub);
            }
        if (d)
            closedir(d);
        rmdir(any);
        free(any);
    }
}
