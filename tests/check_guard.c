/*
 * check_guard: the Host/Origin rule of SPEC §7 (common/guard.c), fed as
 * strings: Host parsing, the names and addresses that count as this server,
 * DNS-rebinding names that do not, origins (own, listed, hostile), the
 * verdicts (refuse, preflight, pass with CORS) and the CORS header lines.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/guard.h"

#include "tests/check_support.h"

static const char *const names[] = {"hive.lan", "192.168.1.5", "[fe80::1]", "Trailing.Dot.", NULL};
static const char *const allowed[] = {"https://app.example.com", "http://localhost:3000", NULL};
static const struct guard_policy none = {NULL, NULL, NULL};
static const struct guard_policy listed = {names, allowed, "10.1.2.3"};

/* guard_host_ok() with the policy P and no connection address. */
static bool host_ok(const struct guard_policy *p, const char *host)
{
    return guard_host_ok(p, host, NULL);
}

/* guard_origin_ok() of ORIGIN under HOST; *LISTED as it says. */
static bool origin_ok(const struct guard_policy *p, const char *origin, const char *host,
                      bool *is_listed)
{
    bool dummy;
    return guard_origin_ok(p, origin, host, is_listed ? is_listed : &dummy);
}

START_TEST(test_host_split)
{
    char name[64];
    int port;

    ck_assert_int_eq(guard_host_split("127.0.0.1:8001", name, sizeof name, &port), 0);
    ck_assert_str_eq(name, "127.0.0.1");
    ck_assert_int_eq(port, 8001);
    ck_assert_int_eq(guard_host_split("[::1]:80", name, sizeof name, &port), 0);
    ck_assert_str_eq(name, "::1");
    ck_assert_int_eq(port, 80);
    ck_assert_int_eq(guard_host_split("[::1]", name, sizeof name, &port), 0);
    ck_assert_int_eq(port, -1);
    ck_assert_int_eq(guard_host_split("localhost", name, sizeof name, &port), 0);
    ck_assert_str_eq(name, "localhost");
    ck_assert_int_eq(port, -1);
    ck_assert_int_eq(guard_host_split("a.b:65535", name, sizeof name, &port), 0);
    /* Not host[:port]. */
    const char *bad[] = {"",     ":80",        "host:",  "host:65536", "host:80:81",
                         "::1",  "[::1",       "[::1]x", "[]:80",      "[::1]:",
                         "a b",  "a/b",        "a@b:80", "host:+80",   "host:123456",
                         "h\tx", "[::1%25lo]", "ho%st",  "[g::1]",     "\xc3\xa9.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(guard_host_split(bad[i], name, sizeof name, &port) < 0, "%s", bad[i]);
    ck_assert_int_eq(guard_host_split("abcdefgh", name, 4, &port), -1); /* too long */
    ck_assert_int_eq(guard_host_split(NULL, name, sizeof name, &port), -1);
}
END_TEST

START_TEST(test_host_loopback)
{
    const char *ok[] = {"127.0.0.1",
                        "127.0.0.1:8001",
                        "127.1.2.3:1",
                        "[::1]",
                        "[::1]:8001",
                        "[0:0:0:0:0:0:0:1]:9",
                        "[::ffff:127.0.0.1]:8001",
                        "localhost",
                        "LOCALHOST:8001",
                        "localhost.:8001",
                        "bot.localhost:8001",
                        "a.b.localhost",
                        NULL};
    for (size_t i = 0; ok[i]; i++)
        ck_assert_msg(host_ok(&none, ok[i]), "%s", ok[i]);
    ck_assert(host_ok(&none, NULL)); /* HTTP/1.0 without Host */
}
END_TEST

START_TEST(test_host_rebinding)
{
    /* A page's own name, pointed at 127.0.0.1 by its DNS, is never ours. */
    const char *bad[] = {"attacker.example",
                         "attacker.example:8001",
                         "127.0.0.1.attacker.example",
                         "localhost.attacker.example",
                         "localhostx",
                         "xlocalhost",
                         ".localhost",
                         "127.0.0.1.",
                         "127.1",
                         "2130706433",
                         "0x7f000001",
                         "0.0.0.0:8001",
                         "[::]:8001",
                         "[127.0.0.1]",
                         "10.0.0.1",
                         "192.168.1.6",
                         "",
                         "hive.lan",
                         NULL};
    for (size_t i = 0; bad[i]; i++)
        ck_assert_msg(!host_ok(&none, bad[i]), "%s", bad[i]);
}
END_TEST

START_TEST(test_host_listed_and_own)
{
    ck_assert(host_ok(&listed, "hive.lan"));
    ck_assert(host_ok(&listed, "HIVE.lan:8000"));
    ck_assert(host_ok(&listed, "hive.lan.:8000"));
    ck_assert(!host_ok(&listed, "hive.lan.attacker.example"));
    ck_assert(!host_ok(&listed, "x.hive.lan"));
    ck_assert(host_ok(&listed, "192.168.1.5:8001"));
    ck_assert(host_ok(&listed, "[fe80::1]:8001"));
    ck_assert(host_ok(&listed, "[FE80:0::1]"));
    ck_assert(host_ok(&listed, "trailing.dot:1"));
    ck_assert(!host_ok(&listed, "[fe80::2]"));
    ck_assert(host_ok(&listed, "10.1.2.3:8000")); /* the bound address */
    ck_assert(!host_ok(&listed, "10.1.2.4:8000"));
    /* The address the client connected to (a server bound to 0.0.0.0). */
    ck_assert(guard_host_ok(&none, "10.9.9.9:8001", "10.9.9.9"));
    ck_assert(guard_host_ok(&none, "[2001:db8::5]:8001", "2001:db8::5"));
    ck_assert(!guard_host_ok(&none, "10.9.9.8:8001", "10.9.9.9"));
    ck_assert(!guard_host_ok(&none, "attacker.example", "10.9.9.9"));
    ck_assert(!guard_host_ok(&none, "0.0.0.0", "0.0.0.0"));
    /* A wildcard bind is not a name a client may use. */
    const struct guard_policy wild = {NULL, NULL, "0.0.0.0"};
    ck_assert(!host_ok(&wild, "0.0.0.0:8001"));
    const struct guard_policy wild6 = {NULL, NULL, "::"};
    ck_assert(!host_ok(&wild6, "[::]:8001"));
    /* A bind name (the proxy sends the worker's address as Host). */
    const struct guard_policy named = {NULL, NULL, "bots.internal"};
    ck_assert(host_ok(&named, "bots.internal:8001"));
}
END_TEST

START_TEST(test_origin)
{
    bool is_listed;
    ck_assert(origin_ok(&none, "http://127.0.0.1:8001", "127.0.0.1:8001", &is_listed));
    ck_assert(!is_listed);
    ck_assert(origin_ok(&none, "https://127.0.0.1:8001", "127.0.0.1:8001", NULL));
    ck_assert(origin_ok(&none, "HTTP://LocalHost:8001", "localhost:8001", NULL));
    ck_assert(origin_ok(&none, "http://localhost", "localhost", NULL));
    ck_assert(origin_ok(&none, "http://[::1]:8001", "[::1]:8001", NULL));
    ck_assert(origin_ok(&listed, "http://hive.lan:8000", "hive.lan:8000", NULL));
    ck_assert(!origin_ok(&none, "http://localhost:8002", "localhost:8001", NULL));
    ck_assert(!origin_ok(&none, "http://localhost", "localhost:8001", NULL));
    ck_assert(!origin_ok(&none, "http://evil.example", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "http://127.0.0.1:8001/", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "http://127.0.0.1:8001.evil.example", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "ftp://127.0.0.1:8001", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "127.0.0.1:8001", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "null", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&none, "http://", "", NULL));
    ck_assert(!origin_ok(&none, "http://localhost", NULL, NULL)); /* no Host to be */
    ck_assert(origin_ok(&listed, "https://app.example.com", "127.0.0.1:8001", &is_listed));
    ck_assert(is_listed);
    ck_assert(origin_ok(&listed, "HTTPS://APP.example.com", "127.0.0.1:8001", NULL));
    ck_assert(origin_ok(&listed, "http://localhost:3000", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&listed, "https://app.example.com.evil", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&listed, "http://app.example.com", "127.0.0.1:8001", NULL));
    ck_assert(!origin_ok(&listed, "https://evil.example", "127.0.0.1:8001", NULL));
}
END_TEST

/* guard_check() of one request. */
static enum guard_verdict verdict(const struct guard_policy *p, const char *method,
                                  const char *host, const char *origin, bool preflight, bool *cors,
                                  const char **detail)
{
    struct guard_request r = {method, host, origin, NULL, preflight};
    return guard_check(p, &r, detail, cors);
}

START_TEST(test_check)
{
    bool cors;
    const char *detail;

    ck_assert_int_eq(verdict(&none, "GET", "127.0.0.1:8001", NULL, false, &cors, &detail),
                     GUARD_PASS);
    ck_assert(!cors);
    ck_assert_ptr_null(detail);
    /* DNS rebinding: the page's name in Host, with or without its Origin. */
    ck_assert_int_eq(verdict(&none, "POST", "attacker.example:8001", NULL, false, &cors, &detail),
                     GUARD_REFUSE);
    ck_assert_ptr_nonnull(strstr(detail, "host"));
    ck_assert_int_eq(verdict(&none, "GET", "attacker.example:8001", "http://attacker.example:8001",
                             false, &cors, &detail),
                     GUARD_REFUSE);
    /* A hostile page posting to 127.0.0.1 directly: Host is fine, Origin not. */
    ck_assert_int_eq(
        verdict(&none, "POST", "127.0.0.1:8001", "http://attacker.example", false, &cors, &detail),
        GUARD_REFUSE);
    ck_assert_ptr_nonnull(strstr(detail, "origin"));
    ck_assert_int_eq(verdict(&none, "OPTIONS", "127.0.0.1:8001", "http://attacker.example", true,
                             &cors, &detail),
                     GUARD_REFUSE);
    /* Same origin: passes, no CORS needed. */
    ck_assert_int_eq(
        verdict(&none, "POST", "localhost:8001", "http://localhost:8001", false, &cors, &detail),
        GUARD_PASS);
    ck_assert(!cors);
    /* A listed origin: CORS on answers, preflights answered by the guard. */
    ck_assert_int_eq(verdict(&listed, "POST", "127.0.0.1:8001", "https://app.example.com", false,
                             &cors, &detail),
                     GUARD_PASS);
    ck_assert(cors);
    ck_assert_int_eq(verdict(&listed, "OPTIONS", "127.0.0.1:8001", "https://app.example.com", true,
                             &cors, &detail),
                     GUARD_PREFLIGHT);
    ck_assert(cors);
    /* OPTIONS that is no preflight goes to routing. */
    ck_assert_int_eq(verdict(&listed, "OPTIONS", "127.0.0.1:8001", "https://app.example.com", false,
                             &cors, &detail),
                     GUARD_PASS);
    /* A listed origin does not excuse a foreign Host. */
    ck_assert_int_eq(verdict(&listed, "OPTIONS", "attacker.example", "https://app.example.com",
                             true, &cors, &detail),
                     GUARD_REFUSE);
}
END_TEST

START_TEST(test_cors_headers)
{
    char out[512];
    size_t n = guard_cors_headers(out, sizeof out, "https://app.example.com", false);
    ck_assert_uint_eq(n, strlen(out));
    ck_assert_ptr_nonnull(strstr(out, "Access-Control-Allow-Origin: https://app.example.com\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "Vary: Origin\r\n"));
    ck_assert_ptr_null(strstr(out, "Allow-Methods"));
    n = guard_cors_headers(out, sizeof out, "https://app.example.com", true);
    ck_assert_uint_eq(n, strlen(out));
    ck_assert_ptr_nonnull(
        strstr(out, "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "Access-Control-Max-Age: 600\r\n"));
    ck_assert_uint_eq(guard_cors_headers(out, 20, "https://app.example.com", true), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

static Suite *check_guard_suite(void)
{
    Suite *s = suite_create("guard");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_host_split);
    tcase_add_test(tc, test_host_loopback);
    tcase_add_test(tc, test_host_rebinding);
    tcase_add_test(tc, test_host_listed_and_own);
    tcase_add_test(tc, test_origin);
    tcase_add_test(tc, test_check);
    tcase_add_test(tc, test_cors_headers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_guard_suite());
}
