/*
 * metrics: rendering of the Prometheus text format 0.0.4 (see metrics.h).
 * Pure but for metrics_process(), which reads /proc/self.
 */
#include "common/metrics.h"

#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Where d_reclen and d_name are in a struct linux_dirent64 (d_ino 8 bytes,
 * d_off 8, d_reclen 2, d_type 1, then the name). */
#define METRICS_DIRENT_RECLEN 16
#define METRICS_DIRENT_NAME 19

/* From a mock task's milliseconds to a CLI agent's minutes. */
const double metrics_bucket_bounds[METRICS_BUCKETS] = {0.005, 0.01, 0.05, 0.1, 0.5, 1,
                                                       2.5,   5,    10,   30,  60,  300};

/* Append a C string. */
static void metrics_add(struct util_buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

/* A HELP text: backslash and newline escaped. */
static void metrics_add_help(struct util_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            metrics_add(b, "\\\\");
        else if (*s == '\n')
            metrics_add(b, "\\n");
        else
            util_buf_add(b, s, 1);
    }
}

/* A label value: backslash, double quote and newline escaped (runs of
 * plain characters copied whole: a scrape of a big hive is mostly this). */
static void metrics_add_label_value(struct util_buf *b, const char *s)
{
    for (;;) {
        size_t n = 0;
        while (s[n] && s[n] != '\\' && s[n] != '"' && s[n] != '\n')
            n++;
        util_buf_add(b, s, n);
        s += n;
        if (!*s)
            return;
        metrics_add(b, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n");
        s++;
    }
}

/* V >= 0 in decimal. */
static void metrics_add_uint(struct util_buf *b, uint64_t v)
{
    char digits[24];
    size_t i = sizeof digits;
    do
        digits[--i] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    util_buf_add(b, digits + i, sizeof digits - i);
}

/* A sample value: integers exactly, NaN and infinities by their names. */
static void metrics_add_value(struct util_buf *b, double v)
{
    char num[40];
    if (isnan(v))
        snprintf(num, sizeof num, "NaN");
    else if (isinf(v))
        snprintf(num, sizeof num, v > 0 ? "+Inf" : "-Inf");
    else if (v >= 0 && v < 9e15 && v == (double)(uint64_t)v)
        return metrics_add_uint(b, (uint64_t)v);
    else if (v == (double)(int64_t)v && fabs(v) < 9e15)
        snprintf(num, sizeof num, "%lld", (long long)v);
    else
        snprintf(num, sizeof num, "%.17g", v);
    metrics_add(b, num);
}

void metrics_family(struct util_buf *b, const char *name, const char *type, const char *help)
{
    metrics_add(b, "# HELP ");
    metrics_add(b, name);
    metrics_add(b, " ");
    metrics_add_help(b, help);
    metrics_add(b, "\n# TYPE ");
    metrics_add(b, name);
    metrics_add(b, " ");
    metrics_add(b, type);
    metrics_add(b, "\n");
}

/* The bucket bounds as "le" values, formatted once. */
static const char *metrics_le(size_t i)
{
    static char text[METRICS_BUCKETS][24];
    if (i >= METRICS_BUCKETS)
        return "+Inf";
    if (!text[i][0])
        snprintf(text[i], sizeof text[i], "%g", metrics_bucket_bounds[i]);
    return text[i];
}

/* NAME="VALUE" pairs, comma-separated, values escaped. */
static void metrics_add_labels(struct util_buf *b, const struct metrics_label *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            metrics_add(b, ",");
        metrics_add(b, labels[i].name);
        metrics_add(b, "=\"");
        metrics_add_label_value(b, labels[i].value ? labels[i].value : "");
        metrics_add(b, "\"");
    }
}

/* NAME{LABELS[,EXTRA="EXTRA_VALUE"]} VALUE. */
static void metrics_line(struct util_buf *b, const char *name, const struct metrics_label *labels,
                         size_t n, const char *extra, const char *extra_value, double value)
{
    metrics_add(b, name);
    if (n || extra) {
        metrics_add(b, "{");
        metrics_add_labels(b, labels, n);
        if (extra) {
            metrics_add(b, n ? "," : "");
            metrics_add(b, extra);
            metrics_add(b, "=\"");
            metrics_add(b, extra_value);
            metrics_add(b, "\"");
        }
        metrics_add(b, "}");
    }
    metrics_add(b, " ");
    metrics_add_value(b, value);
    metrics_add(b, "\n");
}

void metrics_sample(struct util_buf *b, const char *name, const struct metrics_label *labels,
                    size_t n, double value)
{
    metrics_line(b, name, labels, n, NULL, NULL, value);
}

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    size_t i = 0;
    while (i < METRICS_BUCKETS && v > metrics_bucket_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void metrics_histogram_add(struct metrics_histogram *into, const struct metrics_histogram *from)
{
    for (size_t i = 0; i <= METRICS_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
}

/* NAME SUFFIX{LABELS} VALUE, the labels already rendered (LAB). */
static void metrics_line_rendered(struct util_buf *b, const char *name, const char *suffix,
                                  const struct util_buf *lab, double value)
{
    metrics_add(b, name);
    metrics_add(b, suffix);
    if (lab->len) {
        metrics_add(b, "{");
        util_buf_add(b, lab->data, lab->len);
        metrics_add(b, "}");
    }
    metrics_add(b, " ");
    metrics_add_value(b, value);
    metrics_add(b, "\n");
}

void metrics_histogram_render(struct util_buf *b, const char *name,
                              const struct metrics_label *labels, size_t n,
                              const struct metrics_histogram *h)
{
    /* The labels are the same on every line of the series: rendered once,
     * not once per bucket (a big hive's scrape is mostly these lines). */
    struct util_buf lab = {0};
    metrics_add_labels(&lab, labels, n);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= METRICS_BUCKETS; i++) {
        cumulative += h->buckets[i];
        metrics_add(b, name);
        metrics_add(b, "_bucket{");
        if (lab.len)
            util_buf_add(b, lab.data, lab.len);
        metrics_add(b, lab.len ? ",le=\"" : "le=\"");
        metrics_add(b, metrics_le(i));
        metrics_add(b, "\"} ");
        metrics_add_value(b, (double)cumulative);
        metrics_add(b, "\n");
    }
    metrics_line_rendered(b, name, "_sum", &lab, h->sum);
    metrics_line_rendered(b, name, "_count", &lab, (double)h->count);
    free(lab.data);
}

/* Fields 14, 15 (utime, stime in ticks) and 22 (start time in ticks after
 * boot) of /proc/self/stat. 0, or -1. */
static int metrics_proc_stat(double *cpu_s, double *start_after_boot_s)
{
    unsigned long long cpu, start;
    if (util_proc_stat(0, &cpu, &start) < 0)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *cpu_s = (double)cpu / hz;
    *start_after_boot_s = (double)start / hz;
    return 0;
}

/* The boot time, seconds since the epoch (btime of /proc/stat), or -1. */
static double metrics_boot_time(void)
{
    char line[256];
    double t = -1;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            t = atof(line + 6);
            break;
        }
    fclose(f);
    return t;
}

/* Resident set size in bytes (VmRSS of /proc/self/status), or -1. */
static double metrics_rss(void)
{
    char line[256];
    double kb = -1;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = atof(line + 6);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Open descriptors, counted from the raw entries of /proc/self/fd read with
 * getdents64 into a large buffer (no per-entry allocation or call), less the
 * one reading it. The older way of counting. */
static double metrics_open_fds_listed(void)
{
    int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[32 * 1024];
    double n = 0;
    long got;
    while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got;) {
            const char *name = buf + off + METRICS_DIRENT_NAME;
            unsigned short reclen;
            memcpy(&reclen, buf + off + METRICS_DIRENT_RECLEN, sizeof reclen);
            n += name[0] != '.';
            off += reclen;
        }
    }
    close(fd);
    return got < 0 ? -1 : n - 1;
}

/* Open descriptors. Linux 6.2 and later give their number as the size of
 * /proc/self/fd, one stat instead of a listing of 1,000 entries on a big
 * hive; older kernels say 0 there (a process always has some open), and
 * then they are listed. */
static double metrics_open_fds(void)
{
    struct stat st;
    if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
        return (double)st.st_size;
    return metrics_open_fds_listed();
}

void metrics_process(struct util_buf *b)
{
    double cpu, start, boot = metrics_boot_time(), rss = metrics_rss(), fds = metrics_open_fds();
    bool stat_ok = metrics_proc_stat(&cpu, &start) == 0;
    if (stat_ok) {
        metrics_family(b, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.");
        metrics_sample(b, "process_cpu_seconds_total", NULL, 0, cpu);
    }
    if (rss >= 0) {
        metrics_family(b, "process_resident_memory_bytes", "gauge",
                       "Resident memory size in bytes.");
        metrics_sample(b, "process_resident_memory_bytes", NULL, 0, rss);
    }
    if (fds >= 0) {
        metrics_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_sample(b, "process_open_fds", NULL, 0, fds);
    }
    if (stat_ok && boot >= 0) {
        metrics_family(b, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.");
        metrics_sample(b, "process_start_time_seconds", NULL, 0, boot + start);
    }
}
