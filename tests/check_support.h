/*
 * check_support: helpers several Check suites share (one copy, linked into
 * every tests/check_*.c executable).
 */
#ifndef HIVE_CHECK_SUPPORT_H
#define HIVE_CHECK_SUPPORT_H

#include <stdbool.h>

/* Remove the cgroups named PREFIX...-<pid> under our own cgroup whose pid is
 * gone: what earlier runs of a suite left when a failed check ended its test
 * process before its cleanup. */
void check_remove_stale_cgroups(const char *prefix);

/* A new cgroup v2 "hive-check-NAME-<pid>" under our own, made for one test
 * (caller frees, and removes it); NULL when the machine gives none here,
 * the reason printed: the test then has nothing to check. */
char *check_cgroup_new(const char *name);

/* Make, in the existing folder DIR, a CA (ca.pem, ca.key) and a server
 * certificate it signed for IP 127.0.0.1 (srv.pem, srv.key), with the
 * openssl command; false when it failed. */
bool check_make_certs(const char *dir);

struct Suite;

/* Run every test of S (Check's default fork mode), free it; the exit status
 * of the suite's main: EXIT_SUCCESS when none failed. */
int check_run(struct Suite *s);

#endif
