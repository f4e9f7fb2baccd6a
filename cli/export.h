/*
 * export: `hive export systemd` (SPEC §11) — the same roster as systemd
 * units, so systemd can be the engine on a host: per bot a .socket unit and a
 * Type=notify .service unit, one service for the front door (`hive up` on a
 * generated roster whose bots are remote bots on loopback), and a target
 * grouping them. Rendering is pure (a roster in, named texts out); writing
 * refuses to overwrite unless told.
 */
#ifndef HIVE_EXPORT_H
#define HIVE_EXPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "config/roster.h"

/* How to export. */
struct export_opts {
    const char *dir;         /* absolute output folder (named in the front unit) */
    const char *worker_path; /* absolute hive-worker */
    const char *hive_path;   /* absolute hive */
    bool user;               /* user units: WantedBy=default.target, no User= */
};

/* One generated file: its name in the output folder and its text. */
struct export_file {
    char *name;
    char *text;
};

/* Every file of an export, in the order written (sorted by name). */
struct export_set {
    struct export_file *files;
    size_t n;
    char **warnings; /* what systemd cannot do as hive does; NULL-terminated */
    size_t n_warnings;
};

/* Render the units of R. 0, or -1 with the reason in ERR (a bot whose bind
 * address systemd's ListenStream= cannot take). Free OUT with
 * export_set_free either way. */
int export_systemd_render(const struct roster *r, const struct export_opts *o,
                          struct export_set *out, char *err, size_t errlen);
void export_set_free(struct export_set *s);
/* NAME escaped as systemd-escape does for a unit name part ("BOT-001" ->
 * "BOT\x2d001"). */
char *export_unit_escape(const char *name);
/* The file name of the units of R's bot ID ("hive-NAME-ID.service" with
 * SUFFIX ".service" or ".socket"). */
char *export_bot_unit(const struct roster *r, const char *id, const char *suffix);

/* `hive export systemd [--user] [-o DIR] [--force]` for the roster R: render,
 * refuse to overwrite existing files without FORCE (listing them), write.
 * Returns an exit code (0, 1 runtime, 78 configuration). */
int export_systemd_main(const struct roster *r, const char *dir, bool user, bool force);

#endif
