/*
 * hostcheck: whether this host can run a loaded roster as it asks — the
 * second pass after roster_load, run by the commands that start bots
 * (`hive check`, `hive up`, the supervisor's reload) and by no client.
 */
#ifndef HIVE_HOSTCHECK_H
#define HIVE_HOSTCHECK_H

#include "config/roster.h"

/* Check every need of R (struct roster_need): `user`/`group` need hive to
 * run as root and to exist; a limit needs a writable cgroup controller.
 * Each problem is appended to ERRS as "file:line:column: message"; returns
 * how many there were (0: the host can run R). */
size_t hostcheck_roster(const struct roster *r, struct roster_errors *errs);

#endif
