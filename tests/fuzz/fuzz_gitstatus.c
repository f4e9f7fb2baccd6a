/*
 * fuzz_gitstatus: the parser of `git status --porcelain=v2 -z --branch`
 * (worker/gitfiles.c, what a task modified) fed arbitrary bytes. Checked for
 * every input: it returns 0 or -1; every path it reports is non-empty and
 * lies inside the input, ends at a NUL of it, and the paths come in input
 * order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/gitfiles.h"

struct fuzz_gitstatus {
    const char *start, *end;
    const char *last; /* the previous path */
};

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_gitstatus_fail(const char *msg)
{
    fprintf(stderr, "fuzz_gitstatus: %s\n", msg);
    abort();
}

static void fuzz_gitstatus_entry(const char *xy, const char *path, void *arg)
{
    struct fuzz_gitstatus *f = arg;
    if (!xy)
        fuzz_gitstatus_fail("no status");
    if (!path)
        return; /* HEAD's oid */
    if (path < f->start || path >= f->end || !*path)
        fuzz_gitstatus_fail("a path outside the input, or empty");
    if (path + strlen(path) >= f->end)
        fuzz_gitstatus_fail("a path past the input's end");
    if (f->last && path <= f->last)
        fuzz_gitstatus_fail("paths out of order");
    f->last = path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = 'X'; /* no NUL beyond the input: a read past it is seen */
    struct fuzz_gitstatus f = {copy, copy + size, NULL};
    int rc = gitfiles_parse_status(copy, size, fuzz_gitstatus_entry, &f);
    if (rc != 0 && rc != -1)
        fuzz_gitstatus_fail("neither 0 nor -1");
    free(copy);
    return 0;
}
