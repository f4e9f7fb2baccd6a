/*
 * check_roster: hive.yaml fed as bytes (and once as a file) to the roster
 * loader: the SPEC example, defaults and overrides, units, and every
 * validation error with its exact file:line:column message.
 */
#include "common/cgroup.h"
#include "common/util.h"
#include "config/hostcheck.h"
#include "config/roster.h"

#include <check.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check_support.h"

/* SPEC §6.1, verbatim. */
static const char spec_example[] =
    "hive:\n"
    "  name: demo\n"
    "  work_dir: .                 # holds .deia/\n"
    "  listen: 127.0.0.1:8000      # the supervisor's own port\n"
    "  token_env: HIVE_TOKEN       # optional: bearer token read from this variable\n"
    "defaults:                     # every key below may also be set per bot\n"
    "  mode: hybrid\n"
    "  adapter: {type: mock}\n"
    "  cooldown: 0\n"
    "  timeout: 300\n"
    "  queue_max: 100\n"
    "  restart: {policy: always, max_restarts: 10, window: 60}   # always|on-failure|never\n"
    "bots:\n"
    "  - id: BOT-001\n"
    "    port: 8001\n"
    "  - id: BOT-002               # no port: base port of the hive + index\n"
    "    adapter:\n"
    "      type: cli\n"
    "      command: [claude, -p]\n"
    "      env_remove: [ANTHROPIC_API_KEY]\n";

static struct roster_errors errs;

/* Free what a test left behind. */
static void roster_test_teardown(void)
{
    roster_errors_free(&errs);
}

/* Load TEXT as "t.yaml"; NULL when it does not validate (messages in errs). */
static struct roster *load(const char *text)
{
    struct roster *r = (struct roster *)1;
    roster_errors_free(&errs);
    int rc = roster_load_string(text, strlen(text), "t.yaml", &r, &errs);
    ck_assert_int_eq(rc, r ? 0 : -1);
    ck_assert(rc == 0 ? errs.n == 0 : errs.n > 0);
    return r;
}

/* All current messages on one line, for failure output. */
static const char *all_errors(void)
{
    static char buf[8192];
    buf[0] = '\0';
    for (size_t i = 0; i < errs.n; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "[%s] ", errs.items[i]);
    return buf;
}

/* TEXT fails with exactly one error, MSG. */
static void expect_error(const char *text, const char *msg)
{
    struct roster *r = load(text);
    if (r)
        roster_free(r);
    ck_assert_msg(!r, "loaded, expected %s", msg);
    ck_assert_msg(errs.n == 1 && strcmp(errs.items[0], msg) == 0, "expected [%s], got %s", msg,
                  all_errors());
}

/* TEXT fails and MSG is among its errors. */
static void expect_among(const char *text, const char *msg)
{
    struct roster *r = load(text);
    bool found = false;
    roster_free(r);
    ck_assert_msg(!r, "loaded, expected %s", msg);
    for (size_t i = 0; i < errs.n; i++)
        found = found || strcmp(errs.items[i], msg) == 0;
    ck_assert_msg(found, "expected [%s] among %s", msg, all_errors());
}

/* Load TEXT and fail the test with the messages when it does not load. */
static struct roster *load_ok(const char *text)
{
    struct roster *r = load(text);
    ck_assert_msg(r != NULL, "did not load: %s", all_errors());
    return r;
}

/* TEXT loads (the load probes nothing of the host), and the host check
 * (hostcheck.c) then finds exactly one problem, MSG. */
static void expect_host_error(const char *text, const char *msg)
{
    struct roster *r = load_ok(text);
    roster_errors_free(&errs);
    size_t found = hostcheck_roster(r, &errs);
    roster_free(r);
    ck_assert_msg(found == 1 && errs.n == 1 && strcmp(errs.items[0], msg) == 0,
                  "expected [%s], got %s", msg, all_errors());
}

START_TEST(test_spec_example)
{
    unsetenv("HIVE_TOKEN");
    struct roster *r = load_ok(spec_example);
    char *cwd = get_current_dir_name();
    ck_assert_str_eq(r->name, "demo");
    ck_assert_str_eq(r->work_dir, cwd);
    ck_assert_str_eq(r->path, "t.yaml");
    ck_assert_str_eq(r->listen_host, "127.0.0.1");
    ck_assert_int_eq(r->listen_port, 8000);
    ck_assert_int_eq(r->base_port, 8000);
    ck_assert_str_eq(r->token_env, "HIVE_TOKEN");
    ck_assert_ptr_null(r->token);
    ck_assert_ptr_null(r->allowed_origins[0]);
    ck_assert_uint_eq(r->limits.max_header_bytes, 16384);
    ck_assert_uint_eq(r->limits.max_body, 1048576);
    ck_assert_uint_eq(r->limits.max_message, 1048576);
    ck_assert_int_eq(r->limits.max_connections, 1024);
    ck_assert_int_eq(r->limits.header_timeout_ms, 10000);
    ck_assert_int_eq(r->limits.idle_timeout_ms, 60000);
    ck_assert_uint_eq(r->n_bots, 2);

    const struct roster_bot *a = &r->bots[0], *b = &r->bots[1];
    ck_assert_str_eq(a->id, "BOT-001");
    ck_assert_int_eq(a->port, 8001);
    ck_assert_int_eq(a->line, 14);
    ck_assert_int_eq(a->column, 5);
    ck_assert_str_eq(a->mode, "hybrid");
    ck_assert_str_eq(a->adapter.type, "mock");
    ck_assert_ptr_null(a->adapter.command[0]);
    ck_assert_ptr_null(a->adapter.env[0]);
    ck_assert_ptr_null(a->adapter.env_remove[0]);
    ck_assert_int_eq(a->adapter.delay_ms, 0);
    ck_assert_int_eq(a->adapter.output_cap, 8 * 1024 * 1024);
    ck_assert_double_eq(a->cooldown, 0);
    ck_assert_double_eq(a->timeout, 300);
    ck_assert_int_eq(a->queue_max, 100);
    ck_assert_str_eq(a->restart.policy, "always");
    ck_assert_int_eq(a->restart.max_restarts, 10);
    ck_assert_double_eq(a->restart.window, 60);
    ck_assert_double_eq(a->start_timeout, 10);
    ck_assert_double_eq(a->stop_timeout, 10);
    ck_assert_double_eq(a->watchdog, 60);
    ck_assert_str_eq(a->bind, "127.0.0.1");
    ck_assert_ptr_null(a->allowed_origins[0]);

    ck_assert_str_eq(b->id, "BOT-002");
    ck_assert_int_eq(b->port, 8002); /* base_port + index 1 + 1 */
    ck_assert_int_eq(b->line, 16);
    ck_assert_str_eq(b->adapter.type, "cli");
    ck_assert_str_eq(b->adapter.command[0], "claude");
    ck_assert_str_eq(b->adapter.command[1], "-p");
    ck_assert_ptr_null(b->adapter.command[2]);
    ck_assert_str_eq(b->adapter.env_remove[0], "ANTHROPIC_API_KEY");
    ck_assert_ptr_null(b->adapter.env_remove[1]);
    ck_assert_str_eq(b->mode, "hybrid");
    ck_assert_int_eq(b->queue_max, 100);
    ck_assert_str_eq(b->restart.policy, "always");

    ck_assert_ptr_eq(roster_find_bot(r, "BOT-002"), b);
    ck_assert_ptr_null(roster_find_bot(r, "BOT-003"));
    ck_assert(!roster_bot_equal(a, b));
    ck_assert(roster_bot_equal(a, a));
    free(cwd);
    roster_free(r);
}
END_TEST

START_TEST(test_overrides)
{
    struct roster *r = load_ok("hive:\n"
                               "  listen: localhost:9000\n"
                               "  base_port: 9100\n"
                               "  allowed_origins: [http://localhost:3000]\n"
                               "  server_names: [hive.lan, 192.168.1.5, '[fe80::1]']\n"
                               "defaults:\n"
                               "  mode: cli-only\n"
                               "  adapter: {type: cli, command: [run, a], delay_ms: 5,\n"
                               "            env: {A: '1', B: '2'}, output_cap: 1MiB}\n"
                               "  restart: {policy: on-failure, max_restarts: 3}\n"
                               "  cooldown: 2s\n"
                               "bots:\n"
                               "  - id: plain\n"
                               "  - id: custom\n"
                               "    mode: websocket-only\n"
                               "    adapter: {command: [other], env: {C: '3'}}\n"
                               "    restart: {window: 5m}\n"
                               "    allowed_origins: []\n"
                               "    server_names: [bot.lan]\n"
                               "    cooldown: 0\n"
                               "    watchdog: 0\n"
                               "    bind: ::1\n");
    const struct roster_bot *p = roster_find_bot(r, "plain"), *c = roster_find_bot(r, "custom");
    ck_assert_str_eq(r->listen_host, "localhost");
    ck_assert_int_eq(p->port, 9101);
    ck_assert_int_eq(c->port, 9102);
    ck_assert_str_eq(p->mode, "cli-only");
    ck_assert_str_eq(p->adapter.command[1], "a");
    ck_assert_str_eq(p->adapter.env[0], "A=1");
    ck_assert_str_eq(p->adapter.env[1], "B=2");
    ck_assert_str_eq(p->allowed_origins[0], "http://localhost:3000");
    /* server_names: the hive's, inherited by a bot that names none. */
    ck_assert_str_eq(r->server_names[0], "hive.lan");
    ck_assert_str_eq(r->server_names[2], "[fe80::1]");
    ck_assert_str_eq(p->server_names[1], "192.168.1.5");
    ck_assert_ptr_null(p->server_names[3]);
    ck_assert_str_eq(c->server_names[0], "bot.lan");
    ck_assert_ptr_null(c->server_names[1]);
    ck_assert_double_eq(p->cooldown, 2);
    ck_assert_double_eq(p->restart.window, 60);
    /* The per-bot adapter map overrides field by field; env is one field. */
    ck_assert_str_eq(c->mode, "websocket-only");
    ck_assert_str_eq(c->adapter.type, "cli");
    ck_assert_str_eq(c->adapter.command[0], "other");
    ck_assert_ptr_null(c->adapter.command[1]);
    ck_assert_int_eq(c->adapter.delay_ms, 5);
    ck_assert_int_eq(c->adapter.output_cap, 1 << 20);
    ck_assert_str_eq(c->adapter.env[0], "C=3");
    ck_assert_ptr_null(c->adapter.env[1]);
    ck_assert_str_eq(c->restart.policy, "on-failure");
    ck_assert_int_eq(c->restart.max_restarts, 3);
    ck_assert_double_eq(c->restart.window, 300);
    ck_assert_ptr_null(c->allowed_origins[0]);
    ck_assert_double_eq(c->cooldown, 0);
    ck_assert_double_eq(c->watchdog, 0);
    ck_assert_str_eq(c->bind, "::1");
    roster_free(r);
}
END_TEST

START_TEST(test_mock_default_cli_bot)
{
    struct roster *r = load_ok("defaults: {adapter: {type: mock, delay_ms: 250}}\n"
                               "bots:\n"
                               "  - {id: m}\n"
                               "  - {id: c, adapter: {type: cli, command: [echo, '{content}']}}\n");
    ck_assert_str_eq(r->bots[0].adapter.type, "mock");
    ck_assert_int_eq(r->bots[0].adapter.delay_ms, 250);
    ck_assert_str_eq(r->bots[1].adapter.type, "cli");
    ck_assert_str_eq(r->bots[1].adapter.command[1], "{content}");
    ck_assert_int_eq(r->bots[1].adapter.delay_ms, 250);
    roster_free(r);
}
END_TEST

START_TEST(test_anchors_and_quoting)
{
    struct roster *r = load_ok("bots:\n"
                               "  - id: a\n"
                               "    adapter: &cli {type: cli, command: [x, \"1\", 2, true, '']}\n"
                               "  - id: \"b\"\n"
                               "    port: \"8100\"\n"
                               "    adapter: *cli\n"
                               "    timeout: 1.5\n");
    ck_assert_str_eq(r->bots[1].adapter.command[0], "x");
    ck_assert_str_eq(r->bots[1].adapter.command[2], "2");
    ck_assert_str_eq(r->bots[1].adapter.command[3], "true");
    ck_assert_str_eq(r->bots[1].adapter.command[4], "");
    ck_assert_int_eq(r->bots[1].port, 8100);
    ck_assert_double_eq(r->bots[1].timeout, 1.5);
    ck_assert(roster_bot_equal(&r->bots[0], &r->bots[0]));
    roster_free(r);
    expect_error("defaults: &d {mode: hybrid}\n"
                 "bots:\n"
                 "  - <<: *d\n"
                 "    id: a\n",
                 "t.yaml:3:5: unknown key '<<' in bots[0] (expected id, port, url, token_env, "
                 "mode, adapter, "
                 "cooldown, timeout, queue_max, restart, start_timeout, stop_timeout, watchdog, "
                 "bind, allowed_origins, server_names, autostart, depends_on, stop_signal, cwd, "
                 "env, env_file, user, group, memory_max, cpu_max, tasks_max, log, workspace, "
                 "stall_after, pool, tags, session, auto_resume, budget, health, ca)");
}
END_TEST

START_TEST(test_empty_and_documents)
{
    expect_error("", "t.yaml:1:1: empty roster");
    expect_error("# nothing here\n", "t.yaml:1:1: empty roster");
    expect_error("---\n", "t.yaml:1:1: empty roster");
    expect_error("- a\n- b\n",
                 "t.yaml:1:1: top level must be a mapping (hive, defaults, bots), got a sequence");
    expect_error("just text\n",
                 "t.yaml:1:1: top level must be a mapping (hive, defaults, bots), got 'just text'");
    struct roster *r = load_ok("bots: [{id: first}]\n---\nbots: [{id: second}]\n");
    ck_assert_str_eq(r->bots[0].id, "first");
    roster_free(r);
    r = load_ok("bots: []\n");
    ck_assert_uint_eq(r->n_bots, 0);
    roster_free(r);
}
END_TEST

START_TEST(test_syntax_errors)
{
    expect_error("bots:\n  - id: a\n   port: 1\n",
                 "t.yaml:3:4: YAML syntax error: did not find expected '-' indicator (while "
                 "parsing a block collection at line 2)");
    expect_error("hive: {name: x\nbots: []\n",
                 "t.yaml:2:5: YAML syntax error: did not find expected ',' or '}' (while parsing "
                 "a flow mapping at line 1)");
    expect_error("bots: *nowhere\n", "t.yaml:1:7: YAML syntax error: found undefined alias");
    expect_error("bots: [a]\nx: \"\x01\"\n",
                 "t.yaml:2:5: YAML syntax error: control characters are not allowed");
    char deep[200] = "bots: ";
    memset(deep + 6, '[', 100);
    expect_error(deep, "t.yaml:1:70: YAML nested deeper than 64 levels");
    expect_error("bots: [a]\nx: \"\xff\"\n",
                 "t.yaml:2:5: YAML syntax error: invalid leading UTF-8 octet");
}
END_TEST

START_TEST(test_remote_bots)
{
    setenv("CHECK_REMOTE_TOKEN", "s3cret", 1);
    struct roster *r = load("hive: {listen: 127.0.0.1:8000}\n"
                            "bots:\n"
                            "  - id: a\n"
                            "  - id: r\n"
                            "    url: http://10.0.0.2:8001\n"
                            "    token_env: CHECK_REMOTE_TOKEN\n"
                            "    health: {interval: 1, fall: 4}\n"
                            "  - id: b\n");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->bots[0].port, 8001);
    ck_assert_ptr_null(r->bots[0].remote.url);
    ck_assert_str_eq(r->bots[1].remote.url, "http://10.0.0.2:8001");
    ck_assert_str_eq(r->bots[1].remote.token, "s3cret");
    ck_assert_int_eq(r->bots[1].port, 0); /* no port of ours */
    ck_assert(r->bots[1].health.interval == 1.0 && r->bots[1].health.timeout == 1.0);
    ck_assert_int_eq(r->bots[1].health.rise, 2);
    ck_assert_int_eq(r->bots[1].health.fall, 4);
    ck_assert_int_eq(r->bots[2].port, 8003);
    roster_free(r);
    r = load("hive: {ca: /dev/null}\n"
             "bots:\n"
             "  - {id: r, url: https://h:1}\n"
             "  - {id: s, url: https://h:2, ca: /dev/zero}\n");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->bots[0].remote.ca, "/dev/null"); /* the hive's */
    ck_assert_str_eq(r->bots[1].remote.ca, "/dev/zero"); /* its own */
    roster_free(r);
    bool tls;
    char host[64];
    int port;
    ck_assert(roster_url_split("https://[::1]:9443/", &tls, host, sizeof host, &port));
    ck_assert(tls && port == 9443 && strcmp(host, "::1") == 0);
    ck_assert(roster_url_split("http://bots.example", &tls, host, sizeof host, &port));
    ck_assert(!tls && port == 80);
    ck_assert(!roster_url_split("http://h:1/x", &tls, host, sizeof host, &port));
    ck_assert(!roster_url_split("ws://h:1", &tls, host, sizeof host, &port));
    ck_assert(!roster_url_split("http://u@h:1", &tls, host, sizeof host, &port));
    expect_error("bots:\n  - id: r\n    url: http://h:1\n    mode: hybrid\n",
                 "t.yaml:4:5: 'mode' makes no sense for the remote bot 'r' (it has a url)");
    expect_error("bots:\n  - id: r\n    url: http://h:1\n    port: 8001\n",
                 "t.yaml:4:5: 'port' makes no sense for the remote bot 'r' (it has a url)");
    expect_error("bots:\n  - id: l\n    token_env: X\n",
                 "t.yaml:3:5: 'token_env' is only for a remote bot (one with a url)");
    expect_error("bots:\n  - id: r\n    url: gopher://h:1\n",
                 "t.yaml:3:10: bad url 'gopher://h:1' (expected http://HOST:PORT or "
                 "https://HOST:PORT)");
    expect_error("bots:\n  - id: r\n    url: http://h:1\n    health: {rise: 0}\n",
                 "t.yaml:4:20: 'rise' must be between 1 and 1000, got 0");
}
END_TEST

START_TEST(test_unknown_keys)
{
    expect_error(
        "bots_x: []\nbots: []\n",
        "t.yaml:1:1: unknown key 'bots_x' in top level (expected hive, defaults, bots, include)");
    expect_error("hive:\n  nmae: x\nbots: []\n",
                 "t.yaml:2:3: unknown key 'nmae' in hive (expected name, work_dir, listen, "
                 "base_port, token_env, allowed_origins, server_names, limits, budget, ca, tls)");
    expect_error("hive:\n  limits: {max_bdy: 1}\nbots: []\n",
                 "t.yaml:2:12: unknown key 'max_bdy' in hive.limits (expected max_header_bytes, "
                 "max_body, max_message, max_connections, header_timeout, idle_timeout)");
    expect_error("defaults:\n  port: 1\nbots: []\n",
                 "t.yaml:2:3: unknown key 'port' in defaults (expected mode, adapter, cooldown, "
                 "timeout, queue_max, restart, start_timeout, stop_timeout, watchdog, bind, "
                 "allowed_origins, server_names, autostart, depends_on, stop_signal, cwd, env, "
                 "env_file, user, group, memory_max, cpu_max, tasks_max, log, workspace, "
                 "stall_after, pool, tags, session, auto_resume, budget, health, ca)");
    expect_error("bots:\n  - id: a\n    adapter: {tpye: cli}\n",
                 "t.yaml:3:15: unknown key 'tpye' in bots[0].adapter (expected type, command, "
                 "env, env_remove, delay_ms, output_cap, args, model)");
    expect_error("defaults:\n  restart:\n    polcy: never\nbots: []\n",
                 "t.yaml:3:5: unknown key 'polcy' in defaults.restart (expected policy, "
                 "max_restarts, window)");
    expect_error("? [a]\n: 1\nbots: []\n",
                 "t.yaml:1:3: expected a string key in top level, got a sequence");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_error("hive: [a]\nbots: []\n",
                 "t.yaml:1:7: expected a mapping for 'hive', got a sequence");
    expect_error("bots: {id: a}\n", "t.yaml:1:7: expected a sequence for 'bots', got a mapping");
    expect_error("bots:\n", "t.yaml:1:6: expected a sequence for 'bots', got nothing");
    expect_error("bots: [a]\n", "t.yaml:1:8: expected a mapping for 'bots[0]', got 'a'");
    expect_error("hive: {name: {a: 1}}\nbots: []\n",
                 "t.yaml:1:14: expected a string for 'name', got a mapping");
    expect_error("hive: {name: ''}\nbots: []\n", "t.yaml:1:14: 'name' must not be empty");
    expect_error("bots: [{id: a, port: eighty}]\n",
                 "t.yaml:1:22: expected an integer for 'port', got 'eighty'");
    expect_error("bots: [{id: a, queue_max: 1.5}]\n",
                 "t.yaml:1:27: expected an integer for 'queue_max', got '1.5'");
    expect_error("bots: [{id: a, timeout: [1]}]\n",
                 "t.yaml:1:25: expected a duration for 'timeout', got a sequence");
    expect_error("bots: [{id: a, adapter: {type: cli, command: claude -p}}]\n",
                 "t.yaml:1:46: expected a sequence for 'command', got 'claude -p'");
    expect_error("bots: [{id: a, adapter: {type: cli, command: [claude, [x]]}}]\n",
                 "t.yaml:1:55: expected a string for 'command', got a sequence");
    expect_error("bots: [{id: a, adapter: {env: [A=1]}}]\n",
                 "t.yaml:1:31: expected a mapping for 'env', got a sequence");
    expect_error("bots: [{id: a, adapter: {env: {A: ~}}}]\n",
                 "t.yaml:1:35: expected a string for 'A', got nothing");
    expect_error("bots: [{id: a, adapter: {env: {1A: x}}}]\n",
                 "t.yaml:1:32: bad variable name '1A' in 'env'");
    expect_error("bots: [{id: a, adapter: {env_remove: [A-B]}}]\n",
                 "t.yaml:1:39: bad variable name 'A-B' in 'env_remove'");
    expect_error("bots: [{id: \"a\\0b\"}]\n", "t.yaml:1:13: 'id' contains a NUL character");
    expect_error(
        "bots: []\n\"hive\\0\": {}\n",
        "t.yaml:2:1: unknown key 'hive?' in top level (expected hive, defaults, bots, include)");
}
END_TEST

START_TEST(test_duplicate_keys)
{
    expect_error("bots: []\nhive: {}\nbots: []\n",
                 "t.yaml:3:1: duplicate key 'bots' in top level (first at line 1)");
    expect_error("bots:\n  - id: a\n    port: 9001\n    port: 9002\n",
                 "t.yaml:4:5: duplicate key 'port' in bots[0] (first at line 3)");
    expect_error("bots:\n  - id: a\n    adapter:\n      env:\n        X: 1\n        Y: 2\n"
                 "        X: 3\n",
                 "t.yaml:7:9: duplicate key 'X' in 'env' (first at line 5)");
}
END_TEST

START_TEST(test_bot_ids)
{
    expect_error("hive: {name: x}\n", "t.yaml:1:1: missing 'bots' (a list of bots)");
    expect_error("hive: {}\nbots:\n  - port: 9001\n", "t.yaml:3:5: bots[0] has no id");
    expect_error(
        "bots:\n  - id: a/b\n",
        "t.yaml:2:9: bad bot id 'a/b' (expected 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..)");
    expect_error(
        "bots:\n  - id: ..\n",
        "t.yaml:2:9: bad bot id '..' (expected 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..)");
    expect_error("bots:\n  - id: '.'\n",
                 "t.yaml:2:9: bad bot id '.' (expected 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..)");
    expect_error("bots:\n  - id: "
                 "x2345678901234567890123456789012345678901234567890123456789012345\n",
                 "t.yaml:2:9: bad bot id 'x23456789012345678901234567890123456789012345678...' "
                 "(expected 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..)");
    struct roster *r = load_ok(
        "bots:\n  - id: x234567890123456789012345678901234567890123456789012345678901234\n");
    roster_free(r);
    expect_error("bots:\n  - id: A\n  - id: B\n  - id: A\n",
                 "t.yaml:4:9: duplicate bot id 'A' (first at line 2)");
}
END_TEST

START_TEST(test_ports)
{
    expect_error("bots: [{id: a, port: 0}]\n",
                 "t.yaml:1:22: 'port' must be between 1 and 65535, got 0");
    expect_error("bots: [{id: a, port: 70000}]\n",
                 "t.yaml:1:22: 'port' must be between 1 and 65535, got 70000");
    expect_error("bots: [{id: a, port: 99999999999999999999999}]\n",
                 "t.yaml:1:22: 'port' must be between 1 and 65535, got 9223372036854775807");
    expect_error("bots:\n  - {id: a, port: 8001}\n  - {id: b, port: 8001}\n",
                 "t.yaml:3:19: port 8001 of bot 'b' is already used by bot 'a'");
    expect_among("bots:\n  - {id: a, port: 8001}\n  - {id: b, port: 8001}\n"
                 "  - {id: c, port: 8001}\n",
                 "t.yaml:4:19: port 8001 of bot 'c' is already used by bot 'a'");
    ck_assert_uint_eq(errs.n, 2);
    /* bots[1] derives 8002, which bots[0] took explicitly. */
    expect_error("bots:\n  - {id: a, port: 8002}\n  - {id: b}\n",
                 "t.yaml:3:5: port 8002 (base_port + 2) of bot 'b' is already used by bot 'a'");
    expect_error("hive: {listen: '127.0.0.1:9000'}\nbots:\n  - {id: a, port: 9000}\n",
                 "t.yaml:3:19: port 9000 of bot 'a' is the hive's listen port");
    expect_error("hive: {base_port: 7999}\nbots:\n  - {id: a}\n",
                 "t.yaml:3:5: port 8000 (base_port + 1) of bot 'a' is the hive's listen port");
    expect_error("hive: {base_port: 65535}\nbots:\n  - {id: a}\n",
                 "t.yaml:3:5: bot 'a' has no port and base_port + 1 = 65536 is out of range");
    expect_error("hive: {base_port: 0}\nbots: []\n",
                 "t.yaml:1:19: 'base_port' must be between 1 and 65535, got 0");
}
END_TEST

START_TEST(test_listen)
{
    struct roster *r = load_ok("hive: {listen: '[::1]:8080'}\nbots: [{id: a}]\n");
    ck_assert_str_eq(r->listen_host, "::1");
    ck_assert_int_eq(r->listen_port, 8080);
    ck_assert_int_eq(r->bots[0].port, 8081);
    roster_free(r);
    r = load_ok("hive: {listen: 127.1.2.3:8080}\nbots: []\n");
    roster_free(r);
    expect_error("hive: {listen: localhost}\nbots: []\n",
                 "t.yaml:1:16: bad listen address 'localhost' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: '::1:8000'}\nbots: []\n",
                 "t.yaml:1:16: bad listen address '::1:8000' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: '[::1]8000'}\nbots: []\n",
                 "t.yaml:1:16: bad listen address '[::1]8000' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: ':8000'}\nbots: []\n",
                 "t.yaml:1:16: bad listen address ':8000' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: 'host:80x'}\nbots: []\n",
                 "t.yaml:1:16: bad listen address 'host:80x' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: \"a\\x01:80\"}\nbots: []\n",
                 "t.yaml:1:16: bad listen address 'a?:80' (expected host:port or [v6]:port)");
    expect_error("hive: {listen: 'localhost:0'}\nbots: []\n",
                 "t.yaml:1:16: listen port 0 is out of range (1..65535)");
}
END_TEST

START_TEST(test_tokens)
{
    unsetenv("HIVE_TEST_TOKEN");
    expect_error("hive:\n  listen: 0.0.0.0:8000\nbots: []\n",
                 "t.yaml:2:11: binding 0.0.0.0 needs a token (token_env)");
    expect_error("hive:\n  listen: '[::]:8000'\nbots: []\n",
                 "t.yaml:2:11: binding :: needs a token (token_env)");
    expect_error("hive:\n  listen: 0.0.0.0:8000\n  token_env: HIVE_TEST_TOKEN\nbots: []\n",
                 "t.yaml:2:11: binding 0.0.0.0 needs a token (token_env: HIVE_TEST_TOKEN is unset "
                 "or empty)");
    expect_error("defaults:\n  bind: 10.0.0.1\nbots: [{id: a}, {id: b}]\n",
                 "t.yaml:2:9: binding 10.0.0.1 needs a token (token_env)");
    expect_error("bots: [{id: a, bind: example.com}]\n",
                 "t.yaml:1:22: binding example.com needs a token (token_env)");
    expect_error("bots: [{id: a, bind: '[::1]'}]\n",
                 "t.yaml:1:22: bad bind address '[::1]' (expected an address such as 127.0.0.1 "
                 "or ::1)");
    expect_error("hive: {token_env: HIVE-TOKEN}\nbots: []\n",
                 "t.yaml:1:19: bad variable name 'HIVE-TOKEN' for 'token_env'");

    setenv("HIVE_TEST_TOKEN", "", 1);
    expect_error("hive: {listen: '0.0.0.0:1', token_env: HIVE_TEST_TOKEN}\nbots: []\n",
                 "t.yaml:1:16: binding 0.0.0.0 needs a token (token_env: HIVE_TEST_TOKEN is unset "
                 "or empty)");
    setenv("HIVE_TEST_TOKEN", "s3cret", 1);
    struct roster *r = load_ok("hive:\n  listen: 0.0.0.0:8000\n  token_env: HIVE_TEST_TOKEN\n"
                               "defaults: {bind: 0.0.0.0}\nbots: [{id: a, bind: 192.168.1.2}]\n");
    ck_assert_str_eq(r->token, "s3cret");
    ck_assert_str_eq(r->bots[0].bind, "192.168.1.2");
    roster_free(r);
    unsetenv("HIVE_TEST_TOKEN");
    r = load_ok(
        "hive: {token_env: HIVE_TEST_TOKEN}\n"
        "bots: [{id: a, bind: 127.0.0.2}, {id: b, bind: localhost}, {id: c, bind: '::1'}]\n");
    ck_assert_ptr_null(r->token);
    roster_free(r);
}
END_TEST

START_TEST(test_values)
{
    expect_error("bots: [{id: a, mode: fast}]\n",
                 "t.yaml:1:22: unknown mode 'fast' (expected hybrid, cli-only, websocket-only)");
    expect_error("bots: [{id: a, adapter: {type: docker}}]\n",
                 "t.yaml:1:32: unknown type 'docker' (expected mock, cli, claude, codex, gemini)");
    expect_error("bots:\n  - id: a\n    adapter: {type: cli}\n",
                 "t.yaml:3:14: bot 'a' uses the cli adapter without a command");
    expect_error("bots:\n  - id: a\n    adapter: {type: cli, command: []}\n",
                 "t.yaml:3:35: bot 'a' uses the cli adapter without a command");
    expect_error("bots:\n  - id: a\n    adapter: {type: cli, command: ['']}\n",
                 "t.yaml:3:35: bot 'a' uses the cli adapter without a command");
    expect_error("defaults: {adapter: {type: cli}}\nbots:\n  - id: a\n",
                 "t.yaml:3:5: bot 'a' uses the cli adapter without a command");
    expect_error("bots: [{id: a, restart: {policy: sometimes}}]\n",
                 "t.yaml:1:34: unknown policy 'sometimes' (expected always, on-failure, never)");
    expect_error("bots: [{id: a, restart: {max_restarts: -1}}]\n",
                 "t.yaml:1:40: 'max_restarts' must not be negative, got -1");
    expect_error("bots: [{id: a, queue_max: 0}]\n",
                 "t.yaml:1:27: 'queue_max' must be at least 1, got 0");
    expect_error("bots: [{id: a, adapter: {delay_ms: -5}}]\n",
                 "t.yaml:1:36: 'delay_ms' must not be negative, got -5");
    expect_error("bots: [{id: a, cooldown: -1}]\n", "t.yaml:1:26: 'cooldown' must not be negative");
    expect_error("bots: [{id: a, timeout: 0}]\n", "t.yaml:1:25: 'timeout' must be more than 0");
    expect_error("bots: [{id: a, timeout: 10d}]\n",
                 "t.yaml:1:25: bad duration '10d' for 'timeout' (seconds, or a number with ms, s, "
                 "m or h)");
    expect_error("bots: [{id: a, timeout: 1000h}]\n",
                 "t.yaml:1:25: 'timeout' is too long (at most 1000000 s)");
    expect_error("hive: {limits: {max_body: 2 MiB}}\nbots: []\n",
                 "t.yaml:1:27: bad size '2 MiB' for 'max_body' (bytes, or a number with k, KiB, m, "
                 "MiB, g or GiB)");
    expect_error("hive: {limits: {max_body: 0}}\nbots: []\n",
                 "t.yaml:1:27: 'max_body' must be more than 0");
    expect_error("hive: {limits: {max_body: -1k}}\nbots: []\n",
                 "t.yaml:1:27: 'max_body' must not be negative");
    expect_error("hive: {limits: {max_body: 2048GiB}}\nbots: []\n",
                 "t.yaml:1:27: 'max_body' is too large (at most 1TiB)");
    expect_error("hive: {allowed_origins: ['http://a.example/']}\nbots: []\n",
                 "t.yaml:1:26: bad origin 'http://a.example/' in 'allowed_origins' (expected "
                 "scheme://host[:port])");
    expect_error("hive: {server_names: ['hive.lan:8000']}\nbots: []\n",
                 "t.yaml:1:23: bad server name 'hive.lan:8000' in 'server_names' (expected a host "
                 "name or address, no port)");
    expect_among("bots: [{id: a, server_names: ['http://x', 'a b', '::1']}]\n",
                 "t.yaml:1:31: bad server name 'http://x' in 'server_names' (expected a host name "
                 "or address, no port)");
    expect_error("bots: [{id: a, allowed_origins: [localhost]}]\n",
                 "t.yaml:1:34: bad origin 'localhost' in 'allowed_origins' (expected "
                 "scheme://host[:port])");
}
END_TEST

START_TEST(test_many_errors)
{
    struct roster *r = load("hive:\n"
                            "  listen: nope\n"
                            "  colour: blue\n"
                            "defaults:\n"
                            "  timeout: soon\n"
                            "bots:\n"
                            "  - id: a\n"
                            "    mode: fast\n"
                            "  - port: 8101\n"
                            "  - id: a\n");
    static const char *const want[] = {
        "t.yaml:2:11: bad listen address 'nope' (expected host:port or [v6]:port)",
        ("t.yaml:3:3: unknown key 'colour' in hive (expected name, work_dir, listen, base_port, "
         "token_env, allowed_origins, server_names, limits, budget, ca, tls)"),
        "t.yaml:5:12: bad duration 'soon' for 'timeout' (seconds, or a number with ms, s, m or h)",
        "t.yaml:8:11: unknown mode 'fast' (expected hybrid, cli-only, websocket-only)",
        "t.yaml:9:5: bots[1] has no id",
        "t.yaml:10:9: duplicate bot id 'a' (first at line 7)",
    };
    ck_assert_ptr_null(r);
    ck_assert_msg(errs.n == sizeof(want) / sizeof(want[0]), "got %s", all_errors());
    for (size_t i = 0; i < errs.n; i++)
        ck_assert_str_eq(errs.items[i], want[i]);
}
END_TEST

/* A duration and what it means in seconds. */
static const struct {
    const char *text;
    double seconds;
} durations[] = {
    {"0", 0},    {"7", 7},     {"1.5", 1.5},  {"500ms", 0.5}, {"10s", 10},
    {"2m", 120}, {"1h", 3600}, {".25", 0.25}, {"'90s'", 90},  {"1000000", 1000000},
};

START_TEST(test_durations)
{
    char text[128];
    snprintf(text, sizeof(text), "bots: [{id: a, cooldown: %s}]\n", durations[_i].text);
    struct roster *r = load_ok(text);
    ck_assert_double_eq_tol(r->bots[0].cooldown, durations[_i].seconds, 1e-9);
    roster_free(r);
}
END_TEST

/* A size and what it means in bytes. */
static const struct {
    const char *text;
    size_t bytes;
} sizes[] = {
    {"1", 1},         {"4096", 4096},     {"1k", 1024},      {"16KiB", 16384},
    {"2kb", 2048},    {"1m", 1048576},    {"1MiB", 1048576}, {"8MiB", 8388608},
    {"1MB", 1048576}, {"1g", 1073741824}, {"100b", 100},     {"1TiB", 0},
};

START_TEST(test_sizes)
{
    char text[128];
    snprintf(text, sizeof(text), "hive: {limits: {max_message: %s}}\nbots: []\n", sizes[_i].text);
    struct roster *r = load(text);
    if (sizes[_i].bytes == 0) {
        ck_assert_ptr_null(r);
        ck_assert_str_eq(errs.items[0], "t.yaml:1:30: bad size '1TiB' for 'max_message' (bytes, "
                                        "or a number with k, KiB, m, MiB, g or GiB)");
        return;
    }
    ck_assert_msg(r != NULL, "%s: %s", sizes[_i].text, all_errors());
    ck_assert_uint_eq(r->limits.max_message, sizes[_i].bytes);
    roster_free(r);
}
END_TEST

START_TEST(test_limits)
{
    struct roster *r = load_ok("hive:\n  limits:\n    max_header_bytes: 8KiB\n    max_body: 2m\n"
                               "    max_message: 65536\n    max_connections: 10\n"
                               "    header_timeout: 500ms\n    idle_timeout: 2m\n"
                               "defaults: {adapter: {output_cap: 1k}}\nbots: [{id: a}]\n");
    ck_assert_uint_eq(r->limits.max_header_bytes, 8192);
    ck_assert_uint_eq(r->limits.max_body, 2 << 20);
    ck_assert_uint_eq(r->limits.max_message, 65536);
    ck_assert_int_eq(r->limits.max_connections, 10);
    ck_assert_int_eq(r->limits.header_timeout_ms, 500);
    ck_assert_int_eq(r->limits.idle_timeout_ms, 120000);
    ck_assert_int_eq(r->bots[0].adapter.output_cap, 1024);
    roster_free(r);
    expect_error("hive: {limits: {idle_timeout: 0}}\nbots: []\n",
                 "t.yaml:1:31: 'idle_timeout' must be more than 0");
}
END_TEST

/* Load two single-bot rosters and compare their bots. */
static bool bots_equal(const char *a_text, const char *b_text)
{
    struct roster *a = load_ok(a_text), *b = load_ok(b_text);
    bool eq = roster_bot_equal(&a->bots[0], &b->bots[0]);
    ck_assert(eq == roster_bot_equal(&b->bots[0], &a->bots[0]));
    roster_free(a);
    roster_free(b);
    return eq;
}

START_TEST(test_bot_equal)
{
    const char *base = "bots:\n  - id: a\n    adapter: {type: cli, command: [x, y], env: {K: v}}\n";
    ck_assert(bots_equal(base, base));
    /* Same definition, other layout and line: still equal. */
    ck_assert(bots_equal(base, "hive: {name: other}\ndefaults: {adapter: {env: {K: v}}}\n"
                               "bots:\n\n  - {id: a, port: 8001, adapter: {type: cli, command: [x, "
                               "y]}}\n"));
    ck_assert(!bots_equal(base, "bots:\n  - id: a\n    adapter: {type: cli, command: [x]}\n"));
    ck_assert(!bots_equal(base, "bots:\n  - id: a\n    adapter: {type: cli, command: [x, y, z], "
                                "env: {K: v}}\n"));
    ck_assert(!bots_equal(base, "bots:\n  - id: a\n    adapter: {type: cli, command: [x, y], env: "
                                "{K: w}}\n"));
    ck_assert(!bots_equal(base, "bots:\n  - id: b\n    adapter: {type: cli, command: [x, y], env: "
                                "{K: v}}\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, port: 8002}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, timeout: 301}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, restart: {policy: never}}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, adapter: {env_remove: [X]}}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, allowed_origins: [http://x]}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, server_names: [x.lan]}]\n"));
    ck_assert(bots_equal("bots: [{id: a}]\n", "bots: [{id: a, timeout: 5m, queue_max: 100}]\n"));
    /* The process keys are rows too: their defaults and changes count. */
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, env: {K: v}}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, cwd: sub}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, log: {backups: 5}}]\n"));
    ck_assert(bots_equal("bots: [{id: a}]\n",
                         "bots: [{id: a, log: {max_bytes: 10MiB, backups: 3}, env: {}}]\n"));

    struct roster *a = load_ok("bots: []\n"),
                  *b = load_ok("hive: {limits: {max_body: 1MiB}}\nbots: []\n");
    ck_assert(roster_shared_equal(a, b));
    roster_free(b);
    b = load_ok("hive: {limits: {max_body: 2MiB}}\nbots: []\n");
    ck_assert(!roster_shared_equal(a, b));
    roster_free(a);
    roster_free(b);
}
END_TEST

/* Write TEXT to PATH. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* env_file's variables are a derived row: the same file name with other
 * contents is another definition (a reload restarts the worker). */
START_TEST(test_env_file_equal)
{
    char dir[] = "/tmp/check_roster_envXXXXXX", path[64], text[160];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/bot.env", dir);
    snprintf(text, sizeof text, "bots: [{id: a, env_file: %s}]\n", path);
    write_file(path, "K=1\n");
    struct roster *a = load_ok(text);
    ck_assert_str_eq(a->bots[0].exec.file_env[0], "K=1");
    write_file(path, "K=2\n");
    struct roster *b = load_ok(text);
    ck_assert(!roster_bot_equal(&a->bots[0], &b->bots[0]));
    roster_free(b);
    write_file(path, "K=1\n");
    b = load_ok(text);
    ck_assert(roster_bot_equal(&a->bots[0], &b->bots[0]));
    roster_free(a);
    roster_free(b);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* The worker's argv comes from the table rows: every flag, "--" and the
 * command last. */
/* SPEC §12's keys: pool and tags stay with the supervisor (a change needs
 * no new worker), workspace and stall_after reach the worker as flags; a
 * workspace needs a git work dir and a branch-like prefix. */
START_TEST(test_work_keys)
{
    char dir[] = "/tmp/check-roster-git-XXXXXX", git[64], *yaml;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(git, sizeof git, "%s/.git", dir);
    ck_assert_int_eq(mkdir(git, 0755), 0);
    yaml = xasprintf("hive: {work_dir: %s}\ndefaults: {stall_after: 2m, pool: p}\n"
                     "bots:\n  - {id: a, tags: [gpu, big], workspace: {git_worktree: ag/x}}\n"
                     "  - {id: b, pool: q}\n",
                     dir);
    struct roster *r = load_ok(yaml);
    ck_assert_str_eq(r->bots[0].pool, "p");
    ck_assert_str_eq(r->bots[0].tags[1], "big");
    ck_assert_ptr_null(r->bots[0].tags[2]);
    ck_assert_str_eq(r->bots[1].pool, "q");
    ck_assert_ptr_null(r->bots[1].tags[0]);
    ck_assert_double_eq(r->bots[0].stall_after, 120);
    ck_assert_str_eq(r->bots[0].workspace.git_worktree, "ag/x");
    ck_assert_ptr_null(r->bots[1].workspace.git_worktree);
    char **argv = roster_worker_argv(r, &r->bots[0], "w");
    bool wt = false, stall = false, pool = false;
    for (char **p = argv; *p && p[1]; p++) {
        wt |= strcmp(p[0], "--git-worktree") == 0 && strcmp(p[1], "ag/x") == 0;
        stall |= strcmp(p[0], "--stall-after") == 0 && strcmp(p[1], "120.000") == 0;
        pool |= strstr(p[0], "pool") || strstr(p[0], "tag");
    }
    ck_assert(wt && stall && !pool);
    roster_argv_free(argv);
    struct roster *r2 = load_ok(yaml);
    free(r2->bots[0].pool);
    r2->bots[0].pool = xstrdup("other");
    ck_assert(roster_bot_equal(&r->bots[0], &r2->bots[0])); /* live: no restart */
    r2->bots[0].stall_after = 1;
    ck_assert(!roster_bot_equal(&r->bots[0], &r2->bots[0]));
    roster_free(r2);
    roster_free(r);
    free(yaml);
    yaml = xasprintf("hive: {work_dir: %s}\nbots:\n  - {id: a, workspace: {git_worktree: "
                     "'-x'}}\n  - {id: b, pool: 'a b'}\n  - {id: c, tags: [ok, 'no/slash']}\n",
                     dir);
    expect_among(yaml, "t.yaml:3:39: bad branch prefix '-x' for git_worktree (A-Z a-z 0-9 . _ "
                       "- /, a valid git branch name)");
    expect_among(yaml, "t.yaml:4:19: bad pool name 'a b' (expected 1 to 64 of A-Z a-z 0-9 . _ -)");
    expect_among(yaml, "t.yaml:5:24: bad tag 'no/slash' in 'tags' (expected 1 to 64 of A-Z a-z "
                       "0-9 . _ -)");
    free(yaml);
    rmdir(git);
    yaml =
        xasprintf("hive: {work_dir: %s}\nbots:\n  - {id: a, workspace: {git_worktree: w}}\n", dir);
    char *msg = xasprintf("t.yaml:3:39: git_worktree needs the work dir %s to be a git "
                          "repository (git init, or clone one there)",
                          dir);
    expect_error(yaml, msg);
    free(msg);
    free(yaml);
    rmdir(dir);
}
END_TEST

START_TEST(test_worker_argv)
{
    struct roster *r = load_ok("hive: {work_dir: /w, allowed_origins: ['http://a.example']}\n"
                               "bots:\n  - id: a\n    stop_timeout: 5\n    adapter: {type: cli, "
                               "command: [x, -p], env: {K: v}, env_remove: [Z]}\n");
    char **argv = roster_worker_argv(r, &r->bots[0], "/bin/hive-worker");
    char joined[2048] = "";
    for (char **p = argv; *p; p++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s",
                 p == argv ? "" : " ", *p);
    ck_assert_str_eq(joined,
                     "/bin/hive-worker a --work-dir /w --mode hybrid --adapter-type cli --env K=v "
                     "--env-remove Z --mock-delay-ms 0 --output-cap 8388608 --cooldown 0.000 "
                     "--timeout 300.000 --queue-max 100 --stop-grace 4.000 --bind 127.0.0.1 "
                     "--allowed-origin http://a.example --stall-after 0.000 --max-header 16384 "
                     "--max-body 1048576 "
                     "--max-message 1048576 --max-connections 1024 --header-timeout 10.000 "
                     "--idle-timeout 60.000 -- x -p");
    roster_argv_free(argv);
    roster_free(r);
    /* cwd is a row with a flag: made absolute against the work dir. */
    r = load_ok("hive: {work_dir: /w}\nbots: [{id: a, cwd: sub}]\n");
    argv = roster_worker_argv(r, &r->bots[0], "/bin/hive-worker");
    bool found = false;
    for (char **p = argv; *p && p[1]; p++)
        found |= strcmp(p[0], "--cwd") == 0 && strcmp(p[1], "/w/sub") == 0;
    ck_assert(found);
    roster_argv_free(argv);
    roster_free(r);
}
END_TEST

/* The lifecycle keys (issue 12): defaults, per bot and under defaults. */
START_TEST(test_lifecycle_keys)
{
    struct roster *r = load_ok("defaults: {stop_signal: INT, watchdog: 0}\n"
                               "bots:\n"
                               "  - id: a\n"
                               "  - id: b\n    autostart: false\n    depends_on: [a]\n"
                               "    stop_signal: SIGUSR1\n    start_timeout: 2m\n"
                               "    restart: {max_restarts: 100000}\n");
    ck_assert(r->bots[0].autostart);
    ck_assert_ptr_null(r->bots[0].depends_on[0]);
    ck_assert_int_eq(r->bots[0].stop_signal, SIGINT);
    ck_assert(r->bots[0].watchdog == 0);
    ck_assert(!r->bots[1].autostart);
    ck_assert_str_eq(r->bots[1].depends_on[0], "a");
    ck_assert_ptr_null(r->bots[1].depends_on[1]);
    ck_assert_int_eq(r->bots[1].stop_signal, SIGUSR1);
    ck_assert(r->bots[1].start_timeout == 120);
    ck_assert_int_eq(r->bots[1].restart.max_restarts, 100000);
    ck_assert_str_eq(roster_signal_name(r->bots[1].stop_signal), "USR1");
    roster_free(r);

    r = load_ok("bots: [{id: a}]\n");
    ck_assert(r->bots[0].autostart);
    ck_assert_int_eq(r->bots[0].stop_signal, SIGTERM);
    ck_assert(r->bots[0].start_timeout == 10 && r->bots[0].stop_timeout == 10);
    ck_assert(r->bots[0].watchdog == 60);
    roster_free(r);

    expect_error("bots: [{id: a, autostart: maybe}]\n",
                 "t.yaml:1:27: expected true or false for 'autostart', got 'maybe'");
    expect_error("bots: [{id: a, stop_signal: STOP}]\n",
                 "t.yaml:1:29: unknown stop_signal 'STOP' (expected TERM, INT, HUP, QUIT, USR1, "
                 "USR2, KILL)");
    expect_error("bots: [{id: a, stop_signal: [TERM]}]\n",
                 "t.yaml:1:29: expected a signal name for 'stop_signal', got a sequence");
    expect_error("bots: [{id: a, depends_on: b}]\n",
                 "t.yaml:1:28: expected a sequence for 'depends_on', got 'b'");
    expect_error("bots: [{id: a, depends_on: ['b c']}]\n",
                 "t.yaml:1:29: bad bot id 'b c' in 'depends_on'");
    expect_error("bots: [{id: a, restart: {max_restarts: -3}}]\n",
                 "t.yaml:1:40: 'max_restarts' must not be negative, got -3");
    expect_error("bots: [{id: a, watchdog: -1}]\n", "t.yaml:1:26: 'watchdog' must not be negative");
    expect_error("bots: [{id: a, start_timeout: 0}]\n",
                 "t.yaml:1:31: 'start_timeout' must be more than 0");
    expect_error("bots: [{id: a, stop_timeout: 5x}]\n",
                 "t.yaml:1:30: bad duration '5x' for 'stop_timeout' (seconds, or a number with ms, "
                 "s, m or h)");
    expect_error("defaults: {autostart: 1}\nbots: []\n",
                 "t.yaml:1:23: expected true or false for 'autostart', got '1'");
}
END_TEST

/* depends_on names bots of the roster, not itself, without cycles; each
 * problem at the element that shows it. */
START_TEST(test_depends_on)
{
    expect_error("bots:\n  - id: a\n    depends_on: [b, zz]\n  - id: b\n",
                 "t.yaml:3:21: bot 'a' depends on unknown bot 'zz'");
    expect_error("bots:\n  - id: a\n    depends_on: [a]\n",
                 "t.yaml:3:18: bot 'a' depends on itself");
    expect_error("bots:\n"
                 "  - {id: a, depends_on: [b]}\n"
                 "  - {id: b, depends_on: [c]}\n"
                 "  - {id: c, depends_on: [a]}\n",
                 "t.yaml:4:26: dependency cycle: a -> b -> c -> a");
    expect_error("bots:\n"
                 "  - {id: x}\n"
                 "  - {id: a, depends_on: [x, b]}\n"
                 "  - {id: b, depends_on: [x, a]}\n",
                 "t.yaml:4:29: dependency cycle: a -> b -> a");
    expect_error("defaults: {depends_on: [a]}\nbots:\n  - id: a\n",
                 "t.yaml:1:25: bot 'a' depends on itself");
    /* A diamond is no cycle; a long chain is walked without recursion. */
    struct roster *r = load_ok("bots:\n  - {id: a}\n  - {id: b, depends_on: [a]}\n"
                               "  - {id: c, depends_on: [a]}\n  - {id: d, depends_on: [b, c]}\n");
    ck_assert_str_eq(r->bots[3].depends_on[1], "c");
    roster_free(r);
    size_t n = 20000, cap = n * 64 + 64;
    char *text = malloc(cap);
    size_t used = (size_t)snprintf(
        text, cap, "hive: {listen: 127.0.0.1:65000}\nbots:\n  - {id: b0, port: 1}\n");
    for (size_t i = 1; i < n; i++)
        used +=
            (size_t)snprintf(text + used, cap - used,
                             "  - {id: b%zu, port: %zu, depends_on: [b%zu]}\n", i, i + 1, i - 1);
    r = load_ok(text);
    ck_assert_uint_eq(r->n_bots, n);
    roster_free(r);
    free(text);
}
END_TEST

/* Changes to autostart and depends_on need no new worker; stop_signal does. */
START_TEST(test_bot_equal_live)
{
    ck_assert(bots_equal("bots: [{id: a}]\n", "bots: [{id: a, autostart: false}]\n"));
    ck_assert(
        bots_equal("bots: [{id: a}, {id: b}]\n", "bots: [{id: a, depends_on: [b]}, {id: b}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, stop_signal: INT}]\n"));
    ck_assert(!bots_equal("bots: [{id: a}]\n", "bots: [{id: a, start_timeout: 3}]\n"));
}
END_TEST

START_TEST(test_load_file)
{
    char dir[] = "/tmp/check_roster_XXXXXX", path[PATH_MAX], want[PATH_MAX], old[PATH_MAX];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/conf", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/conf/hive.yaml", dir);
    write_file(path, "hive: {work_dir: ../data/./hive}\nbots: [{id: a}]\n");

    struct roster *r = NULL;
    roster_errors_free(&errs);
    ck_assert_int_eq(roster_load(path, &r, &errs), 0);
    snprintf(want, sizeof(want), "%s/data/hive", dir);
    ck_assert_str_eq(r->work_dir, want);
    ck_assert_str_eq(r->path, path);
    roster_free(r);

    /* A relative path: resolved against the current directory. */
    ck_assert_ptr_nonnull(getcwd(old, sizeof(old)));
    ck_assert_int_eq(chdir(dir), 0);
    write_file(path, "hive: {name: x}\nbots: [{id: a, port: nope}]\n");
    ck_assert_int_eq(roster_load("conf/hive.yaml", &r, &errs), -1);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(errs.items[0],
                     "conf/hive.yaml:2:22: expected an integer for 'port', got 'nope'");
    roster_errors_free(&errs);
    write_file(path, "bots: [{id: a}]\n");
    ck_assert_int_eq(roster_load("./conf/../conf/hive.yaml", &r, &errs), 0);
    snprintf(want, sizeof(want), "%s/conf", dir);
    ck_assert_str_eq(r->work_dir, want);
    ck_assert_str_eq(r->path, path);
    roster_free(r);
    ck_assert_int_eq(chdir(old), 0);

    ck_assert_int_eq(roster_load("/nonexistent/hive.yaml", &r, &errs), -1);
    ck_assert_str_eq(errs.items[0],
                     "/nonexistent/hive.yaml: cannot read: No such file or directory");
    unlink(path);
    snprintf(path, sizeof(path), "%s/conf", dir);
    rmdir(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_process_keys_defaults)
{
    struct roster *r = load_ok("hive: {work_dir: /w}\nbots: [{id: a}]\n");
    const struct roster_bot *b = &r->bots[0];
    ck_assert_ptr_null(b->exec.cwd);
    ck_assert_ptr_null(b->exec.env[0]);
    ck_assert_ptr_null(b->exec.env_file);
    ck_assert_ptr_null(b->exec.file_env[0]);
    ck_assert_ptr_null(b->exec.user);
    ck_assert_ptr_null(b->exec.group);
    ck_assert_int_eq(b->rlimits.memory_max, 0);
    ck_assert_int_eq(b->rlimits.cpu_max, 0);
    ck_assert_int_eq(b->rlimits.tasks_max, 0);
    ck_assert_int_eq(b->log.max_bytes, 10L * 1024 * 1024);
    ck_assert_int_eq(b->log.backups, 3);
    roster_free(r);

    r = load_ok("hive: {work_dir: /w}\n"
                "defaults: {cwd: sub, env: {A: '1', B: x}, log: {max_bytes: 1k}}\n"
                "bots:\n"
                "  - id: a\n"
                "  - id: b\n"
                "    cwd: /abs/../dir\n"
                "    env: {C: '3'}\n"
                "    log: {backups: 0}\n");
    ck_assert_str_eq(r->bots[0].exec.cwd, "/w/sub");
    ck_assert_str_eq(r->bots[0].exec.env[0], "A=1");
    ck_assert_str_eq(r->bots[0].exec.env[1], "B=x");
    ck_assert_int_eq(r->bots[0].log.max_bytes, 1024);
    ck_assert_int_eq(r->bots[0].log.backups, 3);
    ck_assert_str_eq(r->bots[1].exec.cwd, "/dir");
    ck_assert_str_eq(r->bots[1].exec.env[0], "C=3");
    ck_assert_ptr_null(r->bots[1].exec.env[1]);
    ck_assert_int_eq(r->bots[1].log.max_bytes, 1024);
    ck_assert_int_eq(r->bots[1].log.backups, 0);
    ck_assert(!roster_bot_equal(&r->bots[0], &r->bots[1]));
    roster_free(r);
}
END_TEST

START_TEST(test_process_keys_errors)
{
    expect_error("bots: [{id: a, cwd: ''}]\n", "t.yaml:1:21: 'cwd' must not be empty");
    expect_error("bots:\n  - id: a\n    env: [A]\n",
                 "t.yaml:3:10: expected a mapping for 'env', got a sequence");
    expect_error("bots:\n  - id: a\n    env: {1A: x}\n",
                 "t.yaml:3:11: bad variable name '1A' in 'env'");
    expect_error("bots:\n  - id: a\n    cpu_max: 50 %\n",
                 "t.yaml:3:14: bad cpu_max '50 %' (expected a percentage of one CPU such as 50% "
                 "or 150%, or a number of CPUs from 0.01 to 1024)");
    expect_error("bots:\n  - id: a\n    tasks_max: 0\n",
                 "t.yaml:3:16: 'tasks_max' must be at least 1, got 0");
    expect_error("bots:\n  - id: a\n    memory_max: -5M\n",
                 "t.yaml:3:17: 'memory_max' must not be negative");
    expect_error("bots:\n  - id: a\n    log: {max_bytes: 0}\n",
                 "t.yaml:3:22: 'max_bytes' must be more than 0");
    expect_error("bots:\n  - id: a\n    log: {keep: 1}\n",
                 "t.yaml:3:11: unknown key 'keep' in bots[0].log (expected max_bytes, backups)");
    expect_error("bots:\n  - id: a\n    env_file: /nonexistent/x.env\n",
                 "t.yaml:3:15: cannot read env_file /nonexistent/x.env: No such file or directory");
    if (geteuid() == 0) {
        expect_host_error(
            "bots:\n  - id: a\n    user: no-such-user-xyz\n",
            "t.yaml:3:11: unknown user 'no-such-user-xyz' (no such user on this host)");
        expect_host_error(
            "bots:\n  - id: a\n    group: no-such-group-xyz\n",
            "t.yaml:3:12: unknown group 'no-such-group-xyz' (no such group on this host)");
        struct roster *r = load_ok("bots: [{id: a, user: root, group: root}]\n");
        ck_assert_str_eq(r->bots[0].exec.user, "root");
        ck_assert_uint_eq(hostcheck_roster(r, &errs), 0);
        roster_free(r);
    } else {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "t.yaml:3:11: 'user' needs hive to run as root (it runs as uid %u)",
                 (unsigned)geteuid());
        expect_host_error("bots:\n  - id: a\n    user: root\n", msg);
    }
}
END_TEST

/* The load notes what the roster asks of the host, with where, and checks
 * none of it: a client loads a roster with users and limits as any user. */
START_TEST(test_host_needs_noted_not_checked)
{
    struct roster *r = load_ok("defaults:\n  memory_max: 64M\nbots:\n"
                               "  - id: a\n    user: no-such-user-xyz\n    group: \"g\\x01\"\n");
    ck_assert_uint_eq(r->n_needs, 3);
    ck_assert_int_eq(r->needs[0].kind, ROSTER_NEED_CGROUP);
    ck_assert_str_eq(r->needs[0].key, "memory_max");
    ck_assert_str_eq(r->needs[0].value, "memory");
    ck_assert_str_eq(r->needs[0].where, "t.yaml:2:15");
    ck_assert_int_eq(r->needs[1].kind, ROSTER_NEED_USER);
    ck_assert_str_eq(r->needs[1].value, "no-such-user-xyz");
    ck_assert_str_eq(r->needs[1].where, "t.yaml:5:11");
    ck_assert_int_eq(r->needs[2].kind, ROSTER_NEED_GROUP);
    ck_assert_str_eq(r->needs[2].shown, "'g?'"); /* quoted for messages */
    ck_assert_str_eq(r->needs[2].where, "t.yaml:6:12");
    roster_free(r);
}
END_TEST

START_TEST(test_limits_where_the_kernel_has_them)
{
    char why[600];
    bool memory = cgroup_limit_api("memory", NULL, why, sizeof why) != CGROUP_API_NONE;
    struct roster *r = load_ok("bots: [{id: a, memory_max: 512M, cpu_max: 150%, tasks_max: 64}]\n");
    size_t problems = hostcheck_roster(r, &errs);
    if (memory && cgroup_limit_api("cpu", NULL, why, sizeof why) != CGROUP_API_NONE &&
        cgroup_limit_api("pids", NULL, why, sizeof why) != CGROUP_API_NONE) {
        ck_assert_msg(problems == 0, "%s", all_errors());
        ck_assert_int_eq(r->bots[0].rlimits.memory_max, 512L << 20);
        ck_assert_int_eq(r->bots[0].rlimits.cpu_max, 150);
        ck_assert_int_eq(r->bots[0].rlimits.tasks_max, 64);
        roster_free(r);
        r = load_ok("bots: [{id: a, cpu_max: 0.5}]\n");
        ck_assert_int_eq(r->bots[0].rlimits.cpu_max, 50);
        roster_free(r);
    } else {
        /* Refused, not ignored, where the kernel cannot enforce them. */
        ck_assert_uint_gt(problems, 0);
        ck_assert_msg(strstr(all_errors(), "cannot be enforced here") != NULL, "%s", all_errors());
        roster_free(r);
    }
}
END_TEST

START_TEST(test_interpolation)
{
    setenv("HIVE_T_NAME", "from-env", 1);
    setenv("HIVE_T_EMPTY", "", 1);
    unsetenv("HIVE_T_UNSET");
    struct roster *r =
        load_ok("hive: {name: '${HIVE_T_NAME}'}\n"
                "bots:\n"
                "  - id: a\n"
                "    env: {A: 'x${HIVE_T_UNSET:-def}y', B: '$$HOME', C: '${HIVE_T_EMPTY:-e}',\n"
                "          D: '${HIVE_T_EMPTY-e}', E: 'a$b', F: \"${HIVE_T_NAME}\"}\n"
                "    port: ${HIVE_T_PORT:-9001}\n");
    ck_assert_str_eq(r->name, "from-env");
    ck_assert_str_eq(r->bots[0].exec.env[0], "A=xdefy");
    ck_assert_str_eq(r->bots[0].exec.env[1], "B=$HOME");
    ck_assert_str_eq(r->bots[0].exec.env[2], "C=e");
    ck_assert_str_eq(r->bots[0].exec.env[3], "D=");
    ck_assert_str_eq(r->bots[0].exec.env[4], "E=a$b");
    ck_assert_str_eq(r->bots[0].exec.env[5], "F=from-env");
    ck_assert_int_eq(r->bots[0].port, 9001);
    roster_free(r);
    expect_error("bots:\n  - id: a\n    cwd: pre/${HIVE_T_UNSET}\n",
                 "t.yaml:3:14: variable HIVE_T_UNSET is not set (use ${HIVE_T_UNSET:-default} "
                 "for a default)");
    expect_error("bots:\n  - id: a\n    cwd: 'x${HIVE_T_NAME'\n",
                 "t.yaml:3:12: unterminated '${' (expected '}')");
    expect_error("bots:\n  - id: a\n    cwd: x${1A}\n",
                 "t.yaml:3:11: bad variable reference '${1A}' (expected ${NAME} or "
                 "${NAME:-default})");
    unsetenv("HIVE_T_NAME");
    unsetenv("HIVE_T_EMPTY");
}
END_TEST

/* Write TEXT to DIR/NAME. */
static void write_in(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, text);
}

/* Load DIR/hive.yaml. */
static struct roster *load_in(const char *dir)
{
    char path[PATH_MAX];
    struct roster *r = NULL;
    snprintf(path, sizeof path, "%s/hive.yaml", dir);
    roster_errors_free(&errs);
    roster_load(path, &r, &errs);
    return r;
}

START_TEST(test_env_file_and_include)
{
    char dir[] = "/tmp/check_roster_inc_XXXXXX", sub[PATH_MAX], msg[PATH_MAX + 200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_in(dir, "a.env", "# comment\n\nA=1\nexport B='two words'\nC=3 # trailing\nD=\"q#\"\n");
    write_in(dir, "sub/b.env", "X=sub\n");
    write_in(dir, "sub/more.yaml", "bots:\n  - id: c\n    env_file: b.env\n");
    write_in(dir, "hive.yaml",
             "include: [sub/more.yaml]\nbots:\n  - id: a\n    env_file: a.env\n  - id: b\n");
    struct roster *r = load_in(dir);
    ck_assert_msg(r != NULL, "%s", all_errors());
    ck_assert_int_eq(r->n_bots, 3);
    ck_assert_str_eq(r->bots[0].exec.file_env[0], "A=1");
    ck_assert_str_eq(r->bots[0].exec.file_env[1], "B=two words");
    ck_assert_str_eq(r->bots[0].exec.file_env[2], "C=3");
    ck_assert_str_eq(r->bots[0].exec.file_env[3], "D=q#");
    ck_assert_ptr_null(r->bots[0].exec.file_env[4]);
    ck_assert_str_eq(r->bots[2].id, "c");
    ck_assert_str_eq(r->bots[2].exec.file_env[0], "X=sub");
    ck_assert_int_eq(r->bots[2].port, 8003);
    roster_free(r);

    /* An error in an env file: its own file and line. */
    write_in(dir, "a.env", "A=1\nnot a line\n");
    r = load_in(dir);
    ck_assert_ptr_null(r);
    snprintf(msg, sizeof msg, "%s/hive.yaml:4:15: env_file %s/a.env:2: expected NAME=value", dir,
             dir);
    ck_assert_str_eq(errs.items[0], msg);
    write_in(dir, "a.env", "A=1\n");

    /* Errors in an included file name it, at the right line and column. */
    write_in(dir, "sub/more.yaml", "bots:\n  - id: c\n    port: x\n  - id: a\n");
    r = load_in(dir);
    ck_assert_ptr_null(r);
    snprintf(msg, sizeof msg, "%s/sub/more.yaml:3:11: expected an integer for 'port', got 'x'",
             dir);
    ck_assert_msg(errs.n == 2 && strcmp(errs.items[0], msg) == 0, "%s", all_errors());
    snprintf(msg, sizeof msg, "%s/sub/more.yaml:4:9: duplicate bot id 'a' (first at line 3)", dir);
    ck_assert_str_eq(errs.items[1], msg);

    /* Only bots and include in an included file; cycles refused. */
    write_in(dir, "sub/more.yaml", "hive: {name: x}\ninclude: [../hive.yaml]\n");
    r = load_in(dir);
    ck_assert_ptr_null(r);
    snprintf(msg, sizeof msg,
             "%s/sub/more.yaml:1:1: unknown key 'hive' in an included file (expected bots, "
             "include)",
             dir);
    ck_assert_msg(errs.n == 2 && strcmp(errs.items[0], msg) == 0, "%s", all_errors());
    snprintf(msg, sizeof msg,
             "%s/sub/more.yaml:2:11: include cycle: %s/sub/../hive.yaml is already being included",
             dir, dir);
    ck_assert_str_eq(errs.items[1], msg);

    write_in(dir, "hive.yaml", "include: [nope.yaml]\nbots: []\n");
    r = load_in(dir);
    ck_assert_ptr_null(r);
    snprintf(msg, sizeof msg,
             "%s/hive.yaml:1:11: cannot read included file %s/nope.yaml: No such file or "
             "directory",
             dir, dir);
    ck_assert_str_eq(errs.items[0], msg);
    roster_errors_free(&errs);

    const char *names[] = {"a.env", "sub/b.env", "sub/more.yaml", "hive.yaml"};
    for (size_t i = 0; i < 4; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(sub);
    rmdir(dir);
}
END_TEST

START_TEST(test_every_prefix)
{
    size_t len = strlen(spec_example);
    for (size_t n = 0; n <= len; n++) {
        struct roster *r = (struct roster *)1;
        roster_errors_free(&errs);
        int rc = roster_load_string(spec_example, n, "p.yaml", &r, &errs);
        ck_assert(rc == 0 ? r != NULL && errs.n == 0 : r == NULL && errs.n > 0);
        for (size_t i = 0; i < errs.n; i++)
            ck_assert_msg(strncmp(errs.items[i], "p.yaml:", 7) == 0, "%s", errs.items[i]);
        roster_free(r);
    }
    /* And every prefix of every line dropped, as a cheap mutation. */
    for (size_t cut = 0; cut < len; cut++) {
        char *text = strdup(spec_example);
        char *nl = strchr(text + cut, '\n');
        struct roster *r;
        if (nl)
            memmove(text + cut, nl + 1, strlen(nl + 1) + 1);
        roster_errors_free(&errs);
        roster_load_string(text, strlen(text), "p.yaml", &r, &errs);
        roster_free(r);
        free(text);
    }
}
END_TEST

/* All roster tests. */
static Suite *roster_suite(void)
{
    Suite *s = suite_create("roster");
    TCase *tc = tcase_create("roster");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, roster_test_teardown);
    tcase_add_test(tc, test_spec_example);
    tcase_add_test(tc, test_process_keys_defaults);
    tcase_add_test(tc, test_process_keys_errors);
    tcase_add_test(tc, test_limits_where_the_kernel_has_them);
    tcase_add_test(tc, test_host_needs_noted_not_checked);
    tcase_add_test(tc, test_interpolation);
    tcase_add_test(tc, test_env_file_and_include);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_mock_default_cli_bot);
    tcase_add_test(tc, test_anchors_and_quoting);
    tcase_add_test(tc, test_empty_and_documents);
    tcase_add_test(tc, test_syntax_errors);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_remote_bots);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_duplicate_keys);
    tcase_add_test(tc, test_bot_ids);
    tcase_add_test(tc, test_ports);
    tcase_add_test(tc, test_listen);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_many_errors);
    tcase_add_loop_test(tc, test_durations, 0, sizeof(durations) / sizeof(durations[0]));
    tcase_add_loop_test(tc, test_sizes, 0, sizeof(sizes) / sizeof(sizes[0]));
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_bot_equal);
    tcase_add_test(tc, test_worker_argv);
    tcase_add_test(tc, test_work_keys);
    tcase_add_test(tc, test_env_file_equal);
    tcase_add_test(tc, test_lifecycle_keys);
    tcase_add_test(tc, test_depends_on);
    tcase_add_test(tc, test_bot_equal_live);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_every_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(roster_suite());
}
