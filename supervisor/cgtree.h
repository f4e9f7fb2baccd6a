/*
 * cgtree: the hive's cgroup v2 tree, so that no process of a bot outlives
 * its worker: "hive-<hash of the work dir>" under the supervisor's own
 * cgroup, and in it one cgroup per bot that its worker is started in (the
 * worker nests its tasks' cgroups inside). When a worker dies — SIGKILL
 * included — cgtree_bot_kill ends everything it and its tasks started,
 * daemonised and setsid descendants included. The tree's name depends only
 * on the work dir, so the tree a SIGKILLed supervisor left behind is found,
 * killed and removed by the next start (which holds the hive's lock).
 */
#ifndef HIVE_CGTREE_H
#define HIVE_CGTREE_H

#include <stddef.h>

struct cgtree;

/* Open the tree for the hive of WORK_DIR, ending what an earlier run left
 * in it. NULL when the kernel gives no usable cgroup v2 here, or when
 * $HIVE_CONTAIN=subreaper asks for the fallback (tests; the workers see it
 * too). DESC gets one line saying what is in force (and why not). */
struct cgtree *cgtree_open(const char *work_dir, char *desc, size_t desclen);
/* The cgroup of BOT_ID, made if needed (caller frees); NULL with a reason in
 * ERR. TREE may be NULL (then NULL, no reason). */
char *cgtree_bot_dir(struct cgtree *tree, const char *bot_id, char *err, size_t errlen);
/* SIGKILL everything in BOT_ID's cgroup (its worker is gone). NULL TREE is fine. */
void cgtree_bot_kill(struct cgtree *tree, const char *bot_id);
/* Kill and remove BOT_ID's cgroup. NULL TREE is fine. */
void cgtree_bot_remove(struct cgtree *tree, const char *bot_id);
/* Kill and remove the whole tree, and free it. NULL is fine. */
void cgtree_free(struct cgtree *tree);

#endif
