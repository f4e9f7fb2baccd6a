/*
 * fuzz_agentstream: the agent CLI stream reader (worker/agentstream.c) fed
 * arbitrary bytes in arbitrary pieces. The first byte picks the dialect
 * (claude, codex, gemini) and seeds the piece sizes; the rest is the stream.
 * Checked for every input: no crash or leak; the pieces give exactly the
 * text, tool uses and outcome that the whole input gives; a stream without
 * its result is never a success; a failure always has an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/agentstream.h"

/* What one reading gave. */
struct fuzz_run {
    struct util_buf text;
    struct util_buf tools;
    struct agentstream_outcome out;
};

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_agentstream_fail(const char *msg)
{
    fprintf(stderr, "fuzz_agentstream: %s\n", msg);
    abort();
}

static void fuzz_agentstream_text(void *arg, const char *text, size_t len)
{
    util_buf_add(&((struct fuzz_run *)arg)->text, text, len);
}

static void fuzz_agentstream_tool(void *arg, const char *name, const char *summary)
{
    struct fuzz_run *r = arg;
    if (strlen(summary) > AGENTSTREAM_TOOL_SUMMARY || strchr(summary, '\n'))
        fuzz_agentstream_fail("a tool summary is not one short line");
    util_buf_add(&r->tools, name, strlen(name) + 1);
    util_buf_add(&r->tools, summary, strlen(summary) + 1);
}

/* The size of the next piece: from the seed, 0 to 15. */
static size_t fuzz_agentstream_piece(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) % 16;
}

/* Read IN with DIALECT, in pieces when STATE is not NULL. */
static void fuzz_agentstream_read(enum agentstream_dialect dialect, const uint8_t *in, size_t len,
                                  unsigned *state, struct fuzz_run *r)
{
    memset(r, 0, sizeof *r);
    struct agentstream_sink sink = {fuzz_agentstream_text, fuzz_agentstream_tool, r};
    struct agentstream *s = agentstream_new(dialect, 4096, &sink);
    for (size_t off = 0; off < len;) {
        size_t n = state ? fuzz_agentstream_piece(state) : len;
        if (n > len - off)
            n = len - off;
        agentstream_feed(s, (const char *)in + off, n);
        off += n;
    }
    agentstream_finish(s, 1767225600, &r->out);
    agentstream_free(s);
}

/* True when both strings are NULL or equal. */
static bool fuzz_agentstream_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const enum agentstream_dialect dialects[] = {AGENTSTREAM_CLAUDE, AGENTSTREAM_CODEX,
                                                        AGENTSTREAM_GEMINI};
    enum agentstream_dialect d = dialects[data[0] % 3];
    unsigned state = data[0];
    struct fuzz_run whole, pieces;
    fuzz_agentstream_read(d, data + 1, size - 1, NULL, &whole);
    fuzz_agentstream_read(d, data + 1, size - 1, &state, &pieces);
    if (whole.text.len != pieces.text.len ||
        (whole.text.len && memcmp(whole.text.data, pieces.text.data, whole.text.len)))
        fuzz_agentstream_fail("pieces and the whole give different text");
    if (whole.tools.len != pieces.tools.len ||
        (whole.tools.len && memcmp(whole.tools.data, pieces.tools.data, whole.tools.len)))
        fuzz_agentstream_fail("pieces and the whole give different tool uses");
    if (whole.out.success != pieces.out.success || whole.out.limited != pieces.out.limited ||
        !fuzz_agentstream_same(whole.out.error, pieces.out.error) ||
        !fuzz_agentstream_same(whole.out.session_id, pieces.out.session_id) ||
        whole.out.usage.input != pieces.out.usage.input)
        fuzz_agentstream_fail("pieces and the whole give different outcomes");
    if (whole.out.success && !whole.out.have_result)
        fuzz_agentstream_fail("success without a result");
    if (!whole.out.success && !whole.out.error)
        fuzz_agentstream_fail("a failure without an error");
    struct fuzz_run *runs[] = {&whole, &pieces};
    for (int i = 0; i < 2; i++) {
        free(runs[i]->text.data);
        free(runs[i]->tools.data);
        agentstream_outcome_clear(&runs[i]->out);
    }
    return 0;
}
