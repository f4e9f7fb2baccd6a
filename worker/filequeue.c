/*
 * filequeue: owns the inotify watch of a bot's queue and controls folders and
 * the ordered set of ready file tasks. No polling loop: inotify says when to
 * look; the slow rescan only catches what inotify could not (overflow, a
 * folder replaced under us). The inotify instance may come from a previous
 * run of the bot (kept in the supervisor's fd store), so events are trusted
 * only for the watches added here.
 *
 * The first scan only lists the folder: a bot restarted with 100,000 queued
 * files must say READY=1 and serve at once, not after reading each of them
 * (~18 us a file). Their headers (id, priority) are read after READY, a
 * slice per loop pass; no file task is handed out until all are read, so the
 * first one is the first in SPEC 2.1's order, as when all were read before.
 */
#include "worker/filequeue.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/queue.h"
#include "worker/taskfile.h"

/* Read at most this many buffers of stale events from an inherited instance. */
#define FILEQUEUE_STALE_READS 256
/* Queued files whose headers are read per loop pass while indexing. */
#define FILEQUEUE_INDEX_SLICE 256
/* The safety-net rescan when none is given: without a reliable watch it is
 * what sees new files; with one, inotify does, and the rescan only guards
 * against what it could miss. An idle bot wakes for nothing else, and at a
 * thousand bots those wake-ups (a directory read costs ~350 us on a
 * paravirtualised machine) were most of an idle hive's CPU. */
#define FILEQUEUE_RESCAN_UNWATCHED_S 30.0
#define FILEQUEUE_RESCAN_WATCHED_S 300.0

struct filequeue {
    const struct store_paths *paths;
    char *bot_id;
    bool watch_queue; /* false: only the controls folder (websocket-only) */
    int64_t min_age_ns;
    struct queue *ready;
    int inotify_fd;
    int queue_wd;
    int controls_wd;
    struct event *inotify_ev;
    struct event *rescan_ev;  /* periodic safety net */
    double rescan_s;          /* its period as given, or 0: chosen by the watch */
    double rescan_now_s;      /* the period it is armed with */
    struct event *recheck_ev; /* a young file becomes old enough */
    filequeue_cb cb;
    void *arg;
    struct queue *strange; /* names that are not regular files, warned of once */
    filequeue_name_cb not_regular;
    filequeue_task_cb seen;
    void *hook_arg;
    bool listed;       /* the first scan listed the folder */
    char **backlog;    /* names listed by it, not yet read (indexing) */
    size_t n_backlog;  /* how many names */
    size_t backlog_at; /* the next one to read */
    struct event *index_ev;
};

/* True for names in the queue folder that are tasks. */
static bool filequeue_is_task_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".md") == 0;
}

/* Read a ready file's id and priority to place it; the full parse happens at
 * claim time. NULL when it cannot be read now (tried again later). */
static struct task *filequeue_load(struct filequeue *fq, const char *name, const struct stat *st)
{
    char *path = xasprintf("%s/%s", fq->paths->queue, name);
    size_t len;
    char *text = store_read_regular(path, &len);
    free(path);
    if (!text && store_transient(errno))
        return NULL;
    char *stem = xstrndup(name, strlen(name) - 3);
    char *id = task_id_from_stem(stem);
    struct task *t = task_new(id, TASK_SOURCE_FILE);
    free(id);
    t->file_name = xstrdup(name);
    t->order = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    t->rank = 10;
    t->from = xstrdup("unknown");
    struct taskfile tf;
    char err[200];
    if (text && taskfile_parse(text, len, stem, fq->bot_id, &tf, err, sizeof err) == 0) {
        free(t->id);
        t->id = xstrdup(tf.task_id);
        t->rank = tf.priority_rank;
        taskfile_clear(&tf);
    }
    free(stem);
    free(text);
    return t;
}

/* NAME is not a regular file: never opened, reported once. */
void filequeue_not_regular(struct filequeue *fq, const char *name)
{
    if (queue_find(fq->strange, name))
        return;
    queue_push(fq->strange, name, 0, 0, NULL);
    if (fq->not_regular)
        fq->not_regular(name, fq->hook_arg);
}

/* Queue NAME if it is a complete task file; MOVED says it was renamed in. */
static void filequeue_consider(struct filequeue *fq, const char *name, bool moved, bool *young)
{
    if (!filequeue_is_task_name(name) || queue_find(fq->ready, name))
        return;
    char *path = xasprintf("%s/%s", fq->paths->queue, name);
    struct stat st;
    int r = lstat(path, &st); /* a link is not followed: its target is no task */
    int err = errno;
    free(path);
    if (r < 0) {
        if (store_transient(err))
            *young = true; /* look again soon */
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        filequeue_not_regular(fq, name);
        return;
    }
    free(queue_remove(fq->strange, name)); /* a regular file now: warn again if it changes */
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (!moved && util_wall_ns() - mtime < fq->min_age_ns) {
        *young = true;
        return;
    }
    struct task *t = filequeue_load(fq, name, &st);
    if (!t) {
        *young = true; /* cannot be read now: look again soon */
        return;
    }
    queue_push(fq->ready, name, t->rank, t->order, t);
    if (fq->seen)
        fq->seen(t, fq->hook_arg);
}

/* True when the file system of PATH is one whose changes made elsewhere
 * inotify does not see (network and user-space file systems, as coreutils'
 * tail decides whether it may trust inotify). */
static bool filequeue_remote_fs(const char *path)
{
    static const unsigned long remote[] = {
        0x6969,     /* NFS */
        0x517B,     /* SMB */
        0xFF534D42, /* CIFS */
        0xFE534D42, /* SMB2 */
        0x73757245, /* Coda */
        0x5346414F, /* AFS */
        0x6B414653, /* kAFS */
        0x01021997, /* 9p */
        0x65735546, /* FUSE (sshfs and the like) */
        0x00C36400, /* Ceph */
        0x01161970, /* GFS2 */
        0x7461636F, /* OCFS2 */
        0x0BD00BD0, /* Lustre */
        0x47504653, /* GPFS */
        0xAAD7AAEA, /* PanFS */
        0x786F4256, /* VirtualBox shared folders */
        0x564C,     /* NCP */
    };
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return false;
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++)
        if ((unsigned long)(uint32_t)sf.f_type == remote[i])
            return true;
    return false;
}

/* (Re)arm the safety-net rescan for the watch as it now is. */
static void filequeue_arm_rescan(struct filequeue *fq)
{
    if (!fq->watch_queue || !fq->rescan_ev)
        return;
    double s = fq->rescan_s;
    const char *why = "--rescan";
    if (s <= 0) {
        bool remote = filequeue_remote_fs(fq->paths->queue);
        s = fq->queue_wd >= 0 && !remote ? FILEQUEUE_RESCAN_WATCHED_S
                                         : FILEQUEUE_RESCAN_UNWATCHED_S;
        why = fq->queue_wd < 0 ? "no inotify watch"
              : remote         ? "a network file system: inotify misses other machines' writes"
                               : "inotify watches it";
    }
    if (s == fq->rescan_now_s && event_pending(fq->rescan_ev, EV_TIMEOUT, NULL))
        return;
    if (s != fq->rescan_now_s)
        log_info("queue folder: safety-net rescan every %g s (%s)", s, why);
    fq->rescan_now_s = s;
    struct timeval tv = {.tv_sec = (long)s, .tv_usec = (long)((s - (long)s) * 1e6)};
    event_add(fq->rescan_ev, &tv);
}

/* Add the watch of the queue folder. */
static void filequeue_watch_queue(struct filequeue *fq)
{
    if (fq->inotify_fd < 0 || !fq->watch_queue)
        return;
    fq->queue_wd = inotify_add_watch(fq->inotify_fd, fq->paths->queue,
                                     IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_MODIFY |
                                         IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF |
                                         IN_ONLYDIR | IN_DONT_FOLLOW);
    filequeue_arm_rescan(fq);
}

/* Add the watch of the controls folder. */
static void filequeue_watch_controls(struct filequeue *fq)
{
    if (fq->inotify_fd < 0)
        return;
    fq->controls_wd =
        inotify_add_watch(fq->inotify_fd, fq->paths->controls,
                          IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF |
                              IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW);
}

/* The queue folder was removed (or moved away) under the worker: make it
 * again and watch the new one. True when it exists again. */
static bool filequeue_remake(struct filequeue *fq)
{
    if (util_mkdirs(fq->paths->queue) < 0) {
        log_warn("the queue folder %s was removed and cannot be made again: %s", fq->paths->queue,
                 strerror(errno));
        return false;
    }
    log_warn("the queue folder %s was removed; made again", fq->paths->queue);
    if (fq->queue_wd >= 0)
        inotify_rm_watch(fq->inotify_fd, fq->queue_wd);
    fq->queue_wd = -1;
    filequeue_watch_queue(fq);
    return true;
}

/* The controls folder went: make it again and watch it. */
static void filequeue_remake_controls(struct filequeue *fq)
{
    if (util_mkdirs(fq->paths->controls) < 0)
        return;
    log_warn("the controls folder %s was removed; made again", fq->paths->controls);
    if (fq->controls_wd >= 0)
        inotify_rm_watch(fq->inotify_fd, fq->controls_wd);
    fq->controls_wd = -1;
    filequeue_watch_controls(fq);
}

/* The soonest look again after a look that could not be made (no
 * descriptor, no memory): often enough to serve soon after the shortage,
 * seldom enough not to spin through it. */
#define FILEQUEUE_RETRY_NS 100000000

/* Arm the recheck NS from now, unless it is armed already. */
static void filequeue_arm_recheck_in(struct filequeue *fq, int64_t ns)
{
    struct timeval tv = {.tv_sec = ns / 1000000000, .tv_usec = (ns % 1000000000) / 1000};
    if (!evtimer_pending(fq->recheck_ev, NULL))
        evtimer_add(fq->recheck_ev, &tv);
}

/* Arm the recheck for files that are still being written (or that could not
 * be read now). */
static void filequeue_arm_recheck(struct filequeue *fq)
{
    filequeue_arm_recheck_in(fq, fq->min_age_ns + 1000000);
}

/* Arm the recheck after a look that failed for a passing shortage. */
static void filequeue_arm_retry(struct filequeue *fq)
{
    filequeue_arm_recheck_in(fq, fq->min_age_ns > FILEQUEUE_RETRY_NS ? fq->min_age_ns
                                                                     : FILEQUEUE_RETRY_NS);
}

/* True while the names of the first scan are being read. */
static bool filequeue_indexing(const struct filequeue *fq)
{
    return fq->backlog_at < fq->n_backlog;
}

/* The first scan: the task names of D, to be read by filequeue_index_cb. */
static void filequeue_list(struct filequeue *fq, DIR *d)
{
    static const struct timeval now = {0, 0};
    size_t cap = 0;
    struct dirent *e;
    fq->listed = true;
    while ((e = readdir(d))) {
        if (!filequeue_is_task_name(e->d_name))
            continue;
        if (fq->n_backlog == cap) {
            cap = cap ? cap * 2 : 64;
            fq->backlog = xrealloc(fq->backlog, cap * sizeof *fq->backlog);
        }
        fq->backlog[fq->n_backlog++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (fq->n_backlog)
        evtimer_add(fq->index_ev, &now);
}

/* Read up to MAX names of the backlog; the last one done ends the index:
 * what changed meanwhile is looked at in a normal rescan, then the engine
 * hears of the queue. */
static void filequeue_index(struct filequeue *fq, size_t max)
{
    bool young = false;
    for (; max-- && filequeue_indexing(fq); fq->backlog_at++) {
        filequeue_consider(fq, fq->backlog[fq->backlog_at], false, &young);
        free(fq->backlog[fq->backlog_at]);
    }
    if (young)
        filequeue_arm_recheck(fq);
    if (filequeue_indexing(fq))
        return;
    free(fq->backlog);
    fq->backlog = NULL;
    fq->n_backlog = fq->backlog_at = 0;
    filequeue_rescan(fq);
    fq->cb(fq->arg);
}

/* Timer: one slice of the index per loop pass, so the bot serves meanwhile. */
static void filequeue_index_cb(evutil_socket_t fd, short what, void *arg)
{
    static const struct timeval now = {0, 0};
    struct filequeue *fq = arg;
    (void)fd, (void)what;
    filequeue_index(fq, FILEQUEUE_INDEX_SLICE);
    if (filequeue_indexing(fq))
        evtimer_add(fq->index_ev, &now);
}

void filequeue_rescan(struct filequeue *fq)
{
    if (!fq->watch_queue || filequeue_indexing(fq))
        return; /* the index reads what is there; inotify what comes */
    DIR *d = opendir(fq->paths->queue);
    if (!d && errno == ENOENT && filequeue_remake(fq))
        d = opendir(fq->paths->queue);
    if (!d) {
        /* Short of descriptors or memory: look again soon. A young file
         * whose recheck this was (or the first listing) has no inotify
         * event left to bring it back; the safety net is minutes away. */
        if (store_transient(errno))
            filequeue_arm_retry(fq);
        return;
    }
    if (!fq->listed) {
        filequeue_list(fq, d);
        return;
    }
    size_t before = queue_len(fq->ready);
    bool young = false;
    struct dirent *e;
    while ((e = readdir(d)))
        filequeue_consider(fq, e->d_name, false, &young);
    closedir(d);
    if (young)
        filequeue_arm_recheck(fq);
    if (queue_len(fq->ready) != before)
        fq->cb(fq->arg);
}

/* Handle one inotify event. Returns true when the engine should look. */
static bool filequeue_event(struct filequeue *fq, const struct inotify_event *ev, bool *young)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        filequeue_rescan(fq);
        return true; /* events were lost: the PAUSE file may have changed too */
    }
    bool gone = (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) != 0;
    if (ev->wd >= 0 && ev->wd == fq->controls_wd) {
        if (gone)
            filequeue_remake_controls(fq);
        return true; /* controls folder: PAUSE created or removed */
    }
    if (gone && ev->wd >= 0 && ev->wd == fq->queue_wd) {
        if (ev->mask & IN_IGNORED)
            fq->queue_wd = -1; /* the kernel dropped the watch already */
        filequeue_rescan(fq);  /* makes the folder again and watches it */
        filequeue_arm_rescan(fq);
        return true;
    }
    if (ev->wd < 0 || ev->wd != fq->queue_wd) {
        /* A watch an earlier run of the bot added to an inherited instance
         * (not one of ours): stop it. */
        if (ev->wd >= 0 && !(ev->mask & IN_IGNORED))
            inotify_rm_watch(fq->inotify_fd, ev->wd);
        return false;
    }
    if (!ev->len)
        return false;
    if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
        task_free(queue_remove(fq->ready, ev->name));
        queue_remove(fq->strange, ev->name); /* gone: a new one is reported anew */
        return false;
    }
    if (ev->mask & (IN_CREATE | IN_MODIFY)) {
        /* Rewritten in place after it was queued: it must wait again. */
        task_free(queue_remove(fq->ready, ev->name));
        if (filequeue_is_task_name(ev->name))
            *young = true;
        return false;
    }
    if (ev->mask & IN_MOVED_TO) /* renamed over a queued file: look again */
        task_free(queue_remove(fq->ready, ev->name));
    size_t before = queue_len(fq->ready);
    filequeue_consider(fq, ev->name, (ev->mask & IN_MOVED_TO) != 0, young);
    return queue_len(fq->ready) != before;
}

/* Drain the inotify descriptor. */
static void filequeue_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct filequeue *fq = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool notify = false, young = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            notify |= filequeue_event(fq, ev, &young);
            p += sizeof *ev + ev->len;
        }
    }
    if (young)
        filequeue_arm_recheck(fq);
    if (notify)
        fq->cb(fq->arg);
}

/* Timer: rescan (both the periodic one and the young-file recheck). */
static void filequeue_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    filequeue_rescan(arg);
}

int filequeue_inotify_new(void)
{
    return inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
}

/* The instance to use: FD (given, or -1) with its stale events read and
 * dropped, else a new one; -1 with errno when there is none. */
static int filequeue_inotify_take(int fd)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    if (fd < 0)
        return filequeue_inotify_new();
    if (util_set_nonblock_cloexec(fd) < 0) { /* a blocking read would hang the start */
        log_warn("cannot use the inherited inotify instance (%s); making a new one",
                 strerror(errno));
        close(fd);
        return filequeue_inotify_new();
    }
    for (int i = 0; i < FILEQUEUE_STALE_READS && read(fd, buf, sizeof buf) > 0; i++)
        ;
    return fd;
}

/* Add the watches: the queue folder (with WATCH_QUEUE) and the controls. */
static void filequeue_add_watches(struct filequeue *fq)
{
    filequeue_watch_queue(fq);
    filequeue_watch_controls(fq);
}

struct filequeue *filequeue_new(struct event_base *base, const struct store_paths *paths,
                                const char *bot_id, int inotify_fd, bool watch_queue,
                                double min_age_s, double rescan_s, filequeue_cb cb, void *arg)
{
    struct filequeue *fq = xcalloc(1, sizeof *fq);
    fq->paths = paths;
    fq->bot_id = xstrdup(bot_id);
    fq->watch_queue = watch_queue;
    fq->queue_wd = fq->controls_wd = -1;
    fq->min_age_ns = (int64_t)(min_age_s * 1e9);
    fq->ready = queue_new();
    fq->strange = queue_new();
    fq->cb = cb;
    fq->arg = arg;
    fq->inotify_fd = filequeue_inotify_take(inotify_fd);
    if (fq->inotify_fd >= 0) {
        filequeue_add_watches(fq);
        fq->inotify_ev =
            event_new(base, fq->inotify_fd, EV_READ | EV_PERSIST, filequeue_read_cb, fq);
        event_add(fq->inotify_ev, NULL);
    } else {
        log_warn("inotify unavailable (%s); relying on the rescan", strerror(errno));
    }
    fq->rescan_s = rescan_s;
    fq->rescan_ev = event_new(base, -1, EV_PERSIST, filequeue_timer_cb, fq);
    filequeue_arm_rescan(fq);
    fq->recheck_ev = evtimer_new(base, filequeue_timer_cb, fq);
    fq->index_ev = evtimer_new(base, filequeue_index_cb, fq);
    return fq;
}

/* queue_free's payload destructor. */
static void filequeue_free_task(void *t)
{
    task_free(t);
}

void filequeue_free(struct filequeue *fq)
{
    if (!fq)
        return;
    if (fq->inotify_ev)
        event_free(fq->inotify_ev);
    if (fq->inotify_fd >= 0)
        close(fq->inotify_fd);
    event_free(fq->rescan_ev);
    event_free(fq->recheck_ev);
    event_free(fq->index_ev);
    for (size_t i = fq->backlog_at; i < fq->n_backlog; i++)
        free(fq->backlog[i]);
    free(fq->backlog);
    queue_free(fq->ready, filequeue_free_task);
    queue_free(fq->strange, NULL);
    free(fq->bot_id);
    free(fq);
}

/* Nothing is handed out while indexing: the first in order may be unread. */
const struct task *filequeue_peek(const struct filequeue *fq)
{
    return filequeue_indexing(fq) ? NULL : queue_peek(fq->ready);
}

struct task *filequeue_pop(struct filequeue *fq)
{
    return filequeue_indexing(fq) ? NULL : queue_pop(fq->ready);
}

bool filequeue_watching(const struct filequeue *fq)
{
    return fq->inotify_fd >= 0;
}

/* The queued files, read or not yet. */
size_t filequeue_len(const struct filequeue *fq)
{
    return queue_len(fq->ready) + (fq->n_backlog - fq->backlog_at);
}

/* Match a task by id (queue_find_if predicate). */
static bool filequeue_match_id(const void *task, const void *id)
{
    return strcmp(((const struct task *)task)->id, id) == 0;
}

const struct task *filequeue_find(struct filequeue *fq, const char *task_id)
{
    /* A file's id may be in its header: an id asked for while indexing
     * (a realtime task's, which must not share a queued file's) finishes
     * the index first. */
    if (filequeue_indexing(fq))
        filequeue_index(fq, SIZE_MAX);
    /* Queued files are keyed by file name; ids are looked up rarely. */
    return queue_find_if(fq->ready, filequeue_match_id, task_id);
}

struct task *filequeue_take(struct filequeue *fq, const struct task *task)
{
    return queue_remove(fq->ready, task->file_name);
}

void filequeue_set_hooks(struct filequeue *fq, filequeue_name_cb not_regular,
                         filequeue_task_cb seen, void *arg)
{
    fq->not_regular = not_regular;
    fq->seen = seen;
    fq->hook_arg = arg;
}

int64_t filequeue_oldest_ns(const struct filequeue *fq)
{
    return queue_oldest_time(fq->ready);
}
