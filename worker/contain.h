/*
 * contain: makes sure no process a task started outlives the task, or the
 * worker (SPEC §3.1). Each task's processes go into a cgroup of their own
 * (cgroup v2, ended with cgroup.kill) when the kernel lets this process make
 * one; otherwise the worker is a child subreaper, so that what a task
 * daemonises (setsid grandchildren included) becomes its child and is swept
 * when the task ends. Either way the worker records in a file of its layout
 * what runs (its cgroup, or its tasks' ids and process groups), and the next
 * start of the bot ends whatever a killed worker left behind. One instance
 * per process (the subreaper flag and the cgroup are per process); without
 * contain_init only the adapter's own process-group kill applies.
 */
#ifndef HIVE_CONTAIN_H
#define HIVE_CONTAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum contain_mode {
    CONTAIN_GROUP_ONLY, /* contain_init not called: process groups only */
    CONTAIN_CGROUP,     /* a cgroup v2 per task, cgroup.kill */
    CONTAIN_SUBREAPER,  /* child subreaper and a sweep of its children */
};

/* Choose the mechanism for this process's tasks and end what a previous run
 * recorded in RECORD (a file path; NULL: nothing recorded). LABEL (the bot
 * id) names the cgroup and marks the record. $HIVE_CONTAIN=subreaper forces
 * the fallback (tests). DESC gets one line saying what is in force and why.
 * Returns the mode. */
enum contain_mode contain_init(const char *record, const char *label, char *desc, size_t desclen);
/* The mode in force. */
enum contain_mode contain_mode(void);
/* Kill every task's processes, remove the cgroup and the record (a worker
 * on its way out). contain_init may be called again afterwards. */
void contain_shutdown(void);
/* Kill every process of every task now (the supervisor is gone); async of
 * nothing, bounded. */
void contain_kill_all(void);

struct contain_job;

/* Prepare the containment of a task about to start. NULL with errno when its
 * cgroup cannot be made (EMFILE, ENFILE, ENOMEM, ENOSPC are transient). */
struct contain_job *contain_job_new(const char *task_id);
/* The descriptor the child writes itself into (cgroup_enter_fd) between fork
 * and exec; -1 when there is no cgroup. */
int contain_job_fd(const struct contain_job *job);
/* The task's cgroup's folder, open, for a child started right inside it
 * (common/spawn.h), so that it need not move; -1 when there is no cgroup. */
int contain_job_dir_fd(const struct contain_job *job);
/* The task's first process PID (its process group) runs: record it. */
void contain_job_started(struct contain_job *job, pid_t pid);
/* Kill every process of the task but its first one's zombie, which the
 * caller reaps (SIGKILL to the cgroup, or a sweep of reparented ones). */
void contain_job_kill(struct contain_job *job);
/* True when the kernel's OOM killer ended a process of the worker's memory
 * cgroup (its own, where a bot's memory_max is the limit) while JOB ran:
 * the why of a task's process found killed by SIGKILL. */
bool contain_job_oom_killed(const struct contain_job *job);
/* Kill what is left, remove the task's cgroup, forget it. NULL is fine. */
void contain_job_free(struct contain_job *job);

#endif
