/*
 * fuzz_roster: the hive.yaml parser (config/roster.c) on arbitrary bytes
 * through roster_load_string(). On success the roster is checked against
 * the promises of roster.h (vectors never NULL, ports in range and unique,
 * limits positive) and compared with itself; every error message must carry
 * the name it was given. Roster and errors are freed each time.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/roster.h"

#define FUZZ_NAME "fuzz.yaml"

/* A promise of roster.h broken: stop with the reason. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_roster: %s\n", what);
    abort();
}

/* Once per process: a token variable for rosters that name it. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* token_env may name this; a set value lets non-loopback rosters load. */
    setenv("HIVE_FUZZ_TOKEN", "fuzz-token", 1);
    return 0;
}

/* The invariants of one loaded bot. */
static void fuzz_check_bot(const struct roster *r, const struct roster_bot *b)
{
    if (!b->id || !b->mode || !b->bind || !b->adapter.type || !b->restart.policy)
        fuzz_fail("a bot lacks a string field");
    if (!b->adapter.command || !b->adapter.env || !b->adapter.env_remove || !b->allowed_origins)
        fuzz_fail("a bot has a NULL vector");
    if (b->port < 1 || b->port > 65535 || b->port == r->listen_port)
        fuzz_fail("a bot port out of range or equal to the listen port");
    if (!(b->timeout > 0) || !(b->start_timeout > 0) || !(b->restart.window > 0))
        fuzz_fail("a duration that must be positive is not");
    if (roster_find_bot(r, b->id) != b)
        fuzz_fail("roster_find_bot does not find a bot by its id");
    if (!roster_bot_equal(b, b))
        fuzz_fail("a bot differs from itself");
}

/* True when MSG reads "fuzz.yaml:LINE:COLUMN: text", both numbers 1-based. */
static bool fuzz_message_ok(const char *msg)
{
    size_t n = strlen(FUZZ_NAME);
    if (strncmp(msg, FUZZ_NAME ":", n + 1) != 0)
        return false;
    const char *p = msg + n + 1;
    for (int field = 0; field < 2; field++) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v == 0 || *end != ':')
            return false;
        p = end + 1;
    }
    return *p == ' ';
}

/* One input: load, check, free. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct roster *r = NULL;
    struct roster_errors errs = {0};

    int rc = roster_load_string((const char *)data, size, FUZZ_NAME, &r, &errs);
    if (rc == 0) {
        if (!r || !r->path || !r->name || !r->work_dir || r->work_dir[0] != '/' ||
            !r->listen_host || !r->allowed_origins)
            fuzz_fail("a loaded roster lacks a field");
        if (r->limits.max_header_bytes == 0 || r->limits.max_body == 0 ||
            r->limits.max_message == 0 || r->limits.max_connections <= 0 ||
            r->limits.header_timeout_ms <= 0 || r->limits.idle_timeout_ms <= 0)
            fuzz_fail("a limit is not positive");
        for (size_t i = 0; i < r->n_bots; i++) {
            fuzz_check_bot(r, &r->bots[i]);
            for (size_t j = 0; j < i; j++)
                if (r->bots[i].port == r->bots[j].port || strcmp(r->bots[i].id, r->bots[j].id) == 0)
                    fuzz_fail("two bots share a port or an id");
        }
        if (!roster_shared_equal(r, r))
            fuzz_fail("a roster's shared settings differ from themselves");
    } else {
        if (r)
            fuzz_fail("a failed load returned a roster");
        if (errs.n == 0)
            fuzz_fail("a failed load gave no message");
    }
    for (size_t i = 0; i < errs.n; i++)
        if (!fuzz_message_ok(errs.items[i]))
            fuzz_fail("an error message is not \"file:line:column: message\"");
    roster_free(r);
    roster_errors_free(&errs);
    return 0;
}
