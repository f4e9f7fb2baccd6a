/*
 * reload: `hive reload` (SIGHUP, POST /api/reload). It re-reads the roster
 * file and, only when it validates, switches the table to it: added bots are
 * started (autostart ones), removed ones retired (stopped, freed once their
 * worker is gone), changed ones (roster_bot_equal, or the hive-level
 * settings every worker inherits) restarted when they are meant to run, and
 * the rest left untouched, taking the new definition as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "config/hostcheck.h"
#include "supervisor/hive_internal.h"
#include "supervisor/logcap.h"
#include "supervisor/registry.h"

enum reload_change { RELOAD_SAME, RELOAD_ADDED, RELOAD_CHANGED };

/* Build the new table for NEXT, noting what changed for each bot in HOW. */
static struct hive_bot **reload_table(struct hive *hive, const struct roster *next,
                                      enum reload_change *how)
{
    bool shared = roster_shared_equal(hive->roster, next);
    struct hive_bot **table = xcalloc(next->n_bots, sizeof *table);
    for (size_t j = 0; j < next->n_bots; j++) {
        const struct roster_bot *def = &next->bots[j];
        struct hive_bot *bot = hive_bot_named(hive, def->id);
        if (!bot) {
            bot = hive_bot_unretire(hive, def->id);
            if (bot)
                bot_redefine(bot, def);
            table[j] = bot ? bot : bot_new(hive, def);
            how[j] = RELOAD_ADDED;
            continue;
        }
        how[j] = shared && roster_bot_equal(bot->def, def) ? RELOAD_SAME : RELOAD_CHANGED;
        if (how[j] == RELOAD_SAME)
            bot->def = def;
        else
            bot_redefine(bot, def);
        table[j] = bot;
    }
    return table;
}

/* Start the added bots and restart the changed ones that are meant to run. */
static void reload_kick(struct hive *hive, const enum reload_change *how)
{
    for (size_t j = 0; j < hive->n_bots; j++) {
        struct hive_bot *bot = hive->bots[j];
        enum fsm_state s = bot->fsm.state;
        if (how[j] == RELOAD_ADDED && bot->def->autostart)
            hive_bot_want_start(bot);
        else if (how[j] == RELOAD_CHANGED && s != FSM_STATE_STOPPED &&
                 !(s == FSM_STATE_STOPPING && !bot->fsm.restart_pending))
            bot_feed(bot, FSM_EV_RESTART);
    }
}

/* Count the HOW entries equal to WHAT. */
static size_t reload_count(const enum reload_change *how, size_t n, enum reload_change what)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += how[i] == what;
    return c;
}

/* Point every bot's log at the (new) work dir. */
static void reload_paths(struct hive *hive)
{
    char err[300];
    if (hive_paths(hive, err, sizeof err) < 0)
        log_warn("reload: %s", err);
    for (size_t i = 0; i < hive->n_bots; i++) {
        char *path = xasprintf("%s/%s.log", hive->logs_dir, hive->bots[i]->id);
        logcap_set_path(hive->bots[i]->logcap, path);
        free(path);
    }
}

/* Switch to roster NEXT (taken over): retire, add, redefine, then act. */
static void reload_apply(struct hive *hive, struct roster *next)
{
    size_t removed = 0, n_old = hive->n_bots;
    struct hive_bot **old = hive->bots;
    enum reload_change *how = xcalloc(next->n_bots, sizeof *how);
    bool moved = strcmp(hive->roster->work_dir, next->work_dir) != 0;
    if (strcmp(hive->roster->listen_host, next->listen_host) ||
        hive->roster->listen_port != next->listen_port)
        log_warn("reload: a new listen address takes effect at the next `hive up`");
    hive->bots = reload_table(hive, next, how);
    hive->n_bots = next->n_bots;
    hive_index(hive);
    for (size_t i = 0; i < n_old; i++)
        if (!roster_find_bot(next, old[i]->id))
            old[i]->def = NULL; /* it points into the roster freed below */
    roster_free(hive->roster);
    hive->roster = next;
    hive->roster_gen++;
    registry_set_name(hive->registry, next->name);
    if (moved)
        reload_paths(hive);
    for (size_t i = 0; i < n_old; i++) {
        if (old[i]->def)
            continue;
        removed++;
        hive_bot_retire(hive, old[i]);
    }
    free(old);
    log_info("reload: %zu added, %zu removed, %zu changed, %zu unchanged",
             reload_count(how, hive->n_bots, RELOAD_ADDED), removed,
             reload_count(how, hive->n_bots, RELOAD_CHANGED),
             reload_count(how, hive->n_bots, RELOAD_SAME));
    hive_watch_room(hive);
    reload_kick(hive, how);
    hive_registry_changed(hive);
    free(how);
}

/* Join roster messages, one per line, into ERR. */
static void reload_join_errors(const struct roster_errors *errs, char *err, size_t errlen)
{
    size_t used = 0;
    err[0] = '\0';
    for (size_t i = 0; i < errs->n && used + 1 < errlen; i++) {
        int n = snprintf(err + used, errlen - used, "%s%s", i ? "\n" : "", errs->items[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* True (with the message in ERR) when a bot of NEXT would turn from local to
 * remote or back: one executor cannot become the other in place. */
static bool reload_kind_changed(struct hive *hive, const struct roster *next, char *err,
                                size_t errlen)
{
    for (size_t j = 0; j < next->n_bots; j++) {
        const struct hive_bot *bot = hive_bot_named(hive, next->bots[j].id);
        if (bot && (bot->remote != NULL) != (next->bots[j].remote.url != NULL)) {
            snprintf(err, errlen,
                     "bot %s cannot turn %s by a reload: remove it, reload, then add it back",
                     bot->id, bot->remote ? "local" : "remote");
            return true;
        }
    }
    return false;
}

/* Re-read the roster file and apply the difference, or change nothing. */
int reload_roster(struct hive *hive, char *err, size_t errlen)
{
    struct roster *next = NULL;
    struct roster_errors errs = {NULL, 0};
    if (hive->shutting_down) {
        snprintf(err, errlen, "the hive is shutting down");
        return -1;
    }
    if (roster_load(hive->roster->path, &next, &errs) < 0 || hostcheck_roster(next, &errs) > 0) {
        roster_free(next);
        reload_join_errors(&errs, err, errlen);
        roster_errors_free(&errs);
        return -1;
    }
    roster_errors_free(&errs);
    if (reload_kind_changed(hive, next, err, errlen)) {
        roster_free(next);
        return -1;
    }
    reload_apply(hive, next);
    return 0;
}
