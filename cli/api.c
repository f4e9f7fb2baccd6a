/*
 * api: a running hive, as the `hive` commands reach it. It owns finding the
 * hive (hive.yaml's listen and token, loaded with roster_load), connecting
 * (a blocking socket with a timeout, so a hive that stops answering cannot
 * hang a command), one-shot HTTP/1.1 requests (the answer parsed with
 * http-parser, so Content-Length and chunked both work), and saying what
 * went wrong for people.
 *
 * A hive with hive.tls is reached over HTTPS: the handshake is done here,
 * blocking, verified against hive.ca (or the system's store) with the
 * listen host checked against the certificate; then a small helper process
 * pumps bytes between the TLS connection and one end of a socketpair, and
 * the command gets the other end. So every command (one-shot requests, the
 * SSE followers, top's poll loop, send --wait's WebSocket) keeps using a
 * plain socket as it does without TLS.
 */
#include "cli/api.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/sse.h"
#include "common/tls.h"
#include "common/util.h"

#define API_IO_TIMEOUT_S 30 /* a hive that does not answer a request in this long */

/* Load hive.yaml from PATH into C; prints the problems and returns 78. */
int api_load(struct api *c, const char *path)
{
    struct roster_errors errs = {NULL, 0};

    if (roster_load(path, &c->roster, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "hive: %s\n", errs.items[i]);
        if (errs.n == 0)
            fprintf(stderr, "hive: cannot load %s\n", path);
        roster_errors_free(&errs);
        return CLI_EXIT_CONFIG;
    }
    roster_errors_free(&errs);
    const char *h = c->roster->listen_host;
    if (strcmp(h, "0.0.0.0") == 0 || !*h)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    snprintf(c->host, sizeof c->host, "%s", h);
    c->port = c->roster->listen_port;
    snprintf(c->addr, sizeof c->addr, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, c->port);
    c->token = c->roster->token;
    return CLI_EXIT_OK;
}

static bool api_tls_said; /* a TLS failure was explained: no "not running" after it */

/* Write all LEN bytes of DATA to FD; false on error. */
static bool api_write_all(int fd, const char *data, int len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, (size_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (int)n;
    }
    return true;
}

/* Wait until FD is ready for EVENTS; false on error. */
static bool api_wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return false;
    return true;
}

/* SSL_write all LEN bytes of DATA over a non-blocking socket; false when the
 * connection failed. */
static bool api_tls_write_all(SSL *ssl, int tcp, const char *data, int len)
{
    while (len > 0) {
        int n = SSL_write(ssl, data, len);
        if (n > 0) {
            data += n, len -= n;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) ||
            !api_wait_fd(tcp, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN))
            return false;
    }
    return true;
}

/* What came over TLS goes to PLAIN; false when the connection ended. A
 * record without data (a session ticket) is no end: that is why TCP is
 * non-blocking here, so reading it cannot wait for data that may never come
 * while the command's request waits on the other side. */
static bool api_tls_drain(SSL *ssl, int plain)
{
    char buf[16384];
    do {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0)
            return SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ;
        if (!api_write_all(plain, buf, n))
            return false;
    } while (SSL_pending(ssl));
    return true;
}

/* The helper's loop: bytes between SSL (on TCP) and the plain socket PLAIN
 * until either side ends. */
static void api_tls_pump(SSL *ssl, int tcp, int plain)
{
    char buf[16384];
    util_set_nonblock_cloexec(tcp);
    for (;;) {
        struct pollfd p[2] = {{tcp, POLLIN, 0}, {plain, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (p[0].revents && !api_tls_drain(ssl, plain))
            return;
        if (p[1].revents) {
            ssize_t n = read(plain, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                SSL_shutdown(ssl);
                return;
            }
            if (!api_tls_write_all(ssl, tcp, buf, (int)n))
                return;
        }
    }
}

/* Hand SSL on TCP to a helper process (a grandchild, so nothing is left to
 * reap); the command's plain end of its socketpair, or -1. */
static int api_tls_relay(SSL *ssl, int tcp)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (fork() == 0) {
            struct timeval none = {0, 0}; /* a follower may be idle for long */
            setsockopt(tcp, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
            signal(SIGPIPE, SIG_IGN);
            api_tls_pump(ssl, tcp, sv[1]);
            _exit(0);
        }
        _exit(0);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return sv[0];
}

/* TLS to the hive over the connected TCP: the plain end of its relay, or -1
 * with the reason said once. */
static int api_tls_connect(const struct api *c, int tcp)
{
    char err[512], why[200];
    SSL_CTX *ctx = tls_client_ctx(c->roster->ca, err, sizeof err);
    SSL *ssl = ctx ? tls_client_ssl(ctx, c->host) : NULL;
    int fd = -1;
    if (ssl && SSL_set_fd(ssl, tcp) == 1 && SSL_connect(ssl) == 1) {
        fd = api_tls_relay(ssl, tcp);
    } else if (ctx) {
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        snprintf(err, sizeof err, "TLS: %s",
                 v != X509_V_OK ? X509_verify_cert_error_string(v) : tls_error(why, sizeof why));
    }
    if (fd < 0 && !api_tls_said) {
        fprintf(stderr, "hive: cannot talk HTTPS to the hive on %s: %s%s\n", c->addr, err,
                c->roster->ca ? "" : " (hive.ca names the CA of its certificate)");
        api_tls_said = true;
    }
    if (ssl)
        SSL_free(ssl);
    if (ctx)
        SSL_CTX_free(ctx);
    close(tcp);
    if (fd >= 0) {
        struct timeval tv = {API_IO_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    errno = fd < 0 ? EPROTO : 0;
    return fd;
}

/* A connected blocking socket to the hive, or -1 with errno. */
int api_connect(const struct api *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res, *ai;
    struct timeval tv = {API_IO_TIMEOUT_S, 0};
    char port[16];
    int fd = -1, err = ECONNREFUSED;

    snprintf(port, sizeof port, "%d", c->port);
    if (getaddrinfo(c->host, port, &hints, &res) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0 && c->roster->tls.cert)
        return api_tls_connect(c, fd);
    errno = err;
    return fd;
}

/* Say that nothing answers on the hive's address. */
int api_not_running(const struct api *c)
{
    if (api_tls_said) /* something answers, but not as the hive: already said why */
        return CLI_EXIT_FAIL;
    fprintf(stderr, "hive: no hive is running on %s\n", c->addr);
    return CLI_EXIT_FAIL;
}

/* An event stream's answer head from FD; what follows it goes to R. */
int api_stream_head(int fd, struct sse_reader *r)
{
    struct util_buf b = {0};
    char chunk[4096];
    int status = -1;
    while (b.len < 65536) {
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0)
            break;
        util_buf_add(&b, chunk, (size_t)n);
        char *end = strstr(b.data, "\r\n\r\n");
        if (!end)
            continue;
        if (sscanf(b.data, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
        else if (status == 200)
            sse_reader_feed(r, end + 4, b.len - (size_t)(end + 4 - b.data));
        break;
    }
    free(b.data);
    return status;
}

/* Send all LEN bytes of DATA; -1 on error. */
int api_send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Append LEN bytes of body to R. */
void api_response_append(struct api_response *r, const char *at, size_t len)
{
    if (r->len + len + 1 > r->cap) {
        r->cap = (r->len + len + 1) * 2;
        r->body = xrealloc(r->body, r->cap);
    }
    memcpy(r->body + r->len, at, len);
    r->len += len;
    r->body[r->len] = '\0';
}

/* Parser: a piece of the body. */
static int api_on_body(http_parser *p, const char *at, size_t len)
{
    api_response_append(p->data, at, len);
    return 0;
}

/* Parser: the head is in; keep the status. */
static int api_on_headers_complete(http_parser *p)
{
    struct api_response *r = p->data;
    r->status = p->status_code;
    return 0;
}

/* Parser: the answer is complete; stop here. */
static int api_on_message_complete(http_parser *p)
{
    struct api_response *r = p->data;
    r->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings api_settings = {
    .on_headers_complete = api_on_headers_complete,
    .on_body = api_on_body,
    .on_message_complete = api_on_message_complete,
};

/* Read one whole response from FD into R; -1 on a broken answer. */
static int api_read_response(int fd, struct api_response *r)
{
    http_parser parser;
    char buf[16384];

    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = r;
    while (!r->done) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        http_parser_execute(&parser, &api_settings, buf, (size_t)n);
        enum http_errno err = HTTP_PARSER_ERRNO(&parser);
        if ((err != HPE_OK && err != HPE_PAUSED) || (n == 0 && !r->done))
            return -1;
    }
    if (!r->body)
        r->body = xstrdup("");
    return 0;
}

/* Free the body of R. */
void api_response_free(struct api_response *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* METHOD TARGET with an optional JSON BODY. 0 with R filled; -1 when no
 * hive answers (errno from connect; EPROTO: TLS failed, already said); -2
 * when the exchange broke. */
int api_request(const struct api *c, const char *method, const char *target, const char *body,
                struct api_response *r)
{
    int fd = api_connect(c);
    if (fd < 0)
        return -1;
    char *auth = c->token ? xasprintf("Authorization: Bearer %s\r\n", c->token) : xstrdup("");
    char *len =
        body ? xasprintf("Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body))
             : xstrdup("");
    char *head = xasprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hive/%s\r\n"
                           "Accept: application/json\r\nConnection: close\r\n%s%s\r\n",
                           method, target, c->addr, HIVE_VERSION, auth, len);
    memset(r, 0, sizeof *r);
    int rc = api_send_all(fd, head, strlen(head)) < 0 ||
                     (body && api_send_all(fd, body, strlen(body)) < 0) ||
                     api_read_response(fd, r) < 0
                 ? -2
                 : 0;
    free(auth);
    free(len);
    free(head);
    close(fd);
    return rc;
}

/* The body of R as JSON (NULL when it is not). */
json_t *api_json(const struct api_response *r)
{
    return json_loadb(r->body, r->len, 0, NULL);
}

/* Print the error of an answer with an unexpected STATUS. */
void api_print_error(const struct api_response *r)
{
    json_t *j = api_json(r);
    json_t *detail = j ? json_object_get(j, "detail") : NULL;

    if (json_is_string(detail))
        fprintf(stderr, "hive: %s\n", json_string_value(detail));
    else
        fprintf(stderr, "hive: HTTP %d: %.*s\n", r->status, (int)(r->len > 300 ? 300 : r->len),
                r->body);
    if (r->status == 401)
        fprintf(stderr, "hive: set the token variable named by hive.token_env\n");
    json_decref(j);
}

/* One request whose answer must have status EXPECT (0: any 2xx). Prints
 * what went wrong and returns the exit code (0 with R to free on success). */
int api_call(const struct api *c, const char *method, const char *target, const char *body,
             int expect, struct api_response *r)
{
    int rc = api_request(c, method, target, body, r);

    if (rc == -1)
        return api_not_running(c);
    if (rc == -2) {
        fprintf(stderr, "hive: %s %s: the hive on %s did not answer properly\n", method, target,
                c->addr);
        api_response_free(r);
        return CLI_EXIT_FAIL;
    }
    if (expect ? r->status == expect : r->status / 100 == 2)
        return CLI_EXIT_OK;
    api_print_error(r);
    api_response_free(r);
    return CLI_EXIT_FAIL;
}

/* Sleep MS milliseconds. */
void api_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}
