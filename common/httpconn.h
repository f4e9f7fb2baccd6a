/*
 * httpconn: client connections to HTTP/1.1 servers, pooled for reuse — the
 * one connection layer under both of the supervisor's clients, httpclient.c
 * (remote bots' health, events, metrics; pool tasks) and the proxy (supervisor/proxy.c).
 * It knows sockets, not HTTP: its users write their requests and parse the
 * answers themselves, and say when a connection may carry another request.
 *
 * A set holds pools, one per destination: the Host authority the requests
 * name, optionally a private abstract Unix socket tried before the TCP
 * address, optionally a TLS context and the name it verifies. Connections of one pool are
 * interchangeable. A pool keeps the idle ones (the most recently used is
 * taken first), at most idle_max of them, each for at most idle_timeout;
 * an idle connection the server closes, or that says anything out of turn,
 * is closed at once. Connecting is non-blocking and, like every wait to
 * write, bounded by io_timeout.
 *
 * A plain connection is a socket with two events rather than a bufferevent:
 * what is sent goes straight to send() when nothing waits before it, and
 * what arrives is read with one recv() into the set's scratch buffer and
 * handed to the user where it lies (a bufferevent would add an
 * ioctl(FIONREAD) and a copy through an evbuffer to every read). Its
 * reading event stays armed for the connection's whole life, in use or
 * idle, so reuse costs no epoll change; the writing event is armed only
 * while bytes wait or the connect is under way. A TLS connection is
 * connected the same way, then carried by libevent's OpenSSL bufferevent
 * (handshake, records and alerts are OpenSSL's business): its user sees the
 * same calls and callbacks, and its pool, limits and reuse are the same.
 *
 * Callbacks run from the loop, never inside a call of this API, and a
 * callback may close or put back its connection (nothing here touches it
 * after the callback returns).
 */
#ifndef HIVE_HTTPCONN_H
#define HIVE_HTTPCONN_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct bufferevent;
struct evbuffer;
struct ssl_ctx_st;
struct httpconn_set;
struct httpconn_pool;
struct httpconn;

/* How a set keeps its connections. */
struct httpconn_limits {
    size_t idle_max;     /* idle connections kept per pool */
    int idle_timeout_ms; /* an idle connection is closed after this */
    int io_timeout_ms;   /* bounds connecting and each wait to write; 0: none */
};

/* Where a pool's connections go. Strings are copied. */
struct httpconn_dest {
    const char *authority;       /* "host:port" ("[v6]:port") of the address: the pool's
                                  * identity, and the Host of its requests unless HOST */
    const char *host;            /* NULL, or the Host of its requests when the address was
                                  * resolved from a name: "name:port" (a server behind a
                                  * name may serve several, as virtual hosts) */
    const struct sockaddr *addr; /* NULL, or the TCP address new connections go to when
                                  * httpconn_open() is given none */
    socklen_t addrlen;           /* of ADDR */
    const char *local;           /* NULL/"", or an abstract Unix socket tried first; the
                                  * TCP address when it is gone or its backlog full */
    struct ssl_ctx_st *tls;      /* NULL: plain; else TLS with this context (tls.h), which
                                  * the pool holds a reference to while it lives */
    const char *tls_host;        /* with TLS: the name or address verified (and sent as SNI) */
};

/* Why a connection can no longer be read: the server closed it (EOF), a
 * timeout passed, or the socket (ERR, an errno) or TLS (its reason) failed. */
struct httpconn_end {
    bool eof;
    bool timeout;
    int err;
    const char *tls;
};

/* A user's callbacks for a connection it holds; ARG is the one given with it. */
struct httpconn_handler {
    /* LEN (> 0) bytes from the server, valid during the call only. */
    void (*data)(struct httpconn *conn, const char *data, size_t len, void *arg);
    /* The connection is up (TLS: the handshake is done) and queued bytes
     * went out; PENDING are left. NULL: not wanted. */
    void (*written)(struct httpconn *conn, size_t pending, void *arg);
    /* The connection ended (see struct httpconn_end); the user closes it. */
    void (*ended)(struct httpconn *conn, const struct httpconn_end *end, void *arg);
};

/* A set of pools on BASE with limits LIM. */
struct httpconn_set *httpconn_set_new(struct event_base *base, const struct httpconn_limits *lim);
/* Close every idle connection and free the set. Its users must have closed
 * or put back every connection they held, and released their pools. */
void httpconn_set_free(struct httpconn_set *set);
/* Idle connections in the set's pools, and connections it ever opened. */
size_t httpconn_set_idle(const struct httpconn_set *set);
unsigned long httpconn_set_opened(const struct httpconn_set *set);

/* The pool of DEST, made when new, held until httpconn_pool_release(). A
 * pool nobody holds lives on while it has connections. */
struct httpconn_pool *httpconn_pool_get(struct httpconn_set *set, const struct httpconn_dest *dest);
/* Let go of POOL (NULL is fine). */
void httpconn_pool_release(struct httpconn_pool *pool);
/* Close every idle connection of POOL (its destination moved away). */
void httpconn_pool_flush(struct httpconn_pool *pool);
/* The Host of POOL's requests (its dest's HOST, else its AUTHORITY). */
const char *httpconn_pool_host(const struct httpconn_pool *pool);

/* An idle connection of POOL for the caller (H and ARG), or NULL. It is
 * still read with the idle timeout until httpconn_watch() says otherwise. */
struct httpconn *httpconn_take(struct httpconn_pool *pool, const struct httpconn_handler *h,
                               void *arg);
/* A new connection of POOL, being connected: to its private socket when it
 * has one that takes us, else to ADDR (NULL: the pool's own address);
 * nothing is read until httpconn_watch(). NULL with the reason in ERR; on
 * success ERR is empty, or says why the private socket was passed over. */
struct httpconn *httpconn_open(struct httpconn_pool *pool, const struct sockaddr *addr,
                               socklen_t addrlen, const struct httpconn_handler *h, void *arg,
                               char *err, size_t errlen);
/* CONN's exchange is over and it may carry another: idle in its pool
 * (closed instead when the pool is full, or bytes still wait to go out). */
void httpconn_put(struct httpconn *conn);
/* Close CONN (NULL is fine). */
void httpconn_close(struct httpconn *conn);
/* Hand CONN over as a bufferevent with the bytes still queued (a plain
 * socket gets a new one; a TLS connection gives its own, callbacks cleared,
 * with what it read and did not deliver yet in its input); CONN is freed.
 * NULL (and CONN closed) on failure. */
struct bufferevent *httpconn_detach(struct httpconn *conn);

/* Queue LEN bytes of DATA: with nothing queued before them on a connected
 * socket they go straight out with one send(). */
void httpconn_send(struct httpconn *conn, const void *data, size_t len);
/* The queue itself, to add to without sending (valid until the loop runs
 * again); httpconn_flush() then writes it. */
struct evbuffer *httpconn_output(struct httpconn *conn);
void httpconn_flush(struct httpconn *conn);
/* Bytes queued that the socket has not taken yet. */
size_t httpconn_pending(const struct httpconn *conn);

/* Read CONN, its server silent at most TV (NULL: no limit; a common
 * timeout of the base is cheapest); nothing changes when that is armed. */
void httpconn_watch(struct httpconn *conn, const struct timeval *tv);
/* Stop reading CONN (back-pressure), and read it again as before. */
void httpconn_pause(struct httpconn *conn);
void httpconn_resume(struct httpconn *conn);

/* True while CONN's connect (or TLS handshake) is under way. */
bool httpconn_connecting(const struct httpconn *conn);
/* True when CONN came from its pool rather than from httpconn_open(). */
bool httpconn_reused(const struct httpconn *conn);
/* True when CONN goes over the pool's private Unix socket. */
bool httpconn_is_local(const struct httpconn *conn);

#endif
