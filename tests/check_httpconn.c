/*
 * check_httpconn: the connection layer under httpclient and the proxy
 * (common/httpconn.c), against servers the test plays itself on
 * kernel-chosen loopback ports (and a private abstract Unix socket): an
 * idle connection is reused (same socket, nothing new accepted), one the
 * server closed while idle is dropped and not handed out, or, taken before
 * the loop saw the close, reports that close to its holder; idle
 * connections are closed after the idle timeout and beyond the pool's
 * maximum; a refused connect and one that never completes (a listener whose
 * backlog is full) end with the reason; the private socket is preferred
 * and passed over, with a note, when it is gone; a pool let go lives on
 * while it has idle connections; a TLS connection detached from inside its
 * data callback hands over its own bufferevent, which goes on talking, and
 * its pool keeps the TLS context alive after its maker let go of it.
 */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/httpconn.h"
#include "common/tls.h"
#include "common/util.h"

#include "tests/check_support.h"

#define DEADLINE_MS 5000

/* The loop, a listening server, and the set under test with one pool. */
struct fx {
    struct event_base *base;
    int lfd;
    struct sockaddr_in sin;
    char authority[32];
    struct httpconn_set *set;
    struct httpconn_pool *pool;
};

/* What a holder of a connection heard. */
struct user {
    struct util_buf got;
    int ended, written;
    struct httpconn_end end;
    struct httpconn *conn; /* NULL once it ended (closed by the holder) */
};

static void user_data(struct httpconn *conn, const char *data, size_t len, void *arg)
{
    struct user *u = arg;
    (void)conn;
    util_buf_add(&u->got, data, len);
}

static void user_written(struct httpconn *conn, size_t pending, void *arg)
{
    struct user *u = arg;
    (void)conn, (void)pending;
    u->written++;
}

static void user_ended(struct httpconn *conn, const struct httpconn_end *end, void *arg)
{
    struct user *u = arg;
    u->ended++;
    u->end = *end;
    u->end.tls = NULL; /* valid during the call only */
    httpconn_close(conn);
    u->conn = NULL;
}

static const struct httpconn_handler user_handler = {user_data, user_written, user_ended};

/* A non-blocking listener on 127.0.0.1 (kernel-chosen port) with BACKLOG. */
static int listen_loopback(struct sockaddr_in *sin, int backlog)
{
    socklen_t len = sizeof *sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)sin, sizeof *sin), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)sin, &len), 0);
    return fd;
}

/* A set with LIM and the pool of the server's address (and LOCAL). */
static void fx_setup(struct fx *fx, const struct httpconn_limits *lim, const char *local)
{
    memset(fx, 0, sizeof *fx);
    fx->base = event_base_new();
    fx->lfd = listen_loopback(&fx->sin, 16);
    snprintf(fx->authority, sizeof fx->authority, "127.0.0.1:%d", ntohs(fx->sin.sin_port));
    fx->set = httpconn_set_new(fx->base, lim);
    struct httpconn_dest dest = {.authority = fx->authority,
                                 .addr = (struct sockaddr *)&fx->sin,
                                 .addrlen = sizeof fx->sin,
                                 .local = local};
    fx->pool = httpconn_pool_get(fx->set, &dest);
}

static void fx_teardown(struct fx *fx)
{
    httpconn_pool_release(fx->pool);
    httpconn_set_free(fx->set);
    if (fx->lfd >= 0)
        close(fx->lfd);
    event_base_free(fx->base);
}

/* Turn the loop once (and wait a little for the kernel). */
static void pump(struct fx *fx)
{
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    poll(NULL, 0, 1);
}

/* Turn the loop until COND holds (or the deadline). */
#define WAIT_FOR(fx, cond)                                                                         \
    do {                                                                                           \
        int64_t end_ = util_mono_ms() + DEADLINE_MS;                                               \
        while (!(cond) && util_mono_ms() < end_)                                                   \
            pump(fx);                                                                              \
        ck_assert_msg((cond), "timed out waiting for " #cond);                                     \
    } while (0)

/* The server's side of the next connection to listener LFD. */
static int server_accept(struct fx *fx, int lfd)
{
    int fd = -1;
    int64_t end = util_mono_ms() + DEADLINE_MS;
    while (fd < 0 && util_mono_ms() < end) {
        pump(fx);
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    ck_assert_msg(fd >= 0, "nobody connected");
    return fd;
}

/* True when nobody is waiting to be accepted on LFD. */
static bool nothing_to_accept(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    return fd < 0;
}

/* Read what the server's FD holds into B; true once the client closed. */
static bool server_read(int fd, struct util_buf *b)
{
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        util_buf_add(b, buf, (size_t)n);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* True when B holds TEXT. */
static bool has(const struct util_buf *b, const char *text)
{
    return b->data && strstr(b->data, text);
}

/* A new connection of FX's pool for U, "ask" sent and answered "answer" by
 * the server; its server side in *SFD. */
static struct httpconn *open_and_talk(struct fx *fx, struct user *u, int *sfd)
{
    char err[200];
    struct util_buf in = {0};
    free(u->got.data);
    memset(u, 0, sizeof *u);
    u->conn = httpconn_open(fx->pool, NULL, 0, &user_handler, u, err, sizeof err);
    ck_assert_msg(u->conn != NULL, "%s", err);
    httpconn_watch(u->conn, NULL);
    httpconn_send(u->conn, "ask", 3);
    *sfd = server_accept(fx, fx->lfd);
    WAIT_FOR(fx, (server_read(*sfd, &in), has(&in, "ask")));
    ck_assert_int_eq(send(*sfd, "answer", 6, 0), 6);
    WAIT_FOR(fx, has(&u->got, "answer") && !httpconn_connecting(u->conn));
    free(in.data);
    return u->conn;
}

START_TEST(test_idle_connection_reused)
{
    static const struct httpconn_limits lim = {.idle_max = 4, .idle_timeout_ms = 5000};
    struct fx fx;
    struct user u = {0}, u2 = {0};
    struct util_buf in = {0};
    int sfd;
    fx_setup(&fx, &lim, NULL);
    struct httpconn *conn = open_and_talk(&fx, &u, &sfd);
    ck_assert(!httpconn_reused(conn));
    httpconn_put(conn);
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 1);

    /* Let go of the pool: it lives on with its idle connection. */
    httpconn_pool_release(fx.pool);
    struct httpconn_dest dest = {.authority = fx.authority};
    fx.pool = httpconn_pool_get(fx.set, &dest);
    struct httpconn *again = httpconn_take(fx.pool, &user_handler, &u2);
    ck_assert_ptr_eq(again, conn);
    ck_assert(httpconn_reused(again));
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 0);
    ck_assert_ptr_null(httpconn_take(fx.pool, &user_handler, &u2));
    httpconn_watch(again, NULL);
    httpconn_send(again, "second", 6);
    WAIT_FOR(&fx, (server_read(sfd, &in), has(&in, "second")));
    ck_assert(nothing_to_accept(fx.lfd));
    ck_assert_uint_eq(httpconn_set_opened(fx.set), 1);
    ck_assert_int_eq(send(sfd, "ok", 2, 0), 2);
    WAIT_FOR(&fx, has(&u2.got, "ok"));
    ck_assert(!has(&u.got, "ok"));
    httpconn_close(again);
    close(sfd);
    free(in.data);
    free(u.got.data);
    free(u2.got.data);
    fx_teardown(&fx);
}
END_TEST

/* A pool's requests carry the name its address was resolved from as Host;
 * the same address by another name (or by none) is another pool, so an
 * idle connection is never reused under a Host it was not opened for. */
START_TEST(test_pool_host_is_part_of_its_identity)
{
    static const struct httpconn_limits lim = {.idle_max = 4, .idle_timeout_ms = 5000};
    struct fx fx;
    struct user u = {0}, u2 = {0};
    int sfd;
    fx_setup(&fx, &lim, NULL);
    ck_assert_str_eq(httpconn_pool_host(fx.pool), fx.authority);
    struct httpconn_dest named = {.authority = fx.authority, .host = "bots.example:8001"};
    struct httpconn_pool *by_name = httpconn_pool_get(fx.set, &named);
    ck_assert_ptr_ne(by_name, fx.pool);
    ck_assert_str_eq(httpconn_pool_host(by_name), "bots.example:8001");
    ck_assert_ptr_eq(httpconn_pool_get(fx.set, &named), by_name);
    httpconn_pool_release(by_name);
    struct httpconn_dest empty = {.authority = fx.authority, .host = ""};
    struct httpconn_pool *plain = httpconn_pool_get(fx.set, &empty);
    ck_assert_ptr_eq(plain, fx.pool);
    httpconn_pool_release(plain);

    struct httpconn *conn = open_and_talk(&fx, &u, &sfd);
    httpconn_put(conn);
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 1);
    ck_assert_ptr_null(httpconn_take(by_name, &user_handler, &u2));
    ck_assert_ptr_eq(httpconn_take(fx.pool, &user_handler, &u2), conn);
    httpconn_close(conn);
    close(sfd);
    httpconn_pool_release(by_name);
    free(u.got.data);
    free(u2.got.data);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_closed_by_server_while_idle)
{
    static const struct httpconn_limits lim = {.idle_max = 4, .idle_timeout_ms = 5000};
    struct fx fx;
    struct user u = {0}, u2 = {0};
    int sfd;
    fx_setup(&fx, &lim, NULL);
    httpconn_put(open_and_talk(&fx, &u, &sfd));
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 1);
    close(sfd); /* the server lets it go */
    WAIT_FOR(&fx, httpconn_set_idle(fx.set) == 0);
    ck_assert_ptr_null(httpconn_take(fx.pool, &user_handler, &u2));

    /* Taken before the loop saw the close: its holder hears of it. */
    httpconn_put(open_and_talk(&fx, &u, &sfd));
    close(sfd);
    u2.conn = httpconn_take(fx.pool, &user_handler, &u2);
    ck_assert_ptr_nonnull(u2.conn);
    httpconn_watch(u2.conn, NULL);
    WAIT_FOR(&fx, u2.ended == 1);
    ck_assert(u2.end.eof);
    ck_assert_uint_eq(httpconn_set_opened(fx.set), 2);
    free(u.got.data);
    free(u2.got.data);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_idle_timeout)
{
    static const struct httpconn_limits lim = {.idle_max = 4, .idle_timeout_ms = 100};
    struct fx fx;
    struct user u = {0};
    struct util_buf in = {0};
    int sfd;
    fx_setup(&fx, &lim, NULL);
    httpconn_put(open_and_talk(&fx, &u, &sfd));
    int64_t start = util_mono_ms();
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 1);
    WAIT_FOR(&fx, server_read(sfd, &in)); /* the client closed it */
    ck_assert_int_ge(util_mono_ms() - start, 90);
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 0);
    close(sfd);
    free(u.got.data);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_idle_max_per_pool)
{
    static const struct httpconn_limits lim = {.idle_max = 2, .idle_timeout_ms = 5000};
    struct fx fx;
    struct user u[3] = {0};
    struct httpconn *conn[3];
    struct util_buf in = {0};
    int sfd[3];
    fx_setup(&fx, &lim, NULL);
    for (int i = 0; i < 3; i++)
        conn[i] = open_and_talk(&fx, &u[i], &sfd[i]);
    for (int i = 0; i < 3; i++)
        httpconn_put(conn[i]);
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 2);
    WAIT_FOR(&fx, server_read(sfd[2], &in)); /* the third was closed */
    ck_assert(!server_read(sfd[0], &in) && !server_read(sfd[1], &in));
    /* A flush closes the idle ones. */
    httpconn_pool_flush(fx.pool);
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 0);
    WAIT_FOR(&fx, server_read(sfd[0], &in) && server_read(sfd[1], &in));
    for (int i = 0; i < 3; i++) {
        close(sfd[i]);
        free(u[i].got.data);
    }
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_connect_refused)
{
    static const struct httpconn_limits lim = {.idle_max = 2, .idle_timeout_ms = 5000};
    struct fx fx;
    struct user u = {0};
    char err[200];
    fx_setup(&fx, &lim, NULL);
    close(fx.lfd); /* nobody listens on the port any more */
    fx.lfd = -1;
    u.conn = httpconn_open(fx.pool, NULL, 0, &user_handler, &u, err, sizeof err);
    if (u.conn) { /* refused from the loop */
        httpconn_watch(u.conn, NULL);
        httpconn_send(u.conn, "ask", 3);
        WAIT_FOR(&fx, u.ended == 1);
        ck_assert_int_eq(u.end.err, ECONNREFUSED);
        ck_assert(!u.end.timeout && !u.end.eof);
    } else {
        ck_assert_msg(strstr(err, "refused"), "%s", err);
    }
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 0);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_connect_timeout)
{
    /* A listener whose backlog is full drops new SYNs: the connect never
     * completes, and io_timeout ends it. */
    static const struct httpconn_limits lim = {
        .idle_max = 2, .idle_timeout_ms = 5000, .io_timeout_ms = 200};
    struct fx fx;
    struct user u = {0};
    char err[200];
    int filler[4], n = 0;
    fx_setup(&fx, &lim, NULL);
    close(fx.lfd);
    struct sockaddr_in sin;
    fx.lfd = listen_loopback(&sin, 0);
    for (; n < 4; n++) { /* fill the accept queue */
        filler[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(filler[n], (struct sockaddr *)&sin, sizeof sin);
    }
    poll(NULL, 0, 50);
    u.conn = httpconn_open(fx.pool, (struct sockaddr *)&sin, sizeof sin, &user_handler, &u, err,
                           sizeof err);
    ck_assert_msg(u.conn != NULL, "%s", err);
    ck_assert(httpconn_connecting(u.conn));
    int64_t start = util_mono_ms();
    WAIT_FOR(&fx, u.ended == 1);
    ck_assert(u.end.timeout);
    ck_assert_int_ge(util_mono_ms() - start, 150);
    for (int i = 0; i < n; i++)
        close(filler[i]);
    fx_teardown(&fx);
}
END_TEST

START_TEST(test_private_socket_first)
{
    static const struct httpconn_limits lim = {.idle_max = 2, .idle_timeout_ms = 5000};
    char name[UTIL_LOCAL_NAME_MAX], err[200];
    struct fx fx;
    struct user u = {0}, u2 = {0};
    int local = util_listen_local(name);
    ck_assert_int_ge(local, 0);
    fx_setup(&fx, &lim, name);
    u.conn = httpconn_open(fx.pool, NULL, 0, &user_handler, &u, err, sizeof err);
    ck_assert_ptr_nonnull(u.conn);
    ck_assert_str_eq(err, "");
    ck_assert(httpconn_is_local(u.conn));
    ck_assert(!httpconn_connecting(u.conn)); /* a Unix connect is done at once */
    int sfd = server_accept(&fx, local);
    ck_assert(nothing_to_accept(fx.lfd));
    httpconn_close(u.conn);
    close(sfd);
    /* An address given (httpclient's, once resolved) comes after it too. */
    u.conn = httpconn_open(fx.pool, (struct sockaddr *)&fx.sin, sizeof fx.sin, &user_handler, &u,
                           err, sizeof err);
    ck_assert_ptr_nonnull(u.conn);
    ck_assert(httpconn_is_local(u.conn));
    sfd = server_accept(&fx, local);
    ck_assert(nothing_to_accept(fx.lfd));
    httpconn_close(u.conn);
    close(sfd);

    /* The private socket is gone: the port, with a note saying why. */
    close(local);
    u2.conn = httpconn_open(fx.pool, NULL, 0, &user_handler, &u2, err, sizeof err);
    ck_assert_ptr_nonnull(u2.conn);
    ck_assert_msg(strstr(err, "private socket"), "%s", err);
    ck_assert(!httpconn_is_local(u2.conn));
    sfd = server_accept(&fx, fx.lfd);
    httpconn_close(u2.conn);
    close(sfd);
    fx_teardown(&fx);
}
END_TEST

/* A holder that takes its connection over (a tunnel) at the first bytes. */
struct taker {
    struct util_buf got;
    struct bufferevent *bev;
    int ended;
};

static void taker_data(struct httpconn *conn, const char *data, size_t len, void *arg)
{
    struct taker *t = arg;
    util_buf_add(&t->got, data, len);
    if (!t->bev)
        t->bev = httpconn_detach(conn);
}

static void taker_ended(struct httpconn *conn, const struct httpconn_end *end, void *arg)
{
    struct taker *t = arg;
    (void)end;
    t->ended++;
    httpconn_close(conn);
}

static const struct httpconn_handler taker_handler = {taker_data, NULL, taker_ended};

/* True when BEV's input holds TEXT. */
static bool bev_has(struct bufferevent *bev, const char *text)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    return evbuffer_search(in, text, strlen(text), NULL).pos >= 0;
}

START_TEST(test_tls_detach)
{
    static const struct httpconn_limits lim = {.idle_max = 2, .idle_timeout_ms = 5000};
    char dir[] = "/tmp/check-httpconn-XXXXXX", cmd[2048], path[3][200], err[300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert(check_make_certs(dir));
    snprintf(path[0], sizeof path[0], "%s/ca.pem", dir);
    snprintf(path[1], sizeof path[1], "%s/srv.pem", dir);
    snprintf(path[2], sizeof path[2], "%s/srv.key", dir);
    SSL_CTX *server = tls_server_ctx(path[1], path[2], err, sizeof err);
    SSL_CTX *client = tls_client_ctx(path[0], err, sizeof err);
    ck_assert_msg(server && client, "%s", err);

    struct fx fx;
    fx_setup(&fx, &lim, NULL);
    struct httpconn_dest dest = {.authority = fx.authority,
                                 .addr = (struct sockaddr *)&fx.sin,
                                 .addrlen = sizeof fx.sin,
                                 .tls = client,
                                 .tls_host = "127.0.0.1"};
    struct httpconn_pool *pool = httpconn_pool_get(fx.set, &dest);
    SSL_CTX_free(client); /* the pool's reference keeps it */
    struct taker t = {0};
    struct httpconn *conn = httpconn_open(pool, NULL, 0, &taker_handler, &t, err, sizeof err);
    ck_assert_msg(conn != NULL, "%s", err);
    httpconn_watch(conn, NULL);
    httpconn_send(conn, "ask", 3);
    int sfd = server_accept(&fx, fx.lfd);
    struct bufferevent *srv = bufferevent_openssl_socket_new(
        fx.base, sfd, SSL_new(server), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(srv);
    bufferevent_enable(srv, EV_READ | EV_WRITE);
    WAIT_FOR(&fx, bev_has(srv, "ask"));
    bufferevent_write(srv, "answer", 6);
    WAIT_FOR(&fx, t.bev != NULL);
    ck_assert(has(&t.got, "answer"));
    ck_assert_uint_eq(httpconn_set_idle(fx.set), 0);

    /* The bufferevent carries the same TLS session on, both ways. */
    bufferevent_enable(t.bev, EV_READ | EV_WRITE);
    bufferevent_write(t.bev, "more", 4);
    WAIT_FOR(&fx, bev_has(srv, "more"));
    bufferevent_write(srv, "after", 5);
    WAIT_FOR(&fx, bev_has(t.bev, "after"));
    ck_assert_int_eq(t.ended, 0);

    bufferevent_free(t.bev);
    bufferevent_free(srv);
    httpconn_pool_release(pool);
    fx_teardown(&fx);
    SSL_CTX_free(server);
    free(t.got.data);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("httpconn");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_idle_connection_reused);
    tcase_add_test(tc, test_pool_host_is_part_of_its_identity);
    tcase_add_test(tc, test_closed_by_server_while_idle);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_idle_max_per_pool);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_connect_timeout);
    tcase_add_test(tc, test_private_socket_first);
    tcase_add_test(tc, test_tls_detach);
    suite_add_tcase(s, tc);
    return check_run(s);
}
