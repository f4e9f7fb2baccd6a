/*
 * timeline: the durable timeline of one bot and the queries of SPEC §8.
 *
 * The JSONL (<BOT-ID>-timeline.jsonl) is the record: one compact UTF-8 JSON
 * object per finished task, appended in completion order, readable by DEIA
 * tools. The index (<BOT-ID>-timeline.idx) is derived from it: a 64-byte
 * header (magic, the JSONL size it covers, a hash of the JSONL's first bytes,
 * a checksum) and one 32-byte record per indexed line (offset and length of
 * the line, completion time in seconds, a hash of the task id, source and
 * success). Records are in file order, and file order is time order: an
 * entry's timestamp is never earlier than the one before it (a wall clock
 * stepped back gives the next entries the previous timestamp), so a time
 * range is a binary search and "newest first" is reading backwards. Counts per
 * (source, success) class are kept in memory every TIMELINE_BLOCK records, so
 * total_count, offset and sparse filters skip whole blocks: a page costs
 * O(log n + n / TIMELINE_BLOCK + limit), not a scan of the timeline.
 *
 * Crashes: appending is write(2) of the line (O_APPEND), then pwrite(2) of the
 * record and of the header — no fsync, because the timeline is derived from
 * the response files, which are durable. After a crash the JSONL may lack the
 * last entries or end in a torn line, and the index may be behind, ahead or
 * garbage. Opening repairs all of it: a torn last line is cut off (it never
 * was a whole entry), an index that does not check out (header checksum, size,
 * the JSONL's first bytes, records in order, the last record matching its
 * line) is rebuilt from the JSONL into a new file renamed into place, and an
 * index that is merely behind indexes the JSONL's tail. What a crash can lose
 * is the last entries, and the engine may append them again from their
 * response files at recovery: timeline_append() ignores a task_id +
 * response_file that is among the last TIMELINE_DEDUP_WINDOW entries.
 *
 * The supervisor opens timelines as a reader: it maps the worker's index and
 * follows it (timeline_refresh), never writes; it reads what the worker has
 * indexed (after a crash, the rest once the worker is back), and an index
 * that is missing or bad is rebuilt in its memory. The writer never shrinks
 * the index file in place (a rebuild is a new file renamed over it), so a
 * reader's mapping never loses its pages.
 *
 * Merging several bots is a k-way merge by completion time over their
 * indexes (ties: the order the bots are given, then newest appended); the
 * offset is found by a binary search on time over the per-bot counts, so a
 * deep page of the merge is as cheap as the first. timeline_find() scans the
 * 32-byte records newest first by id hash (under a millisecond at a million).
 */
#include "worker/timeline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "common/utf8.h"

#define TIMELINE_MAGIC "HIVETL\0\1"
#define TIMELINE_VERSION 1
#define TIMELINE_HDR_SIZE 64
/* Records per block of class counts. */
#define TIMELINE_BLOCK 256
/* Classes: source * 2 + success. */
#define TIMELINE_CLASSES 6
#define TIMELINE_CANCELLED 8
/* The JSONL's first bytes that identify it to its index. */
#define TIMELINE_HEAD_MAX 4096
/* A line longer than this is not an entry (it is skipped). */
#define TIMELINE_LINE_MAX (16u << 20)
/* How far back appending looks for the same task_id + response_file. */
#define TIMELINE_DEDUP_WINDOW 1024
#define TIMELINE_NONE ((size_t)-1)

/* One indexed line. */
struct timeline_rec {
    uint64_t offset;
    int64_t time;
    uint64_t id_hash;
    uint32_t len;   /* without the newline */
    uint32_t flags; /* class in bits 0-2, TIMELINE_CANCELLED */
};

/* The index file's header. */
struct timeline_hdr {
    char magic[8];
    uint32_t version, rec_size;
    uint64_t jsonl_size, count;
    uint32_t head_len, reserved;
    uint64_t head_hash;
    uint64_t reserved2;
    uint64_t check; /* hash of the 56 bytes before */
};

_Static_assert(sizeof(struct timeline_rec) == 32, "index record layout");
_Static_assert(sizeof(struct timeline_hdr) == TIMELINE_HDR_SIZE, "index header layout");

/* A growing array of records. */
struct timeline_recs {
    struct timeline_rec *v;
    size_t n, cap;
};

struct timeline {
    char *bot_id;
    char *jsonl_path, *idx_path;
    bool writer;
    bool unmade; /* writer: the JSONL did not exist; the first append makes it */
    int jsonl_fd, idx_fd;
    uint64_t jsonl_size; /* bytes of the JSONL indexed (ends after a newline) */
    ino_t jsonl_ino;
    const struct timeline_rec *recs;
    size_t count;
    /* Mapped mode: the index file's records; memory mode: MEM. */
    void *map;
    size_t map_len;
    ino_t idx_ino;
    struct stat idx_seen; /* memory mode: the index file as it was at load */
    bool idx_seen_ok;
    struct timeline_recs mem;
    bool in_memory;
    uint32_t head_len;
    uint64_t head_hash;
    /* cum[k][c]: records of class c among the first k * TIMELINE_BLOCK. */
    uint32_t (*cum)[TIMELINE_CLASSES];
    size_t cum_n, cum_cap;
    uint32_t running[TIMELINE_CLASSES];
    size_t counted; /* records folded into RUNNING */
};

static const char *const timeline_sources[] = {"file", "http", "websocket"};

/* ---- small pure helpers ---- */

/* FNV-1a, 64 bits, continuing from H. */
static uint64_t timeline_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Hash of a task id. */
static uint64_t timeline_id_hash(const char *id)
{
    return timeline_hash(0xcbf29ce484222325ULL, id, strlen(id));
}

/* 0..2 for "file", "http", "websocket", else -1. */
static int timeline_source_index(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, timeline_sources[i]) == 0)
            return i;
    return -1;
}

/* The class of a record. */
static unsigned timeline_class(const struct timeline_rec *r)
{
    return r->flags & 7;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t timeline_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Read exactly N digits at *P into *OUT. */
static bool timeline_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* The zone suffix at P: "", Z, or ±HH[[:]MM] (' ' stands for a '+' that a
 * query string decoded as a space). Seconds east of UTC in *OFF. */
static bool timeline_parse_zone(const char *p, int *off)
{
    *off = 0;
    if (!*p)
        return true;
    if ((*p == 'Z' || *p == 'z') && !p[1])
        return true;
    if (*p != '+' && *p != '-' && *p != ' ')
        return false;
    int sign = *p == '-' ? -1 : 1, hh, mm = 0;
    p++;
    if (!timeline_digits(&p, 2, &hh))
        return false;
    if (*p == ':')
        p++;
    if (*p && !timeline_digits(&p, 2, &mm))
        return false;
    if (*p || hh > 23 || mm > 59)
        return false;
    *off = sign * (hh * 3600 + mm * 60);
    return true;
}

/* The time of day at *P after a date, if any: [Tt ]HH:MM[:SS[.fraction]].
 * *FRAC: a fraction other than zero. False when it is there but bad. */
static bool timeline_parse_clock(const char **p, int *h, int *mi, int *sec, bool *frac)
{
    const char *q = *p;
    *h = *mi = *sec = 0;
    *frac = false;
    if ((*q != 'T' && *q != 't' && *q != ' ') || q[1] < '0' || q[1] > '9')
        return true; /* a date alone (a space here starts a zone) */
    q++;
    if (!timeline_digits(&q, 2, h) || *q++ != ':' || !timeline_digits(&q, 2, mi))
        return false;
    if (*q == ':') {
        q++;
        if (!timeline_digits(&q, 2, sec))
            return false;
        if (*q == '.' || *q == ',') {
            q++;
            if (*q < '0' || *q > '9')
                return false;
            for (; *q >= '0' && *q <= '9'; q++)
                *frac |= *q != '0';
        }
    }
    *p = q;
    return true;
}

int timeline_parse_time(const char *s, bool round_up, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, off;
    bool frac;
    const char *p = s;
    if (!s || !timeline_digits(&p, 4, &y) || *p++ != '-' || !timeline_digits(&p, 2, &mo) ||
        *p++ != '-' || !timeline_digits(&p, 2, &d) ||
        !timeline_parse_clock(&p, &h, &mi, &sec, &frac) || !timeline_parse_zone(p, &off))
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 59)
        return -1;
    *out = timeline_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
           sec - off + (frac && round_up);
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of T (at least 32 bytes). */
static void timeline_format_time(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "1970-01-01T00:00:00Z");
}

json_t *timeline_text(const char *s, size_t len, size_t max)
{
    static const char fffd[] = "\xef\xbf\xbd";
    struct util_buf b = {0};
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_char_len(s + i, len - i);
        const char *piece = n ? s + i : fffd;
        size_t plen = n ? n : 3;
        if (b.len + plen > max)
            break;
        util_buf_add(&b, piece, plen);
        i += n ? n : 1;
    }
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    free(b.data);
    return j;
}

/* At *P (END the limit): the literal LIT, then a JSON string without escapes
 * or control characters, whose bytes go to *S / *N. False when it is not
 * exactly that (the caller then asks jansson). */
static bool timeline_fast_field(const char **p, const char *end, const char *lit, const char **s,
                                size_t *n)
{
    size_t l = strlen(lit);
    if ((size_t)(end - *p) < l || memcmp(*p, lit, l) != 0)
        return false;
    const char *q = *p + l;
    *s = q;
    while (q < end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20)
            return false;
        q++;
    }
    if (q == end)
        return false;
    *n = (size_t)(q - *s);
    *p = q + 1;
    return true;
}

/* The fields the index keeps, read straight from a line as timeline_append()
 * writes it (their order and no escapes), which rebuilding a million-line
 * index needs to be quick; the rest of the line is checked when a page reads
 * it. 0, or -1 when the line has another shape (then jansson decides). */
static int timeline_parse_fast(const char *line, size_t len, int64_t *time_s, int *source,
                               bool *success, uint64_t *id_hash)
{
    const char *p = line, *end = line + len, *id, *bot, *src, *ts;
    size_t idn, botn, srcn, tsn;
    char buf[48];
    if (len < 2 || line[len - 1] != '}' ||
        !timeline_fast_field(&p, end, "{\"task_id\":\"", &id, &idn) ||
        !timeline_fast_field(&p, end, ",\"bot_id\":\"", &bot, &botn) ||
        !timeline_fast_field(&p, end, ",\"source\":\"", &src, &srcn) ||
        !timeline_fast_field(&p, end, ",\"timestamp\":\"", &ts, &tsn) || tsn >= sizeof buf ||
        srcn >= sizeof buf)
        return -1;
    if (end - p >= 16 && memcmp(p, ",\"success\":true,", 16) == 0)
        *success = true;
    else if (end - p >= 17 && memcmp(p, ",\"success\":false,", 17) == 0)
        *success = false;
    else
        return -1;
    memcpy(buf, src, srcn);
    buf[srcn] = '\0';
    if ((*source = timeline_source_index(buf)) < 0)
        return -1;
    memcpy(buf, ts, tsn);
    buf[tsn] = '\0';
    if (timeline_parse_time(buf, false, time_s) != 0)
        return -1;
    *id_hash = timeline_hash(0xcbf29ce484222325ULL, id, idn);
    return 0;
}

int timeline_parse_line(const char *line, size_t len, int64_t *time_s, int *source, bool *success,
                        uint64_t *id_hash)
{
    if (timeline_parse_fast(line, len, time_s, source, success, id_hash) == 0)
        return 0;
    json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
    int rc = -1;
    if (o && json_is_object(o)) {
        const char *id = json_get_str(o, "task_id");
        const char *ts = json_get_str(o, "timestamp");
        json_t *ok = json_object_get(o, "success");
        *source = timeline_source_index(json_get_str(o, "source"));
        if (id && ts && json_is_boolean(ok) && *source >= 0 &&
            timeline_parse_time(ts, false, time_s) == 0) {
            *success = json_is_true(ok);
            *id_hash = timeline_id_hash(id);
            rc = 0;
        }
    }
    json_decref(o);
    return rc;
}

/* ---- class counts per block ---- */

/* Fold records COUNTED..COUNT into the block counts. */
static void timeline_cum_extend(struct timeline *tl)
{
    if (!tl->cum) {
        tl->cum_cap = 64;
        tl->cum = xcalloc(tl->cum_cap, sizeof *tl->cum);
        tl->cum_n = 1;
    }
    for (; tl->counted < tl->count; tl->counted++) {
        tl->running[timeline_class(&tl->recs[tl->counted])]++;
        if ((tl->counted + 1) % TIMELINE_BLOCK)
            continue;
        if (tl->cum_n == tl->cum_cap) {
            tl->cum_cap *= 2;
            tl->cum = xrealloc(tl->cum, tl->cum_cap * sizeof *tl->cum);
        }
        memcpy(tl->cum[tl->cum_n++], tl->running, sizeof tl->running);
    }
}

/* Forget the block counts (the records changed under them). */
static void timeline_cum_reset(struct timeline *tl)
{
    free(tl->cum);
    tl->cum = NULL;
    tl->cum_n = tl->cum_cap = tl->counted = 0;
    memset(tl->running, 0, sizeof tl->running);
}

/* Records of a class in MASK among the first I. */
static size_t timeline_prefix(const struct timeline *tl, size_t i, unsigned mask)
{
    size_t k = i / TIMELINE_BLOCK, n = 0;
    for (unsigned c = 0; c < TIMELINE_CLASSES; c++)
        if (mask >> c & 1)
            n += tl->cum[k][c];
    for (size_t j = k * TIMELINE_BLOCK; j < i; j++)
        n += mask >> timeline_class(&tl->recs[j]) & 1;
    return n;
}

/* Records of a class in MASK in [A, B). */
static size_t timeline_count_range(const struct timeline *tl, size_t a, size_t b, unsigned mask)
{
    return a >= b ? 0 : timeline_prefix(tl, b, mask) - timeline_prefix(tl, a, mask);
}

/* Records of a class in MASK in full block K. */
static size_t timeline_block_count(const struct timeline *tl, size_t k, unsigned mask)
{
    size_t n = 0;
    for (unsigned c = 0; c < TIMELINE_CLASSES; c++)
        if (mask >> c & 1)
            n += tl->cum[k + 1][c] - tl->cum[k][c];
    return n;
}

/* Walk down from TOP (exclusive) to LO past NEED matches of MASK; the
 * position of the NEED-th (TOP when NEED is 0), or TIMELINE_NONE when there
 * are fewer. Blocks without enough matches are skipped whole. */
static size_t timeline_walk_down(const struct timeline *tl, size_t lo, size_t top, size_t need,
                                 unsigned mask)
{
    size_t i = top;
    if (need == 0)
        return top;
    while (i > lo) {
        if (i % TIMELINE_BLOCK == 0 && i >= lo + TIMELINE_BLOCK) {
            size_t c = timeline_block_count(tl, i / TIMELINE_BLOCK - 1, mask);
            if (c < need) {
                need -= c;
                i -= TIMELINE_BLOCK;
                continue;
            }
        }
        i--;
        if ((mask >> timeline_class(&tl->recs[i]) & 1) && --need == 0)
            return i;
    }
    return TIMELINE_NONE;
}

/* First record with time >= T. */
static size_t timeline_lower_bound(const struct timeline *tl, int64_t t)
{
    size_t a = 0, b = tl->count;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (tl->recs[m].time < t)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

/* ---- reading the JSONL ---- */

/* Read exactly LEN bytes at OFF. 0, or -1 (a short file is EIO). */
static int timeline_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* The stored line of record R, parsed; NULL when it no longer parses. */
static json_t *timeline_read_entry(const struct timeline *tl, const struct timeline_rec *r)
{
    char *buf = xmalloc(r->len ? r->len : 1);
    json_t *o = NULL;
    if (timeline_pread_all(tl->jsonl_fd, buf, r->len, r->offset) == 0)
        o = json_loadb(buf, r->len, JSON_ALLOW_NUL, NULL);
    free(buf);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* Append R to OUT. */
static void timeline_recs_push(struct timeline_recs *out, const struct timeline_rec *r)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 1024;
        out->v = xrealloc(out->v, out->cap * sizeof *out->v);
    }
    out->v[out->n++] = *r;
}

/* Append the record of LINE at OFFSET to OUT when it is an entry. */
static void timeline_index_line(const char *line, size_t len, uint64_t offset, int64_t *last,
                                struct timeline_recs *out)
{
    struct timeline_rec r = {.offset = offset, .len = (uint32_t)len};
    int source;
    bool success;
    if (!len || timeline_parse_line(line, len, &r.time, &source, &success, &r.id_hash) != 0)
        return;
    if (r.time < *last)
        r.time = *last; /* file order is time order (see the top of the file) */
    *last = r.time;
    r.flags = (uint32_t)(source * 2 + success);
    timeline_recs_push(out, &r);
}

/* Reading a JSONL in big blocks: BUF holds HAVE bytes from file offset BASE,
 * lines before POS are indexed. */
struct timeline_scanner {
    char *buf;
    size_t cap, have, pos;
    uint64_t base, end; /* END: after the last whole line */
    int64_t last;       /* time of the last record */
    bool skipping;      /* inside a line over TIMELINE_LINE_MAX */
    struct timeline_recs *out;
};

/* Index the whole lines in the scanner's buffer. */
static void timeline_scan_lines(struct timeline_scanner *s)
{
    char *nl;
    while ((nl = memchr(s->buf + s->pos, '\n', s->have - s->pos))) {
        size_t len = (size_t)(nl - (s->buf + s->pos));
        if (!s->skipping)
            timeline_index_line(s->buf + s->pos, len, s->base + s->pos, &s->last, s->out);
        s->skipping = false;
        s->pos += len + 1;
        s->end = s->base + s->pos;
    }
}

/* Make room to read on: slide the partial line to the front, grow the
 * buffer for a long one, or drop one over TIMELINE_LINE_MAX. */
static void timeline_scan_room(struct timeline_scanner *s)
{
    if (s->pos == 0 && s->have == s->cap) {
        if (s->cap < TIMELINE_LINE_MAX) {
            s->cap *= 2;
            s->buf = xrealloc(s->buf, s->cap);
        } else {
            s->skipping = true;
            s->base += s->have;
            s->have = 0;
        }
        return;
    }
    memmove(s->buf, s->buf + s->pos, s->have - s->pos);
    s->base += s->pos;
    s->have -= s->pos;
    s->pos = 0;
}

/* Index the whole lines of FD in [FROM, TO) into OUT; *END gets the end of
 * the last whole line (FROM when none). LAST: the time before FROM. */
static void timeline_scan(int fd, uint64_t from, uint64_t to, int64_t last,
                          struct timeline_recs *out, uint64_t *end)
{
    struct timeline_scanner s = {
        .cap = 1 << 20, .base = from, .end = from, .last = last, .out = out};
    s.buf = xmalloc(s.cap);
    while (s.base + s.have < to) {
        size_t want = s.cap - s.have;
        if (want > to - s.base - s.have)
            want = (size_t)(to - s.base - s.have);
        ssize_t n = pread(fd, s.buf + s.have, want, (off_t)(s.base + s.have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        s.have += (size_t)n;
        timeline_scan_lines(&s);
        timeline_scan_room(&s);
    }
    free(s.buf);
    *end = s.end;
}

/* Cut a torn last line off the JSONL (writer): its bytes never were a whole
 * entry. *SIZE is the file's size, updated. */
static int timeline_cut_torn(int fd, uint64_t *size)
{
    char buf[65536];
    uint64_t end = *size;
    while (end > 0) {
        size_t n = end < sizeof buf ? (size_t)end : sizeof buf;
        if (timeline_pread_all(fd, buf, n, end - n) != 0)
            return -1;
        char *nl = memrchr(buf, '\n', n);
        if (nl) {
            end = end - n + (uint64_t)(nl - buf) + 1;
            break;
        }
        end -= n;
    }
    if (end != *size && ftruncate(fd, (off_t)end) != 0)
        return -1;
    *size = end;
    return 0;
}

/* Hash of the JSONL's first HEAD_LEN bytes; 0 on a read error. */
static uint64_t timeline_head_hash(int fd, uint32_t head_len)
{
    char buf[TIMELINE_HEAD_MAX];
    if (timeline_pread_all(fd, buf, head_len, 0) != 0)
        return 0;
    return timeline_hash(0xcbf29ce484222325ULL, buf, head_len);
}

/* ---- the index file ---- */

/* Fill in H from the timeline's state and seal it with its checksum. */
static void timeline_hdr_make(const struct timeline *tl, struct timeline_hdr *h)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, TIMELINE_MAGIC, 8);
    h->version = TIMELINE_VERSION;
    h->rec_size = sizeof(struct timeline_rec);
    h->jsonl_size = tl->jsonl_size;
    h->count = tl->count;
    h->head_len = tl->head_len;
    h->head_hash = tl->head_hash;
    h->check = timeline_hash(0xcbf29ce484222325ULL, h, offsetof(struct timeline_hdr, check));
}

/* True when H is a sealed header of this version. */
static bool timeline_hdr_ok(const struct timeline_hdr *h)
{
    return memcmp(h->magic, TIMELINE_MAGIC, 8) == 0 && h->version == TIMELINE_VERSION &&
           h->rec_size == sizeof(struct timeline_rec) && h->head_len <= TIMELINE_HEAD_MAX &&
           h->check ==
               timeline_hash(0xcbf29ce484222325ULL, h, offsetof(struct timeline_hdr, check));
}

/* Records FROM..N of V in order and inside COVERED bytes of the JSONL (the
 * shape every index has); the number of leading good records. */
static size_t timeline_recs_good(const struct timeline_rec *v, size_t from, size_t n,
                                 uint64_t covered)
{
    for (size_t i = from; i < n; i++) {
        const struct timeline_rec *r = &v[i];
        if (!r->len || timeline_class(r) >= TIMELINE_CLASSES || r->offset >= covered ||
            r->len >= covered - r->offset) /* the line and its newline lie inside */
            return i;
        if (i > 0 && (r->offset < v[i - 1].offset + v[i - 1].len + 1 || r->time < v[i - 1].time))
            return i;
    }
    return n;
}

/* True when record R's line is the entry R says it is. */
static bool timeline_rec_matches(const struct timeline *tl, const struct timeline_rec *r)
{
    char *buf = xmalloc(r->len + 1);
    bool ok = false;
    int64_t t;
    int source;
    bool success;
    uint64_t h;
    if (timeline_pread_all(tl->jsonl_fd, buf, r->len + 1, r->offset) == 0 && buf[r->len] == '\n' &&
        timeline_parse_line(buf, r->len, &t, &source, &success, &h) == 0)
        ok = h == r->id_hash && (unsigned)(source * 2 + success) == timeline_class(r) &&
             t <= r->time;
    free(buf);
    return ok;
}

/* Map LEN bytes of the index (read-only, shared; populated now so that the
 * first query does not fault the pages in one by one). */
static int timeline_map(struct timeline *tl, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, tl->idx_fd, 0);
    if (m == MAP_FAILED)
        return -1;
    if (tl->map)
        munmap(tl->map, tl->map_len);
    tl->map = m;
    tl->map_len = len;
    tl->recs = (const struct timeline_rec *)((char *)m + TIMELINE_HDR_SIZE);
    return 0;
}

/* Use the index file open on IDX_FD if it checks out against the JSONL of
 * SIZE bytes. 0, or -1 (then nothing is kept of it). */
static int timeline_load_index(struct timeline *tl, uint64_t size)
{
    struct stat st;
    struct timeline_hdr h;
    if (fstat(tl->idx_fd, &st) != 0 || (uint64_t)st.st_size < TIMELINE_HDR_SIZE ||
        timeline_pread_all(tl->idx_fd, &h, sizeof h, 0) != 0 || !timeline_hdr_ok(&h) ||
        h.jsonl_size > size || h.count > (uint64_t)(st.st_size - TIMELINE_HDR_SIZE) / 32 ||
        (h.head_len && timeline_head_hash(tl->jsonl_fd, h.head_len) != h.head_hash))
        return -1;
    if (timeline_map(tl, TIMELINE_HDR_SIZE + h.count * 32 + 1) != 0)
        return -1;
    tl->idx_ino = st.st_ino;
    tl->count = (size_t)h.count;
    tl->jsonl_size = h.jsonl_size;
    tl->head_len = h.head_len;
    tl->head_hash = h.head_hash;
    if (timeline_recs_good(tl->recs, 0, tl->count, h.jsonl_size) != tl->count ||
        (tl->count && (!timeline_rec_matches(tl, &tl->recs[0]) ||
                       !timeline_rec_matches(tl, &tl->recs[tl->count - 1])))) {
        munmap(tl->map, tl->map_len);
        tl->map = NULL;
        tl->recs = NULL;
        tl->count = 0;
        return -1;
    }
    return 0;
}

/* Write HDR (and N records at slot FROM) to the index. 0 or -1. */
static int timeline_write_index(int fd, const struct timeline_rec *v, size_t from, size_t n,
                                const struct timeline_hdr *h)
{
    size_t len = n * sizeof *v;
    off_t at = (off_t)(TIMELINE_HDR_SIZE + from * sizeof *v);
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(fd, (const char *)v + done, len - done, at + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return pwrite(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h ? 0 : -1;
}

/* Switch to memory mode, keeping the records (the index file is no longer
 * written or followed). */
static void timeline_to_memory(struct timeline *tl)
{
    if (tl->in_memory)
        return;
    struct timeline_recs m = {0};
    m.cap = tl->count ? tl->count : 1;
    m.v = xmalloc(m.cap * sizeof *m.v);
    if (tl->count)
        memcpy(m.v, tl->recs, tl->count * sizeof *m.v);
    m.n = tl->count;
    if (tl->map)
        munmap(tl->map, tl->map_len);
    tl->map = NULL;
    tl->mem = m;
    tl->recs = m.v;
    tl->in_memory = true;
}

/* The identity of the JSONL's head, from the current JSONL. */
static void timeline_set_head(struct timeline *tl)
{
    tl->head_len =
        tl->jsonl_size < TIMELINE_HEAD_MAX ? (uint32_t)tl->jsonl_size : TIMELINE_HEAD_MAX;
    tl->head_hash = timeline_head_hash(tl->jsonl_fd, tl->head_len);
}

/* Writer: put the records held in memory into a new index file, rename it
 * over the old one and follow it. On failure memory mode stays. */
static void timeline_persist(struct timeline *tl)
{
    char *tmp = xasprintf("%s.tmp-%d", tl->idx_path, (int)getpid());
    unlink(tmp);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    struct timeline_hdr h;
    struct stat st;
    timeline_hdr_make(tl, &h);
    if (fd < 0 || timeline_write_index(fd, tl->mem.v, 0, tl->mem.n, &h) != 0 ||
        rename(tmp, tl->idx_path) != 0) {
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        free(tmp);
        return;
    }
    free(tmp);
    if (tl->idx_fd >= 0)
        close(tl->idx_fd);
    tl->idx_fd = fd;
    if (fstat(fd, &st) == 0 && timeline_map(tl, TIMELINE_HDR_SIZE + tl->count * 32 + 1) == 0) {
        tl->idx_ino = st.st_ino;
        tl->in_memory = false;
        free(tl->mem.v);
        tl->mem = (struct timeline_recs){0};
    }
}

/* Build the index of the whole JSONL (SIZE bytes) in memory; the writer then
 * puts it in a new index file and follows that. */
static void timeline_rebuild(struct timeline *tl, uint64_t size)
{
    uint64_t end;
    timeline_scan(tl->jsonl_fd, 0, size, INT64_MIN, &tl->mem, &end);
    tl->recs = tl->mem.v;
    tl->count = tl->mem.n;
    tl->jsonl_size = end;
    tl->in_memory = true;
    timeline_set_head(tl);
    if (tl->writer)
        timeline_persist(tl);
}

/* Index the JSONL beyond what the index covers (SIZE bytes now). */
static void timeline_catch_up(struct timeline *tl, uint64_t size)
{
    struct timeline_recs r = {0};
    uint64_t end;
    int64_t last = tl->count ? tl->recs[tl->count - 1].time : INT64_MIN;
    timeline_scan(tl->jsonl_fd, tl->jsonl_size, size, last, &r, &end);
    if (end == tl->jsonl_size) {
        free(r.v);
        return;
    }
    size_t from = tl->count;
    tl->jsonl_size = end;
    if (tl->head_len < TIMELINE_HEAD_MAX)
        timeline_set_head(tl);
    if (!tl->in_memory && tl->writer) {
        struct timeline_hdr h;
        tl->count += r.n;
        timeline_hdr_make(tl, &h);
        tl->count = from;
        if (timeline_write_index(tl->idx_fd, r.v, from, r.n, &h) != 0 ||
            timeline_map(tl, TIMELINE_HDR_SIZE + (from + r.n) * 32 + 1) != 0)
            timeline_to_memory(tl);
    } else {
        timeline_to_memory(tl);
    }
    if (tl->in_memory) {
        for (size_t i = 0; i < r.n; i++)
            timeline_recs_push(&tl->mem, &r.v[i]);
        tl->recs = tl->mem.v;
    }
    tl->count = from + r.n;
    free(r.v);
}

/* ---- open, close, refresh ---- */

/* Drop everything read from the files (keeps names and mode). */
static void timeline_unload(struct timeline *tl)
{
    if (tl->map)
        munmap(tl->map, tl->map_len);
    free(tl->mem.v);
    tl->mem = (struct timeline_recs){0};
    tl->map = NULL;
    tl->map_len = 0;
    tl->recs = NULL;
    tl->count = 0;
    tl->jsonl_size = 0;
    tl->in_memory = false;
    if (tl->idx_fd >= 0)
        close(tl->idx_fd);
    if (tl->jsonl_fd >= 0)
        close(tl->jsonl_fd);
    tl->idx_fd = tl->jsonl_fd = -1;
    timeline_cum_reset(tl);
}

/* The JSONL, opened: the writer's is always a regular file of its own (a
 * symlink or FIFO planted there is replaced); a reader takes nothing else
 * (anything else reads as no file, and its open waits for no FIFO writer). */
static int timeline_open_jsonl(const struct timeline *tl)
{
    if (tl->writer)
        return util_open_append(tl->jsonl_path, O_RDWR, 0644);
    int fd = open(tl->jsonl_path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        errno = ENOENT;
        return -1;
    }
    return fd;
}

/* Open the files and bring the index in line with the JSONL. 0, or -1 with
 * errno when the JSONL cannot be opened (a reader without one is empty). A
 * writer without one is empty too, and makes it (and the index) at the first
 * append, unless MAKE: on an ext4 without a journal each inode a start makes
 * is slow, and a hive's first start made two per bot for an empty timeline. */
static int timeline_load(struct timeline *tl, bool make)
{
    tl->unmade = tl->writer && !make && util_absent(tl->jsonl_path);
    if (tl->unmade) {
        tl->in_memory = true;
        timeline_cum_extend(tl);
        return 0;
    }
    tl->jsonl_fd = timeline_open_jsonl(tl);
    struct stat st;
    if (tl->jsonl_fd < 0 || fstat(tl->jsonl_fd, &st) != 0) {
        int e = errno;
        tl->in_memory = true;
        timeline_cum_extend(tl);
        errno = e;
        return tl->writer || e != ENOENT ? -1 : 0;
    }
    tl->jsonl_ino = st.st_ino;
    uint64_t size = (uint64_t)st.st_size;
    if (tl->writer && timeline_cut_torn(tl->jsonl_fd, &size) != 0)
        return -1;
    tl->idx_fd =
        open(tl->idx_path, (tl->writer ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    tl->idx_seen_ok = tl->idx_fd >= 0 && fstat(tl->idx_fd, &tl->idx_seen) == 0;
    if (tl->idx_seen_ok && !S_ISREG(tl->idx_seen.st_mode)) { /* a FIFO, say: rebuilt over */
        close(tl->idx_fd);
        tl->idx_fd = -1;
    }
    if (tl->idx_fd < 0 || timeline_load_index(tl, size) != 0)
        timeline_rebuild(tl, size);
    else if (tl->writer && tl->jsonl_size < size)
        timeline_catch_up(tl, size);
    timeline_cum_extend(tl);
    return 0;
}

struct timeline *timeline_open(const char *dir, const char *bot_id, bool writer, char *err,
                               size_t errlen)
{
    if (!util_id_valid(bot_id)) {
        snprintf(err, errlen, "invalid bot id");
        return NULL;
    }
    struct timeline *tl = xcalloc(1, sizeof *tl);
    tl->bot_id = xstrdup(bot_id);
    tl->jsonl_path = xasprintf("%s/%s-timeline.jsonl", dir, bot_id);
    tl->idx_path = xasprintf("%s/%s-timeline.idx", dir, bot_id);
    tl->writer = writer;
    tl->jsonl_fd = tl->idx_fd = -1;
    if (timeline_load(tl, false) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", tl->jsonl_path, strerror(errno));
        timeline_close(tl);
        return NULL;
    }
    return tl;
}

void timeline_close(struct timeline *tl)
{
    if (!tl)
        return;
    timeline_unload(tl);
    free(tl->bot_id);
    free(tl->jsonl_path);
    free(tl->idx_path);
    free(tl);
}

const char *timeline_bot_id(const struct timeline *tl)
{
    return tl->bot_id;
}

size_t timeline_count(const struct timeline *tl)
{
    return tl->count;
}

/* Reader, mapped: follow the records the writer added. 0, or -1 when the
 * index must be loaded afresh. */
static int timeline_follow(struct timeline *tl)
{
    struct stat st;
    struct timeline_hdr h;
    if (stat(tl->idx_path, &st) != 0 || st.st_ino != tl->idx_ino)
        return -1;
    int tries = 0;
    while (timeline_pread_all(tl->idx_fd, &h, sizeof h, 0) != 0 || !timeline_hdr_ok(&h))
        if (++tries == 3) /* a header being rewritten reads whole on a retry */
            return -1;
    if (h.count < tl->count || h.count > (uint64_t)(st.st_size - TIMELINE_HDR_SIZE) / 32)
        return -1;
    if (h.count == tl->count)
        return 0;
    if (TIMELINE_HDR_SIZE + h.count * 32 > tl->map_len &&
        timeline_map(tl, TIMELINE_HDR_SIZE + h.count * 32 * 2) != 0)
        return -1;
    size_t good = timeline_recs_good(tl->recs, tl->count, (size_t)h.count, h.jsonl_size);
    if (good == tl->count)
        return 0; /* records not yet visible are taken next time */
    const struct timeline_rec *last = &tl->recs[good - 1];
    tl->jsonl_size = good == h.count ? h.jsonl_size : last->offset + last->len + 1;
    tl->count = good;
    timeline_cum_extend(tl);
    return 0;
}

/* Reader in memory mode: index what the JSONL gained. 0, or -1 when it must
 * be loaded afresh (replaced, shrunk, or an index file appeared). */
static int timeline_follow_memory(struct timeline *tl)
{
    struct stat st;
    bool idx = stat(tl->idx_path, &st) == 0;
    if (idx != tl->idx_seen_ok || tl->jsonl_fd < 0 ||
        (idx && (st.st_ino != tl->idx_seen.st_ino || st.st_size != tl->idx_seen.st_size ||
                 st.st_mtim.tv_nsec != tl->idx_seen.st_mtim.tv_nsec ||
                 st.st_mtim.tv_sec != tl->idx_seen.st_mtim.tv_sec)))
        return -1;
    if (stat(tl->jsonl_path, &st) != 0 || st.st_ino != tl->jsonl_ino ||
        (uint64_t)st.st_size < tl->jsonl_size)
        return -1;
    if ((uint64_t)st.st_size > tl->jsonl_size) {
        timeline_catch_up(tl, (uint64_t)st.st_size);
        timeline_cum_extend(tl);
    }
    return 0;
}

int timeline_refresh(struct timeline *tl)
{
    if (tl->writer)
        return 0;
    int rc = tl->in_memory ? timeline_follow_memory(tl) : timeline_follow(tl);
    if (rc == 0)
        return 0;
    timeline_unload(tl);
    return timeline_load(tl, false);
}

/* ---- appending ---- */

/* Compact UTF-8 JSON of O (durations to the millisecond print short). */
static char *timeline_dump(const json_t *o, size_t *len)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!s) /* only when out of memory, which is fatal elsewhere too */
        s = xstrdup("null");
    *len = strlen(s);
    return s;
}

/* The files_modified array of E. */
static json_t *timeline_files(const struct timeline_entry *e)
{
    json_t *files = json_array();
    for (size_t i = 0; i < e->files_count; i++)
        json_array_append_new(
            files, timeline_text(e->files_modified[i], strlen(e->files_modified[i]), 4096));
    return files;
}

/* Add EXTRA's fields to O, never over one O has. */
static void timeline_add_extra(json_t *o, const json_t *extra)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)extra, key, v)
    {
        if (!json_object_get(o, key))
            json_object_set(o, key, v);
    }
}

/* The JSON line of E (whose task id is ID, as stored) at time T, with its
 * newline. Caller frees. */
static char *timeline_render(const struct timeline *tl, const struct timeline_entry *e,
                             const char *id, int64_t t, size_t *len)
{
    char ts[32];
    timeline_format_time(t, ts, sizeof ts);
    json_t *o = json_object();
    json_object_set_new(o, "task_id", json_string(id));
    json_object_set_new(o, "bot_id", json_string(tl->bot_id));
    json_object_set_new(o, "source", json_string(e->source));
    json_object_set_new(o, "timestamp", json_string(ts));
    json_object_set_new(o, "success", json_boolean(e->success));
    json_object_set_new(o, "response",
                        timeline_text(e->output, e->output ? e->output_len : 0, TIMELINE_TEXT_MAX));
    json_object_set_new(o, "files_modified", timeline_files(e));
    double ms = e->duration_seconds > 0 ? e->duration_seconds * 1000 + 0.5 : 0;
    json_object_set_new(o, "duration_seconds", json_real((double)(int64_t)ms / 1000));
    json_object_set_new(o, "error",
                        e->error && *e->error
                            ? timeline_text(e->error, strlen(e->error), TIMELINE_TEXT_MAX)
                            : json_null());
    json_object_set_new(o, "state",
                        json_string(e->cancelled ? "cancelled"
                                    : e->success ? "done"
                                                 : "failed"));
    json_object_set_new(o, "response_file",
                        e->response_file ? json_string(e->response_file) : json_null());
    timeline_add_extra(o, e->extra);
    char *s = timeline_dump(o, len);
    json_decref(o);
    s = xrealloc(s, *len + 2);
    s[(*len)++] = '\n';
    s[*len] = '\0';
    return s;
}

/* True when one of the last entries is TASK_ID answered in RESPONSE_FILE. */
static bool timeline_seen(const struct timeline *tl, const char *task_id, const char *response_file)
{
    uint64_t h = timeline_id_hash(task_id);
    size_t stop = tl->count > TIMELINE_DEDUP_WINDOW ? tl->count - TIMELINE_DEDUP_WINDOW : 0;
    for (size_t i = tl->count; i-- > stop;) {
        if (tl->recs[i].id_hash != h)
            continue;
        json_t *o = timeline_read_entry(tl, &tl->recs[i]);
        const char *id = o ? json_get_str(o, "task_id") : NULL;
        const char *rf = o ? json_get_str(o, "response_file") : NULL;
        bool same = id && strcmp(id, task_id) == 0 &&
                    (rf && response_file ? strcmp(rf, response_file) == 0 : !rf && !response_file);
        json_decref(o);
        if (same)
            return true;
    }
    return false;
}

/* write(2) all of LINE; on failure the JSONL is cut back to OFF. */
static int timeline_write_line(struct timeline *tl, const char *line, size_t len, uint64_t off)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = write(tl->jsonl_fd, line + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            if (ftruncate(tl->jsonl_fd, (off_t)off) != 0) {
                /* the torn line is cut at the next open */
            }
            errno = e;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Add record R to the index (file, else memory). */
static void timeline_add_rec(struct timeline *tl, const struct timeline_rec *r)
{
    if (!tl->in_memory) {
        struct timeline_hdr h;
        tl->count++;
        timeline_hdr_make(tl, &h);
        tl->count--;
        size_t need = TIMELINE_HDR_SIZE + (tl->count + 1) * 32;
        if (timeline_write_index(tl->idx_fd, r, tl->count, 1, &h) == 0 &&
            (need <= tl->map_len || timeline_map(tl, need * 2) == 0)) {
            tl->count++;
            return;
        }
        timeline_to_memory(tl);
    }
    timeline_recs_push(&tl->mem, r);
    tl->recs = tl->mem.v;
    tl->count = tl->mem.n;
}

/* S as it is stored: valid UTF-8, at most 1 KiB. Caller frees. */
static char *timeline_clean(const char *s)
{
    json_t *j = timeline_text(s, strlen(s), 1024);
    char *out = xstrdup(json_string_value(j));
    json_decref(j);
    return out;
}

/* Write the line of E (id ID, time T) and index it. 0, or -1 with errno. */
static int timeline_append_line(struct timeline *tl, const struct timeline_entry *e, const char *id,
                                int64_t t)
{
    size_t len;
    char *line = timeline_render(tl, e, id, t, &len);
    uint64_t off = tl->jsonl_size;
    int rc = -1;
    if (len - 1 > TIMELINE_LINE_MAX) /* a rebuild would skip it */
        errno = E2BIG;
    else
        rc = timeline_write_line(tl, line, len, off);
    free(line);
    if (rc != 0)
        return -1;
    struct timeline_rec r = {.offset = off,
                             .time = t,
                             .id_hash = timeline_id_hash(id),
                             .len = (uint32_t)(len - 1),
                             .flags =
                                 (uint32_t)(timeline_source_index(e->source) * 2 + e->success) |
                                 (e->cancelled ? TIMELINE_CANCELLED : 0)};
    tl->jsonl_size += len;
    if (tl->head_len < TIMELINE_HEAD_MAX)
        timeline_set_head(tl);
    timeline_add_rec(tl, &r);
    timeline_cum_extend(tl);
    return 0;
}

/* Writer: make the JSONL and its index, as an open did before the first
 * entry (the JSONL, then a new index renamed into place; no fsync: the
 * timeline is derived from the response files). 0, or -1 with errno (the
 * next append tries again). */
static int timeline_make(struct timeline *tl)
{
    timeline_unload(tl);
    if (timeline_load(tl, true) == 0)
        return 0;
    int e = errno;
    timeline_unload(tl);
    tl->unmade = true;
    tl->in_memory = true;
    timeline_cum_extend(tl);
    errno = e;
    return -1;
}

int timeline_append(struct timeline *tl, const struct timeline_entry *e)
{
    if (!tl->writer || !e->task_id || timeline_source_index(e->source) < 0) {
        errno = EINVAL;
        return -1;
    }
    if (tl->unmade && timeline_make(tl) != 0)
        return -1;
    if (tl->jsonl_fd < 0) {
        errno = EINVAL;
        return -1;
    }
    char *id = timeline_clean(e->task_id);
    char *rf = e->response_file ? timeline_clean(e->response_file) : NULL;
    int rc = 1;
    if (!timeline_seen(tl, id, rf)) {
        int64_t t = e->finished_wall_ns / 1000000000;
        if (tl->count && t < tl->recs[tl->count - 1].time)
            t = tl->recs[tl->count - 1].time; /* file order is time order */
        struct timeline_entry stored = *e;
        stored.response_file = rf;
        rc = timeline_append_line(tl, &stored, id, t);
    }
    free(id);
    free(rf);
    return rc;
}

json_t *timeline_find(struct timeline *tl, const char *task_id)
{
    timeline_refresh(tl);
    uint64_t h = timeline_id_hash(task_id);
    for (size_t i = tl->count; i-- > 0;) {
        if (tl->recs[i].id_hash != h)
            continue;
        json_t *o = timeline_read_entry(tl, &tl->recs[i]);
        const char *id = o ? json_get_str(o, "task_id") : NULL;
        if (id && strcmp(id, task_id) == 0)
            return o;
        json_decref(o);
    }
    return NULL;
}

/* ---- the query string ---- */

/* Value of a hex digit, or -1. */
static int timeline_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode S[0..LEN) ('+' is a space) into a new string; NULL when an
 * escape is bad or decodes to NUL. */
static char *timeline_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? timeline_hex(s[i + 1]) : -1;
            int lo = hi >= 0 ? timeline_hex(s[i + 2]) : -1;
            if (lo < 0 || hi * 16 + lo == 0) {
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return out;
}

/* A whole number in 0..MAX from S, or -1. */
static long long timeline_parse_uint(const char *s, long long max)
{
    long long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    return v;
}

/* Apply KEY=VAL to Q. 0, or -1 with the 400 detail in ERR. */
static int timeline_query_param(struct timeline_query *q, const char *key, const char *val,
                                char *err, size_t errlen)
{
    long long v;
    if (strcmp(key, "limit") == 0) {
        if ((v = timeline_parse_uint(val, TIMELINE_LIMIT_MAX)) < 1)
            return snprintf(err, errlen, "limit must be a whole number from 1 to %d",
                            TIMELINE_LIMIT_MAX),
                   -1;
        q->limit = (size_t)v;
    } else if (strcmp(key, "offset") == 0) {
        if ((v = timeline_parse_uint(val, 1LL << 48)) < 0)
            return snprintf(err, errlen, "offset must be a non-negative whole number"), -1;
        q->offset = (size_t)v;
    } else if (strcmp(key, "source") == 0) {
        if ((q->source = timeline_source_index(val)) < 0)
            return snprintf(err, errlen, "source must be file, http or websocket"), -1;
    } else if (strcmp(key, "success") == 0) {
        if (strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0)
            q->success = 1;
        else if (strcasecmp(val, "false") == 0 || strcmp(val, "0") == 0)
            q->success = 0;
        else
            return snprintf(err, errlen, "success must be true or false"), -1;
    } else if (strcmp(key, "start_time") == 0 || strcmp(key, "end_time") == 0) {
        bool start = key[0] == 's';
        if (timeline_parse_time(val, start, start ? &q->start : &q->end) != 0)
            return snprintf(err, errlen, "%s must be an ISO-8601 time such as 2026-12-03T19:11:28Z",
                            key),
                   -1;
        *(start ? &q->has_start : &q->has_end) = true;
    } else if (strcmp(key, "bot") == 0) {
        if (!util_id_valid(val))
            return snprintf(err, errlen, "bot must be a bot id"), -1;
        free(q->bot);
        q->bot = xstrdup(val);
    }
    return 0; /* other parameters are ignored, as web frameworks do */
}

int timeline_query_parse(const char *qs, struct timeline_query *q, char *err, size_t errlen)
{
    *q = (struct timeline_query){.limit = TIMELINE_LIMIT_DEFAULT, .source = -1, .success = -1};
    for (const char *p = qs ? qs : ""; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        char *key = timeline_decode(p, klen);
        char *val = eq ? timeline_decode(eq + 1, n - klen - 1) : xstrdup("");
        int rc = key && val ? timeline_query_param(q, key, val, err, errlen) : -1;
        if (!key || !val)
            snprintf(err, errlen, "invalid query string");
        free(key);
        free(val);
        if (rc != 0)
            return -1;
        p += n + (p[n] == '&');
    }
    if (q->has_start && q->has_end && q->start > q->end)
        return snprintf(err, errlen, "start_time is after end_time"), -1;
    return 0;
}

void timeline_query_clear(struct timeline_query *q)
{
    free(q->bot);
    q->bot = NULL;
}

/* ---- pages: one bot, or a k-way merge of several ---- */

/* One bot's part of a query: matching records lie in [lo, hi). */
struct timeline_view {
    struct timeline *tl;
    size_t lo, hi;
    size_t top;  /* candidates lie below */
    size_t cand; /* next candidate, or TIMELINE_NONE */
};

/* The class mask of Q's source and success filters. */
static unsigned timeline_mask(const struct timeline_query *q)
{
    unsigned m = 0;
    for (int s = 0; s < 3; s++)
        for (int ok = 0; ok < 2; ok++)
            if ((q->source < 0 || q->source == s) && (q->success < 0 || q->success == ok))
                m |= 1u << (s * 2 + ok);
    return m;
}

/* Matches in V with time >= T. */
static size_t timeline_count_from(const struct timeline_view *v, int64_t t, unsigned mask)
{
    size_t a = timeline_lower_bound(v->tl, t);
    return timeline_count_range(v->tl, a > v->lo ? a : v->lo, v->hi, mask);
}

/* Total matches with time >= T over the views. */
static size_t timeline_total_from(const struct timeline_view *v, size_t n, int64_t t, unsigned mask)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += timeline_count_from(&v[i], t, mask);
    return sum;
}

/* Place every view's TOP past the first OFFSET matches of the merged order
 * (time descending, then view order, then newest first). OFFSET < total. */
static void timeline_skip(struct timeline_view *v, size_t n, size_t offset, unsigned mask)
{
    int64_t lo_t = INT64_MAX, hi_t = INT64_MIN;
    for (size_t i = 0; i < n; i++)
        if (v[i].lo < v[i].hi) {
            if (v[i].tl->recs[v[i].lo].time < lo_t)
                lo_t = v[i].tl->recs[v[i].lo].time;
            if (v[i].tl->recs[v[i].hi - 1].time > hi_t)
                hi_t = v[i].tl->recs[v[i].hi - 1].time;
        }
    while (lo_t < hi_t) { /* the time of the OFFSET-th match */
        int64_t mid = lo_t + (hi_t - lo_t + 1) / 2;
        if (timeline_total_from(v, n, mid, mask) > offset)
            lo_t = mid;
        else
            hi_t = mid - 1;
    }
    size_t left = offset - timeline_total_from(v, n, lo_t + 1, mask);
    for (size_t i = 0; i < n; i++) {
        size_t a = timeline_lower_bound(v[i].tl, lo_t), b = timeline_lower_bound(v[i].tl, lo_t + 1);
        a = a > v[i].lo ? a : v[i].lo;
        b = b < v[i].hi ? b : v[i].hi;
        b = b > a ? b : a;
        size_t c = timeline_count_range(v[i].tl, a, b, mask);
        if (left >= c) {
            v[i].top = a;
            left -= c;
        } else {
            v[i].top = timeline_walk_down(v[i].tl, a, b, left, mask);
            left = 0;
        }
    }
}

/* The entry of record POS of V as the answer shows it. */
static json_t *timeline_page_entry(const struct timeline_view *v, size_t pos)
{
    const struct timeline_rec *r = &v->tl->recs[pos];
    json_t *o = timeline_read_entry(v->tl, r);
    if (o)
        return o;
    /* The line changed under its index: say so rather than drop the row. */
    char ts[32];
    timeline_format_time(r->time, ts, sizeof ts);
    unsigned c = timeline_class(r);
    return json_pack("{s:n,s:s,s:s,s:s,s:b,s:s,s:[],s:f,s:s}", "task_id", "bot_id", v->tl->bot_id,
                     "source", timeline_sources[c / 2], "timestamp", ts, "success", (int)(c & 1),
                     "response", "", "files_modified", "duration_seconds", 0.0, "error",
                     "timeline entry unreadable");
}

/* The page of Q over the views, newest first; the total in *TOTAL. */
static json_t *timeline_page(struct timeline_view *v, size_t n, const struct timeline_query *q,
                             size_t *total)
{
    unsigned mask = timeline_mask(q);
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        struct timeline *tl = v[i].tl;
        v[i].lo = q->has_start ? timeline_lower_bound(tl, q->start) : 0;
        v[i].hi = q->has_end ? timeline_lower_bound(tl, q->end + 1) : tl->count;
        v[i].hi = v[i].hi > v[i].lo ? v[i].hi : v[i].lo;
        v[i].top = v[i].hi;
        *total += timeline_count_range(tl, v[i].lo, v[i].hi, mask);
    }
    json_t *entries = json_array();
    if (q->offset >= *total)
        return entries;
    if (q->offset)
        timeline_skip(v, n, q->offset, mask);
    for (size_t i = 0; i < n; i++)
        v[i].cand = timeline_walk_down(v[i].tl, v[i].lo, v[i].top, 1, mask);
    for (size_t k = 0; k < q->limit; k++) {
        size_t best = TIMELINE_NONE;
        for (size_t i = 0; i < n; i++)
            if (v[i].cand != TIMELINE_NONE &&
                (best == TIMELINE_NONE ||
                 v[i].tl->recs[v[i].cand].time > v[best].tl->recs[v[best].cand].time))
                best = i;
        if (best == TIMELINE_NONE)
            break;
        json_array_append_new(entries, timeline_page_entry(&v[best], v[best].cand));
        v[best].top = v[best].cand;
        v[best].cand = timeline_walk_down(v[best].tl, v[best].lo, v[best].top, 1, mask);
    }
    return entries;
}

/* A 400 answer with DETAIL. */
static int timeline_bad_request(const char *detail, char **body, size_t *len)
{
    json_t *o = json_detail(detail);
    *body = timeline_dump(o, len);
    json_decref(o);
    return 400;
}

json_t *timeline_query_run(struct timeline *const *tls, size_t n, const struct timeline_query *q)
{
    struct timeline_view *v = xcalloc(n ? n : 1, sizeof *v);
    size_t nv = 0, total;
    for (size_t i = 0; i < n; i++) {
        if (q->bot && strcmp(q->bot, tls[i]->bot_id) != 0)
            continue;
        timeline_refresh(tls[i]);
        v[nv++].tl = tls[i];
    }
    json_t *entries = timeline_page(v, nv, q, &total);
    free(v);
    char now[40];
    util_iso_utc(now, sizeof now, util_wall_ns());
    size_t count = json_array_size(entries);
    json_t *o = json_object();
    json_object_set_new(o, "bot_id", q->bot ? json_string(q->bot) : json_null());
    json_object_set_new(o, "total_count", json_integer((json_int_t)total));
    json_object_set_new(o, "entries_count", json_integer((json_int_t)count));
    json_object_set_new(o, "offset", json_integer((json_int_t)q->offset));
    json_object_set_new(o, "limit", json_integer((json_int_t)q->limit));
    json_object_set_new(o, "has_more", json_boolean(q->offset + count < total));
    json_object_set_new(o, "entries", entries);
    json_object_set_new(o, "timestamp", json_string(now));
    return o;
}

int timeline_answer(struct timeline *tl, const char *qs, char **body, size_t *len)
{
    return timeline_answer_merged(&tl, 1, qs, tl->bot_id, body, len);
}

int timeline_answer_merged(struct timeline *const *tls, size_t n, const char *qs, const char *bot,
                           char **body, size_t *len)
{
    struct timeline_query q;
    char err[160];
    if (timeline_query_parse(qs, &q, err, sizeof err) != 0) {
        timeline_query_clear(&q);
        return timeline_bad_request(err, body, len);
    }
    if (bot) {
        free(q.bot);
        q.bot = xstrdup(bot);
    }
    json_t *o = timeline_query_run(tls, n, &q);
    *body = timeline_dump(o, len);
    json_decref(o);
    timeline_query_clear(&q);
    return 200;
}
