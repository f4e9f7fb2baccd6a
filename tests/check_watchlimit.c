/*
 * check_watchlimit: the inotify instance limit is left alone when it is
 * enough, raised when it may be (bots + 128 for the rest), and a limit that
 * cannot be raised is reported as short. Files stand in for the /proc knob.
 */
#include "supervisor/watchlimit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check_support.h"

static char path[64];

/* A temporary knob holding TEXT. */
static void knob(const char *text)
{
    strcpy(path, "/tmp/check-watchlimit-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* The knob's number now. */
static long knob_value(void)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &v), 1);
    fclose(f);
    return v;
}

START_TEST(test_enough_is_left_alone)
{
    knob("1000\n");
    ck_assert_int_eq(watchlimit_ensure(path, 10), 0);
    ck_assert_int_eq(watchlimit_ensure(path, 872), 0);
    ck_assert_int_eq(knob_value(), 1000);
    ck_assert_int_eq(watchlimit_ensure(path, 0), 0);
    unlink(path);
}
END_TEST

START_TEST(test_short_is_raised)
{
    knob("128\n");
    ck_assert_int_eq(watchlimit_ensure(path, 1000), 1);
    ck_assert_int_eq(knob_value(), 1128);
    ck_assert_int_eq(watchlimit_ensure(path, 1000), 0);
    unlink(path);
}
END_TEST

START_TEST(test_short_and_fixed_is_reported)
{
    /* A number that cannot be written, even by root. */
    long score;
    FILE *f = fopen("/proc/self/oom_score", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &score), 1);
    fclose(f);
    ck_assert_int_eq(watchlimit_ensure("/proc/self/oom_score", (size_t)score + 2000), -1);
    /* No knob at all (another kernel): nothing to say. */
    ck_assert_int_eq(watchlimit_ensure("/nonexistent/max_user_instances", 1000), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watchlimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_enough_is_left_alone);
    tcase_add_test(tc, test_short_is_raised);
    tcase_add_test(tc, test_short_and_fixed_is_reported);
    suite_add_tcase(s, tc);
    return check_run(s);
}
