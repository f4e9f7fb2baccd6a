/*
 * http: HTTP/1.1 server connections over libevent bufferevents, parsed with
 * http-parser. It owns accepting, limits and timeouts (SPEC §7), keep-alive,
 * pipelining (requests are handed to the application strictly one at a time
 * per connection, so answers stay in order), Expect: 100-continue, and the one
 * place where response bytes are formatted. It knows nothing of routes: every
 * complete request goes to one callback, which must answer it exactly once,
 * synchronously or later, with http_respond*(), a stream, or http_conn_detach()
 * (Upgrade hand-off to WebSocket or a raw tunnel). Before any callback, the
 * server's guard (guard.h) judges the request's Host and Origin.
 */
#ifndef HIVE_HTTP_H
#define HIVE_HTTP_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <stdint.h>

#include "common/guard.h"

struct http_server;
struct http_conn;

/* Limits and timeouts; http_limits_default() gives SPEC §7's values. */
struct http_limits {
    size_t max_header_bytes; /* request line + headers: 16 KiB, else 431 */
    size_t max_body;         /* 1 MiB, else 413 */
    int header_timeout_ms;   /* 10 s to send a whole request head, else 408 */
    int idle_timeout_ms;     /* 60 s without a request on a kept-alive connection */
    int max_connections;     /* 1024; beyond it new connections wait in the backlog */
};

struct http_header {
    char *name;
    char *value;
};

/* One parsed request. Owned by the connection; valid until it is answered. */
struct http_request {
    const char *method; /* "GET", "POST", ... */
    int method_id;      /* enum http_method of http_parser */
    char *target;       /* the raw request target, as sent */
    char *path;         /* the path part of TARGET (no query), not decoded */
    char *query;        /* what followed '?', or NULL */
    int version_major;
    int version_minor;
    struct http_header *headers;
    size_t n_headers;
    struct evbuffer *body; /* the whole body (empty when streamed) */
    bool keep_alive;       /* the connection may carry another request */
    bool upgrade;          /* Connection: upgrade + Upgrade: were sent */
    const char *peer;      /* client address, "127.0.0.1" */

    /* The body's framing as the parser reads it; header names are plain
     * RFC 7230 tokens (others are refused), so no header says otherwise. */
    bool chunked;           /* Transfer-Encoding: chunked */
    int64_t content_length; /* Content-Length, or -1 when none was sent */
};

typedef void (*http_request_cb)(struct http_conn *conn, struct http_request *req, void *arg);
typedef void (*http_body_cb)(struct http_conn *conn, const void *data, size_t len, bool last,
                             void *arg);
typedef void (*http_conn_cb)(struct http_conn *conn, void *arg);

struct http_server_config {
    struct http_limits limits;
    /* A complete request (body buffered in req->body). Required. */
    http_request_cb on_request;
    /* Optional: the head of a request is complete. The callback may call
     * http_conn_stream_body(); then body bytes go to its callback as they come
     * and on_request is called right here, before the body. */
    http_request_cb on_headers;
    void *arg;
    /* The Host/Origin rule (guard.h), applied to every request before the
     * callbacks see it: refused ones get 403, a listed origin's preflight
     * 204, and every answer to a listed origin its CORS headers. Asked for
     * the policy at each request (with ARG), so a reloaded roster applies
     * at once. Both programs set it; NULL (unit tests of the layer) applies
     * no rule. */
    const struct guard_policy *(*guard)(void *arg);
    /* The listening sockets stay the caller's: http_server_free() stops
     * watching them but leaves them open (a socket served only for a while). */
    bool borrow_fds;
};

/* SPEC §7 defaults. */
void http_limits_default(struct http_limits *limits);

/* Serve HTTP on LISTEN_FD (already bound and listening; made non-blocking),
 * or on no socket of its own when LISTEN_FD is -1 (a TLS acceptor hands it
 * its connections with http_server_adopt). */
struct http_server *http_server_new(struct event_base *base, int listen_fd,
                                    const struct http_server_config *config);
/* Serve on LISTEN_FD too (another listening socket: a Unix one beside the
 * TCP port, say). 0, or -1 when it cannot be watched (the fd stays the
 * caller's then). Closed with the server. */
int http_server_listen(struct http_server *server, int listen_fd);
/* Serve FD, a connected stream socket accepted elsewhere (the plain end of
 * a TLS relay), as a client at PEER that reached LOCAL: the guard and
 * X-Forwarded-For see those addresses, not the relay's. 0, or -1 with FD
 * closed. */
int http_server_adopt(struct http_server *server, int fd, const struct sockaddr *peer,
                      const struct sockaddr *local);
/* Close the listeners (unless borrowed) and every connection, detached ones
 * excepted. */
void http_server_free(struct http_server *server);
/* Number of open (not detached) connections. */
size_t http_server_connections(const struct http_server *server);

/* Case-insensitive lookup of the first header named NAME; NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);
/* The percent-decoded value of query parameter NAME, or NULL; caller frees. */
char *http_query_param(const char *query, const char *name);
/* True when TOKEN is NULL/empty, or the request carries "Authorization: Bearer
 * TOKEN", (for WebSocket clients) "?token=TOKEN" or (for the pages, after
 * their login) the cookie "hive_token=TOKEN". Constant-time compare. */
bool http_request_token_ok(const struct http_request *req, const char *token);
/* True when GIVEN equals SECRET, in time that depends only on their lengths. */
bool http_token_equal(const char *given, const char *secret);
/* The standard reason phrase for STATUS ("OK", "Not Found", ...). */
const char *http_status_reason(int status);

/* Answer the current request. EXTRA_HEADERS is NULL or complete header lines
 * ("Retry-After: 1\r\n"). Content-Length, Date, Server and Connection are
 * added here. HEAD requests get no body. */
void http_respond(struct http_conn *conn, int status, const char *content_type, const void *body,
                  size_t len, const char *extra_headers);
/* Answer with JSON (steals the reference to BODY). */
void http_respond_json(struct http_conn *conn, int status, json_t *body, const char *extra_headers);
/* Answer {"detail": DETAIL} with STATUS. */
void http_respond_error(struct http_conn *conn, int status, const char *detail,
                        const char *extra_headers);

/* Streaming answer (the proxy): HEAD_LINES are the header lines to send after
 * the status line, framing included (Content-Length or Transfer-Encoding:
 * chunked, which the caller then writes itself); Date/Server are not added.
 * Bytes written with http_respond_stream_write() go out as given. */
void http_respond_stream_begin(struct http_conn *conn, int status, const char *reason,
                               const char *head_lines);
void http_respond_stream_write(struct http_conn *conn, const void *data, size_t len);
/* The same without a copy: DATA stays valid until CLEANUP(DATA, LEN, ARG),
 * which runs once it is sent, or at once when it cannot be queued. */
void http_respond_stream_write_ref(struct http_conn *conn, const void *data, size_t len,
                                   void (*cleanup)(const void *, size_t, void *), void *arg);
/* Finish the answer; with CLOSE the connection is closed once flushed. */
void http_respond_stream_end(struct http_conn *conn, bool close);
/* Bytes queued towards the client and not yet sent (for back-pressure). */
size_t http_conn_output_pending(const struct http_conn *conn);
/* The connection's socket, for a writer of its own (ssefan) while nothing is
 * queued here; -1 when it has none (closed, detached). */
int http_conn_fd(const struct http_conn *conn);
/* Called each time the output queue has drained below its low-water mark. */
void http_conn_set_drain_cb(struct http_conn *conn, http_conn_cb cb, void *arg);

/* Deliver the body of the current request to CB instead of buffering it
 * (only from on_headers). max_body still applies unless the caller passes
 * a larger LIMIT (0 = keep). */
void http_conn_stream_body(struct http_conn *conn, http_body_cb cb, void *arg, size_t limit);
/* Stop/restart reading from the client (back-pressure of a streamed body). */
void http_conn_pause_read(struct http_conn *conn, bool paused);
/* Called once if the client goes away while a request is being answered
 * asynchronously. The connection stays valid until that answer is given
 * (which is then dropped). */
void http_conn_set_close_cb(struct http_conn *conn, http_conn_cb cb, void *arg);
/* True once the client went away. */
bool http_conn_is_closed(const struct http_conn *conn);
/* Close the socket at once, dropping queued output (a stream reader too far
 * behind). The close callback is called; the answer must still be ended. */
void http_conn_abort(struct http_conn *conn);
/* Close the connection once the current answer is sent. */
void http_conn_close_after(struct http_conn *conn);
/* Client address, e.g. "127.0.0.1". */
const char *http_conn_peer(const struct http_conn *conn);
/* Client address and port for a log line: "127.0.0.1:50312", "[::1]:50312"
 * (a v4-mapped address as IPv4), or "local" (a Unix socket). */
const char *http_conn_peer_name(const struct http_conn *conn);

/* Write what BEV's output holds straight to its socket (one writev, no epoll
 * change) unless its write event is on already; what the socket does not
 * take is left to that event, enabled here (also the path for write errors).
 * For the owner of a detached connection that writes the same way. */
void http_bev_write_now(struct bufferevent *bev);

/* Hand the connection over (Upgrade). Returns its bufferevent with timeouts
 * and callbacks cleared and any bytes received after the request still in the
 * input buffer; the caller owns it. CONN and the request are freed. Only valid
 * on a request that was not answered. */
struct bufferevent *http_conn_detach(struct http_conn *conn);

#endif
