/*
 * http: HTTP/1.1 server connections. This file owns the listeners, every
 * accepted connection (one bufferevent, one http_parser, one timer each), the
 * limits and timeouts of SPEC §7, keep-alive and pipelining, and the one
 * function that formats responses.
 *
 * A connection feeds http_parser straight from the bufferevent's input and
 * drains only what the parser consumed, so bytes after a request stay in the
 * buffer (pipelining, Upgrade hand-off). The parser is paused at the end of a
 * request head, at each streamed body segment and at the end of a request;
 * every call into the application happens after http_parser_execute() has
 * returned, never from inside it. While a request waits for its answer,
 * nothing more is parsed, so answers leave in order.
 *
 * Answers are written straight to the socket when nothing else is queued
 * (one writev per read, no epoll change per request, which is what keeps the
 * CPU cost per request near nginx's); only what the socket does not take
 * waits for the bufferevent's write event.
 *
 * A connection ends in two halves, tracked separately: its socket closes (the
 * peer left, a timeout, an error, or Connection: close after the flush), and
 * the request handed to the application is answered. The record is freed
 * when both have happened, and never while one of our callbacks is still on
 * the stack (it is marked and freed when the outermost one returns).
 *
 * Every request head passes the server's guard (guard.h) before the
 * application sees it: the Host/Origin rule of SPEC §7 holds on every port
 * of both programs because it is applied here, once, not by each route.
 */
#include "common/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#define HTTP_OUTPUT_LOW (16 * 1024)   /* drain callback below this */
#define HTTP_OUTPUT_HIGH (256 * 1024) /* start no new request above this */
#define HTTP_INPUT_HIGH (64 * 1024)   /* read ahead at most this much */
#define HTTP_READ_MAX (16 * 1024)     /* one recv() takes at most this */
#define HTTP_LINGER_MS 2000           /* wait for the client's EOF after an error */
#define HTTP_ACCEPT_RETRY_MS 100      /* pause after accept() failed (EMFILE) */
#define HTTP_LISTENERS_MAX 4          /* listening sockets per server */
#define HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"
#define HTTP_CORS_MAX 1024 /* CORS header lines of one answer */

enum http_conn_state {
    HTTP_CONN_IDLE,   /* kept alive, waiting for the next request */
    HTTP_CONN_HEAD,   /* reading a request line and headers */
    HTTP_CONN_BODY,   /* reading a body: buffered, streamed or discarded */
    HTTP_CONN_WAIT,   /* a complete request waits for its answer */
    HTTP_CONN_CLOSING /* flushing the last answer, then closing */
};

/* Why http_parser_execute() paused. */
enum http_event { HTTP_EVENT_NONE, HTTP_EVENT_HEAD, HTTP_EVENT_BODY, HTTP_EVENT_DONE };

/* Which part of the head the parser's data callbacks are delivering. */
enum http_field { HTTP_FIELD_URL, HTTP_FIELD_NAME, HTTP_FIELD_VALUE };

struct http_server {
    struct event_base *base;
    struct evconnlistener *listeners[HTTP_LISTENERS_MAX];
    size_t n_listeners;
    struct event *retry;
    struct http_server_config config;
    const struct timeval *tv_header;
    const struct timeval *tv_idle;
    const struct timeval *tv_linger;
    LIST_HEAD(, http_conn) conns;
    size_t open;
    bool accepting;
};

struct http_conn {
    LIST_ENTRY(http_conn) entry;
    struct http_server *server; /* NULL once the server is gone */
    struct http_server_config config;
    const struct timeval *tv_header, *tv_idle, *tv_linger;
    struct bufferevent *bev; /* NULL once the socket is closed or detached */
    struct event *timer;
    /* Reading is ours, not the bufferevent's (which writes): one recv()
     * into its input buffer per readable event, where evbuffer_read()
     * would first ask the socket how much it holds (an ioctl per read). */
    struct event *rev;
    struct event *reparse; /* parse buffered input again, later this pass */
    struct event *drained; /* run the write callback, later this pass */
    bool reading;          /* REV is armed */
    bool input_full;       /* HTTP_INPUT_HIGH buffered: wait for a drain */
    bool read_eof;         /* the client's EOF (or a read error) was seen */
    http_parser parser;
    enum http_conn_state state;
    char peer[INET6_ADDRSTRLEN];
    /* The peer with its port, for log lines: "ADDR:PORT", "[V6]:PORT", "local". */
    char peer_name[INET6_ADDRSTRLEN + 8];
    char local[INET6_ADDRSTRLEN]; /* the address the client connected to; "" for Unix */
    int depth;                    /* our callbacks on the stack */
    bool doomed;                  /* free when depth is back to 0 */
    bool processing;              /* inside http_conn_process() */
    bool read_paused;             /* by the application */
    bool output_blocked;
    bool linger;    /* half-close and wait for EOF once flushed */
    bool lingering; /* ... and that has started */

    /* The current request. Strings live in TEXT; offsets until the head is
     * complete, because TEXT may move while it grows. */
    struct http_request req;
    char *text;
    size_t text_len, text_cap;
    size_t *offsets; /* name and value offset of each header */
    size_t headers_cap;
    enum http_field field;
    size_t head_bytes, body_bytes, body_limit;
    int fail_status;
    const char *fail_detail;
    enum http_event event;
    const char *event_data;
    size_t event_len;
    size_t undrained; /* bytes the parser consumed, not yet drained */
    bool head_lf;     /* the head's final LF is still in the input */
    bool head_done, complete, dispatched, answered, streaming, close_after;
    bool expect_continue, gone, close_called, in_on_headers, detached;
    const char *cors_origin; /* a listed Origin: answers carry CORS headers */
    bool cors_preflight;     /* ... and those of a preflight */
    http_body_cb body_cb;
    void *body_arg;
    http_conn_cb close_cb, drain_cb;
    void *close_arg, *drain_arg;
};

static void http_conn_update_read(struct http_conn *c);
static void http_conn_free_reader(struct http_conn *c);
static void http_conn_recv_cb(evutil_socket_t fd, short what, void *arg);
static void http_conn_reparse_cb(evutil_socket_t fd, short what, void *arg);
static int http_on_url(http_parser *, const char *, size_t);
static int http_on_header_field(http_parser *, const char *, size_t);
static int http_on_header_value(http_parser *, const char *, size_t);
static int http_on_headers_complete(http_parser *);
static int http_on_body(http_parser *, const char *, size_t);
static int http_on_message_complete(http_parser *);

static const http_parser_settings http_settings = {
    .on_url = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

static void http_conn_process(struct http_conn *);
static void http_conn_kick(struct http_conn *);
static void http_conn_close_socket(struct http_conn *);
static void http_conn_begin_close(struct http_conn *);
static void http_conn_fail(struct http_conn *, int, const char *);

/* SPEC §7 defaults. */
void http_limits_default(struct http_limits *limits)
{
    limits->max_header_bytes = 16 * 1024;
    limits->max_body = 1024 * 1024;
    limits->header_timeout_ms = 10 * 1000;
    limits->idle_timeout_ms = 60 * 1000;
    limits->max_connections = 1024;
}

/* The standard reason phrase for STATUS ("OK", "Not Found", ...). */
const char *http_status_reason(int status)
{
    switch (status) {
#define XX(num, name, string)                                                                      \
    case num:                                                                                      \
        return #string;
        HTTP_STATUS_MAP(XX)
#undef XX
    default:
        return "Unknown";
    }
}

/* The Date header's value, formatted once per second. */
static const char *http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static char buf[40];
    static time_t cached = -1;
    time_t now = time(NULL);
    struct tm tm;

    if (now != cached && gmtime_r(&now, &tm)) {
        snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        cached = now;
    }
    return buf;
}

/* Case-insensitive lookup of the first header named NAME; NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* Value of one hex digit, or -1. */
static int http_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode LEN bytes of S ('+' is a space); invalid escapes stay as
 * they are. The caller frees the result. */
static char *http_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = http_hex(s[i + 1])) >= 0 &&
                   (lo = http_hex(s[i + 2])) >= 0) {
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* The percent-decoded value of query parameter NAME, or NULL; caller frees. */
char *http_query_param(const char *query, const char *name)
{
    if (!query || !name)
        return NULL;
    for (const char *p = query; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        char *key = http_decode(p, klen);
        bool match = strcmp(key, name) == 0;
        free(key);
        if (match)
            return eq ? http_decode(eq + 1, n - klen - 1) : xstrdup("");
        p += n;
        if (*p == '&')
            p++;
    }
    return NULL;
}

/* Compare GIVEN with SECRET in time that depends only on their lengths. */
bool http_token_equal(const char *given, const char *secret)
{
    size_t glen = strlen(given), slen = strlen(secret);
    volatile unsigned char diff = glen != slen;

    for (size_t i = 0; i < slen; i++)
        diff |= (unsigned char)secret[i] ^ (unsigned char)(i < glen ? given[i] : 0);
    return diff == 0;
}

/* The percent-decoded value of cookie NAME in the Cookie header, or NULL;
 * caller frees. Cookies are "a=b; c=d" (RFC 6265 §4.2.1). */
static char *http_cookie_value(const struct http_request *req, const char *name)
{
    const char *p = http_request_header(req, "Cookie");
    size_t nlen = strlen(name);

    while (p && *p) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ";");
        if (n > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
            return http_decode(p + nlen + 1, n - nlen - 1);
        p += n;
        p += *p == ';';
    }
    return NULL;
}

/* True when TOKEN is unset, or sent as a Bearer header, as ?token= or as
 * the hive_token cookie of the pages' login (SPEC §10: EventSource cannot
 * send headers, and a token must stay out of the pages' URLs). */
bool http_request_token_ok(const struct http_request *req, const char *token)
{
    if (!token || !*token)
        return true;
    const char *auth = http_request_header(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        auth += strspn(auth, " \t");
        if (http_token_equal(auth, token))
            return true;
    }
    char *given = http_query_param(req->query, "token");
    bool ok = given && http_token_equal(given, token);
    free(given);
    if (ok)
        return true;
    given = http_cookie_value(req, "hive_token");
    ok = given && http_token_equal(given, token);
    free(given);
    return ok;
}

/* True when header block LINES has a line starting with NAME (lower case,
 * with its colon). */
static bool http_lines_have(const char *lines, const char *name)
{
    size_t len = strlen(name);
    const char *p = lines;

    while (p && *p) {
        if (strncasecmp(p, name, len) == 0)
            return true;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Format a peer address: IPv4, IPv6 (v4-mapped ones as IPv4), or "local". */
static void http_peer_format(const struct sockaddr *sa, char *out, size_t cap)
{
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, cap);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, cap);
        else
            inet_ntop(AF_INET6, a, out, cap);
    } else {
        snprintf(out, cap, "local");
    }
}

/* The peer for a log line: PEER (as http_peer_format made it) and the port
 * of SA, "ADDR:PORT" or "[V6]:PORT"; only PEER when SA has no port. */
static void http_peer_name_format(const struct sockaddr *sa, const char *peer, char *out,
                                  size_t cap)
{
    if (sa->sa_family == AF_INET)
        snprintf(out, cap, "%s:%u", peer, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    else if (sa->sa_family == AF_INET6)
        snprintf(out, cap, strchr(peer, ':') ? "[%s]:%u" : "%s:%u", peer,
                 ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    else
        snprintf(out, cap, "%s", peer);
}

void http_bev_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if ((bufferevent_get_enabled(bev) & EV_WRITE) || evbuffer_get_length(out) == 0)
        return;
    /* A socket bufferevent keeps the front of its output frozen and thaws it
     * around its own writes; do the same. */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

/* Write queued output straight to the socket unless libevent is already
 * on it: a small answer then costs one writev and no epoll change. What the
 * socket does not take is left to the bufferevent's write event; when all of
 * it went, the write callback still runs (deferred) for whoever waits for the
 * drain: a closing connection, a blocked pipeline, a streaming application. */
static void http_conn_flush(struct http_conn *c)
{
    if (!c->bev || (bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool wrote = evbuffer_get_length(out) > 0;
    http_bev_write_now(c->bev);
    if (evbuffer_get_length(out) > 0)
        return; /* the write event is on */
    if ((c->state == HTTP_CONN_CLOSING && !c->lingering) || c->output_blocked ||
        (wrote && c->drain_cb))
        event_active(c->drained, EV_TIMEOUT, 0);
}

/* Output was queued: flush it now, or when our outermost callback returns. */
static void http_conn_kick(struct http_conn *c)
{
    if (c->depth == 0)
        http_conn_flush(c);
}

/* Mark the start of one of our callbacks. */
static void http_conn_enter(struct http_conn *c)
{
    c->depth++;
}

/* Free the connection now, or when the outermost of our callbacks returns. */
static void http_conn_release(struct http_conn *c)
{
    if (c->depth > 0) {
        c->doomed = true;
        return;
    }
    http_conn_free_reader(c);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->server)
        LIST_REMOVE(c, entry);
    event_free(c->timer);
    evbuffer_free(c->req.body);
    free(c->text);
    free(c->offsets);
    free(c->req.headers);
    free(c);
}

/* Mark the end of one of our callbacks; then a doomed connection goes,
 * and a live one writes what was queued meanwhile. */
static void http_conn_leave(struct http_conn *c)
{
    if (--c->depth > 0)
        return;
    if (c->doomed)
        http_conn_release(c);
    else
        http_conn_flush(c);
}

/* Free the record once its socket is closed and no answer is owed. */
static void http_conn_check_done(struct http_conn *c)
{
    if (!c->bev && !(c->dispatched && !c->answered))
        http_conn_release(c);
}

/* (Re)start the connection's timer; NULL stops it. */
static void http_conn_arm(struct http_conn *c, const struct timeval *tv)
{
    if (tv && c->bev)
        event_add(c->timer, tv);
    else
        event_del(c->timer);
}

/* True while the socket is ours and the connection is not shutting down. */
static bool http_conn_attached(const struct http_conn *c)
{
    return c->bev && !c->doomed && c->state != HTTP_CONN_CLOSING;
}

/* Make room for LEN more bytes of request text. */
static void http_conn_text_reserve(struct http_conn *c, size_t len)
{
    if (c->text_len + len <= c->text_cap)
        return;
    size_t cap = c->text_cap ? c->text_cap : 512;
    while (cap < c->text_len + len)
        cap *= 2;
    c->text = xrealloc(c->text, cap);
    c->text_cap = cap;
}

/* Append LEN bytes of request text. */
static void http_conn_text_append(struct http_conn *c, const char *data, size_t len)
{
    http_conn_text_reserve(c, len);
    memcpy(c->text + c->text_len, data, len);
    c->text_len += len;
}

/* Append a NUL-terminated copy of LEN bytes found at OFF in the text. */
static size_t http_conn_text_copy(struct http_conn *c, size_t off, size_t len)
{
    size_t at = c->text_len;
    http_conn_text_reserve(c, len + 1);
    memcpy(c->text + at, c->text + off, len);
    c->text[at + len] = '\0';
    c->text_len += len + 1;
    return at;
}

/* Forget the current request; the connection is ready for the next one. */
static void http_conn_reset_request(struct http_conn *c)
{
    struct evbuffer *body = c->req.body;
    struct http_header *headers = c->req.headers;

    evbuffer_drain(body, evbuffer_get_length(body));
    memset(&c->req, 0, sizeof c->req);
    c->req.body = body;
    c->req.headers = headers;
    c->req.method_id = -1;
    c->req.content_length = -1;
    c->req.peer = c->peer;
    c->text_len = 0;
    c->field = HTTP_FIELD_URL;
    c->head_bytes = c->body_bytes = 0;
    c->body_limit = c->config.limits.max_body;
    c->fail_status = 0;
    c->fail_detail = NULL;
    c->head_done = c->complete = c->dispatched = c->answered = c->streaming = false;
    c->expect_continue = c->close_called = false;
    c->cors_origin = NULL;
    c->cors_preflight = false;
    c->body_cb = NULL;
    c->close_cb = c->drain_cb = NULL;
}

/* End the field being collected: NUL-terminate it (values lose trailing
 * blanks; a name without a value gets an empty one). */
static void http_conn_end_field(struct http_conn *c)
{
    if (c->field == HTTP_FIELD_NAME) {
        http_conn_text_append(c, "", 1);
        c->offsets[2 * c->req.n_headers - 1] = c->text_len;
    } else if (c->field == HTTP_FIELD_VALUE) {
        size_t start = c->offsets[2 * c->req.n_headers - 1];
        while (c->text_len > start &&
               (c->text[c->text_len - 1] == ' ' || c->text[c->text_len - 1] == '\t'))
            c->text_len--;
    }
    http_conn_text_append(c, "", 1);
}

/* Record the start of a new header name. */
static void http_conn_new_header(struct http_conn *c)
{
    if (c->req.n_headers == c->headers_cap) {
        c->headers_cap = c->headers_cap ? 2 * c->headers_cap : 16;
        c->offsets = xrealloc(c->offsets, 2 * c->headers_cap * sizeof *c->offsets);
        c->req.headers = xrealloc(c->req.headers, c->headers_cap * sizeof *c->req.headers);
    }
    c->offsets[2 * c->req.n_headers] = c->text_len;
    c->req.n_headers++;
    c->field = HTTP_FIELD_NAME;
}

/* Parser: a piece of the request target. */
static int http_on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_text_append(p->data, at, len);
    return 0;
}

/* True for the characters of an RFC 7230 token (tchar), the only ones a
 * header name may hold. */
static bool http_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Refuse the request with 400 from inside a parser callback. */
static int http_conn_refuse_name(struct http_conn *c)
{
    c->fail_status = 400;
    c->fail_detail = "bad request: invalid header field name";
    return -1;
}

/* True when the header name being collected is complete and not empty. */
static bool http_conn_name_ok(const struct http_conn *c)
{
    if (c->field == HTTP_FIELD_URL)
        return false; /* a value with no name before it */
    return c->field != HTTP_FIELD_NAME || c->text_len > c->offsets[2 * c->req.n_headers - 2];
}

/* Parser: a piece of a header name (a new header when a value came last).
 * http_parser lets blanks through before the colon and then still acts on
 * the name ("Transfer-Encoding :"), so any name that is not a plain token
 * is refused, as RFC 7230 §3.2.4 and nginx do: a name we store must be the
 * name the parser acted on. */
static int http_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->head_done)
        return 0; /* chunked trailers are read and dropped */
    for (size_t i = 0; i < len; i++)
        if (!http_tchar((unsigned char)at[i]))
            return http_conn_refuse_name(c);
    if (c->field != HTTP_FIELD_NAME) {
        http_conn_end_field(c);
        http_conn_new_header(c);
    }
    http_conn_text_append(c, at, len);
    return 0;
}

/* Parser: a piece of a header value. */
static int http_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (c->head_done)
        return 0;
    if (!http_conn_name_ok(c))
        return http_conn_refuse_name(c);
    if (c->field != HTTP_FIELD_VALUE) {
        http_conn_text_append(c, "", 1);
        c->offsets[2 * c->req.n_headers - 1] = c->text_len;
        c->field = HTTP_FIELD_VALUE;
    }
    http_conn_text_append(c, at, len);
    return 0;
}

/* Parser: the head is complete; pause so that it is handled outside. */
static int http_on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    if (c->field != HTTP_FIELD_URL && !http_conn_name_ok(c))
        return http_conn_refuse_name(c);
    c->event = HTTP_EVENT_HEAD;
    http_parser_pause(p, 1);
    return 0;
}

/* Parser: body bytes, buffered, handed to a stream callback (pausing), or
 * dropped after an early answer; past the limit, 413. */
static int http_on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    c->body_bytes += len;
    if (c->body_bytes > c->body_limit) {
        c->fail_status = 413;
        c->fail_detail = "request body too large";
        return -1;
    }
    if (c->answered || c->gone)
        return 0; /* answered early: the rest of the body is discarded */
    if (c->body_cb) {
        c->event = HTTP_EVENT_BODY;
        c->event_data = at;
        c->event_len = len;
        http_parser_pause(p, 1);
        return 0;
    }
    evbuffer_add(c->req.body, at, len);
    return 0;
}

/* Parser: the request is complete; pause so that it is handled outside. */
static int http_on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    c->event = HTTP_EVENT_DONE;
    http_parser_pause(p, 1);
    return 0;
}

/* Copy the path and query out of the target (at offset 0 of the text):
 * origin-form "/a?b", absolute-form "http://h/a?b", "*", or authority-form
 * (CONNECT), which is its own path. Offsets go to PATH and QUERY (0: none). */
static void http_conn_split_target(struct http_conn *c, size_t *path, size_t *query)
{
    const char *t = c->text;
    size_t start = 0, plen, qoff;

    *query = 0;
    if (t[0] != '/' && t[0] != '*') {
        const char *scheme = strstr(t, "://");
        if (!scheme) {
            *path = http_conn_text_copy(c, 0, strlen(t));
            return;
        }
        start = (size_t)(scheme + 3 - t);
        start += strcspn(t + start, "/?#");
    }
    plen = strcspn(t + start, "?#");
    qoff = start + plen + 1;
    if (t[start + plen] == '?')
        *query = http_conn_text_copy(c, qoff, strcspn(c->text + qoff, "#"));
    if (plen) {
        *path = http_conn_text_copy(c, start, plen);
    } else {
        *path = c->text_len;
        http_conn_text_append(c, "/", 2);
    }
}

/* The head is complete: fill in the request from the parser and the text. */
static void http_conn_finish_head(struct http_conn *c)
{
    struct http_request *req = &c->req;
    http_parser *p = &c->parser;
    size_t path, query;

    http_conn_end_field(c);
    http_conn_split_target(c, &path, &query);
    req->target = c->text;
    req->path = c->text + path;
    req->query = query ? c->text + query : NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        req->headers[i].name = c->text + c->offsets[2 * i];
        req->headers[i].value = c->text + c->offsets[2 * i + 1];
    }
    req->method = http_method_str((enum http_method)p->method);
    req->method_id = p->method;
    req->version_major = p->http_major;
    req->version_minor = p->http_minor;
    req->keep_alive = http_should_keep_alive(p);
    req->upgrade = (p->flags & F_UPGRADE) && (p->flags & F_CONNECTION_UPGRADE);
    req->chunked = p->flags & F_CHUNKED;
    req->content_length = -1;
    if (p->flags & F_CONTENTLENGTH)
        req->content_length =
            p->content_length > INT64_MAX ? INT64_MAX : (int64_t)p->content_length;
    c->head_done = true;
    c->state = HTTP_CONN_BODY;
}

/* True when the request announced a body. */
static bool http_conn_has_body(const struct http_conn *c)
{
    const http_parser *p = &c->parser;
    return (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
}

/* True when every Transfer-Encoding is plain "chunked", the only one we
 * decode, and the parser read it so too (it does not for "chunked<TAB>",
 * and would refuse the body only after the application saw the head). */
static bool http_conn_te_supported(const struct http_conn *c)
{
    bool any = false;
    for (size_t i = 0; i < c->req.n_headers; i++) {
        if (strcasecmp(c->req.headers[i].name, "Transfer-Encoding") != 0)
            continue;
        if (strcasecmp(c->req.headers[i].value, "chunked") != 0)
            return false;
        any = true;
    }
    return !any || c->req.chunked;
}

/* Decide (once per answer) whether the connection closes after it. */
static bool http_conn_decide_close(struct http_conn *c)
{
    if (!c->req.keep_alive || c->req.method_id == HTTP_CONNECT)
        c->close_after = true;
    /* The client waits for 100 Continue before sending the body it
     * announced; we will not know where that body ends. */
    if (c->expect_continue && !c->complete)
        c->close_after = true;
    return c->close_after;
}

/* Copy LEN bytes to P; returns the end. */
static char *http_put(char *p, const void *data, size_t len)
{
    memcpy(p, data, len);
    return p + len;
}

/* Copy string S to P (nothing for NULL); returns the end. */
static char *http_put_str(char *p, const char *s)
{
    return s ? http_put(p, s, strlen(s)) : p;
}

/* Write V in decimal at P; returns the end. */
static char *http_put_uint(char *p, size_t v)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* The one place that formats a complete response: head and body are laid
 * out in one reserved run of the output buffer, so they leave in one write. */
static void http_conn_send(struct http_conn *c, int status, const char *content_type,
                           const void *body, size_t len, const char *extra_headers)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool bodyless = status < 200 || status == 204 || status == 304;
    bool head_only = c->head_done && c->req.method_id == HTTP_HEAD;
    const char *reason = http_status_reason(status);
    size_t send_len = bodyless || head_only ? 0 : len;
    char cors[HTTP_CORS_MAX] = "";
    size_t cors_len = c->cors_origin
                          ? guard_cors_headers(cors, sizeof cors, c->cors_origin, c->cors_preflight)
                          : 0;
    size_t cap = 200 + strlen(reason) + (content_type ? strlen(content_type) : 0) +
                 (extra_headers ? strlen(extra_headers) : 0) + cors_len + send_len;
    struct evbuffer_iovec v;

    if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &v, 1) != 1)
        return;
    char *p = http_put(v.iov_base, "HTTP/1.1 ", 9);
    p = http_put_uint(p, (size_t)(status % 1000));
    *p++ = ' ';
    p = http_put_str(p, reason);
    p = http_put_str(p, "\r\nServer: hive/" HIVE_VERSION "\r\nDate: ");
    p = http_put_str(p, http_date());
    if (content_type) {
        p = http_put_str(p, "\r\nContent-Type: ");
        p = http_put_str(p, content_type);
    }
    if (!bodyless) {
        p = http_put_str(p, "\r\nContent-Length: ");
        p = http_put_uint(p, len);
    }
    p = http_put_str(p, http_conn_decide_close(c) ? "\r\nConnection: close\r\n"
                                                  : "\r\nConnection: keep-alive\r\n");
    p = http_put_str(p, extra_headers);
    p = http_put(p, cors, cors_len);
    p = http_put(p, "\r\n", 2);
    if (send_len)
        p = http_put(p, body, send_len);
    v.iov_len = (size_t)(p - (char *)v.iov_base);
    evbuffer_commit_space(out, &v, 1);
    http_conn_kick(c);
}

/* Send a JSON {"detail": DETAIL} answer. */
static void http_conn_send_detail(struct http_conn *c, int status, const char *detail,
                                  const char *extra_headers)
{
    json_t *json = json_detail(detail);
    size_t len;
    char *text = json_dump_compact(json, &len);
    json_decref(json);
    http_conn_send(c, status, "application/json", text, len, extra_headers);
    free(text);
}

/* Start reading the head of a request: the slowloris clock starts. */
static void http_conn_begin_head(struct http_conn *c)
{
    c->state = HTTP_CONN_HEAD;
    http_conn_arm(c, c->tv_header);
}

/* The request is answered and read: get ready for the next one. */
static void http_conn_finish_request(struct http_conn *c)
{
    http_conn_reset_request(c);
    c->state = HTTP_CONN_IDLE;
    http_conn_arm(c, c->tv_idle);
    if (!c->processing && c->bev && evbuffer_get_length(bufferevent_get_input(c->bev)))
        event_active(c->reparse, EV_TIMEOUT, 0);
}

/* The answer is complete (or dropped): close, or move on once read. */
static void http_conn_answered(struct http_conn *c)
{
    c->answered = true;
    c->streaming = false;
    if (!c->bev || c->gone) {
        http_conn_check_done(c);
        return;
    }
    if (c->close_after) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        if (!c->complete || evbuffer_get_length(in) > 0)
            c->linger = true;
        http_conn_begin_close(c);
    } else if (c->complete) {
        http_conn_finish_request(c);
    }
}

/* Hand the current request to the application. */
static void http_conn_dispatch_request(struct http_conn *c)
{
    c->dispatched = true;
    c->config.on_request(c, &c->req, c->config.arg);
}

/* Tell the application, once, that the client of its request is gone. */
static void http_conn_notify_close(struct http_conn *c)
{
    if (c->close_called || !c->close_cb)
        return;
    c->close_called = true;
    c->close_cb(c, c->close_arg);
}

/* Close the socket now. An answer still owed is dropped when it comes. */
static void http_conn_drop(struct http_conn *c)
{
    bool owed = c->dispatched && !c->answered;
    c->gone = true;
    http_conn_close_socket(c);
    if (owed)
        http_conn_notify_close(c);
}

/* The layer answers by itself (400, 408, 413, 417, 431, 501) and closes. */
static void http_conn_fail(struct http_conn *c, int status, const char *detail)
{
    bool owed = c->dispatched && !c->answered;

    c->close_after = true;
    c->linger = true;
    if (!c->streaming && !c->answered)
        http_conn_send_detail(c, status, detail, NULL);
    if (owed)
        c->gone = true;
    http_conn_begin_close(c);
    if (owed)
        http_conn_notify_close(c);
}

/* The parser stopped on an error of its own or of one of our callbacks. */
static void http_conn_parse_error(struct http_conn *c, enum http_errno err)
{
    char detail[160];

    if (c->fail_status) {
        http_conn_fail(c, c->fail_status, c->fail_detail);
        return;
    }
    snprintf(detail, sizeof detail, "bad request: %s", http_errno_description(err));
    http_conn_fail(c, 400, detail);
}

/* Apply the server's guard to the request head: false when it was
 * answered here (403, or 204 to a listed origin's preflight). */
static bool http_conn_guard(struct http_conn *c)
{
    const struct http_request *req = &c->req;
    const char *detail;
    bool cors;

    if (!c->config.guard)
        return true;
    struct guard_request g = {
        .method = req->method,
        .host = http_request_header(req, "Host"),
        .origin = http_request_header(req, "Origin"),
        .local = c->local,
        .preflight = http_request_header(req, "Access-Control-Request-Method") != NULL,
    };
    enum guard_verdict v = guard_check(c->config.guard(c->config.arg), &g, &detail, &cors);
    if (cors)
        c->cors_origin = g.origin;
    if (v == GUARD_REFUSE) {
        c->close_after = true; /* read no body of a page we refuse */
        http_respond_error(c, 403, detail, NULL);
        return false;
    }
    if (v == GUARD_PREFLIGHT) {
        c->cors_preflight = true;
        http_respond(c, 204, NULL, NULL, 0, NULL);
        return false;
    }
    return true;
}

/* The head is complete: check it, offer it to on_headers, and answer 100
 * Continue when the body is going to be read. */
static void http_conn_head_complete(struct http_conn *c)
{
    http_conn_finish_head(c);
    if (!http_conn_te_supported(c)) {
        http_conn_fail(c, 501, "transfer-encoding not supported");
        return;
    }
    const char *expect = http_request_header(&c->req, "Expect");
    if (expect && c->req.version_major == 1 && c->req.version_minor >= 1) {
        if (strcasecmp(expect, "100-continue") != 0) {
            http_conn_fail(c, 417, "expectation not supported");
            return;
        }
        c->expect_continue = http_conn_has_body(c);
    }
    bool guarded = http_conn_guard(c);
    if (guarded && c->config.on_headers) {
        c->in_on_headers = true;
        c->config.on_headers(c, &c->req, c->config.arg);
        c->in_on_headers = false;
        if (!http_conn_attached(c))
            return;
    }
    if (!c->answered && (c->parser.flags & F_CONTENTLENGTH) &&
        c->parser.content_length > c->body_limit) {
        http_conn_fail(c, 413, "request body too large");
        return;
    }
    if (c->body_cb && !c->answered && !c->dispatched)
        http_conn_dispatch_request(c);
    if (http_conn_attached(c) && !c->answered && !c->gone && c->expect_continue) {
        evbuffer_add(bufferevent_get_output(c->bev), HTTP_CONTINUE, strlen(HTTP_CONTINUE));
        http_conn_kick(c);
        c->expect_continue = false;
    }
    if (http_conn_attached(c) && c->state == HTTP_CONN_BODY && http_conn_has_body(c))
        http_conn_arm(c, c->tv_idle);
}

/* The request (body included) is complete. */
static void http_conn_message_complete(struct http_conn *c)
{
    if (c->body_cb && !c->answered && !c->gone)
        c->body_cb(c, NULL, 0, true, c->body_arg);
    if (!http_conn_attached(c))
        return;
    c->complete = true;
    if (c->answered) {
        http_conn_finish_request(c);
        return;
    }
    c->state = HTTP_CONN_WAIT;
    http_conn_arm(c, NULL);
    if (!c->dispatched)
        http_conn_dispatch_request(c);
}

/* Act on the reason the parser paused. */
static void http_conn_handle_event(struct http_conn *c)
{
    switch (c->event) {
    case HTTP_EVENT_HEAD:
        c->head_lf = true;
        http_conn_head_complete(c);
        c->head_lf = false;
        break;
    case HTTP_EVENT_BODY:
        if (c->body_cb && !c->answered && !c->gone)
            c->body_cb(c, c->event_data, c->event_len, false, c->body_arg);
        break;
    case HTTP_EVENT_DONE:
        http_conn_message_complete(c);
        break;
    case HTTP_EVENT_NONE:
        break;
    }
}

/* Drain from the input what the parser has consumed. */
static void http_conn_drain(struct http_conn *c)
{
    if (c->bev && c->undrained)
        evbuffer_drain(bufferevent_get_input(c->bev), c->undrained);
    c->undrained = 0;
    if (c->input_full && c->bev &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) < HTTP_INPUT_HIGH) {
        c->input_full = false;
        http_conn_update_read(c);
    }
}

/* True while buffered input may be parsed now. */
static bool http_conn_can_parse(const struct http_conn *c)
{
    if (!c->bev || c->doomed || c->read_paused || c->gone)
        return false;
    return c->state == HTTP_CONN_IDLE || c->state == HTTP_CONN_HEAD || c->state == HTTP_CONN_BODY;
}

/* Feed the parser the first contiguous run of input; false when there is
 * nothing to feed or the next request must wait for output to drain. */
static bool http_conn_feed(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;

    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
        return false;
    if (c->state == HTTP_CONN_IDLE) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > HTTP_OUTPUT_HIGH) {
            c->output_blocked = true;
            return false;
        }
        http_conn_begin_head(c);
    }
    bool head = c->state == HTTP_CONN_HEAD;
    size_t max = c->config.limits.max_header_bytes;
    size_t len = v.iov_len;
    if (head && len > max - c->head_bytes)
        len = max - c->head_bytes;
    c->event = HTTP_EVENT_NONE;
    c->undrained = http_parser_execute(&c->parser, &http_settings, v.iov_base, len);
    if (head)
        c->head_bytes += c->undrained;
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        http_conn_handle_event(c);
    } else if (err != HPE_OK) {
        http_conn_parse_error(c, err);
    } else if (head && c->head_bytes >= max) {
        http_conn_fail(c, 431, "request header fields too large");
    }
    http_conn_drain(c);
    return true;
}

/* Parse what is buffered, one request at a time. */
static void http_conn_process(struct http_conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (http_conn_can_parse(c) && http_conn_feed(c))
        ;
    c->processing = false;
}

/* Start closing: discard input, flush output, then close (or linger). */
static void http_conn_begin_close(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    c->state = HTTP_CONN_CLOSING;
    c->close_after = true;
    c->undrained = 0;
    evbuffer_drain(in, evbuffer_get_length(in));
    c->read_paused = false;
    c->input_full = false;
    http_conn_update_read(c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        event_active(c->drained, EV_TIMEOUT, 0);
    http_conn_arm(c, c->tv_idle);
}

/* Everything is flushed on a closing connection: close, or half-close and
 * wait a little for the client's EOF so that it reads our answer instead
 * of a reset. */
static void http_conn_flushed(struct http_conn *c)
{
    if (!c->linger) {
        http_conn_close_socket(c);
        return;
    }
    if (c->lingering)
        return;
    if (c->read_eof) { /* the client is done already: nothing to wait for */
        http_conn_close_socket(c);
        return;
    }
    c->lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    http_conn_arm(c, c->tv_linger);
}

/* Input arrived (or processing was re-triggered). */
static void http_conn_read_cb(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    http_conn_enter(c);
    if (c->state == HTTP_CONN_CLOSING) {
        evbuffer_drain(in, evbuffer_get_length(in));
    } else {
        if (c->state == HTTP_CONN_BODY && !c->read_paused && evbuffer_get_length(in))
            http_conn_arm(c, c->tv_idle);
        http_conn_process(c);
    }
    http_conn_leave(c);
}

/* Output drained to the low-water mark (after every write below it). */
static void http_conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));

    http_conn_enter(c);
    if (c->state == HTTP_CONN_CLOSING) {
        if (pending == 0)
            http_conn_flushed(c);
        else
            http_conn_arm(c, c->tv_idle);
    } else {
        if (c->state == HTTP_CONN_IDLE)
            http_conn_arm(c, c->tv_idle); /* a slow reader of pipelined answers */
        if (c->drain_cb && !c->gone)
            c->drain_cb(c, c->drain_arg);
        if (c->output_blocked && c->bev && !c->doomed) {
            c->output_blocked = false;
            http_conn_process(c);
        }
    }
    /* Drained: the next answer goes out directly again (http_conn_flush). */
    if (c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bufferevent_disable(c->bev, EV_WRITE);
    http_conn_leave(c);
}

/* The client closed its side, or the socket failed. */
static void http_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;
    bool pending = evbuffer_get_length(bufferevent_get_output(bev)) > 0;

    http_conn_enter(c);
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        http_conn_drop(c); /* a failed socket, or a client that stopped reading */
    } else if (what & BEV_EVENT_EOF) {
        if (c->state == HTTP_CONN_CLOSING && !c->lingering && pending) {
            c->linger = false; /* keep flushing: a half-closed client still reads */
        } else if (c->state != HTTP_CONN_CLOSING && !(c->dispatched && !c->answered) && pending) {
            c->linger = false;
            http_conn_begin_close(c);
        } else {
            http_conn_drop(c);
        }
    }
    http_conn_leave(c);
}

/* Arm or disarm the read event: on while the socket is ours, the client
 * has not ended its side, the application wants input and less than
 * HTTP_INPUT_HIGH waits unparsed. */
static void http_conn_update_read(struct http_conn *c)
{
    bool on = c->bev && c->rev && !c->read_eof && !c->read_paused && !c->input_full;
    if (on == c->reading)
        return;
    c->reading = on;
    if (on)
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
}

/* Free the read events and the drain kick (the socket is closing or
 * handed over). */
static void http_conn_free_reader(struct http_conn *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->reparse)
        event_free(c->reparse);
    if (c->drained)
        event_free(c->drained);
    c->rev = c->reparse = c->drained = NULL;
    c->reading = false;
}

/* Everything queued went out directly (http_conn_flush): what the
 * bufferevent's write callback would do. Our own event, not
 * bufferevent_trigger(BEV_TRIG_DEFER_CALLBACKS): a deferred callback holds
 * a reference on the bufferevent that only running it releases, so a
 * connection freed with one pending (a worker or supervisor tearing its
 * server down) leaked its bufferevent (fuzz_api found it). */
static void http_conn_drained_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd, (void)what;
    if (c->bev)
        http_conn_write_cb(c->bev, c);
}

/* The socket is readable: one recv() into the input buffer. EOF and errors
 * go where the bufferevent would have sent them. */
static void http_conn_recv_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)what;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) >= HTTP_INPUT_HIGH) {
        c->input_full = true; /* read again once the parser drains it */
        http_conn_update_read(c);
        return;
    }
    /* A socket bufferevent keeps the end of its input frozen and thaws it
     * around its own reads; do the same. */
    struct evbuffer_iovec v;
    ssize_t n = -1;
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, HTTP_READ_MAX, &v, 1) == 1) {
        n = recv(fd, v.iov_base, v.iov_len, 0);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(in, &v, 1);
        }
    } else {
        errno = ENOMEM;
    }
    evbuffer_freeze(in, 0);
    if (n > 0) {
        http_conn_read_cb(c);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    c->read_eof = true;
    http_conn_update_read(c);
    http_conn_event_cb(c->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), c);
}

/* Buffered input may be parseable now (the application resumed, or a
 * pipelined request waits): parse it on this loop pass. */
static void http_conn_reparse_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd, (void)what;
    if (c->bev)
        http_conn_read_cb(c);
}

/* A timeout of the current state. */
static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;

    http_conn_enter(c);
    if (c->state == HTTP_CONN_HEAD)
        http_conn_fail(c, 408, "request header timeout");
    else if (c->state != HTTP_CONN_WAIT)
        http_conn_drop(c);
    http_conn_leave(c);
}

/* True at the connection limit (none when it is 0 or less). */
static bool http_server_full(const struct http_server *s)
{
    int max = s->config.limits.max_connections;
    return max > 0 && s->open >= (size_t)max;
}

/* Listen again if we stopped at the connection limit or after an error. */
static void http_server_resume(struct http_server *s)
{
    if (s->accepting || evtimer_pending(s->retry, NULL) || http_server_full(s))
        return;
    for (size_t i = 0; i < s->n_listeners; i++)
        evconnlistener_enable(s->listeners[i]);
    s->accepting = true;
}

/* Stop taking new connections on every listening socket. */
static void http_server_pause(struct http_server *s)
{
    for (size_t i = 0; i < s->n_listeners; i++)
        evconnlistener_disable(s->listeners[i]);
    s->accepting = false;
}

/* One connection stopped counting (closed or detached). */
static void http_server_conn_gone(struct http_server *s)
{
    s->open--;
    http_server_resume(s);
}

/* Close the socket; the record stays while an answer is owed. */
static void http_conn_close_socket(struct http_conn *c)
{
    if (!c->bev)
        return;
    c->gone = true;
    http_conn_free_reader(c);
    bufferevent_free(c->bev);
    c->bev = NULL;
    event_del(c->timer);
    if (c->server)
        http_server_conn_gone(c->server);
    http_conn_check_done(c);
}

/* Note the address the client connected to (the guard accepts it as a Host:
 * a server bound to 0.0.0.0 is reached under each of its addresses). */
static void http_conn_local_format(struct http_conn *c, evutil_socket_t fd,
                                   const struct sockaddr *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    c->local[0] = '\0';
    if (!c->config.guard || (peer->sa_family != AF_INET && peer->sa_family != AF_INET6))
        return;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        http_peer_format((struct sockaddr *)&ss, c->local, sizeof c->local);
}

/* Set up a connection for an accepted socket; NULL (FD closed) on failure. */
static struct http_conn *http_conn_new(struct http_server *s, evutil_socket_t fd,
                                       const struct sockaddr *sa)
{
    struct http_conn *c = xcalloc(1, sizeof *c);
    int one = 1;

    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        log_warn("http: cannot set up a connection");
        close(fd);
        free(c);
        return NULL;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->server = s;
    c->config = s->config;
    c->tv_header = s->tv_header;
    c->tv_idle = s->tv_idle;
    c->tv_linger = s->tv_linger;
    c->timer = evtimer_new(s->base, http_conn_timer_cb, c);
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, http_conn_recv_cb, c);
    c->reparse = event_new(s->base, -1, 0, http_conn_reparse_cb, c);
    c->drained = event_new(s->base, -1, 0, http_conn_drained_cb, c);
    c->req.body = evbuffer_new();
    http_peer_format(sa, c->peer, sizeof c->peer);
    http_peer_name_format(sa, c->peer, c->peer_name, sizeof c->peer_name);
    http_conn_local_format(c, fd, sa);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    http_conn_reset_request(c);
    bufferevent_setcb(c->bev, NULL, http_conn_write_cb, http_conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, HTTP_OUTPUT_LOW, 0);
    /* A client that takes none of our output for the idle time is dropped
     * (only counts while output waits, like nginx's send_timeout). */
    bufferevent_set_timeouts(c->bev, NULL, s->tv_idle);
    /* EV_WRITE (on by default) only while output waits; see http_conn_flush. */
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    http_conn_update_read(c);
    LIST_INSERT_HEAD(&s->conns, c, entry);
    s->open++;
    http_conn_begin_head(c);
    return c;
}

/* Serve FD, accepted elsewhere, as a client at PEER that reached LOCAL. */
int http_server_adopt(struct http_server *s, int fd, const struct sockaddr *peer,
                      const struct sockaddr *local)
{
    if (util_set_nonblock_cloexec(fd) < 0) {
        close(fd);
        return -1;
    }
    struct http_conn *c = http_conn_new(s, fd, peer);
    if (!c)
        return -1;
    c->local[0] = '\0';
    if (c->config.guard && local && (local->sa_family == AF_INET || local->sa_family == AF_INET6))
        http_peer_format(local, c->local, sizeof c->local);
    if (http_server_full(s))
        http_server_pause(s);
    return 0;
}

/* A new client; stop listening at the connection limit. */
static void http_server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                                  struct sockaddr *sa, int socklen, void *arg)
{
    struct http_server *s = arg;
    (void)listener, (void)socklen;

    http_conn_new(s, fd, sa);
    if (http_server_full(s))
        http_server_pause(s);
}

/* accept() failed (out of descriptors, ...): pause instead of spinning. */
static void http_server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    struct http_server *s = arg;
    struct timeval tv = {0, HTTP_ACCEPT_RETRY_MS * 1000};

    (void)listener;
    log_warn("http: accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    http_server_pause(s);
    evtimer_add(s->retry, &tv);
}

/* The pause after an accept error is over. */
static void http_server_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_server_resume(arg);
}

/* A shared timeout queue for DURATION_MS on BASE. */
static const struct timeval *http_common_timeout(struct event_base *base, int duration_ms)
{
    struct timeval tv = {duration_ms / 1000, (duration_ms % 1000) * 1000};
    return duration_ms > 0 ? event_base_init_common_timeout(base, &tv) : NULL;
}

/* Serve HTTP on LISTEN_FD (already bound and listening; made non-blocking). */
struct http_server *http_server_new(struct event_base *base, int listen_fd,
                                    const struct http_server_config *config)
{
    if (!config->on_request)
        return NULL;
    struct http_server *s = xcalloc(1, sizeof *s);
    s->base = base;
    s->config = *config;
    LIST_INIT(&s->conns);
    s->accepting = true;
    if (listen_fd >= 0 && http_server_listen(s, listen_fd) < 0) {
        free(s);
        return NULL;
    }
    s->retry = evtimer_new(base, http_server_retry_cb, s);
    s->tv_header = http_common_timeout(base, config->limits.header_timeout_ms);
    s->tv_idle = http_common_timeout(base, config->limits.idle_timeout_ms);
    s->tv_linger = http_common_timeout(base, HTTP_LINGER_MS);
    /* http_parser's own limit (80 KiB) must not cut in before ours. */
    if (config->limits.max_header_bytes >= 80 * 1024)
        http_parser_set_max_header_size((uint32_t)config->limits.max_header_bytes + 1024);
    return s;
}

int http_server_listen(struct http_server *s, int listen_fd)
{
    if (s->n_listeners == HTTP_LISTENERS_MAX || util_set_nonblock_cloexec(listen_fd) < 0)
        return -1;
    unsigned flags = LEV_OPT_CLOSE_ON_EXEC | (s->config.borrow_fds ? 0 : LEV_OPT_CLOSE_ON_FREE);
    struct evconnlistener *l =
        evconnlistener_new(s->base, http_server_accept_cb, s, flags, 0, listen_fd);
    if (!l)
        return -1;
    evconnlistener_set_error_cb(l, http_server_accept_error_cb);
    if (!s->accepting) /* paused at the connection limit or after an error */
        evconnlistener_disable(l);
    s->listeners[s->n_listeners++] = l;
    return 0;
}

/* Close the listeners (unless borrowed) and every connection, detached ones
 * excepted. */
void http_server_free(struct http_server *s)
{
    struct http_conn *c;

    if (!s)
        return;
    for (size_t i = 0; i < s->n_listeners; i++)
        evconnlistener_free(s->listeners[i]);
    event_free(s->retry);
    while ((c = LIST_FIRST(&s->conns))) {
        LIST_REMOVE(c, entry);
        c->server = NULL;
        c->gone = true;
        c->answered = true;
        if (c->bev) {
            bufferevent_free(c->bev);
            c->bev = NULL;
        }
        http_conn_release(c);
    }
    free(s);
}

/* Number of open (not detached) connections. */
size_t http_server_connections(const struct http_server *s)
{
    return s->open;
}

/* True when CONN has a request whose answer has not started. */
static bool http_conn_answerable(const struct http_conn *c)
{
    if (c->head_done && !c->answered && !c->streaming && !c->detached)
        return true;
    log_warn("http: answer without a pending request");
    return false;
}

/* Answer the current request. */
void http_respond(struct http_conn *c, int status, const char *content_type, const void *body,
                  size_t len, const char *extra_headers)
{
    if (!http_conn_answerable(c))
        return;
    if (c->bev && !c->gone)
        http_conn_send(c, status, content_type, body, len, extra_headers);
    http_conn_answered(c);
}

/* Answer with JSON (steals the reference to BODY). */
void http_respond_json(struct http_conn *c, int status, json_t *body, const char *extra_headers)
{
    size_t len;
    char *text = json_dump_compact(body, &len);
    json_decref(body);
    http_respond(c, status, "application/json", text, len, extra_headers);
    free(text);
}

/* Answer {"detail": DETAIL} with STATUS. */
void http_respond_error(struct http_conn *c, int status, const char *detail,
                        const char *extra_headers)
{
    http_respond_json(c, status, json_detail(detail), extra_headers);
}

/* Start a streamed answer; the caller's HEAD_LINES carry the framing. */
void http_respond_stream_begin(struct http_conn *c, int status, const char *reason,
                               const char *head_lines)
{
    if (!http_conn_answerable(c))
        return;
    c->streaming = true;
    if (!c->bev || c->gone)
        return;
    bool bodyless = status < 200 || status == 204 || status == 304 || c->req.method_id == HTTP_HEAD;
    if (!bodyless && !http_lines_have(head_lines, "content-length:") &&
        !http_lines_have(head_lines, "transfer-encoding:"))
        c->close_after = true; /* the body ends when the connection does */
    const char *connection = "";
    if (!http_lines_have(head_lines, "connection:"))
        connection =
            http_conn_decide_close(c) ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
    char cors[HTTP_CORS_MAX] = "";
    if (c->cors_origin)
        guard_cors_headers(cors, sizeof cors, c->cors_origin, false);
    evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 %d %s\r\n%s%s%s\r\n", status,
                        reason ? reason : http_status_reason(status), head_lines ? head_lines : "",
                        cors, connection);
    http_conn_kick(c);
}

/* More bytes of a streamed answer, sent as given. */
void http_respond_stream_write(struct http_conn *c, const void *data, size_t len)
{
    if (c->streaming && c->bev && !c->gone) {
        evbuffer_add(bufferevent_get_output(c->bev), data, len);
        http_conn_kick(c);
    }
}

/* Like http_respond_stream_write, but DATA is not copied: it is referenced
 * until sent, then CLEANUP(DATA, LEN, ARG) runs (at once when not queued). */
void http_respond_stream_write_ref(struct http_conn *c, const void *data, size_t len,
                                   void (*cleanup)(const void *, size_t, void *), void *arg)
{
    if (!c->streaming || !c->bev || c->gone ||
        evbuffer_add_reference(bufferevent_get_output(c->bev), data, len, cleanup, arg) != 0) {
        cleanup(data, len, arg);
        return;
    }
    http_conn_kick(c);
}

/* Finish a streamed answer; with CLOSE the connection closes once flushed. */
void http_respond_stream_end(struct http_conn *c, bool close)
{
    if (!c->streaming)
        return;
    if (close)
        c->close_after = true;
    http_conn_answered(c);
}

/* Bytes queued towards the client and not yet sent. */
size_t http_conn_output_pending(const struct http_conn *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

int http_conn_fd(const struct http_conn *c)
{
    return c->bev && !c->gone && !c->detached ? (int)bufferevent_getfd(c->bev) : -1;
}

/* Called each time the output queue has drained below its low-water mark. */
void http_conn_set_drain_cb(struct http_conn *c, http_conn_cb cb, void *arg)
{
    c->drain_cb = cb;
    c->drain_arg = arg;
}

/* Deliver the current request's body to CB (only from on_headers). */
void http_conn_stream_body(struct http_conn *c, http_body_cb cb, void *arg, size_t limit)
{
    if (!c->in_on_headers) {
        log_warn("http: http_conn_stream_body outside on_headers");
        return;
    }
    c->body_cb = cb;
    c->body_arg = arg;
    if (limit > c->body_limit)
        c->body_limit = limit;
}

/* Stop/restart reading from the client. */
void http_conn_pause_read(struct http_conn *c, bool paused)
{
    if (!c->bev || c->state == HTTP_CONN_CLOSING || c->read_paused == paused)
        return;
    c->read_paused = paused;
    http_conn_update_read(c);
    if (paused) {
        if (c->state == HTTP_CONN_BODY)
            http_conn_arm(c, NULL);
        return;
    }
    if (c->state == HTTP_CONN_BODY)
        http_conn_arm(c, c->tv_idle);
    event_active(c->reparse, EV_TIMEOUT, 0);
}

/* Called once if the client goes away while a request is being answered. */
void http_conn_set_close_cb(struct http_conn *c, http_conn_cb cb, void *arg)
{
    c->close_cb = cb;
    c->close_arg = arg;
}

/* True once the client went away. */
bool http_conn_is_closed(const struct http_conn *c)
{
    return c->gone;
}

/* Close the socket now, output still queued included (a stream's reader
 * that fell too far behind); the close callback follows. */
void http_conn_abort(struct http_conn *c)
{
    if (c->gone || c->detached)
        return;
    http_conn_enter(c);
    http_conn_drop(c);
    http_conn_leave(c);
}

/* Close the connection once the current answer is sent. */
void http_conn_close_after(struct http_conn *c)
{
    c->close_after = true;
}

/* Client address, e.g. "127.0.0.1". */
const char *http_conn_peer(const struct http_conn *c)
{
    return c->peer;
}

/* Client address and port, e.g. "127.0.0.1:50312" or "[::1]:50312". */
const char *http_conn_peer_name(const struct http_conn *c)
{
    return c->peer_name;
}

/* Hand the connection over (Upgrade): its bufferevent, bare (callbacks,
 * timeouts and watermarks cleared, reading and writing enabled), with any bytes that
 * followed the request still in its input. NULL when the client is gone. */
struct bufferevent *http_conn_detach(struct http_conn *c)
{
    struct bufferevent *bev = c->bev;

    if (!c->head_done || c->answered || c->detached) {
        log_warn("http: detach without a pending request");
        return NULL;
    }
    if (!bev || c->gone) {
        /* The client left meanwhile: this counts as the (dropped) answer. */
        c->streaming = false;
        c->answered = true;
        http_conn_check_done(c);
        return NULL;
    }
    c->undrained += c->head_lf;
    http_conn_drain(c);
    http_conn_free_reader(c);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
    /* From here the bufferevent reads too (its new owner's callbacks). */
    bufferevent_enable(bev, c->read_eof ? EV_WRITE : EV_READ | EV_WRITE);
    event_del(c->timer);
    c->bev = NULL;
    c->detached = true;
    c->answered = true;
    c->gone = true;
    if (c->server)
        http_server_conn_gone(c->server);
    http_conn_release(c);
    return bev;
}
