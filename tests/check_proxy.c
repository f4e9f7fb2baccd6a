/*
 * check_proxy: the supervisor's reverse proxy. A real http_server hands every
 * request head to proxy_forward(), which forwards it to a "worker" the test
 * plays itself on a loopback listening socket (or on a private abstract Unix
 * socket, which the proxy tries first), byte by byte: the test sees
 * exactly what the proxy sends up, and can answer, reset or half-close as
 * a real or a broken worker would. Everything is non-blocking and the loop
 * is turned until the bytes expected have arrived, under a deadline. One
 * test gives the proxy and an httpclient one connection set (httpconn.h)
 * and sees them carry each other's requests on one worker connection.
 */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http.h"
#include "common/httpclient.h"
#include "common/httpconn.h"
#include "common/util.h"
#include "supervisor/proxy.h"

#include "tests/check_support.h"

#define DEADLINE_MS 5000
#define FLOOD_BYTES (4 * 1024 * 1024)

/* One end the test plays (the client, or the worker's side of a connection)
 * and the bytes it received. */
struct peer {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
    bool reset; /* the connection ended with a reset, not a clean EOF */
};

/* The proxy under test, its front server and the worker's listener. */
static struct {
    struct event_base *base;
    struct http_server *server;
    struct proxy *proxy;
    int worker_listen;
    int worker_port;
    const char *local; /* target.local: NULL, or one of the names below */
    char local_name[2][UTIL_LOCAL_NAME_MAX];
    int local_listen[2]; /* workers' private sockets, -1 when none */
    int front_port;
    int heads;
    size_t max_body;
    struct httpconn_set *conns; /* NULL, or a set the proxy shares with HC */
    struct httpclient *hc;
} fx;

/* Every request head goes to the worker as it is. */
static void on_headers(struct http_conn *conn, struct http_request *req, void *arg)
{
    struct proxy_target target = {.bot_id = "BOT-T",
                                  .host = "127.0.0.1",
                                  .port = fx.worker_port,
                                  .local = fx.local,
                                  .path = req->path,
                                  .query = req->query};
    (void)arg;
    fx.heads++;
    proxy_forward(fx.proxy, conn, req, &target);
}

/* Complete requests were all taken at their head. */
static void on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    (void)conn;
    (void)req;
    (void)arg;
}

/* A non-blocking listening socket on a kernel-chosen loopback port. */
static int listen_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    util_set_nonblock_cloexec(fd);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Fresh loop, front server, proxy and worker listener for each test. */
static void setup(void)
{
    struct http_server_config config = {.on_request = on_request, .on_headers = on_headers};

    memset(&fx, 0, sizeof fx);
    fx.local_listen[0] = fx.local_listen[1] = -1;
    fx.base = event_base_new();
    http_limits_default(&config.limits);
    fx.worker_listen = listen_loopback(&fx.worker_port);
    fx.server = http_server_new(fx.base, listen_loopback(&fx.front_port), &config);
    ck_assert_ptr_nonnull(fx.server);
    fx.max_body = config.limits.max_body;
    fx.proxy = proxy_new(fx.base, NULL, fx.max_body, 5000);
}

/* Free the proxy, the server and the loop. */
static void teardown(void)
{
    httpclient_free(fx.hc);
    proxy_free(fx.proxy);
    httpconn_set_free(fx.conns); /* after both of its users */
    http_server_free(fx.server);
    if (fx.worker_listen >= 0)
        close(fx.worker_listen);
    for (int i = 0; i < 2; i++)
        if (fx.local_listen[i] >= 0)
            close(fx.local_listen[i]);
    event_base_free(fx.base);
}

/* Read whatever P received so far. */
static void peer_read(struct peer *p)
{
    while (!p->eof) {
        if (p->cap - p->len < 65536) {
            p->cap = p->cap ? p->cap * 2 : 131072;
            p->buf = xrealloc(p->buf, p->cap + 1);
        }
        ssize_t n = recv(p->fd, p->buf + p->len, p->cap - p->len, 0);
        if (n > 0) {
            p->len += (size_t)n;
            p->buf[p->len] = '\0';
            continue;
        }
        if (n < 0 && errno == ECONNRESET)
            p->reset = true;
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            p->eof = true;
        return;
    }
}

/* Turn the loop once, then read what P (if any) got. */
static void pump_once(struct peer *p)
{
    struct pollfd pfd = {.fd = p ? p->fd : -1, .events = POLLIN};
    event_base_loop(fx.base, EVLOOP_NONBLOCK);
    poll(&pfd, 1, 1);
    if (p)
        peer_read(p);
}

/* Turn the loop until COND holds (or the deadline). */
#define WAIT_FOR(p, cond)                                                                          \
    do {                                                                                           \
        int64_t end_ = util_mono_ms() + DEADLINE_MS;                                               \
        while (!(cond) && util_mono_ms() < end_)                                                   \
            pump_once(p);                                                                          \
        ck_assert_msg((cond), "timed out waiting for " #cond);                                     \
    } while (0)

/* True once P has received TEXT. */
static bool peer_has(const struct peer *p, const char *text)
{
    return p->buf && strstr(p->buf, text) != NULL;
}

/* Forget what P received so far. */
static void peer_forget(struct peer *p)
{
    p->len = 0;
    if (p->buf)
        p->buf[0] = '\0';
}

/* A client connected to the front server. */
static struct peer client_open(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)fx.front_port)};
    struct peer c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    ck_assert_int_ge(c.fd, 0);
    ck_assert_int_eq(connect(c.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    util_set_nonblock_cloexec(c.fd);
    return c;
}

/* The next connection the proxy opened to the worker listening on FD. */
static struct peer worker_accept_on(int fd)
{
    struct peer w = {.fd = -1};
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while (w.fd < 0 && util_mono_ms() < end) {
        pump_once(NULL);
        w.fd = accept(fd, NULL, NULL);
    }
    ck_assert_msg(w.fd >= 0, "the proxy did not connect to the worker");
    util_set_nonblock_cloexec(w.fd);
    return w;
}

/* The next connection the proxy opened to the worker's port. */
static struct peer worker_accept(void)
{
    return worker_accept_on(fx.worker_listen);
}

/* Worker private socket I listens (fx.local_name[I]) and becomes the
 * target's. */
static void local_listen(int i)
{
    fx.local_listen[i] = util_listen_local(fx.local_name[i]);
    ck_assert_int_ge(fx.local_listen[i], 0);
    fx.local = fx.local_name[i];
}

/* True when nobody connected to the worker listening on FD. */
static bool nothing_to_accept(int fd)
{
    int in = accept(fd, NULL, NULL);
    if (in >= 0)
        close(in);
    return in < 0;
}

/* Close P's socket and forget its bytes. */
static void peer_close(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    free(p->buf);
    p->buf = NULL;
}

/* Send all of S, turning the loop while the socket is full. */
static void peer_send(struct peer *p, const char *s)
{
    size_t len = strlen(s);
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while (len > 0) {
        ssize_t n = send(p->fd, s, len, MSG_NOSIGNAL);
        if (n > 0) {
            s += n;
            len -= (size_t)n;
        } else {
            ck_assert_msg(errno == EAGAIN, "send: %s", strerror(errno));
            ck_assert_msg(util_mono_ms() < end, "send timed out");
            pump_once(p);
        }
    }
}

/* Send what the socket takes of a flood of bytes (up to FLOOD_BYTES in
 * all); a failed send means the connection was reset. */
static void peer_flood(struct peer *p, size_t *sent)
{
    static char junk[65536];
    while (*sent < FLOOD_BYTES && !p->reset) {
        ssize_t n = send(p->fd, junk, sizeof junk, MSG_NOSIGNAL);
        if (n < 0) {
            p->reset = errno != EAGAIN;
            return;
        }
        *sent += (size_t)n;
    }
}

/* Bytes waiting unread in P's socket. */
static int peer_unread(const struct peer *p)
{
    int n = 0;
    ck_assert_int_eq(ioctl(p->fd, FIONREAD, &n), 0);
    return n;
}

START_TEST(test_framing_is_our_own)
{
    struct peer c = client_open();
    peer_send(&c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "\r\n\r\nhello"));
    ck_assert(peer_has(&w, "\r\nContent-Length: 5\r\n"));
    ck_assert(!peer_has(&w, "Transfer-Encoding"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\nok"));

    /* Chunked goes up re-chunked; the client's own chunking is not kept. */
    peer_forget(&w);
    peer_send(&c, "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n");
    WAIT_FOR(&w, peer_has(&w, "\r\n0\r\n\r\n"));
    ck_assert(peer_has(&w, "POST /b HTTP/1.1\r\n"));
    ck_assert(peer_has(&w, "\r\nTransfer-Encoding: chunked\r\n"));
    ck_assert(peer_has(&w, "\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"));
    ck_assert(!peer_has(&w, "ext=1"));
    ck_assert(!peer_has(&w, "Content-Length"));
    peer_forget(&c);
    peer_send(&w, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\nok"));
    ck_assert(peer_has(&c, "HTTP/1.1 201 Created\r\n"));
    peer_close(&w);
    peer_close(&c);
}
END_TEST

START_TEST(test_header_name_with_blank_not_forwarded)
{
    /* http_parser reads "Transfer-Encoding :" as chunked; a request whose
     * decoded body holds a second request must not reach the worker. */
    static const char *const heads[] = {"Transfer-Encoding : chunked",
                                        "TRANSFER-ENCODING : CHUNKED"};
    static const char hidden[] = "0\r\n\r\nPOST /api/task HTTP/1.1\r\nHost: x\r\n\r\n";
    char request[512];
    for (size_t i = 0; i < 2; i++) {
        struct peer c = client_open();
        snprintf(request, sizeof request,
                 "POST /api/task HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n", heads[i],
                 strlen(hidden), hidden);
        peer_send(&c, request);
        WAIT_FOR(&c, c.eof);
        ck_assert_msg(peer_has(&c, "HTTP/1.1 400 "), "%s", c.buf ? c.buf : "(nothing)");
        peer_close(&c);
    }
    ck_assert_int_eq(fx.heads, 0);
    ck_assert_int_lt(accept(fx.worker_listen, NULL, NULL), 0);
}
END_TEST

/* The head of what P received (up to the blank line), for header checks. */
static bool peer_head_has(const struct peer *p, const char *text)
{
    const char *end = p->buf ? strstr(p->buf, "\r\n\r\n") : NULL;
    const char *at = p->buf ? strstr(p->buf, text) : NULL;
    return at && end && at < end;
}

START_TEST(test_hop_by_hop_dropped_both_ways)
{
    struct peer c = client_open();
    peer_send(&c, "GET /status?token=t&x=1 HTTP/1.1\r\nHost: front:9\r\n"
                  "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
                  "TE: trailers\r\nProxy-Authorization: p\r\nUpgrade: h2c\r\n"
                  "Authorization: Bearer client\r\nX-Forwarded-For: 10.0.0.1\r\n"
                  "X-Forwarded-Host: evil\r\nX-Keep: yes\r\n\r\n");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "\r\n\r\n"));
    ck_assert_msg(strncmp(w.buf, "GET /status?x=1 HTTP/1.1\r\n", 26) == 0, "%s", w.buf);
    ck_assert(peer_has(&w, "\r\nHost: 127.0.0.1:"));
    ck_assert(peer_has(&w, "\r\nX-Keep: yes\r\n"));
    ck_assert(peer_has(&w, "\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"));
    ck_assert(peer_has(&w, "\r\nX-Forwarded-Host: front:9\r\n"));
    ck_assert(peer_has(&w, "\r\nX-Forwarded-Proto: http\r\n"));
    static const char *const gone[] = {
        "Connection",          "X-Secret",         "Keep-Alive",    "TE:",
        "Proxy-Authorization", "Upgrade",          "Authorization", "evil",
        "Content-Length",      "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        ck_assert_msg(!peer_has(&w, gone[i]), "%s went up: %s", gone[i], w.buf);

    /* A small answer is relayed whole, with our own Date and Server. */
    peer_send(&w, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\n"
                  "Keep-Alive: timeout=5\r\nX-Public: q\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
                  "Server: worker\r\nTrailer: X-T\r\nContent-Length: 2\r\n\r\nok");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\nok"));
    ck_assert(peer_head_has(&c, "\r\nX-Public: q\r\n"));
    ck_assert(peer_head_has(&c, "\r\nContent-Length: 2\r\n"));
    ck_assert(peer_head_has(&c, "\r\nServer: hive/"));
    static const char *const private[] = {"X-Private", "Keep-Alive", "Trailer", "worker", "2001"};
    for (size_t i = 0; i < sizeof private / sizeof private[0]; i++)
        ck_assert_msg(!peer_has(&c, private[i]), "%s came back: %s", private[i], c.buf);

    /* A streamed answer keeps the worker's Date and Server; a header name
     * split across reads is judged whole. */
    peer_forget(&c);
    peer_forget(&w);
    peer_send(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(&w, peer_has(&w, "\r\n\r\n"));
    static const char *const pieces[] = {
        "HTTP/1.1 200 OK\r\nConn",
        "ection: X-Pri",
        "vate\r\nX-Priv",
        "ate: p\r\nServer: wor",
        "ker\r\nTransfer-Encoding: chunked\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n\r\n",
        "3\r\nabc\r\n",
        "0\r\n\r\n"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        peer_send(&w, pieces[i]);
        for (int k = 0; k < 3; k++)
            pump_once(&c);
    }
    WAIT_FOR(&c, peer_has(&c, "\r\n0\r\n\r\n"));
    ck_assert(peer_head_has(&c, "\r\nServer: worker\r\n"));
    ck_assert(peer_head_has(&c, "\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n"));
    ck_assert(peer_head_has(&c, "\r\nTransfer-Encoding: chunked\r\n"));
    ck_assert(peer_has(&c, "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
    ck_assert_msg(!peer_has(&c, "X-Private"), "%s", c.buf);
    peer_close(&w);
    peer_close(&c);
}
END_TEST

START_TEST(test_worker_connection_reused)
{
    struct peer c = client_open();
    peer_send(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "\r\n\r\n"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n1"));

    /* The next request, from another client, goes up the same connection. */
    struct peer c2 = client_open();
    peer_forget(&w);
    peer_send(&c2, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(&w, peer_has(&w, "GET /2 "));
    ck_assert_int_lt(accept(fx.worker_listen, NULL, NULL), 0);

    /* Bytes after a complete answer: that connection is not used again. */
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2EXTRA");
    WAIT_FOR(&c2, peer_has(&c2, "\r\n\r\n2"));
    peer_send(&c2, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w2 = worker_accept();
    WAIT_FOR(&w2, peer_has(&w2, "GET /3 "));
    WAIT_FOR(&w, w.eof);
    ck_assert(!peer_has(&c2, "EXTRA"));

    /* The worker closes its idle connection; the next request still gets
     * through, on a new one, even when both happen at once. */
    peer_send(&w2, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3");
    WAIT_FOR(&c2, peer_has(&c2, "\r\n\r\n3"));
    peer_close(&w2);
    peer_forget(&c2);
    peer_send(&c2, "GET /4 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w3 = worker_accept();
    WAIT_FOR(&w3, peer_has(&w3, "GET /4 "));
    peer_send(&w3, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n4");
    WAIT_FOR(&c2, peer_has(&c2, "\r\n\r\n4"));
    ck_assert_uint_eq(proxy_exchanges(fx.proxy), 0);
    peer_close(&w3);
    peer_close(&w);
    peer_close(&c2);
    peer_close(&c);
}
END_TEST

START_TEST(test_worker_unreachable_502)
{
    struct peer c = client_open();
    close(fx.worker_listen);
    fx.worker_listen = -1;
    peer_send(&c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n{"));
    ck_assert_msg(strncmp(c.buf, "HTTP/1.1 502 ", 13) == 0, "%s", c.buf);
    ck_assert(peer_has(&c, "cannot reach bot BOT-T"));
    ck_assert_uint_eq(proxy_exchanges(fx.proxy), 0);
    peer_close(&c);
}
END_TEST

/* One request from C answered by worker W, which gets "GET PATH ". */
static void roundtrip(struct peer *c, struct peer *w, const char *path)
{
    char line[64];
    peer_forget(c);
    peer_forget(w);
    snprintf(line, sizeof line, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    peer_send(c, line);
    snprintf(line, sizeof line, "GET %s ", path);
    WAIT_FOR(w, peer_has(w, line) && peer_has(w, "\r\n\r\n"));
    snprintf(line, sizeof line, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(path),
             path);
    peer_send(w, line);
    snprintf(line, sizeof line, "\r\n\r\n%s", path);
    WAIT_FOR(c, peer_has(c, line));
    ck_assert_msg(strncmp(c->buf, "HTTP/1.1 200 ", 13) == 0, "%s", c->buf);
}

START_TEST(test_private_socket_preferred_and_reused)
{
    local_listen(0);
    struct peer c = client_open();
    peer_send(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w = worker_accept_on(fx.local_listen[0]);
    WAIT_FOR(&w, peer_has(&w, "\r\n\r\n"));
    ck_assert_msg(strncmp(w.buf, "GET /1 HTTP/1.1\r\n", 17) == 0, "%s", w.buf);
    ck_assert(nothing_to_accept(fx.worker_listen));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n1"));

    /* Kept alive: the next requests, from this client and another, go up
     * the same Unix connection; nothing new is opened on either socket. */
    roundtrip(&c, &w, "/2");
    struct peer c2 = client_open();
    roundtrip(&c2, &w, "/3");
    ck_assert(nothing_to_accept(fx.local_listen[0]));
    ck_assert(nothing_to_accept(fx.worker_listen));
    ck_assert(!w.eof);
    peer_close(&c2);
    peer_close(&w);
    peer_close(&c);
}
END_TEST

START_TEST(test_private_socket_gone_uses_port)
{
    local_listen(0);
    close(fx.local_listen[0]); /* the worker's socket is gone: connect is refused */
    fx.local_listen[0] = -1;
    struct peer c = client_open();
    struct peer w;
    peer_send(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "GET /1 ") && peer_has(&w, "\r\n\r\n"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n1"));
    ck_assert_msg(strncmp(c.buf, "HTTP/1.1 200 ", 13) == 0, "%s", c.buf);
    roundtrip(&c, &w, "/2"); /* and that TCP connection is kept alive */
    ck_assert(nothing_to_accept(fx.worker_listen));
    peer_close(&w);
    peer_close(&c);
}
END_TEST

START_TEST(test_private_socket_full_uses_port)
{
    /* A private socket whose backlog is full: a Unix connect fails at once
     * (EAGAIN) instead of waiting, and the request takes the port. */
    local_listen(0);
    ck_assert_int_eq(listen(fx.local_listen[0], 0), 0);
    struct sockaddr_storage ss;
    socklen_t len = util_local_addr(fx.local, &ss);
    int filler[2] = {-1, -1};
    int n = 0, err = 0;
    for (; n < 2; n++) {
        filler[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(filler[n], 0);
        if (connect(filler[n], (struct sockaddr *)&ss, len) < 0) {
            err = errno;
            break;
        }
    }
    ck_assert_msg(err == EAGAIN, "the backlog did not fill: %s", strerror(err));

    struct peer c = client_open();
    peer_send(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "GET /1 ") && peer_has(&w, "\r\n\r\n"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n1"));
    ck_assert_msg(strncmp(c.buf, "HTTP/1.1 200 ", 13) == 0, "%s", c.buf);
    int in = accept(fx.local_listen[0], NULL, NULL); /* only the test's own */
    ck_assert_int_ge(in, 0);
    close(in);
    ck_assert(nothing_to_accept(fx.local_listen[0]));
    for (int i = 0; i < 2; i++)
        close(filler[i]);
    peer_close(&w);
    peer_close(&c);
}
END_TEST

START_TEST(test_private_socket_change_flushes_pool)
{
    local_listen(0);
    struct peer c = client_open();
    peer_send(&c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w0 = worker_accept_on(fx.local_listen[0]);
    WAIT_FOR(&w0, peer_has(&w0, "GET /1 ") && peer_has(&w0, "\r\n\r\n"));
    peer_send(&w0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n1"));

    /* The worker restarted on a new socket, same port: the next request
     * goes to the new one and the idle connection to the old is closed. */
    local_listen(1);
    peer_forget(&c);
    peer_send(&c, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w1 = worker_accept_on(fx.local_listen[1]);
    WAIT_FOR(&w1, peer_has(&w1, "GET /2 ") && peer_has(&w1, "\r\n\r\n"));
    WAIT_FOR(&w0, w0.eof);
    ck_assert(!peer_has(&w0, "GET /2 "));
    ck_assert(nothing_to_accept(fx.local_listen[0]));
    ck_assert(nothing_to_accept(fx.worker_listen));
    peer_send(&w1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n2"));

    /* No private socket any more: the port, and the Unix one is let go. */
    fx.local = NULL;
    peer_forget(&c);
    peer_send(&c, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "GET /3 ") && peer_has(&w, "\r\n\r\n"));
    WAIT_FOR(&w1, w1.eof);
    ck_assert(nothing_to_accept(fx.local_listen[1]));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\n3"));
    peer_close(&w);
    peer_close(&w1);
    peer_close(&w0);
    peer_close(&c);
}
END_TEST

/* What the httpclient's calls ended with. */
struct hc_result {
    int done, err, status;
    char body[64];
};

static void hc_done(int err, const char *why, int status, const char *body, size_t len, void *arg)
{
    struct hc_result *r = arg;
    (void)why;
    r->done++;
    r->err = err;
    r->status = status;
    snprintf(r->body, sizeof r->body, "%.*s", (int)len, body);
}

/* Send GET PATH to the worker's port with the httpclient. */
static void hc_get(struct hc_result *r, const char *path)
{
    static const struct httpclient_callbacks cbs = {hc_done, NULL, NULL};
    struct httpclient_request req = {.host = "127.0.0.1", .port = fx.worker_port, .path = path};
    httpclient_send(fx.hc, &req, &cbs, r);
}

START_TEST(test_connections_shared_with_httpclient)
{
    static const struct httpconn_limits lim = {
        .idle_max = 4, .idle_timeout_ms = 5000, .io_timeout_ms = 5000};
    struct hc_result r = {0};
    proxy_free(fx.proxy);
    fx.conns = httpconn_set_new(fx.base, &lim);
    fx.proxy = proxy_new(fx.base, fx.conns, fx.max_body, 5000);
    fx.hc = httpclient_new(fx.base, fx.conns);

    /* The client's call opens the connection and leaves it idle... */
    hc_get(&r, "/from-client");
    struct peer w = worker_accept();
    WAIT_FOR(&w, peer_has(&w, "GET /from-client ") && peer_has(&w, "\r\n\r\n"));
    ck_assert(peer_has(&w, "\r\nHost: 127.0.0.1:"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    WAIT_FOR(NULL, r.done == 1);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "hi");
    ck_assert_uint_eq(httpconn_set_idle(fx.conns), 1);

    /* ...the proxy's request to that worker takes it... */
    struct peer c = client_open();
    peer_forget(&w);
    peer_send(&c, "GET /from-proxy HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT_FOR(&w, peer_has(&w, "GET /from-proxy ") && peer_has(&w, "\r\n\r\n"));
    ck_assert(nothing_to_accept(fx.worker_listen));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nyo");
    WAIT_FOR(&c, peer_has(&c, "\r\n\r\nyo"));
    WAIT_FOR(NULL, httpconn_set_idle(fx.conns) == 1);

    /* ...and gives it back for the client's next call. */
    peer_forget(&w);
    hc_get(&r, "/again");
    WAIT_FOR(&w, peer_has(&w, "GET /again ") && peer_has(&w, "\r\n\r\n"));
    peer_send(&w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    WAIT_FOR(NULL, r.done == 2);
    ck_assert_str_eq(r.body, "ok");
    ck_assert(nothing_to_accept(fx.worker_listen));
    ck_assert_uint_eq(httpconn_set_opened(fx.conns), 1);
    peer_close(&w);
    peer_close(&c);
}
END_TEST

/* A client whose upgrade the worker accepted, and that worker's side. */
static void tunnel_open(struct peer *c, struct peer *w)
{
    *c = client_open();
    peer_send(c,
              "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    *w = worker_accept();
    WAIT_FOR(w, peer_has(w, "\r\n\r\n"));
    ck_assert(peer_has(w, "\r\nUpgrade: websocket\r\n"));
    /* The worker's first tunnel bytes may come with its 101. */
    peer_send(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\n\r\nhello");
    WAIT_FOR(c, peer_has(c, "\r\n\r\nhello"));
    ck_assert(strncmp(c->buf, "HTTP/1.1 101 ", 13) == 0);
    ck_assert(peer_has(c, "\r\nUpgrade: websocket\r\n"));
    ck_assert(peer_has(c, "\r\nConnection: Upgrade\r\n"));
    ck_assert_uint_eq(proxy_tunnels(fx.proxy), 1);
    peer_forget(c);
    peer_forget(w);
}

START_TEST(test_tunnel_relays_in_both_directions)
{
    struct peer c, w;
    tunnel_open(&c, &w);
    peer_send(&c, "ping");
    WAIT_FOR(&w, peer_has(&w, "ping"));
    peer_send(&w, "pong");
    WAIT_FOR(&c, peer_has(&c, "pong"));
    peer_close(&c); /* the client leaves: the worker sees a clean EOF */
    WAIT_FOR(&w, w.eof);
    ck_assert(!w.reset);
    peer_close(&w);
    WAIT_FOR(NULL, proxy_tunnels(fx.proxy) == 0);
}
END_TEST

START_TEST(test_tunnel_last_words_survive_a_reset)
{
    /* The client floods; the worker says its last words (a 1009 close frame)
     * and closes with the flood unread, which resets the proxy's writes. The
     * last words must still reach the client, followed by a clean EOF. */
    for (int round = 0; round < 20; round++) {
        struct peer c, w;
        size_t sent = 0;
        tunnel_open(&c, &w);
        peer_flood(&c, &sent);
        WAIT_FOR(&w, w.len > 0);
        for (int i = 0; i < 10; i++)
            pump_once(NULL); /* the flood piles up, unread, at the worker */
        ck_assert_int_gt(peer_unread(&w), 0);
        peer_send(&w, "last words");
        peer_close(&w); /* with unread input: a reset */
        WAIT_FOR(&c, (peer_flood(&c, &sent), c.eof || c.reset));
        ck_assert_msg(peer_has(&c, "last words"), "round %d: lost", round);
        ck_assert_msg(!c.reset, "round %d: reset", round);
        peer_close(&c);
        WAIT_FOR(NULL, proxy_tunnels(fx.proxy) == 0);
    }
}
END_TEST

START_TEST(test_tunnel_worker_closes_cleanly)
{
    struct peer c, w;
    tunnel_open(&c, &w);
    peer_send(&w, "bye");
    shutdown(w.fd, SHUT_WR);
    WAIT_FOR(&c, c.eof);
    ck_assert(peer_has(&c, "bye"));
    ck_assert(!c.reset);
    peer_send(&c, "ignored"); /* the proxy reads and drops it while lingering */
    peer_close(&c);
    WAIT_FOR(NULL, proxy_tunnels(fx.proxy) == 0);
    peer_close(&w);
}
END_TEST

/* The suite: requests, then tunnels. */
static Suite *check_proxy_suite(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("proxy");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_framing_is_our_own);
    tcase_add_test(tc, test_header_name_with_blank_not_forwarded);
    tcase_add_test(tc, test_hop_by_hop_dropped_both_ways);
    tcase_add_test(tc, test_worker_connection_reused);
    tcase_add_test(tc, test_worker_unreachable_502);
    tcase_add_test(tc, test_private_socket_preferred_and_reused);
    tcase_add_test(tc, test_private_socket_gone_uses_port);
    tcase_add_test(tc, test_private_socket_full_uses_port);
    tcase_add_test(tc, test_private_socket_change_flushes_pool);
    tcase_add_test(tc, test_connections_shared_with_httpclient);
    tcase_add_test(tc, test_tunnel_relays_in_both_directions);
    tcase_add_test(tc, test_tunnel_last_words_survive_a_reset);
    tcase_add_test(tc, test_tunnel_worker_closes_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the programs do */
    return check_run(check_proxy_suite());
}
