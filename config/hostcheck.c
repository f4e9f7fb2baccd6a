/*
 * hostcheck: the host conditions of a roster, apart from its parsing. The
 * load (roster.c) is pure — it reads the file and the environment and notes
 * what the roster asks of the host, with where; this pass asks the host:
 * the effective uid and the user database for `user:`/`group:`, and the
 * cgroup hierarchies (common/cgroup.c) for the limits. Only the commands
 * that start bots run it, so a client such as `hive status`, which needs
 * the roster for the listen address only, works for any user.
 */
#include "config/hostcheck.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/util.h"

/* Append "WHERE: MSG" (MSG taken over) to ERRS (which may be NULL). */
static void hostcheck_error(struct roster_errors *errs, const struct roster_need *n, char *msg)
{
    if (errs) {
        errs->items = xrealloc(errs->items, (errs->n + 1) * sizeof *errs->items);
        errs->items[errs->n++] = xasprintf("%s: %s", n->where, msg);
    }
    free(msg);
}

/* A user or a group: hive is root (only root can become another user) and
 * the name exists. The problem, or NULL. */
static char *hostcheck_identity(const struct roster_need *n)
{
    bool user = n->kind == ROSTER_NEED_USER;
    if (geteuid() != 0)
        return xasprintf("'%s' needs hive to run as root (it runs as uid %u)", n->key,
                         (unsigned)geteuid());
    if (user ? getpwnam(n->value) != NULL : getgrnam(n->value) != NULL)
        return NULL;
    return xasprintf("unknown %s %s (no such %s on this host)", n->key, n->shown, n->key);
}

/* A limit: a cgroup we may write offers its controller (v2, or v1 on a
 * hybrid host); refused, not ignored, where none does. The problem, or NULL. */
static char *hostcheck_controller(const struct roster_need *n)
{
    char why[600];
    if (cgroup_limit_api(n->value, NULL, why, sizeof why) != CGROUP_API_NONE)
        return NULL;
    return xasprintf("'%s' cannot be enforced here: no writable cgroup %s controller (%s)", n->key,
                     n->value, why);
}

size_t hostcheck_roster(const struct roster *r, struct roster_errors *errs)
{
    size_t found = 0;
    for (size_t i = 0; r && i < r->n_needs; i++) {
        const struct roster_need *n = &r->needs[i];
        char *problem =
            n->kind == ROSTER_NEED_CGROUP ? hostcheck_controller(n) : hostcheck_identity(n);
        if (!problem)
            continue;
        hostcheck_error(errs, n, problem);
        found++;
    }
    return found;
}
