/*
 * fuzz_since: the time parsers of `hive logs` (cli/logs.c) on arbitrary
 * bytes: the --since TIME argument (durations, Unix times, ISO-8601 dates
 * and times) and the time stamp at the start of each captured log line.
 * The line is handed over in a buffer of exactly its length (no NUL after
 * it), so that a read past its end shows. Checked for every input: --since
 * answers 0 or -1 and a taken time is a number (not NaN); a plain "<N>s"
 * is N seconds before now; a line's stamp is NaN or a number, and the same
 * when the line goes on after it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/logs.h"

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_since_fail(const char *msg)
{
    fprintf(stderr, "fuzz_since: %s\n", msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const double now = 1796000000.0;
    if (!getenv("TZ"))
        setenv("TZ", "UTC", 1);
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    double out = -12345;
    int rc = logs_parse_since(text, now, &out);
    if (rc != 0 && rc != -1)
        fuzz_since_fail("--since answered neither 0 nor -1");
    if (rc == 0 && isnan(out))
        fuzz_since_fail("--since took a time that is not a number");
    size_t digits = strspn(text, "0123456789");
    if (digits > 0 && digits < 9 && text[digits] == 's' && text[digits + 1] == '\0' &&
        (rc != 0 || out != now - strtod(text, NULL)))
        fuzz_since_fail("N seconds is not N seconds before now");
    free(text);
    char *line = malloc(size ? size : 1);
    memcpy(line, data, size);
    double t = logs_line_time(line, size);
    free(line);
    if (size < 64 && !isnan(t)) {
        char longer[80];
        memcpy(longer, data, size);
        memcpy(longer + size, " and more", 9);
        double t2 = logs_line_time(longer, size + 9);
        if (t2 != t)
            fuzz_since_fail("text after a stamp changed its time");
    }
    return 0;
}
