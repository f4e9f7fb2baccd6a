/*
 * metrics: the Prometheus text exposition format 0.0.4 (SPEC §9), written
 * into a buffer. It knows families (HELP and TYPE once each), samples with
 * escaped label values, histograms with hive's one set of buckets, and the
 * standard process_* families read from /proc/self. It keeps no registry:
 * each program renders its own families from its own state at scrape time.
 */
#ifndef HIVE_METRICS_H
#define HIVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* The Content-Type of an exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Upper bounds (seconds) of hive_task_duration_seconds' buckets; +Inf is
 * implied. */
#define METRICS_BUCKETS 12
extern const double metrics_bucket_bounds[METRICS_BUCKETS];

/* A histogram: counts per bucket (not cumulative), their sum and count. */
struct metrics_histogram {
    uint64_t buckets[METRICS_BUCKETS + 1]; /* the last one is +Inf */
    uint64_t count;
    double sum;
};

/* A label: NAME and VALUE (escaped when written). */
struct metrics_label {
    const char *name, *value;
};

/* The HELP and TYPE lines of family NAME (TYPE: counter, gauge, histogram). */
void metrics_family(struct util_buf *b, const char *name, const char *type, const char *help);
/* One sample NAME{LABELS} VALUE (N labels, 0 for none). */
void metrics_sample(struct util_buf *b, const char *name, const struct metrics_label *labels,
                    size_t n, double value);
/* Record one observation V. */
void metrics_histogram_observe(struct metrics_histogram *h, double v);
/* Add every observation of FROM into INTO. */
void metrics_histogram_add(struct metrics_histogram *into, const struct metrics_histogram *from);
/* NAME_bucket (cumulative, with le), NAME_sum and NAME_count of H. */
void metrics_histogram_render(struct util_buf *b, const char *name,
                              const struct metrics_label *labels, size_t n,
                              const struct metrics_histogram *h);
/* The process_* families of this process from /proc/self (a family whose
 * file cannot be read is left out). */
void metrics_process(struct util_buf *b);

#endif
