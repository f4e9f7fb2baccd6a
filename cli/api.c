/*
 * api: a running hive, as the `hive` commands reach it. It owns finding the
 * hive (hive.yaml's listen and token, loaded with roster_load), connecting
 * (a blocking socket with a timeout, so a hive that stops answering cannot
 * hang a command), one-shot HTTP/1.1 requests (the answer parsed with
 * http-parser, so Content-Length and chunked both work), and saying what
 * went wrong for people.
 */
#include "cli/api.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
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
    errno = err;
    return fd;
}

/* Say that nothing answers on the hive's address. */
int api_not_running(const struct api *c)
{
    fprintf(stderr, "hive: no hive is running on %s\n", c->addr);
    return CLI_EXIT_FAIL;
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
 * hive answers (errno from connect); -2 when the exchange broke. */
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
