/*
 * fuzz_stores: the readers of the small state files a worker finds on disk
 * at start (worker/budget.c's .deia/hive/budget/<BOT>.json, worker/agent.c's
 * .deia/hive/sessions/<BOT>.json), on arbitrary bytes: torn, foreign,
 * hand-edited. The input is written as both files, then read the way the
 * worker reads them. Checked for every input: the budget opens, stands OK
 * or OVER, says "budget: ..." within its buffer and ends its day after now;
 * a session id read back is a non-empty string of fewer than 512 bytes
 * (the one `--resume` would be given) or none at all.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker/agent.h"
#include "worker/budget.h"

#define FUZZ_STORES_BOT "BOT-FUZZ"

static char fuzz_stores_dir[512];

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_stores_fail(const char *msg)
{
    fprintf(stderr, "fuzz_stores: %s\n", msg);
    abort();
}

/* Once: a work dir with the two folders. */
static void fuzz_stores_init(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_stores_dir, sizeof fuzz_stores_dir, "%s/fuzz-stores-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_stores_dir))
        fuzz_stores_fail("no temporary folder");
    char path[600];
    const char *parts[] = {"/.deia", "/.deia/hive", "/.deia/hive/budget", "/.deia/hive/sessions"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(path, sizeof path, "%s%s", fuzz_stores_dir, parts[i]);
        mkdir(path, 0700);
    }
    setenv("TZ", "UTC", 1);
}

/* Write DATA as the file SUB/<BOT>.json of the work dir. */
static void fuzz_stores_write(const char *sub, const uint8_t *data, size_t size)
{
    char path[600];
    snprintf(path, sizeof path, "%s/.deia/hive/%s/" FUZZ_STORES_BOT ".json", fuzz_stores_dir, sub);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fuzz_stores_fail("cannot write the state file");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t now = 1796000000;
    if (!fuzz_stores_dir[0])
        fuzz_stores_init();
    fuzz_stores_write("budget", data, size);
    fuzz_stores_write("sessions", data, size);
    struct budget_config cfg = {.usd_per_day = 1.0, .tokens_per_day = 1000, .reset_min = 90};
    struct budget *b = budget_open(NULL, fuzz_stores_dir, FUZZ_STORES_BOT, &cfg);
    if (!b)
        fuzz_stores_fail("a budget with limits did not open");
    enum budget_level level = budget_level(b, now);
    if (level != BUDGET_OK && level != BUDGET_OVER)
        fuzz_stores_fail("a budget read from disk stands neither OK nor OVER");
    char why[200];
    memset(why, 'x', sizeof why);
    budget_describe(b, why, sizeof why);
    if (!memchr(why, '\0', sizeof why) || strncmp(why, "budget: ", 8) != 0)
        fuzz_stores_fail("the budget's description is not one");
    if (budget_day_end(b, now) <= now)
        fuzz_stores_fail("the budget's day ends before now");
    budget_free(b);
    char *session = agent_session_load(fuzz_stores_dir, FUZZ_STORES_BOT);
    if (session && (session[0] == '\0' || strlen(session) >= 512))
        fuzz_stores_fail("a stored session id is empty or too long");
    free(session);
    return 0;
}
