/*
 * fuzz_response: the response-file reader (worker/response.c) on arbitrary
 * bytes, and on a real response whose output and error are the fuzz input. The reader is pure, so
 * each input is read and checked: every span lies inside the text, the header reader agrees with
 * the whole reader, a cut file is never whole, and a file the writer made reads back to exactly
 * what was written, whatever the output holds.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/response.h"

/* A promise of response.h broken: stop with the reason. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_response: %s\n", what);
    abort();
}

/* True when span S lies inside [TEXT, TEXT + LEN). */
static int fuzz_inside(struct response_span s, const char *text, size_t len)
{
    return !s.p || (s.p >= text && s.len <= len && (size_t)(s.p - text) <= len - s.len);
}

/* Read TEXT both ways and check the spans and the agreement. */
static void fuzz_read(const char *text, size_t len)
{
    struct response_view v, h;
    int whole = response_read_file(text, len, &v);
    int head = response_read_header(text, len, &h);
    if (whole == 0) {
        struct response_span spans[] = {v.title_id,  v.bot_id, v.to,   v.task_id,
                                        v.timestamp, v.output, v.error};
        for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
            if (!fuzz_inside(spans[i], text, len))
                fuzz_fail("a span outside the text");
        if (!v.output.p || v.body > len || v.output.p != text + v.body)
            fuzz_fail("the output does not start at the body");
        if (head != 0 || h.body != v.body || h.success != v.success)
            fuzz_fail("the header reader disagrees with the whole reader");
        if (len > 0 && response_read_file(text, len - 1, &v) == 0)
            fuzz_fail("a cut file read as whole");
    }
    if (head == 0 && (h.body > len || !h.task_id.p || !fuzz_inside(h.task_id, text, len)))
        fuzz_fail("a header without its task or body");
}

/* Split DATA into output and error at the first NUL, render a response
 * with them, and read it back. */
static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t out_len = nul ? (size_t)(nul - data) : size;
    char *error = nul ? xstrndup((const char *)nul + 1, size - out_len - 1) : NULL;
    static const char *const files[] = {"src/a.c", "b c.txt"};
    struct response r = {.bot_id = "BOT-F",
                         .files = files,
                         .n_files = size % 3, /* none ("- None"), one or two paths */
                         .task_id = "T-1",
                         .to = "user",
                         .source = TASK_SOURCE_HTTP,
                         .success = !error || !error[0],
                         .duration_seconds = 1.5,
                         .output = (const char *)data,
                         .output_len = out_len,
                         .error = error,
                         .finished_wall_ns = 1767323045LL * 1000000000LL};
    size_t len;
    char *text = response_render(&r, &len);
    struct response_view v;
    if (response_read_file(text, len, &v) != 0)
        fuzz_fail("a rendered response does not read back");
    /* The one split the format cannot tell: an error text that holds the
     * whole heading of "Files Modified", a list and "Error" again. */
    const char *forged = error ? strstr(error, "## Files Modified\n\n- ") : NULL;
    bool ambiguous = forged && strstr(forged, "\n\n## Error\n\n");
    if (!ambiguous && (v.output.len != out_len || memcmp(v.output.p, data, out_len) != 0))
        fuzz_fail("the output read back is not the output written");
    static const char *const lists[] = {"- None", "- src/a.c", "- src/a.c\n- b c.txt"};
    const char *list = lists[r.n_files];
    if (!ambiguous && (v.files.len != strlen(list) || memcmp(v.files.p, list, v.files.len) != 0))
        fuzz_fail("the files read back are not the files written");
    if (v.success != r.success)
        fuzz_fail("the outcome read back is not the one written");
    free(text);
    free(error);
}

/* One input: read it as a file, then as the content of one. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_read((const char *)data, size);
    fuzz_round_trip(data, size);
    return 0;
}
