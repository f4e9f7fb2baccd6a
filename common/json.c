/*
 * json: shared jansson helpers. Kept tiny on purpose; modules build their own
 * objects with jansson directly.
 */
#include "common/json.h"
#include "common/util.h"

#include <stdio.h>
#include <string.h>

char *json_dump_compact(const json_t *value, size_t *len_out)
{
    char *s = json_dumps(value, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY |
                                    JSON_REAL_PRECISION(12));
    if (!s)
        s = xstrdup("null");
    if (len_out)
        *len_out = strlen(s);
    return s;
}

const char *json_get_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

json_t *json_detail(const char *text)
{
    return json_pack("{s:s}", "detail", text);
}

json_t *json_parse_bytes(const char *data, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v =
        json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!v && err)
        snprintf(err, errlen, "%s", jerr.text);
    return v;
}
