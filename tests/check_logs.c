/*
 * check_logs: the pure parts of `hive logs` (cli/logs.c): the time stamped
 * at the start of a captured line, and the --since forms (durations, dates,
 * times with and without a zone, Unix times), fed as strings.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/logs.h"

#include "tests/check_support.h"

/* The stamp of the worker's logger, with and without milliseconds. */
START_TEST(test_line_time)
{
    const char *line = "2026-12-03T22:01:13.123Z INFO [BOT-001] listening";
    ck_assert_double_eq_tol(logs_line_time(line, strlen(line)), 1796335273.123, 1e-6);
    const char *plain = "2026-12-03T22:01:13Z x";
    ck_assert_double_eq_tol(logs_line_time(plain, strlen(plain)), 1796335273.0, 1e-6);
    const char *offset = "2026-12-03T23:01:13+01:00 x";
    ck_assert_double_eq_tol(logs_line_time(offset, strlen(offset)), 1796335273.0, 1e-6);
}
END_TEST

/* Lines that do not start with a full date and time have none. */
START_TEST(test_line_time_none)
{
    const char *cases[] = {"",
                           "hello",
                           "2026-12-03 is a date in text",
                           "2026-12-03T2",
                           "2026-13-03T22:01:13Z month 13",
                           "  2026-12-03T22:01:13Z indented"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(isnan(logs_line_time(cases[i], strlen(cases[i]))), "%s", cases[i]);
    /* only LEN bytes are read */
    ck_assert(isnan(logs_line_time("2026-12-03T22:01:13Z", 12)));
}
END_TEST

/* Durations count back from NOW. */
START_TEST(test_since_duration)
{
    double t;
    ck_assert_int_eq(logs_parse_since("90s", 1000.0, &t), 0);
    ck_assert_double_eq(t, 910.0);
    ck_assert_int_eq(logs_parse_since("10m", 1000.0, &t), 0);
    ck_assert_double_eq(t, 400.0);
    ck_assert_int_eq(logs_parse_since("1h30m", 10000.0, &t), 0);
    ck_assert_double_eq(t, 4600.0);
    ck_assert_int_eq(logs_parse_since("2d", 200000.0, &t), 0);
    ck_assert_double_eq(t, 27200.0);
    ck_assert_int_eq(logs_parse_since("0.5s", 1.0, &t), 0);
    ck_assert_double_eq(t, 0.5);
}
END_TEST

/* Absolute times: Unix, ISO with a zone, and local ones (TZ=UTC here). */
START_TEST(test_since_absolute)
{
    double t;
    ck_assert_int_eq(logs_parse_since("1796335273", 0, &t), 0);
    ck_assert_double_eq(t, 1796335273.0);
    ck_assert_int_eq(logs_parse_since("2026-12-03T22:01:13Z", 0, &t), 0);
    ck_assert_double_eq(t, 1796335273.0);
    ck_assert_int_eq(logs_parse_since("2026-12-03T23:01:13+01:00", 0, &t), 0);
    ck_assert_double_eq(t, 1796335273.0);
    ck_assert_int_eq(logs_parse_since("2026-12-03 22:01:13", 0, &t), 0);
    ck_assert_double_eq(t, 1796335273.0);
    ck_assert_int_eq(logs_parse_since("2026-12-03T22:01", 0, &t), 0);
    ck_assert_double_eq(t, 1796335260.0);
    ck_assert_int_eq(logs_parse_since("2026-12-03", 0, &t), 0);
    ck_assert_double_eq(t, 1796256000.0);
}
END_TEST

/* Anything else is refused. */
START_TEST(test_since_bad)
{
    const char *cases[] = {"",        "yesterday", "10x", "-5m", "m", "2026-12-03T22:01:13Zjunk",
                           "2026-12", "1h 30m"};
    double t;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(logs_parse_since(cases[i], 1000.0, &t) < 0, "%s", cases[i]);
}
END_TEST

/* All logs tests in one suite. */
static Suite *check_logs_suite(void)
{
    Suite *s = suite_create("logs");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_line_time);
    tcase_add_test(tc, test_line_time_none);
    tcase_add_test(tc, test_since_duration);
    tcase_add_test(tc, test_since_absolute);
    tcase_add_test(tc, test_since_bad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    return check_run(check_logs_suite());
}
