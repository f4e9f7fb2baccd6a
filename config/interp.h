/*
 * interp: `${VAR}` interpolation of roster values from the environment, as
 * docker compose does it: `${VAR}`, `${VAR:-default}` (unset or empty),
 * `${VAR-default}` (unset only), and `$$` for a literal `$`. A `$` followed
 * by anything else is kept as it is. Pure: no logging, errors come back with
 * the byte offset of the problem.
 */
#ifndef HIVE_INTERP_H
#define HIVE_INTERP_H

#include <stddef.h>

/* Expand LEN bytes of TEXT. 1 with *OUT (caller frees) when something was
 * expanded, 0 when TEXT holds no `$` (*OUT untouched), -1 with *AT the byte
 * offset of the problem and a message in ERR. */
int interp_expand(const char *text, size_t len, char **out, size_t *at, char *err, size_t errlen);

#endif
