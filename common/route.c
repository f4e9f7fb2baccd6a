/*
 * route: the route table of every hive HTTP server (see route.h). It owns
 * the door's answers that do not depend on the server: which method a path
 * takes, the token, the JSON content type.
 */
#include "common/route.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The enum route_method bit of METHOD, or 0. */
unsigned route_method_bit(const char *method)
{
    if (strcmp(method, "GET") == 0)
        return ROUTE_GET;
    if (strcmp(method, "HEAD") == 0)
        return ROUTE_HEAD;
    if (strcmp(method, "POST") == 0)
        return ROUTE_POST;
    return 0;
}

/* Match PATH against PATTERN segment by segment. */
bool route_match(const char *pattern, const char *path, struct route_params *params)
{
    struct route_params local;
    struct route_params *pp = params ? params : &local;
    const char *p = pattern, *s = path;
    pp->n = 0;
    while (*p && *s) {
        if (p[0] == '*' && (p == pattern || p[-1] == '/') && (p[1] == '/' || p[1] == '\0')) {
            size_t n = strcspn(s, "/");
            if (n == 0 || pp->n == ROUTE_PARAMS_MAX)
                return false;
            pp->s[pp->n] = s;
            pp->len[pp->n++] = n;
            s += n;
            p++;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

/* Copy parameter I into OUT. */
bool route_param(const struct route_params *params, size_t i, char *out, size_t cap)
{
    if (i >= params->n || params->len[i] >= cap) {
        if (cap)
            out[0] = '\0';
        return false;
    }
    memcpy(out, params->s[i], params->len[i]);
    out[params->len[i]] = '\0';
    return true;
}

/* 401 for a missing or wrong token. */
void route_unauthorized(struct http_conn *conn)
{
    http_respond_error(conn, 401, "unauthorized", "WWW-Authenticate: Bearer\r\n");
}

/* 405 with Allow: the methods of METHODS, in a fixed order. */
void route_method_not_allowed(struct http_conn *conn, unsigned methods)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{ROUTE_GET, "GET"}, {ROUTE_HEAD, "HEAD"}, {ROUTE_POST, "POST"}};
    char hdr[64] = "Allow: ";
    size_t len = strlen(hdr);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!(methods & names[i].bit))
            continue;
        len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%s",
                                len > strlen("Allow: ") ? ", " : "", names[i].name);
    }
    snprintf(hdr + len, sizeof hdr - len, "\r\n");
    http_respond_error(conn, 405, "Method Not Allowed", hdr);
}

/* True when the request declares a JSON body. */
bool route_is_json(const struct http_request *req)
{
    const char *ct = http_request_header(req, "Content-Type");
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

/* Answer REQ from TABLE (see route.h). */
bool route_dispatch(const struct route *table, size_t n, struct http_conn *conn,
                    struct http_request *req, const char *token, void *arg)
{
    unsigned bit = route_method_bit(req->method), allowed = 0;
    bool matched = false, needs_token = false;
    const struct route *hit = NULL;
    struct route_params params = {0}, row_params;
    for (size_t i = 0; i < n; i++) {
        if (!route_match(table[i].pattern, req->path, &row_params))
            continue;
        matched = true;
        allowed |= table[i].methods;
        needs_token |= !(table[i].flags & ROUTE_PUBLIC);
        if (!hit && (table[i].methods & bit)) {
            hit = &table[i];
            params = row_params;
        }
    }
    if (!matched)
        return false;
    bool token_ok = http_request_token_ok(req, token);
    if (hit ? !(hit->flags & ROUTE_PUBLIC) && !token_ok : needs_token && !token_ok)
        route_unauthorized(conn);
    else if (!hit)
        route_method_not_allowed(conn, allowed);
    else if ((hit->flags & ROUTE_JSON) && !route_is_json(req))
        http_respond_error(conn, 415, "Content-Type must be application/json", NULL);
    else
        hit->fn(conn, req, &params, arg);
    return true;
}
