/*
 * contain: owns the process containment of a worker's tasks (see contain.h).
 *
 * cgroup mode: the worker makes "hive-<LABEL>-<pid>" under its own cgroup
 * (under the supervisor's bot cgroup when supervised, so the supervisor's
 * cgroup.kill reaches it too) and "job-<n>" in it per task; the child moves
 * itself in between fork and exec, so nothing it forks is ever outside. A
 * task ends with cgroup.kill of its job cgroup, which reaches setsid and
 * double-forked descendants alike.
 *
 * subreaper mode: PR_SET_CHILD_SUBREAPER makes every orphan of a task the
 * worker's child. At a task's end every child that is not another running
 * task's first process is killed with everything under it, and reaped. The
 * worker's only children are adapter processes, and it runs one task at a
 * time: an orphan cannot be told apart by task, so the end of one task ends
 * every orphan there is.
 *
 * The record (one file) lets the next start clean up after a worker that
 * was killed: "cgroup DIR" lines are killed and removed, "task PGID ID"
 * lines end every process whose environment carries HIVE_BOT_ID=LABEL and
 * HIVE_TASK_ID=ID (the adapter sets both; they survive setsid and daemon
 * forks) or that still is in process group PGID with HIVE_BOT_ID=LABEL.
 */
#include "worker/contain.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/util.h"

#define CONTAIN_REMOVE_WAIT_MS 200
#define CONTAIN_SWEEP_PASSES 50
#define CONTAIN_ENV_MAX (256 * 1024)

struct contain_job {
    char *dir; /* its cgroup; NULL without */
    int procs_fd;
    int dir_fd; /* DIR's folder, for a child started inside (clone3) */
    pid_t pid;
    char *task_id;
    long long oom_before; /* OOM kills counted before it started; -1 unknown */
    struct contain_job *next;
};

/* One process as /proc shows it. */
struct contain_proc {
    pid_t pid, ppid, pgid;
    char state;
};

static struct {
    enum contain_mode mode;
    char *record;
    char *label;
    char *dir;     /* cgroup mode: the parent of the job cgroups */
    bool recorded; /* the record was written by this run (so it exists) */
    unsigned long next_job;
    struct contain_job *jobs;
    /* Where our memory cgroup counts OOM kills: looked up at the first
     * task, not at start (a thousand workers start at once). */
    bool oom_looked_up;
    char *oom_dir;
    const char *oom_file;
} contain;

/* ---- /proc ----------------------------------------------------------------- */

/* Read /proc/PID/stat into P; false when the process is gone. */
static bool contain_proc_read(pid_t pid, struct contain_proc *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    if (util_proc_stat_ids(buf, &p->state, &p->ppid, &p->pgid) < 0)
        return false;
    p->pid = pid;
    return true;
}

/* Every process of the system into *OUT (caller frees); the count. */
static size_t contain_proc_list(struct contain_proc **out)
{
    size_t n = 0, cap = 256;
    struct contain_proc *v = xmalloc(cap * sizeof *v);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (n == cap)
            v = xrealloc(v, (cap *= 2) * sizeof *v);
        if (contain_proc_read((pid_t)atoi(e->d_name), &v[n]))
            n++;
    }
    if (d)
        closedir(d);
    *out = v;
    return n;
}

/* SIGKILL every descendant of ROOT in the snapshot V (ROOT too when
 * WITH_ROOT); the number of live ones signalled. */
static size_t contain_kill_tree(const struct contain_proc *v, size_t n, pid_t root, bool with_root)
{
    size_t killed = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].ppid != root || v[i].pid == root)
            continue;
        killed += contain_kill_tree(v, n, v[i].pid, true);
    }
    if (with_root) {
        for (size_t i = 0; i < n; i++)
            if (v[i].pid == root && v[i].state != 'Z' && kill(root, SIGKILL) == 0)
                killed++;
    }
    return killed;
}

/* True when PID is the first process of a task other than SELF. */
static bool contain_is_other_job(pid_t pid, const struct contain_job *self)
{
    for (const struct contain_job *j = contain.jobs; j; j = j->next)
        if (j != self && j->pid == pid)
            return true;
    return false;
}

/* One pass of the subreaper sweep for SELF (NULL: every task): kill each
 * child of ours that is no other task's first process, with everything
 * under it, and reap those that are not a task's. Live processes left. */
static size_t contain_sweep_pass(const struct contain_job *self, bool all)
{
    struct contain_proc *v;
    size_t n = contain_proc_list(&v), live = 0;
    pid_t me = getpid();
    for (size_t i = 0; i < n; i++) {
        if (v[i].ppid != me || (!all && contain_is_other_job(v[i].pid, self)))
            continue;
        live += contain_kill_tree(v, n, v[i].pid, true);
        bool task_leader = self && v[i].pid == self->pid;
        if (!task_leader && !contain_is_other_job(v[i].pid, NULL))
            waitpid(v[i].pid, NULL, WNOHANG);
    }
    free(v);
    return live;
}

/* The subreaper sweep: passes until nothing of ours is left alive (killed
 * processes take a moment to die and to hand their children to us). */
static void contain_sweep(const struct contain_job *self, bool all)
{
    for (int i = 0; i < CONTAIN_SWEEP_PASSES; i++) {
        if (contain_sweep_pass(self, all) == 0)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

/* True when the environment of PID holds every one of the N entries. */
static bool contain_env_has(pid_t pid, const char *const *entries, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char *buf = xmalloc(CONTAIN_ENV_MAX + 1);
    ssize_t len = read(fd, buf, CONTAIN_ENV_MAX);
    close(fd);
    size_t found = 0;
    for (ssize_t off = 0; len > 0 && off < len; off += (ssize_t)strlen(buf + off) + 1) {
        buf[len] = '\0';
        for (size_t i = 0; i < n; i++)
            if (strcmp(buf + off, entries[i]) == 0)
                found |= (size_t)1 << i;
    }
    free(buf);
    return found == ((size_t)1 << n) - 1;
}

/* End every process of the task TASK_ID (process group PGID) of an earlier
 * run of this bot. */
static void contain_end_leftover_task(pid_t pgid, const char *task_id)
{
    char *bot = xasprintf("HIVE_BOT_ID=%s", contain.label);
    char *task = xasprintf("HIVE_TASK_ID=%s", task_id);
    const char *both[] = {bot, task};
    struct contain_proc *v;
    size_t n = contain_proc_list(&v);
    pid_t me = getpid();
    for (size_t i = 0; i < n; i++) {
        if (v[i].pid == me || v[i].state == 'Z')
            continue;
        bool in_group = pgid > 1 && v[i].pgid == pgid && contain_env_has(v[i].pid, both, 1);
        if (in_group || contain_env_has(v[i].pid, both, 2))
            kill(v[i].pid, SIGKILL);
    }
    free(v);
    free(bot);
    free(task);
}

/* ---- the record ------------------------------------------------------------ */

/* The directory of the record, opened without following a link (-1 when it
 * is not a real directory; with MAKE, made when missing), and the record's
 * name in it in *NAME. */
static int contain_record_dir(const char **name, bool make)
{
    const char *slash = strrchr(contain.record, '/');
    *name = slash ? slash + 1 : contain.record;
    char *dir = slash ? xstrndup(contain.record, (size_t)(slash - contain.record)) : xstrdup(".");
    const char *path = dir[0] ? dir : "/";
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && make && mkdir(path, 0755) == 0)
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    free(dir);
    return fd;
}

/* True when DIR may be a cgroup this module made: "hive-" named, no "..". */
static bool contain_cgroup_name_ok(const char *dir)
{
    const char *base = strrchr(dir, '/');
    return dir[0] == '/' && !strstr(dir, "/..") && base && strncmp(base + 1, "hive-", 5) == 0;
}

/* End whatever the record of an earlier run lists: its whole lines up to
 * the line "end" (all of them in a record of an older worker, which had
 * none; a cut line is never acted on). */
static void contain_record_replay(void)
{
    const char *name;
    int dfd = contain_record_dir(&name, false);
    int fd = dfd < 0 ? -1 : openat(dfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (dfd >= 0)
        close(dfd);
    struct stat st;
    FILE *f = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char line[PATH_MAX + 128], arg[PATH_MAX];
    int pgid;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        if (line[len] != '\n' || strcmp(line, "end\n") == 0)
            break;
        line[len] = '\0';
        if (strncmp(line, "cgroup /", 8) == 0 && contain_cgroup_name_ok(line + 7))
            cgroup_remove(line + 7, CONTAIN_REMOVE_WAIT_MS);
        else if (sscanf(line, "task %d %4095s", &pgid, arg) == 2)
            contain_end_leftover_task((pid_t)pgid, arg);
    }
    fclose(f);
}

/* The record, opened for writing in place: the same file from one start to
 * the next, so that a start creates no inode (on an ext4 without a journal
 * each new one scans the recently deleted ones: ~0.3 ms of a worker's 1.9 ms
 * start, measured with perf across 1,000 starts). Never written through a
 * link: anything but a plain file with one name (a symlink, a FIFO, a hard
 * link to elsewhere) is replaced by a new file. Made when missing only with
 * MAKE. -1 when none can be had (or none is there). */
static int contain_record_open(int dfd, const char *name, bool make)
{
    int fd = openat(dfd, name,
                    O_WRONLY | (make ? O_CREAT : 0) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT)
        return -1;
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1)
        return fd;
    if (fd >= 0)
        close(fd);
    if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
        return -1;
    return openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
}

/* Write the record of what runs now, ended by a line "end". One write at
 * offset 0 of a few hundred bytes, then the truncation to its length: a
 * kill between the two leaves the old record's tail after "end", which the
 * replay never reads. Best effort: the record only helps the next start,
 * and is about processes, which a power cut ends anyway. Without MAKE a
 * missing record is not made: until a task's process is about to run there
 * is nothing in it that the next start needs (a leftover empty cgroup is
 * swept by its owner's death, cgroup_sweep), and a first start then makes
 * no inode for it (nor its folder). */
static void contain_record_write(bool make)
{
    if (!contain.record)
        return;
    struct util_buf b = {0};
    util_buf_add(&b, "", 0);
    char *line = contain.dir ? xasprintf("cgroup %s\n", contain.dir) : NULL;
    if (line)
        util_buf_add(&b, line, strlen(line));
    free(line);
    for (struct contain_job *j = contain.jobs; j && !contain.dir; j = j->next) {
        if (j->pid <= 0)
            continue;
        line = xasprintf("task %d %s\n", (int)j->pid, j->task_id);
        util_buf_add(&b, line, strlen(line));
        free(line);
    }
    util_buf_add(&b, "end\n", 4);
    const char *name;
    int dfd = contain_record_dir(&name, make);
    int fd = dfd >= 0 ? contain_record_open(dfd, name, make) : -1;
    if (fd >= 0) {
        contain.recorded = true;
        bool whole = pwrite(fd, b.data, b.len, 0) == (ssize_t)b.len;
        if (whole && ftruncate(fd, (off_t)b.len) < 0) {
            /* still good: what follows "end" is never read */
        }
        close(fd);
    }
    if (dfd >= 0)
        close(dfd);
    free(b.data);
}

/* ---- the mechanism --------------------------------------------------------- */

/* Try cgroup mode: our own cgroup v2 and a killable child of it. */
static bool contain_try_cgroup(char *why, size_t whylen)
{
    const char *force = getenv("HIVE_CONTAIN");
    if (force && strcmp(force, "subreaper") == 0) {
        snprintf(why, whylen, "HIVE_CONTAIN=subreaper");
        return false;
    }
    char *self = cgroup_self_dir(why, whylen);
    if (!self)
        return false;
    char *dir = xasprintf("%s/hive-%s-%d", self, contain.label, (int)getpid());
    if (cgroup_make(dir, why, whylen) < 0) {
        free(dir);
        free(self);
        return false;
    }
    /* Ours while we run: if we are killed, the next start of this bot ends
     * it (the record), and a `hive up` beside it removes it once empty. */
    cgroup_own(dir);
    free(self);
    contain.dir = dir;
    return true;
}

/* Choose the mechanism and end what the record lists (see contain.h). */
enum contain_mode contain_init(const char *record, const char *label, char *desc, size_t desclen)
{
    contain_shutdown();
    contain.record = record ? xstrdup(record) : NULL;
    contain.label = xstrdup(label && *label ? label : "worker");
    if (contain.record)
        contain_record_replay();
    char why[512] = "";
    if (contain_try_cgroup(why, sizeof why)) {
        contain.mode = CONTAIN_CGROUP;
        snprintf(desc, desclen, "cgroup v2: each task in a cgroup under %s, ended by cgroup.kill",
                 contain.dir);
    } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) == 0) {
        contain.mode = CONTAIN_SUBREAPER;
        snprintf(desc, desclen,
                 "no usable cgroup v2 (%s); fallback: child subreaper, orphans of a task swept "
                 "at its end, leftovers of a killed worker ended at the next start",
                 why);
    } else {
        contain.mode = CONTAIN_GROUP_ONLY;
        snprintf(desc, desclen,
                 "no usable cgroup v2 (%s) and no child subreaper (%s); only each task's "
                 "process group is killed",
                 why, strerror(errno));
    }
    contain_record_write(false); /* in place when there is one; else at the first task */
    return contain.mode;
}

/* The mode in force. */
enum contain_mode contain_mode(void)
{
    return contain.mode;
}

/* Kill every process of every task now. */
void contain_kill_all(void)
{
    if (contain.mode == CONTAIN_CGROUP)
        cgroup_kill(contain.dir);
    else if (contain.mode == CONTAIN_SUBREAPER)
        contain_sweep(NULL, true);
    for (struct contain_job *j = contain.jobs; j; j = j->next)
        if (j->pid > 0)
            kill(-j->pid, SIGKILL);
}

/* Kill everything, remove the cgroup and the record. */
void contain_shutdown(void)
{
    if (contain.jobs || contain.dir)
        contain_kill_all();
    while (contain.jobs)
        contain_job_free(contain.jobs);
    if (contain.dir)
        cgroup_remove(contain.dir, CONTAIN_REMOVE_WAIT_MS);
    if (contain.record) { /* emptied, kept for the next start (contain_record_open) */
        const char *name;
        int dfd = contain_record_dir(&name, false);
        int fd = dfd >= 0 ? contain_record_open(dfd, name, false) : -1;
        if (fd >= 0) {
            if (ftruncate(fd, 0) < 0)
                unlinkat(dfd, name, 0);
            close(fd);
        }
        if (dfd >= 0)
            close(dfd);
    }
    free(contain.dir);
    free(contain.record);
    free(contain.label);
    free(contain.oom_dir);
    memset(&contain, 0, sizeof contain);
}

/* ---- one task -------------------------------------------------------------- */

/* The OOM kills our memory cgroup has counted; -1 when unknown. */
static long long contain_oom_kills(void)
{
    if (!contain.oom_looked_up) {
        contain.oom_looked_up = true;
        contain.oom_dir = cgroup_self_oom_counter(&contain.oom_file);
    }
    return contain.oom_dir ? cgroup_read_key(contain.oom_dir, contain.oom_file, "oom_kill") : -1;
}

/* Prepare the containment of a task about to start. */
struct contain_job *contain_job_new(const char *task_id)
{
    struct contain_job *job = xcalloc(1, sizeof *job);
    job->procs_fd = job->dir_fd = -1;
    job->oom_before = contain_oom_kills();
    job->task_id = xstrdup(task_id && *task_id ? task_id : "-");
    if (contain.mode == CONTAIN_CGROUP) {
        if (!contain.recorded) /* before anything runs in our cgroup */
            contain_record_write(true);
        job->dir = xasprintf("%s/job-%lu", contain.dir, ++contain.next_job);
        if (mkdir(job->dir, 0755) < 0 || (job->procs_fd = cgroup_procs_open(job->dir)) < 0 ||
            (job->dir_fd = open(job->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            int saved = errno;
            if (job->procs_fd >= 0)
                close(job->procs_fd);
            rmdir(job->dir);
            free(job->dir);
            free(job->task_id);
            free(job);
            errno = saved;
            return NULL;
        }
    }
    job->next = contain.jobs;
    contain.jobs = job;
    return job;
}

/* The descriptor the child writes itself into; -1 without a cgroup. */
int contain_job_fd(const struct contain_job *job)
{
    return job ? job->procs_fd : -1;
}

/* The task's cgroup's folder, for a child started inside; -1 without. */
int contain_job_dir_fd(const struct contain_job *job)
{
    return job ? job->dir_fd : -1;
}

/* True when the OOM killer killed a process of our memory cgroup since
 * JOB started: its processes and the worker are all there is in it. */
bool contain_job_oom_killed(const struct contain_job *job)
{
    return job && job->oom_before >= 0 && contain_oom_kills() > job->oom_before;
}

/* The task's first process runs: record it. */
void contain_job_started(struct contain_job *job, pid_t pid)
{
    if (!job)
        return;
    job->pid = pid;
    if (job->procs_fd >= 0)
        close(job->procs_fd);
    if (job->dir_fd >= 0)
        close(job->dir_fd);
    job->procs_fd = job->dir_fd = -1;
    if (!contain.dir)
        contain_record_write(true);
}

/* Kill every process of the task. */
void contain_job_kill(struct contain_job *job)
{
    if (!job)
        return;
    if (job->dir)
        cgroup_kill(job->dir);
    else if (contain.mode == CONTAIN_SUBREAPER)
        contain_sweep(job, false);
}

/* Kill what is left, remove the task's cgroup, forget it. */
void contain_job_free(struct contain_job *job)
{
    if (!job)
        return;
    if (job->dir)
        cgroup_remove(job->dir, CONTAIN_REMOVE_WAIT_MS);
    else if (contain.mode == CONTAIN_SUBREAPER)
        contain_sweep(job, false);
    if (job->procs_fd >= 0)
        close(job->procs_fd);
    if (job->dir_fd >= 0)
        close(job->dir_fd);
    for (struct contain_job **p = &contain.jobs; *p; p = &(*p)->next) {
        if (*p == job) {
            *p = job->next;
            break;
        }
    }
    bool recorded = job->pid > 0 && !contain.dir;
    free(job->dir);
    free(job->task_id);
    free(job);
    if (recorded)
        contain_record_write(true);
}
