/*
 * check_httpclient: the async HTTP client (common/httpclient.c) against a
 * libevent evhttp server in the same loop on 127.0.0.1: whole answers,
 * kept-alive connections reused, a connection the server closed retried
 * once, refused and silent servers reported (timeouts), names resolved
 * through evdns (localhost), bodies streamed chunk by chunk, a call
 * cancelled from inside its own callback, 200 pools found again, an
 * interim 1xx answer skipped, a failure told apart by whether the request
 * may have reached the server, a server's private socket tried first, and
 * HTTPS (certificates made with the openssl command): verified against the
 * right CA and kept alive, refused against the system's store and for an
 * address the certificate does not name.
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/httpclient.h"
#include "common/tls.h"
#include "common/util.h"

#include "tests/check_support.h"

/* The loop, the server and what the callbacks saw. */
struct fx {
    struct event_base *base;
    struct evhttp *http;
    int port;
    struct httpclient *hc;
    int done, err, status, heads, chunks;
    char why[256];
    struct util_buf body;
    struct evhttp_request *held; /* a request the server leaves unanswered */
    struct httpclient_call *call;
    bool cancel_in_chunk;
    bool sent;  /* httpclient_call_sent() in the done callback */
    bool fresh; /* the next fx_call asks for a new connection */
};

/* Server: /hello answers "hello"; /close answers and closes; /stream sends
 * three chunks; /silent never answers. */
static void fx_serve(struct evhttp_request *req, void *arg)
{
    struct fx *fx = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *b = evbuffer_new();
    if (strcmp(uri, "/silent") == 0) {
        fx->held = req;
    } else if (strcmp(uri, "/stream") == 0) {
        evhttp_send_reply_start(req, 200, "OK");
        for (int i = 0; i < 3; i++) {
            evbuffer_add_printf(b, "part%d;", i);
            evhttp_send_reply_chunk(req, b);
        }
        evhttp_send_reply_end(req);
    } else if (strcmp(uri, "/close") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evbuffer_add_printf(b, "bye");
        evhttp_send_reply(req, 200, "OK", b);
    } else if (strcmp(uri, "/hello") == 0) {
        evbuffer_add_printf(b, "hello %s",
                            evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "post" : "get");
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evhttp_send_reply(req, 404, "Not Found", NULL);
    }
    evbuffer_free(b);
}

static void fx_setup(struct fx *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->base = event_base_new();
    fx->http = evhttp_new(fx->base);
    evhttp_set_gencb(fx->http, fx_serve, fx);
    evhttp_set_allowed_methods(fx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(fx->http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(s);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sin, &len);
    fx->port = ntohs(sin.sin_port);
    fx->hc = httpclient_new(fx->base, NULL);
}

static void fx_teardown(struct fx *fx)
{
    httpclient_free(fx->hc);
    evhttp_free(fx->http);
    event_base_free(fx->base);
    free(fx->body.data);
}

static void fx_done(int err, const char *why, int status, const char *body, size_t len, void *arg)
{
    struct fx *fx = arg;
    fx->done++;
    fx->err = err;
    fx->status = status;
    snprintf(fx->why, sizeof fx->why, "%s", why);
    util_buf_add(&fx->body, body, len);
    event_base_loopbreak(fx->base);
}

static void fx_head(int status, void *arg)
{
    struct fx *fx = arg;
    fx->heads++;
    fx->status = status;
}

static void fx_chunk(const char *data, size_t len, void *arg)
{
    struct fx *fx = arg;
    fx->chunks++;
    util_buf_add(&fx->body, data, len);
    if (fx->cancel_in_chunk) {
        httpclient_cancel(fx->call);
        event_base_loopbreak(fx->base);
    }
}

static const struct httpclient_callbacks fx_cbs = {fx_done, fx_head, fx_chunk};

/* Send R with CBS and run the loop until the call ends (or 5 s). */
static void fx_run(struct fx *fx, const struct httpclient_request *r,
                   const struct httpclient_callbacks *cbs)
{
    fx->done = 0;
    fx->sent = false;
    fx->body.len = 0;
    fx->call = httpclient_send(fx->hc, r, cbs, fx);
    struct timeval limit = {5, 0};
    event_base_loopexit(fx->base, &limit);
    event_base_dispatch(fx->base);
}

/* Send METHOD PATH to HOST and run the loop until the call ends (or 5 s). */
static void fx_call(struct fx *fx, const char *host, int port, const char *path, bool stream,
                    int read_ms)
{
    struct httpclient_request r = {.host = host,
                                   .port = port,
                                   .path = path,
                                   .stream = stream,
                                   .read_timeout_ms = read_ms,
                                   .fresh = fx->fresh};
    fx_run(fx, &r, &fx_cbs);
}

START_TEST(test_get_and_reuse)
{
    struct fx fx;
    fx_setup(&fx);
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, 0);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_int_eq((int)fx.body.len, 9);
    ck_assert_int_eq(memcmp(fx.body.data, "hello get", 9), 0);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 1);
    fx_call(&fx, "127.0.0.1", fx.port, "/nope", false, 0);
    ck_assert_int_eq(fx.status, 404);
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 1); /* one connection for all three */
    fx_teardown(&fx);
}
END_TEST

/* A fresh call never takes the idle connection (a task must not be sent
 * again on a second one if a kept-alive one turns out closed); its own is
 * kept alive after, for the others. */
START_TEST(test_fresh_takes_no_idle_connection)
{
    struct fx fx;
    fx_setup(&fx);
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 1);
    fx.fresh = true;
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 2);
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 3);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 3);
    fx.fresh = false;
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 3); /* the others reuse them */
    fx_teardown(&fx);
}
END_TEST

/* 200 pools (the server on 127.0.0.2 to .201, one port): past the client's
 * first table sizes, every call still finds its own pool again. */
START_TEST(test_many_pools)
{
    struct fx fx;
    char host[32];
    fx_setup(&fx);
    for (int i = 2; i < 202; i++) {
        snprintf(host, sizeof host, "127.0.0.%d", i);
        ck_assert_int_eq(evhttp_bind_socket(fx.http, host, (ev_uint16_t)fx.port), 0);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 2; i < 202; i++) {
            snprintf(host, sizeof host, "127.0.0.%d", i);
            fx_call(&fx, host, fx.port, "/hello", false, 0);
            ck_assert_int_eq(fx.done, 1);
            ck_assert_int_eq(fx.status, 200);
        }
    ck_assert_uint_eq(httpclient_opened(fx.hc), 200); /* the second round reused them all */
    ck_assert_uint_eq(httpclient_idle(fx.hc), 200);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_post_body)
{
    struct fx fx;
    fx_setup(&fx);
    struct httpclient_request r = {.method = "POST",
                                   .host = "127.0.0.1",
                                   .port = fx.port,
                                   .path = "/hello",
                                   .headers = "Content-Type: application/json\r\n",
                                   .body = "{}",
                                   .body_len = 2};
    httpclient_send(fx.hc, &r, &fx_cbs, &fx);
    event_base_dispatch(fx.base);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_int_eq(memcmp(fx.body.data, "hello post", 10), 0);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_server_closes)
{
    struct fx fx;
    fx_setup(&fx);
    fx_call(&fx, "127.0.0.1", fx.port, "/close", false, 0);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 0); /* "Connection: close" is not pooled */
    /* A pooled connection the server then closes: the next call retries fresh. */
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 1);
    evhttp_free(fx.http); /* closes its side of the pooled connection */
    fx.http = evhttp_new(fx.base);
    evhttp_set_gencb(fx.http, fx_serve, &fx);
    ck_assert_int_eq(evhttp_bind_socket(fx.http, "127.0.0.1", (ev_uint16_t)fx.port), 0);
    fx_call(&fx, "127.0.0.1", fx.port, "/hello", false, 0);
    ck_assert_int_eq(fx.err, 0);
    ck_assert_int_eq(fx.status, 200);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_refused_and_timeout)
{
    struct fx fx;
    fx_setup(&fx);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    bind(s, (struct sockaddr *)&sin, sizeof sin);
    getsockname(s, (struct sockaddr *)&sin, &len);
    close(s); /* a port nobody listens on */
    fx_call(&fx, "127.0.0.1", ntohs(sin.sin_port), "/", false, 0);
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_ptr_nonnull(strstr(fx.why, "refused"));
    fx_call(&fx, "127.0.0.1", fx.port, "/silent", false, 200);
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_ptr_nonnull(strstr(fx.why, "timeout"));
    fx_call(&fx, "", 0, "/", false, 0);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_ptr_nonnull(strstr(fx.why, "bad address"));
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_resolve_name)
{
    struct fx fx;
    fx_setup(&fx);
    fx_call(&fx, "localhost", fx.port, "/hello", false, 0);
    /* localhost comes from the hosts file; it may name ::1 first, where
     * nobody listens: then the failure must say so, not hang. */
    ck_assert_int_eq(fx.done, 1);
    if (fx.err == 0)
        ck_assert_int_eq(fx.status, 200);
    else
        ck_assert_ptr_nonnull(strstr(fx.why, "refused"));
    fx_call(&fx, "no-such-host.invalid", fx.port, "/", false, 0);
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_ptr_nonnull(strstr(fx.why, "resolve"));
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_stream)
{
    struct fx fx;
    fx_setup(&fx);
    fx_call(&fx, "127.0.0.1", fx.port, "/stream", true, 0);
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.heads, 1);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_int_ge(fx.chunks, 1);
    ck_assert_int_eq((int)fx.body.len, 18);
    ck_assert_int_eq(memcmp(fx.body.data, "part0;part1;part2;", 18), 0);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_cancel_in_callback)
{
    struct fx fx;
    fx_setup(&fx);
    fx.cancel_in_chunk = true;
    fx_call(&fx, "127.0.0.1", fx.port, "/stream", true, 0);
    ck_assert_int_eq(fx.done, 0); /* cancelled: no done callback */
    ck_assert_int_ge(fx.chunks, 1);
    /* Cancelled before it ran: nothing at all. */
    struct httpclient_request r = {.host = "127.0.0.1", .port = fx.port, .path = "/hello"};
    httpclient_cancel(httpclient_send(fx.hc, &r, &fx_cbs, &fx));
    struct timeval t = {0, 100000};
    event_base_loopexit(fx.base, &t);
    event_base_dispatch(fx.base);
    ck_assert_int_eq(fx.done, 0);
    fx_teardown(&fx);
}
END_TEST

/* The server's TLS: a context with CERT and KEY, and the bufferevent hook. */
static struct bufferevent *fx_tls_bev(struct event_base *base, void *arg)
{
    return bufferevent_openssl_socket_new(base, -1, SSL_new(arg), BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

START_TEST(test_https)
{
    char dir[] = "/tmp/check-httpclient-XXXXXX", cmd[2048], ca[200], cert[200], key[200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert(check_make_certs(dir));
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/srv.pem", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    SSL_CTX *server = SSL_CTX_new(TLS_server_method());
    ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(server, cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(server, key, SSL_FILETYPE_PEM), 1);
    struct fx fx;
    fx_setup(&fx);
    evhttp_set_bevcb(fx.http, fx_tls_bev, server);
    /* The same server on 127.0.0.2, an address the certificate does not name. */
    ck_assert_int_eq(evhttp_bind_socket(fx.http, "127.0.0.2", (ev_uint16_t)fx.port), 0);
    char err[300];
    SSL_CTX *good = tls_client_ctx(ca, err, sizeof err), *sys = tls_client_ctx(NULL, err, 300);
    ck_assert_ptr_nonnull(good);
    ck_assert_ptr_nonnull(sys);
    struct httpclient_request r = {.host = "127.0.0.1", .port = fx.port, .path = "/hello"};
    r.tls = good;
    httpclient_send(fx.hc, &r, &fx_cbs, &fx);
    event_base_dispatch(fx.base);
    ck_assert_msg(fx.err == 0, "%s", fx.why);
    ck_assert_int_eq(fx.status, 200);
    ck_assert_int_eq(memcmp(fx.body.data, "hello get", 9), 0);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 1);
    fx.body.len = 0; /* the TLS connection is kept alive and reused */
    httpclient_send(fx.hc, &r, &fx_cbs, &fx);
    event_base_dispatch(fx.base);
    ck_assert_msg(fx.err == 0, "%s", fx.why);
    ck_assert_int_eq(memcmp(fx.body.data, "hello get", 9), 0);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 1);
    r.tls = sys; /* the test CA is not in the system's store */
    fx.body.len = 0;
    httpclient_send(fx.hc, &r, &fx_cbs, &fx);
    event_base_dispatch(fx.base);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_msg(strstr(fx.why, "certificate verify failed"), "%s", fx.why);
    r.tls = good;
    r.host = "127.0.0.2";
    httpclient_send(fx.hc, &r, &fx_cbs, &fx);
    event_base_dispatch(fx.base);
    ck_assert_int_eq(fx.err, -1);
    ck_assert_msg(strstr(fx.why, "certificate verify failed"), "%s", fx.why);
    fx_teardown(&fx);
    SSL_CTX_free(good);
    SSL_CTX_free(sys);
    SSL_CTX_free(server);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A raw server for answers evhttp will not send: each connection gets
 * CANNED at once and stays open (the last one, until the test frees it). */
static struct bufferevent *fx_canned_bev;

static void fx_canned_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int len, void *arg)
{
    (void)l, (void)sa, (void)len;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_write(bev, arg, strlen(arg));
    bufferevent_enable(bev, EV_READ); /* the request is read and ignored */
    if (fx_canned_bev)
        bufferevent_free(fx_canned_bev);
    fx_canned_bev = bev;
}

/* An interim 1xx answer ends with its head, whatever length it claims (RFC
 * 9110 §15.2): the final answer after it is the one delivered, collected or
 * streamed (fuzz_httpclient found its claimed body taken for the call's). */
START_TEST(test_interim_answer_skipped)
{
    static char canned[] = "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
                           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (int stream = 0; stream < 2; stream++) {
        struct fx fx;
        fx_setup(&fx);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct evconnlistener *l =
            evconnlistener_new_bind(fx.base, fx_canned_accept, canned, LEV_OPT_CLOSE_ON_FREE, -1,
                                    (struct sockaddr *)&sin, sizeof sin);
        ck_assert_ptr_nonnull(l);
        socklen_t len = sizeof sin;
        getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
        fx_call(&fx, "127.0.0.1", ntohs(sin.sin_port), "/", stream, 0);
        ck_assert_int_eq(fx.done, 1);
        ck_assert_msg(fx.err == 0, "%s", fx.why);
        ck_assert_int_eq(fx.status, 200);
        ck_assert_int_eq(fx.heads, stream ? 1 : 0);
        ck_assert_uint_eq(fx.body.len, 2);
        ck_assert_int_eq(memcmp(fx.body.data, "ok", 2), 0);
        evconnlistener_free(l);
        if (fx_canned_bev)
            bufferevent_free(fx_canned_bev);
        fx_canned_bev = NULL;
        fx_teardown(&fx);
    }
}
END_TEST

/* A raw server that reads a request head and closes without a word: what a
 * server that dies mid-exchange looks like from here. */
static void fx_drop_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos >= 0) {
        evbuffer_drain(in, evbuffer_get_length(in));
        bufferevent_free(bev);
    }
}

static void fx_drop_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int len, void *arg)
{
    (void)sa, (void)len, (void)arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, fx_drop_read, NULL, NULL, NULL);
    bufferevent_enable(bev, EV_READ);
}

/* The done callback, noting whether the request may have reached the server. */
static void fx_done_sent(int err, const char *why, int status, const char *body, size_t len,
                         void *arg)
{
    struct fx *fx = arg;
    fx->sent = httpclient_call_sent(fx->call);
    fx_done(err, why, status, body, len, arg);
}

static const struct httpclient_callbacks fx_sent_cbs = {fx_done_sent, NULL, NULL};

/* Send POST PATH to 127.0.0.1:PORT (private socket LOCAL first) and run the
 * loop until the call ends (or 5 s). */
static void fx_post(struct fx *fx, int port, const char *local, const char *path)
{
    struct httpclient_request r = {.method = "POST",
                                   .host = "127.0.0.1",
                                   .port = port,
                                   .local = local,
                                   .path = path,
                                   .body = "{}",
                                   .body_len = 2};
    fx_run(fx, &r, &fx_sent_cbs);
}

/* A failed call says whether its request may have reached the server: not
 * when nobody took the connection, but when the server read it and went
 * away without an answer (the caller must not send it elsewhere then). */
START_TEST(test_sent_or_not)
{
    struct fx fx;
    fx_setup(&fx);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    bind(s, (struct sockaddr *)&sin, sizeof sin);
    getsockname(s, (struct sockaddr *)&sin, &len);
    close(s); /* a port nobody listens on */
    fx_post(&fx, ntohs(sin.sin_port), NULL, "/");
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, -1);
    ck_assert(!fx.sent);

    struct evconnlistener *l =
        evconnlistener_new_bind(fx.base, fx_drop_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
                                (struct sockaddr *)&sin, sizeof sin);
    ck_assert_ptr_nonnull(l);
    len = sizeof sin;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
    fx_post(&fx, ntohs(sin.sin_port), NULL, "/");
    ck_assert_int_eq(fx.done, 1);
    ck_assert_int_eq(fx.err, -1);
    ck_assert(fx.sent);
    evconnlistener_free(l);

    fx_post(&fx, fx.port, NULL, "/hello");
    ck_assert_int_eq(fx.err, 0);
    ck_assert(fx.sent);
    fx_teardown(&fx);
}
END_TEST

/* The private socket's own server: it says so. */
static void fx_serve_local(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "local");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* A request naming the server's private socket goes there first, its
 * connections kept in a pool of their own; once that socket is gone, to
 * HOST:PORT. A dropped connection on it is reported as sent too. */
START_TEST(test_private_socket_first)
{
    struct fx fx;
    char name[UTIL_LOCAL_NAME_MAX];
    fx_setup(&fx);
    int lfd = util_listen_local(name);
    ck_assert_int_ge(lfd, 0);
    struct evhttp *local = evhttp_new(fx.base);
    evhttp_set_gencb(local, fx_serve_local, NULL);
    evhttp_set_allowed_methods(local, EVHTTP_REQ_POST);
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(local, lfd);
    ck_assert_ptr_nonnull(bound);
    for (int i = 0; i < 2; i++) {
        fx_post(&fx, fx.port, name, "/hello");
        ck_assert_msg(fx.err == 0, "%s", fx.why);
        ck_assert_uint_eq(fx.body.len, 5);
        ck_assert_int_eq(memcmp(fx.body.data, "local", 5), 0);
    }
    ck_assert_uint_eq(httpclient_opened(fx.hc), 1); /* kept alive and reused */
    fx_post(&fx, fx.port, NULL, "/hello");          /* HOST:PORT's own pool */
    ck_assert_int_eq(memcmp(fx.body.data, "hello post", 10), 0);
    ck_assert_uint_eq(httpclient_opened(fx.hc), 2);
    ck_assert_uint_eq(httpclient_idle(fx.hc), 2);

    evhttp_free(local); /* closes the socket and its kept-alive connection */
    fx_post(&fx, fx.port, name, "/hello");
    ck_assert_msg(fx.err == 0, "%s", fx.why);
    ck_assert_int_eq(memcmp(fx.body.data, "hello post", 10), 0);
    fx_teardown(&fx);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the programs do: a server gone mid-request */
    Suite *s = suite_create("httpclient");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_get_and_reuse);
    tcase_add_test(tc, test_fresh_takes_no_idle_connection);
    tcase_add_test(tc, test_many_pools);
    tcase_add_test(tc, test_post_body);
    tcase_add_test(tc, test_server_closes);
    tcase_add_test(tc, test_refused_and_timeout);
    tcase_add_test(tc, test_resolve_name);
    tcase_add_test(tc, test_stream);
    tcase_add_test(tc, test_cancel_in_callback);
    tcase_add_test(tc, test_https);
    tcase_add_test(tc, test_interim_answer_skipped);
    tcase_add_test(tc, test_sent_or_not);
    tcase_add_test(tc, test_private_socket_first);
    suite_add_tcase(s, tc);
    return check_run(s);
}
