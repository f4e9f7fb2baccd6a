/*
 * envfile: parses env files line by line (see envfile.h).
 */
#include "config/envfile.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Skip spaces and tabs from S up to END. */
static const char *envfile_skip(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

/* The value of S..END (after the '='): quoted, or trimmed and cut at " #".
 * NULL with ERR for an unterminated quote. */
static char *envfile_value(const char *s, const char *end, char *err, size_t errlen)
{
    s = envfile_skip(s, end);
    if (s < end && (*s == '"' || *s == '\'')) {
        const char *close = memchr(s + 1, *s, (size_t)(end - s - 1));
        if (!close || envfile_skip(close + 1, end) != end) {
            snprintf(err, errlen, "unterminated %c quote", *s);
            return NULL;
        }
        return xstrndup(s + 1, (size_t)(close - s - 1));
    }
    const char *stop = s;
    for (; stop < end; stop++)
        if (*stop == '#' && (stop == s || stop[-1] == ' ' || stop[-1] == '\t'))
            break;
    while (stop > s && (stop[-1] == ' ' || stop[-1] == '\t' || stop[-1] == '\r'))
        stop--;
    return xstrndup(s, (size_t)(stop - s));
}

/* One line S..END: 1 with *OUT set, 0 when blank or a comment, -1 with ERR. */
static int envfile_line(const char *s, const char *end, char **out, char *err, size_t errlen)
{
    if (end > s && end[-1] == '\r')
        end--;
    s = envfile_skip(s, end);
    if (s == end || *s == '#')
        return 0;
    if ((size_t)(end - s) > 7 && memcmp(s, "export ", 7) == 0)
        s = envfile_skip(s + 7, end);
    const char *name = s;
    if (s < end && (isalpha((unsigned char)*s) || *s == '_'))
        while (s < end && (isalnum((unsigned char)*s) || *s == '_'))
            s++;
    if (s == name || envfile_skip(s, end) == end || *envfile_skip(s, end) != '=') {
        snprintf(err, errlen, "expected NAME=value");
        return -1;
    }
    char *value = envfile_value(envfile_skip(s, end) + 1, end, err, errlen);
    if (!value)
        return -1;
    *out = xasprintf("%.*s=%s", (int)(s - name), name, value);
    free(value);
    return 1;
}

/* Parse TEXT (see envfile.h). */
char **envfile_parse(const char *text, size_t len, size_t *line, char *err, size_t errlen)
{
    char **v = xcalloc(1, sizeof *v);
    size_t n = 0;
    const char *s = text, *end = text + len;
    for (*line = 1; s < end; (*line)++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *stop = nl ? nl : end;
        char *item = NULL;
        int rc =
            memchr(s, '\0', (size_t)(stop - s)) ? -1 : envfile_line(s, stop, &item, err, errlen);
        if (rc < 0) {
            if (memchr(s, '\0', (size_t)(stop - s)))
                snprintf(err, errlen, "contains a NUL character");
            for (size_t i = 0; i < n; i++)
                free(v[i]);
            free(v);
            return NULL;
        }
        if (rc > 0) {
            v = xrealloc(v, (n + 2) * sizeof *v);
            v[n++] = item;
            v[n] = NULL;
        }
        s = stop + (nl != NULL);
    }
    return v;
}
