/*
 * client: the `hive` subcommands that drive a running hive from a shell.
 * It owns finding the hive (hive.yaml's listen and token, loaded with
 * roster_load), one-shot HTTP/1.1 requests over a blocking socket (the
 * answer parsed with http-parser, so Content-Length and chunked both work),
 * the WebSocket client of `send --wait` (handshake here, framing by wslay;
 * while it waits it asks after the task over HTTP every few seconds, so a
 * stuck hive or a bot gone away ends the wait instead of hanging it), the
 * status table (colours on a terminal, --watch), control of several bots at
 * once, and the human-readable output and exit codes (0 ok, 1 runtime
 * failure, 2 usage, 3 a bot not running for `status`, 78 configuration).
 * `hive logs` reads files, not the API: that is logs.c.
 */
#include "cli/client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "common/json.h"
#include "common/util.h"
#include "common/ws.h"
#include "config/roster.h"
#include "cli/logs.h"

#define CLIENT_EXIT_OK 0
#define CLIENT_EXIT_FAIL 1
#define CLIENT_EXIT_USAGE 2
#define CLIENT_EXIT_INACTIVE 3 /* status: a listed bot is not running */
#define CLIENT_EXIT_CONFIG 78
#define CLIENT_IO_TIMEOUT_S 30 /* a hive that does not answer a request in this long */
#define CLIENT_DOWN_WAIT_MS 30000
#define CLIENT_POLL_MS 100
#define CLIENT_WATCH_MS 1000
#define CLIENT_WAIT_CHECK_MS 5000 /* send --wait: ask after the task this often */
#define CLIENT_STDIN_MAX (1024 * 1024)

/* The running hive, as hive.yaml describes it. */
struct client {
    struct roster *roster;
    char host[256]; /* where to connect (wildcards mean loopback) */
    char addr[300]; /* "127.0.0.1:8000", for messages and Host */
    int port;
    const char *token; /* NULL when the hive has none */
    bool colour;       /* ANSI colours: stdout is a terminal and NO_COLOR unset */
};

/* One answer. */
struct client_response {
    int status;
    char *body;
    size_t len, cap;
    bool done;
};

/* Parsed command line of one subcommand. */
struct client_args {
    const char *file;
    bool json, wait, follow, watch, no_prefix;
    long tail;         /* logs -n; -1: all */
    const char *since; /* logs --since */
    char **rest;       /* positional arguments */
    int n_rest;
};

/* ---- finding the hive ------------------------------------------------------ */

/* Load hive.yaml from PATH into C; prints the problems and returns 78. */
static int client_load(struct client *c, const char *path)
{
    struct roster_errors errs = {NULL, 0};

    if (roster_load(path, &c->roster, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "hive: %s\n", errs.items[i]);
        if (errs.n == 0)
            fprintf(stderr, "hive: cannot load %s\n", path);
        roster_errors_free(&errs);
        return CLIENT_EXIT_CONFIG;
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
    return CLIENT_EXIT_OK;
}

/* A connected blocking socket to the hive, or -1 with errno. */
static int client_connect(const struct client *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res, *ai;
    struct timeval tv = {CLIENT_IO_TIMEOUT_S, 0};
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
static int client_not_running(const struct client *c)
{
    fprintf(stderr, "hive: no hive is running on %s\n", c->addr);
    return CLIENT_EXIT_FAIL;
}

/* ---- one HTTP request ------------------------------------------------------ */

/* Send all LEN bytes of DATA; -1 on error. */
static int client_send_all(int fd, const char *data, size_t len)
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
static void client_response_append(struct client_response *r, const char *at, size_t len)
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
static int client_on_body(http_parser *p, const char *at, size_t len)
{
    client_response_append(p->data, at, len);
    return 0;
}

/* Parser: the head is in; keep the status. */
static int client_on_headers_complete(http_parser *p)
{
    struct client_response *r = p->data;
    r->status = p->status_code;
    return 0;
}

/* Parser: the answer is complete; stop here. */
static int client_on_message_complete(http_parser *p)
{
    struct client_response *r = p->data;
    r->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_settings = {
    .on_headers_complete = client_on_headers_complete,
    .on_body = client_on_body,
    .on_message_complete = client_on_message_complete,
};

/* Read one whole response from FD into R; -1 on a broken answer. */
static int client_read_response(int fd, struct client_response *r)
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
        http_parser_execute(&parser, &client_settings, buf, (size_t)n);
        enum http_errno err = HTTP_PARSER_ERRNO(&parser);
        if ((err != HPE_OK && err != HPE_PAUSED) || (n == 0 && !r->done))
            return -1;
    }
    if (!r->body)
        r->body = xstrdup("");
    return 0;
}

/* Free the body of R. */
static void client_response_free(struct client_response *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* METHOD TARGET with an optional JSON BODY. 0 with R filled; -1 when no
 * hive answers (errno from connect); -2 when the exchange broke. */
static int client_request(const struct client *c, const char *method, const char *target,
                          const char *body, struct client_response *r)
{
    int fd = client_connect(c);
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
    int rc = client_send_all(fd, head, strlen(head)) < 0 ||
                     (body && client_send_all(fd, body, strlen(body)) < 0) ||
                     client_read_response(fd, r) < 0
                 ? -2
                 : 0;
    free(auth);
    free(len);
    free(head);
    close(fd);
    return rc;
}

/* The body of R as JSON (NULL when it is not). */
static json_t *client_json(const struct client_response *r)
{
    return json_loadb(r->body, r->len, 0, NULL);
}

/* Print the error of an answer with an unexpected STATUS. */
static void client_print_error(const struct client_response *r)
{
    json_t *j = client_json(r);
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
static int client_call(const struct client *c, const char *method, const char *target,
                       const char *body, int expect, struct client_response *r)
{
    int rc = client_request(c, method, target, body, r);

    if (rc == -1)
        return client_not_running(c);
    if (rc == -2) {
        fprintf(stderr, "hive: %s %s: the hive on %s did not answer properly\n", method, target,
                c->addr);
        client_response_free(r);
        return CLIENT_EXIT_FAIL;
    }
    if (expect ? r->status == expect : r->status / 100 == 2)
        return CLIENT_EXIT_OK;
    client_print_error(r);
    client_response_free(r);
    return CLIENT_EXIT_FAIL;
}

/* ---- hive down ------------------------------------------------------------- */

/* Sleep MS milliseconds. */
static void client_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* POST /api/shutdown, then wait until the port stops answering. */
static int client_down(struct client *c, struct client_args *a)
{
    struct client_response r;
    (void)a;

    int rc = client_call(c, "POST", "/api/shutdown", "{}", 202, &r);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    client_response_free(&r);
    for (int waited = 0; waited < CLIENT_DOWN_WAIT_MS; waited += CLIENT_POLL_MS) {
        int fd = client_connect(c);
        if (fd < 0) {
            printf("hive on %s stopped\n", c->addr);
            return CLIENT_EXIT_OK;
        }
        close(fd);
        client_sleep_ms(CLIENT_POLL_MS);
    }
    fprintf(stderr, "hive: the hive on %s is still running after %d s\n", c->addr,
            CLIENT_DOWN_WAIT_MS / 1000);
    return CLIENT_EXIT_FAIL;
}

/* ---- hive status ----------------------------------------------------------- */

/* A duration for people: "-", "42s", "5m03s", "2h07m", "3d04h". */
static void client_duration(char *out, size_t cap, double seconds)
{
    long s = (long)seconds;

    if (seconds <= 0)
        snprintf(out, cap, "-");
    else if (s < 60)
        snprintf(out, cap, "%lds", s);
    else if (s < 3600)
        snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else
        snprintf(out, cap, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
}

/* Tasks done and queue depth of a running bot, from its own /status. */
static void client_bot_counts(const struct client *c, const char *id, char *tasks, char *queue,
                              size_t cap)
{
    struct client_response r;
    char *target = xasprintf("/bots/%s/status", id);

    snprintf(tasks, cap, "-");
    snprintf(queue, cap, "-");
    if (client_request(c, "GET", target, NULL, &r) == 0 && r.status == 200) {
        json_t *j = client_json(&r);
        json_t *q = json_object_get(j, "queue");
        if (json_is_integer(json_object_get(j, "tasks_processed")))
            snprintf(tasks, cap, "%lld",
                     (long long)json_integer_value(json_object_get(j, "tasks_processed")));
        if (json_is_object(q))
            snprintf(queue, cap, "%lld",
                     (long long)(json_integer_value(json_object_get(q, "realtime")) +
                                 json_integer_value(json_object_get(q, "file"))));
        json_decref(j);
    }
    client_response_free(&r);
    free(target);
}

/* The escape that colours STATE on a terminal ("" without colour). */
static const char *client_state_colour(const struct client *c, const char *state)
{
    if (!c->colour || !state)
        return "";
    if (strcmp(state, "running") == 0)
        return "\033[32m";
    if (strcmp(state, "fatal") == 0)
        return "\033[1;31m";
    if (strcmp(state, "starting") == 0 || strcmp(state, "backoff") == 0)
        return "\033[33m";
    return "\033[2m"; /* stopping, stopped */
}

/* One row of the status table. */
static void client_status_row(const struct client *c, json_t *bot, int idw)
{
    const char *id = json_get_str(bot, "id"), *state = json_get_str(bot, "state");
    const char *on = client_state_colour(c, state), *off = *on ? "\033[0m" : "";
    json_t *pid = json_object_get(bot, "pid");
    char pids[24] = "-", up[24], tasks[24], queue[24];

    if (json_is_integer(pid))
        snprintf(pids, sizeof pids, "%lld", (long long)json_integer_value(pid));
    client_duration(up, sizeof up, json_number_value(json_object_get(bot, "uptime_seconds")));
    if (state && strcmp(state, "running") == 0) {
        client_bot_counts(c, id, tasks, queue, sizeof tasks);
    } else {
        snprintf(tasks, sizeof tasks, "-");
        snprintf(queue, sizeof queue, "-");
    }
    printf("%-*s  %s%-8s%s  %7s  %5lld  %7s  %8lld  %6s  %6s  %s\n", idw, id ? id : "?", on,
           state ? state : "?", off, pids,
           (long long)json_integer_value(json_object_get(bot, "port")), up,
           (long long)json_integer_value(json_object_get(bot, "restarts")), tasks, queue,
           json_get_str(bot, "url") ? json_get_str(bot, "url") : "");
    const char *reason = json_get_str(bot, "reason");
    if (reason && *reason)
        printf("%-*s  reason: %s\n", idw, "", reason);
}

/* Print the table of GET /status (its "bots" already filtered). */
static void client_status_table(const struct client *c, json_t *status)
{
    json_t *hive = json_object_get(status, "hive"), *bots = json_object_get(status, "bots"), *bot;
    char up[24];
    size_t i;
    int idw = 2;

    client_duration(up, sizeof up, json_number_value(json_object_get(hive, "uptime_seconds")));
    printf("hive %s on %s (pid %lld, up %s): %lld of %lld bots running\n",
           json_get_str(hive, "name") ? json_get_str(hive, "name") : "?", c->addr,
           (long long)json_integer_value(json_object_get(hive, "pid")), up,
           (long long)json_integer_value(json_object_get(hive, "bots_running")),
           (long long)json_integer_value(json_object_get(hive, "bots_total")));
    json_array_foreach(bots, i, bot)
    {
        const char *id = json_get_str(bot, "id");
        if (id && (int)strlen(id) > idw)
            idw = (int)strlen(id);
    }
    printf("%-*s  %-8s  %7s  %5s  %7s  %8s  %6s  %6s  %s\n", idw, "ID", "STATE", "PID", "PORT",
           "UPTIME", "RESTARTS", "TASKS", "QUEUE", "URL");
    json_array_foreach(bots, i, bot) client_status_row(c, bot, idw);
}

/* The bot of STATUS called ID, or NULL. */
static json_t *client_status_bot(json_t *status, const char *id)
{
    json_t *bot;
    size_t i;
    json_array_foreach(json_object_get(status, "bots"), i, bot)
    {
        const char *b = json_get_str(bot, "id");
        if (b && strcmp(b, id) == 0)
            return bot;
    }
    return NULL;
}

/* Keep only the bots named in A (all when none are); *ALL_RUNNING says
 * whether every kept bot is running. -1 after naming an unknown bot. */
static int client_status_filter(json_t *status, const struct client_args *a, bool *all_running)
{
    json_t *kept = json_array(), *bot;
    size_t i;
    int rc = 0;

    if (a->n_rest == 0)
        json_array_extend(kept, json_object_get(status, "bots"));
    for (int k = 0; k < a->n_rest; k++) {
        if ((bot = client_status_bot(status, a->rest[k])))
            json_array_append(kept, bot);
        else {
            fprintf(stderr, "hive: unknown bot %s\n", a->rest[k]);
            rc = -1;
        }
    }
    *all_running = rc == 0;
    json_array_foreach(kept, i, bot)
    {
        const char *state = json_get_str(bot, "state");
        *all_running &= state && strcmp(state, "running") == 0;
    }
    json_object_set_new(status, "bots", kept);
    return rc;
}

/* One GET /status, printed; the exit code (0 all listed bots running, 3
 * not). *GONE is set when no hive answered. */
static int client_status_once(struct client *c, struct client_args *a, bool *gone)
{
    struct client_response r;
    bool running = false;

    int rc = client_request(c, "GET", "/status", NULL, &r);
    *gone = rc < 0;
    if (rc == -1)
        return client_not_running(c);
    if (rc < 0 || r.status != 200) {
        if (rc == 0)
            client_print_error(&r);
        else
            fprintf(stderr, "hive: GET /status: the hive on %s did not answer properly\n", c->addr);
        client_response_free(&r);
        return CLIENT_EXIT_FAIL;
    }
    json_t *status = client_json(&r);
    client_response_free(&r);
    if (!json_is_object(status)) {
        fprintf(stderr, "hive: GET /status: invalid JSON\n");
        json_decref(status);
        return CLIENT_EXIT_FAIL;
    }
    client_status_filter(status, a, &running);
    if (a->json) {
        char *text = json_dump_compact(status, NULL);
        puts(text);
        free(text);
    } else {
        client_status_table(c, status);
    }
    fflush(stdout);
    json_decref(status);
    return running ? CLIENT_EXIT_OK : CLIENT_EXIT_INACTIVE;
}

/* --watch: redraw every second (in place on a terminal) until the hive goes
 * away; the exit code is that of the last table shown. */
static int client_status_watch(struct client *c, struct client_args *a)
{
    bool tty = isatty(STDOUT_FILENO), gone = false;
    int rc = CLIENT_EXIT_INACTIVE;

    for (;;) {
        if (tty && !a->json)
            fputs("\033[H\033[2J", stdout); /* home, clear */
        int now = client_status_once(c, a, &gone);
        if (gone || ferror(stdout))
            break;
        rc = now;
        if (!tty && !a->json)
            putchar('\n');
        fflush(stdout);
        client_sleep_ms(CLIENT_WATCH_MS);
    }
    if (gone)
        fprintf(stderr, "hive: the hive on %s went away\n", c->addr);
    return gone ? CLIENT_EXIT_INACTIVE : rc;
}

/* hive status: exit 0 when every listed bot is running, 3 otherwise (as
 * `systemctl is-active`), 1 when no hive answers. */
static int client_status(struct client *c, struct client_args *a)
{
    bool gone;
    const char *no_colour = getenv("NO_COLOR");
    c->colour = isatty(STDOUT_FILENO) && !(no_colour && *no_colour);
    if (a->watch)
        return client_status_watch(c, a);
    return client_status_once(c, a, &gone);
}

/* ---- hive send --wait: a WebSocket client ---------------------------------- */

/* One WebSocket session of `send --wait`. */
struct client_ws {
    const struct client *c;
    const char *bot;
    int fd;
    char *pending; /* bytes that came with the handshake answer */
    size_t pending_len, pending_off;
    char task_id[80];
    bool done, failed;
    size_t printed;
    char last; /* the last byte printed */
};

/* The handshake answer being parsed. */
struct client_ws_answer {
    struct client_response r;
    char field[32]; /* the header name being read (truncated) */
    size_t field_len;
    bool in_value;
    char accept[40]; /* Sec-WebSocket-Accept */
    size_t accept_len;
    bool head_done;
};

/* Append up to CAP-1 bytes in total to a NUL-terminated BUF of *LEN. */
static void client_append(char *buf, size_t *len, size_t cap, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    n = n > room ? room : n;
    memcpy(buf + *len, at, n);
    *len += n;
    buf[*len] = '\0';
}

/* Handshake parser: a piece of a header name. */
static int client_ws_on_field(http_parser *p, const char *at, size_t len)
{
    struct client_ws_answer *h = p->data;
    if (h->in_value) {
        h->field_len = 0;
        h->in_value = false;
    }
    client_append(h->field, &h->field_len, sizeof h->field, at, len);
    return 0;
}

/* Handshake parser: a piece of a header value (Sec-WebSocket-Accept kept). */
static int client_ws_on_value(http_parser *p, const char *at, size_t len)
{
    struct client_ws_answer *h = p->data;
    h->in_value = true;
    if (strcasecmp(h->field, "Sec-WebSocket-Accept") == 0)
        client_append(h->accept, &h->accept_len, sizeof h->accept, at, len);
    return 0;
}

/* Handshake parser: the head is in. */
static int client_ws_on_headers_complete(http_parser *p)
{
    struct client_ws_answer *h = p->data;
    h->r.status = p->status_code;
    h->head_done = true;
    return 0;
}

/* Handshake parser: the body of a refusal. */
static int client_ws_on_body(http_parser *p, const char *at, size_t len)
{
    struct client_ws_answer *h = p->data;
    client_response_append(&h->r, at, len);
    return 0;
}

/* Handshake parser: a refusal is complete. */
static int client_ws_on_message_complete(http_parser *p)
{
    struct client_ws_answer *h = p->data;
    h->r.done = true;
    return 0;
}

static const http_parser_settings client_ws_settings = {
    .on_header_field = client_ws_on_field,
    .on_header_value = client_ws_on_value,
    .on_headers_complete = client_ws_on_headers_complete,
    .on_body = client_ws_on_body,
    .on_message_complete = client_ws_on_message_complete,
};

/* A fresh Sec-WebSocket-Key (16 random bytes, base64). */
static void client_ws_key(char key[25])
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)rand();
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
}

/* Read the handshake answer; keeps what follows the head for wslay. 0 when
 * the hive answered 101 (H->r holds any other answer). */
static int client_ws_read_answer(struct client_ws *ws, struct client_ws_answer *h)
{
    http_parser parser;
    char buf[16384];

    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = h;
    for (;;) {
        ssize_t n = recv(ws->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        size_t used = http_parser_execute(&parser, &client_ws_settings, buf, (size_t)n);
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK)
            return -1;
        if (parser.upgrade && h->r.status == 101) {
            ws->pending_len = (size_t)n - used;
            ws->pending = xmalloc(ws->pending_len + 1);
            memcpy(ws->pending, buf + used, ws->pending_len);
            return 0;
        }
        if (h->r.done || n == 0)
            return h->head_done ? 1 : -1;
    }
}

/* Open /bots/BOT/ws; 0, or the exit code after printing why not. */
static int client_ws_open(const struct client *c, const char *bot, struct client_ws *ws)
{
    struct client_ws_answer h;
    char key[25], expect[29];

    memset(&h, 0, sizeof h);
    ws->fd = client_connect(c);
    if (ws->fd < 0)
        return client_not_running(c);
    client_ws_key(key);
    char *auth = c->token ? xasprintf("Authorization: Bearer %s\r\n", c->token) : xstrdup("");
    char *req = xasprintf("GET /bots/%s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\nUser-Agent: hive/%s\r\n%s\r\n",
                          bot, c->addr, key, HIVE_VERSION, auth);
    int rc = client_send_all(ws->fd, req, strlen(req)) < 0 ? -1 : client_ws_read_answer(ws, &h);
    free(auth);
    free(req);
    ws_accept_key(key, expect);
    if (rc == 0 && strcmp(h.accept, expect) != 0)
        rc = -1;
    if (rc == 1)
        client_print_error(&h.r);
    else if (rc < 0)
        fprintf(stderr, "hive: WebSocket handshake with %s failed\n", c->addr);
    client_response_free(&h.r);
    return rc == 0 ? CLIENT_EXIT_OK : CLIENT_EXIT_FAIL;
}

/* Print LEN bytes of task output. */
static void client_ws_print(struct client_ws *ws, const char *data, size_t len)
{
    if (len == 0)
        return;
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    ws->printed += len;
    ws->last = data[len - 1];
}

/* True when message M is about our task. */
static bool client_ws_ours(const struct client_ws *ws, json_t *m)
{
    const char *id = json_get_str(m, "task_id");
    return !ws->task_id[0] || !id || strcmp(id, ws->task_id) == 0;
}

/* The final response of our task. */
static void client_ws_response(struct client_ws *ws, json_t *m)
{
    json_t *content = json_object_get(m, "content");
    const char *error = json_get_str(m, "error");

    if (ws->printed == 0 && json_is_string(content))
        client_ws_print(ws, json_string_value(content), json_string_length(content));
    if (ws->printed > 0 && ws->last != '\n')
        client_ws_print(ws, "\n", 1);
    ws->failed = !json_is_true(json_object_get(m, "success"));
    if (ws->failed)
        fprintf(stderr, "hive: task %s failed%s%s\n", ws->task_id, error ? ": " : "",
                error ? error : "");
    ws->done = true;
}

/* One text message from the worker. */
static void client_ws_message(struct client_ws *ws, const uint8_t *data, size_t len)
{
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_get_str(m, "type");

    if (!type) {
        json_decref(m);
        return;
    }
    if (strcmp(type, "ack") == 0 && json_get_str(m, "task_id")) {
        snprintf(ws->task_id, sizeof ws->task_id, "%s", json_get_str(m, "task_id"));
        fprintf(stderr, "hive: task %s queued\n", ws->task_id);
    } else if (strcmp(type, "chunk") == 0 && client_ws_ours(ws, m)) {
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content))
            client_ws_print(ws, json_string_value(content), json_string_length(content));
    } else if (strcmp(type, "response") == 0 && client_ws_ours(ws, m)) {
        client_ws_response(ws, m);
    } else if (strcmp(type, "error") == 0) {
        const char *msg = json_get_str(m, "message");
        fprintf(stderr, "hive: %s\n", msg ? msg : "error");
        ws->failed = ws->done = true;
    }
    json_decref(m);
}

/* wslay: bytes from the hive (those that came with the handshake first). */
static ssize_t client_ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                                 void *arg)
{
    struct client_ws *ws = arg;
    (void)flags;
    if (ws->pending_off < ws->pending_len) {
        size_t n = ws->pending_len - ws->pending_off;
        n = n < len ? n : len;
        memcpy(buf, ws->pending + ws->pending_off, n);
        ws->pending_off += n;
        return (ssize_t)n;
    }
    ssize_t n;
    while ((n = recv(ws->fd, buf, len, 0)) < 0 && errno == EINTR)
        ;
    if (n > 0)
        return n;
    wslay_event_set_error(ctx, n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                                   ? WSLAY_ERR_WOULDBLOCK
                                   : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* wslay: bytes to the hive. */
static ssize_t client_ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                                 int flags, void *arg)
{
    struct client_ws *ws = arg;
    ssize_t n;
    (void)flags;
    while ((n = send(ws->fd, data, len, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n >= 0)
        return n;
    wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK
                                   ? WSLAY_ERR_WOULDBLOCK
                                   : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* wslay: a masking key for a client frame. */
static int client_ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *arg)
{
    (void)ctx;
    (void)arg;
    if (getrandom(buf, len, 0) != (ssize_t)len)
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
    return 0;
}

/* wslay: a complete message; text ones are ours to read. */
static void client_ws_msg_cb(wslay_event_context_ptr ctx,
                             const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME)
        client_ws_message(user, arg->msg, arg->msg_length);
}

/* Finish from the task's state in RESULT (GET /api/task/<id>), for when the
 * WebSocket did not bring the response. */
static void client_wait_result(struct client_ws *ws, json_t *task)
{
    json_t *result = json_object_get(task, "result");
    json_t *m =
        json_pack("{s:O?, s:O?, s:O?}", "content", json_object_get(result, "output"), "success",
                  json_object_get(result, "success"), "error", json_object_get(result, "error"));
    client_ws_response(ws, m);
    json_decref(m);
}

/* Ask the hive how our task is (the WebSocket may be stuck): finish on a
 * final state, on a bot that is no longer running, or on a lost hive. */
static void client_wait_check(struct client_ws *ws)
{
    struct client_response r;
    char *target = xasprintf("/bots/%s/api/task/%s", ws->bot, ws->task_id);
    int rc = client_request(ws->c, "GET", target, NULL, &r);
    free(target);
    if (rc < 0) {
        fprintf(stderr, "hive: lost the hive on %s while waiting for task %s\n", ws->c->addr,
                ws->task_id);
        ws->failed = ws->done = true;
    } else if (r.status == 503 || r.status == 502) {
        client_print_error(&r);
        fprintf(stderr, "hive: %s is not running; task %s was not answered\n", ws->bot,
                ws->task_id);
        ws->failed = ws->done = true;
    } else if (r.status == 200) {
        json_t *task = client_json(&r);
        const char *state = json_get_str(task, "state");
        if (state && strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)
            client_wait_result(ws, task);
        json_decref(task);
    }
    client_response_free(&r);
}

/* Run the session until our task's response, the end of the session, or a
 * check that finds the task over or the hive gone: never for ever. */
static void client_ws_loop(struct client_ws *ws, wslay_event_context_ptr ctx)
{
    int flags = fcntl(ws->fd, F_GETFL);
    int64_t next_check = util_mono_ms() + CLIENT_WAIT_CHECK_MS;
    fcntl(ws->fd, F_SETFL, flags | O_NONBLOCK);
    if (ws->pending_len > 0 && wslay_event_recv(ctx) != 0)
        return;
    while (!ws->done && (wslay_event_want_read(ctx) || wslay_event_want_write(ctx))) {
        struct pollfd pfd = {ws->fd, 0, 0};
        int64_t left = next_check - util_mono_ms();
        pfd.events = (short)((wslay_event_want_read(ctx) ? POLLIN : 0) |
                             (wslay_event_want_write(ctx) ? POLLOUT : 0));
        int n = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (n < 0 && errno != EINTR)
            return;
        if (n <= 0) {
            if (util_mono_ms() >= next_check) {
                client_wait_check(ws);
                next_check = util_mono_ms() + CLIENT_WAIT_CHECK_MS;
            }
            continue;
        }
        if ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) && wslay_event_recv(ctx) != 0)
            return;
        if ((pfd.revents & POLLOUT) && wslay_event_send(ctx) != 0)
            return;
    }
}

/* Queue the task message with our own task id, so the task can be asked
 * after (client_wait_check) even before its ack arrives. */
static void client_ws_queue_task(struct client_ws *ws, wslay_event_context_ptr ctx,
                                 const char *text)
{
    char hex[9];
    size_t len;
    util_random_hex(hex, 8);
    snprintf(ws->task_id, sizeof ws->task_id, "WS-%s", hex);
    json_t *msg =
        json_pack("{s:s, s:s, s:s}", "type", "task", "command", text, "task_id", ws->task_id);
    char *data = json_dump_compact(msg, &len);
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)data, len};
    wslay_event_queue_msg(ctx, &m); /* copies the data */
    json_decref(msg);
    free(data);
}

/* `send --wait`: the task over a WebSocket, its output streamed to stdout. */
static int client_send_wait(const struct client *c, const char *bot, const char *text)
{
    struct client_ws ws = {.c = c, .bot = bot, .fd = -1};
    struct wslay_event_callbacks cbs = {.recv_callback = client_ws_recv_cb,
                                        .send_callback = client_ws_send_cb,
                                        .genmask_callback = client_ws_genmask_cb,
                                        .on_msg_recv_callback = client_ws_msg_cb};
    wslay_event_context_ptr ctx;

    int rc = client_ws_open(c, bot, &ws);
    if (rc != CLIENT_EXIT_OK || wslay_event_context_client_init(&ctx, &cbs, &ws) != 0) {
        if (ws.fd >= 0)
            close(ws.fd);
        free(ws.pending);
        return CLIENT_EXIT_FAIL;
    }
    client_ws_queue_task(&ws, ctx, text);
    client_ws_loop(&ws, ctx);
    if (!ws.done) /* say what became of the task, if the hive still can */
        client_wait_check(&ws);
    if (!ws.done)
        fprintf(stderr,
                "hive: the connection to %s closed before task %s finished (the bot stopped "
                "or the hive went away)\n",
                bot, ws.task_id);
    wslay_event_context_free(ctx);
    free(ws.pending);
    close(ws.fd);
    return ws.done && !ws.failed ? CLIENT_EXIT_OK : CLIENT_EXIT_FAIL;
}

/* ---- hive send ------------------------------------------------------------- */

/* The words of the task joined by spaces. */
static char *client_join(char **words, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(words[i]) + 1;
    char *out = xmalloc(len), *p = out;
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i ? " " : "", words[i]);
    *p = '\0';
    return out;
}

/* `send BOT -`: the task is all of stdin (its final newlines dropped);
 * NULL after saying why. */
static char *client_read_stdin(void)
{
    struct util_buf b = {0};
    char buf[65536];
    ssize_t n;
    while ((n = read(STDIN_FILENO, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || b.len + (size_t)n > CLIENT_STDIN_MAX) {
            fprintf(stderr, "hive: %s\n",
                    n < 0 ? strerror(errno) : "the task on stdin is over 1 MiB");
            free(b.data);
            return NULL;
        }
        util_buf_add(&b, buf, (size_t)n);
    }
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        fprintf(stderr, "hive: the task on stdin is empty\n");
        free(b.data);
        return NULL;
    }
    return b.data;
}

/* POST /bots/BOT/api/task and print the task id (or stream with --wait). */
static int client_send(struct client *c, struct client_args *a)
{
    const char *bot = a->rest[0];
    bool from_stdin = a->n_rest == 2 && strcmp(a->rest[1], "-") == 0;
    char *text = from_stdin ? client_read_stdin() : client_join(a->rest + 1, a->n_rest - 1);
    int rc;

    if (!text)
        return CLIENT_EXIT_FAIL;
    if (a->wait) {
        rc = client_send_wait(c, bot, text);
        free(text);
        return rc;
    }
    json_t *body = json_pack("{s:s}", "command", text);
    char *json = json_dump_compact(body, NULL);
    char *target = xasprintf("/bots/%s/api/task", bot);
    struct client_response r;
    rc = client_call(c, "POST", target, json, 202, &r);
    if (rc == CLIENT_EXIT_OK) {
        json_t *j = client_json(&r);
        printf("%s\n", json_get_str(j, "task_id") ? json_get_str(j, "task_id") : r.body);
        json_decref(j);
        client_response_free(&r);
    }
    json_decref(body);
    free(json);
    free(target);
    free(text);
    return rc;
}

/* ---- control --------------------------------------------------------------- */

/* restart|stop|start go to the supervisor (202); pause|resume|interrupt
 * through its proxy to the worker itself (200). */
static int client_control_one(struct client *c, const char *action, const char *bot)
{
    struct client_response r;
    bool worker = strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0 ||
                  strcmp(action, "interrupt") == 0;
    char *target = worker ? xasprintf("/bots/%s/api/%s", bot, action)
                          : xasprintf("/api/bots/%s/%s", bot, action);

    int rc = client_call(c, "POST", target, "{}", worker ? 200 : 202, &r);
    if (rc == CLIENT_EXIT_OK) {
        json_t *j = worker ? client_json(&r) : NULL;
        const char *said = json_get_str(j, "status");
        if (said && strcmp(action, "interrupt") == 0 && strcmp(said, "idle") == 0)
            printf("%s: idle, nothing to interrupt\n", bot);
        else if (said)
            printf("%s: %s\n", bot, said);
        else
            printf("%s: %s accepted\n", bot, action);
        json_decref(j);
        client_response_free(&r);
    }
    free(target);
    return rc;
}

/* The ids of every bot of the running hive (for `all`); NULL after saying why. */
static json_t *client_all_ids(struct client *c)
{
    struct client_response r;
    json_t *ids = json_array(), *bot;
    size_t i;

    if (client_call(c, "GET", "/status", NULL, 200, &r) != CLIENT_EXIT_OK) {
        json_decref(ids);
        return NULL;
    }
    json_t *status = client_json(&r);
    json_array_foreach(json_object_get(status, "bots"), i, bot)
    {
        if (json_get_str(bot, "id"))
            json_array_append_new(ids, json_string(json_get_str(bot, "id")));
    }
    json_decref(status);
    client_response_free(&r);
    return ids;
}

/* hive ACTION BOT...|all: each bot in turn; 0 when every one was accepted. */
static int client_control(struct client *c, const char *action, struct client_args *a)
{
    int rc = CLIENT_EXIT_OK;
    if (a->n_rest == 1 && strcmp(a->rest[0], "all") == 0) {
        json_t *ids = client_all_ids(c), *id;
        size_t i;
        if (!ids)
            return CLIENT_EXIT_FAIL;
        json_array_foreach(ids, i, id)
        {
            if (client_control_one(c, action, json_string_value(id)) != CLIENT_EXIT_OK)
                rc = CLIENT_EXIT_FAIL;
        }
        json_decref(ids);
        return rc;
    }
    for (int i = 0; i < a->n_rest; i++) {
        int one = client_control_one(c, action, a->rest[i]);
        if (one == CLIENT_EXIT_OK)
            continue;
        rc = CLIENT_EXIT_FAIL;
        int fd = i == 0 ? client_connect(c) : 0;
        if (fd < 0) /* no hive: say it once */
            break;
        if (i == 0)
            close(fd);
    }
    return rc;
}

/* hive reload: 0, or 78 with the roster's errors. */
static int client_reload(struct client *c, struct client_args *a)
{
    struct client_response r;
    (void)a;

    int rc = client_request(c, "POST", "/api/reload", "{}", &r);
    if (rc == -1)
        return client_not_running(c);
    if (rc == 0 && r.status == 202) {
        printf("reload accepted: %s\n", c->roster->path);
        client_response_free(&r);
        return CLIENT_EXIT_OK;
    }
    if (rc == 0)
        client_print_error(&r);
    else
        fprintf(stderr, "hive: POST /api/reload: the hive did not answer properly\n");
    int code = rc == 0 && r.status == 400 ? CLIENT_EXIT_CONFIG : CLIENT_EXIT_FAIL;
    client_response_free(&r);
    return code;
}

/* ---- hive logs ------------------------------------------------------------- */

/* True when ID is a bot of the roster. */
static bool client_roster_has(const struct client *c, const char *id)
{
    for (size_t i = 0; i < c->roster->n_bots; i++)
        if (strcmp(c->roster->bots[i].id, id) == 0)
            return true;
    return false;
}

/* hive logs [BOT...]: no BOT = every bot of the roster, prefixed. Reads the
 * files, so it works whether the hive runs or not. */
static int client_logs(struct client *c, struct client_args *a)
{
    struct logs_opts o = {.tail = a->tail, .since = -INFINITY, .follow = a->follow};
    char *dir = xasprintf("%s/.deia/hive/logs", c->roster->work_dir);
    int rc;

    if (a->since && logs_parse_since(a->since, (double)util_wall_ns() / 1e9, &o.since) < 0) {
        fprintf(stderr, "hive logs: bad --since '%s' (e.g. 10m, 1h30m, 2026-12-03T22:00:00Z)\n",
                a->since);
        free(dir);
        return CLIENT_EXIT_USAGE;
    }
    o.dir = dir;
    o.n_ids = a->n_rest ? (size_t)a->n_rest : c->roster->n_bots;
    o.ids = xcalloc(o.n_ids, sizeof *o.ids);
    o.prefix = a->n_rest != 1 && !a->no_prefix;
    for (size_t i = 0; i < o.n_ids; i++) {
        o.ids[i] = a->n_rest ? a->rest[i] : c->roster->bots[i].id;
        char *path = xasprintf("%s/%s.log", dir, o.ids[i]);
        if (a->n_rest && !client_roster_has(c, o.ids[i]) && access(path, F_OK) < 0) {
            fprintf(stderr, "hive: unknown bot %s (not in %s)\n", o.ids[i], c->roster->path);
            free(path);
            free(o.ids);
            free(dir);
            return CLIENT_EXIT_FAIL;
        }
        free(path);
    }
    rc = logs_run(&o);
    free(o.ids);
    free(dir);
    return rc;
}

/* ---- the command line ------------------------------------------------------ */

/* One subcommand: its name, positional arguments and handler. */
struct client_command {
    const char *name;
    const char *usage;
    int min_args, max_args; /* -1: no maximum */
    int (*run)(struct client *c, struct client_args *a);
};

/* hive restart BOT...|all. */
static int client_restart(struct client *c, struct client_args *a)
{
    return client_control(c, "restart", a);
}

/* hive stop BOT...|all. */
static int client_stop(struct client *c, struct client_args *a)
{
    return client_control(c, "stop", a);
}

/* hive start BOT...|all. */
static int client_start(struct client *c, struct client_args *a)
{
    return client_control(c, "start", a);
}

/* hive pause BOT...|all. */
static int client_pause(struct client *c, struct client_args *a)
{
    return client_control(c, "pause", a);
}

/* hive resume BOT...|all. */
static int client_resume(struct client *c, struct client_args *a)
{
    return client_control(c, "resume", a);
}

/* hive interrupt BOT...|all. */
static int client_interrupt(struct client *c, struct client_args *a)
{
    return client_control(c, "interrupt", a);
}

static const struct client_command client_commands[] = {
    {"down", "hive down [-f hive.yaml]", 0, 0, client_down},
    {"status", "hive status [-f hive.yaml] [BOT...] [--json] [--watch]", 0, -1, client_status},
    {"send", "hive send [-f hive.yaml] [--wait] BOT TEXT...|-", 2, -1, client_send},
    {"restart", "hive restart [-f hive.yaml] BOT...|all", 1, -1, client_restart},
    {"stop", "hive stop [-f hive.yaml] BOT...|all", 1, -1, client_stop},
    {"start", "hive start [-f hive.yaml] BOT...|all", 1, -1, client_start},
    {"pause", "hive pause [-f hive.yaml] BOT...|all", 1, -1, client_pause},
    {"resume", "hive resume [-f hive.yaml] BOT...|all", 1, -1, client_resume},
    {"interrupt", "hive interrupt [-f hive.yaml] BOT...|all", 1, -1, client_interrupt},
    {"reload", "hive reload [-f hive.yaml]", 0, 0, client_reload},
    {"logs",
     "hive logs [--file hive.yaml] [BOT...] [-f|--follow] [-n|--tail N] [--since TIME] "
     "[--no-prefix]",
     0, -1, client_logs},
};

/* The subcommand named NAME, or NULL. */
static const struct client_command *client_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof client_commands / sizeof client_commands[0]; i++)
        if (strcmp(client_commands[i].name, name) == 0)
            return &client_commands[i];
    return NULL;
}

/* Print CMD's usage; returns 2. */
static int client_usage(const struct client_command *cmd, const char *problem)
{
    if (problem)
        fprintf(stderr, "hive %s: %s\n", cmd->name, problem);
    fprintf(stderr, "usage: %s\n", cmd->usage);
    return CLIENT_EXIT_USAGE;
}

/* -n N / --tail N: a count, or "all"; -1 when neither. */
static int client_parse_tail(const char *s, long *out)
{
    char *end;
    if (strcmp(s, "all") == 0) {
        *out = -1;
        return 0;
    }
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* The option CH (from getopt_long) of command NAME into A; -1 when the
 * command has no such option. For logs -f means follow (the file is
 * --file); everywhere else -f is the file. */
static int client_parse_one(const char *name, int ch, struct client_args *a)
{
    bool logs = strcmp(name, "logs") == 0;
    if (ch == 'F' || (ch == 'f' && !logs))
        a->file = optarg;
    else if ((ch == 'f' || ch == 'l') && logs)
        a->follow = true;
    else if (ch == 'n' && logs)
        return client_parse_tail(optarg, &a->tail);
    else if (ch == 's' && logs)
        a->since = optarg;
    else if (ch == 'p' && logs)
        a->no_prefix = true;
    else if (ch == 'j' && strcmp(name, "status") == 0)
        a->json = true;
    else if (ch == 'W' && strcmp(name, "status") == 0)
        a->watch = true;
    else if (ch == 'w' && strcmp(name, "send") == 0)
        a->wait = true;
    else
        return -1;
    return 0;
}

/* Parse the options of CMD (getopt_long: "--opt value" and "--opt=value").
 * 0, 1 for --help, or -1 on a usage error. */
static int client_parse(const struct client_command *cmd, int argc, char **argv,
                        struct client_args *a)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'F'},  {"json", no_argument, NULL, 'j'},
        {"watch", no_argument, NULL, 'W'},       {"wait", no_argument, NULL, 'w'},
        {"follow", no_argument, NULL, 'l'},      {"tail", required_argument, NULL, 'n'},
        {"since", required_argument, NULL, 's'}, {"no-prefix", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    bool logs = strcmp(cmd->name, "logs") == 0;
    int ch;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, logs ? ":fn:h" : ":f:h", opts, NULL)) != -1) {
        if (ch == 'h')
            return 1;
        if (client_parse_one(cmd->name, ch, a) < 0)
            return -1;
    }
    a->rest = argv + optind;
    a->n_rest = argc - optind;
    return 0;
}

/* Check the positional arguments of CMD; NULL or the problem. */
static const char *client_check_args(const struct client_command *cmd, const struct client_args *a)
{
    bool all_ids = strcmp(cmd->name, "send") != 0; /* send: BOT then the text */
    if (a->n_rest < cmd->min_args)
        return "missing arguments";
    if (cmd->max_args >= 0 && a->n_rest > cmd->max_args)
        return "too many arguments";
    for (int i = 0; i < a->n_rest && (all_ids || i == 0); i++)
        if (!util_id_valid(a->rest[i]))
            return "invalid bot id";
    if (cmd->min_args > 0 && a->n_rest > 1 && strcmp(cmd->name, "send") != 0)
        for (int i = 0; i < a->n_rest; i++)
            if (strcmp(a->rest[i], "all") == 0)
                return "`all` stands alone";
    return NULL;
}

/* Run subcommand ARGV[0] with its arguments; returns the exit code. */
int client_main(int argc, char **argv)
{
    const struct client_command *cmd = argc > 0 ? client_command_find(argv[0]) : NULL;
    struct client_args a = {.file = "hive.yaml", .tail = -1};
    struct client c = {0};

    if (!cmd) {
        fprintf(stderr, "hive: unknown command '%s' (see hive --help)\n", argc > 0 ? argv[0] : "");
        return CLIENT_EXIT_USAGE;
    }
    int parsed = client_parse(cmd, argc, argv, &a);
    if (parsed != 0) {
        if (parsed > 0) {
            printf("usage: %s\n", cmd->usage);
            return CLIENT_EXIT_OK;
        }
        return client_usage(cmd, "invalid option");
    }
    const char *problem = client_check_args(cmd, &a);
    if (problem)
        return client_usage(cmd, problem);
    int rc = client_load(&c, a.file);
    if (rc == CLIENT_EXIT_OK)
        rc = cmd->run(&c, &a);
    roster_free(c.roster);
    return rc;
}
