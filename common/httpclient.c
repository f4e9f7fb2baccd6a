/*
 * httpclient: owns the client's name lookups and its calls (see
 * httpclient.h); the connections, their pools (one per host:port, and TLS
 * context for https) and their reuse are httpconn.c's, the layer the proxy
 * uses too.
 *
 * A call goes: lookup (evdns, or none for a numeric address) -> an idle
 * connection of its pool, or a new one (to the server's private socket
 * first, when the request names one) -> the request written (one send()
 * when the connection is up) -> the response fed to http-parser where it
 * was read -> done. A connection goes back to its pool only when the
 * response was complete and both sides said keep-alive; a call that met a
 * pooled connection the server had closed, before any byte of answer, is
 * retried once on a fresh one (the server may close an idle connection at
 * any time; RFC 9112 §9.3.1). Results of a lookup are always handed over
 * from the loop, so no callback ever runs inside httpclient_send().
 *
 * One timer per call bounds lookup plus connect (and a TLS handshake); the
 * connection's read timeout bounds the server's silence afterwards. A
 * callback may cancel its own call (or others): a call busy in a callback
 * is only marked, and freed when the callback returns.
 */
#include "common/httpclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "common/httpconn.h"
#include "common/util.h"

#define HTTPCLIENT_IDLE_MAX 32            /* idle connections kept per host:port */
#define HTTPCLIENT_IDLE_MS 30000          /* a pooled connection is closed after this */
#define HTTPCLIENT_CONNECT_MS 10000       /* default connect timeout */
#define HTTPCLIENT_READ_MS 30000          /* default read timeout of collected calls */
#define HTTPCLIENT_MAX_BODY (1024 * 1024) /* default bound of a collected body */

struct httpclient_lookup {
    LIST_ENTRY(httpclient_lookup) entry;
    struct httpclient *hc;
    struct evdns_getaddrinfo_request *req; /* while evdns works on it */
    struct event *deliver;                 /* hands the result over from the loop */
    bool cancelled;
    bool orphan; /* its client is gone: out of every list */
    httpclient_resolved_cb cb;
    void *arg;
    int err;
    char why[160];
    struct sockaddr_storage addr;
    socklen_t len;
    int port;
};

struct httpclient_call {
    LIST_ENTRY(httpclient_call) entry;
    struct httpclient *hc;
    struct httpconn_pool *pool; /* held while the call lives */
    struct httpconn *conn;
    struct httpclient_lookup *lookup;
    struct httpclient_callbacks cb;
    void *arg;
    char *method, *host, *path, *headers, *body, *local, *name;
    size_t body_len, max_body;
    int port;
    struct ssl_ctx_st *tls;
    struct timeval read_tv, connect_tv;
    bool has_read_tv;
    struct event *deadline; /* lookup + connect; also delivers early failures */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    http_parser parser;
    struct evbuffer *collected;
    int status;
    bool bad_status; /* a status line without a real code (under 100) */
    bool head_seen, complete, keep_alive, answered, reused, retried, connected;
    bool fresh; /* never an idle connection (httpclient_request.fresh) */
    bool sent;  /* a connection was up with the request on it (never cleared) */
    bool busy, cancelled;
    char why[200]; /* an early failure, delivered by DEADLINE */
};

struct httpclient {
    struct event_base *base;
    struct evdns_base *dns;
    struct httpconn_set *conns;
    bool own_conns; /* made by httpclient_new(), freed with the client */
    LIST_HEAD(, httpclient_call) calls;
    LIST_HEAD(, httpclient_lookup) lookups;
    struct util_buf request; /* a request laid out before it is sent */
};

static void httpclient_call_start(struct httpclient_call *call);
static void httpclient_call_fail(struct httpclient_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- name lookups ------------------------------------------------------ */

/* Free LK (its evdns request is over). */
static void httpclient_lookup_free(struct httpclient_lookup *lk)
{
    if (!lk->orphan)
        LIST_REMOVE(lk, entry);
    event_free(lk->deliver);
    free(lk);
}

/* Hand LK's result to its owner, from the loop. */
static void httpclient_lookup_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpclient_lookup *lk = arg;
    (void)fd, (void)what;
    httpclient_resolved_cb cb = lk->cb;
    void *cb_arg = lk->arg;
    int err = lk->err;
    char why[sizeof lk->why];
    struct sockaddr_storage addr = lk->addr;
    socklen_t len = lk->len;
    memcpy(why, lk->why, sizeof why);
    httpclient_lookup_free(lk);
    cb(err, why, (struct sockaddr *)&addr, len, cb_arg);
}

/* evdns answered (possibly inside evdns_getaddrinfo itself). */
static void httpclient_lookup_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct httpclient_lookup *lk = arg;
    lk->req = NULL;
    if (lk->cancelled) {
        if (res)
            evutil_freeaddrinfo(res);
        httpclient_lookup_free(lk);
        return;
    }
    if (result != 0 || !res || res->ai_addrlen > sizeof lk->addr) {
        lk->err = -1;
        snprintf(lk->why, sizeof lk->why, "cannot resolve: %s",
                 result ? evutil_gai_strerror(result) : "no address");
    } else {
        memcpy(&lk->addr, res->ai_addr, res->ai_addrlen);
        lk->len = (socklen_t)res->ai_addrlen;
        if (res->ai_family == AF_INET6)
            ((struct sockaddr_in6 *)&lk->addr)->sin6_port = htons((uint16_t)lk->port);
        else
            ((struct sockaddr_in *)&lk->addr)->sin_port = htons((uint16_t)lk->port);
    }
    if (res)
        evutil_freeaddrinfo(res);
    event_active(lk->deliver, EV_TIMEOUT, 1);
}

/* Resolve HOST:PORT without blocking. */
struct httpclient_lookup *httpclient_resolve(struct httpclient *hc, const char *host, int port,
                                             httpclient_resolved_cb cb, void *arg)
{
    struct httpclient_lookup *lk = xcalloc(1, sizeof *lk);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    lk->hc = hc;
    lk->cb = cb;
    lk->arg = arg;
    lk->port = port;
    lk->deliver = evtimer_new(hc->base, httpclient_lookup_deliver_cb, lk);
    LIST_INSERT_HEAD(&hc->lookups, lk, entry);
    if (!hc->dns) {
        lk->err = -1;
        snprintf(lk->why, sizeof lk->why, "cannot resolve: no resolver");
        event_active(lk->deliver, EV_TIMEOUT, 1);
        return lk;
    }
    /* The callback may run before this returns (numeric addresses, hosts
     * file); it then only arms DELIVER. */
    lk->req = evdns_getaddrinfo(hc->dns, host, NULL, &hints, httpclient_lookup_cb, lk);
    return lk;
}

/* Cancel LK: its callback never runs. */
void httpclient_lookup_cancel(struct httpclient_lookup *lk)
{
    if (!lk)
        return;
    if (lk->req) { /* evdns calls back once more, with EVUTIL_EAI_CANCEL */
        lk->cancelled = true;
        evdns_getaddrinfo_cancel(lk->req);
        return;
    }
    httpclient_lookup_free(lk);
}

/* ---- calls ---------------------------------------------------------------- */

/* Free CALL and whatever it still holds (its connection is closed). */
static void httpclient_call_free(struct httpclient_call *call)
{
    LIST_REMOVE(call, entry);
    httpclient_lookup_cancel(call->lookup);
    httpconn_close(call->conn);
    httpconn_pool_release(call->pool);
    event_free(call->deadline);
    evbuffer_free(call->collected);
    free(call->method);
    free(call->host);
    free(call->path);
    free(call->headers);
    free(call->body);
    free(call->local);
    free(call->name);
    free(call);
}

/* End CALL with one done callback: ERR 0 (a response) or -1 with WHY. A
 * kept-alive connection goes back to its pool first. */
static void httpclient_call_end(struct httpclient_call *call, int err, const char *why)
{
    if (call->conn && err == 0 && call->keep_alive) {
        httpconn_put(call->conn);
        call->conn = NULL;
    }
    size_t len = evbuffer_get_length(call->collected);
    const char *body = len ? (const char *)evbuffer_pullup(call->collected, -1) : "";
    call->answered = true;
    call->busy = true;
    if (call->cb.done)
        call->cb.done(err, why ? why : "", call->status, body, len, call->arg);
    httpclient_call_free(call);
}

/* End CALL with a failure; the reason is formatted. */
static void httpclient_call_fail(struct httpclient_call *call, const char *fmt, ...)
{
    char why[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    httpclient_call_end(call, -1, why);
}

/* Deliver a failure recorded before the loop ran (DEADLINE fired at once),
 * or the connect deadline passed. */
static void httpclient_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpclient_call *call = arg;
    (void)fd, (void)what;
    if (call->why[0])
        httpclient_call_fail(call, "%s", call->why);
    else
        httpclient_call_fail(call, "timeout connecting to %s:%d", call->host, call->port);
}

/* http-parser: the response head is in. */
static int httpclient_on_headers_complete(http_parser *p)
{
    struct httpclient_call *call = p->data;
    call->status = p->status_code;
    if (call->status < 100) {
        call->bad_status = true; /* no head to give, so no body either */
        return -1;
    }
    if (call->status >= 100 && call->status < 200 && call->status != 101)
        return 1; /* an interim answer: it ends with its head (RFC 9110 §15.2,
                   * whatever length it claims), the real one follows */
    call->head_seen = true;
    if (call->cb.head) {
        call->busy = true;
        call->cb.head(call->status, call->arg);
        call->busy = false;
        if (call->cancelled)
            return -1;
    }
    return strcmp(call->method, "HEAD") == 0 ? 1 : 0;
}

/* http-parser: a piece of the body. */
static int httpclient_on_body(http_parser *p, const char *at, size_t len)
{
    struct httpclient_call *call = p->data;
    if (!call->head_seen)
        return -1; /* no body comes before the final answer's head */
    if (call->cb.chunk) {
        call->busy = true;
        call->cb.chunk(at, len, call->arg);
        call->busy = false;
        return call->cancelled ? -1 : 0;
    }
    if (evbuffer_get_length(call->collected) + len > call->max_body)
        return -1;
    evbuffer_add(call->collected, at, len);
    return 0;
}

/* http-parser: the response is complete (interim ones are skipped). */
static int httpclient_on_message_complete(http_parser *p)
{
    struct httpclient_call *call = p->data;
    if (!call->head_seen)
        return 0;
    call->complete = true;
    call->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1); /* bytes after it are not ours */
    return 0;
}

static const http_parser_settings httpclient_settings = {
    .on_headers_complete = httpclient_on_headers_complete,
    .on_body = httpclient_on_body,
    .on_message_complete = httpclient_on_message_complete,
};

/* Feed LEN bytes of response; -1 when the call was ended or cancelled. */
static int httpclient_call_feed(struct httpclient_call *call, const char *data, size_t len)
{
    size_t used = http_parser_execute(&call->parser, &httpclient_settings, data, len);
    if (call->cancelled) {
        httpclient_call_free(call);
        return -1;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&call->parser);
    if (call->complete) {
        if (used < len)
            call->keep_alive = false; /* the server said more than it was asked */
        httpclient_call_end(call, 0, NULL);
        return -1;
    }
    if (e != HPE_OK) {
        if (call->bad_status)
            httpclient_call_fail(call, "bad response: status %d", call->status);
        else if (!call->cb.chunk && evbuffer_get_length(call->collected) + len > call->max_body)
            httpclient_call_fail(call, "response body over %zu bytes", call->max_body);
        else
            httpclient_call_fail(call, "bad response: %s", http_errno_description(e));
        return -1;
    }
    return 0;
}

/* The connection is up (and, with TLS, the handshake done): the connect
 * deadline is over, the server's silence is bounded from here. */
static void httpclient_call_connected(struct httpclient_call *call)
{
    call->connected = true;
    call->sent = true; /* the request is queued before, or written right after */
    evtimer_del(call->deadline);
    httpconn_watch(call->conn, call->has_read_tv ? &call->read_tv : NULL);
}

/* The server's bytes, parsed where they were read. */
static void httpclient_conn_data(struct httpconn *conn, const char *data, size_t len, void *arg)
{
    struct httpclient_call *call = arg;
    (void)conn;
    call->answered = true; /* a byte came: never retried */
    httpclient_call_feed(call, data, len);
}

/* The request went out: the first time, the connection is up. */
static void httpclient_conn_written(struct httpconn *conn, size_t pending, void *arg)
{
    struct httpclient_call *call = arg;
    (void)conn, (void)pending;
    if (!call->connected)
        httpclient_call_connected(call);
}

/* Closed, failed or timed out. */
static void httpclient_conn_ended(struct httpconn *conn, const struct httpconn_end *end, void *arg)
{
    struct httpclient_call *call = arg;
    (void)conn;
    if (end->eof && call->head_seen) {
        /* A body delimited by the close ends here. */
        if (httpclient_call_feed(call, NULL, 0) < 0)
            return;
    }
    if (call->reused && !call->answered && !call->retried && !end->timeout) {
        /* A kept-alive connection the server had closed: once more, fresh. */
        httpconn_close(call->conn);
        call->conn = NULL;
        call->retried = true;
        call->connected = false;
        evtimer_add(call->deadline, &call->connect_tv);
        httpclient_call_start(call);
        return;
    }
    if (end->tls)
        httpclient_call_fail(call, "TLS with %s:%d: %s", call->host, call->port, end->tls);
    else if (end->timeout)
        httpclient_call_fail(call, "timeout (%s)", call->head_seen ? "reading" : "waiting");
    else if (end->eof)
        httpclient_call_fail(call, "connection closed by %s:%d", call->host, call->port);
    else
        httpclient_call_fail(call, "%s:%d: %s", call->host, call->port,
                             evutil_socket_error_to_string(end->err));
}

static const struct httpconn_handler httpclient_conn_handler = {
    .data = httpclient_conn_data,
    .written = httpclient_conn_written,
    .ended = httpclient_conn_ended,
};

/* Lay out CALL's request and send it on its connection. */
static void httpclient_call_write(struct httpclient_call *call)
{
    struct util_buf *b = &call->hc->request;
    char length[64];
    b->len = 0;
    util_buf_add(b, call->method, strlen(call->method));
    util_buf_add(b, " ", 1);
    util_buf_add(b, call->path, strlen(call->path));
    util_buf_add(b, " HTTP/1.1\r\nHost: ", 17);
    const char *host = httpconn_pool_host(call->pool);
    util_buf_add(b, host, strlen(host));
    util_buf_add(b, "\r\n", 2);
    if (call->headers)
        util_buf_add(b, call->headers, strlen(call->headers));
    if (call->body || strcmp(call->method, "GET") != 0) {
        int n = snprintf(length, sizeof length, "Content-Length: %zu\r\n", call->body_len);
        util_buf_add(b, length, (size_t)n);
    }
    util_buf_add(b, "\r\n", 2);
    if (call->body_len)
        util_buf_add(b, call->body, call->body_len);
    http_parser_init(&call->parser, HTTP_RESPONSE);
    call->parser.data = call;
    httpconn_send(call->conn, b->data, b->len);
}

/* Open a new connection for CALL to its resolved address. */
static void httpclient_call_connect(struct httpclient_call *call)
{
    char err[200];
    call->conn = httpconn_open(call->pool, (struct sockaddr *)&call->addr, call->addrlen,
                               &httpclient_conn_handler, call, err, sizeof err);
    if (!call->conn)
        return httpclient_call_fail(call, "connect to %s:%d: %s", call->host, call->port, err);
    call->reused = false;
    httpclient_call_write(call);
    if (!httpconn_connecting(call->conn))
        httpclient_call_connected(call);
}

/* The lookup for CALL is done. */
static void httpclient_call_resolved(int err, const char *why, const struct sockaddr *addr,
                                     socklen_t len, void *arg)
{
    struct httpclient_call *call = arg;
    call->lookup = NULL;
    if (err)
        return httpclient_call_fail(call, "%s: %s", call->host, why);
    memcpy(&call->addr, addr, len);
    call->addrlen = len;
    httpclient_call_connect(call);
}

/* Start (or retry) CALL: an idle connection of its pool, else a new one. */
static void httpclient_call_start(struct httpclient_call *call)
{
    call->conn = call->retried || call->fresh
                     ? NULL
                     : httpconn_take(call->pool, &httpclient_conn_handler, call);
    if (call->conn) {
        call->reused = true;
        httpclient_call_connected(call);
        httpclient_call_write(call);
        return;
    }
    if (call->addrlen) {
        httpclient_call_connect(call);
        return;
    }
    call->lookup =
        httpclient_resolve(call->hc, call->host, call->port, httpclient_call_resolved, call);
}

/* Start REQ. */
struct httpclient_call *httpclient_send(struct httpclient *hc, const struct httpclient_request *req,
                                        const struct httpclient_callbacks *cb, void *arg)
{
    struct httpclient_call *call = xcalloc(1, sizeof *call);
    int cms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTPCLIENT_CONNECT_MS;
    int rms = req->read_timeout_ms > 0 ? req->read_timeout_ms
              : req->stream            ? 0
                                       : HTTPCLIENT_READ_MS;
    call->hc = hc;
    call->cb = *cb;
    if (!req->stream)
        call->cb.chunk = NULL, call->cb.head = NULL;
    call->arg = arg;
    call->method = xstrdup(req->method ? req->method : "GET");
    call->host = xstrdup(req->host ? req->host : "");
    call->port = req->port;
    call->path = xstrdup(req->path ? req->path : "/");
    call->headers = req->headers ? xstrdup(req->headers) : NULL;
    call->local = req->local && *req->local ? xstrdup(req->local) : NULL;
    if (req->body) {
        call->body = xmalloc(req->body_len + 1);
        memcpy(call->body, req->body, req->body_len);
        call->body_len = req->body_len;
    }
    call->max_body = req->max_body ? req->max_body : HTTPCLIENT_MAX_BODY;
    call->has_read_tv = rms > 0;
    call->read_tv = (struct timeval){rms / 1000, rms % 1000 * 1000};
    call->collected = evbuffer_new();
    call->deadline = evtimer_new(hc->base, httpclient_deadline_cb, call);
    LIST_INSERT_HEAD(&hc->calls, call, entry);
    call->tls = req->tls;
    call->name = req->name && *req->name ? xstrdup(req->name) : NULL;
    call->fresh = req->fresh;
    if (!*call->host || call->port < 1 || call->port > 65535) {
        snprintf(call->why, sizeof call->why, "bad address %s:%d", call->host, call->port);
        event_active(call->deadline, EV_TIMEOUT, 1);
        return call;
    }
    char authority[UTIL_AUTHORITY_MAX], host[UTIL_AUTHORITY_MAX];
    util_authority(authority, sizeof authority, call->host, call->port);
    if (call->name)
        util_authority(host, sizeof host, call->name, call->port);
    struct httpconn_dest dest = {.authority = authority,
                                 .host = call->name ? host : NULL,
                                 .local = call->local,
                                 .tls = call->tls,
                                 .tls_host = call->name ? call->name : call->host};
    call->pool = httpconn_pool_get(hc->conns, &dest);
    call->connect_tv = (struct timeval){cms / 1000, cms % 1000 * 1000};
    evtimer_add(call->deadline, &call->connect_tv);
    httpclient_call_start(call);
    return call;
}

/* End CALL without a callback. */
void httpclient_cancel(struct httpclient_call *call)
{
    if (!call)
        return;
    if (call->busy) { /* inside one of its callbacks: freed when it returns */
        call->cancelled = true;
        call->cb = (struct httpclient_callbacks){0};
        return;
    }
    httpclient_call_free(call);
}

/* Whether CALL's request may have reached the server. */
bool httpclient_call_sent(const struct httpclient_call *call)
{
    return call->sent;
}

/* ---- the client ------------------------------------------------------------ */

struct httpclient *httpclient_new(struct event_base *base, struct httpconn_set *conns)
{
    struct httpclient *hc = xcalloc(1, sizeof *hc);
    hc->base = base;
    hc->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!hc->dns) /* no resolv.conf: the hosts file and numeric addresses still work */
        hc->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (hc->dns)
        evdns_base_load_hosts(hc->dns, NULL);
    hc->own_conns = conns == NULL;
    if (!conns) {
        struct httpconn_limits lim = {.idle_max = HTTPCLIENT_IDLE_MAX,
                                      .idle_timeout_ms = HTTPCLIENT_IDLE_MS};
        conns = httpconn_set_new(base, &lim);
    }
    hc->conns = conns;
    LIST_INIT(&hc->calls);
    LIST_INIT(&hc->lookups);
    return hc;
}

void httpclient_free(struct httpclient *hc)
{
    if (!hc)
        return;
    while (!LIST_EMPTY(&hc->calls))
        httpclient_call_free(LIST_FIRST(&hc->calls));
    if (hc->own_conns)
        httpconn_set_free(hc->conns);
    /* A lookup evdns still works on gets one more callback (cancelled),
     * which frees it: it leaves our list now. */
    struct httpclient_lookup *lk;
    while ((lk = LIST_FIRST(&hc->lookups))) {
        if (lk->req) {
            LIST_REMOVE(lk, entry);
            lk->orphan = lk->cancelled = true;
            evdns_getaddrinfo_cancel(lk->req);
        } else {
            httpclient_lookup_free(lk);
        }
    }
    if (hc->dns)
        evdns_base_free(hc->dns, 1);
    free(hc->request.data);
    free(hc);
}

size_t httpclient_idle(const struct httpclient *hc)
{
    return httpconn_set_idle(hc->conns);
}

unsigned long httpclient_opened(const struct httpclient *hc)
{
    return httpconn_set_opened(hc->conns);
}
