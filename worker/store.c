/*
 * store: owns the bot's on-disk layout and the durable steps of a task's
 * life. Every other module sees tasks; only this one sees their files. See
 * store.h for the exactly-once protocol of response files.
 */
#include "worker/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/util.h"
#include "worker/answers.h"
#include "worker/response.h"
#include "worker/taskfile.h"

/* Deaths of a task's worker (while it held the task) that make it poison. */
#define STORE_POISON_DEATHS 3

/* How a realtime task file gets its name (see store_realtime_write). */
enum store_publish {
    STORE_PUBLISH_LINK_EMPTY, /* O_TMPFILE + linkat(AT_EMPTY_PATH) */
    STORE_PUBLISH_LINK_PROC,  /* O_TMPFILE + linkat of /proc/self/fd/N */
    STORE_PUBLISH_RENAME,     /* a named temp file, renamed */
};

struct store {
    struct store_paths paths;
    char *bot_id;
    enum store_publish publish; /* the first that works here, found once */
    struct answers *answers;    /* the index of answered ids */
    /* _active/, _realtime/, _archive/ and the pending folder are made on
     * first use (see store_open): whether this run has made or used each,
     * so that making it again is told as a removal. */
    bool active_used, realtime_used, archive_used, pending_used;
    /* A recovery that a passing shortage left undone (store_recover runs
     * again): what it did already, by "a/" or "r/" and the name in _active/
     * or _realtime/, so that nothing is handed over or counted twice. NULL
     * when no recovery is under way. */
    struct strmap *recovering;
    bool active_listed; /* _active/ was listed once by this recovery */
    bool incomplete;    /* the last pass left something to do again */
    bool warned;        /* ... and said so */
};

/* Marks in store.recovering: a task handed to the callback; a death counted. */
static char store_mark_handed, store_mark_counted;

/* Build the path table for BOT_ID under WORK_DIR. */
static void store_build_paths(struct store_paths *p, const char *work_dir, const char *bot)
{
    p->queue = xasprintf("%s/.deia/hive/tasks/%s", work_dir, bot);
    p->active = xasprintf("%s/_active", p->queue);
    p->archive = xasprintf("%s/_archive", p->queue);
    p->realtime = xasprintf("%s/_realtime", p->queue);
    p->responses = xasprintf("%s/.deia/hive/responses", work_dir);
    p->pending = xasprintf("%s/.pending/%s", p->responses, bot);
    p->controls = xasprintf("%s/.deia/hive/controls", work_dir);
    p->pause = xasprintf("%s/%s-PAUSE", p->controls, bot);
    p->logs = xasprintf("%s/.deia/bot-logs", work_dir);
    p->activity = xasprintf("%s/BOT-%s-activity.jsonl", p->logs, bot);
}

/* Refuse a folder of the layout that is not a real folder (a symlink would
 * take the bot's files, and files written through it, elsewhere). */
static int store_check_dir(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0 || S_ISDIR(st.st_mode))
        return 0; /* made again later when missing */
    snprintf(err, errlen, "%s is %s, not a folder; the worker never follows links in its layout",
             path, S_ISLNK(st.st_mode) ? "a symlink" : "another kind of file");
    return -1;
}

/* Check every folder of the layout, from .deia down. */
static int store_check_layout(struct store *s, const char *work_dir, char *err, size_t errlen)
{
    char *deia = xasprintf("%s/.deia", work_dir), *hive = xasprintf("%s/.deia/hive", work_dir);
    char *tasks = xasprintf("%s/.deia/hive/tasks", work_dir);
    char *pending_all = xasprintf("%s/.pending", s->paths.responses);
    const char *dirs[] = {deia,
                          hive,
                          tasks,
                          s->paths.queue,
                          s->paths.active,
                          s->paths.archive,
                          s->paths.realtime,
                          s->paths.responses,
                          pending_all,
                          s->paths.pending,
                          s->paths.controls,
                          s->paths.logs};
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof dirs / sizeof dirs[0]; i++)
        r = store_check_dir(dirs[i], err, errlen);
    free(deia), free(hive), free(tasks), free(pending_all);
    return r;
}

struct store *store_open(const char *work_dir, const char *bot_id, char *err, size_t errlen)
{
    struct store *s = xcalloc(1, sizeof *s);
    s->bot_id = xstrdup(bot_id);
    store_build_paths(&s->paths, work_dir, bot_id);
    if (store_check_layout(s, work_dir, err, errlen) < 0) {
        store_free(s);
        return NULL;
    }
    /* _active/ and _realtime/ are not made here but by the first claim and
     * the first accepted HTTP or WebSocket task, _archive/ and the pending
     * folder by the first answer (store_made_on_use): nothing needs them
     * before, and on an ext4 without a journal each inode a start makes is
     * slow (a hive's first start makes them for every bot). Absent reads as
     * empty. The queue folder is made: inotify watches it. */
    const char *dirs[] = {s->paths.queue, s->paths.responses, s->paths.controls, s->paths.logs};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (util_mkdirs(dirs[i]) < 0) {
            snprintf(err, errlen, "cannot create %s: %s", dirs[i], strerror(errno));
            store_free(s);
            return NULL;
        }
    }
    s->answers = answers_open(s->paths.responses, bot_id);
    return s;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    char **p = (char **)&s->paths;
    for (size_t i = 0; i < sizeof s->paths / sizeof(char *); i++)
        free(p[i]);
    free(s->bot_id);
    answers_free(s->answers);
    strmap_free(s->recovering);
    free(s);
}

void store_use_named_temp_files(struct store *s)
{
    s->publish = STORE_PUBLISH_RENAME;
}

const struct store_paths *store_paths(const struct store *s)
{
    return &s->paths;
}

struct answers *store_answers(const struct store *s)
{
    return s->answers;
}

/* True when an operation on a path in DIR failed with ENOENT because DIR
 * itself is gone (removed at runtime) and DIR could be made again. */
static bool store_remade(int err, const char *dir)
{
    struct stat st;
    if (err != ENOENT || stat(dir, &st) == 0)
        return false;
    if (util_mkdirs(dir) < 0)
        return false;
    log_warn("%s was removed while the worker ran; made again", dir);
    return true;
}

/* An operation on a path in DIR, a folder made on first use, failed with
 * ERR: make DIR when it is missing, quietly the first time (*USED false),
 * as a removal after that (store_remade). True when it exists now. */
static bool store_made_on_use(int err, const char *dir, bool *used)
{
    if (*used)
        return store_remade(err, dir);
    *used = true;
    struct stat st;
    return err == ENOENT && stat(dir, &st) < 0 && errno == ENOENT && util_mkdirs(dir) == 0;
}

/* Make the missing folder DIR (ERR said so): made on first use when USED
 * is not NULL (store_made_on_use), else made again after a removal. */
static bool store_make_dir(int err, const char *dir, bool *used)
{
    return used ? store_made_on_use(err, dir, used) : store_remade(err, dir);
}

/* rename(SRC, DST), making DST's folder DST_DIR when it is missing (USED:
 * see store_make_dir). 0 or -errno. */
static int store_rename_into(const char *src, const char *dst, const char *dst_dir, bool *used)
{
    int r = rename(src, dst) == 0 ? 0 : -errno;
    if (r < 0 && store_make_dir(-r, dst_dir, used))
        r = rename(src, dst) == 0 ? 0 : -errno;
    if (used)
        *used = true;
    return r;
}

/* Open PATH for reading only if it is a regular file: never through a
 * symlink (O_NOFOLLOW), never blocking on a FIFO or device (O_NONBLOCK,
 * then fstat). -1 with errno (ELOOP, or EINVAL for other kinds). */
static int store_open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISREG(st.st_mode) ? errno : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

char *store_read_regular(const char *path, size_t *len_out)
{
    int fd = store_open_regular(path);
    if (fd < 0)
        return NULL;
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            if (r < 0) {
                free(buf);
                errno = e;
                return NULL;
            }
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

bool store_transient(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOSPC || err == EDQUOT ||
           err == EAGAIN || err == EINTR || err == ENOBUFS;
}

/* Create PATH (in folder DIR, made when it is missing; USED: see
 * store_make_dir) for writing, never through a symlink and never over a
 * file: a leftover of the same name (a temp file of a killed worker, or a
 * link planted there) is removed first. -1 with errno. */
static int store_create(const char *path, const char *dir, bool *used)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0) {
            if (used)
                *used = true;
            return fd;
        }
        if (errno == EEXIST)
            unlink(path); /* removes a link itself, never its target */
        else if (!store_make_dir(errno, dir, used))
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Write LEN bytes to FD entirely. */
static int store_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The JSON text a realtime task is persisted as. */
static char *store_realtime_encode(const struct task *t, size_t *len)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "task_id", t->id, "command", t->content,
                          "priority", t->priority, "from", t->from, "source",
                          task_source_name(t->source), "accepted_ns", (json_int_t)t->order);
    char *s = json_dump_compact(o, len);
    json_decref(o);
    return s;
}

/* Write one realtime task to a file without a name in _realtime/ (no
 * folder entry to add and remove again: in a folder holding thousands of
 * queued tasks each of those is a search), or where O_TMPFILE is not
 * supported to a named temp file TMP. The fd stays open for the sync. */
static int store_realtime_write(struct store *s, struct task *t, char *tmp, size_t cap)
{
    int fd = -1;
    tmp[0] = '\0';
    if (s->publish != STORE_PUBLISH_RENAME) {
        fd = open(s->paths.realtime, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0 && store_make_dir(errno, s->paths.realtime, &s->realtime_used))
            fd = open(s->paths.realtime, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0)
            s->realtime_used = true;
        else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            s->publish = STORE_PUBLISH_RENAME;
        else
            return -1;
    }
    if (fd < 0) {
        /* Ids never start with a dot, so this name is never a task's. */
        snprintf(tmp, cap, "%s/.%s.tmp", s->paths.realtime, t->id);
        fd = store_create(tmp, s->paths.realtime, &s->realtime_used);
        if (fd < 0)
            return -1;
    }
    size_t len;
    char *text = store_realtime_encode(t, &len);
    int r = store_write_all(fd, text, len);
    free(text);
    if (r < 0) {
        int e = errno;
        close(fd);
        if (tmp[0])
            unlink(tmp);
        errno = e;
        return -1;
    }
    return fd;
}

/* Give the file behind FD (from store_realtime_write, TMP its temp name or
 * "") the name DST, replacing what is there as a rename would. */
static int store_realtime_name(struct store *s, int fd, const char *tmp, const char *dst)
{
    if (tmp[0]) {
        int r = rename(tmp, dst);
        if (r < 0)
            unlink(tmp);
        return r;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int r = -1;
        if (s->publish == STORE_PUBLISH_LINK_EMPTY) {
            /* May be refused to a process without CAP_DAC_READ_SEARCH
             * (EPERM on older kernels, ENOENT on some): then by /proc. */
            r = linkat(fd, "", AT_FDCWD, dst, AT_EMPTY_PATH);
            if (r < 0 && (errno == EPERM || errno == ENOENT || errno == EINVAL))
                s->publish = STORE_PUBLISH_LINK_PROC;
        }
        if (r < 0 && s->publish == STORE_PUBLISH_LINK_PROC) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
            r = linkat(AT_FDCWD, proc, AT_FDCWD, dst, AT_SYMLINK_FOLLOW);
        }
        if (r == 0 || errno != EEXIST || attempt > 0)
            return r;
        unlink(dst); /* a stale file of the same id: a rename replaces it */
    }
    return -1;
}

/* The first open descriptor of FDS (the oldest file of a batch), or -1. */
static int store_first_fd(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            return fds[i];
    return -1;
}

int store_sync_batch(const int *fds, size_t n)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++)
        open += fds[i] >= 0;
    int first = store_first_fd(fds, n);
    return first < 0 ? 0 : open == 1 ? fdatasync(first) : syncfs(first);
}

void store_realtime_prepare(struct store *s, struct task *const *tasks, size_t n, int *fds,
                            bool *ok)
{
    char tmp[4200], dst[4200];
    for (size_t i = 0; i < n; i++) {
        fds[i] = store_realtime_write(s, tasks[i], tmp, sizeof tmp);
        snprintf(dst, sizeof dst, "%s/%s.json", s->paths.realtime, tasks[i]->id);
        ok[i] = fds[i] >= 0 && store_realtime_name(s, fds[i], tmp, dst) == 0;
        if (!ok[i])
            log_warn("cannot store task %s: %s", tasks[i]->id, strerror(errno));
    }
}

int store_realtime_sync(const int *fds, size_t n)
{
    /* One syncfs() makes the whole batch durable, data and names: no task
     * is acknowledged before it returns. Without a journal (ext4
     * ^has_journal, as on the bench machine) every fdatasync() is its own
     * device write and cache flush and nothing is shared between those of a
     * batch, and a rename needs one more (the folder's fsync); syncfs()
     * writes back all that is dirty on the file system and flushes the
     * device once (measured: 5-9x the files per second). Since Linux 5.8 it
     * reports writeback errors since its descriptor was opened, which is why
     * the batch's first file is used. It also writes out unrelated dirty
     * data of the same file system, which costs time only when there is
     * much of it (it runs off the event loop). Naming before the sync is
     * safe: a crash before it can leave a task file that was never
     * acknowledged, whole (it then runs, as after a crash between the
     * rename and the ack) or, after a power loss, cut (recovery sets it
     * aside). */
    int first = store_first_fd(fds, n);
    return first < 0 || syncfs(first) == 0 ? 0 : -errno;
}

void store_realtime_settle(struct store *s, struct task *const *tasks, size_t n, const int *fds,
                           int synced, bool *ok)
{
    char dst[4200];
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        snprintf(dst, sizeof dst, "%s/%s.json", s->paths.realtime, tasks[i]->id);
        if (ok[i] && synced < 0) {
            unlink(dst);
            ok[i] = false;
        }
        if (ok[i]) {
            free(tasks[i]->file_name);
            tasks[i]->file_name = xasprintf("%s.json", tasks[i]->id);
        }
    }
}

void store_persist_realtime(struct store *s, struct task *const *tasks, size_t n, bool *ok)
{
    int *fds = xcalloc(n, sizeof *fds);
    store_realtime_prepare(s, tasks, n, fds, ok);
    store_realtime_settle(s, tasks, n, fds, store_realtime_sync(fds, n), ok);
    free(fds);
}

/* Source name back to the enum. */
static enum task_source store_source_parse(const char *name)
{
    if (name && strcmp(name, "websocket") == 0)
        return TASK_SOURCE_WEBSOCKET;
    return TASK_SOURCE_HTTP;
}

struct task *store_load_realtime(struct store *s, const char *dir, const char *name)
{
    (void)s;
    char *path = xasprintf("%s/%s", dir, name);
    size_t len;
    char *text = store_read_regular(path, &len);
    free(path);
    if (!text)
        return NULL;
    json_t *o = json_parse_bytes(text, len, NULL, 0);
    free(text);
    const char *id = json_get_str(o, "task_id"), *cmd = json_get_str(o, "command");
    if (!json_is_object(o) || !task_id_valid(id) || !cmd) {
        json_decref(o);
        errno = EINVAL; /* never a passing error: it will not parse later either */
        return NULL;
    }
    struct task *t = task_new(id, store_source_parse(json_get_str(o, "source")));
    const char *prio = json_get_str(o, "priority"), *from = json_get_str(o, "from");
    t->content = xstrdup(cmd);
    t->priority = xstrdup(prio ? prio : "P0");
    t->rank = taskfile_priority_rank(t->priority);
    t->from = xstrdup(from ? from : "user");
    t->order = (int64_t)json_integer_value(json_object_get(o, "accepted_ns"));
    t->file_name = xstrdup(name);
    json_decref(o);
    return t;
}

/* T's file name without its extension (the default task id). */
static char *store_stem(const struct task *t)
{
    char *stem = xstrdup(t->file_name);
    char *dot = strrchr(stem, '.');
    if (dot)
        *dot = '\0';
    return stem;
}

/* Fill a file task from its parsed text; a task that does not parse keeps
 * the reason in T->parse_error (it is answered failed). 0, or -errno when
 * the file cannot be read now (transient: try again later). */
static int store_parse_claimed(struct task *t, const char *path, const char *bot_id)
{
    size_t len;
    char err[256];
    char *text = store_read_regular(path, &len);
    if (!text && store_transient(errno))
        return -errno;
    free(t->parse_error);
    t->parse_error = NULL;
    if (!text) {
        t->parse_error = xasprintf("cannot read task file: %s", strerror(errno));
        return 0;
    }
    char *stem = store_stem(t);
    struct taskfile tf;
    if (taskfile_parse(text, len, stem, bot_id, &tf, err, sizeof err) < 0) {
        t->parse_error = xasprintf("cannot parse task file: %s", err);
    } else {
        free(t->id), free(t->from), free(t->to), free(t->priority), free(t->content);
        t->id = tf.task_id, t->from = tf.from, t->to = tf.to;
        t->priority = tf.priority, t->content = tf.content;
        t->rank = tf.priority_rank;
        free(tf.created_at);
    }
    free(stem);
    free(text);
    return 0;
}

/* True when NAME in DIR is a regular file (not followed when a link). */
static bool store_is_regular(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    struct stat st;
    bool r = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return r;
}

int store_claim(struct store *s, struct task *t, const char *bot_id)
{
    const char *from_dir = t->source == TASK_SOURCE_FILE ? s->paths.queue : s->paths.realtime;
    char *dst = xasprintf("%s/%s", s->paths.active, t->file_name);
    int r = 0;
    if (!t->claimed) {
        char *src = xasprintf("%s/%s", from_dir, t->file_name);
        if (!store_is_regular(from_dir, t->file_name))
            r = access(src, F_OK) < 0 && errno == ENOENT ? -ENOENT : -EINVAL;
        else
            r = store_rename_into(src, dst, s->paths.active, &s->active_used);
        free(src);
        t->claimed = r == 0;
    }
    if (r == 0 && !store_is_regular(s->paths.active, t->file_name)) {
        /* Swapped for a FIFO, a link... between the look and the claim:
         * give it back untouched. */
        store_unclaim(s, t);
        r = -EINVAL;
    }
    if (r == 0 && t->source == TASK_SOURCE_FILE && !t->content && !t->parse_error)
        r = store_parse_claimed(t, dst, bot_id); /* not yet read (or not readable before) */
    free(dst);
    return r;
}

int store_unclaim(struct store *s, struct task *t)
{
    const char *to_dir = t->source == TASK_SOURCE_FILE ? s->paths.queue : s->paths.realtime;
    char *src = xasprintf("%s/%s", s->paths.active, t->file_name);
    char *dst = xasprintf("%s/%s", to_dir, t->file_name);
    int r = renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ? -errno : 0;
    bool *used = t->source == TASK_SOURCE_FILE ? NULL : &s->realtime_used;
    if (r == -ENOENT && store_make_dir(ENOENT, to_dir, used))
        r = renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ? -errno : 0;
    if (r == -EEXIST && t->source == TASK_SOURCE_FILE) {
        /* A new file of the same name arrived meanwhile: keep both. */
        char hex[9];
        util_random_hex(hex, 8);
        size_t stem = strlen(t->file_name) - (strlen(t->file_name) > 3 ? 3 : 0);
        free(dst);
        dst = xasprintf("%s/%.*s.recovered-%s.md", to_dir, (int)stem, t->file_name, hex);
        r = renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ? -errno : 0;
    }
    if (r == 0)
        t->claimed = false;
    free(src);
    free(dst);
    return r;
}

/* The pending name of a claimed task's response: in the bot's own pending
 * folder inside the responses folder (so that it can be hard-linked to its
 * final name, and recovery reads only this bot's few leftovers). */
static char *store_pending_path(struct store *s, const char *file_name)
{
    return xasprintf("%s/%s.pending", s->paths.pending, file_name);
}

/* Link PENDING to the first free name built from BASE: link() never
 * replaces a name, so a taken one (even a dangling symlink) fails with
 * EEXIST and the next candidate is tried. */
static int store_link_response(struct store *s, const char *pending, const char *base,
                               char **name_out)
{
    /* No cap: the names are tried until one is free (each taken one is a
     * file that exists, so this ends). */
    for (unsigned long n = 1; n < ULONG_MAX; n++) {
        char *name = response_name(base, n);
        char *path = xasprintf("%s/%s", s->paths.responses, name);
        int r = link(pending, path);
        int e = errno;
        free(path);
        if (r == 0) {
            *name_out = name;
            return 0;
        }
        free(name);
        if (e != EEXIST)
            return -e;
    }
    return -EEXIST;
}

/* The poison marker of a claimed task that the worker died with DEATHS
 * times: an empty dot file in _active/ (never a task name, since task
 * names never start with a dot) whose name holds the count. */
static char *store_death_path(struct store *s, const char *file_name, int deaths)
{
    return xasprintf("%s/.%s.died-%d", s->paths.active, file_name, deaths);
}

/* Forget the deaths of a task that has been answered. */
static void store_forget_deaths(struct store *s, const char *file_name)
{
    for (int n = 1; n < STORE_POISON_DEATHS; n++) {
        char *p = store_death_path(s, file_name, n);
        unlink(p);
        free(p);
    }
}

/* Move a claimed task from _active/ to _archive/ (made again if it was
 * removed: a task left in _active/ after its answer would run again). */
static int store_archive(struct store *s, const char *file_name)
{
    char *src = xasprintf("%s/%s", s->paths.active, file_name);
    char *dst = xasprintf("%s/%s", s->paths.archive, file_name);
    int r = store_rename_into(src, dst, s->paths.archive, &s->archive_used);
    free(src);
    free(dst);
    return r;
}

int store_write_response(struct store *s, const struct task *t, const char *text, size_t len)
{
    char *pending = store_pending_path(s, t->file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    /* The pending name only ever names a complete, durable response: it is
     * written under a temp name and renamed once synced. The temp name is
     * predictable, so it is created, never opened through what is there. */
    int fd = store_create(tmp, s->paths.pending, &s->pending_used);
    int r = fd < 0 ? -errno : 0;
    if (r == 0 && store_write_all(fd, text, len) < 0) {
        r = -errno;
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(pending);
    return r < 0 ? r : fd;
}

/* Remove the temp file store_write_response left for T. */
static void store_discard_response(struct store *s, const struct task *t)
{
    char *pending = store_pending_path(s, t->file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    unlink(tmp);
    free(tmp);
    free(pending);
}

/* Index T's answer, linked as *NAME, while its pending file is still there
 * (recovery indexes it again after a crash). When that fails the final name
 * goes too, so the commit fails and the answer is written again. */
static int store_index_response(struct store *s, const struct task *t, char **name)
{
    int r = answers_record(s->answers, t->id, *name);
    if (r < 0) {
        char *path = xasprintf("%s/%s", s->paths.responses, *name);
        unlink(path);
        free(path);
        free(*name);
        *name = NULL;
    }
    return r;
}

/* T's response is durable under its temp name: give it its pending name,
 * then its final name, then archive T (T->claimed is cleared once it is).
 * 0, or -errno with nothing of the response left. */
static int store_publish_response(struct store *s, struct task *t, const char *base)
{
    char *pending = store_pending_path(s, t->file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    char *name = NULL;
    int r = rename(tmp, pending) < 0 ? -errno : 0;
    if (r == 0)
        r = store_link_response(s, pending, base, &name);
    if (r == 0)
        r = store_index_response(s, t, &name);
    if (r < 0) {
        unlink(tmp);
        unlink(pending);
    } else {
        free(t->response_file);
        t->response_file = name;
        /* The pending name stays until the archive is durable (see
         * store_release_responses): a task still in _active/ without a
         * pending file is one that must run again. If the archive fails,
         * the linked pending file stays for recovery to archive the task:
         * it is answered and must not be answered again. */
        int a = store_archive(s, t->file_name);
        if (a == 0 || a == -ENOENT)
            t->claimed = false;
    }
    free(tmp);
    free(pending);
    return r;
}

void store_publish_responses(struct store *s, struct task *const *tasks, char *const *bases,
                             const int *fds, size_t n, int synced, int *rc)
{
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
        rc[i] = synced;
        if (rc[i] == 0)
            rc[i] = store_publish_response(s, tasks[i], bases[i]);
        else
            store_discard_response(s, tasks[i]);
    }
    answers_sync(s->answers);
}

/* fsync the folder PATH; 0 or -errno (a folder that is gone is no error:
 * it holds nothing to keep). */
static int store_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int store_sync_names(struct store *s)
{
    /* One syncfs() for the renames and links of the whole commit, in
     * whichever folders they are: without a journal (as on the bench
     * machine) an fsync of each of the four folders would be four device
     * flushes, syncfs() is one; with a journal both are one commit. It runs
     * on the syncer's thread, so unrelated dirty data it also writes out
     * delays only the answers, never the loop. */
    int fd = open(s->paths.responses, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? store_fsync_dir(s->paths.archive) : -errno;
    int r = syncfs(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int store_sync_commit(struct store *s, const int *fds, size_t n, bool names)
{
    if (!names)
        return store_sync_batch(fds, n) == 0 ? 0 : -errno;
    if (n == 0)
        return store_sync_names(s);
    return syncfs(fds[0]) == 0 ? 0 : -errno; /* data and names: all of it */
}

void store_release_responses(struct store *s, struct task *const *tasks, size_t n, const int *rc)
{
    for (size_t i = 0; i < n; i++) {
        if (rc[i] != 0 || tasks[i]->claimed)
            continue;
        char *pending = store_pending_path(s, tasks[i]->file_name);
        unlink(pending);
        free(pending);
        store_forget_deaths(s, tasks[i]->file_name);
    }
}

void store_commit_responses(struct store *s, struct task *const *tasks, char *const *bases,
                            const int *fds, size_t n, int *rc)
{
    store_publish_responses(s, tasks, bases, fds, n, store_sync_commit(s, fds, n, false), rc);
    store_sync_commit(s, NULL, 0, true);
    store_release_responses(s, tasks, n, rc);
}

int store_finish(struct store *s, struct task *t, const char *base, const char *text, size_t len)
{
    int fd = store_write_response(s, t, text, len);
    if (fd < 0)
        return fd;
    int rc;
    store_commit_responses(s, &t, (char *const *)&base, &fd, 1, &rc);
    return rc;
}

/* True for names that are ours but not tasks (temp files, markers, set
 * aside files): task ids and task file names never start with a dot. */
static bool store_skip_name(const char *name)
{
    return name[0] == '.';
}

/* A step of recovery failed with ERR (an errno) on WHAT. True when it is a
 * passing shortage (store_transient): the step is left for the next pass,
 * said once. False for anything else (the caller does what it always did). */
static bool store_shortage(struct store *s, int err, const char *what)
{
    if (!store_transient(err))
        return false;
    if (!s->warned)
        log_warn("recovery: %s: %s; tried again soon", what, strerror(err));
    s->warned = true;
    s->incomplete = true;
    return true;
}

/* Give a pending response that was never linked its final name. 1 done, 0
 * when it is not a whole response (then the task must run again), -errno
 * when it cannot be read or linked now (a passing shortage: try again). */
static int store_link_orphan(struct store *s, const char *pending)
{
    size_t len;
    char *text = store_read_regular(pending, &len);
    if (!text && store_transient(errno))
        return -errno;
    struct stat st;
    struct response_header h;
    if (!text || stat(pending, &st) < 0 || response_parse(text, len, &h) < 0) {
        free(text);
        return 0;
    }
    free(text);
    struct response r = {.bot_id = s->bot_id,
                         .task_id = h.task_id,
                         .to = h.to,
                         .success = h.success,
                         .finished_wall_ns =
                             (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
    char *base = response_base_name(&r);
    char *name = NULL;
    int linked = store_link_response(s, pending, base, &name);
    free(name);
    free(base);
    response_header_clear(&h);
    return linked == 0 ? 1 : store_transient(-linked) ? linked : 0;
}

/* Finish a response whose task died mid-way: link it if needed. 1 when a
 * whole pending response exists for FILE_NAME (the task counts as done; its
 * pending name stays for store_release_pending, after the archive); 0 when
 * none does (anything less is removed and the task runs again); -errno when
 * that cannot be told now (a passing shortage: nothing was changed). */
static int store_settle_pending(struct store *s, const char *file_name)
{
    char *pending = store_pending_path(s, file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    unlink(tmp); /* a response that was still being written: it runs again */
    struct stat st;
    int r = 0;
    if (lstat(pending, &st) == 0)
        r = S_ISREG(st.st_mode);
    else if (store_transient(errno))
        r = -errno;
    if (r == 1 && st.st_nlink < 2)
        r = store_link_orphan(s, pending);
    if (r == 0)
        unlink(pending);
    free(tmp);
    free(pending);
    return r;
}

/* Index the answer behind FILE_NAME's pending name (store_settle_pending
 * found it whole), then drop that name. 0, or -errno with the pending name
 * kept (indexed by a later pass, or at the next start). */
static int store_release_pending(struct store *s, const char *file_name)
{
    char *pending = store_pending_path(s, file_name);
    int r = answers_recover(s->answers, pending);
    if (r == 0)
        unlink(pending);
    free(pending);
    return r;
}

/* How many times the worker died while it held the task FILE_NAME (its
 * marker in _active/), 0 when none. */
static int store_deaths(struct store *s, const char *file_name)
{
    int deaths = 0;
    for (int n = 1; n < STORE_POISON_DEATHS; n++) {
        char *p = store_death_path(s, file_name, n);
        if (access(p, F_OK) == 0)
            deaths = n;
        free(p);
    }
    return deaths;
}

/* Count one more death of the worker that held FILE_NAME (DEATHS so far);
 * the caller makes it durable (store_fsync_dir) before the task runs
 * again: a crash right after still counts. 0 or -errno. */
static int store_count_death(struct store *s, const char *file_name, int deaths)
{
    char *next = store_death_path(s, file_name, deaths + 1);
    int r = 0;
    if (deaths > 0) {
        char *prev = store_death_path(s, file_name, deaths);
        r = rename(prev, next) < 0 ? -errno : 0;
        free(prev);
    } else {
        int fd = store_create(next, s->paths.active, &s->active_used);
        r = fd < 0 ? -errno : close(fd);
    }
    free(next);
    return r;
}

/* The task FILE_NAME in _active/ (SOURCE its kind) as a claimed task that
 * is answered failed without running: its worker died with it too often.
 * NULL with errno when it cannot be read (a passing shortage: try again;
 * else it is put back as any other). */
static struct task *store_poison(struct store *s, const char *file_name, enum task_source source,
                                 int deaths)
{
    struct task *t;
    if (source == TASK_SOURCE_FILE) {
        char *stem = xstrndup(file_name, strlen(file_name) - 3);
        char *id = task_id_from_stem(stem);
        t = task_new(id, TASK_SOURCE_FILE);
        free(id);
        free(stem);
        t->file_name = xstrdup(file_name);
        t->from = xstrdup("unknown");
        char *path = xasprintf("%s/%s", s->paths.active, file_name);
        int r = store_parse_claimed(t, path, s->bot_id);
        free(path);
        if (r < 0) {
            task_free(t);
            errno = -r;
            return NULL;
        }
    } else if (!(t = store_load_realtime(s, s->paths.active, file_name))) {
        return NULL;
    }
    t->claimed = true;
    free(t->parse_error);
    t->parse_error = xasprintf("worker died %d times while running this task", deaths);
    log_warn("task %s: %s; answering it failed", t->id, t->parse_error);
    return t;
}

/* The kind of task a name in _active/ holds. */
static enum task_source store_active_source(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".json") == 0 ? TASK_SOURCE_HTTP : TASK_SOURCE_FILE;
}

/* Remove the death markers in _active/ whose task is no longer there: a
 * worker killed between a task's archive and its markers' removal leaves
 * them (they would count against a later task of the same file name).
 * -errno when the folder cannot be read now (a passing shortage). */
static int store_sweep_deaths(struct store *s)
{
    DIR *d = opendir(s->paths.active);
    if (!d)
        return store_transient(errno) ? -errno : 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *mark = strstr(e->d_name, ".died-");
        if (e->d_name[0] != '.' || !mark || mark == e->d_name + 1)
            continue;
        char *task = xstrndup(e->d_name + 1, (size_t)(mark - e->d_name - 1));
        if (faccessat(dirfd(d), task, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
            unlinkat(dirfd(d), e->d_name, 0);
        free(task);
    }
    closedir(d);
    return 0;
}

/* NAME in _active/ was answered: archive it, then drop its pending name.
 * Its pending name stays until the archive is done: a task still in
 * _active/ without one runs again. 0 or -errno (a passing shortage). */
static int store_recover_answered(struct store *s, const char *name)
{
    int r = store_archive(s, name);
    if (r < 0 && store_transient(-r))
        return r;
    if (r < 0) /* kept answered: the next start archives it */
        return 0;
    store_forget_deaths(s, name);
    r = store_release_pending(s, name);
    return r < 0 && store_transient(-r) ? r : 0;
}

/* NAME in _active/ (KEY its key in s->recovering) was not answered: when
 * its worker died with it too often, hand it to CB (claimed, to be answered
 * failed); else count this death (COUNTED: a pass before did) and put it
 * back where it came from. 1 when handed to CB, 0, or -errno (a passing
 * shortage: the next pass goes on from there). */
static int store_recover_unanswered(struct store *s, const char *name, const char *key,
                                    bool counted, store_requeue_cb cb, void *arg)
{
    enum task_source source = store_active_source(name);
    int deaths = store_deaths(s, name) + !counted;
    if (deaths >= STORE_POISON_DEATHS) {
        struct task *poison = store_poison(s, name, source, deaths);
        if (!poison && store_transient(errno))
            return -errno;
        if (poison) {
            strmap_put(s->recovering, key, &store_mark_handed);
            cb(poison, arg);
            return 1;
        }
    }
    if (!counted) {
        int r = store_count_death(s, name, deaths - 1);
        if (r < 0 && store_transient(-r))
            return r;
        strmap_put(s->recovering, key, &store_mark_counted);
    }
    int r = store_fsync_dir(s->paths.active); /* the death is durable before it runs */
    if (r < 0 && store_transient(-r))
        return r;
    struct task t = {.file_name = (char *)name, .source = source};
    r = store_unclaim(s, &t);
    return r < 0 && store_transient(-r) ? r : 0;
}

/* Settle the task NAME left in _active/: 1 when handed to CB, 0 when
 * settled otherwise, -errno when a passing shortage left it to a later
 * pass. A task a pass before handed over is left alone. */
static int store_recover_one(struct store *s, const char *name, store_requeue_cb cb, void *arg)
{
    char *key = xasprintf("a/%s", name);
    void *mark = strmap_get(s->recovering, key);
    int r = 0;
    if (mark != &store_mark_handed)
        r = store_settle_pending(s, name);
    if (r > 0)
        r = store_recover_answered(s, name);
    else if (r == 0 && mark != &store_mark_handed)
        r = store_recover_unanswered(s, name, key, mark == &store_mark_counted, cb, arg);
    free(key);
    return r;
}

/* Settle every task left in _active/: archive the answered ones, hand the
 * poison ones to CB (claimed, to be answered failed), put the others back
 * where they came from. Returns the number handed to CB. */
static int store_recover_active(struct store *s, store_requeue_cb cb, void *arg)
{
    /* The sweep first (a task put back below leaves _active/), and only
     * until _active/ was listed: after that it would take the markers of
     * the tasks put back for stale ones. */
    int r = s->active_listed ? 0 : store_sweep_deaths(s);
    if (r < 0 && store_shortage(s, -r, s->paths.active))
        return 0;
    DIR *d = opendir(s->paths.active);
    if (!d) {
        store_shortage(s, errno, s->paths.active);
        return 0;
    }
    s->active_listed = true;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (store_skip_name(e->d_name))
            continue;
        r = store_recover_one(s, e->d_name, cb, arg);
        if (r < 0)
            store_shortage(s, -r, e->d_name);
        count += r > 0;
    }
    closedir(d);
    return count;
}

/* True unless FILE_NAME is known to be absent from _active/. */
static bool store_maybe_active(struct store *s, const char *file_name)
{
    char *path = xasprintf("%s/%s", s->paths.active, file_name);
    bool r = faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
    free(path);
    return r;
}

/* Settle pending responses whose task was archived already; a temp file
 * left now belongs to no claimed task and goes. The pending response of a
 * task still in _active/ is left to store_recover_active: it says the task
 * was answered. */
static void store_recover_orphans(struct store *s)
{
    DIR *d = opendir(s->paths.pending);
    if (!d) {
        store_shortage(s, errno, s->paths.pending);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".pending.tmp") == 0) {
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (n < 9 || strcmp(e->d_name + n - 8, ".pending") != 0)
            continue;
        char *file_name = xstrndup(e->d_name, n - 8);
        int r = store_maybe_active(s, file_name) ? 0 : store_settle_pending(s, file_name);
        if (r > 0)
            r = store_release_pending(s, file_name);
        if (r < 0)
            store_shortage(s, -r, e->d_name);
        free(file_name);
    }
    closedir(d);
}

/* A realtime task file that reads but does not parse was cut by a power
 * loss before its batch's sync, so it was never acknowledged: rename it to
 * a dot name (not a task) instead of reading it at every start. One that
 * cannot be read is left alone. 0, or -errno when it cannot be read now (a
 * passing shortage: try again). */
static int store_set_aside(struct store *s, const char *name)
{
    char *path = xasprintf("%s/%s", s->paths.realtime, name);
    char *text = store_read_regular(path, NULL);
    int r = !text && store_transient(errno) ? -errno : 0;
    if (text) {
        char *aside = xasprintf("%s/.%s.unreadable", s->paths.realtime, name);
        rename(path, aside);
        free(aside);
    }
    free(text);
    free(path);
    return r;
}

/* Hand the task NAME in _realtime/ (KEY its key in s->recovering) to CB: 1
 * when it was, 0 when it cannot be read now (a later pass tries again) or
 * does not parse (set aside). */
static int store_recover_queued(struct store *s, const char *name, const char *key,
                                store_requeue_cb cb, void *arg)
{
    struct task *t = store_load_realtime(s, s->paths.realtime, name);
    if (t) {
        strmap_put(s->recovering, key, &store_mark_handed);
        cb(t, arg);
        return 1;
    }
    if (store_shortage(s, errno, name))
        return 0;
    int r = store_set_aside(s, name);
    if (r < 0)
        store_shortage(s, -r, name);
    return 0;
}

/* Hand every task in _realtime/ to CB that no pass before handed over. At
 * the FIRST pass only, temp files go: later ones run beside the worker's
 * own submissions, whose temp files those may be. */
static int store_recover_realtime(struct store *s, bool first, store_requeue_cb cb, void *arg)
{
    DIR *d = opendir(s->paths.realtime);
    if (!d) {
        store_shortage(s, errno, s->paths.realtime);
        return 0;
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (store_skip_name(e->d_name)) {
            if (first && strstr(e->d_name, ".tmp")) /* never acknowledged */
                unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        char *key = xasprintf("r/%s", e->d_name);
        if (!strmap_get(s->recovering, key))
            count += store_recover_queued(s, e->d_name, key, cb, arg);
        free(key);
    }
    closedir(d);
    return count;
}

int store_recover(struct store *s, const char *bot_id, store_requeue_cb cb, void *arg)
{
    (void)bot_id;
    bool first = !s->recovering;
    if (first)
        s->recovering = strmap_new();
    s->incomplete = false;
    int count = store_recover_active(s, cb, arg);
    store_recover_orphans(s);
    count += store_recover_realtime(s, first, cb, arg);
    if (!s->incomplete) { /* done: the next call is a new recovery */
        strmap_free(s->recovering);
        s->recovering = NULL;
        s->active_listed = s->warned = false;
    }
    return count;
}

bool store_recover_incomplete(const struct store *s)
{
    return s->recovering != NULL;
}

int store_set_paused(struct store *s, bool paused)
{
    if (!paused)
        return unlink(s->paths.pause) < 0 && errno != ENOENT ? -errno : 0;
    struct stat st;
    if (lstat(s->paths.pause, &st) == 0 && S_ISREG(st.st_mode))
        return 0;
    /* Created, never written through what is there (store_create); no sync:
     * a pause is a wish, not an answer, and the loop must not wait. */
    int fd = store_create(s->paths.pause, s->paths.controls, NULL);
    if (fd < 0)
        return -errno;
    int r = store_write_all(fd, "paused\n", 7) < 0 ? -errno : 0;
    close(fd);
    return r;
}

bool store_paused(const struct store *s)
{
    return faccessat(AT_FDCWD, s->paths.pause, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}
