/*
 * guard: the Host and Origin rule of SPEC §7 (see guard.h for the rule and
 * why). Everything here is a pure function of strings: the parsing of Host
 * values and addresses, the decision, and the CORS header lines; http.c
 * applies it before routing and answers what it decides.
 */
#include "common/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GUARD_NAME_MAX 256 /* longer Host names are refused (DNS allows 253) */

/* An IP address, IPv4-mapped IPv6 ones folded to IPv4. */
struct guard_addr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char bytes[16];
};

/* Parse S (no brackets) as an address; false when it is not one. */
static bool guard_addr_parse(const char *s, struct guard_addr *a)
{
    struct in6_addr a6;

    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, a->bytes) == 1) {
        a->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        a->family = AF_INET;
        memcpy(a->bytes, a6.s6_addr + 12, 4);
    } else {
        a->family = AF_INET6;
        memcpy(a->bytes, a6.s6_addr, 16);
    }
    return true;
}

/* True for 127.0.0.0/8 and ::1. */
static bool guard_addr_loopback(const struct guard_addr *a)
{
    static const unsigned char v6_loopback[16] = {[15] = 1};
    if (a->family == AF_INET)
        return a->bytes[0] == 127;
    return memcmp(a->bytes, v6_loopback, 16) == 0;
}

/* True when A and B are the same address. */
static bool guard_addr_equal(const struct guard_addr *a, const struct guard_addr *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0;
}

/* True for a character of a host name (letters, digits, '-', '.', '_'). */
static bool guard_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* Parse the port after a Host's name: "" (none) or ":" 1-5 digits. */
static int guard_port_parse(const char *s, int *port)
{
    *port = -1;
    if (!*s)
        return 0;
    if (*s != ':' || !s[1] || strlen(s + 1) > 5 || strspn(s + 1, "0123456789") != strlen(s + 1))
        return -1;
    long v = strtol(s + 1, NULL, 10);
    if (v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int guard_host_split(const char *host, char *name, size_t cap, int *port)
{
    const char *start = host, *end;

    if (!host || !*host || cap == 0)
        return -1;
    if (host[0] == '[') {
        start = host + 1;
        end = strchr(start, ']');
        if (!end || end == start ||
            strspn(start, "0123456789abcdefABCDEF:.") != (size_t)(end - start))
            return -1;
        if (guard_port_parse(end + 1, port) < 0)
            return -1;
    } else {
        end = start;
        while (guard_name_char(*end))
            end++;
        if (end == start || guard_port_parse(end, port) < 0)
            return -1;
    }
    size_t n = (size_t)(end - start);
    if (n >= cap)
        return -1;
    memcpy(name, start, n);
    name[n] = '\0';
    return 0;
}

/* Length of NAME without one trailing dot. */
static size_t guard_name_len(const char *name)
{
    size_t n = strlen(name);
    return n > 1 && name[n - 1] == '.' ? n - 1 : n;
}

/* True for localhost and *.localhost, names browsers keep on loopback. */
static bool guard_is_localhost(const char *name)
{
    size_t n = guard_name_len(name);
    static const char suffix[] = ".localhost";
    size_t s = sizeof suffix - 1;
    if (n == s - 1 && strncasecmp(name, suffix + 1, n) == 0)
        return true;
    return n > s && strncasecmp(name + n - s, suffix, s) == 0;
}

/* True when NAME (a Host's name) is LISTED: an address equal to it, or the
 * same name ignoring case and a trailing dot. LISTED may be bracketed. */
static bool guard_name_matches(const char *name, const char *listed)
{
    char bare[GUARD_NAME_MAX];
    struct guard_addr a, b;
    size_t n = strlen(listed);

    if (listed[0] == '[' && n > 2 && listed[n - 1] == ']' && n - 2 < sizeof bare) {
        memcpy(bare, listed + 1, n - 2);
        bare[n - 2] = '\0';
        listed = bare;
    }
    if (guard_addr_parse(name, &a))
        return guard_addr_parse(listed, &b) && guard_addr_equal(&a, &b);
    size_t ln = guard_name_len(listed);
    return ln == guard_name_len(name) && strncasecmp(name, listed, ln) == 0;
}

/* True when OWN is an address or name a client may use: not a wildcard. */
static bool guard_own_usable(const char *own)
{
    struct guard_addr a;
    static const unsigned char zero[16];
    if (!own || !*own)
        return false;
    return !guard_addr_parse(own, &a) || memcmp(a.bytes, zero, 16) != 0;
}

bool guard_host_ok(const struct guard_policy *policy, const char *host, const char *local)
{
    char name[GUARD_NAME_MAX];
    struct guard_addr a;
    int port;

    if (!host) /* HTTP/1.0 without Host: no browser sends that */
        return true;
    if (guard_host_split(host, name, sizeof name, &port) < 0)
        return false;
    struct in6_addr a6;
    if (host[0] == '[' && inet_pton(AF_INET6, name, &a6) != 1)
        return false; /* brackets hold IPv6 addresses only */
    if (guard_addr_parse(name, &a) && guard_addr_loopback(&a))
        return true;
    if (guard_is_localhost(name))
        return true;
    if (local && *local && guard_name_matches(name, local) && guard_own_usable(local))
        return true;
    if (guard_own_usable(policy->own_host) && guard_name_matches(name, policy->own_host))
        return true;
    for (size_t i = 0; policy->server_names && policy->server_names[i]; i++)
        if (guard_name_matches(name, policy->server_names[i]))
            return true;
    return false;
}

/* True when ORIGIN is http(s)://HOST exactly (ignoring case): the page was
 * served by this server under the name the request uses. */
static bool guard_origin_is_own(const char *origin, const char *host)
{
    const char *authority;
    if (!host)
        return false;
    if (strncasecmp(origin, "http://", 7) == 0)
        authority = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        authority = origin + 8;
    else
        return false;
    return *host && strcasecmp(authority, host) == 0;
}

bool guard_origin_ok(const struct guard_policy *policy, const char *origin, const char *host,
                     bool *listed)
{
    *listed = false;
    for (size_t i = 0; policy->allowed_origins && policy->allowed_origins[i]; i++) {
        if (strcasecmp(origin, policy->allowed_origins[i]) == 0) {
            *listed = true;
            return true;
        }
    }
    return guard_origin_is_own(origin, host);
}

enum guard_verdict guard_check(const struct guard_policy *policy, const struct guard_request *req,
                               const char **detail, bool *cors)
{
    bool listed = false;

    *cors = false;
    *detail = NULL;
    if (!guard_host_ok(policy, req->host, req->local)) {
        *detail = "host not allowed (not a loopback address, localhost, or one of server_names)";
        return GUARD_REFUSE;
    }
    if (!req->origin)
        return GUARD_PASS;
    if (!guard_origin_ok(policy, req->origin, req->host, &listed)) {
        *detail = "origin not allowed (not this server's own, nor one of allowed_origins)";
        return GUARD_REFUSE;
    }
    *cors = listed;
    if (listed && req->preflight && req->method && strcmp(req->method, "OPTIONS") == 0)
        return GUARD_PREFLIGHT;
    return GUARD_PASS;
}

size_t guard_cors_headers(char *out, size_t cap, const char *origin, bool preflight)
{
    int n = snprintf(out, cap,
                     "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                     "Access-Control-Expose-Headers: Retry-After, Location\r\n%s",
                     origin,
                     preflight ? "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\n"
                                 "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                                 "Access-Control-Max-Age: 600\r\n"
                               : "");
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}
