/*
 * guard: the rule that keeps web pages from driving local bots (SPEC §7).
 *
 * A browser lets any page send requests to 127.0.0.1, and DNS rebinding lets
 * it read the answers too: the page's own name is made to resolve to
 * 127.0.0.1, so for the browser the request is same-origin, but it still
 * carries the page's name in Host. So every request, on every port, is
 * judged before it is routed:
 *
 * - Host must name this server: a loopback address (127.0.0.0/8, ::1, in
 *   brackets), `localhost` or a `*.localhost` name (browsers resolve these
 *   to loopback themselves and never ask DNS, RFC 6761, so no page can own
 *   one), an address the client actually connected to or the one the server
 *   was told to bind, or a name in server_names. Any port; a trailing dot is
 *   ignored. A request without Host (HTTP/1.0) passes: browsers always send
 *   one.
 * - Origin, when present, must be the server's own (http(s)://HOST with the
 *   request's own Host) or one of allowed_origins (ignoring case). "null"
 *   and every other origin are refused.
 *
 * Listed origins get CORS answers: their preflights (OPTIONS with
 * Access-Control-Request-Method) are answered here, before routing and
 * before the token check, and their other answers carry
 * Access-Control-Allow-Origin. Pure: strings in, a verdict out; http.c
 * applies it to every request of a server that has a policy.
 */
#ifndef HIVE_GUARD_H
#define HIVE_GUARD_H

#include <stdbool.h>
#include <stddef.h>

/* What a server accepts besides loopback names and addresses. */
struct guard_policy {
    const char *const *server_names;    /* NULL-terminated, may be NULL */
    const char *const *allowed_origins; /* NULL-terminated, may be NULL */
    const char *own_host;               /* the address or name bound; NULL or wildcard: none */
};

/* The parts of a request the guard judges. */
struct guard_request {
    const char *method; /* "GET", "OPTIONS", ... */
    const char *host;   /* the Host header, or NULL */
    const char *origin; /* the Origin header, or NULL */
    const char *local;  /* the address the client connected to ("10.0.0.5"), or NULL */
    bool preflight;     /* an Access-Control-Request-Method header was sent */
};

enum guard_verdict {
    GUARD_PASS,      /* route it (with CORS headers when *cors was set) */
    GUARD_PREFLIGHT, /* a listed origin's preflight: answer 204 with guard_cors_headers() */
    GUARD_REFUSE,    /* answer 403 with *detail */
};

/* Judge REQ. On GUARD_REFUSE *DETAIL says why; *CORS tells whether the
 * answer must carry CORS headers for REQ->origin (a listed origin). */
enum guard_verdict guard_check(const struct guard_policy *policy, const struct guard_request *req,
                               const char **detail, bool *cors);

/* True when HOST (a Host header value) names this server (see above). */
bool guard_host_ok(const struct guard_policy *policy, const char *host, const char *local);

/* True when ORIGIN is HOST's own or listed in POLICY. *LISTED tells which. */
bool guard_origin_ok(const struct guard_policy *policy, const char *origin, const char *host,
                     bool *listed);

/* Split a Host value into its name (brackets of IPv6 removed, at most CAP-1
 * bytes) and *PORT (-1 when none). 0, or -1 when it is not host[:port]. */
int guard_host_split(const char *host, char *name, size_t cap, int *port);

/* The CORS header lines ("Name: value\r\n"...) for ORIGIN into OUT: those of
 * every answer, and with PREFLIGHT those of a preflight's 204 too. Returns
 * the length, or 0 when they do not fit. */
size_t guard_cors_headers(char *out, size_t cap, const char *origin, bool preflight);

#endif
