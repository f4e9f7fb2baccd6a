/*
 * fuzz_timeline: the timeline's parsers (worker/timeline.c) on arbitrary
 * bytes. The input's first line is a GET /api/timeline query string; the
 * rest is a timeline JSONL as it might be found on disk (torn, foreign,
 * garbage). The query goes through timeline_query_parse() and the time
 * parser, each line through timeline_parse_line(), and the file is opened
 * as the worker does (torn tail cut, index built) and as the supervisor does,
 * then answered. The promises checked: a parsed query is in range, a refused
 * one says why, both opens index the same entries, never more than the lines
 * there are, and every answer is JSON of the promised shape.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/timeline.h"

static char fuzz_dir[512];

/* A promise of timeline.h broken: stop with the reason. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_timeline: %s\n", what);
    abort();
}

/* Remove the scratch folder at exit. */
static void fuzz_cleanup(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/BOT-F-timeline.jsonl", fuzz_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/BOT-F-timeline.idx", fuzz_dir);
    unlink(path);
    rmdir(fuzz_dir);
}

/* The scratch folder ($HIVE_FUZZ_SCRATCH, else tmpfs, else /tmp). */
static const char *fuzz_scratch(void)
{
    if (fuzz_dir[0])
        return fuzz_dir;
    const char *tmp = getenv("HIVE_FUZZ_SCRATCH");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/hive-fuzz-timeline-XXXXXX", tmp);
    if (!mkdtemp(fuzz_dir))
        fuzz_fail("mkdtemp");
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* The query parser's promises on QS. */
static void fuzz_query(const char *qs)
{
    struct timeline_query q;
    char err[160] = "";
    if (timeline_query_parse(qs, &q, err, sizeof err) == 0) {
        if (q.limit < 1 || q.limit > TIMELINE_LIMIT_MAX || q.source < -1 || q.source > 2 ||
            q.success < -1 || q.success > 1)
            fuzz_fail("a parsed query is out of range");
        if (q.has_start && q.has_end && q.start > q.end)
            fuzz_fail("a parsed query starts after it ends");
    } else if (!err[0]) {
        fuzz_fail("a refused query gave no reason");
    }
    timeline_query_clear(&q);
    int64_t t;
    if (timeline_parse_time(qs, false, &t) == 0) {
        int64_t up;
        if (timeline_parse_time(qs, true, &up) != 0 || up < t || up > t + 1)
            fuzz_fail("rounding up disagrees with rounding down");
    }
}

/* Check an answer: 200 with the §8 shape, or 400 with a detail. */
static void fuzz_answer(int status, const char *body, size_t len, size_t count)
{
    json_t *o = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    if (!o || !json_is_object(o))
        fuzz_fail("an answer is not a JSON object");
    if (status == 400) {
        if (!json_is_string(json_object_get(o, "detail")))
            fuzz_fail("a 400 has no detail");
    } else if (status == 200) {
        json_t *e = json_object_get(o, "entries");
        json_int_t total = json_integer_value(json_object_get(o, "total_count"));
        if (!json_is_array(e) || total < 0 || (size_t)total > count ||
            json_array_size(e) > (size_t)total ||
            (json_int_t)json_array_size(e) !=
                json_integer_value(json_object_get(o, "entries_count")))
            fuzz_fail("a 200 answer does not add up");
    } else {
        fuzz_fail("an answer is neither 200 nor 400");
    }
    json_decref(o);
}

/* Write the JSONL, open it both ways, answer QS. */
static void fuzz_file(const char *qs, const uint8_t *data, size_t size)
{
    const char *dir = fuzz_scratch();
    char path[600];
    snprintf(path, sizeof path, "%s/BOT-F-timeline.idx", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/BOT-F-timeline.jsonl", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        fuzz_fail("cannot write the scratch JSONL");
    close(fd);
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';

    char err[256];
    struct timeline *w = timeline_open(dir, "BOT-F", true, err, sizeof err);
    if (!w)
        fuzz_fail(err);
    size_t count = timeline_count(w);
    if (count > lines)
        fuzz_fail("more entries than lines");
    char *body;
    size_t len;
    fuzz_answer(timeline_answer(w, qs, &body, &len), body, len, count);
    free(body);
    struct timeline *r = timeline_open(dir, "BOT-F", false, err, sizeof err);
    if (!r)
        fuzz_fail(err);
    if (timeline_count(r) != count)
        fuzz_fail("the reader and the writer index different entries");
    struct timeline *both[] = {w, r};
    fuzz_answer(timeline_answer_merged(both, 2, qs, NULL, &body, &len), body, len, 2 * count);
    free(body);
    timeline_close(r);
    timeline_close(w);
}

/* Occurrences of NEEDLE in S[0..N). */
static size_t fuzz_count(const char *s, size_t n, const char *needle)
{
    size_t c = 0, l = strlen(needle);
    for (size_t i = 0; i + l <= n; i++)
        c += memcmp(s + i, needle, l) == 0;
    return c;
}

/* timeline_parse_line() on LINE, and when jansson reads it as an entry
 * beyond doubt (no escapes, no repeated key), the same fields as jansson:
 * the fast path for hive's own lines must agree with the general one. */
static void fuzz_line(const char *line, size_t n)
{
    int64_t t;
    int source;
    bool success;
    uint64_t h;
    int rc = timeline_parse_line(line, n, &t, &source, &success, &h);
    if (rc == 0 && (source < 0 || source > 2))
        fuzz_fail("a parsed line has no source");
    if (memchr(line, '\\', n) || fuzz_count(line, n, "\"task_id\"") != 1 ||
        fuzz_count(line, n, "\"source\"") != 1 || fuzz_count(line, n, "\"timestamp\"") != 1 ||
        fuzz_count(line, n, "\"success\"") != 1)
        return;
    json_t *o = json_loadb(line, n, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "task_id"));
    const char *src = json_string_value(json_object_get(o, "source"));
    const char *ts = json_string_value(json_object_get(o, "timestamp"));
    json_t *ok = json_object_get(o, "success");
    int64_t want_t;
    if (json_is_object(o) && id && src && ts && json_is_boolean(ok) &&
        (!strcmp(src, "file") || !strcmp(src, "http") || !strcmp(src, "websocket")) &&
        timeline_parse_time(ts, false, &want_t) == 0) {
        int want_s = !strcmp(src, "file") ? 0 : !strcmp(src, "http") ? 1 : 2;
        if (rc != 0 || t != want_t || source != want_s || success != json_is_true(ok))
            fuzz_fail("the line reader disagrees with jansson");
    } else if (rc == 0 && o) {
        fuzz_fail("the line reader took a line that is not an entry");
    }
    json_decref(o);
}

/* One input: query line, then JSONL. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t qlen = nl ? (size_t)(nl - data) : size;
    char *qs = malloc(qlen + 1);
    memcpy(qs, data, qlen);
    qs[qlen] = '\0';
    fuzz_query(qs);
    const uint8_t *rest = nl ? nl + 1 : data + size;
    size_t rlen = size - (size_t)(rest - data);
    for (size_t at = 0; at < rlen;) {
        const uint8_t *end = memchr(rest + at, '\n', rlen - at);
        size_t n = end ? (size_t)(end - (rest + at)) : rlen - at;
        fuzz_line((const char *)rest + at, n);
        at += n + 1;
    }
    fuzz_file(qs, rest, rlen);
    free(qs);
    return 0;
}
