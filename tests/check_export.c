/*
 * check_export: `hive export systemd` (cli/export.c) rendered from rosters
 * given as text. The main check keeps the export from drifting from the
 * roster: every key of config/roster.c's tables (listed by roster_keys) must
 * have a row below saying where it shows in the export, each row is set to a
 * value other than its default and found there — so a key added to the
 * roster without its systemd mapping fails here. Also: systemd's escaping of
 * unit names, the quoting of ExecStart= and Environment=, a deterministic
 * order, and a bind address systemd cannot take.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/export.h"
#include "common/util.h"

/* One roster key: a fragment setting it (FRAG under `hive:` when HIVE, else
 * under the bot BOT-1), and what the export then holds: each of EXPECT, a
 * "!"-prefixed one must be absent. WHY instead of EXPECT: deliberately not
 * exported (the reason); ROOT: settable only as root (user, group); CGROUP:
 * refused at load where no cgroup controller enforces it. */
struct key_row {
    const char *key;
    bool hive;
    const char *frag;
    const char *expect[4];
    const char *why;
    bool root, cgroup;
};

#define KEY(k, h, f, ...)                                                                          \
    {                                                                                              \
        .key = k, .hive = h, .frag = f, .expect = { __VA_ARGS__ }                                  \
    }
#define KEY_WHY(k, h, w)                                                                           \
    {                                                                                              \
        .key = k, .hive = h, .why = w                                                              \
    }
#define KEY_ROOT(k, f, e)                                                                          \
    {                                                                                              \
        .key = k, .frag = f, .expect = {e}, .root = true                                           \
    }
#define KEY_CGROUP(k, f, e)                                                                        \
    {                                                                                              \
        .key = k, .frag = f, .expect = {e}, .cgroup = true                                         \
    }

static const struct key_row key_rows[] = {
    KEY("hive.name", true, "name: \"my%hive\"", "hive-my\\x25hive-BOT\\x2d1.service",
        "Description=hive my%%hive"),
    KEY("hive.work_dir", true, "work_dir: /srv/w", "--work-dir /srv/w", "WorkingDirectory=/srv/w",
        "work_dir: \"/srv/w\""),
    KEY("hive.listen", true, "listen: 127.0.0.1:18555", "listen: \"127.0.0.1:18555\""),
    KEY_WHY("hive.base_port", true, "only derives the ports, exported as ListenStream="),
    KEY_WHY(
        "hive.ca", true,
        "the remote bots' default ca, written into each remote bot's own ca in the front roster"),
    KEY("hive.token_env", true, "token_env: CHECK_EXPORT_TOKEN", "EnvironmentFile=%E/hive/t.token",
        "token_env: HIVE_TOKEN"),
    KEY("hive.allowed_origins", true, "allowed_origins: [\"http://a.example\"]",
        "--allowed-origin http://a.example", "- \"http://a.example\""),
    KEY("hive.server_names", true, "server_names: [h.example]", "--server-name h.example",
        "- \"h.example\""),
    KEY("hive.limits.max_header_bytes", true, "limits: {max_header_bytes: 2000}",
        "--max-header 2000", "max_header_bytes: 2000"),
    KEY("hive.limits.max_body", true, "limits: {max_body: 3000}", "--max-body 3000",
        "max_body: 3000"),
    KEY("hive.limits.max_message", true, "limits: {max_message: 4000}", "--max-message 4000",
        "max_message: 4000"),
    KEY("hive.limits.max_connections", true, "limits: {max_connections: 50}",
        "--max-connections 50", "max_connections: 50"),
    KEY("hive.limits.header_timeout", true, "limits: {header_timeout: 3s}",
        "--header-timeout 3.000", "header_timeout: 3000ms"),
    KEY("hive.limits.idle_timeout", true, "limits: {idle_timeout: 4s}", "--idle-timeout 4.000",
        "idle_timeout: 4000ms"),
    /* Only readable at load: the front door's TLS goes into its roster. */
    KEY("hive.tls.cert", true, "tls: {cert: /etc/passwd, key: /etc/group}",
        "tls: {cert: \"/etc/passwd\", key: \"/etc/group\"}"),
    KEY("hive.tls.key", true, "tls: {cert: /etc/group, key: /etc/passwd}",
        "tls: {cert: \"/etc/group\", key: \"/etc/passwd\"}"),
    KEY("id", false, "", "ExecStart=/usr/bin/hive-worker BOT-1 ", "  - id: BOT-1"),
    KEY("port", false, "port: 18509", "ListenStream=127.0.0.1:18509",
        "url: \"http://127.0.0.1:18509\""),
    KEY("mode", false, "mode: websocket-only", "--mode websocket-only"),
    KEY("adapter.type", false, "adapter: {type: cli, command: [echo]}", "--adapter-type cli"),
    KEY("adapter.command", false, "adapter: {type: cli, command: [sh, -c, \"echo \\\"$X\\\" 5%\"]}",
        "-- sh -c \"echo \\\"$$X\\\" 5%%\"\n"),
    KEY("adapter.env", false, "adapter: {env: {AE: v1}}", "--env AE=v1"),
    KEY("adapter.env_remove", false, "adapter: {env_remove: [XR]}", "--env-remove XR"),
    KEY("adapter.delay_ms", false, "adapter: {delay_ms: 7}", "--mock-delay-ms 7"),
    KEY("adapter.output_cap", false, "adapter: {output_cap: 1234}", "--output-cap 1234"),
    KEY("cooldown", false, "cooldown: 2", "--cooldown 2.000"),
    KEY("timeout", false, "timeout: 33", "--timeout 33.000"),
    KEY("queue_max", false, "queue_max: 7", "--queue-max 7"),
    KEY("restart.policy", false, "restart: {policy: never}", "Restart=no\n"),
    KEY("restart.max_restarts", false, "restart: {max_restarts: 4}", "StartLimitBurst=5\n"),
    KEY("restart.window", false, "restart: {window: 17}", "StartLimitIntervalSec=17s\n"),
    KEY("start_timeout", false, "start_timeout: 12", "TimeoutStartSec=12s\n"),
    KEY("stop_timeout", false, "stop_timeout: 6.5", "TimeoutStopSec=6500ms\n",
        "--stop-grace 5.500"),
    KEY("watchdog", false, "watchdog: 3", "WatchdogSec=3s\n"),
    KEY("bind", false, "bind: \"::1\"", "ListenStream=[::1]:18501", "--bind ::1",
        "url: \"http://[::1]:18501\""),
    KEY("allowed_origins", false, "allowed_origins: [\"http://b.example\"]",
        "--allowed-origin http://b.example"),
    KEY("server_names", false, "server_names: [b.example]", "--server-name b.example"),
    KEY("autostart", false, "autostart: false", "!Wants=hive-t-BOT\\x2d1.socket",
        "Wants=hive-t-DEP.socket"),
    KEY("depends_on", false, "depends_on: [DEP]",
        "Wants=hive-t-DEP.service\nAfter=hive-t-DEP.service\n"),
    KEY("stop_signal", false, "stop_signal: INT", "KillSignal=SIGINT\n"),
    KEY("cwd", false, "cwd: /", "--cwd /"),
    KEY("adapter.args", false, "adapter: {type: claude, args: [--x1]}", "--adapter-arg --x1"),
    KEY("adapter.model", false, "adapter: {type: claude, model: m9}", "--model m9"),
    KEY("session", false, "session: continue", "--session continue"),
    KEY("auto_resume", false, "auto_resume: false", "--auto-resume false"),
    KEY("budget.usd_per_day", false, "budget: {usd_per_day: 3.5}", "--budget-usd 3.5"),
    KEY("budget.tokens_per_day", false, "budget: {tokens_per_day: 900}", "--budget-tokens 900"),
    KEY("budget.reset_at", false, "budget: {usd_per_day: 1, reset_at: \"06:30\"}",
        "--budget-reset 06:30"),
    KEY("hive.budget.usd_per_day", true, "budget: {usd_per_day: 7}", "    usd_per_day: 7\n"),
    KEY("hive.budget.tokens_per_day", true, "budget: {tokens_per_day: 800}",
        "    tokens_per_day: 800\n"),
    KEY("hive.budget.reset_at", true, "budget: {usd_per_day: 1, reset_at: \"05:00\"}",
        "    reset_at: \"05:00\"\n"),
    KEY("workspace.git_worktree", false, "workspace: {git_worktree: wt}", "--git-worktree wt"),
    KEY("stall_after", false, "stall_after: 9", "--stall-after 9"),
    KEY("pool", false, "pool: p1", "    pool: \"p1\""),
    KEY("tags", false, "tags: [gpu, big]", "    tags: [\"gpu\", \"big\"]"),
    KEY("env", false, "env: {BE: \"1 2\"}", "Environment=\"BE=1 2\"\n"),
    KEY("env_file", false, "env_file: @ENVFILE@", "EnvironmentFile=@ENVFILE@\n"),
    KEY_ROOT("user", "user: root", "User=root\n"),
    KEY_ROOT("group", "group: root", "Group=root\n"),
    KEY_CGROUP("memory_max", "memory_max: 64MiB", "MemoryMax=67108864\n"),
    KEY_CGROUP("cpu_max", "cpu_max: 50%", "CPUQuota=50%\n"),
    KEY_CGROUP("tasks_max", "tasks_max: 20", "TasksMax=20\n"),
    /* A remote bot's keys (SPEC §11): it runs elsewhere, so it has no units;
     * the front door's roster lists it with its own url. */
    KEY_WHY("url", false, "a remote bot's"),
    KEY_WHY("token_env", false, "a remote bot's"),
    KEY_WHY("ca", false, "a remote bot's"),
    KEY_WHY("health.interval", false, "a remote bot's"),
    KEY_WHY("health.timeout", false, "a remote bot's"),
    KEY_WHY("health.rise", false, "a remote bot's"),
    KEY_WHY("health.fall", false, "a remote bot's"),
    KEY_WHY("log.max_bytes", false, "the supervisor's log rotation: under systemd, the journal's"),
    KEY_WHY("log.backups", false, "the supervisor's log rotation: under systemd, the journal's"),
};

#define KEY_ROWS (sizeof key_rows / sizeof key_rows[0])

/* The row of KEY, or NULL. */
static const struct key_row *row_find(const char *key)
{
    for (size_t i = 0; i < KEY_ROWS; i++)
        if (strcmp(key_rows[i].key, key) == 0)
            return &key_rows[i];
    return NULL;
}

/* S with every "@ENVFILE@" replaced by ENVFILE (a new string). */
static char *subst(const char *s, const char *envfile)
{
    struct util_buf b = {0};
    const char *at;
    while ((at = strstr(s, "@ENVFILE@"))) {
        util_buf_add(&b, s, (size_t)(at - s));
        util_buf_add(&b, envfile, strlen(envfile));
        s = at + 9;
    }
    util_buf_add(&b, s, strlen(s));
    return b.data;
}

static char check_envfile[64];

/* The roster text with ROW's fragment set (NULL: all defaults). */
static char *roster_text(const struct key_row *row)
{
    const char *frag = row && row->frag ? row->frag : "";
    bool hive = row && row->hive;
    char *f = subst(frag, check_envfile);
    char *text = xasprintf(
        "hive:\n%s%s  %s\n"
        "bots:\n  - id: BOT-1\n%s    %s\n"
        "  - id: DEP\n    port: 18502\n",
        hive && !strncmp(frag, "name:", 5) ? "" : "  name: t\n",
        hive && !strncmp(frag, "listen:", 7) ? "" : "  listen: 127.0.0.1:18500\n", hive ? f : "",
        !hive && !strncmp(frag, "port:", 5) ? "" : "    port: 18501\n", hive ? "" : f);
    free(f);
    return text;
}

/* Every file of S as "NAME\nTEXT\n", one string. */
static char *export_all(const struct export_set *s)
{
    struct util_buf b = {0};
    for (size_t i = 0; i < s->n; i++) {
        util_buf_add(&b, s->files[i].name, strlen(s->files[i].name));
        util_buf_add(&b, "\n", 1);
        util_buf_add(&b, s->files[i].text, strlen(s->files[i].text));
        util_buf_add(&b, "\n", 1);
    }
    return b.data;
}

static const struct export_opts check_opts = {"/out", "/usr/bin/hive-worker", "/usr/bin/hive",
                                              false};

/* Load TEXT and render it; the files as one string, or NULL when the load
 * failed (its first error in WHY). */
static char *render(const char *text, char *why, size_t cap)
{
    struct roster *r = NULL;
    struct roster_errors errs = {NULL, 0};
    if (roster_load_string(text, strlen(text), "check.yaml", &r, &errs) < 0) {
        snprintf(why, cap, "%s", errs.n ? errs.items[0] : "?");
        roster_errors_free(&errs);
        return NULL;
    }
    struct export_set s;
    char err[256];
    ck_assert_int_eq(export_systemd_render(r, &check_opts, &s, err, sizeof err), 0);
    char *all = export_all(&s);
    export_set_free(&s);
    roster_free(r);
    return all;
}

/* Check ROW: its value shows where it should. */
static void check_row(const struct key_row *row)
{
    if (row->why)
        return;
    char *text = roster_text(row), why[512];
    char *all = render(text, why, sizeof why);
    if (!all && (row->root || row->cgroup)) {
        printf("check_export: %s not checked here: %s\n", row->key, why);
        free(text);
        return;
    }
    ck_assert_msg(all != NULL, "%s: the roster does not load: %s\n%s", row->key, why, text);
    for (size_t i = 0; i < 4 && row->expect[i]; i++) {
        const char *e = row->expect[i];
        char *want = subst(e[0] == '!' ? e + 1 : e, check_envfile);
        bool found = strstr(all, want) != NULL;
        if (found == (e[0] == '!'))
            fprintf(stderr, "the export of %s:\n%s\n", row->key, all); /* too long for Check */
        ck_assert_msg(found != (e[0] == '!'), "%s: the export %s '%s'", row->key,
                      found ? "has" : "lacks", want);
        free(want);
    }
    free(all);
    free(text);
}

/* roster_keys callback: every key has a row, and a key the worker does not
 * get on its argv has a mapping of its own (or a reason), not a flag. */
static void key_seen(const char *key, bool on_argv, void *arg)
{
    size_t *n = arg;
    const struct key_row *row = row_find(key);
    ck_assert_msg(row != NULL,
                  "roster key %s has no row in check_export.c: say how `hive export systemd` "
                  "gives it to the worker (cli/export.c), then add the row",
                  key);
    (*n)++;
    (void)on_argv;
    check_row(row);
}

/* Every roster key reaches the export. */
START_TEST(test_every_key_exported)
{
    setenv("CHECK_EXPORT_TOKEN", "secret-token", 1);
    size_t n = 0;
    roster_keys(key_seen, &n);
    ck_assert_uint_ge(n, 40); /* the walk found the tables */
    /* The default of a key must not already satisfy its row. */
    char *text = roster_text(NULL), why[256];
    char *plain = render(text, why, sizeof why);
    ck_assert_ptr_nonnull(plain);
    for (size_t i = 0; i < KEY_ROWS; i++)
        if (key_rows[i].expect[0] && key_rows[i].expect[0][0] != '!' && key_rows[i].frag &&
            key_rows[i].frag[0] && !strchr(key_rows[i].expect[0], '@'))
            ck_assert_msg(!strstr(plain, key_rows[i].expect[0]),
                          "%s: '%s' is there by default; the row proves nothing", key_rows[i].key,
                          key_rows[i].expect[0]);
    free(plain);
    free(text);
    /* The token's value never lands in a unit. */
    const struct key_row *tok = row_find("hive.token_env");
    text = roster_text(tok);
    plain = render(text, why, sizeof why);
    ck_assert_ptr_null(strstr(plain, "secret-token"));
    free(plain);
    free(text);
}
END_TEST

/* Unit name parts are escaped as systemd-escape does. */
START_TEST(test_unit_escape)
{
    const char *cases[][2] = {{"BOT-001", "BOT\\x2d001"},
                              {"a_b.c:d", "a_b.c:d"},
                              {".x", "\\x2ex"},
                              {"a/b", "a-b"},
                              {"sp ace%", "sp\\x20ace\\x25"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *e = export_unit_escape(cases[i][0]);
        ck_assert_str_eq(e, cases[i][1]);
        free(e);
    }
}
END_TEST

/* The files come sorted by name, the same every time whatever the bots'
 * order in the roster. */
START_TEST(test_deterministic)
{
    const char *a = "hive: {name: t}\nbots:\n  - {id: B, port: 18601}\n  - {id: A, port: 18602}\n";
    const char *b = "hive: {name: t}\nbots:\n  - {id: A, port: 18602}\n  - {id: B, port: 18601}\n";
    char why[256];
    char *ra = render(a, why, sizeof why), *rb = render(b, why, sizeof why);
    ck_assert_ptr_nonnull(ra);
    ck_assert_ptr_nonnull(rb);
    ck_assert_str_eq(ra, rb);
    const char *order[] = {"hive-t-A.service\n", "hive-t-A.socket\n", "hive-t-B.service\n",
                           "hive-t-B.socket\n",  "hive-t.service\n",  "hive-t.target\n",
                           "hive-t.yaml\n"};
    const char *at = ra;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *next = strstr(at, order[i]);
        ck_assert_msg(next != NULL, "%s missing or out of order", order[i]);
        at = next;
    }
    free(ra);
    free(rb);
}
END_TEST

/* A bind address systemd's ListenStream= cannot take is refused by name. */
START_TEST(test_bind_name_refused)
{
    struct roster *r = NULL;
    const char *text = "hive: {name: t}\nbots:\n  - {id: A, port: 18602, bind: localhost}\n";
    ck_assert_int_eq(roster_load_string(text, strlen(text), "c.yaml", &r, NULL), 0);
    struct export_set s;
    char err[256];
    ck_assert_int_eq(export_systemd_render(r, &check_opts, &s, err, sizeof err), 0);
    export_set_free(&s);
    free(r->bots[0].bind);
    r->bots[0].bind = xstrdup("bots.example");
    ck_assert_int_eq(export_systemd_render(r, &check_opts, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "bots.example"));
    export_set_free(&s);
    roster_free(r);
}
END_TEST

/* env set both by env and env_file: systemd would let the file win; said. */
START_TEST(test_env_overlap_warned)
{
    char *text = xasprintf("hive: {name: t}\nbots:\n  - id: A\n    port: 18602\n"
                           "    env_file: %s\n    env: {FROMFILE: mine}\n",
                           check_envfile);
    struct roster *r = NULL;
    ck_assert_int_eq(roster_load_string(text, strlen(text), "c.yaml", &r, NULL), 0);
    struct export_set s;
    char err[256];
    ck_assert_int_eq(export_systemd_render(r, &check_opts, &s, err, sizeof err), 0);
    ck_assert_uint_eq(s.n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(s.warnings[0], "FROMFILE"));
    export_set_free(&s);
    roster_free(r);
    free(text);
}
END_TEST

/* A remote bot (url:) gets no units; the front roster lists it as it is. */
START_TEST(test_remote_bot_no_units)
{
    const char *text = "hive: {name: t}\nbots:\n  - {id: A, port: 18602, depends_on: [R]}\n"
                       "  - id: R\n    url: http://10.0.0.9:8001\n    token_env: R_TOKEN\n"
                       "    health: {interval: 5, fall: 4}\n";
    char why[256];
    setenv("R_TOKEN", "r", 1);
    char *all = render(text, why, sizeof why);
    ck_assert_msg(all != NULL, "%s", why);
    ck_assert_ptr_null(strstr(all, "hive-t-R."));
    ck_assert_ptr_null(strstr(all, "hive-t-R.service"));
    ck_assert_ptr_nonnull(strstr(all,
                                 "  - id: R\n    url: \"http://10.0.0.9:8001\"\n"
                                 "    token_env: R_TOKEN\n"
                                 "    health: {interval: 5s, timeout: 1s, rise: 2, fall: 4}\n"));
    ck_assert_ptr_nonnull(strstr(all, "hive-t-A.service\n"));
    free(all);
}
END_TEST

static Suite *check_export_suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_every_key_exported);
    tcase_add_test(tc, test_unit_escape);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_bind_name_refused);
    tcase_add_test(tc, test_env_overlap_warned);
    tcase_add_test(tc, test_remote_bot_no_units);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(check_envfile, sizeof check_envfile, "/tmp/check_export-%d.env", (int)getpid());
    FILE *f = fopen(check_envfile, "w");
    if (!f || fputs("FROMFILE=1\n", f) < 0 || fclose(f) != 0)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(check_export_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    unlink(check_envfile);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
