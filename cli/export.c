/*
 * export: `hive export systemd` — the roster as systemd units (SPEC §11), so
 * systemd can run a hive's bots on a host as `hive up` would:
 *
 * - per bot, hive-NAME-ID.socket: ListenStream= the bot's bind:port, named
 *   "listen" (FileDescriptorName=) — the worker takes fd 3 as its socket
 *   whatever its name, as hive up hands it (LISTEN_FDS/LISTEN_PID);
 * - per bot, hive-NAME-ID.service: Type=notify (the worker says READY=1 and
 *   WATCHDOG=1), with ExecStart= built by roster_worker_argv, the very argv
 *   the supervisor runs, and the settings the supervisor applies itself
 *   (restart policy, timeouts, stop signal, cgroup limits, user, environment)
 *   as their systemd directives;
 * - hive-NAME.service, the front door: `hive up` on hive-NAME.yaml, a roster
 *   listing every bot as a remote bot on loopback (`url:`), so the proxy,
 *   dashboard, events and metrics are the same as ever;
 * - hive-NAME.target, which wants all of them.
 *
 * Names are systemd-escaped (BOT-001 -> BOT\x2d001) and everything is written
 * in a fixed order, so two exports of one roster are byte for byte the same
 * and a diff of two shows only what changed.
 */
#include "cli/export.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/api.h"
#include "common/chan.h"
#include "common/util.h"

/* RestartSec=: the first step of the supervisor's backoff (systemd 252 has no
 * doubling steps; RestartSteps= came in 254). */
#define EXPORT_RESTART_SEC "100ms"
/* The front door stops its proxy and streams; no workers of its own. */
#define EXPORT_FRONT_STOP_SEC "30s"
/* The file the bearer token is read from, when the roster has one (%E is
 * /etc for system units, ~/.config for user units). */
#define EXPORT_TOKEN_FILE "%%E/hive/%s.token"

/* ---- text helpers -------------------------------------------------------- */

/* Append printf(FMT, ...) to B. */
static void export_printf(struct util_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void export_printf(struct util_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort(); /* out of memory: fatal, as xmalloc */
    util_buf_add(b, s, (size_t)n);
    free(s);
}

/* Append the string S to B. */
static void export_puts(struct util_buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

char *export_unit_escape(const char *name)
{
    struct util_buf b = {0};
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == ':' || c == '_' || (c == '.' && p != name);
        if (c == '/')
            export_puts(&b, "-");
        else if (plain)
            util_buf_add(&b, p, 1);
        else
            export_printf(&b, "\\x%02x", c);
    }
    return b.data ? b.data : xstrdup("");
}

/* "hive-NAME" escaped: the prefix of every unit of R. */
static char *export_prefix(const struct roster *r)
{
    char *name = export_unit_escape(r->name);
    char *prefix = xasprintf("hive-%s", name);
    free(name);
    return prefix;
}

char *export_bot_unit(const struct roster *r, const char *id, const char *suffix)
{
    char *prefix = export_prefix(r), *esc = export_unit_escape(id);
    char *unit = xasprintf("%s-%s%s", prefix, esc, suffix);
    free(prefix);
    free(esc);
    return unit;
}

/* Append S with systemd's specifiers made literal (% -> %%). */
static void export_literal(struct util_buf *b, const char *s)
{
    for (; *s; s++)
        util_buf_add(b, *s == '%' ? "%%" : s, *s == '%' ? 2 : 1);
}

/* True when S can stand unquoted as one word of a command line. */
static bool export_word_plain(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._:=,@+-", *s))
            return false;
    return true;
}

/* Append S as one word of ExecStart= or Environment=: quoted with C escapes
 * when needed, specifiers made literal, and (EXEC) $ kept from expansion. */
static void export_word(struct util_buf *b, const char *s, bool exec)
{
    if (export_word_plain(s) && !(exec && s[0] == ';')) {
        util_buf_add(b, s, strlen(s));
        return;
    }
    export_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            export_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            export_printf(b, "\\x%02x", *p);
        else if (*p == '%')
            export_puts(b, "%%");
        else if (*p == '$' && exec)
            export_puts(b, "$$");
        else
            util_buf_add(b, p, 1);
    }
    export_puts(b, "\"");
}

/* SECS as a systemd time span: whole seconds as "10s", else milliseconds. */
static void export_span(struct util_buf *b, double secs)
{
    long long ms = (long long)(secs * 1000.0 + 0.5);
    if (ms % 1000 == 0)
        export_printf(b, "%llds", ms / 1000);
    else
        export_printf(b, "%lldms", ms);
}

/* Append S as a double-quoted YAML scalar. */
static void export_yaml_str(struct util_buf *b, const char *s)
{
    export_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            export_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            export_printf(b, "\\x%02x", *p);
        else
            util_buf_add(b, p, 1);
    }
    export_puts(b, "\"");
}

/* ---- addresses ----------------------------------------------------------- */

/* True when HOST is a numeric IPv4 or IPv6 address (brackets allowed). */
static bool export_numeric(const char *host, bool *v6)
{
    char plain[INET6_ADDRSTRLEN + 2];
    unsigned char addr[16];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof plain) {
        memcpy(plain, host + 1, n - 2);
        plain[n - 2] = '\0';
    } else {
        snprintf(plain, sizeof plain, "%s", host);
    }
    *v6 = inet_pton(AF_INET6, plain, addr) == 1;
    return *v6 || inet_pton(AF_INET, plain, addr) == 1;
}

/* HOST without brackets (a new string). */
static char *export_unbracket(const char *host)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        return xstrndup(host + 1, n - 2);
    return xstrdup(host);
}

/* The ListenStream= of bot B ("127.0.0.1:8001", "[::1]:8001"), or NULL when
 * its bind is a name (systemd binds addresses, it resolves nothing). */
static char *export_listen(const struct roster_bot *b)
{
    bool v6 = false;
    const char *host = strcmp(b->bind, "localhost") == 0 ? "127.0.0.1" : b->bind;
    if (!export_numeric(host, &v6))
        return NULL;
    char *plain = export_unbracket(host);
    char *out = xasprintf(v6 ? "[%s]:%d" : "%s:%d", plain, b->port);
    free(plain);
    return out;
}

/* The URL the front door reaches bot B at: a wildcard bind means loopback. */
static char *export_bot_url(const struct roster_bot *b)
{
    bool v6 = false;
    char *plain = export_unbracket(strcmp(b->bind, "localhost") == 0 ? "127.0.0.1" : b->bind);
    const char *host = plain;
    if (strcmp(plain, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(plain, "::") == 0)
        host = "::1";
    export_numeric(host, &v6);
    char *url = xasprintf(v6 ? "http://[%s]:%d" : "http://%s:%d", host, b->port);
    free(plain);
    return url;
}

/* ---- the set of files ---------------------------------------------------- */

/* Add file NAME (taken over) with the text of B (taken over) to S. */
static void export_set_add(struct export_set *s, char *name, struct util_buf *b)
{
    s->files = xrealloc(s->files, (s->n + 1) * sizeof *s->files);
    s->files[s->n].name = name;
    s->files[s->n].text = b->data ? b->data : xstrdup("");
    s->n++;
    memset(b, 0, sizeof *b);
}

/* Record warning MSG (taken over). */
static void export_warn(struct export_set *s, char *msg)
{
    s->warnings = xrealloc(s->warnings, (s->n_warnings + 2) * sizeof *s->warnings);
    s->warnings[s->n_warnings++] = msg;
    s->warnings[s->n_warnings] = NULL;
}

void export_set_free(struct export_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->files[i].name);
        free(s->files[i].text);
    }
    for (size_t i = 0; i < s->n_warnings; i++)
        free(s->warnings[i]);
    free(s->files);
    free(s->warnings);
    memset(s, 0, sizeof *s);
}

/* The hive's name as it goes in the token file's name: [A-Za-z0-9._-]. */
static char *export_token_name(const struct roster *r)
{
    size_t cap = strlen(r->name) + 2;
    char *safe = xmalloc(cap);
    util_sanitize(r->name, safe, cap);
    return safe;
}

/* The first lines of every file: where it came from. */
static void export_header(struct util_buf *b, const struct roster *r, const char *what)
{
    export_printf(b, "# %s of hive %s, generated by `hive export systemd` from\n# %s.\n", what,
                  r->name, r->path);
    export_puts(b, "# Change the roster and export again rather than editing this file.\n");
}

/* [Unit] lines shared by a bot's socket and service: description, target. */
static void export_unit_head(struct util_buf *b, const struct roster *r, const char *what)
{
    char *prefix = export_prefix(r);
    export_puts(b, "[Unit]\nDescription=hive ");
    export_literal(b, r->name);
    export_printf(b, ": %s\nPartOf=%s.target\n", what, prefix);
    free(prefix);
}

/* ---- a bot's socket ------------------------------------------------------ */

/* hive-NAME-ID.socket: the bot's port, bound by systemd and kept across
 * restarts of the worker, as the supervisor keeps it. */
static int export_socket(struct export_set *s, const struct roster *r, const struct roster_bot *bot,
                         char *err, size_t errlen)
{
    char *listen = export_listen(bot);
    if (!listen) {
        snprintf(err, errlen,
                 "bot %s: bind %s is a name; systemd's ListenStream= takes an address "
                 "(127.0.0.1, ::1, 0.0.0.0, ...)",
                 bot->id, bot->bind);
        return -1;
    }
    struct util_buf b = {0};
    char *service = export_bot_unit(r, bot->id, ".service");
    char *what = xasprintf("bot %s (its port)", bot->id);
    export_header(&b, r, what);
    export_unit_head(&b, r, what);
    export_printf(&b,
                  "\n[Socket]\nListenStream=%s\nFileDescriptorName=%s\nService=%s\n"
                  "Backlog=511\nNoDelay=true\n",
                  listen, HIVE_FD_LISTEN, service);
    export_set_add(s, export_bot_unit(r, bot->id, ".socket"), &b);
    free(what);
    free(service);
    free(listen);
    return 0;
}

/* ---- a bot's service ----------------------------------------------------- */

/* [Unit]: after its socket and the bots it depends on; restarts limited as
 * the supervisor limits them (more than max_restarts within window: given
 * up, as `fatal`). */
static void export_service_unit(struct util_buf *b, const struct roster *r,
                                const struct roster_bot *bot)
{
    char *socket = export_bot_unit(r, bot->id, ".socket");
    char *what = xasprintf("bot %s", bot->id);
    export_unit_head(b, r, what);
    export_printf(b, "Documentation=man:hive-worker(1) man:hive.yaml(5)\nRequires=%s\n", socket);
    export_printf(b, "After=network.target %s\n", socket);
    for (char *const *d = bot->depends_on; *d; d++) {
        const struct roster_bot *other = roster_find_bot(r, *d);
        if (other && other->remote.url)
            continue; /* runs elsewhere: no unit to order after */
        char *dep = export_bot_unit(r, *d, ".service");
        export_printf(b, "Wants=%s\nAfter=%s\n", dep, dep);
        free(dep);
    }
    export_printf(b, "StartLimitIntervalSec=");
    export_span(b, bot->restart.window);
    export_printf(b, "\nStartLimitBurst=%d\n", bot->restart.max_restarts + 1);
    free(what);
    free(socket);
}

/* ExecStart=: the worker's argv exactly as the supervisor builds it. */
static void export_exec_start(struct util_buf *b, const struct roster *r,
                              const struct roster_bot *bot, const char *worker)
{
    char **argv = roster_worker_argv(r, bot, worker);
    export_puts(b, "ExecStart=");
    for (char **a = argv; *a; a++) {
        if (a != argv)
            export_puts(b, " ");
        export_word(b, *a, true);
    }
    export_puts(b, "\n");
    roster_argv_free(argv);
}

/* True when variable NAME=... of ENV is set in LIST too. */
static bool export_env_in(const char *env, char *const *list)
{
    size_t n = strcspn(env, "=");
    for (char *const *l = list; *l; l++)
        if (strncmp(*l, env, n) == 0 && (*l)[n] == '=')
            return true;
    return false;
}

/* The worker's environment: the token's file, env_file, then env. systemd
 * lets an EnvironmentFile= win over Environment=, hive lets env win over
 * env_file: a name in both is warned about. */
static void export_environment(struct util_buf *b, struct export_set *s, const struct roster *r,
                               const struct roster_bot *bot)
{
    if (r->token_env) {
        char *safe = export_token_name(r);
        export_printf(b, "EnvironmentFile=" EXPORT_TOKEN_FILE "\n", safe);
        free(safe);
    }
    if (bot->exec.env_file) {
        export_puts(b, "EnvironmentFile=");
        export_literal(b, bot->exec.env_file);
        export_puts(b, "\n");
    }
    for (char *const *e = bot->exec.env; *e; e++) {
        export_puts(b, "Environment=");
        export_word(b, *e, false);
        export_puts(b, "\n");
        if (export_env_in(*e, bot->exec.file_env))
            export_warn(s, xasprintf("bot %s: %.*s is set by env and env_file; under systemd "
                                     "env_file's value wins",
                                     bot->id, (int)strcspn(*e, "="), *e));
    }
}

/* Restart=, from restart.policy. */
static const char *export_restart(const char *policy)
{
    if (strcmp(policy, "never") == 0)
        return "no";
    return policy; /* "always" and "on-failure" are systemd's words too */
}

/* [Service]: Type=notify, the argv, and the supervisor's own settings. */
static void export_service_body(struct util_buf *b, struct export_set *s, const struct roster *r,
                                const struct roster_bot *bot, const struct export_opts *o)
{
    export_puts(b, "\n[Service]\nType=notify\nNotifyAccess=main\n");
    export_exec_start(b, r, bot, o->worker_path);
    export_puts(b, "WorkingDirectory=");
    export_literal(b, r->work_dir);
    export_puts(b, "\n");
    if (!o->user && bot->exec.user)
        export_printf(b, "User=%s\n", bot->exec.user);
    if (!o->user && bot->exec.group)
        export_printf(b, "Group=%s\n", bot->exec.group);
    export_environment(b, s, r, bot);
    export_printf(b, "WatchdogSec=");
    export_span(b, bot->watchdog);
    export_printf(b, "\nRestart=%s\nRestartSec=" EXPORT_RESTART_SEC "\n",
                  export_restart(bot->restart.policy));
    /* 78: a configuration error, permanent (the supervisor's `fatal`). */
    export_printf(b, "RestartPreventExitStatus=%d\nTimeoutStartSec=", HIVE_EXIT_CONFIG);
    export_span(b, bot->start_timeout);
    export_printf(b, "\nTimeoutStopSec=");
    export_span(b, bot->stop_timeout);
    export_printf(b, "\nKillMode=control-group\nKillSignal=SIG%s\n",
                  roster_signal_name(bot->stop_signal));
    /* The worker keeps its inotify instance in the fd store, as under hive up. */
    export_printf(b, "FileDescriptorStoreMax=1\n");
    if (bot->rlimits.memory_max > 0)
        export_printf(b, "MemoryMax=%ld\n", bot->rlimits.memory_max);
    if (bot->rlimits.cpu_max > 0)
        export_printf(b, "CPUQuota=%d%%\n", bot->rlimits.cpu_max);
    if (bot->rlimits.tasks_max > 0)
        export_printf(b, "TasksMax=%d\n", bot->rlimits.tasks_max);
}

/* hive-NAME-ID.service: the worker, as the supervisor would run it. */
static void export_service(struct export_set *s, const struct roster *r,
                           const struct roster_bot *bot, const struct export_opts *o)
{
    struct util_buf b = {0};
    char *what = xasprintf("bot %s", bot->id);
    export_header(&b, r, what);
    export_service_unit(&b, r, bot);
    export_service_body(&b, s, r, bot, o);
    export_set_add(s, export_bot_unit(r, bot->id, ".service"), &b);
    free(what);
}

/* ---- the front door ------------------------------------------------------ */

/* The hive's daily budget in the front roster: the front door keeps it (it
 * reads the bots' timelines in the shared work dir, SPEC §12). */
static void export_front_budget(struct util_buf *b, const struct roster_budget *bu)
{
    if (!bu->usd_per_day && !bu->tokens_per_day)
        return;
    export_puts(b, "  budget:\n");
    if (bu->usd_per_day)
        export_printf(b, "    usd_per_day: %s\n", bu->usd_per_day);
    if (bu->tokens_per_day)
        export_printf(b, "    tokens_per_day: %d\n", bu->tokens_per_day);
    if (bu->reset_at) {
        export_puts(b, "    reset_at: ");
        export_yaml_str(b, bu->reset_at);
        export_puts(b, "\n");
    }
}

/* hive: of the front roster: the hive's own settings but its bots. */
static void export_front_hive(struct util_buf *b, const struct roster *r)
{
    const struct roster_limits *l = &r->limits;
    export_puts(b, "hive:\n  name: ");
    export_yaml_str(b, r->name);
    export_puts(b, "\n  work_dir: ");
    export_yaml_str(b, r->work_dir);
    export_printf(
        b, strchr(r->listen_host, ':') ? "\n  listen: \"[%s]:%d\"\n" : "\n  listen: \"%s:%d\"\n",
        r->listen_host, r->listen_port);
    if (r->token_env)
        export_printf(b, "  token_env: %s\n", HIVE_ENV_TOKEN);
    if (r->tls.cert) { /* the front door serves HTTPS as `hive up` would */
        export_puts(b, "  tls: {cert: ");
        export_yaml_str(b, r->tls.cert);
        export_puts(b, ", key: ");
        export_yaml_str(b, r->tls.key);
        export_puts(b, "}\n");
    }
    const char *lists[] = {"allowed_origins", "server_names"};
    char *const *vals[] = {r->allowed_origins, r->server_names};
    for (size_t i = 0; i < 2; i++) {
        if (!vals[i][0])
            continue;
        export_printf(b, "  %s:\n", lists[i]);
        for (char *const *v = vals[i]; *v; v++) {
            export_puts(b, "    - ");
            export_yaml_str(b, *v);
            export_puts(b, "\n");
        }
    }
    export_printf(b,
                  "  limits:\n    max_header_bytes: %zu\n    max_body: %zu\n    max_message: %zu\n"
                  "    max_connections: %d\n    header_timeout: %dms\n    idle_timeout: %dms\n",
                  l->max_header_bytes, l->max_body, l->max_message, l->max_connections,
                  l->header_timeout_ms, l->idle_timeout_ms);
    export_front_budget(b, &r->budget);
}

/* A bot's pool and tags in the front roster: the front door routes pool
 * tasks (SPEC §12), so it must know them. */
static void export_front_pool(struct util_buf *b, const struct roster_bot *bot)
{
    if (bot->pool) {
        export_puts(b, "    pool: ");
        export_yaml_str(b, bot->pool);
        export_puts(b, "\n");
    }
    if (!bot->tags[0])
        return;
    export_puts(b, "    tags: [");
    for (char **t = bot->tags; *t; t++) {
        export_puts(b, t == bot->tags ? "" : ", ");
        export_yaml_str(b, *t);
    }
    export_puts(b, "]\n");
}

/* A bot of the roster that is remote already: in the front roster as it is
 * (its url, token variable, CA and health check), with no units of its own. */
static void export_front_remote(struct util_buf *b, const struct roster_bot *bot)
{
    const struct roster_health *h = &bot->health;
    export_printf(b, "  - id: %s\n    url: ", bot->id);
    export_yaml_str(b, bot->remote.url);
    if (bot->remote.token_env)
        export_printf(b, "\n    token_env: %s", bot->remote.token_env);
    if (bot->remote.ca) {
        export_puts(b, "\n    ca: ");
        export_yaml_str(b, bot->remote.ca);
    }
    export_puts(b, "\n    health: {interval: ");
    export_span(b, h->interval);
    export_puts(b, ", timeout: ");
    export_span(b, h->timeout);
    export_printf(b, ", rise: %d, fall: %d}\n", h->rise, h->fall);
}

/* hive-NAME.yaml: the front door's roster, every bot a remote bot on the
 * address its socket unit listens on (SPEC §11). */
static void export_front_roster(struct export_set *s, const struct roster *r,
                                const struct roster_bot *const *bots, size_t n)
{
    struct util_buf b = {0};
    export_printf(&b,
                  "# The front door of hive %s, generated by `hive export systemd` from\n"
                  "# %s: its bots run as systemd units; this hive fronts them as remote bots.\n",
                  r->name, r->path);
    export_front_hive(&b, r);
    export_puts(&b, n ? "bots:\n" : "bots: []\n");
    for (size_t i = 0; i < n; i++) {
        if (bots[i]->remote.url) {
            export_front_remote(&b, bots[i]);
            continue;
        }
        char *url = export_bot_url(bots[i]);
        export_printf(&b, "  - id: %s\n    url: ", bots[i]->id);
        export_yaml_str(&b, url);
        export_puts(&b, "\n");
        if (r->token_env)
            export_printf(&b, "    token_env: %s\n", HIVE_ENV_TOKEN);
        export_front_pool(&b, bots[i]);
        free(url);
    }
    char *prefix = export_prefix(r);
    export_set_add(s, xasprintf("%s.yaml", prefix), &b);
    free(prefix);
}

/* hive-NAME.service: `hive up` on the front roster, after the bots' sockets. */
static void export_front_service(struct export_set *s, const struct roster *r,
                                 const struct roster_bot *const *bots, size_t n,
                                 const struct export_opts *o)
{
    struct util_buf b = {0};
    char *prefix = export_prefix(r);
    char *roster = xasprintf("%s/%s.yaml", o->dir, prefix);
    export_header(&b, r, "the front door");
    export_unit_head(&b, r, "front door (proxy, dashboard, events)");
    export_puts(&b, "Documentation=man:hive(1) man:hive.yaml(5)\nAfter=network.target\n");
    for (size_t i = 0; i < n; i++) {
        if (bots[i]->remote.url)
            continue; /* no units: it runs elsewhere */
        char *socket = export_bot_unit(r, bots[i]->id, ".socket");
        export_printf(&b, "After=%s\n", socket);
        free(socket);
    }
    export_puts(&b, "\n[Service]\nType=notify\nNotifyAccess=main\nExecStart=");
    const char *argv[] = {o->hive_path, "up", "-f", roster};
    for (size_t i = 0; i < 4; i++) {
        export_word(&b, argv[i], true);
        export_puts(&b, i < 3 ? " " : "\n");
    }
    export_puts(&b, "ExecReload=/bin/kill -HUP $MAINPID\nWorkingDirectory=");
    export_literal(&b, r->work_dir);
    if (r->token_env) {
        char *safe = export_token_name(r);
        export_printf(&b, "\nEnvironmentFile=" EXPORT_TOKEN_FILE, safe);
        free(safe);
    }
    export_printf(&b,
                  "\nRestart=on-failure\nRestartPreventExitStatus=%d\nKillMode=mixed\n"
                  "TimeoutStopSec=" EXPORT_FRONT_STOP_SEC "\n",
                  HIVE_EXIT_CONFIG);
    export_set_add(s, xasprintf("%s.service", prefix), &b);
    free(roster);
    free(prefix);
}

/* hive-NAME.target: wants the front door and every autostart bot (its socket
 * and its service: hive up starts them at once, not on a first connection). */
static void export_target(struct export_set *s, const struct roster *r,
                          const struct roster_bot *const *bots, size_t n,
                          const struct export_opts *o)
{
    struct util_buf b = {0};
    char *prefix = export_prefix(r);
    export_header(&b, r, "the target");
    export_puts(&b, "[Unit]\nDescription=hive ");
    export_literal(&b, r->name);
    export_printf(&b,
                  ": every bot and the front door\nDocumentation=man:hive(1)\nWants=%s.service\n",
                  prefix);
    for (size_t i = 0; i < n; i++) {
        if (!bots[i]->autostart || bots[i]->remote.url)
            continue;
        char *socket = export_bot_unit(r, bots[i]->id, ".socket");
        char *service = export_bot_unit(r, bots[i]->id, ".service");
        export_printf(&b, "Wants=%s %s\n", socket, service);
        free(socket);
        free(service);
    }
    export_printf(&b, "\n[Install]\nWantedBy=%s\n",
                  o->user ? "default.target" : "multi-user.target");
    export_set_add(s, xasprintf("%s.target", prefix), &b);
    free(prefix);
}

/* ---- rendering ----------------------------------------------------------- */

/* qsort: bots by id. */
static int export_bot_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct roster_bot *const *)a)->id,
                  (*(const struct roster_bot *const *)b)->id);
}

/* qsort: files by name. */
static int export_file_cmp(const void *a, const void *b)
{
    return strcmp(((const struct export_file *)a)->name, ((const struct export_file *)b)->name);
}

int export_systemd_render(const struct roster *r, const struct export_opts *o,
                          struct export_set *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const struct roster_bot **bots = xcalloc(r->n_bots + 1, sizeof *bots);
    for (size_t i = 0; i < r->n_bots; i++)
        bots[i] = &r->bots[i];
    qsort(bots, r->n_bots, sizeof *bots, export_bot_cmp);
    int rc = 0;
    for (size_t i = 0; i < r->n_bots && rc == 0; i++) {
        if (bots[i]->remote.url)
            continue; /* runs elsewhere: only in the front roster */
        rc = export_socket(out, r, bots[i], err, errlen);
        if (rc == 0)
            export_service(out, r, bots[i], o);
    }
    if (rc == 0) {
        export_front_roster(out, r, bots, r->n_bots);
        export_front_service(out, r, bots, r->n_bots, o);
        export_target(out, r, bots, r->n_bots, o);
        qsort(out->files, out->n, sizeof *out->files, export_file_cmp);
    }
    free(bots);
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

/* The folder of this program (/proc/self/exe), or NULL. */
static char *export_self_dir(void)
{
    char *self = realpath("/proc/self/exe", NULL);
    char *slash = self ? strrchr(self, '/') : NULL;
    if (!slash) {
        free(self);
        return NULL;
    }
    *slash = '\0';
    return self;
}

/* The absolute path of hive-worker as hive up finds it: $HIVE_WORKER_BIN,
 * beside us, or in the build tree. NULL after saying why. */
static char *export_worker_path(void)
{
    const char *env = getenv(HIVE_ENV_WORKER_BIN);
    char *dir = export_self_dir(), *found = NULL;
    if (env && *env) {
        found = realpath(env, NULL);
    } else if (dir) {
        char *next = xasprintf("%s/hive-worker", dir),
             *tree = xasprintf("%s/../worker/hive-worker", dir);
        found = realpath(access(next, X_OK) == 0 ? next : tree, NULL);
        free(next);
        free(tree);
    }
    if (!found || access(found, X_OK) != 0) {
        fprintf(stderr, "hive: cannot find hive-worker; set %s\n", HIVE_ENV_WORKER_BIN);
        free(found);
        found = NULL;
    }
    free(dir);
    return found;
}

/* Make DIR (one level) and return its absolute path, or NULL after saying why. */
static char *export_dir(const char *dir)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "hive: cannot make %s: %s\n", dir, strerror(errno));
        return NULL;
    }
    char *abs = realpath(dir, NULL);
    if (!abs)
        fprintf(stderr, "hive: %s: %s\n", dir, strerror(errno));
    return abs;
}

/* The files of S that exist in DIR already, listed on stderr; their count. */
static size_t export_existing(const struct export_set *s, const char *dir)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        char *path = xasprintf("%s/%s", dir, s->files[i].name);
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (n++ == 0)
                fprintf(stderr, "hive: these files exist already (--force overwrites them):\n");
            fprintf(stderr, "  %s\n", path);
        }
        free(path);
    }
    return n;
}

/* Write every file of S into DIR; 0 or 1 after saying why. */
static int export_write(const struct export_set *s, const char *dir)
{
    for (size_t i = 0; i < s->n; i++) {
        char *path = xasprintf("%s/%s", dir, s->files[i].name);
        int rc = util_replace_file(path, s->files[i].text, strlen(s->files[i].text), true);
        if (rc < 0)
            fprintf(stderr, "hive: cannot write %s: %s\n", path, strerror(errno));
        else
            printf("%s\n", path);
        free(path);
        if (rc < 0)
            return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

/* What to do next, on stderr (stdout lists the files only). */
static void export_hints(const struct roster *r, const char *dir, bool user)
{
    char *prefix = export_prefix(r);
    const char *ctl = user ? "systemctl --user" : "systemctl";
    fprintf(stderr, "hive: to run it: %s link %s/*.service %s/*.socket %s/%s.target\n", ctl, dir,
            dir, dir, prefix);
    fprintf(stderr, "hive:            %s enable --now '%s.target'\n", ctl, prefix);
    if (r->token_env) {
        char *safe = export_token_name(r);
        fprintf(stderr, "hive: the hive has a token: put %s=... in %s/hive/%s.token (mode 0600)\n",
                HIVE_ENV_TOKEN, user ? "~/.config" : "/etc", safe);
        free(safe);
    }
    free(prefix);
}

int export_systemd_main(const struct roster *r, const char *dir, bool user, bool force)
{
    struct export_opts o = {.user = user};
    struct export_set s = {0};
    char *abs = export_dir(dir), *worker = abs ? export_worker_path() : NULL;
    char *hive = realpath("/proc/self/exe", NULL), err[512];
    int rc = CLI_EXIT_FAIL;
    if (!abs || !worker || !hive)
        goto out;
    o.dir = abs;
    o.worker_path = worker;
    o.hive_path = hive;
    if (export_systemd_render(r, &o, &s, err, sizeof err) < 0) {
        fprintf(stderr, "hive: %s\n", err);
        rc = CLI_EXIT_CONFIG;
        goto out;
    }
    for (size_t i = 0; i < s.n_warnings; i++)
        fprintf(stderr, "hive: warning: %s\n", s.warnings[i]);
    if (!force && export_existing(&s, abs) > 0)
        goto out;
    rc = export_write(&s, abs);
    if (rc == CLI_EXIT_OK)
        export_hints(r, abs, user);
out:
    export_set_free(&s);
    free(hive);
    free(worker);
    free(abs);
    return rc;
}
