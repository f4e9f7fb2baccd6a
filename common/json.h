/*
 * json: the few jansson conveniences every module wants (compact dumps,
 * typed field access, {"detail": ...} error bodies).
 */
#ifndef HIVE_JSON_H
#define HIVE_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Compact single-line dump; caller frees. Never NULL. */
char *json_dump_compact(const json_t *value, size_t *len_out);
/* The string at KEY of OBJ, or NULL when missing, not a string, or holding a
 * NUL character (json_parse_bytes accepts \u0000; C strings cannot). */
const char *json_get_str(const json_t *obj, const char *key);
/* {"detail": TEXT} with a new reference. */
json_t *json_detail(const char *text);
/* Parse LEN bytes as JSON with a nesting limit (jansson's own is 2048). NULL
 * on any error, with a short reason in ERR. */
json_t *json_parse_bytes(const char *data, size_t len, char *err, size_t errlen);

#endif
