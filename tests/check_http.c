/*
 * check_http: the HTTP/1.1 connection layer. A real http_server runs on an
 * event_base over a loopback socket the kernel numbered (and, where a test
 * says so, a private abstract Unix socket beside it); the test plays the
 * client with plain non-blocking sockets, turning the loop until the bytes
 * it expects have arrived (bounded by a deadline, so nothing can hang).
 * Requests are sent whole, one byte at a time and split at every offset;
 * limits, timeouts, pipelining, asynchronous answers, streaming and the
 * Upgrade hand-off are each driven until they show.
 */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http.h"
#include "common/util.h"

#include "tests/check_support.h"

#define DEADLINE_MS 5000
#define BIG_SIZE (1024 * 1024)

/* What the server saw of the last request. */
struct snap {
    char method[16];
    char target[256];
    char path[256];
    char query[256];
    char body[4096];
    size_t body_len;
    char x_test[128];
    size_t n_headers;
    int version_minor;
    bool keep_alive;
    bool upgrade;
    bool chunked;
    long long content_length;
    char peer[64];
    char peer_name[80];
};

/* The server side of a test and everything its callbacks recorded. */
static struct {
    struct event_base *base;
    struct http_server *server;
    struct http_limits limits;
    int port;
    struct snap last;
    int requests;
    int heads;
    struct http_conn *pending[16];
    char pending_path[16][64];
    int n_pending;
    int in_flight, max_in_flight;
    int close_calls;
    bool closed_at_answer;
    struct event *answer_timer;
    struct event *resume_timer;
    struct http_conn *paused_conn;
    struct bufferevent *detached;
    char local_name[UTIL_LOCAL_NAME_MAX]; /* the server's abstract socket, if any */
    char sbody[4096];
    size_t sbody_len;
    int sbody_segments, sbody_lasts;
    size_t big_sent, big_total;
    int drain_calls;
    const struct guard_policy *guard; /* the server's Host/Origin rule, or NULL */
    bool borrow_fds;
    int listen_fd;
} fx;

/* A client connection and the bytes it received. */
struct client {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
    bool reset; /* the connection ended with a reset, not a clean EOF */
};

/* One response parsed from a client's buffer. */
struct resp {
    int status;
    char head[2048];
    char body[8192];
    size_t body_len;
};

/* Copy at most CAP-1 bytes of S into OUT. */
static void copy_str(char *out, size_t cap, const char *s)
{
    snprintf(out, cap, "%s", s ? s : "(null)");
}

/* Record the request in fx.last. */
static void record(struct http_conn *conn, struct http_request *req)
{
    struct snap *s = &fx.last;
    memset(s, 0, sizeof *s);
    copy_str(s->method, sizeof s->method, req->method);
    copy_str(s->target, sizeof s->target, req->target);
    copy_str(s->path, sizeof s->path, req->path);
    copy_str(s->query, sizeof s->query, req->query);
    copy_str(s->x_test, sizeof s->x_test, http_request_header(req, "x-TEST"));
    copy_str(s->peer, sizeof s->peer, http_conn_peer(conn));
    copy_str(s->peer_name, sizeof s->peer_name, http_conn_peer_name(conn));
    s->body_len = evbuffer_copyout(req->body, s->body, sizeof s->body);
    s->n_headers = req->n_headers;
    s->version_minor = req->version_minor;
    s->keep_alive = req->keep_alive;
    s->upgrade = req->upgrade;
    s->chunked = req->chunked;
    s->content_length = req->content_length;
    ck_assert_str_eq(req->peer, http_conn_peer(conn));
}

/* Answer with "METHOD PATH QUERY BODYLEN\n" and the body. */
static void respond_echo(struct http_conn *conn, struct http_request *req)
{
    char buf[8192];
    size_t body_len = evbuffer_get_length(req->body);
    int n = snprintf(buf, sizeof buf, "%s %s %s %zu\n", req->method, req->path,
                     req->query ? req->query : "-", body_len);
    if (body_len > sizeof buf - (size_t)n)
        body_len = sizeof buf - (size_t)n;
    evbuffer_copyout(req->body, buf + n, body_len);
    http_respond(conn, 200, "text/plain", buf, (size_t)n + body_len, NULL);
}

/* The client of an asynchronous request went away. */
static void on_close(struct http_conn *conn, void *arg)
{
    (void)arg;
    ck_assert(http_conn_is_closed(conn));
    fx.close_calls++;
}

/* Answer the oldest pending asynchronous request. */
static void answer_oldest(void)
{
    ck_assert_int_gt(fx.n_pending, 0);
    struct http_conn *conn = fx.pending[0];
    char body[80];
    int n = snprintf(body, sizeof body, "async %s", fx.pending_path[0]);
    fx.closed_at_answer = http_conn_is_closed(conn);
    memmove(fx.pending, fx.pending + 1, (size_t)(fx.n_pending - 1) * sizeof fx.pending[0]);
    memmove(fx.pending_path, fx.pending_path + 1, (size_t)(fx.n_pending - 1) * 64);
    fx.n_pending--;
    fx.in_flight--;
    http_respond(conn, 200, "text/plain", body, (size_t)n, NULL);
}

/* Timer: answer every pending request. */
static void answer_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (fx.n_pending > 0)
        answer_oldest();
}

/* Timer: let a paused streamed body flow again. */
static void resume_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    http_conn_pause_read(fx.paused_conn, false);
}

/* Body segments of /sbody; the first one pauses reading for a while. */
static void on_body(struct http_conn *conn, const void *data, size_t len, bool last, void *arg)
{
    (void)arg;
    if (last) {
        fx.sbody_lasts++;
        http_respond(conn, 200, "text/plain", fx.sbody, fx.sbody_len, NULL);
        return;
    }
    ck_assert_uint_le(fx.sbody_len + len, sizeof fx.sbody);
    memcpy(fx.sbody + fx.sbody_len, data, len);
    fx.sbody_len += len;
    if (fx.sbody_segments++ == 0) {
        struct timeval tv = {0, 50 * 1000};
        fx.paused_conn = conn;
        http_conn_pause_read(conn, true);
        evtimer_add(fx.resume_timer, &tv);
    }
}

/* Write /big's body while the output queue stays short. */
static void big_fill(struct http_conn *conn)
{
    static char chunk[64 * 1024];
    while (fx.big_sent < fx.big_total && http_conn_output_pending(conn) < 256 * 1024) {
        memset(chunk, 'a' + (int)(fx.big_sent / sizeof chunk) % 26, sizeof chunk);
        http_respond_stream_write(conn, chunk, sizeof chunk);
        fx.big_sent += sizeof chunk;
    }
    if (fx.big_sent == fx.big_total)
        http_respond_stream_end(conn, false);
}

/* Drain callback of /big. */
static void on_drain(struct http_conn *conn, void *arg)
{
    (void)arg;
    fx.drain_calls++;
    if (fx.big_sent < fx.big_total)
        big_fill(conn);
}

/* A streamed, chunked answer in three pieces. */
static void respond_stream(struct http_conn *conn)
{
    http_respond_stream_begin(conn, 200, NULL,
                              "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n");
    http_respond_stream_write(conn, "5\r\nhello\r\n", 10);
    http_respond_stream_write(conn, "6\r\n world\r\n", 11);
    http_respond_stream_write(conn, "0\r\n\r\n", 5);
    http_respond_stream_end(conn, false);
}

/* The application: the path picks the behaviour. */
static void on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    (void)arg;
    record(conn, req);
    fx.requests++;
    if (strcmp(req->path, "/async") == 0 || strncmp(req->path, "/a/", 3) == 0) {
        ck_assert_int_lt(fx.n_pending, 16);
        copy_str(fx.pending_path[fx.n_pending], 64, req->path);
        fx.pending[fx.n_pending++] = conn;
        if (++fx.in_flight > fx.max_in_flight)
            fx.max_in_flight = fx.in_flight;
        http_conn_set_close_cb(conn, on_close, NULL);
    } else if (strcmp(req->path, "/detach") == 0) {
        fx.detached = http_conn_detach(conn);
    } else if (strcmp(req->path, "/stream") == 0) {
        respond_stream(conn);
    } else if (strcmp(req->path, "/big") == 0) {
        char head[64];
        snprintf(head, sizeof head, "Content-Length: %zu\r\n", fx.big_total);
        fx.big_sent = 0;
        http_respond_stream_begin(conn, 200, "OK", head);
        http_conn_set_drain_cb(conn, on_drain, NULL);
        big_fill(conn);
    } else if (strcmp(req->path, "/closeafter") == 0) {
        http_conn_close_after(conn);
        http_respond_error(conn, 503, "closing", NULL);
    } else if (strcmp(req->path, "/json") == 0) {
        http_respond_json(conn, 201, json_pack("{s:i}", "n", 1), "X-Extra: yes\r\n");
    } else if (strcmp(req->path, "/sbody") != 0 && strcmp(req->path, "/sbig") != 0) {
        respond_echo(conn, req);
    }
}

/* Heads: /sbody streams its body, /reject is answered before its body. */
static void on_headers(struct http_conn *conn, struct http_request *req, void *arg)
{
    (void)arg;
    fx.heads++;
    if (strcmp(req->path, "/sbody") == 0)
        http_conn_stream_body(conn, on_body, NULL, 0);
    else if (strcmp(req->path, "/sbig") == 0)
        http_conn_stream_body(conn, on_body, NULL, 4000);
    else if (strcmp(req->path, "/reject") == 0)
        http_respond_error(conn, 401, "unauthorized", NULL);
    else if (strcmp(req->path, "/hdetach") == 0)
        fx.detached = http_conn_detach(conn);
}

/* The server's guard: fx.guard. */
static const struct guard_policy *fx_guard(void *arg)
{
    (void)arg;
    return fx.guard;
}

/* Start the server with fx.limits on a listening socket bound to SA. */
static void server_start_at(struct sockaddr *sa, socklen_t len)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ck_assert_int_eq(bind(fd, sa, len), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &sslen), 0);
    fx.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    struct http_server_config config = {.limits = fx.limits,
                                        .on_request = on_request,
                                        .on_headers = on_headers,
                                        .guard = fx.guard ? fx_guard : NULL,
                                        .borrow_fds = fx.borrow_fds};
    fx.listen_fd = fd;
    fx.server = http_server_new(fx.base, fd, &config);
    ck_assert_ptr_nonnull(fx.server);
}

/* Start the server with fx.limits on a fresh IPv4 loopback port. */
static void server_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    server_start_at((struct sockaddr *)&sa, sizeof sa);
}

/* Fresh loop and defaults (small body limit) for each test. */
static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    fx.base = event_base_new();
    fx.answer_timer = evtimer_new(fx.base, answer_timer_cb, NULL);
    fx.resume_timer = evtimer_new(fx.base, resume_timer_cb, NULL);
    http_limits_default(&fx.limits);
    fx.limits.max_body = 1024;
    fx.limits.header_timeout_ms = 5000;
    fx.limits.idle_timeout_ms = 5000;
    fx.big_total = BIG_SIZE;
}

/* Free the server, a detached connection and the loop. */
static void teardown(void)
{
    http_server_free(fx.server);
    if (fx.detached)
        bufferevent_free(fx.detached);
    event_free(fx.answer_timer);
    event_free(fx.resume_timer);
    event_base_free(fx.base);
}

/* Read whatever the server sent so far. */
static void client_read(struct client *c)
{
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = xrealloc(c->buf, c->cap + 1);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
        } else {
            if (n < 0 && errno == ECONNRESET)
                c->reset = true;
            if (n == 0 || (errno != EAGAIN && errno != EINTR))
                c->eof = true;
            return;
        }
    }
}

/* Turn the loop once, then read what the client (if any) got. */
static void pump_once(struct client *c)
{
    struct pollfd pfd = {.fd = c ? c->fd : -1, .events = POLLIN};
    event_base_loop(fx.base, EVLOOP_NONBLOCK);
    poll(&pfd, 1, 1);
    if (c && !c->eof)
        client_read(c);
}

/* Turn the loop for MS milliseconds. */
static void pump_ms(struct client *c, int ms)
{
    int64_t end = util_mono_ms() + ms;
    while (util_mono_ms() < end)
        pump_once(c);
}

/* Connect a non-blocking client to the server. */
static struct client client_open(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)fx.port)};
    struct client c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    ck_assert_int_ge(c.fd, 0);
    ck_assert_int_eq(connect(c.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    util_set_nonblock_cloexec(c.fd);
    client_read(&c);
    return c;
}

/* Serve on a private abstract Unix socket too (fx.local_name). */
static void server_listen_local(void)
{
    int fd = util_listen_local(fx.local_name);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(http_server_listen(fx.server, fd), 0);
}

/* Connect a non-blocking client to the abstract socket NAME; -1 (with
 * errno) when the connect fails. */
static int local_connect(const char *name)
{
    struct sockaddr_storage ss;
    socklen_t len = util_local_addr(name, &ss);
    ck_assert_uint_gt(len, 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    util_set_nonblock_cloexec(fd);
    return fd;
}

/* Connect a client to the server's abstract socket. */
static struct client client_open_local(void)
{
    struct client c = {.fd = local_connect(fx.local_name)};
    ck_assert_msg(c.fd >= 0, "connect to @%s: %s", fx.local_name, strerror(errno));
    client_read(&c);
    return c;
}

/* Close the client's socket and forget its bytes. */
static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

/* Send all of DATA, turning the loop while the socket is full. */
static void client_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else {
            ck_assert_msg(errno == EAGAIN, "send: %s", strerror(errno));
            ck_assert_msg(util_mono_ms() < end, "send timed out");
            pump_once(c);
        }
    }
}

/* Send a string. */
static void client_send_str(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Length of a chunked body at P (LEN bytes), decoded into OUT; -1 when
 * incomplete. Returns the bytes consumed. */
static long dechunk(const char *p, size_t len, struct resp *r)
{
    size_t off = 0;
    r->body_len = 0;
    for (;;) {
        const char *eol = memmem(p + off, len - off, "\r\n", 2);
        if (!eol)
            return -1;
        size_t size = strtoul(p + off, NULL, 16);
        off = (size_t)(eol - p) + 2;
        if (off + size + 2 > len)
            return -1;
        if (size == 0)
            return (long)(off + 2);
        ck_assert_uint_le(r->body_len + size, sizeof r->body);
        memcpy(r->body + r->body_len, p + off, size);
        r->body_len += size;
        off += size + 2;
    }
}

/* Parse the complete responses in C's buffer into OUT; returns how many. */
static int parse_responses(const struct client *c, struct resp *out, int max)
{
    size_t off = 0;
    int n = 0;
    while (n < max && c->buf) {
        const char *start = c->buf + off;
        const char *end = memmem(start, c->len - off, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head_len = (size_t)(end - start) + 4, body_len = 0;
        struct resp *r = &out[n];
        r->status = 0;
        sscanf(start, "HTTP/1.1 %d", &r->status);
        snprintf(r->head, sizeof r->head, "%.*s", (int)head_len, start);
        const char *cl = strstr(r->head, "Content-Length: ");
        r->body_len = 0;
        if (strstr(r->head, "Transfer-Encoding: chunked")) {
            long used = dechunk(start + head_len, c->len - off - head_len, r);
            if (used < 0)
                break;
            body_len = (size_t)used;
        } else if (cl) {
            body_len = strtoul(cl + 16, NULL, 10);
            if (off + head_len + body_len > c->len)
                break;
            r->body_len = body_len < sizeof r->body - 1 ? body_len : sizeof r->body - 1;
            memcpy(r->body, start + head_len, r->body_len);
        }
        r->body[r->body_len] = '\0';
        off += head_len + body_len;
        n++;
    }
    return n;
}

/* Turn the loop until C holds N complete responses; returns the count. */
static int wait_responses(struct client *c, struct resp *out, int n)
{
    int64_t end = util_mono_ms() + DEADLINE_MS;
    int got = parse_responses(c, out, n);
    while (got < n && util_mono_ms() < end && !c->eof) {
        pump_once(c);
        got = parse_responses(c, out, n);
    }
    return got;
}

/* Turn the loop until the server closed C's connection. */
static bool wait_eof(struct client *c)
{
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while (!c->eof && util_mono_ms() < end)
        pump_once(c);
    return c->eof;
}

/* Turn the loop until COND holds (or the deadline). */
#define WAIT_FOR(c, cond)                                                                          \
    do {                                                                                           \
        int64_t end_ = util_mono_ms() + DEADLINE_MS;                                               \
        while (!(cond) && util_mono_ms() < end_)                                                   \
            pump_once(c);                                                                          \
        ck_assert_msg((cond), "timed out waiting for " #cond);                                     \
    } while (0)

/* One request on a new connection; returns its single response. */
static struct resp *exchange(const char *request, struct resp *r, bool expect_eof)
{
    struct client c = client_open();
    client_send_str(&c, request);
    ck_assert_int_eq(wait_responses(&c, r, 1), 1);
    if (expect_eof)
        ck_assert(wait_eof(&c));
    client_close(&c);
    return r;
}

/* The guard of the tests below: "a" is a server name, ok.example an origin. */
static const char *const guard_names[] = {"a", NULL};
static const char *const guard_origins[] = {"http://ok.example", NULL};
static const struct guard_policy guard_test_policy = {guard_names, guard_origins, NULL};

START_TEST(test_guard_refuses_before_routing)
{
    struct resp r;
    fx.guard = &guard_test_policy;
    server_start();
    /* A foreign Host: 403 from the layer, no callback saw it, closed. */
    exchange("GET /x HTTP/1.1\r\nHost: attacker.example\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 403);
    ck_assert_ptr_nonnull(strstr(r.body, "host not allowed"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    /* Its body is never read: the answer comes before it is sent. */
    exchange("POST /x HTTP/1.1\r\nHost: attacker.example:80\r\nContent-Length: 100000\r\n\r\n", &r,
             true);
    ck_assert_int_eq(r.status, 403);
    /* A foreign Origin, on a Host that is fine. */
    exchange("GET /reject HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n", &r,
             true);
    ck_assert_int_eq(r.status, 403);
    ck_assert_ptr_nonnull(strstr(r.body, "origin not allowed"));
    ck_assert_ptr_null(strstr(r.head, "Access-Control"));
    ck_assert_int_eq(fx.heads, 0);
    ck_assert_int_eq(fx.requests, 0);
    /* Names that are ours pass. */
    exchange("GET /x HTTP/1.1\r\nHost: a:1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    exchange("GET /x HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(strstr(r.head, "Access-Control"));
    ck_assert_int_eq(fx.requests, 2);
}
END_TEST

START_TEST(test_guard_cors)
{
    struct resp r[3];
    fx.guard = &guard_test_policy;
    server_start();
    /* A listed origin's preflight is answered by the layer. */
    exchange("OPTIONS /api/task HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://ok.example\r\n"
             "Access-Control-Request-Method: POST\r\n\r\n",
             r, false);
    ck_assert_int_eq(r[0].status, 204);
    ck_assert_ptr_nonnull(
        strstr(r[0].head, "\r\nAccess-Control-Allow-Origin: http://ok.example\r\n"));
    ck_assert_ptr_nonnull(strstr(r[0].head, "\r\nAccess-Control-Allow-Methods: "));
    ck_assert_ptr_nonnull(strstr(r[0].head, "Authorization, Content-Type"));
    ck_assert_int_eq(fx.requests, 0);
    /* Its other answers carry CORS headers, whole or streamed; the next
     * request on the connection, without Origin, does not. */
    struct client c = client_open();
    client_send_str(&c, "GET /x HTTP/1.1\r\nHost: a\r\nOrigin: http://ok.example\r\n\r\n"
                        "GET /stream HTTP/1.1\r\nHost: a\r\nOrigin: http://OK.example\r\n\r\n"
                        "GET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 3), 3);
    ck_assert_int_eq(r[0].status, 200);
    ck_assert_ptr_nonnull(
        strstr(r[0].head, "\r\nAccess-Control-Allow-Origin: http://ok.example\r\n"));
    ck_assert_ptr_nonnull(strstr(r[0].head, "\r\nVary: Origin\r\n"));
    ck_assert_ptr_null(strstr(r[0].head, "Allow-Methods"));
    ck_assert_str_eq(r[1].body, "hello world");
    ck_assert_ptr_nonnull(
        strstr(r[1].head, "\r\nAccess-Control-Allow-Origin: http://OK.example\r\n"));
    ck_assert_ptr_null(strstr(r[2].head, "Access-Control"));
    ck_assert_int_eq(r[2].status, 200);
    client_close(&c);
}
END_TEST

START_TEST(test_borrowed_listener)
{
    struct resp r;
    fx.borrow_fds = true;
    server_start();
    exchange("GET /closeafter HTTP/1.1\r\nHost: a\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    http_server_free(fx.server);
    fx.server = NULL;
    /* The socket is still open and listening: a connection waits in its
     * backlog for whoever serves it next. */
    struct client c = client_open();
    client_send_str(&c, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n");
    struct http_server_config config = {.limits = fx.limits, .on_request = on_request};
    fx.server = http_server_new(fx.base, fx.listen_fd, &config);
    ck_assert_ptr_nonnull(fx.server);
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_str_eq(r.body, "GET /later - 0\n");
    client_close(&c);
}
END_TEST

START_TEST(test_get_simple)
{
    struct resp r;
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nX-Test:  abc \r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "GET /hello x=1 0\n");
    ck_assert(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nServer: hive/" HIVE_VERSION "\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nDate: "));
    ck_assert_ptr_nonnull(strstr(r.head, " GMT\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Type: text/plain\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Length: 17\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
    ck_assert_str_eq(fx.last.x_test, "abc");
    ck_assert_str_eq(fx.last.target, "/hello?x=1");
    ck_assert_str_eq(fx.last.peer, "127.0.0.1");
    ck_assert_uint_eq(fx.last.n_headers, 2);
    ck_assert(fx.last.keep_alive);
    ck_assert_int_eq(fx.last.version_minor, 1);
    ck_assert_int_eq(fx.heads, 1);
    ck_assert_uint_eq(http_server_connections(fx.server), 1);
    client_close(&c);
}
END_TEST

START_TEST(test_json_and_extra_headers)
{
    struct resp r;
    server_start();
    exchange("GET /json HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 201);
    ck_assert_str_eq(r.body, "{\"n\":1}");
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nX-Extra: yes\r\n\r\n"));
}
END_TEST

START_TEST(test_keep_alive)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 1), 1);
    client_send_str(&c, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_str_eq(r[0].body, "GET /one - 0\n");
    ck_assert_str_eq(r[1].body, "GET /two - 0\n");
    ck_assert_int_eq(fx.requests, 2);
    ck_assert(!c.eof);
    ck_assert_uint_eq(http_server_connections(fx.server), 1);
    client_close(&c);
    WAIT_FOR(NULL, http_server_connections(fx.server) == 0);
}
END_TEST

START_TEST(test_pipelining_sync)
{
    struct resp r[3];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                        "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 3), 3);
    ck_assert_str_eq(r[0].body, "GET /1 - 0\n");
    ck_assert_str_eq(r[1].body, "POST /2 - 3\nabc");
    ck_assert_str_eq(r[2].body, "GET /3 - 0\n");
    client_close(&c);
}
END_TEST

START_TEST(test_pipelining_async_one_at_a_time)
{
    struct resp r[3];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /a/1 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "GET /a/2 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "GET /a/3 HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 1; i <= 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "/a/%d", i);
        WAIT_FOR(&c, fx.n_pending == 1);
        pump_ms(&c, 30);
        ck_assert_int_eq(fx.n_pending, 1); /* the next one waits for this answer */
        ck_assert_str_eq(fx.pending_path[0], want);
        answer_oldest();
    }
    ck_assert_int_eq(wait_responses(&c, r, 3), 3);
    ck_assert_str_eq(r[0].body, "async /a/1");
    ck_assert_str_eq(r[1].body, "async /a/2");
    ck_assert_str_eq(r[2].body, "async /a/3");
    ck_assert_int_eq(fx.max_in_flight, 1);
    client_close(&c);
}
END_TEST

START_TEST(test_http10_close)
{
    struct resp r;
    server_start();
    exchange("GET /old HTTP/1.0\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    ck_assert(!fx.last.keep_alive);
    ck_assert_int_eq(fx.last.version_minor, 0);
    WAIT_FOR(NULL, http_server_connections(fx.server) == 0);
}
END_TEST

START_TEST(test_http10_keep_alive)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 1), 1);
    ck_assert_ptr_nonnull(strstr(r[0].head, "\r\nConnection: keep-alive\r\n"));
    client_send_str(&c, "GET /2 HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_ptr_nonnull(strstr(r[1].head, "\r\nConnection: close\r\n"));
    ck_assert(wait_eof(&c));
    client_close(&c);
}
END_TEST

START_TEST(test_connection_close_header)
{
    struct resp r;
    server_start();
    exchange("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &r, true);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
}
END_TEST

START_TEST(test_content_length_body)
{
    struct resp r;
    server_start();
    exchange("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", &r, false);
    ck_assert_str_eq(r.body, "POST /echo - 11\nhello world");
}
END_TEST

START_TEST(test_chunked_body)
{
    struct resp r;
    server_start();
    exchange("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
             &r, false);
    ck_assert_str_eq(r.body, "POST /echo - 11\nhello world");
}
END_TEST

START_TEST(test_head_method)
{
    server_start();
    struct client c = client_open();
    client_send_str(&c, "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, c.len > 0 && strstr(c.buf, "GET /g - 0\n"));
    ck_assert_ptr_nonnull(strstr(c.buf, "Content-Length: 12\r\n")); /* "HEAD /h - 0\n" */
    ck_assert_ptr_null(strstr(c.buf, "HEAD /h - 0"));
    client_close(&c);
}
END_TEST

START_TEST(test_absolute_and_star_targets)
{
    struct resp r;
    server_start();
    exchange("GET http://example.com/y/z?q=1#f HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_str_eq(fx.last.path, "/y/z");
    ck_assert_str_eq(fx.last.query, "q=1");
    ck_assert_str_eq(fx.last.target, "http://example.com/y/z?q=1#f");
    exchange("GET http://example.com HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_str_eq(fx.last.path, "/");
    ck_assert_str_eq(fx.last.query, "(null)");
    exchange("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_str_eq(fx.last.path, "*");
    ck_assert_str_eq(r.body, "OPTIONS * - 0\n");
}
END_TEST

/* True when two views of a request are the same. */
static bool snap_equal(const struct snap *a, const struct snap *b)
{
    return strcmp(a->method, b->method) == 0 && strcmp(a->target, b->target) == 0 &&
           strcmp(a->path, b->path) == 0 && strcmp(a->query, b->query) == 0 &&
           a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0 &&
           strcmp(a->x_test, b->x_test) == 0 && a->n_headers == b->n_headers &&
           a->version_minor == b->version_minor && a->keep_alive == b->keep_alive &&
           a->upgrade == b->upgrade && a->chunked == b->chunked &&
           a->content_length == b->content_length && strcmp(a->peer, b->peer) == 0;
}

/* Send REQUEST split at OFFSET (0: whole; -1: a byte at a time) on a new
 * connection and return the server's view of it. */
static struct snap send_split(const char *request, long offset)
{
    struct resp r;
    size_t len = strlen(request);
    struct client c = client_open();
    if (offset < 0) {
        for (size_t i = 0; i < len; i++) {
            client_send(&c, request + i, 1);
            pump_once(&c);
        }
    } else {
        client_send(&c, request, (size_t)offset);
        for (int i = 0; i < 3; i++)
            pump_once(&c);
        client_send(&c, request + offset, len - (size_t)offset);
    }
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_int_eq(r.status, 200);
    client_close(&c);
    return fx.last;
}

/* The server's view of REQUEST is the same however it is split. */
static void check_splits(const char *request)
{
    struct snap whole = send_split(request, 0);
    size_t len = strlen(request);
    ck_assert_str_eq(whole.method, "POST");
    ck_assert_str_eq(whole.path, "/p/a+th");
    ck_assert_str_eq(whole.query, "a=1&b=%20x");
    ck_assert_str_eq(whole.x_test, "split value");
    ck_assert_uint_eq(whole.body_len, 11);
    ck_assert_mem_eq(whole.body, "hello world", 11);
    for (long k = -1; k < (long)len; k++) {
        struct snap s = send_split(request, k);
        ck_assert_msg(snap_equal(&s, &whole), "split at %ld differs", k);
    }
    ck_assert_int_eq(fx.requests, (int)len + 2);
}

START_TEST(test_split_content_length)
{
    server_start();
    check_splits("POST /p/a+th?a=1&b=%20x HTTP/1.1\r\nHost: example\r\n"
                 "X-Test: split value\r\nContent-Length: 11\r\n\r\nhello world");
}
END_TEST

START_TEST(test_split_chunked)
{
    server_start();
    check_splits("POST /p/a+th?a=1&b=%20x HTTP/1.1\r\nHost: example\r\n"
                 "X-Test: split value\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}
END_TEST

START_TEST(test_expect_continue)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                        "Content-Length: 5\r\n\r\n");
    WAIT_FOR(&c, c.len >= 25);
    ck_assert_str_eq(c.buf, "HTTP/1.1 100 Continue\r\n\r\n");
    pump_ms(&c, 20);
    ck_assert_uint_eq(c.len, 25);
    ck_assert_int_eq(fx.requests, 0);
    client_send_str(&c, "hello");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_int_eq(r[0].status, 100);
    ck_assert_int_eq(r[1].status, 200);
    ck_assert_str_eq(r[1].body, "POST /e - 5\nhello");
    client_close(&c);
}
END_TEST

START_TEST(test_expect_too_large)
{
    struct resp r;
    server_start();
    exchange("POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
             &r, true);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(r.body, "{\"detail\":\"request body too large\"}");
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_expect_unknown)
{
    struct resp r;
    server_start();
    exchange("POST /e HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 5\r\n\r\nhello", &r,
             true);
    ck_assert_int_eq(r.status, 417);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_headers_too_large)
{
    struct resp r;
    char *request = xmalloc(20000);
    fx.limits.max_header_bytes = 16 * 1024;
    server_start();
    int n = snprintf(request, 20000, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(request + n, 'x', 17 * 1024);
    strcpy(request + n + 17 * 1024, "\r\n\r\n");
    exchange(request, &r, true);
    ck_assert_int_eq(r.status, 431);
    ck_assert_str_eq(r.body, "{\"detail\":\"request header fields too large\"}");
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    ck_assert_int_eq(fx.requests, 0);
    /* Just under the limit passes. */
    n = snprintf(request, 20000, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(request + n, 'x', 16 * 1024 - (size_t)n - 4);
    strcpy(request + 16 * 1024 - 4, "\r\n\r\n");
    ck_assert_uint_eq(strlen(request), 16 * 1024);
    exchange(request, &r, false);
    ck_assert_int_eq(r.status, 200);
    free(request);
}
END_TEST

START_TEST(test_body_too_large)
{
    struct resp r;
    char request[3000];
    server_start();
    exchange("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 413);
    int n = snprintf(request, sizeof request,
                     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n");
    memset(request + n, 'b', 1024);
    strcpy(request + n + 1024, "\r\n1\r\nX\r\n0\r\n\r\n");
    exchange(request, &r, true);
    ck_assert_int_eq(r.status, 413);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_error_reaches_client_still_sending)
{
    struct resp r;
    size_t len = 256 * 1024;
    char *body = xmalloc(len);
    memset(body, 'z', len);
    server_start();
    struct client c = client_open();
    client_send_str(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 262144\r\n\r\n");
    client_send(&c, body, len); /* the server discards it instead of resetting */
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_int_eq(r.status, 413);
    ck_assert(wait_eof(&c));
    ck_assert(!c.reset); /* a clean half-close after the answer, not a reset */
    client_close(&c);
    WAIT_FOR(NULL, http_server_connections(fx.server) == 0);
    free(body);
}
END_TEST

START_TEST(test_garbage)
{
    struct resp r;
    server_start();
    exchange("HELLO WORLD\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"detail\":\"bad request: invalid HTTP method\"}");
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_smuggling_refused)
{
    struct resp r;
    server_start();
    exchange("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
             "0\r\n\r\n",
             &r, true);
    ck_assert_int_eq(r.status, 400);
    ck_assert(strncmp(r.body, "{\"detail\":\"bad request: ", 24) == 0);
    exchange("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", &r,
             true);
    ck_assert_int_eq(r.status, 400);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

/* Send REQUEST whole, or a byte at a time when BYTEWISE; returns the one
 * answer, after which the server must have closed. */
static struct resp send_refused(const char *request, bool bytewise)
{
    struct resp r;
    struct client c = client_open();
    size_t len = strlen(request);
    for (size_t i = 0; bytewise && i < len && !c.eof; i++) {
        client_send(&c, request + i, 1);
        pump_once(&c);
    }
    if (!bytewise)
        client_send(&c, request, len);
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert(wait_eof(&c));
    client_close(&c);
    return r;
}

/* A request with header line LINE, refused whole and a byte at a time;
 * DETAIL, when given, is the answer's exact detail. */
static void check_name_refused(const char *line, const char *detail)
{
    char request[256], body[128];
    snprintf(request, sizeof request,
             "POST / HTTP/1.1\r\nHost: a\r\n%s\r\nContent-Length: 5\r\n\r\nhello", line);
    snprintf(body, sizeof body, "{\"detail\":\"bad request: %s\"}", detail ? detail : "");
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct resp r = send_refused(request, bytewise);
        ck_assert_msg(r.status == 400, "%s: %d", line, r.status);
        if (detail)
            ck_assert_str_eq(r.body, body);
        else
            ck_assert(strncmp(r.body, body, strlen(body) - 2) == 0);
    }
}

START_TEST(test_header_name_refused)
{
    /* Blanks before the colon: http_parser lets them through and would act
     * on the name ("Transfer-Encoding :" makes the body chunked). */
    static const char *const blanks[] = {"Transfer-Encoding : chunked",
                                         "TRANSFER-ENCODING : CHUNKED", "Content-Length : 5",
                                         "X-Test : v", "X-Test  : v"};
    /* Controls, separators, 8-bit: refused by the parser or by us. */
    static const char *const others[] = {"Transfer-Encoding\t: chunked",
                                         "X\x01Test: v",
                                         "X\x7fTest: v",
                                         "X(Test): v",
                                         "X\"Test\": v",
                                         "X/Test: v",
                                         "X\xc3\xa9: v"};
    server_start();
    for (size_t i = 0; i < sizeof blanks / sizeof blanks[0]; i++)
        check_name_refused(blanks[i], "invalid header field name");
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        check_name_refused(others[i], NULL);
    ck_assert_int_eq(fx.heads, 0);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_header_name_empty_refused)
{
    struct resp r;
    server_start();
    r = send_refused("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", false);
    ck_assert_int_eq(r.status, 400);
    r = send_refused("GET / HTTP/1.1\r\n\t: v\r\nHost: a\r\n\r\n", false);
    ck_assert_int_eq(r.status, 400);
    ck_assert_int_eq(fx.heads, 0);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_framing_as_parsed)
{
    struct resp r;
    server_start();
    exchange("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", &r, false);
    ck_assert(!fx.last.chunked);
    ck_assert_int_eq(fx.last.content_length, 11);
    exchange("POST /echo HTTP/1.1\r\nHost: a\r\ntransfer-ENCODING: Chunked \r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n",
             &r, false);
    ck_assert(fx.last.chunked);
    ck_assert_int_eq(fx.last.content_length, -1);
    ck_assert_str_eq(r.body, "POST /echo - 5\nhello");
    exchange("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert(!fx.last.chunked);
    ck_assert_int_eq(fx.last.content_length, -1);
    exchange("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &r, false);
    ck_assert_int_eq(fx.last.content_length, 0);
}
END_TEST

START_TEST(test_unknown_transfer_encoding)
{
    struct resp r;
    server_start();
    exchange("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxyz", &r, true);
    ck_assert_int_eq(r.status, 501);
    exchange("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", &r,
             true);
    ck_assert_int_eq(r.status, 501);
    /* Trimmed, this value is "chunked", but http_parser does not take it so. */
    exchange("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", &r,
             true);
    ck_assert_int_eq(r.status, 501);
    ck_assert_int_eq(fx.heads, 0);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_async_answer)
{
    struct resp r[2];
    struct timeval tv = {0, 50 * 1000};
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, fx.n_pending == 1);
    evtimer_add(fx.answer_timer, &tv);
    pump_ms(&c, 20);
    ck_assert_uint_eq(c.len, 0);
    ck_assert_int_eq(wait_responses(&c, r, 1), 1);
    ck_assert_str_eq(r[0].body, "async /async");
    ck_assert(!fx.closed_at_answer);
    /* The connection carries on. */
    client_send_str(&c, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_str_eq(r[1].body, "GET /after - 0\n");
    ck_assert_int_eq(fx.close_calls, 0);
    client_close(&c);
}
END_TEST

START_TEST(test_async_client_gone)
{
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, fx.n_pending == 1);
    client_close(&c);
    WAIT_FOR(NULL, fx.close_calls == 1);
    ck_assert_uint_eq(http_server_connections(fx.server), 0);
    pump_ms(NULL, 20);
    ck_assert_int_eq(fx.close_calls, 1);
    answer_oldest(); /* dropped; frees the connection */
    ck_assert(fx.closed_at_answer);
    pump_ms(NULL, 20);
    ck_assert_int_eq(fx.close_calls, 1);
}
END_TEST

START_TEST(test_detach_after_client_gone)
{
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, fx.n_pending == 1);
    client_close(&c);
    WAIT_FOR(NULL, fx.close_calls == 1);
    ck_assert_ptr_null(http_conn_detach(fx.pending[0])); /* and frees it: valgrind */
    fx.n_pending = 0;
    pump_ms(NULL, 20);
    ck_assert_uint_eq(http_server_connections(fx.server), 0);
}
END_TEST

START_TEST(test_server_free_with_pending)
{
    server_start();
    struct client a = client_open(), b = client_open();
    client_send_str(&a, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
    client_send_str(&b, "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab");
    WAIT_FOR(&a, fx.n_pending == 1);
    pump_ms(&b, 20);
    ck_assert_uint_eq(http_server_connections(fx.server), 2);
    http_server_free(fx.server); /* frees both; valgrind checks */
    fx.server = NULL;
    ck_assert(wait_eof(&a));
    ck_assert(wait_eof(&b));
    client_close(&a);
    client_close(&b);
}
END_TEST

START_TEST(test_detach)
{
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /detach HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\n\r\nEXTRA-BYTES");
    WAIT_FOR(&c, fx.detached != NULL);
    ck_assert(fx.last.upgrade);
    ck_assert_uint_eq(http_server_connections(fx.server), 0);
    struct evbuffer *in = bufferevent_get_input(fx.detached);
    WAIT_FOR(&c, evbuffer_get_length(in) >= 11);
    ck_assert_uint_eq(evbuffer_get_length(in), 11);
    ck_assert_mem_eq(evbuffer_pullup(in, -1), "EXTRA-BYTES", 11);
    evbuffer_add(bufferevent_get_output(fx.detached), "RAW", 3);
    WAIT_FOR(&c, c.len >= 3);
    ck_assert_str_eq(c.buf, "RAW"); /* no HTTP answer came first */
    client_close(&c);
}
END_TEST

START_TEST(test_detach_from_on_headers_keeps_bytes)
{
    server_start();
    struct client c = client_open();
    /* Sent one byte at a time, the final LF of the head arrives alone. */
    const char *request = "GET /hdetach HTTP/1.1\r\nHost: a\r\n\r\nAB";
    for (size_t i = 0; i < strlen(request); i++) {
        client_send(&c, request + i, 1);
        pump_once(&c);
    }
    WAIT_FOR(&c, fx.detached != NULL);
    struct evbuffer *in = bufferevent_get_input(fx.detached);
    WAIT_FOR(&c, evbuffer_get_length(in) >= 2);
    ck_assert_uint_eq(evbuffer_get_length(in), 2);
    ck_assert_mem_eq(evbuffer_pullup(in, -1), "AB", 2);
    client_close(&c);
}
END_TEST

START_TEST(test_header_timeout)
{
    struct resp r;
    fx.limits.header_timeout_ms = 200;
    server_start();
    struct client c = client_open();
    int64_t start = util_mono_ms();
    client_send_str(&c, "GET / HTTP/1.1\r\nHost: a\r\n");
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_int_ge(util_mono_ms() - start, 150);
    ck_assert_int_eq(r.status, 408);
    ck_assert_str_eq(r.body, "{\"detail\":\"request header timeout\"}");
    ck_assert(wait_eof(&c));
    client_close(&c);
    /* A connection that sends nothing at all. */
    c = client_open();
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_int_eq(r.status, 408);
    ck_assert(wait_eof(&c));
    client_close(&c);
    ck_assert_int_eq(fx.requests, 0);
}
END_TEST

START_TEST(test_idle_timeout)
{
    struct resp r;
    fx.limits.idle_timeout_ms = 200;
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    size_t len = c.len;
    int64_t start = util_mono_ms();
    ck_assert(wait_eof(&c));
    ck_assert_int_ge(util_mono_ms() - start, 150);
    ck_assert_uint_eq(c.len, len); /* closed silently */
    ck_assert_uint_eq(http_server_connections(fx.server), 0);
    client_close(&c);
}
END_TEST

START_TEST(test_body_stall)
{
    fx.limits.idle_timeout_ms = 400;
    fx.limits.header_timeout_ms = 3000;
    server_start();
    struct client c = client_open();
    int64_t start = util_mono_ms();
    client_send_str(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    ck_assert(wait_eof(&c));
    ck_assert_int_ge(util_mono_ms() - start, 350);
    ck_assert_int_lt(util_mono_ms() - start, 2000); /* the idle limit, not the head's */
    ck_assert_uint_eq(c.len, 0);
    client_close(&c);
    c = client_open();
    start = util_mono_ms();
    client_send_str(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    pump_ms(&c, 150);
    client_send_str(&c, "de"); /* bytes keep the body alive */
    ck_assert(wait_eof(&c));
    ck_assert_int_ge(util_mono_ms() - start, 500);
    ck_assert_int_lt(util_mono_ms() - start, 2000); /* the idle limit, not the head's */
    ck_assert_uint_eq(c.len, 0);
    ck_assert_int_eq(fx.requests, 0);
    client_close(&c);
}
END_TEST

START_TEST(test_stream_response)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c,
                    "GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_str_eq(r[0].body, "hello world");
    ck_assert_ptr_nonnull(strstr(r[0].head, "\r\nConnection: keep-alive\r\n"));
    ck_assert_ptr_null(strstr(r[0].head, "Date:")); /* the caller's lines only */
    ck_assert_str_eq(r[1].body, "GET /next - 0\n");
    client_close(&c);
}
END_TEST

START_TEST(test_stream_big_with_drain)
{
    server_start();
    struct client c = client_open();
    client_send_str(&c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, c.len > 0 && strstr(c.buf, "\r\n\r\n") &&
                     c.len - (size_t)(strstr(c.buf, "\r\n\r\n") + 4 - c.buf) >= BIG_SIZE);
    const char *body = strstr(c.buf, "\r\n\r\n") + 4;
    ck_assert_uint_eq(c.len - (size_t)(body - c.buf), BIG_SIZE);
    ck_assert_int_eq(body[0], 'a');
    ck_assert_int_eq(body[BIG_SIZE - 1], 'a' + 15);
    ck_assert_int_gt(fx.drain_calls, 0);
    ck_assert_uint_eq(fx.big_sent, BIG_SIZE);
    /* Keep-alive still works after the stream. */
    size_t before = c.len;
    client_send_str(&c, "GET /n HTTP/1.1\r\nHost: a\r\n\r\n");
    WAIT_FOR(&c, c.len > before && strstr(c.buf + before, "GET /n - 0\n"));
    client_close(&c);
}
END_TEST

START_TEST(test_send_timeout)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int small = 4096;
    fx.limits.idle_timeout_ms = 300;
    fx.big_total = (size_t)64 * 1024 * 1024; /* far more than the kernel buffers */
    server_start();
    sa.sin_port = htons((uint16_t)fx.port);
    struct client c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(connect(c.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    util_set_nonblock_cloexec(c.fd);
    client_send_str(&c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    /* The client reads nothing; the server gives up on it. */
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while ((fx.requests == 0 || http_server_connections(fx.server) > 0) && util_mono_ms() < end)
        pump_ms(NULL, 5);
    ck_assert_int_eq(fx.requests, 1);
    ck_assert_uint_eq(http_server_connections(fx.server), 0);
    ck_assert_uint_lt(fx.big_sent, fx.big_total);
    client_close(&c);
}
END_TEST

START_TEST(test_stream_body_with_pause)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "POST /sbody HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                        "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_str_eq(r[0].body, "hello world");
    ck_assert_int_eq(fx.sbody_segments, 2);
    ck_assert_int_eq(fx.sbody_lasts, 1);
    ck_assert_str_eq(r[1].body, "GET /after - 0\n");
    ck_assert_int_eq(fx.requests, 2); /* /sbody was handed over at its head */
    client_close(&c);
}
END_TEST

START_TEST(test_stream_body_limit)
{
    struct resp r;
    char request[4096];
    server_start();
    int n = snprintf(request, sizeof request,
                     "POST /sbig HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n");
    memset(request + n, 'q', 3000);
    request[n + 3000] = '\0';
    exchange(request, &r, false); /* over max_body, within the stream's own limit */
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 3000);
    ck_assert_int_eq(r.body[2999], 'q');
    /* The default limit still applies to a stream that asked for none. */
    exchange("POST /sbody HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 413);
    ck_assert_int_eq(fx.heads, 2);
}
END_TEST

START_TEST(test_early_answer_discards_body)
{
    struct resp r[2];
    server_start();
    struct client c = client_open();
    client_send_str(&c, "POST /reject HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
                        "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, r, 2), 2);
    ck_assert_int_eq(r[0].status, 401);
    ck_assert_str_eq(r[0].body, "{\"detail\":\"unauthorized\"}");
    ck_assert_str_eq(r[1].body, "GET /next - 0\n");
    ck_assert_int_eq(fx.requests, 1);
    client_close(&c);
}
END_TEST

START_TEST(test_early_answer_with_expect_closes)
{
    struct resp r;
    server_start();
    exchange(
        "POST /reject HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        &r, true);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: close\r\n"));
}
END_TEST

START_TEST(test_ipv6_peers)
{
    struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    struct sockaddr_in6 lo = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct resp r;
    server_start_at((struct sockaddr *)&any, sizeof any); /* dual stack */
    exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_str_eq(fx.last.peer, "127.0.0.1"); /* v4-mapped, shown as IPv4 */
    ck_assert_msg(strncmp(fx.last.peer_name, "127.0.0.1:", 10) == 0 &&
                      atoi(fx.last.peer_name + 10) > 0,
                  "%s", fx.last.peer_name);
    lo.sin6_port = htons((uint16_t)fx.port);
    struct client c = {.fd = socket(AF_INET6, SOCK_STREAM, 0)};
    ck_assert_int_eq(connect(c.fd, (struct sockaddr *)&lo, sizeof lo), 0);
    util_set_nonblock_cloexec(c.fd);
    client_send_str(&c, "GET /6 HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&c, &r, 1), 1);
    ck_assert_str_eq(fx.last.peer, "::1");
    struct sockaddr_in6 me;
    socklen_t me_len = sizeof me;
    ck_assert_int_eq(getsockname(c.fd, (struct sockaddr *)&me, &me_len), 0);
    char want[32];
    snprintf(want, sizeof want, "[::1]:%u", ntohs(me.sin6_port));
    ck_assert_str_eq(fx.last.peer_name, want); /* the port says which client */
    client_close(&c);
}
END_TEST

START_TEST(test_local_listener)
{
    struct resp r;
    server_start();
    server_listen_local();
    struct client u = client_open_local();
    client_send_str(&u, "POST /unix?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    ck_assert_int_eq(wait_responses(&u, &r, 1), 1);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "POST /unix q=1 3\nabc");
    ck_assert_ptr_nonnull(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
    ck_assert_str_eq(fx.last.peer, "local");
    ck_assert_str_eq(fx.last.peer_name, "local");

    /* Kept alive over the Unix socket; the TCP port still serves beside it. */
    client_send_str(&u, "GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    struct resp r2[2];
    ck_assert_int_eq(wait_responses(&u, r2, 2), 2);
    ck_assert_str_eq(r2[1].body, "GET /again - 0\n");
    ck_assert_str_eq(fx.last.peer, "local");
    exchange("GET /tcp HTTP/1.1\r\nHost: a\r\n\r\n", &r, false);
    ck_assert_str_eq(r.body, "GET /tcp - 0\n");
    ck_assert_str_eq(fx.last.peer, "127.0.0.1");
    ck_assert_int_eq(fx.requests, 3);
    WAIT_FOR(&u, http_server_connections(fx.server) == 1);
    client_close(&u);

    /* The added listener is closed with the server. */
    http_server_free(fx.server);
    fx.server = NULL;
    ck_assert_int_lt(local_connect(fx.local_name), 0);
    ck_assert_int_eq(errno, ECONNREFUSED);
}
END_TEST

/* With max_connections (2) reached by connections OPEN_FULL makes, a
 * connection OPEN_WAITING makes waits unserved until one of them closes. */
static void check_limit_across(struct client (*open_full)(void),
                               struct client (*open_waiting)(void))
{
    struct resp r[2];
    fx.limits.max_connections = 2;
    server_start();
    server_listen_local();
    struct client a = open_full(), b = open_full();
    client_send_str(&a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    client_send_str(&b, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&a, r, 1), 1);
    ck_assert_int_eq(wait_responses(&b, r, 1), 1);
    struct client c = open_waiting(); /* completes in the kernel's backlog */
    client_send_str(&c, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
    pump_ms(&c, 150);
    ck_assert_uint_eq(c.len, 0);
    ck_assert_int_eq(fx.requests, 2);
    ck_assert_uint_eq(http_server_connections(fx.server), 2);
    client_close(&a);
    ck_assert_int_eq(wait_responses(&c, r, 1), 1);
    ck_assert_str_eq(r[0].body, "GET /c - 0\n");
    ck_assert_int_eq(fx.requests, 3);
    ck_assert_uint_eq(http_server_connections(fx.server), 2);
    client_close(&b);
    client_close(&c);
}

START_TEST(test_max_connections)
{
    check_limit_across(client_open, client_open);
}
END_TEST

START_TEST(test_max_connections_tcp_holds_local)
{
    check_limit_across(client_open, client_open_local);
    ck_assert_str_eq(fx.last.peer, "local");
}
END_TEST

START_TEST(test_max_connections_local_holds_tcp)
{
    check_limit_across(client_open_local, client_open);
    ck_assert_str_eq(fx.last.peer, "127.0.0.1");
}
END_TEST

START_TEST(test_listener_added_while_full_waits)
{
    struct resp r;
    fx.limits.max_connections = 1;
    server_start();
    struct client a = client_open();
    client_send_str(&a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    ck_assert_int_eq(wait_responses(&a, &r, 1), 1);
    server_listen_local(); /* the server is paused: so is the new listener */
    struct client u = client_open_local();
    client_send_str(&u, "GET /u HTTP/1.1\r\nHost: a\r\n\r\n");
    pump_ms(&u, 150);
    ck_assert_uint_eq(u.len, 0);
    ck_assert_uint_eq(http_server_connections(fx.server), 1);
    client_close(&a);
    ck_assert_int_eq(wait_responses(&u, &r, 1), 1);
    ck_assert_str_eq(r.body, "GET /u - 0\n");
    ck_assert_str_eq(fx.last.peer, "local");
    client_close(&u);
}
END_TEST

START_TEST(test_query_param)
{
    const char *q = "a=1&b=hello+world&c=%41%42%zz&d&e=&a=2&n%61me=x&f=%4";
    char *v;
    ck_assert_str_eq(v = http_query_param(q, "a"), "1");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "b"), "hello world");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "c"), "AB%zz");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "d"), "");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "e"), "");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "name"), "x");
    free(v);
    ck_assert_str_eq(v = http_query_param(q, "f"), "%4");
    free(v);
    ck_assert_ptr_null(http_query_param(q, "zz"));
    ck_assert_ptr_null(http_query_param(NULL, "a"));
    ck_assert_ptr_null(http_query_param("", "a"));
}
END_TEST

START_TEST(test_token)
{
    struct http_header headers[1] = {{"authorization", "Bearer s3cret"}};
    struct http_request req = {.headers = headers, .n_headers = 1};
    ck_assert(http_request_token_ok(&req, "s3cret"));
    ck_assert(http_request_token_ok(&req, NULL));
    ck_assert(http_request_token_ok(&req, ""));
    ck_assert(!http_request_token_ok(&req, "s3cre"));
    ck_assert(!http_request_token_ok(&req, "s3cret2"));
    headers[0].value = "Basic s3cret";
    ck_assert(!http_request_token_ok(&req, "s3cret"));
    req.n_headers = 0;
    ck_assert(!http_request_token_ok(&req, "s3cret"));
    req.query = "x=1&token=s3%63ret";
    ck_assert(http_request_token_ok(&req, "s3cret"));
    req.query = "token=wrong";
    ck_assert(!http_request_token_ok(&req, "s3cret"));
}
END_TEST

/* The pages' login cookie (SPEC §10): hive_token=TOKEN, percent-decoded,
 * among other cookies; a look-alike name or a wrong value is not the token. */
START_TEST(test_token_cookie)
{
    struct http_header headers[1] = {{"Cookie", "a=1; hive_token=s3cret; b=2"}};
    struct http_request req = {.headers = headers, .n_headers = 1};
    ck_assert(http_request_token_ok(&req, "s3cret"));
    ck_assert(!http_request_token_ok(&req, "s3cre"));
    headers[0].value = "hive_token=s3%3Bc%25ret";
    ck_assert(http_request_token_ok(&req, "s3;c%ret"));
    headers[0].value = "xhive_token=s3cret; hive_tokenx=s3cret";
    ck_assert(!http_request_token_ok(&req, "s3cret"));
    headers[0].value = "hive_token=wrong";
    ck_assert(!http_request_token_ok(&req, "s3cret"));
    headers[0].value = "hive_token=";
    ck_assert(!http_request_token_ok(&req, "s3cret"));
    ck_assert(http_token_equal("abc", "abc"));
    ck_assert(!http_token_equal("abd", "abc"));
}
END_TEST

START_TEST(test_status_reason)
{
    ck_assert_str_eq(http_status_reason(200), "OK");
    ck_assert_str_eq(http_status_reason(202), "Accepted");
    ck_assert_str_eq(http_status_reason(404), "Not Found");
    ck_assert_str_eq(http_status_reason(413), "Payload Too Large");
    ck_assert_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(http_status_reason(203), "Non-Authoritative Information");
    ck_assert_str_eq(http_status_reason(999), "Unknown");
}
END_TEST

START_TEST(test_request_header_lookup)
{
    struct http_header headers[2] = {{"Content-Type", "a"}, {"content-type", "b"}};
    struct http_request req = {.headers = headers, .n_headers = 2};
    ck_assert_str_eq(http_request_header(&req, "CONTENT-TYPE"), "a");
    ck_assert_ptr_null(http_request_header(&req, "Content"));
}
END_TEST

START_TEST(test_util_listen_local)
{
    char a[UTIL_LOCAL_NAME_MAX], b[UTIL_LOCAL_NAME_MAX];
    struct sockaddr_storage ss;
    int la = util_listen_local(a), lb = util_listen_local(b);
    ck_assert_int_ge(la, 0);
    ck_assert_int_ge(lb, 0);
    ck_assert_uint_gt(strlen(a), 0);
    ck_assert_uint_lt(strlen(a), UTIL_LOCAL_NAME_MAX);
    for (const char *p = a; *p; p++)
        ck_assert_msg(*p > ' ' && *p <= '~', "unprintable byte %#x in the name", *p);
    ck_assert_str_ne(a, b);
    ck_assert_int_ne(fcntl(la, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(la, F_GETFD) & FD_CLOEXEC, 0);

    /* A connect to the name reaches that listener (and not the other). */
    int fd = local_connect(a);
    ck_assert_msg(fd >= 0, "connect to @%s: %s", a, strerror(errno));
    int in = accept(la, NULL, NULL);
    ck_assert_int_ge(in, 0);
    ck_assert_int_eq(send(fd, "x", 1, MSG_NOSIGNAL), 1);
    char byte = 0;
    ck_assert_int_eq(recv(in, &byte, 1, 0), 1);
    ck_assert_int_eq(byte, 'x');
    ck_assert_int_lt(accept(lb, NULL, NULL), 0);
    ck_assert_int_eq(errno, EAGAIN);
    close(in);
    close(fd);

    /* The name is gone with its listener: nobody is there to connect to. */
    close(la);
    ck_assert_int_lt(local_connect(a), 0);
    ck_assert_int_eq(errno, ECONNREFUSED);
    close(lb);

    /* No address for an empty name or one that does not fit. */
    char long_name[200];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_uint_eq(util_local_addr("", &ss), 0);
    ck_assert_uint_eq(util_local_addr(long_name, &ss), 0);
}
END_TEST

/* The suite: server tests over loopback (and Unix sockets), then pure helpers. */
static Suite *check_http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_get_simple);
    tcase_add_test(tc, test_json_and_extra_headers);
    tcase_add_test(tc, test_keep_alive);
    tcase_add_test(tc, test_pipelining_sync);
    tcase_add_test(tc, test_pipelining_async_one_at_a_time);
    tcase_add_test(tc, test_http10_close);
    tcase_add_test(tc, test_http10_keep_alive);
    tcase_add_test(tc, test_connection_close_header);
    tcase_add_test(tc, test_content_length_body);
    tcase_add_test(tc, test_chunked_body);
    tcase_add_test(tc, test_head_method);
    tcase_add_test(tc, test_absolute_and_star_targets);
    tcase_add_test(tc, test_split_content_length);
    tcase_add_test(tc, test_split_chunked);
    tcase_add_test(tc, test_expect_continue);
    tcase_add_test(tc, test_expect_too_large);
    tcase_add_test(tc, test_expect_unknown);
    tcase_add_test(tc, test_headers_too_large);
    tcase_add_test(tc, test_body_too_large);
    tcase_add_test(tc, test_error_reaches_client_still_sending);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_smuggling_refused);
    tcase_add_test(tc, test_header_name_refused);
    tcase_add_test(tc, test_header_name_empty_refused);
    tcase_add_test(tc, test_framing_as_parsed);
    tcase_add_test(tc, test_unknown_transfer_encoding);
    tcase_add_test(tc, test_async_answer);
    tcase_add_test(tc, test_async_client_gone);
    tcase_add_test(tc, test_detach_after_client_gone);
    tcase_add_test(tc, test_server_free_with_pending);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_detach_from_on_headers_keeps_bytes);
    tcase_add_test(tc, test_header_timeout);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_body_stall);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_stream_response);
    tcase_add_test(tc, test_stream_big_with_drain);
    tcase_add_test(tc, test_send_timeout);
    tcase_add_test(tc, test_stream_body_with_pause);
    tcase_add_test(tc, test_stream_body_limit);
    tcase_add_test(tc, test_early_answer_discards_body);
    tcase_add_test(tc, test_early_answer_with_expect_closes);
    tcase_add_test(tc, test_ipv6_peers);
    tcase_add_test(tc, test_local_listener);
    tcase_add_test(tc, test_guard_refuses_before_routing);
    tcase_add_test(tc, test_guard_cors);
    tcase_add_test(tc, test_borrowed_listener);
    tcase_add_test(tc, test_max_connections_tcp_holds_local);
    tcase_add_test(tc, test_max_connections_local_holds_tcp);
    tcase_add_test(tc, test_listener_added_while_full_waits);
    suite_add_tcase(s, tc);

    TCase *pure = tcase_create("helpers");
    tcase_add_test(pure, test_query_param);
    tcase_add_test(pure, test_token);
    tcase_add_test(pure, test_token_cookie);
    tcase_add_test(pure, test_status_reason);
    tcase_add_test(pure, test_request_header_lookup);
    tcase_add_test(pure, test_util_listen_local);
    suite_add_tcase(s, pure);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the programs do */
    return check_run(check_http_suite());
}
