/*
 * cgtree: owns the supervisor's cgroups (see cgtree.h). The file operations
 * are common/cgroup.c's; this file only decides names and when.
 */
#include "supervisor/cgtree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cgroup.h"
#include "common/util.h"

#define CGTREE_REMOVE_WAIT_MS 1000

struct cgtree {
    char *dir;
};

/* FNV-1a of S: a short stable name for a work dir. */
static uint64_t cgtree_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Open the tree of WORK_DIR's hive (see cgtree.h). */
struct cgtree *cgtree_open(const char *work_dir, char *desc, size_t desclen)
{
    char why[512];
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
    free(self);
    /* What a supervisor killed before us left: end it. */
    cgroup_remove(dir, CGTREE_REMOVE_WAIT_MS);
    if (cgroup_make(dir, why, sizeof why) < 0) {
        snprintf(desc, desclen, "no usable cgroup v2 (%s)", why);
        free(dir);
        return NULL;
    }
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

/* BOT_ID's cgroup, made if needed. */
char *cgtree_bot_dir(struct cgtree *tree, const char *bot_id, char *err, size_t errlen)
{
    if (!tree)
        return NULL;
    char *dir = cgtree_path(tree, bot_id);
    if (cgroup_make(dir, err, errlen) < 0) {
        free(dir);
        return NULL;
    }
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
