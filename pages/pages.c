/*
 * pages: serves the embedded page (see pages.h) with headers that keep it to
 * itself: a Content-Security-Policy that allows only its own inline script
 * and style (by hash, computed once from the embedded bytes) and requests to
 * its own origin, no framing, no referrer. And the login and logout that set
 * and clear the hive_token cookie.
 */
#include "pages/pages.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/digest.h"
#include "common/util.h"

extern const unsigned char pages_index_html[], pages_script[], pages_style[];
extern const size_t pages_index_html_len, pages_script_len, pages_style_len;

#define PAGES_COOKIE "hive_token"
#define PAGES_COOKIE_ATTRS "; HttpOnly; SameSite=Strict; Path=/"
#define PAGES_TOKEN_MAX 4096 /* longer tokens are refused at the login */

/* "sha256-BASE64" of LEN bytes at DATA, the form CSP hash sources take. */
static void pages_csp_hash(char out[64], const unsigned char *data, size_t len)
{
    unsigned char digest[DIGEST_SHA256_LEN];

    digest_sha256(data, len, digest);
    memcpy(out, "sha256-", 7);
    digest_base64(out + 7, digest, sizeof digest);
}

/* The header lines of the page, made once: the script and style are allowed
 * by their hashes only, so text a task printed can never run as script. */
static const char *pages_headers(void)
{
    static char headers[1024];
    char js[64], css[64];

    if (headers[0])
        return headers;
    pages_csp_hash(js, pages_script, pages_script_len);
    pages_csp_hash(css, pages_style, pages_style_len);
    snprintf(headers, sizeof headers,
             "Content-Security-Policy: default-src 'none'; script-src '%s'; style-src '%s'; "
             "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
             "frame-ancestors 'none'\r\n"
             "X-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "Cache-Control: no-cache\r\n",
             js, css);
    return headers;
}

/* True when REQ declares a JSON body (POSTs of other types are refused:
 * no form-post CSRF, SPEC §7). */
static bool pages_is_json(const struct http_request *req)
{
    const char *ct = http_request_header(req, "Content-Type");
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    return ct && n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* TOKEN as a cookie value: bytes outside RFC 6265's cookie-octet, and '%'
 * and '+', percent-encoded (http.c decodes them). */
static char *pages_cookie_encode(const char *token)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(token);
    char *out = xmalloc(3 * n + 1), *o = out;

    for (const unsigned char *p = (const unsigned char *)token; *p; p++) {
        if (*p > 0x20 && *p < 0x7f && !strchr("\",;\\%+", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* POST /api/login {"token"}: 200 and the cookie when it is the server's
 * token (nothing to set when there is none), 401 otherwise. */
static void pages_login(struct http_conn *conn, const struct http_request *req, const char *token)
{
    size_t len = evbuffer_get_length(req->body);
    json_t *body = json_loadb((const char *)evbuffer_pullup(req->body, -1), len, 0, NULL);
    const char *given = json_string_value(json_object_get(body, "token"));

    if (!given || strlen(given) > PAGES_TOKEN_MAX) {
        json_decref(body);
        return http_respond_error(conn, 400, body ? "token is required (a string)" : "invalid JSON",
                                  NULL);
    }
    if (!token || !*token) {
        json_decref(body);
        return http_respond_json(conn, 200, json_pack("{s:s, s:b}", "status", "ok", "token", 0),
                                 NULL);
    }
    bool ok = http_token_equal(given, token);
    json_decref(body);
    if (!ok)
        return http_respond_error(conn, 401, "wrong token", NULL);
    char *value = pages_cookie_encode(token);
    char *cookie = xasprintf("Set-Cookie: " PAGES_COOKIE "=%s" PAGES_COOKIE_ATTRS "\r\n"
                             "Cache-Control: no-store\r\n",
                             value);
    http_respond_json(conn, 200, json_pack("{s:s, s:b}", "status", "ok", "token", 1), cookie);
    free(cookie);
    free(value);
}

/* POST /api/logout: the cookie is cleared (harmless without a token). */
static void pages_logout(struct http_conn *conn)
{
    http_respond_json(conn, 200, json_pack("{s:s}", "status", "ok"),
                      "Set-Cookie: " PAGES_COOKIE "=; Max-Age=0" PAGES_COOKIE_ATTRS "\r\n");
}

bool pages_is_page(const struct http_request *req, const char *path)
{
    return strcmp(path, "/") == 0 &&
           (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0);
}

bool pages_route(struct http_conn *conn, const struct http_request *req, const char *token)
{
    bool login = strcmp(req->path, "/api/login") == 0;

    if (pages_is_page(req, req->path)) {
        http_respond(conn, 200, "text/html; charset=utf-8", pages_index_html, pages_index_html_len,
                     pages_headers());
        return true;
    }
    if (!login && strcmp(req->path, "/api/logout") != 0)
        return false;
    if (strcmp(req->method, "POST") != 0)
        http_respond_error(conn, 405, "Method Not Allowed", "Allow: POST\r\n");
    else if (!pages_is_json(req))
        http_respond_error(conn, 415, "Content-Type must be application/json", NULL);
    else if (login)
        pages_login(conn, req, token);
    else
        pages_logout(conn);
    return true;
}
