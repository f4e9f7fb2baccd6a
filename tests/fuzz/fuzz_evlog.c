/*
 * fuzz_evlog: the readers of a numbered events log (common/evlog.c) on
 * arbitrary files: torn, foreign, hand-edited, with lines of any length.
 * The input is cut in two at a point its first byte chooses: the previous
 * generation (PATH.1) and the current one (PATH). Checked for every input:
 * the last number read back from the end (a worker's open, no scan) is the
 * one a scan of every line finds (the supervisor's open), both after the
 * unfinished line a crash leaves is cut; an open after a mark taken at the
 * end shows no line; a replay hands over numbers above its cursor only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/evlog.h"

static char fuzz_evlog_dir[512], fuzz_evlog_path[600], fuzz_evlog_prev[610];

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_evlog_fail(const char *msg)
{
    fprintf(stderr, "fuzz_evlog: %s\n", msg);
    abort();
}

/* Write LEN bytes of DATA as the file PATH (none when LEN is 0). */
static void fuzz_evlog_put(const char *path, const uint8_t *data, size_t len)
{
    unlink(path);
    if (!len)
        return;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len)
        fuzz_evlog_fail("cannot write the log");
    fclose(f);
}

/* Scan callback: count the lines shown. */
static void fuzz_evlog_count(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)n, (void)obj, (void)line, (void)len;
    ++*(size_t *)arg;
}

/* Replay callback: every number above the cursor in ARG. */
static void fuzz_evlog_above(uint64_t n, json_t *obj, const char *line, size_t len, void *arg)
{
    (void)obj, (void)line, (void)len;
    if (n <= *(uint64_t *)arg)
        fuzz_evlog_fail("replay handed over a line at or below its cursor");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_evlog_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_evlog_dir, sizeof fuzz_evlog_dir, "%s/fuzz-evlog-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_evlog_dir))
            fuzz_evlog_fail("no temporary folder");
        snprintf(fuzz_evlog_path, sizeof fuzz_evlog_path, "%s/ev.jsonl", fuzz_evlog_dir);
        snprintf(fuzz_evlog_prev, sizeof fuzz_evlog_prev, "%s.1", fuzz_evlog_path);
    }
    if (size == 0)
        return 0;
    size_t cut = (size - 1) * data[0] / 255;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (cut > len)
        cut = len;
    fuzz_evlog_put(fuzz_evlog_prev, body, cut);
    fuzz_evlog_put(fuzz_evlog_path, body + cut, len - cut);
    struct evlog *lg = evlog_open(fuzz_evlog_path, "seq", NULL, NULL);
    uint64_t from_end = evlog_last(lg);
    struct evlog_mark mark;
    bool marked = evlog_mark(lg, &mark);
    evlog_close(lg);
    size_t shown = 0;
    lg = evlog_open(fuzz_evlog_path, "seq", fuzz_evlog_count, &shown);
    if (evlog_last(lg) != from_end)
        fuzz_evlog_fail("the last number read from the end is not the scan's");
    uint64_t cursor = from_end / 2, first = 0;
    evlog_replay(lg, cursor, 0, &first, fuzz_evlog_above, &cursor);
    evlog_close(lg);
    if (marked) {
        size_t after = 0;
        bool skipped = false;
        lg = evlog_open_after(fuzz_evlog_path, "seq", &mark, fuzz_evlog_count, &after, &skipped);
        if (evlog_last(lg) != from_end)
            fuzz_evlog_fail("the last number differs after a mark");
        if (skipped && after != 0)
            fuzz_evlog_fail("an open after a mark at the end showed lines");
        evlog_close(lg);
    }
    return 0;
}
