/*
 * tlsserve: terminates TLS in front of a plain HTTP server (see tlsserve.h).
 * common/http.c reads and writes raw sockets, so it is not taught TLS:
 * each client's TLS connection is accepted here (a server-side OpenSSL
 * bufferevent), and once its handshake is done the decrypted bytes are
 * relayed over a socketpair whose other end the HTTP server adopts as if it
 * had accepted it, with the client's own address. Each side stops reading
 * while the other's output is above a watermark (back-pressure both ways);
 * when one side ends, the other is given what was already said and then
 * both close together (tlsserve_pipe_free, the one teardown).
 */
#include "common/tlsserve.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

#define TLSSERVE_PIPE_HIGH (256 * 1024) /* a side stops reading above this */
#define TLSSERVE_PIPE_LOW (64 * 1024)   /* and reads again below this */
#define TLSSERVE_RETRY_MS 100           /* pause after accept() failed (EMFILE) */

struct tlsserve;

/* One client: its TLS side and the plain side the HTTP server reads. */
struct tlsserve_pipe {
    LIST_ENTRY(tlsserve_pipe) entry;
    struct tlsserve *ts;
    struct bufferevent *bev[2]; /* the client's (TLS), the server's (plain) */
    struct sockaddr_storage peer, local;
    bool closing; /* one side ended: the other flushes, then both go */
};

struct tlsserve {
    struct event_base *base;
    SSL_CTX *ctx;
    struct evconnlistener *listener;
    struct event *retry; /* accepting again after an accept() error */
    struct timeval handshake_tv;
    int max_pipes, n_pipes;
    bool paused;
    tlsserve_adopt_cb adopt;
    void *arg;
    LIST_HEAD(, tlsserve_pipe) pipes;
};

static void tlsserve_pipe_event_cb(struct bufferevent *bev, short what, void *arg);

/* Tear a client down: both sides; accept again below the limit. */
static void tlsserve_pipe_free(struct tlsserve_pipe *p)
{
    struct tlsserve *ts = p->ts;
    LIST_REMOVE(p, entry);
    for (int i = 0; i < 2; i++)
        if (p->bev[i])
            bufferevent_free(p->bev[i]);
    free(p);
    ts->n_pipes--;
    if (ts->paused && ts->n_pipes < ts->max_pipes) {
        ts->paused = false;
        evconnlistener_enable(ts->listener);
    }
}

/* The side of P that BEV is: 0 the client's, 1 the server's. */
static int tlsserve_pipe_side(const struct tlsserve_pipe *p, const struct bufferevent *bev)
{
    return p->bev[1] == bev;
}

/* Bytes from one side go to the other; reading stops while it is full. */
static void tlsserve_pipe_read_cb(struct bufferevent *bev, void *arg)
{
    struct tlsserve_pipe *p = arg;
    struct bufferevent *other = p->bev[!tlsserve_pipe_side(p, bev)];
    if (!other)
        return; /* still handshaking: nothing can be read yet */
    bufferevent_write_buffer(other, bufferevent_get_input(bev));
    if (evbuffer_get_length(bufferevent_get_output(other)) > TLSSERVE_PIPE_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* One side's output fell below the low mark: the other may read again, or a
 * closing pipe ends once everything is out. */
static void tlsserve_pipe_write_cb(struct bufferevent *bev, void *arg)
{
    struct tlsserve_pipe *p = arg;
    if (p->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            tlsserve_pipe_free(p);
        return;
    }
    struct bufferevent *other = p->bev[!tlsserve_pipe_side(p, bev)];
    if (other)
        bufferevent_enable(other, EV_READ);
}

/* Start relaying P: a socketpair, one end ours, the other the server's. */
static void tlsserve_pipe_open(struct tlsserve_pipe *p)
{
    struct tlsserve *ts = p->ts;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return tlsserve_pipe_free(p);
    p->bev[1] = bufferevent_socket_new(ts->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (!p->bev[1]) {
        close(sv[0]);
        close(sv[1]);
        return tlsserve_pipe_free(p);
    }
    bufferevent_set_timeouts(p->bev[0], NULL, NULL); /* the server keeps its own */
    for (int i = 0; i < 2; i++) {
        bufferevent_setcb(p->bev[i], tlsserve_pipe_read_cb, tlsserve_pipe_write_cb,
                          tlsserve_pipe_event_cb, p);
        bufferevent_setwatermark(p->bev[i], EV_WRITE, TLSSERVE_PIPE_LOW, 0);
        bufferevent_enable(p->bev[i], EV_READ | EV_WRITE);
    }
    if (ts->adopt(sv[1], (struct sockaddr *)&p->peer, (struct sockaddr *)&p->local, ts->arg) < 0)
        return tlsserve_pipe_free(p);
    /* Bytes that came with the handshake's last flight are waiting. */
    if (evbuffer_get_length(bufferevent_get_input(p->bev[0])))
        tlsserve_pipe_read_cb(p->bev[0], p);
}

/* A side finished its handshake, ended or failed. */
static void tlsserve_pipe_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct tlsserve_pipe *p = arg;
    int side = tlsserve_pipe_side(p, bev);
    if (what & BEV_EVENT_CONNECTED) {
        if (side == 0 && !p->bev[1])
            tlsserve_pipe_open(p);
        return;
    }
    struct bufferevent *other = p->bev[!side];
    if (!other) /* a failed handshake, garbage, plain HTTP, a timeout */
        return tlsserve_pipe_free(p);
    bufferevent_write_buffer(other, bufferevent_get_input(bev));
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    if (p->closing || evbuffer_get_length(bufferevent_get_output(other)) == 0)
        return tlsserve_pipe_free(p);
    p->closing = true; /* the other side gets what was said, then both close */
    bufferevent_disable(other, EV_READ);
    bufferevent_setwatermark(other, EV_WRITE, 0, 0);
}

/* A client connected: start its TLS handshake, bounded in time. */
static void tlsserve_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                               int socklen, void *arg)
{
    struct tlsserve *ts = arg;
    int one = 1;
    socklen_t len = sizeof(struct sockaddr_storage);
    (void)l;
    SSL *ssl = SSL_new(ts->ctx);
    if (!ssl) {
        close(fd);
        return;
    }
    struct tlsserve_pipe *p = xcalloc(1, sizeof *p);
    p->ts = ts;
    memcpy(&p->peer, sa, (size_t)socklen < sizeof p->peer ? (size_t)socklen : sizeof p->peer);
    getsockname(fd, (struct sockaddr *)&p->local, &len);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    LIST_INSERT_HEAD(&ts->pipes, p, entry);
    if (++ts->n_pipes >= ts->max_pipes) {
        ts->paused = true;
        evconnlistener_disable(ts->listener);
    }
    p->bev[0] = bufferevent_openssl_socket_new(ts->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                               BEV_OPT_CLOSE_ON_FREE);
    if (!p->bev[0]) {
        SSL_free(ssl);
        close(fd);
        return tlsserve_pipe_free(p);
    }
    /* A client that closes without close_notify is still a client that left. */
    bufferevent_openssl_set_allow_dirty_shutdown(p->bev[0], 1);
    bufferevent_setcb(p->bev[0], tlsserve_pipe_read_cb, tlsserve_pipe_write_cb,
                      tlsserve_pipe_event_cb, p);
    bufferevent_set_timeouts(p->bev[0], &ts->handshake_tv, &ts->handshake_tv);
    bufferevent_enable(p->bev[0], EV_READ | EV_WRITE);
}

/* accept() failed (out of descriptors): pause instead of spinning. */
static void tlsserve_accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct tlsserve *ts = arg;
    struct timeval tv = {0, TLSSERVE_RETRY_MS * 1000};
    evconnlistener_disable(l);
    evtimer_add(ts->retry, &tv);
}

/* The pause after an accept error is over (unless the limit holds it). */
static void tlsserve_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tlsserve *ts = arg;
    (void)fd, (void)what;
    if (!ts->paused)
        evconnlistener_enable(ts->listener);
}

/* Accept TLS on LISTEN_FD and relay to CONFIG->adopt. */
struct tlsserve *tlsserve_new(struct event_base *base, int listen_fd, SSL_CTX *ctx,
                              const struct tlsserve_config *config)
{
    struct tlsserve *ts = xcalloc(1, sizeof *ts);
    ts->base = base;
    ts->ctx = ctx;
    ts->max_pipes = config->max_connections > 0 ? config->max_connections : 1024;
    ts->handshake_tv.tv_sec = config->handshake_timeout_ms / 1000;
    ts->handshake_tv.tv_usec = (config->handshake_timeout_ms % 1000) * 1000;
    ts->adopt = config->adopt;
    ts->arg = config->arg;
    LIST_INIT(&ts->pipes);
    if (util_set_nonblock_cloexec(listen_fd) < 0 ||
        !(ts->listener =
              evconnlistener_new(base, tlsserve_accept_cb, ts,
                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd))) {
        free(ts);
        return NULL;
    }
    evconnlistener_set_error_cb(ts->listener, tlsserve_accept_error_cb);
    ts->retry = evtimer_new(base, tlsserve_retry_cb, ts);
    return ts;
}

/* Close everything: listener, clients, context. */
void tlsserve_free(struct tlsserve *ts)
{
    if (!ts)
        return;
    evconnlistener_free(ts->listener);
    event_free(ts->retry);
    ts->listener = NULL;
    ts->paused = false; /* nothing left to enable */
    while (!LIST_EMPTY(&ts->pipes))
        tlsserve_pipe_free(LIST_FIRST(&ts->pipes));
    SSL_CTX_free(ts->ctx);
    free(ts);
}
