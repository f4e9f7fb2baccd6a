/*
 * check_options: hive-worker's command line (worker/options.c) against the
 * roster's table of settings (config/roster.c): a flag not given takes the
 * roster's built-in default — one copy of the defaults — and every flag the
 * supervisor writes for a bot (roster_worker_argv) reads back as that bot's
 * settings.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config/roster.h"
#include "worker/options.h"

#include "tests/check_support.h"

/* Parse ARGV (NULL-terminated) into O; fails the test on a usage error. */
static void parse_ok(char **argv, struct worker_options *o)
{
    char err[256] = "";
    int argc = 0;
    while (argv[argc])
        argc++;
    ck_assert_msg(options_parse(argc, argv, o, err, sizeof err) == 0, "%s", err);
}

/* O has the settings of roster bot B, hive limits L. */
static void assert_options_are(const struct worker_options *o, const struct roster_bot *b,
                               const struct roster_limits *l)
{
    ck_assert_str_eq(options_mode_name(o->mode), b->mode);
    ck_assert_str_eq(o->bind, b->bind);
    ck_assert_int_eq(o->adapter.type, strcmp(b->adapter.type, "cli") ? ADAPTER_MOCK : ADAPTER_CLI);
    ck_assert_double_eq(o->adapter.timeout_s, b->timeout);
    ck_assert_int_eq(o->adapter.delay_ms, b->adapter.delay_ms);
    ck_assert_uint_eq(o->adapter.output_cap, (size_t)b->adapter.output_cap);
    ck_assert_double_eq(o->cooldown_s, b->cooldown);
    ck_assert_uint_eq(o->queue_max, (size_t)b->queue_max);
    ck_assert_double_eq_tol(o->stop_grace_s, roster_stop_grace(b->stop_timeout), 1e-3);
    ck_assert_uint_eq(o->limits.max_header_bytes, l->max_header_bytes);
    ck_assert_uint_eq(o->limits.max_body, l->max_body);
    ck_assert_uint_eq(o->ws.max_message, l->max_message);
    ck_assert_int_eq(o->limits.max_connections, l->max_connections);
    ck_assert_int_eq(o->limits.header_timeout_ms, l->header_timeout_ms);
    ck_assert_int_eq(o->limits.idle_timeout_ms, l->idle_timeout_ms);
}

/* A worker given only a bot id and a port has the roster's built-in bot. */
START_TEST(test_defaults_are_the_rosters)
{
    struct worker_options o;
    struct roster_bot b;
    struct roster_limits l;
    char *argv[] = {"hive-worker", "BOT-1", "--port", "0", NULL};

    parse_ok(argv, &o);
    roster_builtin_bot(&b);
    roster_builtin_limits(&l);
    assert_options_are(&o, &b, &l);
    /* and the SPEC's numbers, so a change of the table is a deliberate one */
    ck_assert_double_eq(o.adapter.timeout_s, 300);
    ck_assert_uint_eq(o.queue_max, 100);
    ck_assert_double_eq(o.cooldown_s, 0);
    ck_assert_str_eq(o.bind, "127.0.0.1");
    ck_assert_int_eq(o.mode, MODE_HYBRID);
    roster_builtin_bot_free(&b);
    options_free(&o);
}
END_TEST

/* The same as a bot of a roster that sets nothing. */
START_TEST(test_defaults_equal_an_empty_rosters_bot)
{
    static const char text[] = "bots: [{id: a, port: 8001}]\n";
    struct roster *r = NULL;
    struct worker_options o;
    char *argv[] = {"hive-worker", "a", "--port", "0", NULL};

    ck_assert_int_eq(roster_load_string(text, strlen(text), "t.yaml", &r, NULL), 0);
    parse_ok(argv, &o);
    assert_options_are(&o, &r->bots[0], &r->limits);
    options_free(&o);
    roster_free(r);
}
END_TEST

/* Every setting a roster changes reaches the worker through its argv. */
START_TEST(test_roster_argv_reads_back)
{
    static const char text[] =
        "hive: {limits: {max_header_bytes: 8KiB, max_body: 2MiB, max_message: 3MiB,\n"
        "                max_connections: 7, header_timeout: 3s, idle_timeout: 4s}}\n"
        "defaults: {cooldown: 2.5, timeout: 42, queue_max: 9, stop_timeout: 20,\n"
        "           mode: websocket-only, bind: 127.0.0.2,\n"
        "           adapter: {type: cli, command: [cat], delay_ms: 5, output_cap: 1MiB}}\n"
        "bots: [{id: a, port: 8001}]\n";
    struct roster *r = NULL;
    struct worker_options o;

    ck_assert_int_eq(roster_load_string(text, strlen(text), "t.yaml", &r, NULL), 0);
    char **argv = roster_worker_argv(r, &r->bots[0], "hive-worker");
    parse_ok(argv, &o);
    assert_options_are(&o, &r->bots[0], &r->limits);
    ck_assert_double_eq(o.adapter.timeout_s, 42);
    ck_assert_str_eq(o.adapter.argv[0], "cat");
    options_free(&o);
    roster_argv_free(argv);
    roster_free(r);
}
END_TEST

/* --help shows the table's defaults. */
START_TEST(test_usage_shows_the_defaults)
{
    const char *u = options_usage();
    ck_assert_ptr_nonnull(strstr(u, "--timeout SECONDS      per task (default 300)\n"));
    ck_assert_ptr_nonnull(strstr(u, "(default 100)\n"));
    ck_assert_ptr_nonnull(
        strstr(u, "--output-cap BYTES     adapter output limit (default 8388608)"));
    ck_assert_ptr_nonnull(strstr(u,
                                 "--stop-grace S         on SIGTERM, how long a running task may "
                                 "finish (default 9)"));
    ck_assert_ptr_null(strstr(u, "%"));
}
END_TEST

/* Without --mode, the mode follows --port, as DEIA's run_single_bot.py. */
START_TEST(test_mode_follows_port)
{
    struct worker_options o;
    char *argv[] = {"hive-worker", "BOT-1", NULL};
    unsetenv("LISTEN_FDS");
    parse_ok(argv, &o);
    ck_assert_int_eq(o.mode, MODE_CLI_ONLY);
    options_free(&o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("options");
    tcase_add_test(tc, test_defaults_are_the_rosters);
    tcase_add_test(tc, test_defaults_equal_an_empty_rosters_bot);
    tcase_add_test(tc, test_roster_argv_reads_back);
    tcase_add_test(tc, test_usage_shows_the_defaults);
    tcase_add_test(tc, test_mode_follows_port);
    suite_add_tcase(s, tc);
    return check_run(s);
}
