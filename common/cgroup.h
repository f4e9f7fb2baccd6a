/*
 * cgroup: the few cgroup v2 operations hive needs to make sure that no
 * process of a task outlives it: find the cgroup this process is in (the
 * cgroup2 mount from /proc/self/mountinfo, hybrid layouts' "unified" mount
 * included, and the "0::" line of /proc/self/cgroup), make a child cgroup,
 * move a process into one, kill everything in one (cgroup.kill, which also
 * reaches daemonised and setsid descendants and nested cgroups), and remove
 * one with its sub-cgroups. Errors come back as -1 with errno (and a reason
 * in a buffer where one helps); nothing here logs or knows which program it
 * runs in.
 */
#ifndef HIVE_CGROUP_H
#define HIVE_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The directory of the cgroup v2 this process is in, e.g.
 * "/sys/fs/cgroup/unified/user.slice/session-1.scope" (caller frees), or
 * NULL with a reason in ERR when the kernel gives no cgroup v2 here. */
char *cgroup_self_dir(char *err, size_t errlen);
/* Make the cgroup DIR (an existing one is fine) and check that it can be
 * killed (cgroup.kill, Linux 5.14); -1 with a reason in ERR. */
int cgroup_make(const char *dir, char *err, size_t errlen);
/* Move PID (0: the caller) into the cgroup DIR; -1 with errno. */
int cgroup_enter(const char *dir, pid_t pid);
/* Open DIR's cgroup.procs for writing (close-on-exec), so that a child can
 * move itself with cgroup_enter_fd between fork and exec; -1 with errno. */
int cgroup_procs_open(const char *dir);
/* Move the caller into the cgroup whose cgroup.procs is FD; only
 * async-signal-safe calls. -1 with errno. */
int cgroup_enter_fd(int fd);
/* SIGKILL every process in DIR and its sub-cgroups; -1 with errno (ENOENT:
 * no such cgroup). */
int cgroup_kill(const char *dir);
/* True when DIR (or a sub-cgroup) still holds a process. */
bool cgroup_populated(const char *dir);
/* Kill everything in DIR, wait up to WAIT_MS for it to empty, and remove it
 * and its sub-cgroups. 0 when gone (or never there), -1 with errno. */
int cgroup_remove(const char *dir, int wait_ms);
/* Remove DIR and its sub-cgroups, those that are empty: nothing is killed
 * or waited for. 0 when DIR is gone (or never was), -1 with errno. */
int cgroup_prune(const char *dir);
/* Record in DIR (an xattr, user.hive.owner: our pid and its start time)
 * that this process owns it, for cgroup_sweep in a later one. Best effort:
 * where the file system takes no xattr, DIR is never swept. */
void cgroup_own(const char *dir);
/* Remove the cgroups under PARENT whose names start with PREFIX that a
 * process killed before it could remove them left behind: the owner
 * cgroup_own recorded is no longer running (its pid is gone or is another
 * process now) and nothing runs in them. One with no owner recorded, or
 * still populated, is left alone (nothing is ever killed); so is SKIP.
 * Returns how many were removed. */
size_t cgroup_sweep(const char *parent, const char *prefix, const char *skip);

/* Where a limit of a controller can be set for the processes we start. */
enum cgroup_api { CGROUP_API_NONE, CGROUP_API_V1, CGROUP_API_V2 };

/* Which cgroup version can limit CONTROLLER ("memory", "cpu" or "pids") for
 * processes this one starts: V2 when our cgroup v2 offers it and its
 * cgroup.subtree_control is writable; else V1 when a cgroup v1 hierarchy of
 * it is mounted and our group there is writable (*V1_DIR set to that group,
 * caller frees; V1_DIR may be NULL); else NONE with the reasons in WHY. */
enum cgroup_api cgroup_limit_api(const char *controller, char **v1_dir, char *why, size_t cap);
/* Write TEXT to the file NAME of cgroup DIR; -1 with errno. */
int cgroup_set(const char *dir, const char *name, const char *text);
/* The number after KEY in the "key value" lines of DIR's file NAME
 * (memory.events, memory.oom_control); -1 when there is none. */
long long cgroup_read_key(const char *dir, const char *name, const char *key);
/* The cgroup whose "oom_kill" count (cgroup_read_key with *NAME) counts the
 * OOM kills of this process's memory cgroup, caller frees: its v1 memory
 * group (memory.oom_control) when a v1 memory hierarchy is mounted, else its
 * cgroup v2 or the nearest ancestor with memory.events (which counts its
 * descendants' kills too). NULL when there is none. */
char *cgroup_self_oom_counter(const char **name);
/* True when the space-separated WORDS (a line of cgroup.controllers) holds WORD. */
bool cgroup_has_word(const char *words, const char *word);

#endif
