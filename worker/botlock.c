/*
 * botlock: the lock that keeps a second worker away from a bot's folders.
 * Without it a second worker's recovery takes the first one's running task
 * (the file in _active/) for a crashed one and runs it again: two answers.
 *
 * flock(2) rather than a pidfile: the kernel releases it when the holder
 * dies, however it dies, so a worker restarted after a SIGKILL takes it at
 * once and no stale file ever needs judging. The descriptor is close-on-exec:
 * adapters (and their descendants) never hold it, so a leftover adapter
 * cannot keep the next worker out.
 */
#include "worker/botlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define BOTLOCK_READ_TRIES 20 /* the holder writes its pid just after flock */

/* The pid written in the lock file FD, or 0 when there is none (yet). */
static pid_t botlock_read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? (pid_t)pid : 0;
}

/* The holder's pid, waiting a little for it to be written. */
static pid_t botlock_holder(int fd)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    for (int i = 0; i < BOTLOCK_READ_TRIES; i++) {
        pid_t pid = botlock_read_pid(fd);
        if (pid > 0)
            return pid;
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Write our pid into the lock file FD (a hint for whom it refuses). */
static void botlock_write_pid(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0) {
        ssize_t unused = pwrite(fd, buf, (size_t)n, 0);
        (void)unused;
    }
}

/* True when FD is still the file at PATH (not unlinked or replaced while we
 * waited: a lock on a file nobody else can open keeps nobody out). */
static int botlock_same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int botlock_take(const char *work_dir, const char *bot_id, pid_t *holder, char *err, size_t errlen)
{
    char *dir = xasprintf("%s/.deia/hive/locks", work_dir);
    char *path = xasprintf("%s/%s.lock", dir, bot_id);
    int fd = -1;
    *holder = 0;
    if (util_mkdirs(dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    for (int tries = 0; tries < 3 && fd < 0; tries++) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            goto out;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int saved = errno;
            if (saved == EWOULDBLOCK)
                *holder = botlock_holder(fd);
            if (*holder > 0)
                snprintf(err, errlen,
                         "bot %s is already served in this work dir by pid %ld (it holds %s)",
                         bot_id, (long)*holder, path);
            else if (saved == EWOULDBLOCK)
                snprintf(err, errlen, "bot %s is already served in this work dir (%s is held)",
                         bot_id, path);
            else
                snprintf(err, errlen, "cannot lock %s: %s", path, strerror(saved));
            close(fd);
            fd = -1;
            goto out;
        }
        if (!botlock_same_file(fd, path)) { /* replaced under us: lock the new one */
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        snprintf(err, errlen, "cannot lock %s: it keeps being replaced", path);
    else
        botlock_write_pid(fd);
out:
    free(dir);
    free(path);
    return fd;
}
