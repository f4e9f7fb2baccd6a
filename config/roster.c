/*
 * roster: reads hive.yaml with libyaml's document API and fills struct roster
 * (see roster.h for the rules). Each mapping is walked against a table of its
 * allowed keys, so unknown and duplicate keys, wrong types and bad values are
 * all found in one pass and reported at the node's mark; checks that need the
 * whole file (unique ids and ports, the cli command, tokens for non-loopback
 * addresses) run after the walk. A load that found any problem returns no
 * roster at all.
 */
#include "config/roster.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "common/guard.h"
#include "common/util.h"
#include "config/envfile.h"
#include "config/interp.h"

#define ROSTER_MAX_FILE (4 * 1024 * 1024)
#define ROSTER_MAX_SECONDS 1000000.0
#define ROSTER_MAX_SIZE (1ULL << 40)
#define ROSTER_MAX_PORT 65535
#define ROSTER_QUOTE_MAX 48
#define ROSTER_MAX_DEPTH 64

/* An included file: the ids of the nodes copied from it, for its name in
 * messages and its folder for relative paths. */
struct roster_source {
    char *name, *dir;
    size_t first, last;
};

/* One load in progress. */
struct roster_parse {
    const char *name; /* for messages */
    const char *text;
    size_t len;
    yaml_document_t doc;
    struct roster_errors *errs;
    size_t n_errors;
    struct roster *r;
    yaml_node_t *hive, *defaults, *bots, *listen;
    const char *base_dir;          /* of the roster file; NULL: the current directory */
    struct roster_source *sources; /* included files, by node ids */
    size_t n_sources;
    yaml_node_t *include; /* read before the walk, by roster_prepare */
};

enum roster_kind {
    ROSTER_STRING,  /* char *, non-empty */
    ROSTER_CHOICE,  /* char *, one of choices */
    ROSTER_INT,     /* int within min..max */
    ROSTER_SECONDS, /* double; min 1 means "more than 0" */
    ROSTER_MS,      /* int milliseconds from a duration; min as above */
    ROSTER_SIZE,    /* size_t bytes, more than 0 */
    ROSTER_LSIZE,   /* long bytes, more than 0 */
    ROSTER_BOOL,    /* bool: true/false (yes/no, on/off) */
    ROSTER_SIGNAL,  /* int signal number from a name: TERM or SIGTERM */
    ROSTER_CPU,     /* int percent of one CPU from "50%" or a number of CPUs */
    ROSTER_STRV,    /* char **, NULL-terminated */
    ROSTER_ENV,     /* char ** "NAME=value" from a mapping */
    ROSTER_MAP,     /* a nested struct walked with table */
    ROSTER_NODE     /* hook does the work (or the node is stored) */
};

struct roster_parse;
struct roster_table;
struct roster_argv;
struct roster_word;
typedef void (*roster_hook)(struct roster_parse *p, yaml_node_t *node, void *base);
typedef bool (*roster_item_check)(struct roster_parse *p, yaml_node_t *item, const char *key);
typedef void (*roster_argv_hook)(struct roster_argv *a, const void *slot);

/* One allowed key of a mapping: how its value is read and checked, its
 * default, how it reaches the worker and whether a change restarts it. A
 * new bot setting is one row in the tables at the end of this file (and a
 * member of struct roster_bot); the parser, the built-in defaults, copying,
 * freeing, the worker's argv and the reload's "changed?" test all walk the
 * rows. */
struct roster_field {
    const char *name; /* the YAML key */
    enum roster_kind kind;
    size_t offset;
    long min, max;
    const char *const *choices;
    const struct roster_table *table;
    roster_hook hook;               /* NODE: reads; others: checks after a good read */
    roster_item_check item_check;   /* STRV: each element */
    const struct roster_word *word; /* STRING: the value, STRV: each element must be one */
    const char *dflt;               /* the default as YAML text ("300", "8MiB"); NULL: 0/empty */
    bool from_hive;                 /* the default is the hive's key of the same name */
    const char *flag;               /* the hive-worker flag carrying it; NULL: none */
    roster_argv_hook argv;          /* instead of flag: writes its own arguments */
    bool live;                      /* a change needs no new worker (reload takes it as it is) */
};

/* The allowed keys of one mapping: FIELDS, then those of MORE. */
struct roster_table {
    const struct roster_field *fields;
    size_t n;
    const struct roster_table *more;
};

#define ROSTER_TABLE(f, more)                                                                      \
    {                                                                                              \
        f, sizeof(f) / sizeof(f[0]), more                                                          \
    }
#define ROSTER_MAX_KEYS 64

/* Each field of T and its parts, in order. */
#define ROSTER_EACH_FIELD(t, part, f)                                                              \
    for (const struct roster_table *part = (t); part; part = part->more)                           \
        for (const struct roster_field *f = part->fields; f < part->fields + part->n; f++)

/* ---- messages ---------------------------------------------------------- */

/* Append MSG (taken over) to ERRS. */
static void roster_errors_push(struct roster_errors *errs, char *msg)
{
    if (!errs) {
        free(msg);
        return;
    }
    errs->items = xrealloc(errs->items, (errs->n + 1) * sizeof(*errs->items));
    errs->items[errs->n++] = msg;
}

/* Record "name:line:column: message" at a 0-based LINE and COLUMN. */
static void roster_verror(struct roster_parse *p, size_t line, size_t column, const char *fmt,
                          va_list ap)
{
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    roster_errors_push(p->errs, xasprintf("%s:%zu:%zu: %s", p->name, line + 1, column + 1,
                                          msg ? msg : "out of memory"));
    free(msg);
    p->n_errors++;
}

static const struct roster_source *roster_node_source(const struct roster_parse *p,
                                                      const yaml_node_t *n);

/* Record an error at NODE's start (1:1 when NODE is NULL). */
static void __attribute__((format(printf, 3, 4)))
roster_error(struct roster_parse *p, const yaml_node_t *node, const char *fmt, ...)
{
    va_list ap;
    const struct roster_source *src = roster_node_source(p, node);
    const char *own = p->name;
    p->name = src ? src->name : own; /* a node copied from an included file */
    va_start(ap, fmt);
    roster_verror(p, node ? node->start_mark.line : 0, node ? node->start_mark.column : 0, fmt, ap);
    va_end(ap);
    p->name = own;
}

/* Record an error at a 0-based line and column. */
static void __attribute__((format(printf, 4, 5)))
roster_error_at(struct roster_parse *p, size_t line, size_t column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    roster_verror(p, line, column, fmt, ap);
    va_end(ap);
}

/* Quote LEN bytes of S for a message: 'text', control bytes as '?', long
 * text cut with "...". */
static void roster_quote(const char *s, size_t len, char *buf, size_t cap)
{
    size_t n = 0, i;
    buf[n++] = '\'';
    for (i = 0; i < len && n + 5 < cap && i < ROSTER_QUOTE_MAX; i++)
        buf[n++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (i < len)
        n += (size_t)snprintf(buf + n, cap - n, "...");
    buf[n++] = '\'';
    buf[n] = '\0';
}

/* True for a plain null scalar: empty, ~ or null. */
static bool roster_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Describe NODE for a "got ..." message. */
static void roster_describe(const yaml_node_t *n, char *buf, size_t cap)
{
    if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, cap, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, cap, "a sequence");
    else if (roster_is_null(n))
        snprintf(buf, cap, "nothing");
    else
        roster_quote((const char *)n->data.scalar.value, n->data.scalar.length, buf, cap);
}

/* Report that KEY expected WHAT (with its article) but NODE is something else. */
static void roster_expected(struct roster_parse *p, yaml_node_t *node, const char *what,
                            const char *key)
{
    char got[ROSTER_QUOTE_MAX + 16];
    roster_describe(node, got, sizeof(got));
    roster_error(p, node, "expected %s for '%s', got %s", what, key, got);
}

/* ---- scalars ----------------------------------------------------------- */

/* NODE's text when it is a non-null scalar without NUL bytes, else NULL after
 * reporting that KEY expected WHAT. */
static const char *roster_scalar(struct roster_parse *p, yaml_node_t *n, const char *what,
                                 const char *key)
{
    if (n->type != YAML_SCALAR_NODE || roster_is_null(n)) {
        roster_expected(p, n, what, key);
        return NULL;
    }
    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length)) {
        roster_error(p, n, "'%s' contains a NUL character", key);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

/* True when scalar K is exactly NAME (a key with a NUL byte never is). */
static bool roster_key_is(const yaml_node_t *k, const char *name)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
           memcmp(k->data.scalar.value, name, k->data.scalar.length) == 0;
}

/* The value node of KEY in mapping MAP, or NULL. */
static yaml_node_t *roster_map_get(struct roster_parse *p, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&p->doc, pr->key);
        if (k && roster_key_is(k, key))
            return yaml_document_get_node(&p->doc, pr->value);
    }
    return NULL;
}

/* Parse a whole decimal integer. */
static bool roster_parse_long(const char *text, long *out)
{
    char *end;
    if (!*text || isspace((unsigned char)*text))
        return false;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end)
        return false;
    *out = v; /* ERANGE clamps to LONG_MIN/MAX, which the range check reports */
    return true;
}

/* Parse a duration into seconds: 0, -1 bad syntax, -2 negative, -3 too long. */
static int roster_parse_duration(const char *s, double *out)
{
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1}, {"s", 1}, {"ms", 0.001}, {"m", 60}, {"h", 3600}};
    bool neg = *s == '-';
    const char *num = s + neg, *q = num;
    size_t digits = 0;
    for (; isdigit((unsigned char)*q); q++)
        digits++;
    if (*q == '.')
        for (q++; isdigit((unsigned char)*q); q++)
            digits++;
    if (digits == 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(q, units[i].unit) != 0)
            continue;
        double v = strtod(num, NULL) * units[i].mult;
        if (neg && v > 0)
            return -2;
        if (v > ROSTER_MAX_SECONDS)
            return -3;
        *out = v;
        return 0;
    }
    return -1;
}

/* Parse a size into bytes: 0, -1 bad syntax, -2 negative, -3 too large. */
static int roster_parse_size(const char *s, unsigned long long *out)
{
    static const struct {
        const char *unit;
        unsigned long long mult;
    } units[] = {{"", 1},
                 {"b", 1},
                 {"k", 1ULL << 10},
                 {"kb", 1ULL << 10},
                 {"kib", 1ULL << 10},
                 {"m", 1ULL << 20},
                 {"mb", 1ULL << 20},
                 {"mib", 1ULL << 20},
                 {"g", 1ULL << 30},
                 {"gb", 1ULL << 30},
                 {"gib", 1ULL << 30}};
    const char *q = s;
    if (*s == '-')
        return isdigit((unsigned char)s[1]) ? -2 : -1;
    unsigned long long v = 0;
    for (; isdigit((unsigned char)*q); q++) {
        v = v * 10 + (unsigned long long)(*q - '0');
        if (v > ROSTER_MAX_SIZE)
            return -3;
    }
    if (q == s)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(q, units[i].unit) != 0)
            continue;
        if (v > ROSTER_MAX_SIZE / units[i].mult)
            return -3;
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

/* Parse a YAML 1.1 boolean: 1 true, 0 false, -1 neither. */
static int roster_parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* The signals a bot may be stopped with (stop_signal), by name. */
static const struct {
    const char *name;
    int number;
} roster_signals[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},  {"QUIT", SIGQUIT},
                      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"KILL", SIGKILL}};

/* The number of signal NAME ("TERM" or "SIGTERM"), or -1. */
static int roster_parse_signal(const char *name)
{
    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    for (size_t i = 0; i < sizeof roster_signals / sizeof roster_signals[0]; i++)
        if (strcmp(name, roster_signals[i].name) == 0)
            return roster_signals[i].number;
    return -1;
}

const char *roster_signal_name(int sig)
{
    for (size_t i = 0; i < sizeof roster_signals / sizeof roster_signals[0]; i++)
        if (roster_signals[i].number == sig)
            return roster_signals[i].name;
    return "?";
}

/* True for an environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool roster_env_name_valid(const char *s)
{
    if (!*s || isdigit((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

/* A kind of name a value must be (a variable, a bot id, a pool, a tag):
 * its test and the words of the message when a value is not one. */
struct roster_word {
    const char *what;             /* "bad WHAT 'value'" */
    bool (*valid)(const char *s); /* true for a good value */
    const char *single;           /* a STRING key's value: "for 'key'" after it, or NULL */
    const char *expected;         /* appended: "" or " (expected ...)" */
};

#define ROSTER_ID_CHARS "1 to 64 of A-Z a-z 0-9 . _ -"
static const struct roster_word roster_word_variable = {"variable name", roster_env_name_valid,
                                                        "for", ""};
static const struct roster_word roster_word_bot_id = {
    "bot id", util_id_valid, NULL, " (expected " ROSTER_ID_CHARS ", not . or ..)"};
/* depends_on: whether it names a bot of the roster is checked once all bots are read. */
static const struct roster_word roster_word_dep_id = {"bot id", util_id_valid, NULL, ""};
/* pool and tags: names as bot ids are (`hive send @POOL` and URLs carry them). */
static const struct roster_word roster_word_pool = {"pool name", util_id_valid, NULL,
                                                    " (expected " ROSTER_ID_CHARS ")"};
static const struct roster_word roster_word_tag = {"tag", util_id_valid, NULL,
                                                   " (expected " ROSTER_ID_CHARS ")"};

/* True when S (at node N) is a W; otherwise say so, naming KEY after PREP
 * ("in" for an element of KEY, W->single for KEY's value, NULL: not at all). */
static bool roster_word_check(struct roster_parse *p, yaml_node_t *n, const char *s,
                              const struct roster_word *w, const char *prep, const char *key)
{
    char q[ROSTER_QUOTE_MAX + 8];
    if (w->valid(s))
        return true;
    roster_quote(s, strlen(s), q, sizeof(q));
    if (prep)
        roster_error(p, n, "bad %s %s %s '%s'%s", w->what, q, prep, key, w->expected);
    else
        roster_error(p, n, "bad %s %s%s", w->what, q, w->expected);
    return false;
}

/* True for a loopback host: 127.0.0.0/8, ::1 (also v4-mapped) or localhost. */
static bool roster_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

/* ---- string vectors ---------------------------------------------------- */

/* An empty NULL-terminated vector. */
static char **roster_strv_new(void)
{
    return xcalloc(1, sizeof(char *));
}

/* Free a NULL-terminated vector. */
static void roster_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Deep copy of a NULL-terminated vector. */
static char **roster_strv_copy(char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    char **c = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        c[i] = xstrdup(v[i]);
    return c;
}

/* True when both vectors hold the same strings in the same order. */
static bool roster_strv_equal(char *const *a, char *const *b)
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return !a[i] && !b[i];
}

/* Replace *SLOT with a copy of S. */
static void roster_set_str(char **slot, const char *s)
{
    free(*slot);
    *slot = xstrdup(s);
}

/* ---- typed readers ----------------------------------------------------- */

/* Read a non-empty string. */
static bool roster_read_string(struct roster_parse *p, yaml_node_t *n, const char *key, char **slot)
{
    const char *s = roster_scalar(p, n, "a string", key);
    if (!s)
        return false;
    if (!*s) {
        roster_error(p, n, "'%s' must not be empty", key);
        return false;
    }
    roster_set_str(slot, s);
    return true;
}

/* Read one of F->choices. */
static bool roster_read_choice(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                               char **slot)
{
    const char *s = roster_scalar(p, n, "a string", f->name);
    if (!s)
        return false;
    char list[256] = "", q[ROSTER_QUOTE_MAX + 8];
    for (size_t i = 0; f->choices[i]; i++) {
        if (strcmp(s, f->choices[i]) == 0) {
            roster_set_str(slot, s);
            return true;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 f->choices[i]);
    }
    roster_quote(s, strlen(s), q, sizeof(q));
    roster_error(p, n, "unknown %s %s (expected %s)", f->name, q, list);
    return false;
}

/* Report V outside F's min..max. */
static void roster_range_error(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                               long v)
{
    if (v < 0 && f->min == 0)
        roster_error(p, n, "'%s' must not be negative, got %ld", f->name, v);
    else if (f->max == INT_MAX && v < f->min)
        roster_error(p, n, "'%s' must be at least %ld, got %ld", f->name, f->min, v);
    else if (f->max == INT_MAX)
        roster_error(p, n, "'%s' is too large (at most %ld)", f->name, f->max);
    else
        roster_error(p, n, "'%s' must be between %ld and %ld, got %ld", f->name, f->min, f->max, v);
}

/* Read an integer within F->min..F->max. */
static bool roster_read_int(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                            int *slot)
{
    const char *s = roster_scalar(p, n, "an integer", f->name);
    long v;
    if (!s)
        return false;
    if (!roster_parse_long(s, &v)) {
        roster_expected(p, n, "an integer", f->name);
        return false;
    }
    if (v < f->min || v > f->max) {
        roster_range_error(p, n, f, v);
        return false;
    }
    *slot = (int)v;
    return true;
}

/* Read a duration in seconds; F->min 1 requires more than 0. */
static bool roster_read_duration(struct roster_parse *p, yaml_node_t *n,
                                 const struct roster_field *f, double *out)
{
    const char *s = roster_scalar(p, n, "a duration", f->name);
    char q[ROSTER_QUOTE_MAX + 8];
    if (!s)
        return false;
    switch (roster_parse_duration(s, out)) {
    case 0:
        if (f->min > 0 && *out <= 0) {
            roster_error(p, n, "'%s' must be more than 0", f->name);
            return false;
        }
        return true;
    case -2:
        roster_error(p, n, "'%s' must not be negative", f->name);
        return false;
    case -3:
        roster_error(p, n, "'%s' is too long (at most %.0f s)", f->name, ROSTER_MAX_SECONDS);
        return false;
    default:
        roster_quote(s, strlen(s), q, sizeof(q));
        roster_error(p, n, "bad duration %s for '%s' (seconds, or a number with ms, s, m or h)", q,
                     f->name);
        return false;
    }
}

/* Read a size in bytes, more than 0. */
static bool roster_read_size(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                             unsigned long long *out)
{
    const char *s = roster_scalar(p, n, "a size", f->name);
    char q[ROSTER_QUOTE_MAX + 8];
    if (!s)
        return false;
    switch (roster_parse_size(s, out)) {
    case 0:
        if (*out == 0) {
            roster_error(p, n, "'%s' must be more than 0", f->name);
            return false;
        }
        return true;
    case -2:
        roster_error(p, n, "'%s' must not be negative", f->name);
        return false;
    case -3:
        roster_error(p, n, "'%s' is too large (at most 1TiB)", f->name);
        return false;
    default:
        roster_quote(s, strlen(s), q, sizeof(q));
        roster_error(p, n,
                     "bad size %s for '%s' (bytes, or a number with k, KiB, m, MiB, g or GiB)", q,
                     f->name);
        return false;
    }
}

/* Read a boolean. */
static bool roster_read_bool(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                             bool *slot)
{
    const char *s = roster_scalar(p, n, "true or false", f->name);
    int v = s ? roster_parse_bool(s) : -1;
    if (s && v < 0)
        roster_expected(p, n, "true or false", f->name);
    if (v < 0)
        return false;
    *slot = v == 1;
    return true;
}

/* Read a signal name into its number. */
static bool roster_read_signal(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                               int *slot)
{
    const char *s = roster_scalar(p, n, "a signal name", f->name);
    char list[128] = "", q[ROSTER_QUOTE_MAX + 8];
    if (!s)
        return false;
    int sig = roster_parse_signal(s);
    if (sig > 0) {
        *slot = sig;
        return true;
    }
    for (size_t i = 0; i < sizeof roster_signals / sizeof roster_signals[0]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 roster_signals[i].name);
    roster_quote(s, strlen(s), q, sizeof q);
    roster_error(p, n, "unknown %s %s (expected %s)", f->name, q, list);
    return false;
}

/* Read a share of CPU: "50%" of one CPU, or a number of CPUs ("1.5"), into
 * percent of one CPU. */
static bool roster_read_cpu(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                            int *slot)
{
    const char *s = roster_scalar(p, n, "a share of CPU", f->name);
    char *end, q[ROSTER_QUOTE_MAX + 8];
    if (!s)
        return false;
    double v = isdigit((unsigned char)*s) ? strtod(s, &end) : -1;
    if (v >= 0 && strcmp(end, "%") == 0)
        v /= 100;
    else if (v >= 0 && *end)
        v = -1;
    if (v < 0.01 || v > 1024) {
        roster_quote(s, strlen(s), q, sizeof q);
        roster_error(p, n,
                     "bad %s %s (expected a percentage of one CPU such as 50%% or 150%%, "
                     "or a number of CPUs from 0.01 to 1024)",
                     f->name, q);
        return false;
    }
    *slot = (int)(v * 100 + 0.5);
    return true;
}

/* Read a sequence of strings, each passed through F->item_check. */
static bool roster_read_strv(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                             char ***slot)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        roster_expected(p, n, "a sequence", f->name);
        return false;
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start), k = 0;
    char **v = xcalloc(count + 1, sizeof(char *));
    bool ok = true;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(&p->doc, *it);
        const char *s = roster_scalar(p, item, "a string", f->name);
        if (s && (!f->word || roster_word_check(p, item, s, f->word, "in", f->name)) &&
            (!f->item_check || f->item_check(p, item, f->name)))
            v[k++] = xstrdup(s);
        else
            ok = false;
    }
    roster_strv_free(*slot);
    *slot = v;
    return ok;
}

/* A name and where it came from, for finding duplicates by sorting. */
struct roster_named {
    const char *name;
    size_t index;
};

/* qsort order: by name, then by position. */
static int roster_named_order(const void *a, const void *b)
{
    const struct roster_named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Sort V (N entries); afterwards each duplicate follows its first use. */
static void roster_named_sort(struct roster_named *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), roster_named_order);
}

/* Read a mapping of NAME: value into "NAME=value" strings, in file order. */
static bool roster_read_env(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                            char ***slot)
{
    if (n->type != YAML_MAPPING_NODE) {
        roster_expected(p, n, "a mapping", f->name);
        return false;
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start), k = 0;
    char **v = xcalloc(count + 1, sizeof(char *));
    struct roster_named *names = xcalloc(count + 1, sizeof(*names));
    size_t n_names = 0, before = p->n_errors;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *key = yaml_document_get_node(&p->doc, n->data.mapping.pairs.start[i].key);
        yaml_node_t *val = yaml_document_get_node(&p->doc, n->data.mapping.pairs.start[i].value);
        const char *name = roster_scalar(p, key, "a variable name", f->name);
        if (name && !roster_word_check(p, key, name, &roster_word_variable, "in", f->name))
            name = NULL;
        const char *value = roster_scalar(p, val, "a string", name ? name : f->name);
        if (name)
            names[n_names++] = (struct roster_named){name, i};
        if (name && value)
            v[k++] = xasprintf("%s=%s", name, value);
    }
    roster_named_sort(names, n_names);
    for (size_t i = 1, first = 0; i < n_names; i++) {
        if (strcmp(names[i].name, names[first].name) != 0) {
            first = i;
            continue;
        }
        yaml_node_t *fk =
            yaml_document_get_node(&p->doc, n->data.mapping.pairs.start[names[first].index].key);
        yaml_node_t *dk =
            yaml_document_get_node(&p->doc, n->data.mapping.pairs.start[names[i].index].key);
        roster_error(p, dk, "duplicate key '%s' in '%s' (first at line %zu)", names[i].name,
                     f->name, (size_t)fk->start_mark.line + 1);
    }
    free(names);
    roster_strv_free(*slot);
    *slot = v;
    return p->n_errors == before;
}

/* ---- mappings ---------------------------------------------------------- */

static void roster_walk(struct roster_parse *p, yaml_node_t *map, const char *ctx,
                        const struct roster_table *t, void *base);

/* True when NODE may be walked as a mapping for KEY (a null is an empty one,
 * and false is returned quietly). */
static bool roster_is_map(struct roster_parse *p, yaml_node_t *n, const char *key)
{
    if (n->type == YAML_MAPPING_NODE)
        return true;
    if (!roster_is_null(n))
        roster_expected(p, n, "a mapping", key);
    return false;
}

/* Read a nested mapping into the struct at SLOT. */
static bool roster_read_map(struct roster_parse *p, yaml_node_t *n, const struct roster_field *f,
                            const char *ctx, void *slot)
{
    if (!roster_is_map(p, n, f->name))
        return roster_is_null(n);
    char *sub = xasprintf("%s.%s", ctx, f->name);
    roster_walk(p, n, sub, f->table, slot);
    free(sub);
    return true;
}

/* Read VAL into BASE according to F. */
static void roster_field_read(struct roster_parse *p, const struct roster_field *f,
                              yaml_node_t *val, const char *ctx, void *base)
{
    void *slot = (char *)base + f->offset;
    double secs;
    unsigned long long bytes;
    bool ok = false;
    switch (f->kind) {
    case ROSTER_STRING:
        ok = roster_read_string(p, val, f->name, slot);
        break;
    case ROSTER_CHOICE:
        ok = roster_read_choice(p, val, f, slot);
        break;
    case ROSTER_INT:
        ok = roster_read_int(p, val, f, slot);
        break;
    case ROSTER_SECONDS:
        if ((ok = roster_read_duration(p, val, f, &secs)))
            *(double *)slot = secs;
        break;
    case ROSTER_MS:
        if ((ok = roster_read_duration(p, val, f, &secs)))
            *(int *)slot = secs > 0 && secs < 0.001 ? 1 : (int)(secs * 1000 + 0.5);
        break;
    case ROSTER_SIZE:
        if ((ok = roster_read_size(p, val, f, &bytes)))
            *(size_t *)slot = (size_t)bytes;
        break;
    case ROSTER_LSIZE:
        if ((ok = roster_read_size(p, val, f, &bytes)))
            *(long *)slot = (long)bytes;
        break;
    case ROSTER_BOOL:
        ok = roster_read_bool(p, val, f, slot);
        break;
    case ROSTER_SIGNAL:
        ok = roster_read_signal(p, val, f, slot);
        break;
    case ROSTER_CPU:
        ok = roster_read_cpu(p, val, f, slot);
        break;
    case ROSTER_STRV:
        ok = roster_read_strv(p, val, f, slot);
        break;
    case ROSTER_ENV:
        ok = roster_read_env(p, val, f, slot);
        break;
    case ROSTER_MAP:
        ok = roster_read_map(p, val, f, ctx, slot);
        break;
    case ROSTER_NODE:
        if (f->hook)
            f->hook(p, val, base);
        else
            *(yaml_node_t **)slot = val;
        return;
    }
    if (ok && f->word && f->kind == ROSTER_STRING)
        ok = roster_word_check(p, val, (const char *)val->data.scalar.value, f->word,
                               f->word->single, f->name);
    if (ok && f->hook)
        f->hook(p, val, base);
}

/* Report an unknown KEY in CTX with the allowed keys of T. */
static void roster_unknown_key(struct roster_parse *p, yaml_node_t *key, const char *ctx,
                               const struct roster_table *t)
{
    char q[ROSTER_QUOTE_MAX + 8], list[1024] = "";
    for (const struct roster_table *part = t; part; part = part->more)
        for (size_t i = 0; i < part->n; i++)
            if (part->fields[i].name) /* a derived row is no key */
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         *list ? ", " : "", part->fields[i].name);
    roster_quote((const char *)key->data.scalar.value, key->data.scalar.length, q, sizeof(q));
    roster_error(p, key, "unknown key %s in %s (expected %s)", q, ctx, list);
}

/* The field of T named by KEY, or NULL; *INDEX counts across T's parts. */
static const struct roster_field *roster_field_find(const struct roster_table *t, yaml_node_t *key,
                                                    size_t *index)
{
    *index = 0;
    for (; t; t = t->more)
        for (size_t i = 0; i < t->n; i++, (*index)++)
            if (t->fields[i].name && roster_key_is(key, t->fields[i].name))
                return &t->fields[i];
    return NULL;
}

/* Walk mapping MAP (context CTX for messages), reading each key of T into
 * BASE; unknown, duplicate and non-string keys are reported. */
static void roster_walk(struct roster_parse *p, yaml_node_t *map, const char *ctx,
                        const struct roster_table *t, void *base)
{
    yaml_node_t *seen[ROSTER_MAX_KEYS] = {0};
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *key = yaml_document_get_node(&p->doc, pr->key);
        yaml_node_t *val = yaml_document_get_node(&p->doc, pr->value);
        char got[ROSTER_QUOTE_MAX + 16];
        if (key->type != YAML_SCALAR_NODE) {
            roster_describe(key, got, sizeof(got));
            roster_error(p, key, "expected a string key in %s, got %s", ctx, got);
            continue;
        }
        size_t index;
        const struct roster_field *f = roster_field_find(t, key, &index);
        if (!f || index >= ROSTER_MAX_KEYS) {
            roster_unknown_key(p, key, ctx, t);
            continue;
        }
        yaml_node_t **first = &seen[index];
        if (*first) {
            roster_error(p, key, "duplicate key '%s' in %s (first at line %zu)", f->name, ctx,
                         (size_t)(*first)->start_mark.line + 1);
            continue;
        }
        *first = key;
        roster_field_read(p, f, val, ctx, base);
    }
}

/* ---- hooks ------------------------------------------------------------- */

/* An origin is scheme://host[:port], without a path (browsers send exactly
 * that, so anything else could never match). */
static bool roster_check_origin(struct roster_parse *p, yaml_node_t *item, const char *key)
{
    const char *s = (const char *)item->data.scalar.value;
    const char *sep = strstr(s, "://");
    bool ok = sep && sep > s && sep[3] && !strchr(sep + 3, '/');
    for (const char *c = s; ok && *c; c++)
        ok = !isspace((unsigned char)*c) && !iscntrl((unsigned char)*c);
    for (const char *c = s; ok && c < sep; c++)
        ok = isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.';
    if (!ok) {
        char q[ROSTER_QUOTE_MAX + 8];
        roster_quote(s, strlen(s), q, sizeof(q));
        roster_error(p, item, "bad origin %s in '%s' (expected scheme://host[:port])", q, key);
    }
    return ok;
}

/* A server name is a Host value without a port: a DNS name, an IPv4
 * address or an [IPv6] one (what guard.h compares Host headers with). */
static bool roster_check_server_name(struct roster_parse *p, yaml_node_t *item, const char *key)
{
    const char *s = (const char *)item->data.scalar.value;
    char name[256];
    int port;
    if (guard_host_split(s, name, sizeof name, &port) == 0 && port < 0)
        return true;
    char q[ROSTER_QUOTE_MAX + 8];
    roster_quote(s, strlen(s), q, sizeof(q));
    roster_error(p, item, "bad server name %s in '%s' (expected a host name or address, no port)",
                 q, key);
    return false;
}

/* True for a host or address without spaces, control bytes, brackets or
 * slashes (the socket code resolves it). */
static bool roster_host_valid(const char *s)
{
    for (const char *c = s; *c; c++)
        if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c) || strchr("[]/", *c))
            return false;
    return *s != '\0';
}

/* Report that binding HOST needs a token, when it does. */
static void roster_check_exposure(struct roster_parse *p, yaml_node_t *n, const char *host)
{
    if (roster_loopback(host) || p->r->token)
        return;
    if (p->r->token_env)
        roster_error(p, n, "binding %s needs a token (token_env: %s is unset or empty)", host,
                     p->r->token_env);
    else
        roster_error(p, n, "binding %s needs a token (token_env)", host);
}

/* A bind address: no spaces or brackets; non-loopback needs a token. */
static void roster_check_bind(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)base;
    const char *s = (const char *)n->data.scalar.value;
    char q[ROSTER_QUOTE_MAX + 8];
    if (roster_host_valid(s)) {
        roster_check_exposure(p, n, s);
        return;
    }
    roster_quote(s, strlen(s), q, sizeof(q));
    roster_error(p, n, "bad bind address %s (expected an address such as 127.0.0.1 or ::1)", q);
}

/* True when the git branch name component NAME is well formed (git
 * check-ref-format's rules for what a roster would hold). */
static bool roster_branch_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '-' || s[0] == '/' || s[n - 1] == '/' || s[n - 1] == '.' ||
        strstr(s, "..") || strstr(s, "//") || strstr(s, "/.") || s[0] == '.' ||
        (n >= 5 && strcmp(s + n - 5, ".lock") == 0))
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-' || *c == '/'))
            return false;
    return true;
}

/* True when DIR or a folder above it holds .git (lexically: the work dir
 * need not exist yet, then it is no repository). */
static bool roster_in_git_repo(const char *dir)
{
    char *p = xstrdup(dir);
    bool found = false;
    for (;;) {
        char *git = xasprintf("%s/.git", p);
        struct stat st;
        found = stat(git, &st) == 0;
        free(git);
        char *slash = strrchr(p, '/');
        if (found || !slash || slash == p)
            break;
        *slash = '\0';
    }
    free(p);
    return found;
}

/* workspace.git_worktree: a branch prefix, and the work dir a git repository. */
static void roster_check_worktree(struct roster_parse *p, yaml_node_t *n, void *base)
{
    struct roster_workspace *w = base;
    char q[ROSTER_QUOTE_MAX + 8];
    roster_quote(w->git_worktree, strlen(w->git_worktree), q, sizeof q);
    if (!roster_branch_valid(w->git_worktree))
        roster_error(
            p, n,
            "bad branch prefix %s for git_worktree (A-Z a-z 0-9 . _ - /, a valid git branch name)",
            q);
    else if (!roster_in_git_repo(p->r->work_dir))
        roster_error(p, n,
                     "git_worktree needs the work dir %s to be a git repository (git init, or "
                     "clone one there)",
                     p->r->work_dir);
}

/* Split "host:port" or "[v6]:port"; false when TEXT is neither. */
static bool roster_split_listen(const char *text, char **host, long *port)
{
    const char *start = text, *end, *colon;
    struct in6_addr a6;
    if (*text == '[') {
        start = text + 1;
        end = strchr(start, ']');
        if (!end || end[1] != ':')
            return false;
        colon = end + 1;
    } else {
        end = colon = strrchr(text, ':');
        if (!colon || colon == text || memchr(text, ':', (size_t)(colon - text)))
            return false;
    }
    if (!isdigit((unsigned char)colon[1]) || !roster_parse_long(colon + 1, port))
        return false;
    *host = xstrndup(start, (size_t)(end - start));
    if (start != text && inet_pton(AF_INET6, *host, &a6) != 1) {
        free(*host);
        *host = NULL;
        return false;
    }
    return true;
}

/* listen: "host:port" or "[v6]:port". */
static void roster_read_listen(struct roster_parse *p, yaml_node_t *n, void *base)
{
    struct roster *r = base;
    const char *s = roster_scalar(p, n, "a string", "listen");
    char *host = NULL, q[ROSTER_QUOTE_MAX + 8];
    long port;
    if (!s)
        return;
    if (!roster_split_listen(s, &host, &port) || !roster_host_valid(host)) {
        roster_quote(s, strlen(s), q, sizeof(q));
        roster_error(p, n, "bad listen address %s (expected host:port or [v6]:port)", q);
    } else if (port < 1 || port > ROSTER_MAX_PORT) {
        roster_error(p, n, "listen port %ld is out of range (1..65535)", port);
    } else {
        free(r->listen_host);
        r->listen_host = host;
        r->listen_port = (int)port;
        p->listen = n;
        return;
    }
    free(host);
}

/* ---- the worker's command line ----------------------------------------- */

/* A growing NULL-terminated argv; TAIL (not owned) goes last, after "--". */
struct roster_argv {
    char **v;
    size_t n;
    char *const *tail;
};

/* Append S (taken over). */
static void roster_argv_add(struct roster_argv *a, char *s)
{
    a->v = xrealloc(a->v, (a->n + 2) * sizeof *a->v);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

/* Append "NAME VALUE" (VALUE taken over). */
static void roster_argv_opt(struct roster_argv *a, const char *name, char *value)
{
    roster_argv_add(a, xstrdup(name));
    roster_argv_add(a, value);
}

/* stop_timeout reaches the worker as --stop-grace, a second shorter (at
 * least 0.5 s): its running task must be ended before our SIGKILL. */
static void roster_argv_stop_grace(struct roster_argv *a, const void *slot)
{
    roster_argv_opt(a, "--stop-grace", xasprintf("%.3f", roster_stop_grace(*(const double *)slot)));
}

/* adapter.command is the argv after "--", always last. */
static void roster_argv_command(struct roster_argv *a, const void *slot)
{
    char *const *cmd = *(char *const *const *)slot;
    a->tail = cmd[0] ? cmd : NULL;
}

/* The agent settings reach the worker only when they differ from its
 * defaults, so a bot without an agent keeps the argv it had. */
static void roster_argv_session(struct roster_argv *a, const void *slot)
{
    const char *v = *(char *const *)slot;
    if (v && strcmp(v, "continue") == 0)
        roster_argv_opt(a, "--session", xstrdup(v));
}

/* auto_resume: false only (see roster_argv_session). */
static void roster_argv_auto_resume(struct roster_argv *a, const void *slot)
{
    if (!*(const bool *)slot)
        roster_argv_opt(a, "--auto-resume", xstrdup("false"));
}

/* budget.tokens_per_day: when set (see roster_argv_session). */
static void roster_argv_budget_tokens(struct roster_argv *a, const void *slot)
{
    if (*(const int *)slot > 0)
        roster_argv_opt(a, "--budget-tokens", xasprintf("%d", *(const int *)slot));
}

/* ---- the bot's process: folder, environment, user, limits -------------- */

static char *roster_path_join(const char *dir, const char *rel);
static char *roster_cwd(void);

/* The source (file) that NODE of P's document came from; NULL: P's own. */
static const struct roster_source *roster_node_source(const struct roster_parse *p,
                                                      const yaml_node_t *n)
{
    if (!n || n < p->doc.nodes.start || n >= p->doc.nodes.top)
        return NULL;
    size_t id = (size_t)(n - p->doc.nodes.start) + 1;
    for (size_t i = 0; i < p->n_sources; i++)
        if (id >= p->sources[i].first && id <= p->sources[i].last)
            return &p->sources[i];
    return NULL;
}

/* The folder that relative paths in NODE's file are against (absolute), or
 * NULL when the current directory is. */
static const char *roster_node_dir(const struct roster_parse *p, const yaml_node_t *n)
{
    const struct roster_source *src = roster_node_source(p, n);
    return src ? src->dir : p->base_dir;
}

/* cwd: relative to the work dir, made absolute. */
static void roster_check_cwd(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)n;
    struct roster_bot *b = base;
    char *abs = roster_path_join(p->r->work_dir, b->exec.cwd);
    free(b->exec.cwd);
    b->exec.cwd = abs;
}

/* env_file: read the file (relative to the roster file naming it) now, so
 * that its errors are the roster's. */
static void roster_read_env_file(struct roster_parse *p, yaml_node_t *n, void *base)
{
    struct roster_bot *b = base;
    const char *dir = roster_node_dir(p, n);
    char *cwd = dir ? NULL : roster_cwd(), err[200];
    char *path = roster_path_join(dir ? dir : cwd ? cwd : "/", b->exec.env_file);
    size_t len, line;
    char *text = util_read_file(path, ROSTER_MAX_FILE, &len), **env;
    free(cwd);
    free(b->exec.env_file);
    b->exec.env_file = path;
    if (!text) {
        roster_error(p, n, "cannot read env_file %s: %s", path,
                     errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
    } else if (!(env = envfile_parse(text, len, &line, err, sizeof err))) {
        roster_error(p, n, "env_file %s:%zu: %s", path, line, err);
    } else {
        roster_strv_free(b->exec.file_env);
        b->exec.file_env = env;
    }
    free(text);
}

/* Note that the host must provide VALUE (a user, a group or a cgroup
 * controller, by KIND) for KEY, asked at node N. Checked later by
 * hostcheck_roster, for the commands that run bots: the load itself probes
 * nothing of the host, so `hive status` loads a roster with `user:` as any
 * user. */
static void roster_need(struct roster_parse *p, yaml_node_t *n, enum roster_need_kind kind,
                        const char *key, const char *value)
{
    const struct roster_source *src = roster_node_source(p, n);
    char q[ROSTER_QUOTE_MAX + 8];
    struct roster *r = p->r;

    if (!r || !value)
        return;
    roster_quote(value, strlen(value), q, sizeof q);
    r->needs = xrealloc(r->needs, (r->n_needs + 1) * sizeof *r->needs);
    r->needs[r->n_needs++] =
        (struct roster_need){.kind = kind,
                             .key = xstrdup(key),
                             .value = xstrdup(value),
                             .shown = xstrdup(q),
                             .where = xasprintf("%s:%zu:%zu", src ? src->name : p->name,
                                                n->start_mark.line + 1, n->start_mark.column + 1)};
}

/* user: the host must have it, and hive must be root (hostcheck.c). */
static void roster_check_user(struct roster_parse *p, yaml_node_t *n, void *base)
{
    struct roster_bot *b = base;
    roster_need(p, n, ROSTER_NEED_USER, "user", b->exec.user);
}

/* group: likewise. */
static void roster_check_group(struct roster_parse *p, yaml_node_t *n, void *base)
{
    struct roster_bot *b = base;
    roster_need(p, n, ROSTER_NEED_GROUP, "group", b->exec.group);
}

/* memory_max: needs a writable memory controller (hostcheck.c). */
static void roster_check_memory_max(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)base;
    roster_need(p, n, ROSTER_NEED_CGROUP, "memory_max", "memory");
}

/* tasks_max: needs a pids controller. */
static void roster_check_tasks_max(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)base;
    roster_need(p, n, ROSTER_NEED_CGROUP, "tasks_max", "pids");
}

/* cpu_max: needs a cpu controller. */
static void roster_check_cpu_max(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)base;
    roster_need(p, n, ROSTER_NEED_CGROUP, "cpu_max", "cpu");
}

/* budget.usd_per_day: a number of USD, 0 or more. */
static void roster_check_usd(struct roster_parse *p, yaml_node_t *n, void *base)
{
    const char *v = ((struct roster_budget *)base)->usd_per_day;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= 0 && d < 1e12))
        roster_error(p, n, "usd_per_day must be a number of USD, 0 or more");
}

/* budget.reset_at: "HH:MM", local time. */
static void roster_check_clock(struct roster_parse *p, yaml_node_t *n, void *base)
{
    const char *v = ((struct roster_budget *)base)->reset_at;
    int h, m, len = 0;
    if (sscanf(v, "%2d:%2d%n", &h, &m, &len) != 2 || v[len] || h < 0 || h > 23 || m < 0 || m > 59)
        roster_error(p, n, "reset_at must be a time of day, HH:MM");
}

/* ---- remote bots ------------------------------------------------------- */

bool roster_url_split(const char *url, bool *tls, char *host, size_t hostcap, int *port)
{
    struct http_parser_url u;
    size_t len = strlen(url);
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
        !(u.field_set & (1 << UF_HOST)) || (u.field_set & (1 << UF_USERINFO)) ||
        (u.field_set & (1 << UF_QUERY)) || (u.field_set & (1 << UF_FRAGMENT)))
        return false;
    const char *schema = url + u.field_data[UF_SCHEMA].off;
    size_t slen = u.field_data[UF_SCHEMA].len;
    if (slen == 5 && strncasecmp(schema, "https", 5) == 0)
        *tls = true;
    else if (slen == 4 && strncasecmp(schema, "http", 4) == 0)
        *tls = false;
    else
        return false;
    if ((u.field_set & (1 << UF_PATH)) &&
        !(u.field_data[UF_PATH].len == 1 && url[u.field_data[UF_PATH].off] == '/'))
        return false;
    size_t hlen = u.field_data[UF_HOST].len;
    if (hlen == 0 || hlen >= hostcap)
        return false;
    memcpy(host, url + u.field_data[UF_HOST].off, hlen);
    host[hlen] = '\0';
    *port = (u.field_set & (1 << UF_PORT)) ? u.port : *tls ? 443 : 80;
    return *port > 0;
}

static void roster_bot_label(const struct roster_bot *b, size_t i, char *buf, size_t cap);

/* Make *CA (a path; the key WHAT) absolute against the file naming it, and
 * readable. */
static void roster_resolve_ca(struct roster_parse *p, yaml_node_t *n, const char *what, char **ca)
{
    const char *dir = roster_node_dir(p, n);
    char *cwd = dir ? NULL : roster_cwd();
    char *path = roster_path_join(dir ? dir : cwd ? cwd : "/", *ca);
    free(cwd);
    free(*ca);
    *ca = path;
    if (access(path, R_OK) != 0)
        roster_error(p, n, "cannot read %s %s: %s", what, path, strerror(errno));
}

/* A bot's ca: a readable file, relative to the roster file that names it. */
static void roster_check_ca(struct roster_parse *p, yaml_node_t *n, void *base)
{
    roster_resolve_ca(p, n, "ca", &((struct roster_bot *)base)->remote.ca);
}

/* hive.tls.cert: a readable file, relative to the roster file. */
static void roster_check_tls_cert(struct roster_parse *p, yaml_node_t *n, void *base)
{
    roster_resolve_ca(p, n, "cert", &((struct roster_tls *)base)->cert);
}

/* hive.tls.key: the same. */
static void roster_check_tls_key(struct roster_parse *p, yaml_node_t *n, void *base)
{
    roster_resolve_ca(p, n, "key", &((struct roster_tls *)base)->key);
}

/* hive.tls: a certificate needs its key and the other way round. */
static void roster_check_tls(struct roster_parse *p, yaml_node_t *n, void *base)
{
    const struct roster_tls *t = &((struct roster *)base)->tls;
    if (!t->cert != !t->key)
        roster_error(p, n, "tls needs both cert and key");
}

/* hive.ca: the same, the default of every remote bot. */
static void roster_check_hive_ca(struct roster_parse *p, yaml_node_t *n, void *base)
{
    roster_resolve_ca(p, n, "ca", &((struct roster *)base)->ca);
}

/* url: http(s)://HOST:PORT of a bot the supervisor does not start. */
static void roster_check_url(struct roster_parse *p, yaml_node_t *n, void *base)
{
    (void)base;
    const char *s = (const char *)n->data.scalar.value;
    char q[ROSTER_QUOTE_MAX + 8], host[256];
    bool tls;
    int port;
    if (roster_url_split(s, &tls, host, sizeof host, &port))
        return;
    roster_quote(s, strlen(s), q, sizeof(q));
    roster_error(p, n, "bad url %s (expected http://HOST:PORT or https://HOST:PORT)", q);
}

/* A remote bot's own keys that a local bot has no use for. */
static const char *const roster_remote_only[] = {"url", "token_env", "health", "ca", NULL};
/* The keys a remote bot may have (the rest describe a process we start;
 * pool and tags are the supervisor's routing, SPEC §11). */
static const char *const roster_remote_keys[] = {
    "id", "url", "token_env", "health", "ca", "autostart", "depends_on", "pool", "tags", NULL};

/* True when KEY is one of LIST. */
static bool roster_key_listed(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
}

/* A remote bot (url:) refuses the keys of a started process; a local bot
 * the keys of a remote one. Its token is read from token_env. */
static void roster_bot_check_remote(struct roster_parse *p, size_t i, yaml_node_t *map)
{
    struct roster_bot *b = &p->r->bots[i];
    bool remote = b->remote.url != NULL;
    char label[80];
    roster_bot_label(b, i, label, sizeof(label));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&p->doc, pr->key);
        if (!k || k->type != YAML_SCALAR_NODE)
            continue;
        const char *key = (const char *)k->data.scalar.value;
        if (remote && !roster_key_listed(roster_remote_keys, key))
            roster_error(p, k, "'%s' makes no sense for the remote bot %s (it has a url)", key,
                         label);
        else if (!remote && roster_key_listed(roster_remote_only, key))
            roster_error(p, k, "'%s' is only for a remote bot (one with a url)", key);
    }
    if (remote && !b->remote.ca && p->r->ca)
        b->remote.ca = xstrdup(p->r->ca);
    if (remote && b->remote.token_env) {
        const char *token = getenv(b->remote.token_env);
        free(b->remote.token);
        b->remote.token = token && *token ? xstrdup(token) : NULL;
    }
}

/* ---- tables ------------------------------------------------------------ */

static const char *const roster_modes[] = {"hybrid", "cli-only", "websocket-only", NULL};
static const char *const roster_adapter_types[] = {"mock",  "cli",    "claude",
                                                   "codex", "gemini", NULL};
static const char *const roster_sessions[] = {"new", "continue", NULL};
static const char *const roster_policies[] = {"always", "on-failure", "never", NULL};

/* The start of a row: its YAML key, kind and place in TYPE. The rest of a row
 * says, by name: .dflt (as YAML text), .min/.max/.choices/.hook/.item_check
 * (checks), .flag or .argv (how the worker gets it; neither: the supervisor
 * keeps it), .live (a reload takes a change without a new worker). */
#define ROSTER_FIELD(key, k, type, member) .name = key, .kind = k, .offset = offsetof(type, member)
/* A row with no YAML key: a value another row's hook derives (env_file's
 * variables). The walk never matches it; its default, copy, free and the
 * reload's comparison come from the row all the same. */
#define ROSTER_DERIVED(k, type, member) .name = NULL, .kind = k, .offset = offsetof(type, member)

static const struct roster_field roster_adapter_fields[] = {
    {ROSTER_FIELD("type", ROSTER_CHOICE, struct roster_adapter, type), .dflt = "mock",
     .choices = roster_adapter_types, .flag = "--adapter-type"},
    {ROSTER_FIELD("command", ROSTER_STRV, struct roster_adapter, command),
     .argv = roster_argv_command},
    {ROSTER_FIELD("env", ROSTER_ENV, struct roster_adapter, env), .flag = "--env"},
    {ROSTER_FIELD("env_remove", ROSTER_STRV, struct roster_adapter, env_remove),
     .word = &roster_word_variable, .flag = "--env-remove"},
    {ROSTER_FIELD("delay_ms", ROSTER_INT, struct roster_adapter, delay_ms), .dflt = "0",
     .max = INT_MAX, .flag = "--mock-delay-ms"},
    {ROSTER_FIELD("output_cap", ROSTER_LSIZE, struct roster_adapter, output_cap), .dflt = "8MiB",
     .flag = "--output-cap"},
    /* Agent CLIs (worker/agent.c): more arguments, the model. */
    {ROSTER_FIELD("args", ROSTER_STRV, struct roster_adapter, args), .flag = "--adapter-arg"},
    {ROSTER_FIELD("model", ROSTER_STRING, struct roster_adapter, model), .flag = "--model"},
};
static const struct roster_table roster_adapter_table = ROSTER_TABLE(roster_adapter_fields, NULL);

/* A day's spend (the worker's budget.c; the hive's: the supervisor). */
static const struct roster_field roster_budget_fields[] = {
    {ROSTER_FIELD("usd_per_day", ROSTER_STRING, struct roster_budget, usd_per_day),
     .hook = roster_check_usd, .flag = "--budget-usd"},
    {ROSTER_FIELD("tokens_per_day", ROSTER_INT, struct roster_budget, tokens_per_day),
     .max = INT_MAX, .argv = roster_argv_budget_tokens},
    {ROSTER_FIELD("reset_at", ROSTER_STRING, struct roster_budget, reset_at),
     .hook = roster_check_clock, .flag = "--budget-reset"},
};
static const struct roster_table roster_budget_table = ROSTER_TABLE(roster_budget_fields, NULL);

/* The supervisor's own: the worker is never told. */
static const struct roster_field roster_restart_fields[] = {
    {ROSTER_FIELD("policy", ROSTER_CHOICE, struct roster_restart, policy), .dflt = "always",
     .choices = roster_policies},
    {ROSTER_FIELD("max_restarts", ROSTER_INT, struct roster_restart, max_restarts), .dflt = "10",
     .max = INT_MAX},
    {ROSTER_FIELD("window", ROSTER_SECONDS, struct roster_restart, window), .dflt = "60", .min = 1},
};
static const struct roster_table roster_restart_table = ROSTER_TABLE(roster_restart_fields, NULL);

/* The supervisor's own (logcap.c). */
static const struct roster_field roster_log_fields[] = {
    {ROSTER_FIELD("max_bytes", ROSTER_LSIZE, struct roster_logcfg, max_bytes), .dflt = "10MiB"},
    {ROSTER_FIELD("backups", ROSTER_INT, struct roster_logcfg, backups), .dflt = "3", .max = 1000},
};
static const struct roster_table roster_log_table = ROSTER_TABLE(roster_log_fields, NULL);

/* A bot's git worktree (the worker's workspace.c). */
static const struct roster_field roster_workspace_fields[] = {
    {ROSTER_FIELD("git_worktree", ROSTER_STRING, struct roster_workspace, git_worktree),
     .hook = roster_check_worktree, .flag = "--git-worktree"},
};
static const struct roster_table roster_workspace_table =
    ROSTER_TABLE(roster_workspace_fields, NULL);
/* The supervisor's own (remote.c): HAProxy's defaults but a 2 s interval. */
static const struct roster_field roster_health_fields[] = {
    {ROSTER_FIELD("interval", ROSTER_SECONDS, struct roster_health, interval), .dflt = "2",
     .min = 1},
    {ROSTER_FIELD("timeout", ROSTER_SECONDS, struct roster_health, timeout), .dflt = "1", .min = 1},
    {ROSTER_FIELD("rise", ROSTER_INT, struct roster_health, rise), .dflt = "2", .min = 1,
     .max = 1000},
    {ROSTER_FIELD("fall", ROSTER_INT, struct roster_health, fall), .dflt = "3", .min = 1,
     .max = 1000},
};
static const struct roster_table roster_health_table = ROSTER_TABLE(roster_health_fields, NULL);

/* The keys of `defaults`, which every bot accepts too. */
static const struct roster_field roster_defaults_fields[] = {
    {ROSTER_FIELD("mode", ROSTER_CHOICE, struct roster_bot, mode), .dflt = "hybrid",
     .choices = roster_modes, .flag = "--mode"},
    {ROSTER_FIELD("adapter", ROSTER_MAP, struct roster_bot, adapter),
     .table = &roster_adapter_table},
    {ROSTER_FIELD("cooldown", ROSTER_SECONDS, struct roster_bot, cooldown), .dflt = "0",
     .flag = "--cooldown"},
    {ROSTER_FIELD("timeout", ROSTER_SECONDS, struct roster_bot, timeout), .dflt = "300", .min = 1,
     .flag = "--timeout"},
    {ROSTER_FIELD("queue_max", ROSTER_INT, struct roster_bot, queue_max), .dflt = "100", .min = 1,
     .max = INT_MAX, .flag = "--queue-max"},
    {ROSTER_FIELD("restart", ROSTER_MAP, struct roster_bot, restart),
     .table = &roster_restart_table},
    /* READY=1 within this, or the supervisor kills the worker. */
    {ROSTER_FIELD("start_timeout", ROSTER_SECONDS, struct roster_bot, start_timeout), .dflt = "10",
     .min = 1},
    {ROSTER_FIELD("stop_timeout", ROSTER_SECONDS, struct roster_bot, stop_timeout), .dflt = "10",
     .argv = roster_argv_stop_grace},
    /* Reaches the worker as WATCHDOG_USEC (the systemd protocol); 0 = off. */
    {ROSTER_FIELD("watchdog", ROSTER_SECONDS, struct roster_bot, watchdog), .dflt = "60"},
    {ROSTER_FIELD("bind", ROSTER_STRING, struct roster_bot, bind), .dflt = "127.0.0.1",
     .hook = roster_check_bind, .flag = "--bind"},
    {ROSTER_FIELD("allowed_origins", ROSTER_STRV, struct roster_bot, allowed_origins),
     .from_hive = true, .item_check = roster_check_origin, .flag = "--allowed-origin"},
    {ROSTER_FIELD("server_names", ROSTER_STRV, struct roster_bot, server_names), .from_hive = true,
     .item_check = roster_check_server_name, .flag = "--server-name"},
    /* false: declared, started only by `hive start BOT`. */
    {ROSTER_FIELD("autostart", ROSTER_BOOL, struct roster_bot, autostart), .dflt = "true",
     .live = true},
    /* Started once these are running; checked after the walk (ids, cycles). */
    {ROSTER_FIELD("depends_on", ROSTER_STRV, struct roster_bot, depends_on),
     .word = &roster_word_dep_id, .live = true},
    /* The signal a stop sends the worker's group first; SIGKILL follows at stop_timeout. */
    {ROSTER_FIELD("stop_signal", ROSTER_SIGNAL, struct roster_bot, stop_signal), .dflt = "TERM"},
    /* The bot's process. The adapters' folder, relative to the work dir. */
    {ROSTER_FIELD("cwd", ROSTER_STRING, struct roster_bot, exec.cwd), .hook = roster_check_cwd,
     .flag = "--cwd"},
    /* The worker's environment (child.c sets it): env_file's, then env's. */
    {ROSTER_FIELD("env", ROSTER_ENV, struct roster_bot, exec.env)},
    {ROSTER_FIELD("env_file", ROSTER_STRING, struct roster_bot, exec.env_file),
     .hook = roster_read_env_file},
    /* Not a key: env_file's variables, read by its hook. */
    {ROSTER_DERIVED(ROSTER_ENV, struct roster_bot, exec.file_env)},
    {ROSTER_FIELD("user", ROSTER_STRING, struct roster_bot, exec.user), .hook = roster_check_user},
    {ROSTER_FIELD("group", ROSTER_STRING, struct roster_bot, exec.group),
     .hook = roster_check_group},
    /* Limits of its cgroup (cgtree.c); 0: none. */
    {ROSTER_FIELD("memory_max", ROSTER_LSIZE, struct roster_bot, rlimits.memory_max),
     .hook = roster_check_memory_max},
    {ROSTER_FIELD("cpu_max", ROSTER_CPU, struct roster_bot, rlimits.cpu_max),
     .hook = roster_check_cpu_max},
    {ROSTER_FIELD("tasks_max", ROSTER_INT, struct roster_bot, rlimits.tasks_max), .min = 1,
     .max = INT_MAX, .hook = roster_check_tasks_max},
    /* The rotation of its captured output (logcap.c). */
    {ROSTER_FIELD("log", ROSTER_MAP, struct roster_bot, log), .table = &roster_log_table},
    /* Its own git worktree; the adapter runs there. */
    {ROSTER_FIELD("workspace", ROSTER_MAP, struct roster_bot, workspace),
     .table = &roster_workspace_table},
    /* A running task silent this long raises task_stalled; 0: off. */
    {ROSTER_FIELD("stall_after", ROSTER_SECONDS, struct roster_bot, stall_after), .dflt = "0",
     .flag = "--stall-after"},
    /* The supervisor's routing of pool tasks (pool.c); the worker is never told. */
    {ROSTER_FIELD("pool", ROSTER_STRING, struct roster_bot, pool), .word = &roster_word_pool,
     .live = true},
    {ROSTER_FIELD("tags", ROSTER_STRV, struct roster_bot, tags), .word = &roster_word_tag,
     .live = true},
    /* Agent CLIs (SPEC §12): resume the last session; after a usage limit. */
    {ROSTER_FIELD("session", ROSTER_CHOICE, struct roster_bot, session), .dflt = "new",
     .choices = roster_sessions, .argv = roster_argv_session},
    {ROSTER_FIELD("auto_resume", ROSTER_BOOL, struct roster_bot, auto_resume), .dflt = "true",
     .argv = roster_argv_auto_resume},
    {ROSTER_FIELD("budget", ROSTER_MAP, struct roster_bot, budget), .table = &roster_budget_table},
    /* Remote bots (url:): how their /health is checked, the CAs of https:// ones. */
    {ROSTER_FIELD("health", ROSTER_MAP, struct roster_bot, health), .table = &roster_health_table},
    {ROSTER_FIELD("ca", ROSTER_STRING, struct roster_bot, remote.ca), .hook = roster_check_ca},
};
static const struct roster_table roster_defaults_table = ROSTER_TABLE(roster_defaults_fields, NULL);

/* A bot's own keys; the rest are those of `defaults`. The id is the worker's
 * first argument; the port reaches it as the listening socket (fd 3). */
static const struct roster_field roster_bot_fields[] = {
    {ROSTER_FIELD("id", ROSTER_STRING, struct roster_bot, id), .word = &roster_word_bot_id},
    {ROSTER_FIELD("port", ROSTER_INT, struct roster_bot, port), .min = 1, .max = ROSTER_MAX_PORT},
    /* A remote bot: not started, reached at this URL (remote.c). */
    {ROSTER_FIELD("url", ROSTER_STRING, struct roster_bot, remote.url), .hook = roster_check_url},
    {ROSTER_FIELD("token_env", ROSTER_STRING, struct roster_bot, remote.token_env),
     .word = &roster_word_variable},
    /* Not a key: token_env's value, read after the walk. */
    {ROSTER_DERIVED(ROSTER_STRING, struct roster_bot, remote.token)},
};
static const struct roster_table roster_bot_table =
    ROSTER_TABLE(roster_bot_fields, &roster_defaults_table);

static const struct roster_field roster_limits_fields[] = {
    {ROSTER_FIELD("max_header_bytes", ROSTER_SIZE, struct roster_limits, max_header_bytes),
     .dflt = "16KiB", .flag = "--max-header"},
    {ROSTER_FIELD("max_body", ROSTER_SIZE, struct roster_limits, max_body), .dflt = "1MiB",
     .flag = "--max-body"},
    {ROSTER_FIELD("max_message", ROSTER_SIZE, struct roster_limits, max_message), .dflt = "1MiB",
     .flag = "--max-message"},
    {ROSTER_FIELD("max_connections", ROSTER_INT, struct roster_limits, max_connections),
     .dflt = "1024", .min = 1, .max = INT_MAX, .flag = "--max-connections"},
    {ROSTER_FIELD("header_timeout", ROSTER_MS, struct roster_limits, header_timeout_ms),
     .dflt = "10s", .min = 1, .flag = "--header-timeout"},
    {ROSTER_FIELD("idle_timeout", ROSTER_MS, struct roster_limits, idle_timeout_ms), .dflt = "60s",
     .min = 1, .flag = "--idle-timeout"},
};
static const struct roster_table roster_limits_table = ROSTER_TABLE(roster_limits_fields, NULL);

/* The front door's TLS (supervisor/front.c, common/tlsserve.c). */
static const struct roster_field roster_tls_fields[] = {
    {ROSTER_FIELD("cert", ROSTER_STRING, struct roster_tls, cert), .hook = roster_check_tls_cert},
    {ROSTER_FIELD("key", ROSTER_STRING, struct roster_tls, key), .hook = roster_check_tls_key},
};
static const struct roster_table roster_tls_table = ROSTER_TABLE(roster_tls_fields, NULL);

static const struct roster_field roster_hive_fields[] = {
    {ROSTER_FIELD("name", ROSTER_STRING, struct roster, name)},
    {ROSTER_FIELD("work_dir", ROSTER_STRING, struct roster, work_dir)},
    {ROSTER_FIELD("listen", ROSTER_NODE, struct roster, listen_host), .hook = roster_read_listen},
    {ROSTER_FIELD("base_port", ROSTER_INT, struct roster, base_port), .min = 1,
     .max = ROSTER_MAX_PORT},
    {ROSTER_FIELD("token_env", ROSTER_STRING, struct roster, token_env),
     .word = &roster_word_variable},
    {ROSTER_FIELD("allowed_origins", ROSTER_STRV, struct roster, allowed_origins),
     .item_check = roster_check_origin},
    {ROSTER_FIELD("server_names", ROSTER_STRV, struct roster, server_names),
     .item_check = roster_check_server_name},
    {ROSTER_FIELD("limits", ROSTER_MAP, struct roster, limits), .table = &roster_limits_table},
    {ROSTER_FIELD("budget", ROSTER_MAP, struct roster, budget), .table = &roster_budget_table},
    /* The CAs of https:// remote bots without a ca of their own. */
    {ROSTER_FIELD("ca", ROSTER_STRING, struct roster, ca), .hook = roster_check_hive_ca},
    /* HTTPS on listen: a certificate chain and its key (PEM). */
    {ROSTER_FIELD("tls", ROSTER_MAP, struct roster, tls), .table = &roster_tls_table,
     .hook = roster_check_tls},
};
static const struct roster_table roster_hive_table = ROSTER_TABLE(roster_hive_fields, NULL);

/* Top-level values are only recorded here, then read in a fixed order (hive
 * first: bind checks need its token). */
static const struct roster_field roster_top_fields[] = {
    {ROSTER_FIELD("hive", ROSTER_NODE, struct roster_parse, hive)},
    {ROSTER_FIELD("defaults", ROSTER_NODE, struct roster_parse, defaults)},
    {ROSTER_FIELD("bots", ROSTER_NODE, struct roster_parse, bots)},
    {ROSTER_FIELD("include", ROSTER_NODE, struct roster_parse, include)},
};
static const struct roster_table roster_top_table = ROSTER_TABLE(roster_top_fields, NULL);

/* ---- what every row gives: defaults, copies, equality, flags ------------ */

static void roster_table_defaults(const struct roster_table *t, void *base, const struct roster *r);

/* The hive-level list named NAME (a bot's default for its key of that name). */
static char *const *roster_hive_strv(const struct roster *r, const char *name)
{
    ROSTER_EACH_FIELD(&roster_hive_table, part, f)
    if (f->kind == ROSTER_STRV && strcmp(f->name, name) == 0)
        return *(char *const *const *)((const char *)r + f->offset);
    return NULL;
}

/* Set SLOT to F's default, read from its text as the file's would be. */
static void roster_field_default(const struct roster_field *f, void *slot, const struct roster *r)
{
    const char *d = f->dflt ? f->dflt : "0";
    double secs = 0;
    unsigned long long bytes = 0;
    long v = 0;
    char *const *hive;
    switch (f->kind) {
    case ROSTER_STRING:
    case ROSTER_CHOICE:
        *(char **)slot = f->dflt ? xstrdup(f->dflt) : NULL;
        break;
    case ROSTER_INT:
        roster_parse_long(d, &v);
        *(int *)slot = (int)v;
        break;
    case ROSTER_SECONDS:
        roster_parse_duration(d, &secs);
        *(double *)slot = secs;
        break;
    case ROSTER_MS:
        roster_parse_duration(d, &secs);
        *(int *)slot = (int)(secs * 1000 + 0.5);
        break;
    case ROSTER_SIZE:
        roster_parse_size(d, &bytes);
        *(size_t *)slot = (size_t)bytes;
        break;
    case ROSTER_LSIZE:
        roster_parse_size(d, &bytes);
        *(long *)slot = (long)bytes;
        break;
    case ROSTER_BOOL:
        *(bool *)slot = roster_parse_bool(d) == 1;
        break;
    case ROSTER_SIGNAL:
        *(int *)slot = f->dflt ? roster_parse_signal(f->dflt) : 0;
        break;
    case ROSTER_CPU:
        *(int *)slot = 0; /* no default share: no limit */
        break;
    case ROSTER_STRV:
    case ROSTER_ENV:
        hive = f->from_hive ? roster_hive_strv(r, f->name) : NULL;
        *(char ***)slot = hive ? roster_strv_copy(hive) : roster_strv_new();
        break;
    case ROSTER_MAP:
        roster_table_defaults(f->table, slot, r);
        break;
    case ROSTER_NODE:
        break;
    }
}

/* Every field of T in BASE set to its default. */
static void roster_table_defaults(const struct roster_table *t, void *base, const struct roster *r)
{
    ROSTER_EACH_FIELD(t, part, f)
    roster_field_default(f, (char *)base + f->offset, r);
}

/* Make the owned members of DST (a shallow copy of SRC) its own. */
static void roster_table_copy(const struct roster_table *t, void *dst, const void *src)
{
    ROSTER_EACH_FIELD(t, part, f)
    {
        void *d = (char *)dst + f->offset;
        const void *s = (const char *)src + f->offset;
        if (f->kind == ROSTER_STRING || f->kind == ROSTER_CHOICE)
            *(char **)d = *(char *const *)s ? xstrdup(*(char *const *)s) : NULL;
        else if (f->kind == ROSTER_STRV || f->kind == ROSTER_ENV)
            *(char ***)d = roster_strv_copy(*(char *const *const *)s);
        else if (f->kind == ROSTER_MAP)
            roster_table_copy(f->table, d, s);
    }
}

/* Free the owned members of BASE. */
static void roster_table_clear(const struct roster_table *t, void *base)
{
    ROSTER_EACH_FIELD(t, part, f)
    {
        void *slot = (char *)base + f->offset;
        if (f->kind == ROSTER_STRING || f->kind == ROSTER_CHOICE)
            free(*(char **)slot);
        else if (f->kind == ROSTER_STRV || f->kind == ROSTER_ENV)
            roster_strv_free(*(char ***)slot);
        else if (f->kind == ROSTER_MAP)
            roster_table_clear(f->table, slot);
    }
}

/* True when two optional strings are the same. */
static bool roster_str_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool roster_table_equal(const struct roster_table *t, const void *a, const void *b,
                               bool live_too);

/* True when field F is the same in A and B. */
static bool roster_field_equal(const struct roster_field *f, const void *a, const void *b,
                               bool live_too)
{
    switch (f->kind) {
    case ROSTER_STRING:
    case ROSTER_CHOICE:
        return roster_str_equal(*(char *const *)a, *(char *const *)b);
    case ROSTER_INT:
    case ROSTER_MS:
    case ROSTER_SIGNAL:
    case ROSTER_CPU:
        return *(const int *)a == *(const int *)b;
    case ROSTER_SECONDS:
        return *(const double *)a == *(const double *)b;
    case ROSTER_SIZE:
        return *(const size_t *)a == *(const size_t *)b;
    case ROSTER_LSIZE:
        return *(const long *)a == *(const long *)b;
    case ROSTER_BOOL:
        return *(const bool *)a == *(const bool *)b;
    case ROSTER_STRV:
    case ROSTER_ENV:
        return roster_strv_equal(*(char *const *const *)a, *(char *const *const *)b);
    case ROSTER_MAP:
        return roster_table_equal(f->table, a, b, live_too);
    case ROSTER_NODE:
        break;
    }
    return true;
}

/* True when every field of T (the live ones only when LIVE_TOO) is the same. */
static bool roster_table_equal(const struct roster_table *t, const void *a, const void *b,
                               bool live_too)
{
    ROSTER_EACH_FIELD(t, part, f)
    if ((live_too || !f->live) &&
        !roster_field_equal(f, (const char *)a + f->offset, (const char *)b + f->offset, live_too))
        return false;
    return true;
}

static void roster_table_argv(const struct roster_table *t, const void *base,
                              struct roster_argv *a);

/* Append field F (its value at SLOT) as the worker's flag(s), if it has one. */
static void roster_field_argv(const struct roster_field *f, const void *slot, struct roster_argv *a)
{
    if (f->argv) {
        f->argv(a, slot);
        return;
    }
    if (f->kind == ROSTER_MAP)
        roster_table_argv(f->table, slot, a);
    if (!f->flag)
        return;
    switch (f->kind) {
    case ROSTER_STRING:
    case ROSTER_CHOICE:
        if (*(char *const *)slot)
            roster_argv_opt(a, f->flag, xstrdup(*(char *const *)slot));
        break;
    case ROSTER_INT:
        roster_argv_opt(a, f->flag, xasprintf("%d", *(const int *)slot));
        break;
    case ROSTER_SECONDS:
        roster_argv_opt(a, f->flag, xasprintf("%.3f", *(const double *)slot));
        break;
    case ROSTER_MS:
        roster_argv_opt(a, f->flag, xasprintf("%.3f", *(const int *)slot / 1000.0));
        break;
    case ROSTER_SIZE:
        roster_argv_opt(a, f->flag, xasprintf("%zu", *(const size_t *)slot));
        break;
    case ROSTER_LSIZE:
        roster_argv_opt(a, f->flag, xasprintf("%ld", *(const long *)slot));
        break;
    case ROSTER_BOOL:
        roster_argv_opt(a, f->flag, xstrdup(*(const bool *)slot ? "true" : "false"));
        break;
    case ROSTER_SIGNAL:
        roster_argv_opt(a, f->flag, xstrdup(roster_signal_name(*(const int *)slot)));
        break;
    case ROSTER_CPU:
        roster_argv_opt(a, f->flag, xasprintf("%d%%", *(const int *)slot));
        break;
    case ROSTER_STRV:
    case ROSTER_ENV:
        for (char *const *v = *(char *const *const *)slot; *v; v++)
            roster_argv_opt(a, f->flag, xstrdup(*v));
        break;
    case ROSTER_MAP:
    case ROSTER_NODE:
        break;
    }
}

/* Append the flags of every field of T in BASE. */
static void roster_table_argv(const struct roster_table *t, const void *base, struct roster_argv *a)
{
    ROSTER_EACH_FIELD(t, part, f)
    roster_field_argv(f, (const char *)base + f->offset, a);
}

char **roster_worker_argv(const struct roster *r, const struct roster_bot *b,
                          const char *worker_path)
{
    struct roster_argv a = {NULL, 0, NULL};
    roster_argv_add(&a, xstrdup(worker_path));
    roster_argv_add(&a, xstrdup(b->id));
    roster_argv_opt(&a, "--work-dir", xstrdup(r->work_dir));
    roster_table_argv(&roster_bot_table, b, &a);
    roster_table_argv(&roster_limits_table, &r->limits, &a);
    if (a.tail) {
        roster_argv_add(&a, xstrdup("--"));
        for (char *const *p = a.tail; *p; p++)
            roster_argv_add(&a, xstrdup(*p));
    }
    return a.v;
}

void roster_argv_free(char **argv)
{
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}

/* Call CB with every key of T, PREFIX before it (a map's keys as "MAP.KEY"). */
static void roster_table_keys(const struct roster_table *t, const char *prefix, roster_key_cb cb,
                              void *arg)
{
    ROSTER_EACH_FIELD(t, part, f)
    {
        if (!f->name)
            continue; /* derived, not a key */
        char *key = xasprintf("%s%s", prefix, f->name);
        if (f->kind == ROSTER_MAP) {
            char *sub = xasprintf("%s.", key);
            roster_table_keys(f->table, sub, cb, arg);
            free(sub);
        } else {
            cb(key, f->flag || f->argv, arg);
        }
        free(key);
    }
}

void roster_keys(roster_key_cb cb, void *arg)
{
    roster_table_keys(&roster_hive_table, "hive.", cb, arg);
    roster_table_keys(&roster_bot_table, "", cb, arg);
}

/* ---- bots -------------------------------------------------------------- */

/* Free what BOT owns and zero it. */
static void roster_bot_clear(struct roster_bot *b)
{
    roster_table_clear(&roster_bot_table, b);
    memset(b, 0, sizeof(*b));
}

/* Deep copy SRC into DST. */
static void roster_bot_copy(struct roster_bot *dst, const struct roster_bot *src)
{
    *dst = *src;
    roster_table_copy(&roster_bot_table, dst, src);
}

/* The built-in bot defaults: every row's .dflt. */
static void roster_bot_builtin(struct roster_bot *b, const struct roster *r)
{
    memset(b, 0, sizeof(*b));
    roster_table_defaults(&roster_defaults_table, b, r);
}

/* A name for bot I in messages: its id when valid, else bots[I]. */
static void roster_bot_label(const struct roster_bot *b, size_t i, char *buf, size_t cap)
{
    if (b->id && util_id_valid(b->id))
        snprintf(buf, cap, "'%s'", b->id);
    else
        snprintf(buf, cap, "bots[%zu]", i);
}

/* A cli adapter needs a command whose first element is not empty. */
static void roster_bot_check_command(struct roster_parse *p, size_t i, yaml_node_t *map)
{
    const struct roster_bot *b = &p->r->bots[i];
    if (strcmp(b->adapter.type, "cli") != 0 || (b->adapter.command[0] && *b->adapter.command[0]))
        return;
    yaml_node_t *adapter = roster_map_get(p, map, "adapter");
    yaml_node_t *command = roster_map_get(p, adapter, "command");
    yaml_node_t *from =
        command ? command : roster_map_get(p, roster_map_get(p, p->defaults, "adapter"), "command");
    char label[80];
    if (from && (from->type != YAML_SEQUENCE_NODE ||
                 (!b->adapter.command[0] &&
                  from->data.sequence.items.top > from->data.sequence.items.start)))
        return; /* the command itself was reported */
    roster_bot_label(b, i, label, sizeof(label));
    roster_error(p,
                 command   ? command
                 : adapter ? adapter
                           : map,
                 "bot %s uses the cli adapter without a command", label);
}

/* Read bots[I] from NODE, starting from the defaults in TEMPLATE. */
static void roster_bot_read(struct roster_parse *p, size_t i, yaml_node_t *node,
                            const struct roster_bot *template)
{
    struct roster_bot *b = &p->r->bots[i];
    char ctx[40];
    roster_bot_copy(b, template);
    b->line = (int)node->start_mark.line + 1;
    b->column = (int)node->start_mark.column + 1;
    snprintf(ctx, sizeof(ctx), "bots[%zu]", i);
    if (node->type != YAML_MAPPING_NODE) {
        roster_expected(p, node, "a mapping", ctx);
        return;
    }
    roster_walk(p, node, ctx, &roster_bot_table, b);
    if (!roster_map_get(p, node, "id"))
        roster_error(p, node, "bots[%zu] has no id", i);
    roster_bot_check_remote(p, i, node);
    if (!b->remote.url)
        roster_bot_check_command(p, i, node);
}

/* Report bot ids used twice. */
static void roster_bots_check_ids(struct roster_parse *p, yaml_node_t **items)
{
    struct roster *r = p->r;
    struct roster_named *v = xcalloc(r->n_bots + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < r->n_bots; i++)
        if (r->bots[i].id && util_id_valid(r->bots[i].id))
            v[n++] = (struct roster_named){r->bots[i].id, i};
    roster_named_sort(v, n);
    for (size_t i = 1, first = 0; i < n; i++) {
        if (strcmp(v[i].name, v[first].name) != 0) {
            first = i;
            continue;
        }
        yaml_node_t *id = roster_map_get(p, items[v[i].index], "id");
        roster_error(p, id, "duplicate bot id '%s' (first at line %d)", v[i].name,
                     r->bots[v[first].index].line);
    }
    free(v);
}

/* Give bot I without a port base_port + I + 1; false when out of range. */
static bool roster_bot_derive_port(struct roster_parse *p, size_t i, yaml_node_t *item)
{
    struct roster_bot *b = &p->r->bots[i];
    long port = (long)p->r->base_port + (long)i + 1;
    char label[80];
    if (port <= ROSTER_MAX_PORT) {
        b->port = (int)port;
        return true;
    }
    roster_bot_label(b, i, label, sizeof(label));
    roster_error(p, item, "bot %s has no port and base_port + %zu = %ld is out of range", label,
                 i + 1, port);
    return false;
}

/* Derive missing ports and report ports used twice or equal to listen. */
static void roster_bots_check_ports(struct roster_parse *p, yaml_node_t **items)
{
    struct roster *r = p->r;
    uint32_t *owner; /* bot index + 1 by port */
    if (r->n_bots == 0 || r->n_bots >= UINT32_MAX)
        return;
    owner = xcalloc(ROSTER_MAX_PORT + 1, sizeof(*owner));
    for (size_t i = 0; i < r->n_bots; i++) {
        struct roster_bot *b = &r->bots[i];
        yaml_node_t *port = roster_map_get(p, items[i], "port");
        char label[80], derived[48] = "";
        if (items[i]->type != YAML_MAPPING_NODE || (port && !b->port) || b->remote.url)
            continue; /* already reported, or remote: no port of ours */
        if (!port && !roster_bot_derive_port(p, i, items[i]))
            continue;
        if (!port)
            snprintf(derived, sizeof(derived), " (base_port + %zu)", i + 1);
        roster_bot_label(b, i, label, sizeof(label));
        if (b->port == r->listen_port) {
            roster_error(p, port ? port : items[i], "port %d%s of bot %s is the hive's listen port",
                         b->port, derived, label);
        } else if (owner[b->port]) {
            char other[80];
            roster_bot_label(&r->bots[owner[b->port] - 1], owner[b->port] - 1, other,
                             sizeof(other));
            roster_error(p, port ? port : items[i], "port %d%s of bot %s is already used by bot %s",
                         b->port, derived, label, other);
        } else {
            owner[b->port] = (uint32_t)(i + 1);
        }
    }
    free(owner);
}

/* The index of the bot named ID in SORTED (N entries by name), or -1. */
static long roster_named_find(const struct roster_named *sorted, size_t n, const char *id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sorted[mid].name, id);
        if (c == 0) {
            while (mid > 0 && strcmp(sorted[mid - 1].name, id) == 0)
                mid--; /* a duplicate id (reported already): its first use */
            return (long)sorted[mid].index;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The node of element K of bot ITEM's depends_on (its own or the defaults'). */
static yaml_node_t *roster_dep_node(struct roster_parse *p, yaml_node_t *item, size_t k)
{
    yaml_node_t *seq = roster_map_get(p, item, "depends_on");
    if (!seq)
        seq = roster_map_get(p, p->defaults, "depends_on");
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return item;
    if (k >= (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start))
        return seq;
    return yaml_document_get_node(&p->doc, seq->data.sequence.items.start[k]);
}

/* Each bot's dependencies as bot indices (-1: not a bot of the roster),
 * reporting unknown ids and bots that depend on themselves. */
static long **roster_deps_resolve(struct roster_parse *p, yaml_node_t **items)
{
    struct roster *r = p->r;
    struct roster_named *v = xcalloc(r->n_bots + 1, sizeof(*v));
    long **deps = xcalloc(r->n_bots + 1, sizeof(*deps));
    size_t n = 0;
    for (size_t i = 0; i < r->n_bots; i++)
        if (r->bots[i].id && util_id_valid(r->bots[i].id))
            v[n++] = (struct roster_named){r->bots[i].id, i};
    roster_named_sort(v, n);
    for (size_t i = 0; i < r->n_bots; i++) {
        char *const *dep = r->bots[i].depends_on;
        size_t count = 0;
        while (dep && dep[count])
            count++;
        deps[i] = xcalloc(count + 1, sizeof(**deps));
        for (size_t k = 0; k < count; k++) {
            long j = roster_named_find(v, n, dep[k]);
            deps[i][k] = j == (long)i ? -1 : j;
            if (j < 0 && r->bots[i].id && items[i]->type == YAML_MAPPING_NODE)
                roster_error(p, roster_dep_node(p, items[i], k),
                             "bot '%s' depends on unknown bot '%s'", r->bots[i].id, dep[k]);
            else if (j == (long)i)
                roster_error(p, roster_dep_node(p, items[i], k), "bot '%s' depends on itself",
                             dep[k]);
        }
        deps[i][count] = LONG_MIN; /* the end */
    }
    free(v);
    return deps;
}

/* A depth-first walk over the dependencies, without recursion (a roster may
 * chain thousands of bots). */
struct roster_dfs {
    long **deps;
    unsigned char *color; /* 0 unseen, 1 on the path, 2 done */
    size_t *next;         /* the next dependency of each bot to follow */
    size_t *stack, sp;
};

/* Report the cycle closed by STACK's top bot depending on bot W (on the path). */
static void roster_deps_cycle(struct roster_parse *p, yaml_node_t **items, struct roster_dfs *d,
                              size_t w)
{
    size_t from = d->sp - 1, v = d->stack[from];
    while (from > 0 && d->stack[from] != w)
        from--;
    char path[512] = "";
    for (size_t s = from; s < d->sp && strlen(path) < 400; s++)
        snprintf(path + strlen(path), sizeof path - strlen(path), "%s -> ",
                 p->r->bots[d->stack[s]].id);
    snprintf(path + strlen(path), sizeof path - strlen(path), "%s", p->r->bots[w].id);
    roster_error(p, roster_dep_node(p, items[v], d->next[v] - 1), "dependency cycle: %s", path);
}

/* Walk from bot S, reporting each cycle met once. */
static void roster_deps_walk(struct roster_parse *p, yaml_node_t **items, struct roster_dfs *d,
                             size_t s)
{
    d->stack[d->sp++] = s;
    d->color[s] = 1;
    while (d->sp > 0) {
        size_t v = d->stack[d->sp - 1];
        long w = d->deps[v][d->next[v]];
        if (w == LONG_MIN) {
            d->color[v] = 2;
            d->sp--;
            continue;
        }
        d->next[v]++;
        if (w < 0 || d->color[w] == 2)
            continue;
        if (d->color[w] == 1) {
            roster_deps_cycle(p, items, d, (size_t)w);
            continue;
        }
        d->color[w] = 1;
        d->stack[d->sp++] = (size_t)w;
    }
}

/* Report unknown, self and circular dependencies. */
static void roster_bots_check_deps(struct roster_parse *p, yaml_node_t **items)
{
    size_t n = p->r->n_bots;
    struct roster_dfs d = {.deps = roster_deps_resolve(p, items),
                           .color = xcalloc(n + 1, 1),
                           .next = xcalloc(n + 1, sizeof(size_t)),
                           .stack = xcalloc(n + 1, sizeof(size_t))};
    for (size_t i = 0; i < n; i++)
        if (d.color[i] == 0)
            roster_deps_walk(p, items, &d, i);
    for (size_t i = 0; i < n; i++)
        free(d.deps[i]);
    free(d.deps);
    free(d.color);
    free(d.next);
    free(d.stack);
}

/* Read the bots list with TEMPLATE as every bot's starting point. */
static void roster_bots_read(struct roster_parse *p, yaml_node_t *root,
                             const struct roster_bot *template)
{
    yaml_node_t *n = p->bots;
    if (!n) {
        roster_error(p, root, "missing 'bots' (a list of bots)");
        return;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        roster_expected(p, n, "a sequence", "bots");
        return;
    }
    struct roster *r = p->r;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    yaml_node_t **items = xcalloc(count + 1, sizeof(*items));
    r->bots = xcalloc(count + 1, sizeof(*r->bots));
    for (size_t i = 0; i < count; i++) {
        items[i] = yaml_document_get_node(&p->doc, n->data.sequence.items.start[i]);
        r->n_bots = i + 1;
        roster_bot_read(p, i, items[i], template);
    }
    roster_bots_check_ids(p, items);
    roster_bots_check_ports(p, items);
    roster_bots_check_deps(p, items);
    free(items);
}

/* Read `defaults` over the built-in defaults, then the bots. */
static void roster_read_bots_section(struct roster_parse *p, yaml_node_t *root)
{
    struct roster_bot template;
    roster_bot_builtin(&template, p->r);
    if (p->defaults && roster_is_map(p, p->defaults, "defaults"))
        roster_walk(p, p->defaults, "defaults", &roster_defaults_table, &template);
    roster_bots_read(p, root, &template);
    roster_bot_clear(&template);
}

/* ---- the hive section -------------------------------------------------- */

/* PATH with "." and ".." folded and slashes collapsed; PATH is absolute. */
static char *roster_path_normalize(const char *path)
{
    char *out = xmalloc(strlen(path) + 2);
    size_t n = 0;
    for (const char *s = path; *s;) {
        while (*s == '/')
            s++;
        const char *e = s + strcspn(s, "/");
        size_t len = (size_t)(e - s);
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            n -= n > 0;
        } else if (len > 0 && !(len == 1 && s[0] == '.')) {
            out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
        }
        s = e;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    return out;
}

/* REL against DIR (absolute), normalized. */
static char *roster_path_join(const char *dir, const char *rel)
{
    char *joined = rel[0] == '/' ? xstrdup(rel) : xasprintf("%s/%s", dir, rel);
    char *norm = roster_path_normalize(joined);
    free(joined);
    return norm;
}

/* The current directory, or NULL. */
static char *roster_cwd(void)
{
    char *cwd = get_current_dir_name();
    char *copy = cwd ? xstrdup(cwd) : NULL;
    free(cwd);
    return copy;
}

/* Make work_dir absolute against BASE_DIR (NULL: the current directory). */
static void roster_resolve_work_dir(struct roster_parse *p, const char *base_dir)
{
    struct roster *r = p->r;
    char *cwd = NULL;
    if (r->work_dir[0] != '/' && !base_dir && !(base_dir = cwd = roster_cwd())) {
        roster_error(p, p->hive, "cannot resolve work_dir: %s", strerror(errno));
        return;
    }
    char *abs = roster_path_join(base_dir ? base_dir : "/", r->work_dir);
    free(r->work_dir);
    r->work_dir = abs;
    free(cwd);
}

/* Read the token's variable; a non-loopback listen needs it. */
static void roster_hive_finish(struct roster_parse *p, const char *base_dir)
{
    struct roster *r = p->r;
    const char *token = r->token_env ? getenv(r->token_env) : NULL;
    if (token && *token)
        r->token = xstrdup(token);
    if (!r->base_port)
        r->base_port = r->listen_port;
    if (p->listen)
        roster_check_exposure(p, p->listen, r->listen_host);
    roster_resolve_work_dir(p, base_dir);
}

/* A roster with every hive-level default set. */
static struct roster *roster_new(const char *path)
{
    struct roster *r = xcalloc(1, sizeof(*r));
    r->path = xstrdup(path);
    r->name = xstrdup("hive");
    r->work_dir = xstrdup(".");
    r->listen_host = xstrdup("127.0.0.1");
    r->listen_port = 8000;
    r->allowed_origins = roster_strv_new();
    r->server_names = roster_strv_new();
    roster_table_defaults(&roster_limits_table, &r->limits, r);
    return r;
}

/* Fill P->r from the top-level mapping ROOT. */
static void roster_build(struct roster_parse *p, yaml_node_t *root, const char *path,
                         const char *base_dir)
{
    p->r = roster_new(path);
    p->base_dir = base_dir;
    roster_walk(p, root, "top level", &roster_top_table, p);
    if (p->hive && roster_is_map(p, p->hive, "hive"))
        roster_walk(p, p->hive, "hive", &roster_hive_table, p->r);
    roster_hive_finish(p, base_dir);
    roster_read_bots_section(p, root);
}

/* ---- loading ----------------------------------------------------------- */

/* Report libyaml's error, with a line and column even for reader errors. */
static void roster_yaml_error(struct roster_parse *p, const yaml_parser_t *parser)
{
    size_t line = parser->problem_mark.line, column = parser->problem_mark.column;
    const char *problem = parser->problem ? parser->problem : "cannot parse";
    if (parser->error == YAML_MEMORY_ERROR)
        problem = "out of memory";
    if (parser->error == YAML_READER_ERROR) {
        line = column = 0;
        for (size_t i = 0; i < parser->problem_offset && i < p->len; i++, column++)
            if (p->text[i] == '\n')
                line++, column = (size_t)-1;
    }
    if (parser->context)
        roster_error_at(p, line, column, "YAML syntax error: %s (%s at line %zu)", problem,
                        parser->context, (size_t)parser->context_mark.line + 1);
    else
        roster_error_at(p, line, column, "YAML syntax error: %s", problem);
}

/* Start a libyaml parser on P's text. */
static bool roster_parser_start(struct roster_parse *p, yaml_parser_t *parser)
{
    if (!yaml_parser_initialize(parser)) {
        roster_error(p, NULL, "out of memory");
        return false;
    }
    yaml_parser_set_input_string(parser, (const unsigned char *)p->text, p->len);
    return true;
}

/* Track the nesting depth of event EV; false (after reporting) when too deep. */
static bool roster_depth_step(struct roster_parse *p, const yaml_event_t *ev, int *depth)
{
    if (ev->type == YAML_SEQUENCE_END_EVENT || ev->type == YAML_MAPPING_END_EVENT)
        (*depth)--;
    if (ev->type != YAML_SEQUENCE_START_EVENT && ev->type != YAML_MAPPING_START_EVENT)
        return true;
    if (++*depth <= ROSTER_MAX_DEPTH)
        return true;
    roster_error_at(p, ev->start_mark.line, ev->start_mark.column,
                    "YAML nested deeper than %d levels", ROSTER_MAX_DEPTH);
    return false;
}

/* Stream the events of the first document once, refusing deep nesting
 * before libyaml's loader sees it: its scanner slows down with the square of
 * the depth, and no roster needs more than a few levels. */
static bool roster_check_depth(struct roster_parse *p)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0;
    bool ok = true, done = false;
    if (!roster_parser_start(p, &parser))
        return false;
    while (ok && !done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            roster_yaml_error(p, &parser);
            ok = false;
            break;
        }
        ok = roster_depth_step(p, &ev, &depth);
        done = ev.type == YAML_DOCUMENT_END_EVENT || ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return ok;
}

/* Parse the first YAML document of P's text into P->doc. */
static bool roster_parse_yaml(struct roster_parse *p)
{
    yaml_parser_t parser;
    if (!roster_check_depth(p) || !roster_parser_start(p, &parser))
        return false;
    bool ok = yaml_parser_load(&parser, &p->doc) != 0;
    if (!ok)
        roster_yaml_error(p, &parser);
    yaml_parser_delete(&parser);
    return ok;
}

/* ---- interpolation and includes ---------------------------------------- */

#define ROSTER_MAX_INCLUDE_DEPTH 16

/* Expand ${VAR} in every scalar value (not in keys) of P's document; a
 * problem is reported at its place in the value when the value is on one
 * line. */
static void roster_interpolate(struct roster_parse *p)
{
    size_t count = (size_t)(p->doc.nodes.top - p->doc.nodes.start);
    bool *is_key = xcalloc(count + 1, sizeof *is_key);
    for (yaml_node_t *n = p->doc.nodes.start; n < p->doc.nodes.top; n++)
        if (n->type == YAML_MAPPING_NODE)
            for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
                 pr++)
                is_key[pr->key - 1] = true;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *n = &p->doc.nodes.start[i];
        char *out, err[200];
        size_t at;
        if (n->type != YAML_SCALAR_NODE || is_key[i])
            continue;
        int rc = interp_expand((const char *)n->data.scalar.value, n->data.scalar.length, &out, &at,
                               err, sizeof err);
        if (rc < 0) {
            bool one_line = n->start_mark.line == n->end_mark.line;
            size_t quote = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 0 : 1;
            roster_error_at(p, n->start_mark.line,
                            n->start_mark.column + (one_line ? quote + at : 0), "%s", err);
        } else if (rc > 0) {
            free(n->data.scalar.value); /* libyaml allocates with malloc */
            n->data.scalar.value = (yaml_char_t *)out;
            n->data.scalar.length = strlen(out);
        }
    }
    free(is_key);
}

/* Copy node ID of SRC, with what it holds, into DST (marks kept); MAP holds
 * the ids already copied (aliases stay shared). The new id, 0 on failure. */
static int roster_copy_node(yaml_document_t *dst, yaml_document_t *src, int id, int *map)
{
    yaml_node_t *n = yaml_document_get_node(src, id);
    int nid = 0;
    if (!n || map[id - 1])
        return n ? map[id - 1] : 0;
    if (n->type == YAML_SCALAR_NODE)
        nid = yaml_document_add_scalar(dst, NULL, n->data.scalar.value, (int)n->data.scalar.length,
                                       n->data.scalar.style);
    else if (n->type == YAML_SEQUENCE_NODE)
        nid = yaml_document_add_sequence(dst, NULL, n->data.sequence.style);
    else
        nid = yaml_document_add_mapping(dst, NULL, n->data.mapping.style);
    if (!nid)
        return 0;
    map[id - 1] = nid;
    dst->nodes.start[nid - 1].start_mark = n->start_mark;
    dst->nodes.start[nid - 1].end_mark = n->end_mark;
    if (n->type == YAML_SEQUENCE_NODE)
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++)
            yaml_document_append_sequence_item(dst, nid, roster_copy_node(dst, src, *it, map));
    else if (n->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
             pr++) {
            int k = roster_copy_node(dst, src, pr->key, map);
            yaml_document_append_mapping_pair(dst, nid, k,
                                              roster_copy_node(dst, src, pr->value, map));
        }
    return nid;
}

/* The id of the top-level `bots` sequence of P's document, made when
 * missing; 0 when `bots` is something else (the walk reports it). */
static int roster_bots_id(struct roster_parse *p)
{
    yaml_node_t *root = yaml_document_get_root_node(&p->doc);
    yaml_node_t *bots = roster_map_get(p, root, "bots");
    if (bots)
        return bots->type == YAML_SEQUENCE_NODE ? (int)(bots - p->doc.nodes.start) + 1 : 0;
    int key =
        yaml_document_add_scalar(&p->doc, NULL, (yaml_char_t *)"bots", 4, YAML_PLAIN_SCALAR_STYLE);
    int seq = yaml_document_add_sequence(&p->doc, NULL, YAML_BLOCK_SEQUENCE_STYLE);
    yaml_document_append_mapping_pair(&p->doc, 1, key, seq);
    return seq;
}

/* An included file holds only `bots` and `include`. */
static void roster_include_check_top(struct roster_parse *sub, yaml_node_t *root)
{
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&sub->doc, pr->key);
        if (roster_key_is(k, "bots") || roster_key_is(k, "include"))
            continue;
        char q[ROSTER_QUOTE_MAX + 8] = "key";
        if (k->type == YAML_SCALAR_NODE)
            roster_quote((const char *)k->data.scalar.value, k->data.scalar.length, q, sizeof q);
        roster_error(sub, k, "unknown key %s in an included file (expected bots, include)", q);
    }
}

/* One file included from P's node ITEM_ID: the name it has in messages. */
static char *roster_include_name(const char *from_name, const char *rel)
{
    const char *slash = strrchr(from_name, '/');
    if (rel[0] == '/' || !slash)
        return xstrdup(rel);
    return xasprintf("%.*s/%s", (int)(slash - from_name), from_name, rel);
}

static void roster_includes(struct roster_parse *p, struct roster_parse *src, const char *dir,
                            const char **stack, int depth);

/* Read, check and interpolate the file PATH (named NAME) into SUB; false
 * when it cannot be used at all. */
static bool roster_include_read(struct roster_parse *p, struct roster_parse *src, int item_id,
                                const char *path, struct roster_parse *sub, char **text)
{
    yaml_node_t *item = yaml_document_get_node(&src->doc, item_id);
    *text = util_read_file(path, ROSTER_MAX_FILE, &sub->len);
    if (!*text) {
        roster_error(src, item, "cannot read included file %s: %s", path,
                     errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
        return false;
    }
    sub->text = *text;
    sub->errs = p->errs;
    if (!roster_parse_yaml(sub))
        return false;
    yaml_node_t *root = yaml_document_get_root_node(&sub->doc);
    if (root && root->type == YAML_MAPPING_NODE) {
        roster_include_check_top(sub, root);
        roster_interpolate(sub);
        return true;
    }
    if (root && !roster_is_null(root))
        roster_error(sub, root, "an included file must be a mapping (bots, include)");
    yaml_document_delete(&sub->doc);
    return false;
}

/* Append the bots of SUB (the file PATH) to P's bots, recording where they
 * came from. */
static void roster_include_bots(struct roster_parse *p, struct roster_parse *sub, const char *path)
{
    yaml_node_t *bots = roster_map_get(sub, yaml_document_get_root_node(&sub->doc), "bots");
    int seq = roster_bots_id(p);
    size_t first = (size_t)(p->doc.nodes.top - p->doc.nodes.start) + 1;
    if (bots && bots->type != YAML_SEQUENCE_NODE && !roster_is_null(bots))
        roster_expected(sub, bots, "a sequence", "bots");
    if (!bots || bots->type != YAML_SEQUENCE_NODE || !seq)
        return;
    int *map = xcalloc((size_t)(sub->doc.nodes.top - sub->doc.nodes.start) + 1, sizeof *map);
    for (yaml_node_item_t *it = bots->data.sequence.items.start; it < bots->data.sequence.items.top;
         it++)
        yaml_document_append_sequence_item(&p->doc, seq,
                                           roster_copy_node(&p->doc, &sub->doc, *it, map));
    free(map);
    p->sources = xrealloc(p->sources, (p->n_sources + 1) * sizeof *p->sources);
    p->sources[p->n_sources++] =
        (struct roster_source){xstrdup(sub->name), roster_path_join(path, ".."), first,
                               (size_t)(p->doc.nodes.top - p->doc.nodes.start)};
}

/* Include the file named by SRC's include item ITEM_ID (SRC's folder DIR). */
static void roster_include_one(struct roster_parse *p, struct roster_parse *src, int item_id,
                               const char *dir, const char **stack, int depth)
{
    yaml_node_t *item = yaml_document_get_node(&src->doc, item_id);
    const char *rel = roster_scalar(src, item, "a file name", "include");
    if (!rel)
        return;
    char *cwd = dir ? NULL : roster_cwd(), *text = NULL;
    char *path = roster_path_join(dir ? dir : cwd ? cwd : "/", rel);
    char *name = roster_include_name(src->name, rel);
    for (int i = 0; i < depth && path; i++)
        if (strcmp(stack[i], path) == 0) {
            roster_error(src, item, "include cycle: %s is already being included", name);
            goto out;
        }
    if (depth >= ROSTER_MAX_INCLUDE_DEPTH) {
        roster_error(src, item, "includes nested deeper than %d files", ROSTER_MAX_INCLUDE_DEPTH);
        goto out;
    }
    struct roster_parse sub = {.name = name};
    if (roster_include_read(p, src, item_id, path, &sub, &text)) {
        char *sub_dir = roster_path_join(path, "..");
        stack[depth] = path;
        roster_includes(p, &sub, sub_dir, stack, depth + 1);
        roster_include_bots(p, &sub, path);
        yaml_document_delete(&sub.doc);
        free(sub_dir);
    }
    p->n_errors += sub.n_errors;
out:
    free(text);
    free(cwd);
    free(path);
    free(name);
}

/* Bring in the bots of every file that SRC's top level includes (SRC is P
 * for the roster file itself); DIR resolves their names (NULL: the current
 * directory). STACK holds the DEPTH files being included, for cycles. */
static void roster_includes(struct roster_parse *p, struct roster_parse *src, const char *dir,
                            const char **stack, int depth)
{
    yaml_node_t *inc = roster_map_get(src, yaml_document_get_root_node(&src->doc), "include");
    if (!inc || roster_is_null(inc))
        return;
    if (inc->type != YAML_SEQUENCE_NODE) {
        roster_expected(src, inc, "a sequence", "include");
        return;
    }
    /* Ids, not pointers: copying into P's document moves its nodes. */
    size_t n = (size_t)(inc->data.sequence.items.top - inc->data.sequence.items.start);
    int *ids = xcalloc(n + 1, sizeof *ids);
    memcpy(ids, inc->data.sequence.items.start, n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        roster_include_one(p, src, ids[i], dir, stack, depth);
    free(ids);
}

/* Interpolate P's document and bring in what it includes; PATH is the
 * roster file's own (for cycles). */
static void roster_prepare(struct roster_parse *p, const char *path)
{
    const char *stack[ROSTER_MAX_INCLUDE_DEPTH + 1] = {path};
    yaml_node_t *root = yaml_document_get_root_node(&p->doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return;
    roster_interpolate(p);
    roster_includes(p, p, p->base_dir, stack, 1);
}

/* Load TEXT: PATH goes into the roster, BASE_DIR resolves work_dir. */
static int roster_load_text(const char *text, size_t len, const char *name, const char *path,
                            const char *base_dir, struct roster **out, struct roster_errors *errs)
{
    struct roster_parse p = {.name = name, .text = text, .len = len, .errs = errs};
    *out = NULL;
    if (!roster_parse_yaml(&p))
        return -1;
    yaml_node_t *root = yaml_document_get_root_node(&p.doc);
    char got[ROSTER_QUOTE_MAX + 16];
    if (!root || roster_is_null(root)) {
        roster_error(&p, NULL, "empty roster");
    } else if (root->type != YAML_MAPPING_NODE) {
        roster_describe(root, got, sizeof(got));
        roster_error(&p, root, "top level must be a mapping (hive, defaults, bots), got %s", got);
    } else {
        p.base_dir = base_dir;
        roster_prepare(&p, path);
        roster_build(&p, yaml_document_get_root_node(&p.doc), path, base_dir);
    }
    yaml_document_delete(&p.doc);
    for (size_t i = 0; i < p.n_sources; i++)
        free(p.sources[i].name), free(p.sources[i].dir);
    free(p.sources);
    if (p.n_errors) {
        roster_free(p.r);
        return -1;
    }
    *out = p.r;
    return 0;
}

int roster_load_string(const char *text, size_t len, const char *name, struct roster **out,
                       struct roster_errors *errs)
{
    return roster_load_text(text, len, name, name, NULL, out, errs);
}

int roster_load(const char *path, struct roster **out, struct roster_errors *errs)
{
    size_t len;
    char *text = util_read_file(path, ROSTER_MAX_FILE, &len);
    *out = NULL;
    if (!text) {
        const char *why = errno == EFBIG ? "larger than 4 MiB" : strerror(errno);
        roster_errors_push(errs, xasprintf("%s: cannot read: %s", path, why));
        return -1;
    }
    char *cwd = path[0] == '/' ? NULL : roster_cwd();
    char *abs = roster_path_join(cwd ? cwd : "/", path);
    char *dir = roster_path_join(abs, "..");
    int rc = roster_load_text(text, len, path, abs, dir, out, errs);
    free(dir);
    free(abs);
    free(cwd);
    free(text);
    return rc;
}

/* ---- the roster -------------------------------------------------------- */

void roster_free(struct roster *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_bots; i++)
        roster_bot_clear(&r->bots[i]);
    free(r->bots);
    free(r->path);
    free(r->name);
    free(r->work_dir);
    free(r->listen_host);
    free(r->token_env);
    if (r->token)
        explicit_bzero(r->token, strlen(r->token));
    free(r->token);
    roster_strv_free(r->allowed_origins);
    roster_strv_free(r->server_names);
    for (size_t i = 0; i < r->n_needs; i++) {
        free(r->needs[i].key);
        free(r->needs[i].value);
        free(r->needs[i].shown);
        free(r->needs[i].where);
    }
    free(r->needs);
    free(r->ca);
    free(r->budget.usd_per_day); /* the hive's own budget (a bot's is a row of its table) */
    free(r->budget.reset_at);
    free(r->tls.cert);
    free(r->tls.key);
    free(r);
}

double roster_stop_grace(double stop_timeout)
{
    /* a second before the supervisor's SIGKILL, to answer the task */
    return stop_timeout - 1.0 < 0.5 ? 0.5 : stop_timeout - 1.0;
}

void roster_builtin_bot(struct roster_bot *b)
{
    struct roster *r = roster_new("(built-in)");
    roster_bot_builtin(b, r);
    roster_free(r);
}

void roster_builtin_bot_free(struct roster_bot *b)
{
    roster_bot_clear(b);
}

void roster_builtin_limits(struct roster_limits *l)
{
    memset(l, 0, sizeof *l);
    roster_table_defaults(&roster_limits_table, l, NULL);
}

const struct roster_bot *roster_find_bot(const struct roster *r, const char *id)
{
    for (size_t i = 0; r && id && i < r->n_bots; i++)
        if (strcmp(r->bots[i].id, id) == 0)
            return &r->bots[i];
    return NULL;
}

bool roster_bot_equal(const struct roster_bot *a, const struct roster_bot *b)
{
    return roster_table_equal(&roster_bot_table, a, b, false);
}

bool roster_shared_equal(const struct roster *a, const struct roster *b)
{
    return strcmp(a->work_dir, b->work_dir) == 0 && roster_str_equal(a->token, b->token) &&
           roster_strv_equal(a->allowed_origins, b->allowed_origins) &&
           roster_table_equal(&roster_limits_table, &a->limits, &b->limits, true);
}

void roster_errors_free(struct roster_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->items[i]);
    free(errs->items);
    errs->items = NULL;
    errs->n = 0;
}
