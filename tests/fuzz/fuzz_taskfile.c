/*
 * fuzz_taskfile: the task-file parser (worker/taskfile.c) on arbitrary bytes,
 * both as a file body and, for the first line's worth, as a priority string.
 * The parser is pure, so each input is parsed and freed; on success the
 * fields it promises are checked (defaults filled, rank in range).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/taskfile.h"

/* A promise of taskfile.h broken: stop with the reason. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_taskfile: %s\n", what);
    abort();
}

/* One input: parse, check, free. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct taskfile tf;
    char err[256];

    int rc =
        taskfile_parse((const char *)data, size, "TASK-2026-fuzz", "BOT-001", &tf, err, sizeof err);
    if (rc == 0) {
        if (!tf.task_id || !tf.from || !tf.to || !tf.priority || !tf.content)
            fuzz_fail("a parsed task lacks a field that has a default");
        if (tf.priority_rank < 0 || tf.priority_rank > 10)
            fuzz_fail("priority rank out of range");
        if (tf.priority_rank != taskfile_priority_rank(tf.priority))
            fuzz_fail("priority rank disagrees with taskfile_priority_rank()");
    } else {
        if (tf.task_id || tf.from || tf.to || tf.priority || tf.content || tf.created_at)
            fuzz_fail("a failed parse left fields set");
        if (!err[0])
            fuzz_fail("a failed parse gave no reason");
    }
    taskfile_clear(&tf);

    /* The priority helper on the first line, NUL-terminated. */
    size_t n = 0;
    while (n < size && n < 64 && data[n] != '\n')
        n++;
    char prio[65];
    memcpy(prio, data, n);
    prio[n] = '\0';
    int rank = taskfile_priority_rank(prio);
    if (rank < 0 || rank > 10)
        fuzz_fail("taskfile_priority_rank out of range");
    return 0;
}
