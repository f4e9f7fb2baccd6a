/*
 * cgtree: the hive's cgroup v2 tree, so that no process of a bot outlives
 * its worker: "hive-<hash of the work dir>" under the supervisor's own
 * cgroup, in it one cgroup per bot (its limits), and in that one per start
 * of its worker (the worker nests its tasks' cgroups inside). When a worker dies — SIGKILL
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
/* A new cgroup for BOT_ID's next worker, "run-<n>" inside the bot's cgroup
 * (both made as needed; caller frees), or NULL with a reason in ERR. TREE
 * may be NULL (then NULL, no reason). The worker is started right inside
 * it (clone3 CLONE_INTO_CGROUP: no migration, which costs a lone restart
 * 8-20 ms), and each start gets a new one because Linux 6.x kills at birth
 * a process cloned into a cgroup that was once cgroup.kill'ed, which the
 * bot's last run's was. The bot's earlier runs' cgroups are removed here
 * once they are empty. */
char *cgtree_worker_dir(struct cgtree *tree, const char *bot_id, char *err, size_t errlen);
/* SIGKILL everything in BOT_ID's cgroup (its worker is gone). NULL TREE is fine. */
void cgtree_bot_kill(struct cgtree *tree, const char *bot_id);
/* Kill and remove BOT_ID's cgroup. NULL TREE is fine. */
void cgtree_bot_remove(struct cgtree *tree, const char *bot_id);
/* Kill and remove the whole tree, and free it. NULL is fine. */
void cgtree_free(struct cgtree *tree);

/* A bot's kernel-enforced limits; 0 means none. */
struct cgtree_limits {
    long memory_max; /* bytes */
    int cpu_max;     /* percent of one CPU */
    int tasks_max;
};

/* Most cgroup v1 groups a bot's worker joins (memory, cpu, pids). */
#define CGTREE_V1_MAX 3

/* Set LIM on BOT_ID's cgroups of WORK_DIR's hive before its worker starts:
 * through the tree's cgroup v2 where the host offers the controller
 * (enabled in cgroup.subtree_control on the way down; a memory limit kills
 * the whole bot when hit, memory.oom.group), else through a group
 * "hive-<hash>/<BOT>" in each cgroup v1 hierarchy; those the worker must
 * join are put in V1_DIRS (NULL-ended, caller frees each). -1 with a reason
 * in ERR when a limit cannot be set: it is refused, never ignored. */
int cgtree_bot_limit(struct cgtree *tree, const char *work_dir, const char *bot_id,
                     const struct cgtree_limits *lim, char *v1_dirs[CGTREE_V1_MAX + 1], char *err,
                     size_t errlen);
/* How many times the OOM killer acted in BOT_ID's memory cgroup (v2
 * memory.events or v1 memory.oom_control "oom_kill"); -1 when unknown. */
long long cgtree_bot_oom_kills(struct cgtree *tree, const char *work_dir, const char *bot_id);
/* An eventfd that becomes readable when BOT_ID's cgroup v1 memory group
 * meets the OOM killer (cgroup.event_control), or -1 (no such group). v1
 * kills one process, not the group: the caller ends the rest. */
int cgtree_bot_oom_watch(const char *work_dir, const char *bot_id);
/* Remove BOT_ID's cgroup v1 groups (their processes are gone). */
void cgtree_bot_limits_remove(const char *work_dir, const char *bot_id);

#endif
