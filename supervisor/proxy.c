/*
 * proxy: forwards requests from the front door to the workers (SPEC §6.3).
 * It owns three kinds of object, each created and released here only:
 *
 * - routes (one per bot): the worker's address as the front gave it, and
 *   the pool of connections to it (common/httpconn.h, the connection layer
 *   httpclient.c draws on too: up to PROXY_IDLE_MAX idle kept-alive
 *   connections, dropped when the worker closes them or when they sit idle
 *   too long). When the bot's address changes on reload the route takes
 *   the pool of the new address and closes the idle ones of the old;
 * - exchanges (one per proxied request): a client request streamed up to a
 *   worker connection and the worker's response, parsed with http-parser,
 *   streamed back. Each direction stops reading when the other side's output
 *   is over PROXY_PENDING_HIGH and resumes once it drains. Exchange records
 *   and their buffers are recycled, so the steady state allocates nothing
 *   per request;
 * - tunnels: a WebSocket upgrade the worker accepted with 101 becomes a pair
 *   of bufferevents copying bytes both ways with the same back-pressure.
 *   When one side ends, the other still gets everything it said, then a
 *   half-close (close_notify on TLS); proxy_tunnel_free() is the one place
 *   that tears a tunnel down.
 *
 * A worker connection is httpconn's plain socket with two events: the
 * request head is laid out in one buffer and sent with one send(), and the
 * answer is read with one recv() into a scratch buffer and parsed where it
 * lies; the reading event stays armed for the connection's whole life,
 * pooled or not, so a kept-alive request costs no epoll change. Response
 * headers are sorted as they arrive: hop-by-hop ones and the worker's
 * framing are never stored. A connection that becomes a tunnel is handed to
 * a bufferevent then. An https:// remote bot's route carries its TLS
 * context and name, and its connections speak TLS themselves (httpconn's
 * OpenSSL bufferevent, which a tunnel then takes over as it is).
 *
 * The framing we send is always our own: the request goes up with the
 * client's Content-Length or re-chunked, as http.c's parser read them (never
 * from header strings read again here), the response comes back with the
 * worker's Content-Length or re-chunked (or, to HTTP/1.0 clients, delimited
 * by closing). A request whose framing is not known is never forwarded.
 */
#include "supervisor/proxy.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "common/httpconn.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/util.h"

#define PROXY_PENDING_HIGH (256 * 1024) /* stop reading the other side above this */
#define PROXY_PENDING_LOW (64 * 1024)   /* resume once the output is down to this */
#define PROXY_IDLE_MAX 256              /* idle connections kept per bot */
#define PROXY_SPARE_MAX 64              /* recycled exchange records kept */
#define PROXY_IO_TIMEOUT_S 30           /* a worker silent this long has failed */
#define PROXY_FLUSH_TIMEOUT_S 5         /* a closing tunnel flushes this long at most */
#define PROXY_LINGER_MS 2000            /* then waits this long for the peer's EOF */
#define PROXY_REASON_MAX 64             /* bytes of a status line's reason kept */
#define PROXY_WHOLE_MAX (64 * 1024)     /* answers up to this size are relayed whole */

/* How a message body is delimited. */
enum proxy_framing { PROXY_FRAME_NONE, PROXY_FRAME_LENGTH, PROXY_FRAME_CHUNKED };

/* Which part of a response head the parser is delivering. */
enum proxy_field { PROXY_FIELD_NONE, PROXY_FIELD_NAME, PROXY_FIELD_VALUE };

/* The header names the proxy treats specially, in either direction. */
enum proxy_header {
    PROXY_H_OTHER,          /* relayed as it is */
    PROXY_H_HOP,            /* hop-by-hop (RFC 9110 §7.6.1 and old kin): never relayed */
    PROXY_H_CONNECTION,     /* hop-by-hop, and names more hop-by-hop headers */
    PROXY_H_CONTENT_LENGTH, /* the framing is always our own */
    PROXY_H_HOST,           /* request: replaced by the worker's address */
    PROXY_H_AUTHORIZATION,  /* request: replaced by the hive's token */
    PROXY_H_EXPECT,         /* request: answered by http.c itself */
    PROXY_H_XFF,            /* request: X-Forwarded-For, extended */
    PROXY_H_XF_HOST,        /* request: X-Forwarded-Host, replaced */
    PROXY_H_XF_PROTO,       /* request: X-Forwarded-Proto, replaced */
    PROXY_H_ORIGIN,         /* request: dropped (judged at the door) */
    PROXY_H_DATE,           /* response: http_respond() adds its own to whole answers */
    PROXY_H_SERVER,         /* response: likewise */
};

/* One bot's address and the pool of connections to it. */
struct proxy_route {
    LIST_ENTRY(proxy_route) entry;
    struct proxy *proxy;
    char *bot_id;
    char *host; /* as the front gave it (the bot's bind address); NULL: none yet */
    int port;
    char *local;                           /* the worker's private abstract socket; "" when none */
    struct ssl_ctx_st *tls;                /* NULL, or TLS with this context */
    char *name;                            /* the name HOST was resolved from; "" when none */
    struct httpconn_pool *conns;           /* NULL until HOST is a numeric address */
    char authority[INET6_ADDRSTRLEN + 16]; /* the address: "127.0.0.1:8001" */
};

/* One proxied request and its response. */
struct proxy_exchange {
    LIST_ENTRY(proxy_exchange) entry; /* active or spare list */
    struct proxy *proxy;
    struct event *stall; /* the client has not drained our output for too long */
    /* Kept across recycling: growable buffers. */
    struct util_buf request; /* the request head going up */
    struct util_buf head;    /* the response's kept header lines, "Name: value\r\n" */
    struct util_buf aside;   /* its Date and Server lines */
    struct util_buf listed;  /* the values of its Connection headers, comma-joined */
    struct util_buf body;    /* a small answer's body, or a chunk being framed */
    struct util_buf token;
    unsigned char *kinds; /* enum proxy_header of each request header */
    size_t kinds_cap;
    /* Per request. */
    struct http_conn *conn; /* NULL once answered */
    struct http_request *req;
    struct proxy_route *route;
    struct httpconn *up; /* the worker connection */
    const char *path, *query;
    bool has_token;
    http_parser parser;
    char reason[PROXY_REASON_MAX];
    size_t reason_len;
    enum proxy_field field;
    enum proxy_header line_kind; /* of the response header being collected */
    size_t line_start;           /* where its line starts in HEAD */
    size_t value_start;          /* where its value starts in HEAD */
    enum proxy_framing req_framing;
    unsigned long long req_length;
    size_t received;    /* response bytes parsed */
    bool upgrade;       /* a WebSocket upgrade: own connection, may become a tunnel */
    bool https;         /* the client came over TLS: X-Forwarded-Proto says so */
    bool head_only;     /* a HEAD request: the response has no body */
    bool reused;        /* the connection came from the pool */
    bool body_sent;     /* some request body bytes went up */
    bool request_done;  /* the whole request went up */
    bool began;         /* the response head went to the client */
    bool rechunk;       /* the response body is re-chunked towards the client */
    bool whole;         /* a small answer, collected and relayed in one piece */
    bool interim;       /* parsing a 1xx interim response */
    bool switching;     /* the worker answered 101 */
    bool complete;      /* the response is complete */
    bool keep_alive;    /* the worker keeps the connection open */
    bool trailing;      /* the worker sent bytes after its answer */
    bool eof;           /* the worker closed its side */
    bool client_paused; /* we stopped reading the client */
    bool worker_paused; /* we stopped reading the worker */
};

/* An upgraded connection: bytes copied both ways. Once one side ends (the
 * "from" side), the tunnel closes towards the other: what "from" still has
 * to say is relayed and flushed, the other side is half-closed, and its
 * input is read and dropped until it closes too (a socket closed with
 * unread input sends a reset, which can cost the peer our last bytes). */
struct proxy_tunnel {
    LIST_ENTRY(proxy_tunnel) entry;
    struct proxy *proxy;
    struct bufferevent *bev[2]; /* the client, the worker */
    struct event *timer;        /* bounds the flush, then the linger */
    int from;                   /* -1, or the side that ended */
    bool from_done;             /* nothing more to read from it */
    bool peer_eof;              /* the other side closed too */
    bool lingering;             /* the other side is half-closed */
};

struct proxy {
    struct event_base *base;
    size_t max_body;
    const struct timeval *stall_tv, *io_tv; /* common timeouts of BASE */
    struct timeval flush_tv, linger_tv;
    struct httpconn_set *conns; /* the worker connections */
    bool own_conns;             /* made by proxy_new(), freed with the proxy */
    LIST_HEAD(, proxy_route) routes;
    struct strmap *routes_by_bot; /* the same routes, by bot id */
    LIST_HEAD(, proxy_exchange) exchanges, spare;
    LIST_HEAD(, proxy_tunnel) tunnels;
    size_t n_exchanges, n_spare, n_tunnels;
    unsigned long answered[PROXY_CODES]; /* requests answered, by status code */
};

static int proxy_on_status(http_parser *, const char *, size_t);

/* One request answered with CODE (hive_proxy_requests_total). */
static void proxy_count(struct proxy *proxy, int code)
{
    if (code >= 100 && code < 100 + PROXY_CODES)
        proxy->answered[code - 100]++;
}
static int proxy_on_header_field(http_parser *, const char *, size_t);
static int proxy_on_header_value(http_parser *, const char *, size_t);
static int proxy_on_headers_complete(http_parser *);
static int proxy_on_body(http_parser *, const char *, size_t);
static int proxy_on_message_complete(http_parser *);

static const http_parser_settings proxy_settings = {
    .on_status = proxy_on_status,
    .on_header_field = proxy_on_header_field,
    .on_header_value = proxy_on_header_value,
    .on_headers_complete = proxy_on_headers_complete,
    .on_body = proxy_on_body,
    .on_message_complete = proxy_on_message_complete,
};

static void proxy_exchange_fail(struct proxy_exchange *, int, const char *);
static void proxy_exchange_lost(struct proxy_exchange *, const char *);
static struct httpconn *proxy_exchange_connect(struct proxy_exchange *, char *, size_t);

/* ---- buffers and header rules ---------------------------------------------- */

/* Append the string S to B. */
static void proxy_buf_str(struct util_buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

/* Append V in decimal to B. */
static void proxy_buf_uint(struct util_buf *b, unsigned long long v)
{
    char digits[24];
    size_t n = sizeof digits;
    do
        digits[--n] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    util_buf_add(b, digits + n, sizeof digits - n);
}

/* Empty B, keeping its memory. */
static void proxy_buf_clear(struct util_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Cut B back to LEN bytes. */
static void proxy_buf_cut(struct util_buf *b, size_t len)
{
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

/* What the header NAME (LEN bytes, any case) is to the proxy. Lengths are
 * compared first, so most names cost no string comparison at all. */
static enum proxy_header proxy_header_kind(const char *name, size_t len)
{
#define PROXY_NAME(s, k)                                                                           \
    {                                                                                              \
        s, sizeof s - 1, k                                                                         \
    }
    static const struct {
        const char *name;
        size_t len;
        enum proxy_header kind;
    } names[] = {
        PROXY_NAME("Connection", PROXY_H_CONNECTION),
        PROXY_NAME("Keep-Alive", PROXY_H_HOP),
        PROXY_NAME("Proxy-Connection", PROXY_H_HOP),
        PROXY_NAME("TE", PROXY_H_HOP),
        PROXY_NAME("Trailer", PROXY_H_HOP),
        PROXY_NAME("Transfer-Encoding", PROXY_H_HOP),
        PROXY_NAME("Upgrade", PROXY_H_HOP),
        PROXY_NAME("Proxy-Authorization", PROXY_H_HOP),
        PROXY_NAME("Proxy-Authenticate", PROXY_H_HOP),
        PROXY_NAME("Content-Length", PROXY_H_CONTENT_LENGTH),
        PROXY_NAME("Host", PROXY_H_HOST),
        PROXY_NAME("Authorization", PROXY_H_AUTHORIZATION),
        PROXY_NAME("Expect", PROXY_H_EXPECT),
        PROXY_NAME("X-Forwarded-For", PROXY_H_XFF),
        PROXY_NAME("X-Forwarded-Host", PROXY_H_XF_HOST),
        PROXY_NAME("X-Forwarded-Proto", PROXY_H_XF_PROTO),
        PROXY_NAME("Origin", PROXY_H_ORIGIN),
        PROXY_NAME("Date", PROXY_H_DATE),
        PROXY_NAME("Server", PROXY_H_SERVER),
    };
#undef PROXY_NAME
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].len == len && strncasecmp(name, names[i].name, len) == 0)
            return names[i].kind;
    return PROXY_H_OTHER;
}

/* The next token of the comma-separated list at *P, blanks trimmed (its
 * length in *LEN), or NULL at the end; *P moves past it. */
static const char *proxy_list_next(const char **p, size_t *len)
{
    const char *s = *p ? *p + strspn(*p, " \t,") : NULL;
    if (!s || !*s)
        return NULL;
    size_t n = strcspn(s, ",");
    size_t t = n;
    while (t > 0 && (s[t - 1] == ' ' || s[t - 1] == '\t'))
        t--;
    *p = s + n;
    *len = t;
    return s;
}

/* True when the comma-separated LIST names NAME (LEN bytes), ignoring case. */
static bool proxy_list_has(const char *list, const char *name, size_t len)
{
    const char *tok;
    size_t t;
    while ((tok = proxy_list_next(&list, &t)))
        if (t == len && strncasecmp(tok, name, len) == 0)
            return true;
    return false;
}

/* True when the comma-separated LIST names nothing but Keep-Alive, which is
 * hop-by-hop anyway: then it drops no header the rules do not drop. */
static bool proxy_list_only_keep_alive(const char *list)
{
    const char *tok;
    size_t t;
    while ((tok = proxy_list_next(&list, &t)))
        if (t != 10 || strncasecmp(tok, "keep-alive", 10) != 0)
            return false;
    return true;
}

/* True when a Connection header of REQ names NAME (those are hop-by-hop). */
static bool proxy_request_connection_names(const struct http_request *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, "Connection") == 0 &&
            proxy_list_has(req->headers[i].value, name, len))
            return true;
    return false;
}

/* How the client delimits the body of REQ, as http.c's parser reads it (the
 * body we are handed is the one it decoded, so no header is read again
 * here); false when that is unclear. */
static bool proxy_request_framing(const struct http_request *req, enum proxy_framing *framing,
                                  unsigned long long *length)
{
    *framing = PROXY_FRAME_NONE;
    *length = 0;
    if (req->chunked) {
        *framing = PROXY_FRAME_CHUNKED;
        return req->content_length < 0;
    }
    if (req->content_length >= 0) {
        *framing = PROXY_FRAME_LENGTH;
        *length = (unsigned long long)req->content_length;
    }
    return true;
}

/* ---- addresses and routes -------------------------------------------------- */

/* Parse the numeric HOST:PORT (wildcards mean loopback) into ADDR and
 * ROUTE's authority; its length, or 0 with a reason in ERR. */
static socklen_t proxy_route_resolve(struct proxy_route *route, struct sockaddr_storage *addr,
                                     char *err, size_t errlen)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    const char *h = route->host;
    int port = route->port;

    if (!*h || strcmp(h, "0.0.0.0") == 0 || strcasecmp(h, "localhost") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    memset(addr, 0, sizeof *addr);
    if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        util_authority(route->authority, sizeof route->authority, h, port);
        return sizeof *in4;
    }
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        util_authority(route->authority, sizeof route->authority, h, port);
        return sizeof *in6;
    }
    /* Names are resolved before they get here (a bot's bound socket, evdns
     * for remote bots): a lookup here would block the whole supervisor. */
    snprintf(err, errlen, "no numeric address for %s yet", h);
    return 0;
}

/* Forget ROUTE's address: its pool is let go and the idle connections to
 * the old address are closed. */
static void proxy_route_forget(struct proxy_route *route)
{
    if (route->conns) {
        httpconn_pool_flush(route->conns);
        httpconn_pool_release(route->conns);
    }
    route->conns = NULL;
    free(route->host);
    free(route->local);
    free(route->name);
    route->host = route->local = route->name = NULL;
    route->tls = NULL;
}

/* The pool of ROUTE's address; NULL with ERR while it has no numeric one. */
static struct httpconn_pool *proxy_route_pool(struct proxy_route *route, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t len;
    if (route->conns)
        return route->conns;
    if (!(len = proxy_route_resolve(route, &addr, err, errlen)))
        return NULL;
    char host[UTIL_AUTHORITY_MAX];
    util_authority(host, sizeof host, route->name, route->port);
    struct httpconn_dest dest = {.authority = route->authority,
                                 .host = *route->name ? host : NULL,
                                 .addr = (struct sockaddr *)&addr,
                                 .addrlen = len,
                                 .local = route->local,
                                 .tls = route->tls,
                                 .tls_host = *route->name ? route->name : route->host};
    route->conns = httpconn_pool_get(route->proxy->conns, &dest);
    return route->conns;
}

/* The route of TARGET's bot, made or re-addressed as needed; NULL with ERR
 * while its address is not a numeric one. Found by the bot's id in the
 * table: a request costs the same at 1,000 bots as at one. */
static struct proxy_route *proxy_route_get(struct proxy *proxy, const struct proxy_target *target,
                                           char *err, size_t errlen)
{
    const char *local = target->local ? target->local : "";
    const char *name = target->name ? target->name : "";
    struct proxy_route *route = strmap_get(proxy->routes_by_bot, target->bot_id);

    if (route && route->host &&
        (route->port != target->port || strcmp(route->host, target->host) != 0 ||
         strcmp(route->local, local) != 0 || route->tls != target->tls ||
         strcmp(route->name, name) != 0))
        proxy_route_forget(route); /* reloaded onto another address, name, socket or TLS */
    if (!route) {
        route = xcalloc(1, sizeof *route);
        route->proxy = proxy;
        route->bot_id = xstrdup(target->bot_id);
        LIST_INSERT_HEAD(&proxy->routes, route, entry);
        strmap_put(proxy->routes_by_bot, route->bot_id, route);
    }
    if (!route->host) {
        route->host = xstrdup(target->host);
        route->port = target->port;
        route->local = xstrdup(local);
        route->tls = target->tls;
        route->name = xstrdup(name);
    }
    return proxy_route_pool(route, err, errlen) ? route : NULL;
}

/* ---- tunnels --------------------------------------------------------------- */

/* The one teardown of a tunnel: both ends, the timer, the record. */
static void proxy_tunnel_free(struct proxy_tunnel *t)
{
    LIST_REMOVE(t, entry);
    t->proxy->n_tunnels--;
    bufferevent_free(t->bev[0]);
    bufferevent_free(t->bev[1]);
    event_free(t->timer);
    free(t);
}

/* Which side of T BEV is: 0 the client, 1 the worker. */
static int proxy_tunnel_side(const struct proxy_tunnel *t, const struct bufferevent *bev)
{
    return bev == t->bev[0] ? 0 : 1;
}

/* Bytes arrived on one side: move them to the other, and stop reading while
 * the other's output is over the limit. Once closing, only the side that
 * ended is relayed; the other one's bytes have nowhere to go. */
static void proxy_tunnel_read_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_tunnel *t = arg;
    int side = proxy_tunnel_side(t, bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(t->bev[1 - side]);

    if (t->from >= 0 && side != t->from) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    evbuffer_add_buffer(out, in);
    if (t->from < 0 && evbuffer_get_length(out) > PROXY_PENDING_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* Tell BEV's peer that nothing more comes; false when there is then no
 * point waiting for its end. A socket is half-closed. TLS cannot be: a FIN
 * under OpenSSL's records reads, to the peer, as a connection cut short
 * (no close_notify), and libevent has no half-close of its own. So a TLS
 * side (an https:// remote bot) gets close_notify, TLS's own end of our
 * sending, and is read on like a half-closed socket: TLS 1.3 lets the peer
 * go on talking, and its close_notify or EOF ends the linger as a FIN
 * would. It is sent straight from the SSL, once the bufferevent's output is
 * empty (so no record of ours is half out); when even that small alert
 * cannot go out, the tunnel just closes. */
static bool proxy_tunnel_half_close(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl) {
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        return true;
    }
    if (SSL_shutdown(ssl) >= 0)
        return true;
    ERR_clear_error(); /* not left for the next reader of this thread's errors */
    return false;
}

/* Move the closing tunnel on: once the side that ended has nothing more
 * to read and the other side has all of it, half-close that side and wait
 * for its EOF (or free the tunnel when it closed already). */
static void proxy_tunnel_advance(struct proxy_tunnel *t)
{
    struct bufferevent *to = t->bev[1 - t->from];

    if (!t->from_done || t->lingering)
        return;
    evbuffer_add_buffer(bufferevent_get_output(to), bufferevent_get_input(t->bev[t->from]));
    if (evbuffer_get_length(bufferevent_get_output(to)) > 0)
        return; /* proxy_tunnel_write_cb comes back once it is written */
    if (t->peer_eof) {
        proxy_tunnel_free(t);
        return;
    }
    t->lingering = true;
    bufferevent_disable(to, EV_WRITE);
    if (!proxy_tunnel_half_close(to)) {
        proxy_tunnel_free(t);
        return;
    }
    evtimer_add(t->timer, &t->proxy->linger_tv);
}

/* One side's output drained: read the other side again, or go on closing. */
static void proxy_tunnel_write_cb(struct bufferevent *bev, void *arg)
{
    struct proxy_tunnel *t = arg;
    int side = proxy_tunnel_side(t, bev);

    if (t->from < 0)
        bufferevent_enable(t->bev[1 - side], EV_READ);
    else if (side != t->from && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        proxy_tunnel_advance(t);
}

/* Side FROM ended (WHAT: its event). A failed write does not mean it has
 * nothing left to read (a worker that answers 1009 and closes resets our
 * write, but its close frame is still in our socket), so it is read to
 * its own end; the other side gets everything, then is half-closed. */
static void proxy_tunnel_close(struct proxy_tunnel *t, int from, short what)
{
    struct bufferevent *end = t->bev[from], *to = t->bev[1 - from];

    t->from = from;
    t->from_done = (what & BEV_EVENT_READING) != 0;
    bufferevent_disable(end, EV_WRITE);
    evbuffer_drain(bufferevent_get_output(end), evbuffer_get_length(bufferevent_get_output(end)));
    if (!t->from_done)
        bufferevent_enable(end, EV_READ);
    evbuffer_drain(bufferevent_get_input(to), evbuffer_get_length(bufferevent_get_input(to)));
    bufferevent_setwatermark(to, EV_WRITE, 0, 0);
    bufferevent_enable(to, EV_READ | EV_WRITE);
    evtimer_add(t->timer, &t->proxy->flush_tv);
    proxy_tunnel_advance(t);
}

/* An event on the other side of a closing tunnel: its EOF ends the linger
 * (or, mid-flush, says it only wants to read); any error ends it all. */
static void proxy_tunnel_peer_event(struct proxy_tunnel *t, short what)
{
    if ((what & BEV_EVENT_ERROR) || (what & BEV_EVENT_WRITING) || t->lingering) {
        proxy_tunnel_free(t);
        return;
    }
    t->peer_eof = true;
    proxy_tunnel_advance(t);
}

/* One side closed or failed: the tunnel starts closing towards the other. */
static void proxy_tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct proxy_tunnel *t = arg;
    int side = proxy_tunnel_side(t, bev);

    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (t->from < 0) {
        proxy_tunnel_close(t, side, what);
    } else if (side != t->from) {
        proxy_tunnel_peer_event(t, what);
    } else if (what & BEV_EVENT_READING) {
        t->from_done = true; /* the rest of what it sent is in */
        proxy_tunnel_advance(t);
    }
}

/* The final flush, or the wait for the peer's EOF, took too long. */
static void proxy_tunnel_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_tunnel_free(arg);
}

/* Join CLIENT and WORKER (both with bytes possibly already buffered). */
static void proxy_tunnel_new(struct proxy *proxy, struct bufferevent *client,
                             struct bufferevent *worker)
{
    struct proxy_tunnel *t = xcalloc(1, sizeof *t);

    t->proxy = proxy;
    t->bev[0] = client;
    t->bev[1] = worker;
    t->from = -1;
    t->timer = evtimer_new(proxy->base, proxy_tunnel_timer_cb, t);
    LIST_INSERT_HEAD(&proxy->tunnels, t, entry);
    proxy->n_tunnels++;
    for (int i = 0; i < 2; i++) {
        bufferevent_setcb(t->bev[i], proxy_tunnel_read_cb, proxy_tunnel_write_cb,
                          proxy_tunnel_event_cb, t);
        bufferevent_set_timeouts(t->bev[i], NULL, NULL);
        bufferevent_setwatermark(t->bev[i], EV_READ, 0, 0);
        bufferevent_setwatermark(t->bev[i], EV_WRITE, PROXY_PENDING_LOW, 0);
        bufferevent_enable(t->bev[i], EV_READ | EV_WRITE);
    }
    evbuffer_add_buffer(bufferevent_get_output(worker), bufferevent_get_input(client));
    evbuffer_add_buffer(bufferevent_get_output(client), bufferevent_get_input(worker));
}

/* ---- exchanges: lifecycle -------------------------------------------------- */

/* The stall timer fired: the client has not read our output for too long. */
static void proxy_exchange_stall_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_exchange_fail(arg, 504, "client stopped reading");
}

/* Release the memory of an exchange record. */
static void proxy_exchange_destroy(struct proxy_exchange *ex)
{
    event_free(ex->stall);
    free(ex->request.data);
    free(ex->head.data);
    free(ex->aside.data);
    free(ex->listed.data);
    free(ex->body.data);
    free(ex->token.data);
    free(ex->kinds);
    free(ex);
}

/* A clean exchange record (recycled when possible). */
static struct proxy_exchange *proxy_exchange_new(struct proxy *proxy)
{
    struct proxy_exchange *ex = LIST_FIRST(&proxy->spare);

    if (ex) {
        LIST_REMOVE(ex, entry);
        proxy->n_spare--;
    } else {
        ex = xcalloc(1, sizeof *ex);
        ex->proxy = proxy;
        ex->stall = evtimer_new(proxy->base, proxy_exchange_stall_cb, ex);
    }
    proxy_buf_clear(&ex->head);
    proxy_buf_clear(&ex->aside);
    proxy_buf_clear(&ex->listed);
    ex->conn = NULL;
    ex->req = NULL;
    ex->route = NULL;
    ex->up = NULL;
    ex->reason_len = ex->received = 0;
    ex->field = PROXY_FIELD_NONE;
    ex->has_token = ex->upgrade = ex->head_only = ex->reused = ex->body_sent = false;
    ex->request_done = ex->began = ex->rechunk = ex->interim = ex->switching = false;
    ex->complete = ex->keep_alive = ex->eof = ex->client_paused = ex->worker_paused = false;
    ex->whole = ex->trailing = false;
    http_parser_init(&ex->parser, HTTP_RESPONSE);
    ex->parser.data = ex;
    LIST_INSERT_HEAD(&proxy->exchanges, ex, entry);
    proxy->n_exchanges++;
    return ex;
}

/* Give EX back for reuse (its client and worker are already dealt with). */
static void proxy_exchange_recycle(struct proxy_exchange *ex)
{
    struct proxy *proxy = ex->proxy;

    evtimer_del(ex->stall);
    LIST_REMOVE(ex, entry);
    proxy->n_exchanges--;
    if (proxy->n_spare >= PROXY_SPARE_MAX) {
        proxy_exchange_destroy(ex);
        return;
    }
    LIST_INSERT_HEAD(&proxy->spare, ex, entry);
    proxy->n_spare++;
}

/* Unhook EX from its client before the answer ends: our callbacks must not
 * outlive the exchange, and a paused client must be read again. */
static struct http_conn *proxy_exchange_release_client(struct proxy_exchange *ex)
{
    struct http_conn *conn = ex->conn;

    ex->conn = NULL;
    if (!conn)
        return NULL;
    http_conn_set_drain_cb(conn, NULL, NULL);
    http_conn_set_close_cb(conn, NULL, NULL);
    if (ex->client_paused)
        http_conn_pause_read(conn, false);
    return conn;
}

/* End EX with an error: STATUS {"detail"} if nothing was answered yet, else
 * cut the client's connection (its answer is incomplete). */
static void proxy_exchange_fail(struct proxy_exchange *ex, int status, const char *detail)
{
    struct http_conn *conn = proxy_exchange_release_client(ex);

    if (conn && !http_conn_is_closed(conn))
        log_warn("proxy: %s: %s %s: %s", ex->route ? ex->route->bot_id : "?", ex->req->method,
                 ex->path, detail);
    if (conn && ex->began)
        http_respond_stream_end(conn, true);
    else if (conn) {
        proxy_count(ex->proxy, status);
        http_respond_error(conn, status, detail, status == 503 ? "Retry-After: 1\r\n" : NULL);
    }
    httpconn_close(ex->up);
    ex->up = NULL;
    proxy_exchange_recycle(ex);
}

/* The response is complete: end the client's answer, keep the connection
 * if the worker does and nothing is left over on it. */
static void proxy_exchange_done(struct proxy_exchange *ex)
{
    struct httpconn *up = ex->up;
    bool keep = ex->keep_alive && ex->request_done && !ex->upgrade && !ex->eof && !ex->trailing &&
                httpconn_pending(up) == 0;

    if (ex->rechunk)
        http_respond_stream_write(ex->conn, "0\r\n\r\n", 5);
    struct http_conn *conn = proxy_exchange_release_client(ex);
    if (ex->whole) {
        proxy_count(ex->proxy, ex->parser.status_code);
        http_respond(conn, ex->parser.status_code, NULL, ex->body.data, ex->body.len,
                     ex->head.data);
    } else
        http_respond_stream_end(conn, false);
    ex->up = NULL;
    if (keep)
        httpconn_put(up);
    else
        httpconn_close(up);
    proxy_exchange_recycle(ex);
}

/* ---- exchanges: the request ------------------------------------------------ */

/* Append QUERY to B as "?a=b&c", leaving out the token parameter. */
static void proxy_write_query(struct util_buf *b, const char *query)
{
    bool first = true;

    for (const char *p = query; p && *p;) {
        size_t n = strcspn(p, "&");
        bool token = n >= 5 && strncmp(p, "token", 5) == 0 && (n == 5 || p[5] == '=');
        if (!token && n > 0) {
            util_buf_add(b, first ? "?" : "&", 1);
            util_buf_add(b, p, n);
            first = false;
        }
        p += n;
        if (*p == '&')
            p++;
    }
}

/* Append "Name: value\r\n" to B. */
static void proxy_write_header(struct util_buf *b, const char *name, const char *value)
{
    proxy_buf_str(b, name);
    util_buf_add(b, ": ", 2);
    proxy_buf_str(b, value);
    util_buf_add(b, "\r\n", 2);
}

/* Sort the client's headers (into EX->kinds) and copy those that go up
 * unchanged to B. Returns the first Host header, or NULL; *XFF tells
 * whether the client sent X-Forwarded-For. */
static const char *proxy_write_client_headers(struct proxy_exchange *ex, struct util_buf *b,
                                              bool *xff)
{
    const struct http_request *req = ex->req;
    const char *host = NULL;
    bool named = false; /* a Connection header names more than Keep-Alive */

    if (req->n_headers > ex->kinds_cap) {
        ex->kinds_cap = req->n_headers;
        ex->kinds = xrealloc(ex->kinds, ex->kinds_cap);
    }
    *xff = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        enum proxy_header kind = proxy_header_kind(h->name, strlen(h->name));
        ex->kinds[i] = (unsigned char)kind;
        if (kind == PROXY_H_HOST && !host)
            host = h->value;
        *xff = *xff || kind == PROXY_H_XFF;
        named = named || (kind == PROXY_H_CONNECTION && !proxy_list_only_keep_alive(h->value));
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        enum proxy_header kind = ex->kinds[i];
        /* Origin stays at the door: its guard judged it (and answers CORS)
         * by the hive's lists; the worker would judge it against its own
         * address, which the page never named. */
        bool kept = kind == PROXY_H_OTHER || kind == PROXY_H_DATE || kind == PROXY_H_SERVER;
        if (kept && named && proxy_request_connection_names(req, req->headers[i].name))
            kept = false;
        if (kept)
            proxy_write_header(b, req->headers[i].name, req->headers[i].value);
    }
    return host;
}

/* Append X-Forwarded-For (the client's chain plus the client), -Host and
 * -Proto to B. */
static void proxy_write_forwarded(struct proxy_exchange *ex, struct util_buf *b, const char *host,
                                  bool xff)
{
    const struct http_request *req = ex->req;

    util_buf_add(b, "X-Forwarded-For: ", 17);
    for (size_t i = 0; xff && i < req->n_headers; i++) {
        if (ex->kinds[i] != PROXY_H_XFF || !*req->headers[i].value)
            continue;
        proxy_buf_str(b, req->headers[i].value);
        util_buf_add(b, ", ", 2);
    }
    proxy_buf_str(b, req->peer);
    util_buf_add(b, "\r\n", 2);
    if (host)
        proxy_write_header(b, "X-Forwarded-Host", host);
    if (ex->https)
        util_buf_add(b, "X-Forwarded-Proto: https\r\n", 26);
    else
        util_buf_add(b, "X-Forwarded-Proto: http\r\n", 25);
}

/* Append the framing of the request body, and the upgrade headers, to B. */
static void proxy_write_framing(struct proxy_exchange *ex, struct util_buf *b)
{
    if (ex->req_framing == PROXY_FRAME_LENGTH) {
        util_buf_add(b, "Content-Length: ", 16);
        proxy_buf_uint(b, ex->req_length);
        util_buf_add(b, "\r\n", 2);
    } else if (ex->req_framing == PROXY_FRAME_CHUNKED) {
        util_buf_add(b, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (ex->upgrade) {
        const char *upgrade = http_request_header(ex->req, "Upgrade");
        util_buf_add(b, "Connection: Upgrade\r\n", 21);
        proxy_write_header(b, "Upgrade", upgrade ? upgrade : "websocket");
    }
}

/* Lay out the request line and headers in one buffer and send them up. */
static void proxy_exchange_send_head(struct proxy_exchange *ex)
{
    struct util_buf *b = &ex->request;
    const struct http_request *req = ex->req;
    bool xff;

    proxy_buf_clear(b);
    proxy_buf_str(b, req->method);
    util_buf_add(b, " ", 1);
    proxy_buf_str(b, ex->path);
    proxy_write_query(b, ex->query);
    util_buf_add(b, " HTTP/1.1\r\nHost: ", 17);
    proxy_buf_str(b, httpconn_pool_host(ex->route->conns));
    util_buf_add(b, "\r\n", 2);
    const char *host = proxy_write_client_headers(ex, b, &xff);
    proxy_write_forwarded(ex, b, host, xff);
    if (ex->has_token) {
        util_buf_add(b, "Authorization: Bearer ", 22);
        util_buf_add(b, ex->token.data, ex->token.len);
        util_buf_add(b, "\r\n", 2);
    }
    proxy_write_framing(ex, b);
    util_buf_add(b, "\r\n", 2);
    /* The worker owes us an answer once the whole request is up; until then
     * the client's own timeouts apply to its body. */
    bool bodyless = ex->req_framing == PROXY_FRAME_NONE;
    httpconn_watch(ex->up, ex->request_done || bodyless ? ex->proxy->io_tv : NULL);
    httpconn_send(ex->up, b->data, b->len);
}

/* A piece of the client's body (LAST: the body is complete): up it goes. */
static void proxy_exchange_body_cb(struct http_conn *conn, const void *data, size_t len, bool last,
                                   void *arg)
{
    struct proxy_exchange *ex = arg;
    struct evbuffer *out = httpconn_output(ex->up);
    bool chunked = ex->req_framing == PROXY_FRAME_CHUNKED;

    if (len > 0) {
        if (chunked)
            evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add(out, data, len);
        if (chunked)
            evbuffer_add(out, "\r\n", 2);
        ex->body_sent = true;
    }
    if (last) {
        if (chunked) {
            evbuffer_add(out, "0\r\n\r\n", 5);
            ex->body_sent = true;
        }
        ex->request_done = true;
        if (ex->req_framing != PROXY_FRAME_NONE)
            httpconn_watch(ex->up, ex->proxy->io_tv);
    }
    httpconn_flush(ex->up);
    if (!ex->client_paused && evbuffer_get_length(out) > PROXY_PENDING_HIGH) {
        ex->client_paused = true;
        http_conn_pause_read(conn, true);
    }
}

/* The worker connection failed before answering: a fresh one gets the
 * request again if nothing of it is lost (a pooled connection the worker
 * had just closed), else 502. */
static void proxy_exchange_lost(struct proxy_exchange *ex, const char *detail)
{
    char err[200];

    if (!ex->reused || ex->received > 0 || ex->body_sent) {
        proxy_exchange_fail(ex, 502, detail);
        return;
    }
    httpconn_close(ex->up);
    ex->up = proxy_exchange_connect(ex, err, sizeof err);
    if (!ex->up) {
        proxy_exchange_fail(ex, 502, err);
        return;
    }
    ex->reused = false;
    ex->eof = false;
    proxy_exchange_send_head(ex);
}

/* ---- exchanges: the response ----------------------------------------------- */

/* Parser: a piece of the status line's reason phrase. */
static int proxy_on_status(http_parser *p, const char *at, size_t len)
{
    struct proxy_exchange *ex = p->data;
    size_t room = sizeof ex->reason - 1 - ex->reason_len;
    if (len > room)
        len = room;
    memcpy(ex->reason + ex->reason_len, at, len);
    ex->reason_len += len;
    ex->reason[ex->reason_len] = '\0';
    return 0;
}

/* The response header whose line is complete in HEAD: kept there, moved
 * aside (Date, Server), noted (Connection) or dropped. A 101's head goes to
 * the client as the worker sent it: its Upgrade and Connection are the
 * handshake. */
static void proxy_head_end_line(struct proxy_exchange *ex)
{
    struct util_buf *head = &ex->head;

    switch (ex->parser.status_code == 101 ? PROXY_H_OTHER : ex->line_kind) {
    case PROXY_H_CONNECTION:
        util_buf_add(&ex->listed, head->data + ex->value_start, head->len - ex->value_start);
        util_buf_add(&ex->listed, ",", 1);
        proxy_buf_cut(head, ex->line_start);
        break;
    case PROXY_H_HOP:
    case PROXY_H_CONTENT_LENGTH:
        proxy_buf_cut(head, ex->line_start);
        break;
    case PROXY_H_DATE:
    case PROXY_H_SERVER:
        util_buf_add(&ex->aside, head->data + ex->line_start, head->len - ex->line_start);
        util_buf_add(&ex->aside, "\r\n", 2);
        proxy_buf_cut(head, ex->line_start);
        break;
    default:
        util_buf_add(head, "\r\n", 2);
        break;
    }
}

/* The name of the header being collected is complete: sort it, and start
 * its value with SEP. */
static void proxy_head_end_name(struct proxy_exchange *ex, const char *sep)
{
    ex->line_kind =
        proxy_header_kind(ex->head.data + ex->line_start, ex->head.len - ex->line_start);
    proxy_buf_str(&ex->head, sep);
    ex->value_start = ex->head.len;
}

/* Parser: a piece of a header name; starts a new "Name: value" line. */
static int proxy_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct proxy_exchange *ex = p->data;
    if (ex->field == PROXY_FIELD_VALUE)
        proxy_head_end_line(ex);
    if (ex->field != PROXY_FIELD_NAME)
        ex->line_start = ex->head.len;
    ex->field = PROXY_FIELD_NAME;
    util_buf_add(&ex->head, at, len);
    return 0;
}

/* Parser: a piece of a header value. */
static int proxy_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct proxy_exchange *ex = p->data;
    if (ex->field != PROXY_FIELD_VALUE)
        proxy_head_end_name(ex, ": ");
    ex->field = PROXY_FIELD_VALUE;
    util_buf_add(&ex->head, at, len);
    return 0;
}

/* Drop from LINES (in place) every header line whose name LIST names. */
static void proxy_head_drop_listed(struct util_buf *lines, const char *list)
{
    char *w = lines->data;

    for (char *line = lines->data; line && *line;) {
        size_t len = strcspn(line, "\r") + 2;
        size_t nlen = strcspn(line, ":");
        if (!proxy_list_has(list, line, nlen)) {
            memmove(w, line, len);
            w += len;
        }
        line += len;
    }
    if (lines->data)
        proxy_buf_cut(lines, (size_t)(w - lines->data));
}

/* Choose the framing towards the client and add its header line. */
static void proxy_head_framing(struct proxy_exchange *ex)
{
    const http_parser *p = &ex->parser;
    int status = p->status_code;

    if ((p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED)) {
        util_buf_add(&ex->head, "Content-Length: ", 16);
        proxy_buf_uint(&ex->head, (unsigned long long)p->content_length);
        util_buf_add(&ex->head, "\r\n", 2);
        return;
    }
    if (ex->head_only || status == 204 || status == 304)
        return;
    /* Chunked, or delimited by the worker's close: re-chunk for HTTP/1.1
     * clients; HTTP/1.0 ones get the body delimited by our close. */
    const struct http_request *req = ex->req;
    if (req->version_major > 1 || (req->version_major == 1 && req->version_minor >= 1)) {
        ex->rechunk = true;
        util_buf_add(&ex->head, "Transfer-Encoding: chunked\r\n", 28);
    }
}

/* The response head is complete: a small answer is kept until it is whole
 * and then relayed in one write (with our own Date and Server); anything
 * else streams from here with the worker's. */
static void proxy_exchange_begin(struct proxy_exchange *ex)
{
    const http_parser *p = &ex->parser;
    int status = p->status_code;

    ex->whole = !ex->head_only && status != 204 && status != 304 && (p->flags & F_CONTENTLENGTH) &&
                !(p->flags & F_CHUNKED) && p->content_length <= PROXY_WHOLE_MAX;
    proxy_buf_clear(&ex->body);
    if (ex->listed.len && !proxy_list_only_keep_alive(ex->listed.data)) {
        proxy_head_drop_listed(&ex->head, ex->listed.data);
        proxy_head_drop_listed(&ex->aside, ex->listed.data);
    }
    if (ex->whole)
        return;
    util_buf_add(&ex->head, ex->aside.data ? ex->aside.data : "", ex->aside.len);
    proxy_head_framing(ex);
    proxy_count(ex->proxy, ex->parser.status_code);
    http_respond_stream_begin(ex->conn, ex->parser.status_code, ex->reason_len ? ex->reason : NULL,
                              ex->head.data ? ex->head.data : "");
    ex->began = true;
}

/* Parser: the head is in: 101 switches, 1xx is skipped, the rest begins the
 * answer (returning 1 tells the parser a HEAD answer has no body). */
static int proxy_on_headers_complete(http_parser *p)
{
    struct proxy_exchange *ex = p->data;

    if (ex->field == PROXY_FIELD_NAME)
        proxy_head_end_name(ex, ":");
    if (ex->field != PROXY_FIELD_NONE)
        proxy_head_end_line(ex);
    ex->field = PROXY_FIELD_NONE;
    if (p->status_code == 101) {
        if (!ex->upgrade)
            return -1; /* switching protocols we did not ask for */
        ex->switching = true;
        return 0;
    }
    if (p->status_code < 200) {
        ex->interim = true; /* 100 Continue, 103 Early Hints: not relayed */
        return 0;
    }
    proxy_exchange_begin(ex);
    return ex->head_only ? 1 : 0;
}

/* Parser: a piece of the body, towards the client. */
static int proxy_on_body(http_parser *p, const char *at, size_t len)
{
    struct proxy_exchange *ex = p->data;
    char size[24];

    if (ex->whole) {
        util_buf_add(&ex->body, at, len);
    } else if (ex->rechunk) { /* framed in one piece: one write, not three */
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        proxy_buf_clear(&ex->body);
        util_buf_add(&ex->body, size, (size_t)n);
        util_buf_add(&ex->body, at, len);
        util_buf_add(&ex->body, "\r\n", 2);
        http_respond_stream_write(ex->conn, ex->body.data, ex->body.len);
    } else {
        http_respond_stream_write(ex->conn, at, len);
    }
    return 0;
}

/* Parser: the answer is complete (an interim 1xx just ends); pause so the
 * rest is decided outside the parser. */
static int proxy_on_message_complete(http_parser *p)
{
    struct proxy_exchange *ex = p->data;

    if (ex->interim) {
        ex->interim = false;
        ex->reason_len = 0;
        proxy_buf_clear(&ex->head);
        proxy_buf_clear(&ex->aside);
        proxy_buf_clear(&ex->listed);
        return 0;
    }
    ex->complete = true;
    ex->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

/* The worker accepted the upgrade: answer 101 to the client and join the two
 * connections into a tunnel; REST (LEN bytes) is what the worker sent after
 * its head, the first bytes of the tunnel. */
static void proxy_exchange_upgrade(struct proxy_exchange *ex, const char *rest, size_t len)
{
    struct http_conn *conn = proxy_exchange_release_client(ex);
    struct bufferevent *client = conn ? http_conn_detach(conn) : NULL;

    if (!client) {
        proxy_exchange_fail(ex, 502, "client went away");
        return;
    }
    struct bufferevent *worker = httpconn_detach(ex->up);
    ex->up = NULL;
    if (!worker) {
        log_warn("proxy: %s: cannot set up a tunnel: out of resources", ex->route->bot_id);
        bufferevent_free(client);
        proxy_exchange_recycle(ex);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(client);
    evbuffer_add_printf(out, "HTTP/1.1 101 %s\r\n",
                        ex->reason_len ? ex->reason : "Switching Protocols");
    evbuffer_add(out, ex->head.data ? ex->head.data : "", ex->head.len);
    evbuffer_add(out, "\r\n", 2);
    evbuffer_add(out, rest, len);
    proxy_count(ex->proxy, 101);
    proxy_tunnel_new(ex->proxy, client, worker);
    proxy_exchange_recycle(ex);
}

/* Stop reading the worker while the client has too much to read. */
static void proxy_exchange_throttle(struct proxy_exchange *ex)
{
    if (ex->worker_paused || http_conn_output_pending(ex->conn) <= PROXY_PENDING_HIGH)
        return;
    ex->worker_paused = true;
    httpconn_pause(ex->up);
    evtimer_add(ex->stall, ex->proxy->stall_tv);
}

/* The worker closed its side: that ends a body delimited by the close;
 * anywhere else it is a failure. */
static void proxy_exchange_eof(struct proxy_exchange *ex)
{
    ex->eof = true;
    if (ex->received == 0) {
        proxy_exchange_lost(ex, "the worker closed the connection without answering");
        return;
    }
    http_parser_execute(&ex->parser, &proxy_settings, NULL, 0);
    if (ex->complete)
        proxy_exchange_done(ex);
    else
        proxy_exchange_fail(ex, 502, "the worker closed the connection mid-answer");
}

/* Parse LEN bytes the worker sent; the answer goes to the client as it is
 * parsed, so nothing is kept once this returns. */
static void proxy_exchange_feed(struct proxy_exchange *ex, const char *data, size_t len)
{
    size_t n = http_parser_execute(&ex->parser, &proxy_settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&ex->parser);

    ex->received += n;
    if (err == HPE_PAUSED) {
        http_parser_pause(&ex->parser, 0);
    } else if (err != HPE_OK) {
        proxy_exchange_fail(ex, 502, "invalid answer from the worker");
        return;
    }
    if (ex->switching) {
        proxy_exchange_upgrade(ex, data + n, len - n);
        return;
    }
    if (ex->complete) {
        ex->trailing = n < len; /* more than it was asked for: not reused */
        proxy_exchange_done(ex);
        return;
    }
    proxy_exchange_throttle(ex);
}

/* The client's output drained: read the worker again. */
static void proxy_exchange_drain_cb(struct http_conn *conn, void *arg)
{
    struct proxy_exchange *ex = arg;
    (void)conn;

    if (!ex->worker_paused)
        return;
    ex->worker_paused = false;
    evtimer_del(ex->stall);
    httpconn_resume(ex->up);
}

/* The client went away before its answer was complete. */
static void proxy_exchange_close_cb(struct http_conn *conn, void *arg)
{
    (void)conn;
    proxy_exchange_fail(arg, 502, "client went away");
}

/* ---- worker connection callbacks ------------------------------------------- */

/* EX's worker connection failed with ERR (connecting, reading or writing). */
static void proxy_upstream_broken(struct proxy_exchange *ex, int err)
{
    char detail[200];

    snprintf(detail, sizeof detail, "cannot reach bot %s at %s: %s", ex->route->bot_id,
             ex->route->authority, err ? strerror(err) : "connection failed");
    proxy_exchange_lost(ex, detail);
}

/* EX's worker does not answer (or take its request). */
static void proxy_upstream_timeout(struct proxy_exchange *ex)
{
    char detail[200];

    snprintf(detail, sizeof detail, "bot %s did not answer within %d s", ex->route->bot_id,
             PROXY_IO_TIMEOUT_S);
    proxy_exchange_fail(ex, 502, detail);
}

/* What one recv() from the worker brought goes straight to the parser. */
static void proxy_upstream_data(struct httpconn *up, const char *data, size_t len, void *arg)
{
    (void)up;
    proxy_exchange_feed(arg, data, len);
}

/* Queued request bytes went out: once they are down to the low mark, the
 * client's body is read again. */
static void proxy_upstream_written(struct httpconn *up, size_t pending, void *arg)
{
    struct proxy_exchange *ex = arg;
    (void)up;

    if (ex->client_paused && pending <= PROXY_PENDING_LOW) {
        ex->client_paused = false;
        http_conn_pause_read(ex->conn, false);
    }
}

/* The worker closed its side, went silent too long, or failed. */
static void proxy_upstream_ended(struct httpconn *up, const struct httpconn_end *end, void *arg)
{
    (void)up;
    if (end->timeout)
        proxy_upstream_timeout(arg);
    else if (end->eof)
        proxy_exchange_eof(arg);
    else
        proxy_upstream_broken(arg, end->err);
}

static const struct httpconn_handler proxy_upstream_handler = {
    .data = proxy_upstream_data,
    .written = proxy_upstream_written,
    .ended = proxy_upstream_ended,
};

/* A new connection to EX's worker (its private socket first); NULL with ERR. */
static struct httpconn *proxy_exchange_connect(struct proxy_exchange *ex, char *err, size_t errlen)
{
    struct proxy_route *route = ex->route;
    char why[160];
    if (!route->conns) { /* re-addressed meanwhile, to no numeric address */
        snprintf(err, errlen, "no numeric address for bot %s yet", route->bot_id);
        return NULL;
    }
    struct httpconn *up =
        httpconn_open(route->conns, NULL, 0, &proxy_upstream_handler, ex, why, sizeof why);
    if (!up)
        snprintf(err, errlen, "cannot reach bot %s at %s: %.100s", route->bot_id, route->authority,
                 why);
    else if (why[0])
        log_debug("proxy: bot %s: %s; using port %d", route->bot_id, why, route->port);
    return up;
}

/* ---- the API --------------------------------------------------------------- */

/* Copy TOKEN into EX's reused buffer. */
static void proxy_exchange_set_token(struct proxy_exchange *ex, const char *token)
{
    proxy_buf_clear(&ex->token);
    ex->has_token = token && *token;
    if (ex->has_token)
        proxy_buf_str(&ex->token, token);
}

/* Forward the request whose head just arrived on CONN. */
void proxy_forward(struct proxy *proxy, struct http_conn *conn, struct http_request *req,
                   const struct proxy_target *target)
{
    enum proxy_framing framing;
    unsigned long long length;
    char err[200];

    if (!proxy_request_framing(req, &framing, &length)) {
        proxy_count(proxy, 400);
        http_respond_error(conn, 400, "invalid request framing", NULL);
        return;
    }
    if (framing == PROXY_FRAME_LENGTH && length > proxy->max_body) {
        proxy_count(proxy, 413);
        http_respond_error(conn, 413, "request body too large", NULL);
        return;
    }
    struct proxy_route *route = proxy_route_get(proxy, target, err, sizeof err);
    if (!route) {
        proxy_count(proxy, 502);
        http_respond_error(conn, 502, err, NULL);
        return;
    }
    struct proxy_exchange *ex = proxy_exchange_new(proxy);
    ex->conn = conn;
    ex->req = req;
    ex->route = route;
    ex->path = target->path;
    ex->query = target->query;
    ex->https = target->https;
    ex->req_framing = framing;
    ex->req_length = length;
    ex->upgrade = req->upgrade;
    ex->head_only = req->method_id == HTTP_HEAD;
    proxy_exchange_set_token(ex, target->token);
    ex->up = ex->upgrade ? NULL : httpconn_take(route->conns, &proxy_upstream_handler, ex);
    ex->reused = ex->up != NULL;
    if (!ex->up)
        ex->up = proxy_exchange_connect(ex, err, sizeof err);
    if (!ex->up) {
        proxy_exchange_fail(ex, 502, err);
        return;
    }
    http_conn_set_close_cb(conn, proxy_exchange_close_cb, ex);
    http_conn_set_drain_cb(conn, proxy_exchange_drain_cb, ex);
    http_conn_stream_body(conn, proxy_exchange_body_cb, ex, 0);
    proxy_exchange_send_head(ex);
}

/* A proxy on BASE. */
struct proxy *proxy_new(struct event_base *base, struct httpconn_set *conns, size_t max_body,
                        int idle_timeout_ms)
{
    struct proxy *proxy = xcalloc(1, sizeof *proxy);
    int idle = idle_timeout_ms > 0 ? idle_timeout_ms : 60 * 1000;
    struct timeval stall_tv = {idle / 1000, (idle % 1000) * 1000};
    struct timeval io_tv = {PROXY_IO_TIMEOUT_S, 0};

    proxy->base = base;
    proxy->max_body = max_body;
    /* Common timeouts: re-arming one costs a list move, not a heap update. */
    proxy->stall_tv = event_base_init_common_timeout(base, &stall_tv);
    proxy->io_tv = event_base_init_common_timeout(base, &io_tv);
    proxy->flush_tv = (struct timeval){PROXY_FLUSH_TIMEOUT_S, 0};
    proxy->linger_tv = (struct timeval){PROXY_LINGER_MS / 1000, (PROXY_LINGER_MS % 1000) * 1000};
    proxy->own_conns = conns == NULL;
    if (!conns) {
        /* A pooled connection is let go well before the worker would. */
        struct httpconn_limits lim = {.idle_max = PROXY_IDLE_MAX,
                                      .idle_timeout_ms = idle / 2 > 1000 ? idle / 2 : 1000,
                                      .io_timeout_ms = PROXY_IO_TIMEOUT_S * 1000};
        conns = httpconn_set_new(base, &lim);
    }
    proxy->conns = conns;
    LIST_INIT(&proxy->routes);
    proxy->routes_by_bot = strmap_new();
    LIST_INIT(&proxy->exchanges);
    LIST_INIT(&proxy->spare);
    LIST_INIT(&proxy->tunnels);
    return proxy;
}

/* Tear down every exchange, tunnel and pooled connection. */
void proxy_free(struct proxy *proxy)
{
    struct proxy_tunnel *t;
    struct proxy_exchange *ex;
    struct proxy_route *route;

    if (!proxy)
        return;
    while ((t = LIST_FIRST(&proxy->tunnels)))
        proxy_tunnel_free(t);
    while ((ex = LIST_FIRST(&proxy->exchanges)))
        proxy_exchange_fail(ex, 503, "the hive is shutting down");
    while ((ex = LIST_FIRST(&proxy->spare))) {
        LIST_REMOVE(ex, entry);
        proxy_exchange_destroy(ex);
    }
    while ((route = LIST_FIRST(&proxy->routes))) {
        LIST_REMOVE(route, entry);
        httpconn_pool_release(route->conns);
        free(route->bot_id);
        free(route->host);
        free(route->local);
        free(route->name);
        free(route);
    }
    strmap_free(proxy->routes_by_bot);
    if (proxy->own_conns)
        httpconn_set_free(proxy->conns);
    free(proxy);
}

/* The set of its worker connections. */
struct httpconn_set *proxy_conns(const struct proxy *proxy)
{
    return proxy->conns;
}

/* Requests being forwarded. */
size_t proxy_exchanges(const struct proxy *proxy)
{
    return proxy->n_exchanges;
}

/* Tunnels open. */
size_t proxy_tunnels(const struct proxy *proxy)
{
    return proxy->n_tunnels;
}

unsigned long proxy_requests(const struct proxy *proxy, int code)
{
    return code >= 100 && code < 100 + PROXY_CODES ? proxy->answered[code - 100] : 0;
}
