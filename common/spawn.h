/*
 * spawn: start a child on our memory (CLONE_VM | CLONE_VFORK, as vfork)
 * right inside a cgroup v2 (clone3 CLONE_INTO_CGROUP), so that it never has
 * to move there. A move (a write to cgroup.procs) takes the kernel's cgroup
 * threadgroup lock for writing, which waits for an RCU grace period unless
 * one has just passed: 8-20 ms for a lone move on a VM — most of a worker's
 * restart, and of a task's adapter start (bench/README.md, the fifth round).
 * The supervisor starts workers this way, and a worker its tasks' adapters.
 */
#ifndef HIVE_SPAWN_H
#define HIVE_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* FN(ARG) in a child that shares our memory and descriptor table as EXTRA
 * says (CLONE_FILES or 0), while we wait until it execs or exits, on
 * STACK (SIZE bytes, 16-aligned), inside the cgroup v2 whose folder is open
 * as CGROUP_DIR from its first instruction; SIGCHLD at its end. FN must set
 * *RAN (false before) first thing: a child the kernel killed before it ran
 * is reaped here. The pid; or -1 when the kernel would not (no clone3 or no
 * CLONE_INTO_CGROUP — it is not tried again in this process —, a child
 * killed at birth — likewise —, or another refusal, in errno): the caller
 * then starts the child the old way, which moves itself. */
pid_t spawn_into_cgroup(int cgroup_dir, unsigned long extra, void *stack, size_t size,
                        int (*fn)(void *), void *arg, volatile bool *ran);
/* False once spawn_into_cgroup gave up for this process. */
bool spawn_into_cgroup_usable(void);

#endif
