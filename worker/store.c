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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "worker/answers.h"
#include "worker/response.h"
#include "worker/taskfile.h"

#define STORE_TASKFILE_MAX (16u << 20)

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
};

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

struct store *store_open(const char *work_dir, const char *bot_id, char *err, size_t errlen)
{
    struct store *s = xcalloc(1, sizeof *s);
    s->bot_id = xstrdup(bot_id);
    store_build_paths(&s->paths, work_dir, bot_id);
    const char *dirs[] = {s->paths.active,    s->paths.archive,  s->paths.realtime,
                          s->paths.responses, s->paths.controls, s->paths.logs};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (util_mkdirs(dirs[i]) < 0) {
            snprintf(err, errlen, "cannot create %s: %s", dirs[i], strerror(errno));
            store_free(s);
            return NULL;
        }
    }
    /* Made again on the first answer if it cannot be now (a read-only
     * responses folder must not stop the bot from taking tasks). */
    util_mkdirs(s->paths.pending);
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
        if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
            s->publish = STORE_PUBLISH_RENAME;
        else if (fd < 0)
            return -1;
    }
    if (fd < 0) {
        snprintf(tmp, cap, "%s/.%s.tmp", s->paths.realtime, t->id);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
    }
    size_t len;
    char *text = store_realtime_encode(t, &len);
    int r = store_write_all(fd, text, len);
    free(text);
    if (r < 0) {
        close(fd);
        if (tmp[0])
            unlink(tmp);
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

/* Make the data of the files behind FDS (N of them, -1 for none) durable
 * with one call: fdatasync() for a single file, else syncfs() for the whole
 * batch (see store_persist_realtime). 0 or -1 with errno. */
static int store_sync_batch(const int *fds, size_t n)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++)
        open += fds[i] >= 0;
    int first = store_first_fd(fds, n);
    return first < 0 ? 0 : open == 1 ? fdatasync(first) : syncfs(first);
}

void store_persist_realtime(struct store *s, struct task *const *tasks, size_t n, bool *ok)
{
    int *fds = xcalloc(n, sizeof *fds);
    char tmp[4200], dst[4200];
    for (size_t i = 0; i < n; i++) {
        fds[i] = store_realtime_write(s, tasks[i], tmp, sizeof tmp);
        snprintf(dst, sizeof dst, "%s/%s.json", s->paths.realtime, tasks[i]->id);
        ok[i] = fds[i] >= 0 && store_realtime_name(s, fds[i], tmp, dst) == 0;
    }
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
     * much of it. Naming before the sync is safe: a crash before it can
     * leave a task file that was never acknowledged, whole (it then runs,
     * as after a crash between the rename and the ack) or, after a power
     * loss, cut (recovery sets it aside). */
    int first = store_first_fd(fds, n);
    bool synced = first < 0 || syncfs(first) == 0;
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        snprintf(dst, sizeof dst, "%s/%s.json", s->paths.realtime, tasks[i]->id);
        if (ok[i] && !synced) {
            unlink(dst);
            ok[i] = false;
        }
        if (ok[i]) {
            free(tasks[i]->file_name);
            tasks[i]->file_name = xasprintf("%s.json", tasks[i]->id);
        }
    }
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
    char *text = util_read_file(path, STORE_TASKFILE_MAX, &len);
    free(path);
    if (!text)
        return NULL;
    json_t *o = json_parse_bytes(text, len, NULL, 0);
    free(text);
    const char *id = json_get_str(o, "task_id"), *cmd = json_get_str(o, "command");
    if (!json_is_object(o) || !util_id_valid(id) || !cmd) {
        json_decref(o);
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

/* Fill a file task from its parsed text (after the claim). */
static void store_parse_claimed(struct task *t, const char *path, const char *bot_id)
{
    size_t len;
    char err[256];
    char *text = util_read_file(path, STORE_TASKFILE_MAX, &len);
    if (!text) {
        free(t->parse_error);
        t->parse_error =
            xasprintf("cannot read task file: %s", errno == EFBIG ? "too large" : strerror(errno));
        return;
    }
    char *stem = xstrdup(t->file_name);
    char *dot = strrchr(stem, '.');
    if (dot)
        *dot = '\0';
    struct taskfile tf;
    if (taskfile_parse(text, len, stem, bot_id, &tf, err, sizeof err) < 0) {
        free(t->parse_error);
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
}

int store_claim(struct store *s, struct task *t, const char *bot_id)
{
    const char *from_dir = t->source == TASK_SOURCE_FILE ? s->paths.queue : s->paths.realtime;
    char *src = xasprintf("%s/%s", from_dir, t->file_name);
    char *dst = xasprintf("%s/%s", s->paths.active, t->file_name);
    int r = rename(src, dst) < 0 ? -errno : 0;
    if (r == 0 && t->source == TASK_SOURCE_FILE)
        store_parse_claimed(t, dst, bot_id);
    free(src);
    free(dst);
    return r;
}

int store_unclaim(struct store *s, struct task *t)
{
    const char *to_dir = t->source == TASK_SOURCE_FILE ? s->paths.queue : s->paths.realtime;
    char *src = xasprintf("%s/%s", s->paths.active, t->file_name);
    char *dst = xasprintf("%s/%s", to_dir, t->file_name);
    int r = renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ? -errno : 0;
    if (r == -EEXIST && t->source == TASK_SOURCE_FILE) {
        /* A new file of the same name arrived meanwhile: keep both. */
        char hex[9];
        util_random_hex(hex, 8);
        size_t stem = strlen(t->file_name) - (strlen(t->file_name) > 3 ? 3 : 0);
        free(dst);
        dst = xasprintf("%s/%.*s.recovered-%s.md", to_dir, (int)stem, t->file_name, hex);
        r = renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) < 0 ? -errno : 0;
    }
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
    for (unsigned long n = 1; n <= 1000; n++) {
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

/* Move a claimed task from _active/ to _archive/. */
static int store_archive(struct store *s, const char *file_name)
{
    char *src = xasprintf("%s/%s", s->paths.active, file_name);
    char *dst = xasprintf("%s/%s", s->paths.archive, file_name);
    int r = rename(src, dst) < 0 ? -errno : 0;
    free(src);
    free(dst);
    return r;
}

int store_write_response(struct store *s, const struct task *t, const char *text, size_t len)
{
    char *pending = store_pending_path(s, t->file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    /* The pending name only ever names a complete, durable response: it is
     * written under a temp name and renamed once synced. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT && util_mkdirs(s->paths.pending) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); /* folder removed */
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
 * then its final name, then archive T. 0, or -errno with nothing of the
 * response left. */
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
        /* The archive before the pending name goes: a task still in
         * _active/ without a pending file is one that must run again. If
         * the archive fails, the linked pending file stays for recovery to
         * archive the task: it is answered and must not be answered again. */
        int a = store_archive(s, t->file_name);
        if (a == 0 || a == -ENOENT)
            unlink(pending);
    }
    free(tmp);
    free(pending);
    return r;
}

void store_commit_responses(struct store *s, struct task *const *tasks, char *const *bases,
                            const int *fds, size_t n, int *rc)
{
    /* One syncfs() for all of them: see store_persist_realtime. */
    int synced = store_sync_batch(fds, n) == 0 ? 0 : -errno;
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

int store_finish(struct store *s, struct task *t, const char *base, const char *text, size_t len)
{
    int fd = store_write_response(s, t, text, len);
    if (fd < 0)
        return fd;
    int rc;
    store_commit_responses(s, &t, (char *const *)&base, &fd, 1, &rc);
    return rc;
}

/* Value of a "**Field:** value" line in a response text, or NULL. */
static char *store_response_field(const char *text, const char *field)
{
    const char *p = strstr(text, field);
    if (!p)
        return NULL;
    p += strlen(field);
    while (*p == ' ')
        p++;
    return xstrndup(p, strcspn(p, "\r\n"));
}

/* True when TEXT is a whole response file: its last line is the trailer. */
static bool store_response_complete(const char *text, size_t len)
{
    static const char trailer[] = "**Response generated:** ";
    if (len < 2 || text[len - 1] != '\n')
        return false;
    size_t i = len - 1;
    while (i > 0 && text[i - 1] != '\n')
        i--;
    return len - i > sizeof trailer - 1 && memcmp(text + i, trailer, sizeof trailer - 1) == 0;
}

/* Give a pending response that was never linked its final name. False when
 * it is not a whole response (then the task must run again). */
static bool store_link_orphan(struct store *s, const char *pending)
{
    size_t len;
    char *text = util_read_file(pending, 64u << 20, &len);
    struct stat st;
    if (!text || stat(pending, &st) < 0 || !store_response_complete(text, len)) {
        free(text);
        return false;
    }
    char *id = store_response_field(text, "**Task:**");
    char *to = store_response_field(text, "**To:**");
    struct response r = {.bot_id = s->bot_id,
                         .task_id = id ? id : "unknown",
                         .to = to ? to : "unknown",
                         .success = strstr(text, "- Complete\n") != NULL,
                         .finished_wall_ns =
                             (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
    char *base = response_base_name(&r);
    char *name = NULL;
    bool linked = store_link_response(s, pending, base, &name) == 0;
    free(name);
    free(base);
    free(id);
    free(to);
    free(text);
    return linked;
}

/* Finish a response whose task died mid-way: link it if needed. True when a
 * whole pending response existed for FILE_NAME (the task then counts as
 * done); anything less is removed and the task runs again. */
static bool store_settle_pending(struct store *s, const char *file_name)
{
    char *pending = store_pending_path(s, file_name);
    char *tmp = xasprintf("%s.tmp", pending);
    unlink(tmp); /* a response that was still being written: it runs again */
    struct stat st;
    bool found = stat(pending, &st) == 0;
    if (found && st.st_nlink < 2)
        found = store_link_orphan(s, pending);
    if (!found || answers_recover(s->answers, pending) == 0)
        unlink(pending); /* else kept: indexed at the next start */
    free(tmp);
    free(pending);
    return found;
}

/* True for names that are ours but not tasks (temp files, dot files). */
static bool store_skip_name(const char *name)
{
    return name[0] == '.';
}

/* Settle every task left in _active/: archive the answered ones, put the
 * others back where they came from. */
static void store_recover_active(struct store *s)
{
    DIR *d = opendir(s->paths.active);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (store_skip_name(e->d_name))
            continue;
        if (store_settle_pending(s, e->d_name)) {
            store_archive(s, e->d_name);
            continue;
        }
        struct task t = {.file_name = e->d_name};
        size_t n = strlen(e->d_name);
        t.source =
            n > 5 && strcmp(e->d_name + n - 5, ".json") == 0 ? TASK_SOURCE_HTTP : TASK_SOURCE_FILE;
        store_unclaim(s, &t);
    }
    closedir(d);
}

/* Settle pending responses whose task was archived already; a temp file
 * left now belongs to no claimed task and goes. */
static void store_recover_orphans(struct store *s)
{
    DIR *d = opendir(s->paths.pending);
    if (!d)
        return;
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
        store_settle_pending(s, file_name);
        free(file_name);
    }
    closedir(d);
}

/* A realtime task file that reads but does not parse was cut by a power
 * loss before its batch's sync, so it was never acknowledged: rename it to
 * a dot name (not a task) instead of reading it at every start. One that
 * cannot be read now is left alone. */
static void store_set_aside(struct store *s, const char *name)
{
    char *path = xasprintf("%s/%s", s->paths.realtime, name);
    char *text = util_read_file(path, STORE_TASKFILE_MAX, NULL);
    if (text) {
        char *aside = xasprintf("%s/.%s.unreadable", s->paths.realtime, name);
        rename(path, aside);
        free(aside);
    }
    free(text);
    free(path);
}

int store_recover(struct store *s, const char *bot_id, store_requeue_cb cb, void *arg)
{
    (void)bot_id;
    store_recover_active(s);
    store_recover_orphans(s);
    DIR *d = opendir(s->paths.realtime);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (store_skip_name(e->d_name)) {
            if (strstr(e->d_name, ".tmp")) /* never acknowledged */
                unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        struct task *t = store_load_realtime(s, s->paths.realtime, e->d_name);
        if (t) {
            cb(t, arg);
            count++;
        } else {
            store_set_aside(s, e->d_name);
        }
    }
    closedir(d);
    return count;
}
