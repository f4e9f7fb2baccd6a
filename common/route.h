/*
 * route: one route table for every HTTP server of hive (the worker's API and
 * the supervisor's front door). A table is rows of methods, a path pattern,
 * flags and a handler; route_dispatch answers the door's common cases the
 * same way everywhere — 401 without the token, 405 with Allow, 415 for a
 * JSON POST sent as something else — and hands the rest to the handler with
 * the pattern's parameters.
 *
 * A pattern is literal segments and "*" segments: a "*" matches one
 * non-empty segment (no '/'), and becomes a parameter.
 */
#ifndef HIVE_ROUTE_H
#define HIVE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/http.h"

/* Methods a row takes (HEAD goes with GET wherever a row says so). */
enum route_method {
    ROUTE_GET = 1 << 0,
    ROUTE_HEAD = 1 << 1,
    ROUTE_POST = 1 << 2,
};
#define ROUTE_READ (ROUTE_GET | ROUTE_HEAD)

/* What the door checks before a row's handler runs. */
enum route_flag {
    ROUTE_PUBLIC = 1 << 0, /* no token needed (/health) */
    ROUTE_JSON = 1 << 1,   /* the body must be application/json (415) */
};

#define ROUTE_PARAMS_MAX 2

/* The "*" segments of the matched pattern, pointers into the path (not
 * NUL-terminated, except the one that ends the path). */
struct route_params {
    const char *s[ROUTE_PARAMS_MAX];
    size_t len[ROUTE_PARAMS_MAX];
    size_t n;
};

typedef void (*route_fn)(struct http_conn *conn, struct http_request *req,
                         const struct route_params *params, void *arg);

struct route {
    unsigned methods;    /* enum route_method */
    const char *pattern; /* "/api/task/STAR/cancel" with STAR as "*" */
    unsigned flags;      /* enum route_flag */
    route_fn fn;
};

/* Answer REQ from the N rows of TABLE when its path matches one of them:
 * 401 when a matching row needs TOKEN (NULL or "": none) and the request
 * lacks it, 405 with Allow when no matching row takes the method, 415 when
 * the row wants JSON and the body is declared otherwise, else the first
 * matching row's handler with ARG. False when no pattern matches the path
 * (nothing was answered). */
bool route_dispatch(const struct route *table, size_t n, struct http_conn *conn,
                    struct http_request *req, const char *token, void *arg);
/* True when PATH matches PATTERN; its parameters into PARAMS (may be NULL). */
bool route_match(const char *pattern, const char *path, struct route_params *params);
/* Copy parameter I of PARAMS into OUT (CAP bytes with the NUL); false when
 * it does not fit. */
bool route_param(const struct route_params *params, size_t i, char *out, size_t cap);
/* The enum route_method bit of METHOD, or 0 for any other method. */
unsigned route_method_bit(const char *method);
/* 401 for a missing or wrong token (with WWW-Authenticate: Bearer). */
void route_unauthorized(struct http_conn *conn);
/* 405 with an Allow header listing METHODS (enum route_method). */
void route_method_not_allowed(struct http_conn *conn, unsigned methods);
/* True when the request declares a JSON body (Content-Type application/json,
 * parameters allowed). */
bool route_is_json(const struct http_request *req);

#endif
