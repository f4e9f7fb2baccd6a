/*
 * evlog: owns the on-disk format of numbered event logs (two generations of
 * JSON lines). Losing the newest lines to a power cut is acceptable (readers
 * then resync); a half line is never left for a reader: a short write is cut
 * back and a crash's unfinished line is cut at the next open.
 */
#include "common/evlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct evlog {
    char *path, *prev_path;
    char *key;
    int fd;
    off_t size;
    uint64_t last;
    bool warned; /* a failure to open or write was told (until it opens again) */
};

/* Read the whole file PATH (bounded); NULL when it cannot be read. */
static char *evlog_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct util_buf b = {0};
    char chunk[65536];
    ssize_t n;
    while (b.len < 4 * (size_t)EVLOG_FILE_MAX && (n = read(fd, chunk, sizeof chunk)) > 0)
        util_buf_add(&b, chunk, (size_t)n);
    close(fd);
    *len = b.len;
    return b.data ? b.data : xstrdup("");
}

/* The number of LINE under KEY (0: none), with *OUT its object (caller
 * decrefs) when it has one. */
static uint64_t evlog_line_n(const char *key, const char *line, size_t len, json_t **out)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    json_t *s = json_object_get(o, key);
    uint64_t n =
        json_is_integer(s) && json_integer_value(s) > 0 ? (uint64_t)json_integer_value(s) : 0;
    if (out && n)
        *out = o;
    else
        json_decref(o);
    return n;
}

/* Every complete numbered line of TEXT over SINCE to CB (up to *LEFT when
 * it is not NULL); *FIRST gets the first number seen if unset. */
static void evlog_each(const struct evlog *lg, const char *text, size_t len, uint64_t since,
                       size_t *left, uint64_t *first, evlog_line_cb cb, void *arg)
{
    size_t i = 0;
    while (i < len && (!left || *left)) {
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl)
            break; /* unfinished: not a line yet */
        size_t end = (size_t)(nl - text);
        json_t *o = NULL;
        uint64_t n = evlog_line_n(lg->key, text + i, end - i, &o);
        if (n && first && !*first)
            *first = n;
        if (n > since && cb) {
            cb(n, o, text + i, end - i, arg);
            if (left)
                --*left;
        }
        json_decref(o);
        i = end + 1;
    }
}

/* Track the last number while scanning. */
static void evlog_scan_last(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)obj, (void)line, (void)len;
    struct evlog *lg = arg;
    lg->last = n;
}

/* The scan at open: both generations to the owner, the last number kept. */
struct evlog_scan {
    struct evlog *lg;
    evlog_line_cb cb;
    void *arg;
};

static void evlog_scan_cb(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    struct evlog_scan *s = arg;
    evlog_scan_last(n, obj, line, len, s->lg);
    if (s->cb)
        s->cb(n, obj, line, len, s->arg);
}

/* Where the whole lines of the file FD end: after its last '\n' (0 when it
 * has none), found by reading back from its end in chunks. -1 when it
 * cannot be read. */
static off_t evlog_whole_end(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    char chunk[4096];
    for (off_t end = st.st_size; end > 0;) {
        size_t want = end > (off_t)sizeof chunk ? sizeof chunk : (size_t)end;
        if (pread(fd, chunk, want, end - (off_t)want) != (ssize_t)want)
            return -1;
        const char *nl = memrchr(chunk, '\n', want);
        if (nl)
            return end - (off_t)want + (nl - chunk) + 1;
        end -= (off_t)want;
    }
    return 0;
}

/* The number of the last numbered line among the first END bytes of FD
 * (whole lines), 0 when none: read back from END, a window at a time, the
 * window doubled until it holds a whole numbered line. A busy bot's log is
 * megabytes, and every start of its worker only needs this. */
static uint64_t evlog_last_in(const struct evlog *lg, int fd, off_t end)
{
    for (size_t win = 65536; end > 0; win *= 2) {
        off_t start = end > (off_t)win ? end - (off_t)win : 0;
        size_t len = (size_t)(end - start);
        char *buf = xmalloc(len);
        if (pread(fd, buf, len, start) != (ssize_t)len) {
            free(buf);
            return 0;
        }
        uint64_t n = 0;
        size_t stop = len; /* BUF[..stop) holds the lines not looked at yet */
        while (!n && stop > 0) {
            const char *nl = stop > 1 ? memrchr(buf, '\n', stop - 1) : NULL;
            if (!nl && start > 0)
                break; /* the window starts inside this line: a bigger one */
            size_t from = nl ? (size_t)(nl - buf) + 1 : 0;
            n = evlog_line_n(lg->key, buf + from, stop - 1 - from, NULL);
            stop = from;
        }
        free(buf);
        if (n || start == 0 || stop == 0)
            return n;
        end = start + (off_t)stop; /* what is left to look at, whole lines */
    }
    return 0;
}

/* The text of PATH after MARK (caller frees; *LEN its length) when PATH is
 * the file MARK names: its inode, at least that long, and its last line
 * before the mark numbered as the mark says (an inode number is reused
 * once its file is gone). NULL otherwise, with *SAME false. */
static char *evlog_slurp_after(const struct evlog *lg, const char *path,
                               const struct evlog_mark *mark, size_t *len, bool *same)
{
    *same = false;
    if (!mark || mark->size < 0)
        return NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || (unsigned long long)st.st_ino != mark->ino ||
        st.st_size < mark->size || evlog_last_in(lg, fd, (off_t)mark->size) != mark->last) {
        close(fd);
        return NULL;
    }
    struct util_buf b = {0};
    util_buf_add(&b, "", 0);
    char chunk[65536];
    off_t at = (off_t)mark->size;
    ssize_t n;
    while (b.len < 4 * (size_t)EVLOG_FILE_MAX && (n = pread(fd, chunk, sizeof chunk, at)) > 0) {
        util_buf_add(&b, chunk, (size_t)n);
        at += n;
    }
    close(fd);
    *same = true;
    *len = b.len;
    return b.data;
}

/* The scan at open: every line, or those after MARK (evlog_open_after). */
static bool evlog_scan_open(struct evlog *lg, const struct evlog_mark *mark, evlog_line_cb scan,
                            void *arg)
{
    struct evlog_scan s = {lg, scan, arg};
    size_t len = 0;
    bool in_prev = false, in_cur = false;
    char *prev = evlog_slurp_after(lg, lg->prev_path, mark, &len, &in_prev);
    if (prev) { /* cut since the mark: the rest of that file, then all of the new */
        evlog_each(lg, prev, len, 0, NULL, NULL, evlog_scan_cb, &s);
        free(prev);
    }
    char *cur = in_prev ? NULL : evlog_slurp_after(lg, lg->path, mark, &len, &in_cur);
    if (!in_prev && !in_cur) { /* no mark, or the log moved on past it: all */
        if ((prev = evlog_slurp(lg->prev_path, &len))) {
            evlog_each(lg, prev, len, 0, NULL, NULL, evlog_scan_cb, &s);
            free(prev);
        }
    }
    size_t from = in_cur ? (size_t)mark->size : 0;
    if (!in_cur)
        cur = evlog_slurp(lg->path, &len);
    if (cur) {
        size_t whole = (size_t)lg->size > from ? (size_t)lg->size - from : 0;
        evlog_each(lg, cur, len < whole ? len : whole, 0, NULL, NULL, evlog_scan_cb, &s);
        free(cur);
    }
    return in_prev || in_cur;
}

bool evlog_mark(const struct evlog *lg, struct evlog_mark *out)
{
    struct stat st;
    if (lg->fd < 0 || fstat(lg->fd, &st) < 0)
        return false;
    *out = (struct evlog_mark){(unsigned long long)st.st_ino, (long long)lg->size, lg->last};
    return true;
}

/* Open the file for appending (made when missing; never through a link),
 * after its last whole line: an unfinished one a crash left is cut. When it
 * cannot be had the next append tries again: a passing shortage (no
 * descriptors, a full disk, a folder removed for a while) must not end the
 * log for the rest of the run, now that its first line makes it. */
static void evlog_open_write(struct evlog *lg)
{
    lg->fd = util_open_append(lg->path, O_RDWR, 0644);
    if (lg->fd < 0) {
        if (!lg->warned)
            log_warn("cannot open the events file %s: %s", lg->path, strerror(errno));
        lg->warned = true;
        return;
    }
    lg->warned = false;
    struct stat st;
    off_t whole = evlog_whole_end(lg->fd);
    if (whole >= 0 && fstat(lg->fd, &st) == 0 && whole < st.st_size &&
        ftruncate(lg->fd, whole) < 0) /* a crash's unfinished last line */
        log_warn("cannot cut the unfinished last line of %s: %s", lg->path, strerror(errno));
    lg->size = whole > 0 ? whole : 0;
}

struct evlog *evlog_open(const char *path, const char *key, evlog_line_cb scan, void *arg)
{
    return evlog_open_after(path, key, NULL, scan, arg, NULL);
}

struct evlog *evlog_open_after(const char *path, const char *key, const struct evlog_mark *mark,
                               evlog_line_cb scan, void *arg, bool *after)
{
    struct evlog *lg = xcalloc(1, sizeof *lg);
    lg->path = xstrdup(path);
    lg->prev_path = xasprintf("%s.1", path);
    lg->key = xstrdup(key);
    /* Nothing at PATH: the first append makes the file, so that a log
     * nothing was written to costs no inode (on an ext4 without a journal
     * each new one is slow; a hive's first start makes one per bot). Absent
     * reads as empty everywhere. */
    lg->fd = -1;
    if (!util_absent(path))
        evlog_open_write(lg);
    int rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (lg->fd < 0) { /* read up to its last whole line all the same */
        off_t whole = rd >= 0 ? evlog_whole_end(rd) : -1;
        lg->size = whole > 0 ? whole : 0;
    }
    bool skipped = scan && evlog_scan_open(lg, mark, scan, arg); /* oldest first */
    if (after)
        *after = skipped;
    if (!lg->last) { /* the last number from the newest lines */
        lg->last = rd >= 0 ? evlog_last_in(lg, rd, lg->size) : 0;
        int prev =
            lg->last ? -1 : open(lg->prev_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        off_t prev_end = prev >= 0 ? evlog_whole_end(prev) : -1;
        if (prev_end > 0)
            lg->last = evlog_last_in(lg, prev, prev_end);
        if (prev >= 0)
            close(prev);
    }
    if (rd >= 0)
        close(rd);
    return lg;
}

void evlog_close(struct evlog *lg)
{
    if (!lg)
        return;
    if (lg->fd >= 0)
        close(lg->fd);
    free(lg->path);
    free(lg->prev_path);
    free(lg->key);
    free(lg);
}

uint64_t evlog_last(const struct evlog *lg)
{
    return lg->last;
}

/* Start a new generation: the current file becomes the previous one. */
static void evlog_rotate(struct evlog *lg)
{
    if (rename(lg->path, lg->prev_path) < 0) {
        log_warn("cannot rotate %s: %s", lg->path, strerror(errno));
        return;
    }
    close(lg->fd);
    lg->fd = open(lg->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lg->fd < 0)
        log_warn("cannot open the events file %s: %s", lg->path, strerror(errno));
    lg->size = 0;
}

void evlog_append(struct evlog *lg, const char *line, size_t len, uint64_t n)
{
    lg->last = n;
    if (lg->fd < 0) /* the first line of a log that did not exist makes it */
        evlog_open_write(lg);
    if (lg->fd >= 0 && lg->size > 0 && lg->size + (off_t)len + 1 > (off_t)EVLOG_FILE_MAX)
        evlog_rotate(lg);
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
    ssize_t w = lg->fd >= 0 ? writev(lg->fd, iov, 2) : -1;
    if (w == (ssize_t)len + 1) {
        lg->size += w;
        return;
    }
    int err = w < 0 ? errno : 0;
    if (w > 0 && ftruncate(lg->fd, lg->size) < 0) /* no half line for readers */
        err = errno;
    if (!lg->warned) {
        lg->warned = true;
        log_warn("cannot write the events file %s: %s", lg->path,
                 err ? strerror(err) : "short write");
    }
}

void evlog_replay(struct evlog *lg, uint64_t since, size_t max, uint64_t *first, evlog_line_cb cb,
                  void *arg)
{
    const char *paths[] = {lg->prev_path, lg->path};
    size_t left = max;
    *first = 0;
    for (size_t k = 0; k < 2; k++) {
        size_t len;
        char *text = evlog_slurp(paths[k], &len);
        if (text)
            evlog_each(lg, text, len, since, max ? &left : NULL, first, cb, arg);
        free(text);
        if (max && !left)
            break;
    }
}

/* The number of the first numbered line among the first bytes of PATH. */
static uint64_t evlog_first_in(const struct evlog *lg, const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    uint64_t first = 0;
    if (n > 0)
        evlog_each(lg, buf, (size_t)n, 0, NULL, &first, NULL, NULL);
    return first;
}

uint64_t evlog_first(const struct evlog *lg)
{
    uint64_t first = evlog_first_in(lg, lg->prev_path);
    return first ? first : evlog_first_in(lg, lg->path);
}

bool evlog_must_resync(uint64_t since, uint64_t first, uint64_t last)
{
    if (since == 0)
        return false;
    if (since > last)
        return true;
    return first ? first > since + 1 : since < last;
}
