/*
 * proxy: the supervisor's reverse proxy to its workers (SPEC §6.3). It owns
 * the upstream side of every proxied request: each bot's route to a pool of
 * kept-alive HTTP/1.1 connections (common/httpconn.h, shared with
 * httpclient), the exchanges that stream a request body up and a response
 * back with back-pressure both ways, and the byte tunnels that WebSocket
 * upgrades become once the worker has answered 101. The front door
 * (front.h) decides what may be proxied and where to; this file only moves
 * bytes, and answers 502 when the worker cannot be reached.
 */
#ifndef HIVE_PROXY_H
#define HIVE_PROXY_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/http.h"

struct proxy;
struct httpconn_set;
struct ssl_ctx_st;

/* Where one request goes. Strings are copied or used before proxy_forward()
 * returns, except PATH and QUERY, which must stay valid while the request is
 * (they normally point into the request itself). */
struct proxy_target {
    const char *bot_id;
    const char *host; /* the worker's numeric address (never resolved here); wildcards
                       * mean loopback */
    int port;
    const char *local;      /* NULL/"", or the worker's private abstract Unix socket:
                             * connected to instead of HOST:PORT while it takes us */
    struct ssl_ctx_st *tls; /* NULL, or TLS to HOST:PORT with this context (an https://
                             * remote bot; common/tls.h) */
    const char *name;       /* NULL, or the name HOST was resolved from (a remote bot's url
                             * host): the Host sent is NAME:PORT, and with TLS its
                             * certificate must show NAME */
    const char *path;       /* the worker's path, starting with '/' */
    const char *query;      /* NULL or the query without '?'; "token" is dropped */
    const char *token;      /* NULL, or the bearer token sent to the worker */
    bool https;             /* the client came over TLS (hive.tls): X-Forwarded-Proto https */
};

/* A proxy on BASE, drawing its worker connections from CONNS, or from a set
 * of its own when NULL. MAX_BODY is the largest request body accepted (413
 * beyond it); IDLE_TIMEOUT_MS is the clients' idle limit, which a client
 * that stops reading an answer may take, and (halved, with a set of its
 * own) how long a pooled connection waits, below the workers' own. */
struct proxy *proxy_new(struct event_base *base, struct httpconn_set *conns, size_t max_body,
                        int idle_timeout_ms);
/* Tear down every exchange and tunnel, and the pooled connections when the
 * set is its own. */
void proxy_free(struct proxy *proxy);
/* The set its worker connections come from, for another client of the
 * workers (pooltask) to share; valid until proxy_free(). */
struct httpconn_set *proxy_conns(const struct proxy *proxy);

/* Forward the request whose head just arrived on CONN (call it from the
 * server's on_headers callback: the body is streamed, and on_request must
 * then leave the request alone). An Upgrade request gets a connection of its
 * own and, once the worker answers 101, becomes a tunnel. Every outcome,
 * errors included, answers the request exactly once. */
void proxy_forward(struct proxy *proxy, struct http_conn *conn, struct http_request *req,
                   const struct proxy_target *target);

/* Requests being forwarded and tunnels open (for tests and logs). */
size_t proxy_exchanges(const struct proxy *proxy);
size_t proxy_tunnels(const struct proxy *proxy);

/* Status codes 100..100+PROXY_CODES-1 are counted. */
#define PROXY_CODES 500
/* Requests the proxy answered with CODE (the worker's status, or its own
 * 400/413/502/503), for hive_proxy_requests_total. */
unsigned long proxy_requests(const struct proxy *proxy, int code);

#endif
