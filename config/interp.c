/*
 * interp: the expansion of `${...}` in roster values (see interp.h). The
 * result is built in a growing buffer; a variable's value is copied as it is
 * (never expanded again, as compose does).
 */
#include "config/interp.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* A growing output string. */
struct interp_buf {
    char *s;
    size_t n, cap;
};

/* Append LEN bytes of S. */
static void interp_put(struct interp_buf *b, const char *s, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

/* Length of the variable name at S (at most LEN bytes): [A-Za-z_][A-Za-z0-9_]*. */
static size_t interp_name_len(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    while (i < len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
        i++;
    return i;
}

/* Expand the `${...}` starting at TEXT[I] (the `$`) into B; the offset after
 * it, or 0 with the problem in ERR and *AT. */
static size_t interp_one(const char *text, size_t len, size_t i, struct interp_buf *b, size_t *at,
                         char *err, size_t errlen)
{
    const char *close = memchr(text + i + 2, '}', len - i - 2);
    size_t name_at = i + 2, name_len = interp_name_len(text + name_at, len - name_at);
    if (!close) {
        *at = i;
        snprintf(err, errlen, "unterminated '${' (expected '}')");
        return 0;
    }
    size_t end = (size_t)(close - text), after = name_at + name_len;
    bool has_default = false, empty_too = false;
    if (name_len && after < end && text[after] == '-')
        has_default = true, after += 1;
    else if (name_len && after + 1 < end && text[after] == ':' && text[after + 1] == '-')
        has_default = empty_too = true, after += 2;
    if (name_len == 0 || (!has_default && after != end)) {
        *at = i;
        snprintf(err, errlen,
                 "bad variable reference '%.*s' (expected ${NAME} or ${NAME:-default})",
                 (int)(end + 1 - i), text + i);
        return 0;
    }
    char *name = xstrndup(text + name_at, name_len);
    const char *value = getenv(name);
    if (value && !(empty_too && !*value)) {
        interp_put(b, value, strlen(value));
    } else if (has_default) {
        interp_put(b, text + after, end - after);
    } else {
        *at = i;
        snprintf(err, errlen, "variable %s is not set (use ${%s:-default} for a default)", name,
                 name);
        free(name);
        return 0;
    }
    free(name);
    return end + 1;
}

/* Expand TEXT (see interp.h). */
int interp_expand(const char *text, size_t len, char **out, size_t *at, char *err, size_t errlen)
{
    if (!memchr(text, '$', len))
        return 0;
    struct interp_buf b = {NULL, 0, 0};
    interp_put(&b, "", 0);
    for (size_t i = 0; i < len;) {
        const char *dollar = memchr(text + i, '$', len - i);
        size_t stop = dollar ? (size_t)(dollar - text) : len;
        interp_put(&b, text + i, stop - i);
        i = stop;
        if (i >= len)
            break;
        if (i + 1 < len && text[i + 1] == '$') {
            interp_put(&b, "$", 1);
            i += 2;
        } else if (i + 1 < len && text[i + 1] == '{') {
            if (!(i = interp_one(text, len, i, &b, at, err, errlen))) {
                free(b.s);
                return -1;
            }
        } else {
            interp_put(&b, "$", 1);
            i++;
        }
    }
    *out = b.s;
    return 1;
}
