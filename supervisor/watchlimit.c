/*
 * watchlimit: checks, and as root raises, the per-user inotify instance
 * limit before a hive's workers start (see watchlimit.h). The limit counts
 * every process of the user: the bots get their number on top of what the
 * user's other processes hold now (another hive's workers, say) and
 * WATCHLIMIT_HEADROOM more (the kernel's default, all a user had before).
 * Counting what others hold is a walk of /proc (one readlink per descriptor
 * of the user's processes), done once per `hive up` or reload. Without it,
 * a second hive whose need was under what the first had raised the limit to
 * raised nothing, and its bots found the limit spent: the test suite, which
 * runs several hives at once, saw a bot without a watch.
 */
#include "supervisor/watchlimit.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

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

int watchlimit_ensure(const char *path, size_t watching, size_t in_use)
{
    long limit = watchlimit_read(path);
    long want = (long)watching + (long)in_use + WATCHLIMIT_HEADROOM;
    if (limit < 0 || watching == 0 || limit >= want)
        return 0;
    if (watchlimit_write(path, want) == 0 && watchlimit_read(path) >= want) {
        log_info("raised fs.inotify.max_user_instances from %ld to %ld: one inotify instance for "
                 "each of %zu bots watching their queue, %zu held by other processes, %d for "
                 "everything else",
                 limit, want, watching, in_use, WATCHLIMIT_HEADROOM);
        return 1;
    }
    log_warn("*** fs.inotify.max_user_instances is %ld (cannot raise it: %s) for %zu bots "
             "watching their queue and %zu instances held by other processes: bots past the "
             "limit find file tasks only by the 30 s rescan (their /status reason says so). As "
             "root: sysctl fs.inotify.max_user_instances=%ld ***",
             limit, strerror(errno), watching, in_use, want);
    return -1;
}

/* The inotify instances among the descriptors of process directory PID
 * (under PROC). */
static size_t watchlimit_held(const char *proc, const char *pid)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s/fd", proc, pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* gone, or not ours to look at */
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char link[PATH_MAX], target[32];
        if (snprintf(link, sizeof link, "%s/%s", dir, e->d_name) >= (int)sizeof link)
            continue;
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strcmp(target, "anon_inode:inotify") == 0;
    }
    closedir(d);
    return n;
}

/* The parent of process directory PID (under PROC), or -1. */
static pid_t watchlimit_parent(const char *proc, const char *pid)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/stat", proc, pid);
    char *text = util_read_file(path, 4096, NULL);
    pid_t ppid;
    if (!text || util_proc_stat_ids(text, NULL, &ppid, NULL) < 0)
        ppid = -1;
    free(text);
    return ppid;
}

size_t watchlimit_in_use(const char *proc)
{
    DIR *d = opendir(proc);
    if (!d)
        return 0;
    pid_t self = getpid();
    uid_t uid = geteuid();
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", proc, e->d_name);
        if (stat(path, &st) < 0 || st.st_uid != uid)
            continue;
        size_t held = watchlimit_held(proc, e->d_name);
        if (held && watchlimit_parent(proc, e->d_name) != self)
            n += held;
    }
    closedir(d);
    return n;
}
