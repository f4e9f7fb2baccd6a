/*
 * httpconn: owns pools of client connections and the connections
 * themselves (see httpconn.h): their sockets, events, output queues, the
 * TLS bufferevents of https ones, and the idle state between requests.
 *
 * A connection is, at any time, either held by one user (its bytes, drains
 * and end go to that user's handler) or idle in its pool (anything it
 * says, and its idle timeout, close it). The same event callbacks serve both
 * states, so taking a connection from the pool or putting it back changes
 * no callback and, for a plain one, no event but its read timeout.
 *
 * A pool is found by its key (authority, Host, private socket, TLS context
 * and name) in a table, so a set of 1,000 destinations finds each at the cost of one. It
 * is freed once nobody holds it and no connection of it is left, so a
 * worker restarted onto a new private socket leaves no pool behind.
 */
#include "common/httpconn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "common/strmap.h"
#include "common/tls.h"
#include "common/util.h"

#define HTTPCONN_READ_MAX (64 * 1024) /* bytes read from a server at a time */

/* The connections to one destination. */
struct httpconn_pool {
    LIST_ENTRY(httpconn_pool) entry;
    struct httpconn_set *set;
    char *key;
    char *authority;
    char *host; /* of its requests */
    char *tls_host;
    SSL_CTX *tls;
    struct sockaddr_storage addr;
    socklen_t addrlen; /* 0: none of its own */
    struct sockaddr_storage local_addr;
    socklen_t local_len; /* 0: no private socket */
    TAILQ_HEAD(httpconn_list, httpconn) idle;
    size_t n_idle;
    size_t n_conns; /* idle or held */
    size_t refs;    /* users holding the pool */
};

/* One connection: idle in its pool, or held by a user. */
struct httpconn {
    TAILQ_ENTRY(httpconn) entry;
    struct httpconn_pool *pool;
    int fd;                  /* -1 once BEV carries it */
    struct event *rev;       /* readable (or its timeout), armed while watched */
    struct event *wev;       /* writable, armed while OUT holds bytes or connecting */
    struct evbuffer *out;    /* bytes the socket has not taken yet */
    struct bufferevent *bev; /* TLS: carries the connection once TCP is up */
    const struct timeval *rev_tv;
    const struct httpconn_handler *h; /* its holder's callbacks (NULL while idle) */
    void *arg;
    unsigned long holds; /* times it was handed to a user */
    bool idle;           /* in its pool's idle list */
    bool watched;        /* reading is on */
    bool connected;      /* TCP is up */
    bool ready;          /* and, for TLS, the handshake is done */
    bool reused;
    bool local;
    bool delivering; /* inside the TLS read loop: a close is deferred */
    bool doomed;     /* closed while delivering */
};

struct httpconn_set {
    struct event_base *base;
    struct httpconn_limits lim;
    const struct timeval *idle_tv, *io_tv; /* common timeouts of BASE; IO_TV NULL: none */
    struct timeval idle_plain, io_plain;   /* the same for bufferevents */
    LIST_HEAD(, httpconn_pool) pools;
    struct strmap *by_key;
    size_t n_idle;
    unsigned long opened;
    char scratch[HTTPCONN_READ_MAX]; /* what one read brings */
};

static void httpconn_read_cb(evutil_socket_t fd, short what, void *arg);
static void httpconn_write_cb(evutil_socket_t fd, short what, void *arg);

/* ---- the set --------------------------------------------------------------- */

/* MS as a timeval. */
static struct timeval httpconn_tv(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

struct httpconn_set *httpconn_set_new(struct event_base *base, const struct httpconn_limits *lim)
{
    struct httpconn_set *set = xcalloc(1, sizeof *set);
    set->base = base;
    set->lim = *lim;
    set->idle_plain = httpconn_tv(lim->idle_timeout_ms > 0 ? lim->idle_timeout_ms : 1000);
    set->io_plain = httpconn_tv(lim->io_timeout_ms);
    /* Common timeouts: re-arming one costs a list move, not a heap update. */
    set->idle_tv = event_base_init_common_timeout(base, &set->idle_plain);
    set->io_tv =
        lim->io_timeout_ms > 0 ? event_base_init_common_timeout(base, &set->io_plain) : NULL;
    LIST_INIT(&set->pools);
    set->by_key = strmap_new();
    return set;
}

static void httpconn_free(struct httpconn *conn);
static void httpconn_pool_free(struct httpconn_pool *pool);

void httpconn_set_free(struct httpconn_set *set)
{
    struct httpconn_pool *pool;
    if (!set)
        return;
    while ((pool = LIST_FIRST(&set->pools))) {
        pool->refs++; /* freed here, not as its last idle connection goes */
        httpconn_pool_flush(pool);
        httpconn_pool_free(pool);
    }
    strmap_free(set->by_key);
    free(set);
}

size_t httpconn_set_idle(const struct httpconn_set *set)
{
    return set->n_idle;
}

unsigned long httpconn_set_opened(const struct httpconn_set *set)
{
    return set->opened;
}

/* ---- pools ----------------------------------------------------------------- */

/* Take POOL out of its set and free it. */
static void httpconn_pool_free(struct httpconn_pool *pool)
{
    LIST_REMOVE(pool, entry);
    strmap_remove(pool->set->by_key, pool->key);
    free(pool->key);
    free(pool->authority);
    free(pool->host);
    free(pool->tls_host);
    if (pool->tls)
        SSL_CTX_free(pool->tls);
    free(pool);
}

/* Free POOL once nobody holds it and it has no connection left. */
static void httpconn_pool_check(struct httpconn_pool *pool)
{
    if (pool->refs == 0 && pool->n_conns == 0)
        httpconn_pool_free(pool);
}

struct httpconn_pool *httpconn_pool_get(struct httpconn_set *set, const struct httpconn_dest *dest)
{
    const char *local = dest->local ? dest->local : "";
    const char *tls_host = dest->tls_host ? dest->tls_host : "";
    const char *host = dest->host && *dest->host ? dest->host : dest->authority;
    char *key = dest->tls ? xasprintf("%s|%s|%s|%p|%s", dest->authority, host, local,
                                      (void *)dest->tls, tls_host)
                          : xasprintf("%s|%s|%s", dest->authority, host, local);
    struct httpconn_pool *pool = strmap_get(set->by_key, key);
    if (pool) {
        free(key);
    } else {
        pool = xcalloc(1, sizeof *pool);
        pool->set = set;
        pool->key = key;
        pool->authority = xstrdup(dest->authority);
        pool->host = xstrdup(host);
        /* Its own reference: the context stays while the pool does, even
         * after its maker (a remote bot redefined) let go of it; and its
         * address, part of the key, cannot be reused meanwhile. */
        if (dest->tls)
            SSL_CTX_up_ref(dest->tls);
        pool->tls = dest->tls;
        pool->tls_host = dest->tls ? xstrdup(tls_host) : NULL;
        pool->local_len = util_local_addr(local, &pool->local_addr);
        TAILQ_INIT(&pool->idle);
        LIST_INSERT_HEAD(&set->pools, pool, entry);
        strmap_put(set->by_key, key, pool);
    }
    if (pool->addrlen == 0 && dest->addr && dest->addrlen <= sizeof pool->addr) {
        memcpy(&pool->addr, dest->addr, dest->addrlen);
        pool->addrlen = dest->addrlen;
    }
    pool->refs++;
    return pool;
}

void httpconn_pool_release(struct httpconn_pool *pool)
{
    if (!pool)
        return;
    pool->refs--;
    httpconn_pool_check(pool);
}

void httpconn_pool_flush(struct httpconn_pool *pool)
{
    pool->refs++; /* not freed under the loop by its last idle connection */
    while (!TAILQ_EMPTY(&pool->idle))
        httpconn_close(TAILQ_FIRST(&pool->idle));
    pool->refs--;
    httpconn_pool_check(pool);
}

const char *httpconn_pool_host(const struct httpconn_pool *pool)
{
    return pool->host;
}

/* ---- connections: life ----------------------------------------------------- */

/* Take CONN out of its pool's idle list. */
static void httpconn_unidle(struct httpconn *conn)
{
    struct httpconn_pool *pool = conn->pool;
    TAILQ_REMOVE(&pool->idle, conn, entry);
    pool->n_idle--;
    pool->set->n_idle--;
    conn->idle = false;
}

/* Free CONN (out of the idle list already) and close its socket. */
static void httpconn_free(struct httpconn *conn)
{
    struct httpconn_pool *pool = conn->pool;
    if (conn->rev)
        event_free(conn->rev);
    if (conn->wev)
        event_free(conn->wev);
    if (conn->out)
        evbuffer_free(conn->out);
    if (conn->bev)
        bufferevent_free(conn->bev);
    else if (conn->fd >= 0)
        close(conn->fd);
    free(conn);
    pool->n_conns--;
    httpconn_pool_check(pool);
}

void httpconn_close(struct httpconn *conn)
{
    if (!conn)
        return;
    if (conn->idle)
        httpconn_unidle(conn);
    if (conn->delivering) { /* the TLS read loop frees it when the user returns */
        conn->doomed = true;
        return;
    }
    httpconn_free(conn);
}

/* Tell CONN's holder it ended (an idle connection just closes). */
static void httpconn_end(struct httpconn *conn, const struct httpconn_end *end)
{
    if (conn->idle) {
        httpconn_close(conn);
        return;
    }
    conn->h->ended(conn, end, conn->arg);
}

/* Hand CONN to the user H with ARG. */
static void httpconn_hold(struct httpconn *conn, const struct httpconn_handler *h, void *arg)
{
    conn->h = h;
    conn->arg = arg;
    conn->holds++;
}

struct httpconn *httpconn_take(struct httpconn_pool *pool, const struct httpconn_handler *h,
                               void *arg)
{
    struct httpconn *conn = TAILQ_FIRST(&pool->idle);
    if (!conn)
        return NULL;
    httpconn_unidle(conn);
    conn->reused = true;
    httpconn_hold(conn, h, arg);
    return conn;
}

/* Start connecting a new socket of FAMILY to ADDR: the socket, or -1 with
 * errno; *RC is connect()'s result. */
static int httpconn_socket(int family, const struct sockaddr *addr, socklen_t len, int *rc)
{
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *rc = connect(fd, addr, len);
    return fd;
}

/* Connect to POOL's private socket; -1 (with the reason in ERR) when it is
 * gone or its backlog is full (a Unix connect says EAGAIN where TCP would
 * wait). */
static int httpconn_connect_local(struct httpconn_pool *pool, char *err, size_t errlen)
{
    int rc = -1;
    int fd = httpconn_socket(AF_UNIX, (struct sockaddr *)&pool->local_addr, pool->local_len, &rc);
    if (fd >= 0 && rc == 0)
        return fd;
    snprintf(err, errlen, "private socket: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* A record for the socket FD of POOL, connected already or not (CONNECTED). */
static struct httpconn *httpconn_new(struct httpconn_pool *pool, int fd, bool connected)
{
    struct httpconn_set *set = pool->set;
    struct httpconn *conn = xcalloc(1, sizeof *conn);
    conn->pool = pool;
    conn->fd = fd;
    conn->connected = connected;
    conn->out = evbuffer_new();
    conn->rev = event_new(set->base, fd, EV_READ | EV_PERSIST, httpconn_read_cb, conn);
    conn->wev = event_new(set->base, fd, EV_WRITE | EV_PERSIST, httpconn_write_cb, conn);
    pool->n_conns++;
    if (!conn->out || !conn->rev || !conn->wev) {
        httpconn_free(conn);
        return NULL;
    }
    set->opened++;
    return conn;
}

static void httpconn_tls_start(struct httpconn *conn);

struct httpconn *httpconn_open(struct httpconn_pool *pool, const struct sockaddr *addr,
                               socklen_t addrlen, const struct httpconn_handler *h, void *arg,
                               char *err, size_t errlen)
{
    int fd = -1, rc = 0;
    err[0] = '\0';
    if (pool->local_len)
        fd = httpconn_connect_local(pool, err, errlen);
    bool local = fd >= 0;
    if (!local) {
        if (!addr) {
            addr = (struct sockaddr *)&pool->addr;
            addrlen = pool->addrlen;
        }
        if (addrlen == 0) {
            snprintf(err, errlen, "no address for %s", pool->authority);
            return NULL;
        }
        fd = httpconn_socket(addr->sa_family, addr, addrlen, &rc);
        if (fd < 0 || (rc < 0 && errno != EINPROGRESS)) {
            snprintf(err, errlen, "%s", strerror(errno));
            if (fd >= 0)
                close(fd);
            return NULL;
        }
    }
    /* TLS starts from the writing event even when TCP is up at once: the
     * holder hears of a failure from the loop, never in here. */
    struct httpconn *conn = httpconn_new(pool, fd, rc == 0 && !pool->tls);
    if (!conn) {
        snprintf(err, errlen, "out of resources");
        return NULL;
    }
    conn->local = local;
    conn->ready = conn->connected;
    httpconn_hold(conn, h, arg);
    if (!conn->connected)
        event_add(conn->wev, pool->set->io_tv); /* writable once connected, or failed */
    return conn;
}

void httpconn_put(struct httpconn *conn)
{
    struct httpconn_pool *pool = conn->pool;
    struct httpconn_set *set = pool->set;
    if (!conn->ready || httpconn_pending(conn) > 0 || pool->n_idle >= set->lim.idle_max) {
        httpconn_close(conn);
        return;
    }
    conn->h = NULL;
    conn->arg = NULL;
    conn->idle = true;
    TAILQ_INSERT_HEAD(&pool->idle, conn, entry);
    pool->n_idle++;
    set->n_idle++;
    /* Its reading stays on: an idle connection that becomes readable was
     * closed by the server (or speaks out of turn). */
    if (conn->bev) {
        conn->watched = false;
        conn->rev_tv = NULL;
        bufferevent_set_timeouts(conn->bev, &set->idle_plain, NULL);
        bufferevent_enable(conn->bev, EV_READ);
    } else {
        httpconn_watch(conn, set->idle_tv);
    }
}

struct bufferevent *httpconn_detach(struct httpconn *conn)
{
    struct bufferevent *bev = conn->bev;
    if (bev) {
        /* TLS: its bufferevent goes as it is, quiet until the new owner
         * sets it up; what it read and did not deliver yet stays in its
         * input. Called from DATA, the read loop stops at the close. */
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        bufferevent_set_timeouts(bev, NULL, NULL);
        conn->bev = NULL;
    } else if (conn->fd >= 0) {
        event_del(conn->rev);
        event_del(conn->wev);
        bev = bufferevent_socket_new(conn->pool->set->base, conn->fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev)
            conn->fd = -1;
    }
    if (bev)
        evbuffer_add_buffer(bufferevent_get_output(bev), conn->out);
    httpconn_close(conn);
    return bev;
}

/* ---- connections: plain I/O -------------------------------------------------- */

void httpconn_send(struct httpconn *conn, const void *data, size_t len)
{
    if (conn->bev) {
        bufferevent_write(conn->bev, data, len);
        return;
    }
    if (conn->connected && evbuffer_get_length(conn->out) == 0) {
        ssize_t n = send(conn->fd, data, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return;
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        }
    }
    /* The rest waits for the writing event, which also reports a failed
     * socket. */
    evbuffer_add(conn->out, data, len);
    if (!event_pending(conn->wev, EV_WRITE, NULL))
        event_add(conn->wev, conn->pool->set->io_tv);
}

struct evbuffer *httpconn_output(struct httpconn *conn)
{
    return conn->bev ? bufferevent_get_output(conn->bev) : conn->out;
}

void httpconn_flush(struct httpconn *conn)
{
    if (conn->bev || !conn->connected || evbuffer_get_length(conn->out) == 0 ||
        event_pending(conn->wev, EV_WRITE, NULL))
        return;
    evbuffer_write(conn->out, conn->fd);
    if (evbuffer_get_length(conn->out) > 0)
        event_add(conn->wev, conn->pool->set->io_tv); /* also the path for errors */
}

size_t httpconn_pending(const struct httpconn *conn)
{
    return evbuffer_get_length(conn->bev ? bufferevent_get_output(conn->bev) : conn->out);
}

void httpconn_watch(struct httpconn *conn, const struct timeval *tv)
{
    if (conn->watched && conn->rev_tv == tv)
        return;
    conn->rev_tv = tv;
    conn->watched = true;
    if (conn->bev) {
        bufferevent_set_timeouts(conn->bev, tv,
                                 conn->pool->set->io_tv ? &conn->pool->set->io_plain : NULL);
        bufferevent_enable(conn->bev, EV_READ);
    } else {
        event_add(conn->rev, tv);
    }
}

void httpconn_pause(struct httpconn *conn)
{
    if (!conn->watched)
        return;
    conn->watched = false;
    if (conn->bev)
        bufferevent_disable(conn->bev, EV_READ);
    else
        event_del(conn->rev);
}

void httpconn_resume(struct httpconn *conn)
{
    if (!conn->watched)
        httpconn_watch(conn, conn->rev_tv);
}

/* The socket is readable: one recv() goes to the holder. Anything on an
 * idle connection (its EOF, bytes out of turn, the idle timeout) ends it. */
static void httpconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpconn *conn = arg;
    struct httpconn_end end = {0};
    if (conn->idle) {
        httpconn_close(conn);
        return;
    }
    if (what & EV_TIMEOUT) {
        end.timeout = true;
        conn->h->ended(conn, &end, conn->arg);
        return;
    }
    char *buf = conn->pool->set->scratch;
    ssize_t n = recv(fd, buf, HTTPCONN_READ_MAX, 0);
    if (n > 0) {
        conn->h->data(conn, buf, (size_t)n, conn->arg);
    } else if (n == 0) {
        end.eof = true;
        conn->h->ended(conn, &end, conn->arg);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        end.err = errno;
        conn->h->ended(conn, &end, conn->arg);
    }
}

/* The socket is writable: the connect is done (or failed), and queued bytes
 * go on. */
static void httpconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpconn *conn = arg;
    struct httpconn_end end = {0};
    socklen_t errlen = sizeof end.err;
    if (what & EV_TIMEOUT) {
        end.timeout = true;
        httpconn_end(conn, &end);
        return;
    }
    if (!conn->connected) {
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &end.err, &errlen) < 0)
            end.err = errno;
        if (end.err) {
            httpconn_end(conn, &end);
            return;
        }
        conn->connected = true;
        if (conn->pool->tls) {
            httpconn_tls_start(conn);
            return;
        }
        conn->ready = true;
    }
    if (evbuffer_get_length(conn->out) > 0 && evbuffer_write(conn->out, fd) < 0 &&
        errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        end.err = errno;
        httpconn_end(conn, &end);
        return;
    }
    size_t pending = evbuffer_get_length(conn->out);
    if (pending == 0)
        event_del(conn->wev);
    if (!conn->idle && conn->h->written)
        conn->h->written(conn, pending, conn->arg);
}

/* ---- connections: TLS ---------------------------------------------------------- */

/* The TLS bufferevent has bytes: each piece to the holder, through the
 * scratch buffer, while it holds the connection. */
static void httpconn_tls_read_cb(struct bufferevent *bev, void *arg)
{
    struct httpconn *conn = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned long holds = conn->holds;
    int n;
    if (conn->idle) {
        httpconn_close(conn);
        return;
    }
    /* The holder may put the connection back, or close it, from DATA. */
    conn->delivering = true;
    while (!conn->idle && conn->holds == holds && !conn->doomed &&
           (n = evbuffer_remove(in, conn->pool->set->scratch, HTTPCONN_READ_MAX)) > 0)
        conn->h->data(conn, conn->pool->set->scratch, (size_t)n, conn->arg);
    conn->delivering = false;
    if (conn->doomed)
        httpconn_free(conn);
    else if (conn->idle && evbuffer_get_length(in) > 0)
        httpconn_close(conn); /* idle, with bytes out of turn */
}

/* The TLS bufferevent's output drained. */
static void httpconn_tls_write_cb(struct bufferevent *bev, void *arg)
{
    struct httpconn *conn = arg;
    (void)bev;
    if (!conn->idle && conn->h->written)
        conn->h->written(conn, 0, conn->arg);
}

/* The handshake is done, or the connection ended. */
static void httpconn_tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct httpconn *conn = arg;
    struct httpconn_end end = {0};
    char text[200];
    if (what & BEV_EVENT_CONNECTED) {
        conn->ready = true;
        if (!conn->idle && conn->h->written)
            conn->h->written(conn, httpconn_pending(conn), conn->arg);
        return;
    }
    unsigned long tls_err = bufferevent_get_openssl_error(bev);
    end.eof = (what & BEV_EVENT_EOF) != 0;
    end.timeout = (what & BEV_EVENT_TIMEOUT) != 0;
    end.err = EVUTIL_SOCKET_ERROR();
    if (tls_err) {
        ERR_error_string_n(tls_err, text, sizeof text);
        end.tls = text;
    }
    httpconn_end(conn, &end);
}

/* TCP is up on a TLS connection: from here a bufferevent carries it, with
 * what was queued and the reading as the holder asked for it. */
static void httpconn_tls_start(struct httpconn *conn)
{
    struct httpconn_set *set = conn->pool->set;
    struct httpconn_end end = {.err = ENOMEM, .tls = "cannot set up TLS"};
    SSL *ssl = tls_client_ssl(conn->pool->tls, conn->pool->tls_host);
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(set->base, conn->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (!bev) {
        if (ssl)
            SSL_free(ssl);
        httpconn_end(conn, &end);
        return;
    }
    /* A body delimited by the close may end without close_notify. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    event_del(conn->rev);
    event_del(conn->wev);
    conn->bev = bev;
    conn->fd = -1;
    evbuffer_add_buffer(bufferevent_get_output(bev), conn->out);
    bufferevent_setcb(bev, httpconn_tls_read_cb, httpconn_tls_write_cb, httpconn_tls_event_cb,
                      conn);
    /* Read during the handshake (OpenSSL asks for it anyway), bounded as
     * the holder asked when it did. */
    if (!conn->watched)
        conn->rev_tv = NULL;
    conn->watched = true;
    bufferevent_set_timeouts(bev, conn->rev_tv, set->io_tv ? &set->io_plain : NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- connections: state ---------------------------------------------------------- */

bool httpconn_connecting(const struct httpconn *conn)
{
    return !conn->ready;
}

bool httpconn_reused(const struct httpconn *conn)
{
    return conn->reused;
}

bool httpconn_is_local(const struct httpconn *conn)
{
    return conn->local;
}
