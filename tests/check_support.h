/*
 * check_support: helpers several Check suites share (one copy, linked into
 * every tests/check_*.c executable).
 */
#ifndef HIVE_CHECK_SUPPORT_H
#define HIVE_CHECK_SUPPORT_H

/* Remove the cgroups named PREFIX...-<pid> under our own cgroup whose pid is
 * gone: what earlier runs of a suite left when a failed check ended its test
 * process before its cleanup. */
void check_remove_stale_cgroups(const char *prefix);

struct Suite;

/* Run every test of S (Check's default fork mode), free it; the exit status
 * of the suite's main: EXIT_SUCCESS when none failed. */
int check_run(struct Suite *s);

#endif
