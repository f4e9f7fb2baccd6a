/*
 * fuzz_route: the route table's path matching (common/route.c) on arbitrary
 * patterns and paths. The input is a pattern, a NUL, then a path (no NUL:
 * the whole input is the path, matched against each pattern of a table like
 * the worker's and the front door's). Checked for every input: a match has
 * at most ROUTE_PARAMS_MAX parameters, each non-empty, inside the path and
 * free of '/'; putting the parameters back in place of the pattern's "*"
 * segments gives the path again; route_param copies each one whole when it
 * fits and refuses (with an empty string) when it does not; a pattern
 * without "*" matches only itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/route.h"

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_route_fail(const char *msg)
{
    fprintf(stderr, "fuzz_route: %s\n", msg);
    abort();
}

/* Patterns of the worker's and the supervisor's tables. */
static const char *const fuzz_route_patterns[] = {
    "/health",
    "/api/status",
    "/api/task/*",
    "/api/task/*/cancel",
    "/bots/*/api/*",
    "/bots/*/events",
    "/api/timeline",
    "*",
    "/*",
    "/a/*/*/b",
    "/x*/y",
    "",
};

/* PATTERN with each "*" segment replaced by the next of PARAMS. */
static char *fuzz_route_fill(const char *pattern, const struct route_params *params)
{
    size_t cap = strlen(pattern) + 1, k = 0;
    for (size_t i = 0; i < params->n; i++)
        cap += params->len[i];
    char *out = malloc(cap), *o = out;
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '*' && (p == pattern || p[-1] == '/') && (p[1] == '/' || p[1] == '\0') &&
            k < params->n) {
            memcpy(o, params->s[k], params->len[k]);
            o += params->len[k++];
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    if (k != params->n)
        fuzz_route_fail("more parameters than '*' segments");
    return out;
}

/* Match PATH against PATTERN and check what a match promises. */
static void fuzz_route_check(const char *pattern, const char *path)
{
    struct route_params params;
    memset(&params, 0xa5, sizeof params);
    bool hit = route_match(pattern, path, &params);
    if (hit != route_match(pattern, path, NULL))
        fuzz_route_fail("the answer depends on PARAMS being given");
    if (!hit) {
        if (!strchr(pattern, '*') && strcmp(pattern, path) == 0)
            fuzz_route_fail("a literal pattern did not match itself");
        return;
    }
    if (!strchr(pattern, '*') && strcmp(pattern, path) != 0)
        fuzz_route_fail("a literal pattern matched another path");
    if (params.n > ROUTE_PARAMS_MAX)
        fuzz_route_fail("too many parameters");
    size_t plen = strlen(path);
    for (size_t i = 0; i < params.n; i++) {
        if (params.len[i] == 0 || params.s[i] < path || params.s[i] + params.len[i] > path + plen ||
            memchr(params.s[i], '/', params.len[i]))
            fuzz_route_fail("a parameter is empty, outside the path or holds '/'");
        char big[4096], small[4];
        if (params.len[i] < sizeof big &&
            (!route_param(&params, i, big, sizeof big) || strlen(big) != params.len[i] ||
             memcmp(big, params.s[i], params.len[i]) != 0))
            fuzz_route_fail("route_param did not copy a parameter that fits");
        bool fits = route_param(&params, i, small, sizeof small);
        if (fits != (params.len[i] < sizeof small) || (!fits && small[0] != '\0'))
            fuzz_route_fail("route_param's answer for a small buffer is wrong");
    }
    char out[1];
    if (route_param(&params, params.n, out, sizeof out) || out[0] != '\0')
        fuzz_route_fail("route_param gave a parameter past the last");
    char *again = fuzz_route_fill(pattern, &params);
    if (strcmp(again, path) != 0)
        fuzz_route_fail("the parameters put back do not give the path");
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *nul = memchr(data, '\0', size);
    if (nul) {
        fuzz_route_check(text, text + (nul - (const char *)data) + 1);
    } else {
        for (size_t i = 0; i < sizeof fuzz_route_patterns / sizeof fuzz_route_patterns[0]; i++)
            fuzz_route_check(fuzz_route_patterns[i], text);
    }
    free(text);
    return 0;
}
