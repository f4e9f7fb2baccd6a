/*
 * answers: owns the index of the bot's answered tasks by id (see answers.h
 * for the layout and why it stays consistent). Entries are written by the
 * store's commit (answers_record, then answers_sync once per batch) and by
 * recovery (answers_recover); the engine asks answers_find() whether an id
 * was answered (ids are idempotency keys) and GET /api/task/<id> reads an
 * answer back with answers_load(), so finished tasks' outputs live in their
 * response files, not in memory.
 */
#include "worker/answers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

/* How much of a response file is read first to find its header. */
#define ANSWERS_HEAD_READ 4096
/* Marks a name in the index that is not an entry: ids never hold it. */
#define ANSWERS_TEMP_MARK "~"
/* A missing index is made at open only when the responses folder holds an
 * answer of the bot, or more names than this: an empty one costs a start two
 * inodes and two fsyncs (each slow on an ext4 without a journal), a scan of
 * a few names costs nothing, but a big folder is not to be read at every
 * start of a bot that never answered. */
#define ANSWERS_SCAN_KEEP 1000

struct answers {
    char *responses; /* .deia/hive/responses */
    char *bot_id;
    char *root;  /* responses/.index */
    char *dir;   /* responses/.index/<BOT> */
    int fd;      /* DIR, or -1 until it exists */
    bool none;   /* DIR is missing and the bot has no answer: absent is
                    empty, until the first record makes it */
    bool dirty;  /* entries written since the last answers_sync() */
    bool broken; /* the index could not be opened or rebuilt: look-ups do
                    not try again (a scan each), the next record does */
};

/* True when ID may name an entry: a valid task id, not a dot name. */
static bool answers_key_ok(const char *id)
{
    return util_id_valid(id) && id[0] != '.';
}

/* True when NAME (a link's text) may be a response file's name: one plain
 * name in the responses folder. */
static bool answers_name_ok(const char *name)
{
    return name[0] && name[0] != '.' && !strchr(name, '/');
}

/* Read at most MAX bytes of FD from its start; NUL-terminated, *LEN gets
 * the count. NULL with errno. */
static char *answers_pread(int fd, size_t max, size_t *len)
{
    char *buf = xmalloc(max + 1);
    size_t got = 0;
    while (got < max) {
        ssize_t r = pread(fd, buf + got, max - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

/* Open a response file NAME in the folder DIRFD for reading: a regular file
 * only (no FIFO to block on, no link to follow). The fd with *ST, or -errno. */
static int answers_open_file(int dirfd, const char *name, struct stat *st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int e = fstat(fd, st) < 0 ? errno : S_ISREG(st->st_mode) ? 0 : EINVAL;
    if (e) {
        close(fd);
        return -e;
    }
    return fd;
}

/* Read the header of the response file behind FD (size from ST) into V;
 * the text the spans point into goes to *TEXT. 0, or -1 when it is not a
 * response (or unreadable). */
static int answers_read_head(int fd, const struct stat *st, char **text, struct response_view *v)
{
    size_t size = (size_t)st->st_size, want = size < ANSWERS_HEAD_READ ? size : ANSWERS_HEAD_READ;
    for (;;) {
        size_t len;
        *text = answers_pread(fd, want, &len);
        int r = *text ? response_read_header(*text, len, v) : -1;
        if (r == 0)
            return 0;
        free(*text);
        *text = NULL;
        if (r != -2 || want >= size)
            return -1;
        want = size; /* a long header (a long "from"): read it all */
    }
}

/* The task id of the response behind FD as a string, if it is an answer of
 * BOT_ID with an id that may be indexed; else NULL. */
static char *answers_id_of(int fd, const struct stat *st, const char *bot_id)
{
    char *text;
    struct response_view v;
    if (answers_read_head(fd, st, &text, &v) < 0)
        return NULL;
    char *id = NULL;
    if (v.bot_id.len == strlen(bot_id) && memcmp(v.bot_id.p, bot_id, v.bot_id.len) == 0)
        id = xstrndup(v.task_id.p, v.task_id.len);
    free(text);
    if (id && !answers_key_ok(id)) {
        free(id);
        id = NULL;
    }
    return id;
}

/* The text of entry ID in the folder DIRFD into NAME (CAP bytes). 0, or
 * -errno (-ENOENT: no entry). */
static int answers_target(int dirfd, const char *id, char *name, size_t cap)
{
    ssize_t n = readlinkat(dirfd, id, name, cap);
    if (n < 0)
        return -errno;
    if ((size_t)n >= cap)
        return -ENAMETOOLONG;
    name[n] = '\0';
    return answers_name_ok(name) ? 0 : -EINVAL;
}

/* Point entry ID in the folder DIRFD at NAME, replacing the entry it had:
 * a link under a temp name, renamed over the entry. 0 or -errno. */
static int answers_put(int dirfd, const char *id, const char *name)
{
    char tmp[NAME_MAX + 1];
    snprintf(tmp, sizeof tmp, "%s" ANSWERS_TEMP_MARK, id);
    if (symlinkat(name, dirfd, tmp) < 0) {
        if (errno != EEXIST)
            return -errno;
        unlinkat(dirfd, tmp, 0); /* left by a crash: never an entry */
        if (symlinkat(name, dirfd, tmp) < 0)
            return -errno;
    }
    if (renameat(dirfd, tmp, dirfd, id) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        return -e;
    }
    return 0;
}

/* True when response file A (stat SA, name A) is newer than B: written
 * later, or in the same instant with a later -N suffix. */
static bool answers_newer(const struct stat *sa, const char *a, const struct stat *sb,
                          const char *b)
{
    if (sa->st_mtim.tv_sec != sb->st_mtim.tv_sec)
        return sa->st_mtim.tv_sec > sb->st_mtim.tv_sec;
    if (sa->st_mtim.tv_nsec != sb->st_mtim.tv_nsec)
        return sa->st_mtim.tv_nsec > sb->st_mtim.tv_nsec;
    unsigned long na = 1, nb = 1;
    response_name_outcome(a, &na);
    response_name_outcome(b, &nb);
    return na > nb;
}

/* Put NAME (stat ST) in the index being built (BUILD) under ID unless the
 * entry there is newer. RESP is the responses folder. */
static void answers_build_add(int build, int resp, const char *id, const char *name,
                              const struct stat *st)
{
    char old[NAME_MAX + 1];
    struct stat ost;
    if (answers_target(build, id, old, sizeof old) == 0 &&
        fstatat(resp, old, &ost, AT_SYMLINK_NOFOLLOW) == 0 && answers_newer(&ost, old, st, name))
        return;
    answers_put(build, id, name);
}

/* True when NAME in the responses folder may be a response of BOT_ID:
 * "YYYY-MM-DD-HHMM-<BOT>-...-RESPONSE-...-complete|failed[-N].md". */
static bool answers_maybe_ours(const char *name, const char *bot_id)
{
    size_t b = strlen(bot_id);
    return name[0] != '.' && strlen(name) > 16 + b && name[15] == '-' &&
           strncmp(name + 16, bot_id, b) == 0 && name[16 + b] == '-' &&
           response_name_outcome(name, NULL) >= 0;
}

/* The task id of the entry E of the responses folder D when it is a
 * response of BOT_ID (its stat in ST; caller frees), else NULL. */
static char *answers_entry_id(DIR *d, const struct dirent *e, const char *bot_id, struct stat *st)
{
    if ((e->d_type != DT_REG && e->d_type != DT_UNKNOWN) || !answers_maybe_ours(e->d_name, bot_id))
        return NULL;
    int fd = answers_open_file(dirfd(d), e->d_name, st);
    if (fd < 0)
        return NULL;
    char *id = answers_id_of(fd, st, bot_id);
    close(fd);
    return id;
}

/* Fill the folder BUILD with an entry per id answered in the responses
 * folder. 0 or -errno. */
static int answers_build_scan(struct answers *a, int build)
{
    DIR *d = opendir(a->responses);
    if (!d)
        return -errno;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d))) {
        char *id = answers_entry_id(d, e, a->bot_id, &st);
        if (id)
            answers_build_add(build, dirfd(d), id, e->d_name, &st);
        free(id);
    }
    closedir(d);
    return 0;
}

/* True when the responses folder holds no answer of the bot and at most
 * ANSWERS_SCAN_KEEP names (a missing one holds none): the missing index is
 * then empty and need not be made yet. */
static bool answers_none_to_index(const struct answers *a)
{
    DIR *d = opendir(a->responses);
    if (!d)
        return errno == ENOENT;
    bool none = true;
    size_t names = 0;
    struct dirent *e;
    while (none && (e = readdir(d))) {
        if (++names > ANSWERS_SCAN_KEEP + 2) { /* "." and ".." */
            none = false;
            break;
        }
        struct stat st;
        char *id = answers_entry_id(d, e, a->bot_id, &st);
        none = !id;
        free(id);
    }
    closedir(d);
    return none;
}

/* Remove the folder PATH and the entries in it (a build a crash left). */
static void answers_remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    rmdir(path);
}

/* Rebuild the missing index from the responses folder: built in a folder
 * aside, made durable, then renamed into place. 0 or -errno. */
static int answers_rebuild(struct answers *a)
{
    char *build = xasprintf("%s" ANSWERS_TEMP_MARK "build", a->dir);
    int r = util_mkdirs(a->root) < 0 ? -errno : 0;
    if (r == 0) {
        answers_remove_dir(build);
        r = mkdir(build, 0755) < 0 ? -errno : 0;
    }
    int fd = r == 0 ? open(build, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (r == 0 && fd < 0)
        r = -errno;
    if (r == 0)
        r = answers_build_scan(a, fd);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r == 0 && rename(build, a->dir) < 0)
        r = -errno;
    if (r == 0 && util_fsync_dir(a->root) < 0)
        r = -errno;
    if (r < 0)
        answers_remove_dir(build);
    free(build);
    return r;
}

/* True when the index folder we hold was removed (its link count is 0). */
static bool answers_removed(const struct answers *a)
{
    struct stat st;
    return a->fd >= 0 && fstat(a->fd, &st) == 0 && st.st_nlink == 0;
}

/* Have the index folder open: open it, or rebuild it when it is missing (or
 * the one we held was removed). Unless MAKE (a record), a missing index of a
 * bot without answers is not made: -ENOENT, and a->none says it is empty.
 * 0 or -errno. */
static int answers_ensure(struct answers *a, bool make)
{
    if (a->fd >= 0 && !answers_removed(a))
        return 0;
    if (a->fd >= 0)
        close(a->fd);
    else if (a->none && !make)
        return -ENOENT;
    a->none = false;
    a->fd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = a->fd < 0 ? -errno : 0;
    if (r == -ENOENT && !make && answers_none_to_index(a)) {
        a->none = true;
        a->broken = false;
        return r;
    }
    if (r == -ENOENT) {
        r = answers_rebuild(a);
        a->fd = r == 0 ? open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (r == 0 && a->fd < 0)
            r = -errno;
    }
    a->broken = r < 0;
    return r;
}

struct answers *answers_open(const char *responses_dir, const char *bot_id)
{
    struct answers *a = xcalloc(1, sizeof *a);
    a->responses = xstrdup(responses_dir);
    a->bot_id = xstrdup(bot_id);
    a->root = xasprintf("%s/.index", responses_dir);
    a->dir = xasprintf("%s/%s", a->root, bot_id);
    a->fd = -1;
    answers_ensure(a, false); /* else at the first record or look-up */
    return a;
}

void answers_free(struct answers *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    free(a->responses);
    free(a->bot_id);
    free(a->root);
    free(a->dir);
    free(a);
}

int answers_record(struct answers *a, const char *task_id, const char *name)
{
    if (!answers_key_ok(task_id))
        return 0;
    a->broken = false;
    int r = answers_ensure(a, true);
    if (r == 0)
        r = answers_put(a->fd, task_id, name);
    if (r == -ENOENT && answers_removed(a)) { /* removed under us: rebuilt */
        r = answers_ensure(a, true);
        if (r == 0)
            r = answers_put(a->fd, task_id, name);
    }
    if (r == 0)
        a->dirty = true;
    return r;
}

int answers_sync(struct answers *a)
{
    if (!a->dirty || a->fd < 0)
        return 0;
    if (fsync(a->fd) < 0)
        return -errno;
    a->dirty = false;
    return 0;
}

/* The name in the responses folder D of the file ST (a linked pending
 * response) into NAME (CAP bytes): a scan, for recovery only. 0 or -errno. */
static int answers_find_linked(DIR *d, const struct stat *st, char *name, size_t cap)
{
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat est;
        if (e->d_ino == st->st_ino && e->d_name[0] != '.' &&
            fstatat(dirfd(d), e->d_name, &est, AT_SYMLINK_NOFOLLOW) == 0 &&
            est.st_ino == st->st_ino && est.st_dev == st->st_dev &&
            snprintf(name, cap, "%s", e->d_name) < (int)cap)
            return 0;
    }
    return -ENOENT;
}

/* Index the linked response ST of task ID unless the entry of ID is it
 * already or a newer answer. 0 or -errno. */
static int answers_settle(struct answers *a, const char *id, const struct stat *st)
{
    DIR *d = opendir(a->responses);
    if (!d)
        return -errno;
    char name[NAME_MAX + 1];
    struct stat cur;
    int r = 0;
    bool current = answers_target(a->fd, id, name, sizeof name) == 0 &&
                   fstatat(dirfd(d), name, &cur, AT_SYMLINK_NOFOLLOW) == 0 &&
                   ((cur.st_ino == st->st_ino && cur.st_dev == st->st_dev) ||
                    answers_newer(&cur, name, st, ""));
    if (!current)
        r = answers_find_linked(d, st, name, sizeof name);
    closedir(d);
    if (current || r == -ENOENT) /* ENOENT: not linked there, nothing to index */
        return 0;
    return r < 0 ? r : answers_record(a, id, name);
}

int answers_recover(struct answers *a, const char *pending_path)
{
    struct stat st;
    int fd = answers_open_file(AT_FDCWD, pending_path, &st);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd;
    char *id = answers_id_of(fd, &st, a->bot_id);
    close(fd);
    int r = 0;
    if (id) {
        a->broken = false;
        r = answers_ensure(a, true);
    }
    if (id && r == 0)
        r = answers_settle(a, id, &st);
    free(id);
    return r;
}

int answers_find(struct answers *a, const char *task_id, char *name, size_t cap)
{
    if (!answers_key_ok(task_id) || (a->fd < 0 && (a->broken || answers_ensure(a, false) < 0)))
        return -1;
    int r = answers_target(a->fd, task_id, name, cap);
    /* A miss costs one more fstat: was the folder removed under us? */
    if (r == -ENOENT && answers_removed(a) && answers_ensure(a, false) == 0)
        r = answers_target(a->fd, task_id, name, cap);
    return r < 0 ? -1 : response_name_outcome(name, NULL) == 1;
}

int answers_load(struct answers *a, const char *task_id, struct answers_entry *e)
{
    memset(e, 0, sizeof *e);
    char name[NAME_MAX + 1];
    if (answers_find(a, task_id, name, sizeof name) < 0)
        return -ENOENT;
    char *path = xasprintf("%s/%s", a->responses, name);
    struct stat st;
    int fd = answers_open_file(AT_FDCWD, path, &st);
    free(path);
    if (fd < 0)
        return fd;
    e->text = answers_pread(fd, (size_t)st.st_size, &e->len);
    int r = e->text ? 0 : -errno;
    close(fd);
    if (r == 0 && response_read_file(e->text, e->len, &e->view) < 0)
        r = -EBADMSG;
    if (r < 0) {
        answers_entry_clear(e);
        return r;
    }
    e->name = xstrdup(name);
    return 0;
}

void answers_entry_clear(struct answers_entry *e)
{
    free(e->name);
    free(e->text);
    memset(e, 0, sizeof *e);
}
