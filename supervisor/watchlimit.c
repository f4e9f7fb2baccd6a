/*
 * watchlimit: checks, and as root raises, the per-user inotify instance
 * limit before a hive's workers start (see watchlimit.h). The limit counts
 * every process of the user, and we cannot cheaply see how many instances
 * the user's other programs hold, so the bots get their number on top of
 * WATCHLIMIT_HEADROOM (the kernel's default, all a user had before).
 */
#include "supervisor/watchlimit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define WATCHLIMIT_HEADROOM 128

/* The number in the file at PATH, or -1. */
static long watchlimit_read(const char *path)
{
    FILE *f = fopen(path, "re");
    long v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* Write V to the file at PATH; 0 or -1 with errno. */
static int watchlimit_write(const char *path, long v)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    int rc = fprintf(f, "%ld\n", v) < 0 ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

int watchlimit_ensure(const char *path, size_t watching)
{
    long limit = watchlimit_read(path);
    long want = (long)watching + WATCHLIMIT_HEADROOM;
    if (limit < 0 || watching == 0 || limit >= want)
        return 0;
    if (watchlimit_write(path, want) == 0 && watchlimit_read(path) >= want) {
        log_info("raised fs.inotify.max_user_instances from %ld to %ld: one inotify instance for "
                 "each of %zu bots watching their queue, %d for everything else",
                 limit, want, watching, WATCHLIMIT_HEADROOM);
        return 1;
    }
    log_warn("*** fs.inotify.max_user_instances is %ld (cannot raise it: %s) for %zu bots "
             "watching their queue: bots past the limit find file tasks only by the 30 s "
             "rescan (their /status reason says so). As root: sysctl "
             "fs.inotify.max_user_instances=%ld ***",
             limit, strerror(errno), watching, want);
    return -1;
}
