/*
 * httpclient: an asynchronous HTTP/1.1 client on a libevent base, for the
 * supervisor's talks with remote bots (health checks, event streams, metric
 * scrapes) and the pool tasks it hands to workers. Names are resolved
 * without blocking (evdns_getaddrinfo; numeric addresses need no lookup),
 * connections are kept alive and reused per host:port and private socket
 * (httpconn.h: the connection layer the proxy draws on too, so a client on
 * the proxy's set shares its connections), every call has a connect and a
 * read timeout, and responses are parsed with http-parser. A call either
 * collects the whole body (bounded) or streams it to a callback as it
 * arrives (Server-Sent Events). HTTPS goes over libevent's OpenSSL
 * bufferevents with the peer verified. Every call ends with exactly one
 * done callback, unless cancelled first.
 */
#ifndef HIVE_HTTPCLIENT_H
#define HIVE_HTTPCLIENT_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct httpclient;
struct httpclient_call;
struct httpconn_set;
struct ssl_ctx_st;

/* One request. Strings are copied by httpclient_send(). */
struct httpclient_request {
    const char *method; /* "GET" when NULL */
    const char *host;   /* a name or a numeric address (IPv6 without brackets) */
    int port;
    const char *local;   /* NULL/"", or the server's private abstract Unix socket, tried
                          * before HOST:PORT (httpconn.h); its connections are pooled
                          * apart from HOST:PORT's own */
    const char *path;    /* with its query; "/" when NULL */
    const char *headers; /* NULL, or extra "Name: value\r\n" lines */
    const char *body;    /* NULL: none */
    size_t body_len;
    int connect_timeout_ms; /* resolving and connecting; 0: 10 s */
    int read_timeout_ms;    /* silence from the server; 0: none once streaming, else 30 s */
    size_t max_body;        /* a collected body over this fails the call; 0: 1 MiB */
    bool stream;            /* deliver the body to the chunk callback as it comes */
    bool fresh;             /* on a new connection, so never sent twice: a kept-alive one
                             * found closed is otherwise tried once more, fresh — for a
                             * request whose repeat is not harmless (a task) */
    struct ssl_ctx_st *tls; /* NULL: plain HTTP; else HTTPS with this context (tls.h),
                             * HOST's name or address verified */
    const char *name;       /* NULL, or the name HOST (an address) was resolved from: the
                             * request's Host is then NAME:PORT, and with TLS NAME is
                             * the name verified (and sent as SNI) instead of HOST */
};

/* The call ended: ERR 0 with the response's STATUS and (unless streamed)
 * BODY; or ERR -1 with WHY ("connect: Connection refused", "timeout", …).
 * BODY and WHY are valid during the callback only. The call is freed after
 * it returns. */
typedef void (*httpclient_done_cb)(int err, const char *why, int status, const char *body,
                                   size_t len, void *arg);
/* A streamed call's response head arrived (STATUS), then each piece of its body. */
typedef void (*httpclient_head_cb)(int status, void *arg);
typedef void (*httpclient_chunk_cb)(const char *data, size_t len, void *arg);

struct httpclient_callbacks {
    httpclient_done_cb done;
    httpclient_head_cb head;   /* streamed calls; may be NULL */
    httpclient_chunk_cb chunk; /* streamed calls */
};

/* A client on BASE (with its own evdns base for name lookups), drawing its
 * connections from CONNS, or from a set of its own when NULL. */
struct httpclient *httpclient_new(struct event_base *base, struct httpconn_set *conns);
/* Cancel every call (no callbacks) and close every connection it holds
 * (and the idle ones, when the set is its own). */
void httpclient_free(struct httpclient *hc);

/* Start REQ; the callbacks get ARG. Never NULL: a failure to even begin is
 * reported through DONE from the loop, never from inside this call. */
struct httpclient_call *httpclient_send(struct httpclient *hc, const struct httpclient_request *req,
                                        const struct httpclient_callbacks *cb, void *arg);
/* End CALL without any further callback (NULL is fine). Its connection is
 * closed, never reused. */
void httpclient_cancel(struct httpclient_call *call);
/* Whether CALL's request may have reached the server: a connection to it
 * was up with the request on it (a kept-alive one the server had closed
 * counts: the request may have been read before that). A call that failed
 * with this false never got to the server, so it is safe to send elsewhere;
 * one that failed with it true may have been acted upon. For done callbacks. */
bool httpclient_call_sent(const struct httpclient_call *call);

/* Connections idle in the pools of its set (for tests), and those ever
 * opened. */
size_t httpclient_idle(const struct httpclient *hc);
unsigned long httpclient_opened(const struct httpclient *hc);

/* The result of a name lookup: ERR 0 with ADDR (the port filled in), or -1
 * with WHY. */
typedef void (*httpclient_resolved_cb)(int err, const char *why, const struct sockaddr *addr,
                                       socklen_t len, void *arg);
struct httpclient_lookup;
/* Resolve HOST:PORT without blocking; CB runs from the loop (never inside
 * this call). Cancel with httpclient_lookup_cancel before ARG goes away. */
struct httpclient_lookup *httpclient_resolve(struct httpclient *hc, const char *host, int port,
                                             httpclient_resolved_cb cb, void *arg);
void httpclient_lookup_cancel(struct httpclient_lookup *lk);

#endif
