/*
 * wait: `hive send --wait` — the task sent over the bot's WebSocket through
 * the supervisor (handshake here, framing by wslay), its output streamed to
 * stdout as the adapter writes it, and the exit code its outcome. The wait
 * ends on every outcome: the task's response (success, failure, cancel,
 * interrupt), the connection closing (the bot stopped, the hive went away),
 * or a check — every WAIT_CHECK_MS the task is asked after over HTTP, so a
 * hive that stops answering (its requests time out) or a response that never
 * comes back on the socket ends it too. The task id is chosen here so the
 * check works before the ack.
 */
#include "cli/wait.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "common/json.h"
#include "common/util.h"
#include "common/ws.h"

#define WAIT_CHECK_MS 5000 /* ask after the task this often */

/* One WebSocket session of `send --wait`. */
struct wait_session {
    const struct api *c;
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
struct wait_answer {
    struct api_response r;
    char field[32]; /* the header name being read (truncated) */
    size_t field_len;
    bool in_value;
    char accept[40]; /* Sec-WebSocket-Accept */
    size_t accept_len;
    bool head_done;
};

/* Append up to CAP-1 bytes in total to a NUL-terminated BUF of *LEN. */
static void wait_append(char *buf, size_t *len, size_t cap, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    n = n > room ? room : n;
    memcpy(buf + *len, at, n);
    *len += n;
    buf[*len] = '\0';
}

/* Handshake parser: a piece of a header name. */
static int wait_on_field(http_parser *p, const char *at, size_t len)
{
    struct wait_answer *h = p->data;
    if (h->in_value) {
        h->field_len = 0;
        h->in_value = false;
    }
    wait_append(h->field, &h->field_len, sizeof h->field, at, len);
    return 0;
}

/* Handshake parser: a piece of a header value (Sec-WebSocket-Accept kept). */
static int wait_on_value(http_parser *p, const char *at, size_t len)
{
    struct wait_answer *h = p->data;
    h->in_value = true;
    if (strcasecmp(h->field, "Sec-WebSocket-Accept") == 0)
        wait_append(h->accept, &h->accept_len, sizeof h->accept, at, len);
    return 0;
}

/* Handshake parser: the head is in. */
static int wait_on_headers_complete(http_parser *p)
{
    struct wait_answer *h = p->data;
    h->r.status = p->status_code;
    h->head_done = true;
    return 0;
}

/* Handshake parser: the body of a refusal. */
static int wait_on_body(http_parser *p, const char *at, size_t len)
{
    struct wait_answer *h = p->data;
    api_response_append(&h->r, at, len);
    return 0;
}

/* Handshake parser: a refusal is complete. */
static int wait_on_message_complete(http_parser *p)
{
    struct wait_answer *h = p->data;
    h->r.done = true;
    return 0;
}

static const http_parser_settings wait_settings = {
    .on_header_field = wait_on_field,
    .on_header_value = wait_on_value,
    .on_headers_complete = wait_on_headers_complete,
    .on_body = wait_on_body,
    .on_message_complete = wait_on_message_complete,
};

/* A fresh Sec-WebSocket-Key (16 random bytes, base64). */
static void wait_key(char key[25])
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)rand();
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
}

/* Read the handshake answer; keeps what follows the head for wslay. 0 when
 * the hive answered 101 (H->r holds any other answer). */
static int wait_read_answer(struct wait_session *ws, struct wait_answer *h)
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
        size_t used = http_parser_execute(&parser, &wait_settings, buf, (size_t)n);
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
static int wait_open(const struct api *c, const char *bot, struct wait_session *ws)
{
    struct wait_answer h;
    char key[25], expect[29];

    memset(&h, 0, sizeof h);
    ws->fd = api_connect(c);
    if (ws->fd < 0)
        return api_not_running(c);
    wait_key(key);
    char *auth = c->token ? xasprintf("Authorization: Bearer %s\r\n", c->token) : xstrdup("");
    char *req = xasprintf("GET /bots/%s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\nUser-Agent: hive/%s\r\n%s\r\n",
                          bot, c->addr, key, HIVE_VERSION, auth);
    int rc = api_send_all(ws->fd, req, strlen(req)) < 0 ? -1 : wait_read_answer(ws, &h);
    free(auth);
    free(req);
    ws_accept_key(key, expect);
    if (rc == 0 && strcmp(h.accept, expect) != 0)
        rc = -1;
    if (rc == 1)
        api_print_error(&h.r);
    else if (rc < 0)
        fprintf(stderr, "hive: WebSocket handshake with %s failed\n", c->addr);
    api_response_free(&h.r);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Print LEN bytes of task output. */
static void wait_print(struct wait_session *ws, const char *data, size_t len)
{
    if (len == 0)
        return;
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    ws->printed += len;
    ws->last = data[len - 1];
}

/* True when message M is about our task. */
static bool wait_ours(const struct wait_session *ws, json_t *m)
{
    const char *id = json_get_str(m, "task_id");
    return !ws->task_id[0] || !id || strcmp(id, ws->task_id) == 0;
}

/* The final response of our task. */
static void wait_response(struct wait_session *ws, json_t *m)
{
    json_t *content = json_object_get(m, "content");
    const char *error = json_get_str(m, "error");

    if (ws->printed == 0 && json_is_string(content))
        wait_print(ws, json_string_value(content), json_string_length(content));
    if (ws->printed > 0 && ws->last != '\n')
        wait_print(ws, "\n", 1);
    ws->failed = !json_is_true(json_object_get(m, "success"));
    if (ws->failed)
        fprintf(stderr, "hive: task %s failed%s%s\n", ws->task_id, error ? ": " : "",
                error ? error : "");
    ws->done = true;
}

/* One text message from the worker. */
static void wait_message(struct wait_session *ws, const uint8_t *data, size_t len)
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
    } else if (strcmp(type, "chunk") == 0 && wait_ours(ws, m)) {
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content))
            wait_print(ws, json_string_value(content), json_string_length(content));
    } else if (strcmp(type, "response") == 0 && wait_ours(ws, m)) {
        wait_response(ws, m);
    } else if (strcmp(type, "error") == 0) {
        const char *msg = json_get_str(m, "message");
        fprintf(stderr, "hive: %s\n", msg ? msg : "error");
        ws->failed = ws->done = true;
    }
    json_decref(m);
}

/* wslay: bytes from the hive (those that came with the handshake first). */
static ssize_t wait_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                            void *arg)
{
    struct wait_session *ws = arg;
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
static ssize_t wait_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                            void *arg)
{
    struct wait_session *ws = arg;
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
static int wait_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *arg)
{
    (void)ctx;
    (void)arg;
    if (getrandom(buf, len, 0) != (ssize_t)len)
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
    return 0;
}

/* wslay: a complete message; text ones are ours to read. */
static void wait_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user)
{
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME)
        wait_message(user, arg->msg, arg->msg_length);
}

/* Finish from the task's state in RESULT (GET /api/task/<id>), for when the
 * WebSocket did not bring the response. */
static void wait_result(struct wait_session *ws, json_t *task)
{
    json_t *result = json_object_get(task, "result");
    json_t *m =
        json_pack("{s:O?, s:O?, s:O?}", "content", json_object_get(result, "output"), "success",
                  json_object_get(result, "success"), "error", json_object_get(result, "error"));
    wait_response(ws, m);
    json_decref(m);
}

/* Ask the hive how our task is (the WebSocket may be stuck): finish on a
 * final state, on a bot that is no longer running, or on a lost hive. */
static void wait_check(struct wait_session *ws)
{
    struct api_response r;
    char *target = xasprintf("/bots/%s/api/task/%s", ws->bot, ws->task_id);
    int rc = api_request(ws->c, "GET", target, NULL, &r);
    free(target);
    if (rc < 0) {
        fprintf(stderr, "hive: lost the hive on %s while waiting for task %s\n", ws->c->addr,
                ws->task_id);
        ws->failed = ws->done = true;
    } else if (r.status == 503 || r.status == 502) {
        api_print_error(&r);
        fprintf(stderr, "hive: %s is not running; task %s was not answered\n", ws->bot,
                ws->task_id);
        ws->failed = ws->done = true;
    } else if (r.status == 200) {
        json_t *task = api_json(&r);
        const char *state = json_get_str(task, "state");
        if (state && strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)
            wait_result(ws, task);
        json_decref(task);
    }
    api_response_free(&r);
}

/* Run the session until our task's response, the end of the session, or a
 * check that finds the task over or the hive gone: never for ever. */
static void wait_loop(struct wait_session *ws, wslay_event_context_ptr ctx)
{
    int flags = fcntl(ws->fd, F_GETFL);
    int64_t next_check = util_mono_ms() + WAIT_CHECK_MS;
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
                wait_check(ws);
                next_check = util_mono_ms() + WAIT_CHECK_MS;
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
 * after (wait_check) even before its ack arrives. */
static void wait_queue_task(struct wait_session *ws, wslay_event_context_ptr ctx, const char *text)
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
int wait_task(const struct api *c, const char *bot, const char *text)
{
    struct wait_session ws = {.c = c, .bot = bot, .fd = -1};
    struct wslay_event_callbacks cbs = {.recv_callback = wait_recv_cb,
                                        .send_callback = wait_send_cb,
                                        .genmask_callback = wait_genmask_cb,
                                        .on_msg_recv_callback = wait_msg_cb};
    wslay_event_context_ptr ctx;

    int rc = wait_open(c, bot, &ws);
    if (rc != CLI_EXIT_OK || wslay_event_context_client_init(&ctx, &cbs, &ws) != 0) {
        if (ws.fd >= 0)
            close(ws.fd);
        free(ws.pending);
        return CLI_EXIT_FAIL;
    }
    wait_queue_task(&ws, ctx, text);
    wait_loop(&ws, ctx);
    if (!ws.done) /* say what became of the task, if the hive still can */
        wait_check(&ws);
    if (!ws.done)
        fprintf(stderr,
                "hive: the connection to %s closed before task %s finished (the bot stopped "
                "or the hive went away)\n",
                bot, ws.task_id);
    wslay_event_context_free(ctx);
    free(ws.pending);
    close(ws.fd);
    return ws.done && !ws.failed ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
