/*
 * check_route: the route table's matching and the door's answers (401, 405
 * with Allow, 415, the handler with its parameters), on a real http_server
 * fed over a socketpair.
 */
#include <check.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http.h"
#include "common/route.h"
#include "common/util.h"

#include "tests/check_support.h"

START_TEST(test_match_segments_and_params)
{
    struct route_params pp;
    ck_assert(route_match("/health", "/health", &pp) && pp.n == 0);
    ck_assert(!route_match("/health", "/healthz", &pp));
    ck_assert(!route_match("/health", "/health/", &pp));
    ck_assert(!route_match("/api/task", "/api/task/x", &pp));
    ck_assert(route_match("/api/task/*", "/api/task/T-1", &pp));
    ck_assert_uint_eq(pp.n, 1);
    ck_assert_uint_eq(pp.len[0], 3);
    ck_assert(strncmp(pp.s[0], "T-1", 3) == 0);
    ck_assert(!route_match("/api/task/*", "/api/task/", &pp));    /* empty segment */
    ck_assert(!route_match("/api/task/*", "/api/task/a/b", &pp)); /* one segment only */
    ck_assert(route_match("/api/task/*/cancel", "/api/task/a.b/cancel", &pp));
    char id[8];
    ck_assert(route_param(&pp, 0, id, sizeof id));
    ck_assert_str_eq(id, "a.b");
    ck_assert(!route_param(&pp, 1, id, sizeof id));
    ck_assert(route_match("/api/bots/*/restart", "/api/bots/BOT-1/restart", &pp));
    ck_assert(!route_match("/api/bots/*/restart", "/api/bots/BOT-1/stop", &pp));
    ck_assert(route_match("/x/*/y/*", "/x/1/y/22", &pp) && pp.n == 2 && pp.len[1] == 2);
    ck_assert(route_match("/a*b", "/a*b", &pp) && pp.n == 0); /* '*' inside a segment is literal */
    ck_assert(!route_match("/a*b", "/axb", &pp));
    ck_assert(!route_param(&(struct route_params){.s = {"toolong"}, .len = {7}, .n = 1}, 0, id, 4));
}
END_TEST

/* ---- dispatch through a real server ---- */

static char handled[256];

static void fn_plain(struct http_conn *conn, struct http_request *req,
                     const struct route_params *pp, void *arg)
{
    (void)arg;
    snprintf(handled, sizeof handled, "%s %s %zu", req->method, req->path, pp->n);
    http_respond(conn, 200, "text/plain", "ok", 2, NULL);
}

static const struct route table[] = {
    {ROUTE_READ, "/health", ROUTE_PUBLIC, fn_plain},
    {ROUTE_READ, "/status", 0, fn_plain},
    {ROUTE_POST, "/api/task", ROUTE_JSON, fn_plain},
    {ROUTE_GET, "/ws", 0, fn_plain},
    {ROUTE_READ, "/api/task/*", 0, fn_plain},
    {ROUTE_POST, "/api/task/*/cancel", 0, fn_plain},
};

struct fixture {
    const char *token;
};

static void on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    struct fixture *f = arg;
    if (!route_dispatch(table, sizeof table / sizeof *table, conn, req, f->token, NULL))
        http_respond_error(conn, 404, "Not Found", NULL);
}

/* Send RAW to a fresh server on a kernel-chosen loopback port and return
 * its answer (caller frees). */
static char *exchange(const char *token, const char *raw)
{
    struct fixture f = {.token = token};
    struct event_base *base = event_base_new();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    struct http_server_config hc = {
        .limits = {16384, 1 << 20, 10000, 60000, 16}, .on_request = on_request, .arg = &f};
    struct http_server *server = http_server_new(base, lfd, &hc);
    ck_assert_ptr_nonnull(server);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(write(c, raw, strlen(raw)), (ssize_t)strlen(raw));
    struct util_buf out = {0};
    char buf[4096];
    for (int i = 0; i < 2000; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            util_buf_add(&out, buf, (size_t)n);
        if (n == 0)
            break;
        if (n < 0)
            usleep(1000);
    }
    close(c);
    http_server_free(server);
    event_base_free(base);
    util_buf_add(&out, "", 1);
    return out.data;
}

static void expect(const char *token, const char *raw, const char *status, const char *header,
                   const char *handled_as)
{
    handled[0] = '\0';
    char *got = exchange(token, raw);
    ck_assert_msg(strncmp(got, status, strlen(status)) == 0, "%s -> %s", raw, got);
    if (header)
        ck_assert_msg(strstr(got, header) != NULL, "%s: no %s in %s", raw, header, got);
    ck_assert_str_eq(handled, handled_as);
    free(got);
}

#define GET(path, hdrs)                                                                            \
    "GET " path " HTTP/1.1\r\nHost: localhost\r\n" hdrs "Connection: close\r\n\r\n"
#define POST(path, ct)                                                                             \
    "POST " path " HTTP/1.1\r\nHost: localhost\r\n" ct                                             \
    "Content-Length: 2\r\nConnection: close\r\n\r\n{}"

START_TEST(test_dispatch_answers)
{
    expect(NULL, GET("/health", ""), "HTTP/1.1 200", NULL, "GET /health 0");
    expect(NULL, "HEAD /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
           "HTTP/1.1 200", NULL, "HEAD /status 0");
    expect(NULL, POST("/status", "Content-Type: application/json\r\n"), "HTTP/1.1 405",
           "Allow: GET, HEAD\r\n", "");
    expect(NULL, GET("/api/task", ""), "HTTP/1.1 405", "Allow: POST\r\n", "");
    expect(NULL, "HEAD /ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
           "HTTP/1.1 405", "Allow: GET\r\n", "");
    expect(NULL, POST("/api/task", "Content-Type: text/plain\r\n"), "HTTP/1.1 415", NULL, "");
    expect(NULL, POST("/api/task", "Content-Type: application/json; charset=utf-8\r\n"),
           "HTTP/1.1 200", NULL, "POST /api/task 0");
    expect(NULL, GET("/api/task/T-1", ""), "HTTP/1.1 200", NULL, "GET /api/task/T-1 1");
    expect(NULL, POST("/api/task/T-1/cancel", ""), "HTTP/1.1 200", NULL,
           "POST /api/task/T-1/cancel 1");
    expect(NULL, GET("/api/task/T-1/cancel", ""), "HTTP/1.1 405", "Allow: POST\r\n", "");
    expect(NULL, GET("/nothing", ""), "HTTP/1.1 404", NULL, "");
}
END_TEST

START_TEST(test_dispatch_token)
{
    const char *tok = "s3cret";
    expect(tok, GET("/health", ""), "HTTP/1.1 200", NULL, "GET /health 0"); /* public */
    expect(tok, POST("/health", "Content-Type: application/json\r\n"), "HTTP/1.1 405", NULL, "");
    expect(tok, GET("/status", ""), "HTTP/1.1 401", "WWW-Authenticate: Bearer\r\n", "");
    /* The token is checked before the method: a wrong method tells nothing. */
    expect(tok, POST("/status", "Content-Type: application/json\r\n"), "HTTP/1.1 401", NULL, "");
    expect(tok, GET("/status", "Authorization: Bearer s3cret\r\n"), "HTTP/1.1 200", NULL,
           "GET /status 0");
    expect(tok, GET("/status?token=s3cret", ""), "HTTP/1.1 200", NULL, "GET /status 0");
    expect(tok, GET("/status", "Authorization: Bearer wrong\r\n"), "HTTP/1.1 401", NULL, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("route");
    tcase_add_test(tc, test_match_segments_and_params);
    tcase_add_test(tc, test_dispatch_answers);
    tcase_add_test(tc, test_dispatch_token);
    suite_add_tcase(s, tc);
    return check_run(s);
}
