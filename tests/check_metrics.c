/*
 * check_metrics: the Prometheus text renderer (common/metrics.c): HELP and
 * TYPE lines, label values escaped, integer and fractional values, NaN and
 * infinities, cumulative histogram buckets with their sum and count, and
 * the process_* families read from /proc/self.
 */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/metrics.h"

#include "tests/check_support.h"

START_TEST(test_family_and_samples)
{
    struct util_buf b = {0};
    metrics_family(&b, "hive_x_total", "counter", "Things\\done\nhere.");
    struct metrics_label l[] = {{"bot", "BOT-1"}, {"source", "http"}};
    metrics_sample(&b, "hive_x_total", l, 2, 3);
    metrics_sample(&b, "hive_x_total", NULL, 0, 0.25);
    ck_assert_str_eq(b.data, "# HELP hive_x_total Things\\\\done\\nhere.\n"
                             "# TYPE hive_x_total counter\n"
                             "hive_x_total{bot=\"BOT-1\",source=\"http\"} 3\n"
                             "hive_x_total 0.25\n");
    free(b.data);
}
END_TEST

START_TEST(test_label_escaping)
{
    struct util_buf b = {0};
    struct metrics_label l[] = {{"bot", "a\"b\\c\nd"}};
    metrics_sample(&b, "m", l, 1, 1);
    ck_assert_str_eq(b.data, "m{bot=\"a\\\"b\\\\c\\nd\"} 1\n");
    free(b.data);
}
END_TEST

START_TEST(test_special_values)
{
    struct util_buf b = {0};
    metrics_sample(&b, "a", NULL, 0, NAN);
    metrics_sample(&b, "b", NULL, 0, INFINITY);
    metrics_sample(&b, "c", NULL, 0, -INFINITY);
    metrics_sample(&b, "d", NULL, 0, 1234567890123.0);
    metrics_sample(&b, "e", NULL, 0, -2);
    ck_assert_str_eq(b.data, "a NaN\nb +Inf\nc -Inf\nd 1234567890123\ne -2\n");
    free(b.data);
}
END_TEST

START_TEST(test_histogram)
{
    struct metrics_histogram h = {0}, sum = {0};
    metrics_histogram_observe(&h, 0.001);  /* first bucket */
    metrics_histogram_observe(&h, 0.005);  /* on a bound: that bucket (le) */
    metrics_histogram_observe(&h, 2);      /* le 2.5 */
    metrics_histogram_observe(&h, 1000.5); /* +Inf only */
    metrics_histogram_add(&sum, &h);
    metrics_histogram_add(&sum, &h);
    ck_assert_uint_eq(sum.count, 8);
    ck_assert(fabs(sum.sum - 2 * 1002.506) < 1e-9);
    struct util_buf b = {0};
    struct metrics_label l[] = {{"bot", "B"}};
    metrics_histogram_render(&b, "d_seconds", l, 1, &h);
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{bot=\"B\",le=\"0.005\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{bot=\"B\",le=\"1\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{bot=\"B\",le=\"2.5\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{bot=\"B\",le=\"300\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{bot=\"B\",le=\"+Inf\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_sum{bot=\"B\"} 1002.506\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_count{bot=\"B\"} 4\n"));
    /* Buckets never decrease, and there is one per bound plus +Inf. */
    size_t lines = 0;
    for (const char *p = b.data; (p = strstr(p, "_bucket{")); p++)
        lines++;
    ck_assert_uint_eq(lines, METRICS_BUCKETS + 1);
    /* No labels: le alone in the braces, none on the sum and count; two,
     * escaped, on every line alike. */
    b.len = 0;
    metrics_histogram_render(&b, "d_seconds", NULL, 0, &h);
    ck_assert_ptr_nonnull(strstr(b.data, "d_seconds_bucket{le=\"0.005\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "\nd_seconds_sum 1002.506\nd_seconds_count 4\n"));
    b.len = 0;
    struct metrics_label l2[] = {{"bot", "a\"b\\c\nd"}, {"source", "http"}};
    metrics_histogram_render(&b, "d_seconds", l2, 2, &h);
    ck_assert_ptr_nonnull(strstr(
        b.data, "d_seconds_bucket{bot=\"a\\\"b\\\\c\\nd\",source=\"http\",le=\"+Inf\"} 4\n"));
    ck_assert_ptr_nonnull(
        strstr(b.data, "d_seconds_count{bot=\"a\\\"b\\\\c\\nd\",source=\"http\"} 4\n"));
    free(b.data);
}
END_TEST

START_TEST(test_process)
{
    struct util_buf b = {0};
    metrics_process(&b);
    ck_assert_ptr_nonnull(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "# TYPE process_resident_memory_bytes gauge\n"));
    ck_assert_ptr_nonnull(strstr(b.data, "# TYPE process_open_fds gauge\n"));
    const char *start = strstr(b.data, "\nprocess_start_time_seconds ");
    ck_assert_ptr_nonnull(start);
    double t = atof(start + strlen("\nprocess_start_time_seconds "));
    double now = (double)time(NULL);
    ck_assert(t > now - 3600 && t <= now + 1);
    const char *rss = strstr(b.data, "\nprocess_resident_memory_bytes ");
    ck_assert_ptr_nonnull(rss);
    ck_assert(atof(rss + strlen("\nprocess_resident_memory_bytes ")) > 100000);
    free(b.data);
}
END_TEST

/* process_open_fds of a fresh rendering. */
static double open_fds_now(void)
{
    struct util_buf b = {0};
    metrics_process(&b);
    const char *p = strstr(b.data, "\nprocess_open_fds ");
    ck_assert_ptr_nonnull(p);
    double n = atof(p + strlen("\nprocess_open_fds "));
    free(b.data);
    return n;
}

/* The count is exact: 40 more descriptors, 40 more counted, and back. */
START_TEST(test_open_fds_exact)
{
    double before = open_fds_now();
    ck_assert(before >= 3);
    int fds[40];
    for (int i = 0; i < 40; i++) {
        fds[i] = open("/dev/null", O_RDONLY);
        ck_assert_int_ge(fds[i], 0);
    }
    ck_assert(open_fds_now() == before + 40);
    for (int i = 0; i < 40; i++)
        close(fds[i]);
    ck_assert(open_fds_now() == before);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_family_and_samples);
    tcase_add_test(tc, test_label_escaping);
    tcase_add_test(tc, test_special_values);
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_process);
    tcase_add_test(tc, test_open_fds_exact);
    suite_add_tcase(s, tc);
    return check_run(s);
}
