/*
 * envfile: an env_file of the roster, as docker compose reads one: lines of
 * NAME=value, blank lines and `#` comments skipped, an optional `export `
 * before the name, a value in single or double quotes taken as it is
 * between them, an unquoted value trimmed and cut at ` #`. Pure: the caller
 * reads the file.
 */
#ifndef HIVE_ENVFILE_H
#define HIVE_ENVFILE_H

#include <stddef.h>

/* Parse LEN bytes of TEXT into a NULL-terminated vector of "NAME=value"
 * (caller frees each and the vector). NULL with *LINE (1-based) and a
 * message in ERR for a line that is none of the above. */
char **envfile_parse(const char *text, size_t len, size_t *line, char *err, size_t errlen);

#endif
