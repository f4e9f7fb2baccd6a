/*
 * cgroup: owns hive's use of the cgroup v2 file interface (see cgroup.h).
 * Only files are read and written; the kernel does the killing. cgroup.kill
 * is used rather than walking cgroup.procs because a walk races with forks
 * and misses processes that move on; the kernel's kill does not.
 */
#include "common/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* The mount point of the cgroup2 file system from /proc/self/mountinfo
 * (caller frees), or NULL. */
static char *cgroup_mount_point(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    char line[4096], *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        /* id parent major:minor root mount-point options... - fstype ... */
        char mnt[PATH_MAX];
        const char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
            continue;
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && !strchr(mnt, '\\'))
            found = xstrdup(mnt);
    }
    fclose(f);
    return found;
}

/* The "0::" path of /proc/self/cgroup (caller frees), or NULL. */
static char *cgroup_self_path(void)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return NULL;
    char line[4096], *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::/", 4) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        /* A cgroup removed under us reads "/path (deleted)". */
        if (!strstr(line, " (deleted)"))
            found = xstrdup(line + 3);
    }
    fclose(f);
    return found;
}

/* The directory of our own cgroup v2 (see cgroup.h). */
char *cgroup_self_dir(char *err, size_t errlen)
{
    char *mnt = cgroup_mount_point();
    if (!mnt) {
        snprintf(err, errlen, "no cgroup2 file system is mounted");
        return NULL;
    }
    char *path = cgroup_self_path();
    if (!path) {
        snprintf(err, errlen, "this process has no cgroup v2 (no 0:: line in /proc/self/cgroup)");
        free(mnt);
        return NULL;
    }
    char *dir = xasprintf("%s%s", mnt, strcmp(path, "/") == 0 ? "" : path);
    free(mnt);
    free(path);
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a usable directory", dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* Write the NUL-terminated TEXT to the file NAME of cgroup DIR; -1 with errno. */
static int cgroup_write(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

/* Make the cgroup DIR and check that it can be killed (see cgroup.h). */
int cgroup_make(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot make cgroup %s: %s", dir, strerror(errno));
        return -1;
    }
    char kill_path[PATH_MAX];
    snprintf(kill_path, sizeof kill_path, "%s/cgroup.kill", dir);
    if (access(kill_path, W_OK) < 0) {
        snprintf(err, errlen, "cgroup %s has no writable cgroup.kill (Linux 5.14 or later): %s",
                 dir, strerror(errno));
        int saved = errno;
        rmdir(dir);
        errno = saved;
        return -1;
    }
    return 0;
}

/* Move PID into DIR. */
int cgroup_enter(const char *dir, pid_t pid)
{
    char num[24];
    snprintf(num, sizeof num, "%d", (int)pid);
    return cgroup_write(dir, "cgroup.procs", num);
}

/* Open DIR's cgroup.procs for a child to write itself into. */
int cgroup_procs_open(const char *dir)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
}

/* Move the caller through the cgroup.procs FD ("0" means the writer). */
int cgroup_enter_fd(int fd)
{
    return write(fd, "0", 1) == 1 ? 0 : -1;
}

/* SIGKILL everything in DIR. */
int cgroup_kill(const char *dir)
{
    return cgroup_write(dir, "cgroup.kill", "1");
}

/* True when DIR still holds a process ("populated 1" in cgroup.events). */
bool cgroup_populated(const char *dir)
{
    char path[PATH_MAX], line[128];
    snprintf(path, sizeof path, "%s/cgroup.events", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool populated = false;
    while (fgets(line, sizeof line, f))
        if (strcmp(line, "populated 1\n") == 0)
            populated = true;
    fclose(f);
    return populated;
}

/* Remove DIR's sub-cgroups, deepest first, then DIR itself. */
static int cgroup_rmdir_tree(const char *dir, int depth)
{
    DIR *d = depth < 32 ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            char *sub = xasprintf("%s/%s", dir, e->d_name);
            cgroup_rmdir_tree(sub, depth + 1);
            free(sub);
        }
        closedir(d);
    }
    return rmdir(dir) < 0 && errno != ENOENT ? -1 : 0;
}

/* Kill, wait for, and remove DIR (see cgroup.h). */
int cgroup_remove(const char *dir, int wait_ms)
{
    if (cgroup_kill(dir) < 0 && errno == ENOENT)
        return 0;
    int64_t deadline = util_mono_ms() + wait_ms;
    while (cgroup_populated(dir) && util_mono_ms() < deadline) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return cgroup_rmdir_tree(dir, 0);
}

/* Remove what of DIR is empty (see cgroup.h). */
int cgroup_prune(const char *dir)
{
    return cgroup_rmdir_tree(dir, 0);
}

#define CGROUP_OWNER_XATTR "user.hive.owner"

/* The start time of process PID (clock ticks after boot), or 0 when there
 * is no such process (or it cannot be read). */
static unsigned long long cgroup_start_time(pid_t pid)
{
    unsigned long long start;
    return util_proc_stat(pid, NULL, &start) == 0 ? start : 0;
}

/* Mark DIR as ours (see cgroup.h). Without our start time (no descriptor
 * to read it with, say) nothing is recorded: a later sweep would take us
 * for a dead owner while we run. */
void cgroup_own(const char *dir)
{
    char owner[64];
    pid_t self = getpid();
    unsigned long long start = cgroup_start_time(self);
    if (start == 0)
        return;
    int n = snprintf(owner, sizeof owner, "%d %llu", (int)self, start);
    setxattr(dir, CGROUP_OWNER_XATTR, owner, (size_t)n, 0);
}

/* True when DIR has an owner recorded and it no longer runs. */
static bool cgroup_owner_gone(const char *dir)
{
    char owner[64];
    ssize_t n = getxattr(dir, CGROUP_OWNER_XATTR, owner, sizeof owner - 1);
    if (n <= 0)
        return false;
    owner[n] = '\0';
    int pid;
    unsigned long long start;
    if (sscanf(owner, "%d %llu", &pid, &start) != 2 || pid <= 0)
        return false;
    return cgroup_start_time(pid) != start;
}

/* Remove what dead owners left under PARENT (see cgroup.h). */
size_t cgroup_sweep(const char *parent, const char *prefix, const char *skip)
{
    DIR *d = opendir(parent);
    if (!d)
        return 0;
    size_t removed = 0, plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || strncmp(e->d_name, prefix, plen) != 0)
            continue;
        char *dir = xasprintf("%s/%s", parent, e->d_name);
        if ((!skip || strcmp(dir, skip) != 0) && cgroup_owner_gone(dir) && !cgroup_populated(dir) &&
            cgroup_rmdir_tree(dir, 0) == 0)
            removed++;
        free(dir);
    }
    closedir(d);
    return removed;
}

/* Write TEXT to DIR/NAME (see cgroup.h). */
int cgroup_set(const char *dir, const char *name, const char *text)
{
    return cgroup_write(dir, name, text);
}

/* True when WORDS holds WORD as a whole space-separated word. */
bool cgroup_has_word(const char *words, const char *word)
{
    size_t len = strlen(word);
    for (const char *s = words; (s = strstr(s, word)); s += len)
        if ((s == words || s[-1] == ' ' || s[-1] == ',') &&
            (s[len] == '\0' || s[len] == ' ' || s[len] == ',' || s[len] == '\n'))
            return true;
    return false;
}

/* The first line of DIR/NAME into BUF; false when unreadable. */
static bool cgroup_read_line(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL || (buf[0] = '\0', true);
    fclose(f);
    return ok;
}

/* The number after KEY in DIR/NAME (see cgroup.h). */
long long cgroup_read_key(const char *dir, const char *name, const char *key)
{
    char path[PATH_MAX], line[256];
    size_t len = strlen(key);
    long long value = -1;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0 && line[len] == ' ')
            value = strtoll(line + len + 1, NULL, 10);
    fclose(f);
    return value;
}

/* The mount point of the cgroup v1 hierarchy holding CONTROLLER (caller
 * frees), or NULL. */
static char *cgroup_v1_mount(const char *controller)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    char line[4096], *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        char mnt[PATH_MAX], opts[1024];
        const char *sep = strstr(line, " - ");
        /* " - cgroup <source> <super options>" */
        if (!sep || strncmp(sep + 3, "cgroup ", 7) != 0 ||
            sscanf(sep + 10, "%*s %1023s", opts) != 1)
            continue;
        if (cgroup_has_word(opts, controller) && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
            !strchr(mnt, '\\'))
            found = xstrdup(mnt);
    }
    fclose(f);
    return found;
}

/* Our group's path in the v1 hierarchy of CONTROLLER (caller frees), or NULL. */
static char *cgroup_v1_self_path(const char *controller)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return NULL;
    char line[4096], *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        char *list = strchr(line, ':'), *path = list ? strchr(list + 1, ':') : NULL;
        if (!path)
            continue;
        *path++ = '\0';
        path[strcspn(path, "\n")] = '\0';
        if (cgroup_has_word(list + 1, controller) && path[0] == '/')
            found = xstrdup(path);
    }
    fclose(f);
    return found;
}

/* Our writable v1 group of CONTROLLER (caller frees), or NULL with WHY. */
static char *cgroup_v1_dir(const char *controller, char *why, size_t cap)
{
    char *mnt = cgroup_v1_mount(controller), *path = cgroup_v1_self_path(controller);
    char *dir = NULL;
    if (!mnt || !path)
        snprintf(why, cap, "no cgroup v1 %s hierarchy is mounted", controller);
    else if (access(dir = xasprintf("%s%s", mnt, strcmp(path, "/") ? path : ""), W_OK) < 0) {
        snprintf(why, cap, "cgroup v1 %s: %s is not writable: %s", controller, dir,
                 strerror(errno));
        free(dir);
        dir = NULL;
    }
    free(mnt);
    free(path);
    return dir;
}

/* Where the OOM kills of our memory cgroup are counted (see cgroup.h). */
char *cgroup_self_oom_counter(const char **name)
{
    char *mnt = cgroup_v1_mount("memory"), *path = mnt ? cgroup_v1_self_path("memory") : NULL;
    char *dir = NULL;
    if (mnt && path) {
        dir = xasprintf("%s%s", mnt, strcmp(path, "/") ? path : "");
        *name = "memory.oom_control";
    } else if (!mnt) {
        /* Ours, or the nearest ancestor with the memory controller on (the
         * one whose limit holds us); its count includes its descendants'. */
        char why[256], path_buf[PATH_MAX];
        dir = cgroup_self_dir(why, sizeof why);
        *name = "memory.events";
        while (dir) {
            snprintf(path_buf, sizeof path_buf, "%s/memory.events", dir);
            if (access(path_buf, R_OK) == 0)
                break;
            char *slash = strrchr(dir, '/');
            snprintf(path_buf, sizeof path_buf, "%.*s/cgroup.controllers",
                     slash ? (int)(slash - dir) : 0, dir);
            if (!slash || slash == dir || access(path_buf, R_OK) < 0) {
                free(dir);
                dir = NULL;
            } else {
                *slash = '\0';
            }
        }
    }
    free(mnt);
    free(path);
    return dir;
}

/* Which cgroup version can limit CONTROLLER (see cgroup.h). */
enum cgroup_api cgroup_limit_api(const char *controller, char **v1_dir, char *why, size_t cap)
{
    char v2why[256], v1why[256], line[512];
    char *self = cgroup_self_dir(v2why, sizeof v2why), *v1;
    bool v2 = false;
    if (self) {
        v2 = cgroup_read_line(self, "cgroup.controllers", line, sizeof line) &&
             cgroup_has_word(line, controller);
        char *ctl = xasprintf("%s/cgroup.subtree_control", self);
        if (!v2)
            snprintf(v2why, sizeof v2why, "cgroup v2 %s offers no %s controller", self, controller);
        else if (access(ctl, W_OK) < 0)
            snprintf(v2why, sizeof v2why, "%s is not writable", ctl), v2 = false;
        free(ctl);
        free(self);
    }
    if (v2)
        return CGROUP_API_V2;
    if ((v1 = cgroup_v1_dir(controller, v1why, sizeof v1why))) {
        if (v1_dir)
            *v1_dir = v1;
        else
            free(v1);
        return CGROUP_API_V1;
    }
    snprintf(why, cap, "%s; %s", v2why, v1why);
    return CGROUP_API_NONE;
}
