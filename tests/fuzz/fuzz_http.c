/*
 * fuzz_http: the HTTP/1.1 server (common/http.c) fed arbitrary client bytes.
 * Each input gets a fresh event_base and http_server on an abstract AF_UNIX
 * listener; one client connects, writes the payload in the pieces the control
 * bytes ask for, half-closes or closes, and everything is freed. The
 * application callback answers by path so that every way of answering is
 * reached: synchronously, from a zero timer, streamed (chunked or until
 * close), with the body streamed in with read pauses, by upgrading to a
 * WebSocket session, or by detaching the connection as a raw tunnel.
 *
 * Paths: /async* (answer from a zero timer), /upload* (body streamed in;
 * /upload/big with a 4 MiB limit), /stream (chunked), /stream/length,
 * /stream/close (ends with the connection), /stream/big (512 KiB, written
 * from the drain callback), /big (a 600 KiB answer, for output
 * back-pressure), /ws (WebSocket upgrade, echo), /tunnel (detach, echo),
 * /error, /empty (204); anything else gets a JSON echo of the request.
 *
 * Flags (low bits of the first byte):
 *   1  small limits (512-byte head, 1 KiB body) to reach 413/431 cheaply
 *   2  half-close the client after the payload and read on before closing
 *   4  answer streamed uploads early (before their body is read)
 *   8  pause reading on each streamed body segment, resume from a timer
 *   16 answer every request from a zero timer
 *   32 answer asynchronous requests from the close callback when the client
 *      goes away first (instead of from their timer)
 * The fourth byte (see fuzz_harness.h) moves the virtual clock after each
 * piece (header and idle timeouts), frees the server while the client is
 * still connected, or makes the client a slow reader.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <http_parser.h>
#include <stdint.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/http.h"
#include "common/json.h"
#include "common/util.h"
#include "common/ws.h"
#include "fuzz_harness.h"

#define FLAG_SMALL 1
#define FLAG_HALF_CLOSE 2
#define FLAG_EARLY 4
#define FLAG_PAUSE 8
#define FLAG_ALL_ASYNC 16
#define FLAG_CLOSE_ANSWERS 32

/* An answer owed from a zero timer (async requests, streamed uploads). */
struct fuzz_pending {
    LIST_ENTRY(fuzz_pending) entry;
    struct event *ev;
    struct http_conn *conn;
    int status;
    bool upload;    /* a streamed upload: answered when its body ends */
    bool body_done; /* ... which has happened */
    bool resume;    /* the timer resumes reading instead of answering */
    bool head;      /* the request was HEAD */
    size_t body_len;
};

/* A streamed answer written from the drain callback (/stream/big). */
struct fuzz_streamer {
    LIST_ENTRY(fuzz_streamer) entry;
    struct http_conn *conn;
    int chunks_left;
};

/* A WebSocket session or raw tunnel that took a connection over. */
struct fuzz_taken {
    LIST_ENTRY(fuzz_taken) entry;
    struct ws_session *ws;
    struct bufferevent *bev;
};

/* Everything one input builds. */
struct fuzz_http {
    struct event_base *base;
    struct http_server *server;
    unsigned flags;
    LIST_HEAD(, fuzz_pending) pending;
    LIST_HEAD(, fuzz_streamer) streamers;
    LIST_HEAD(, fuzz_taken) taken;
};

#define FUZZ_STREAM_CHUNK 16384
#define FUZZ_STREAM_CHUNKS 32
#define FUZZ_BIG_ANSWER (600 * 1024)

static char fuzz_filler[FUZZ_BIG_ANSWER];

static struct fuzz_http fuzz;

/* Once per process: quiet logs, the filler of the big answers. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_process_init();
    memset(fuzz_filler, 'x', sizeof fuzz_filler);
    return 0;
}

/* ---- the client's check of what it receives ----
 *
 * Every byte the client gets must parse as a sequence of HTTP/1.1
 * responses (http-parser in response mode): correct framing, nothing after
 * an answer that said Connection: close, interim 100 Continue only where a
 * response may start. The answers this file gives carry "X-Fuzz: 1" and,
 * for HEAD requests, "X-Fuzz-Head: 1" so the client knows there is no
 * body. The check stops at a 101; a tunnel's 200 has no length, so the
 * echo that follows it is its body, up to EOF. */

/* Extra header lines of our answers. */
static const char *fuzz_marks(bool head, bool retry)
{
    static const char *const marks[2][2] = {
        {"X-Fuzz: 1\r\n", "X-Fuzz: 1\r\nRetry-After: 1\r\n"},
        {"X-Fuzz: 1\r\nX-Fuzz-Head: 1\r\n", "X-Fuzz: 1\r\nX-Fuzz-Head: 1\r\nRetry-After: 1\r\n"}};
    return marks[head][retry];
}

/* True for a HEAD request (its answer has no body). */
static bool fuzz_is_head(const struct http_request *req)
{
    return strcmp(req->method, "HEAD") == 0;
}

/* The client's parse of the answers. */
struct fuzz_client {
    http_parser parser;
    bool done;      /* past a 101 or a tunnel: stop checking */
    bool in_value;  /* the parser is delivering a header value */
    char field[16]; /* the current header name, cut short */
    size_t field_len;
    bool head_answer; /* the current response is to a HEAD request */
    struct evbuffer *seen;
};

static struct fuzz_client fuzz_client;

/* A new response starts. */
static int fuzz_client_begin(http_parser *p)
{
    (void)p;
    fuzz_client.head_answer = false;
    fuzz_client.in_value = false;
    fuzz_client.field_len = 0;
    return 0;
}

/* (Part of) a header name of the response. */
static int fuzz_client_field(http_parser *p, const char *at, size_t len)
{
    (void)p;
    if (fuzz_client.in_value) {
        fuzz_client.in_value = false;
        fuzz_client.field_len = 0;
    }
    for (size_t i = 0; i < len && fuzz_client.field_len < sizeof fuzz_client.field - 1; i++)
        fuzz_client.field[fuzz_client.field_len++] = at[i];
    fuzz_client.field[fuzz_client.field_len] = '\0';
    return 0;
}

/* (Part of) a header value: notes X-Fuzz-Head. */
static int fuzz_client_value(http_parser *p, const char *at, size_t len)
{
    (void)p, (void)at, (void)len;
    fuzz_client.in_value = true;
    if (strcasecmp(fuzz_client.field, "X-Fuzz-Head") == 0)
        fuzz_client.head_answer = true;
    return 0;
}

/* 1 tells http-parser that this response has no body (HEAD). */
static int fuzz_client_headers(http_parser *p)
{
    (void)p;
    return fuzz_client.head_answer ? 1 : 0;
}

static const http_parser_settings fuzz_client_settings = {
    .on_message_begin = fuzz_client_begin,
    .on_header_field = fuzz_client_field,
    .on_header_value = fuzz_client_value,
    .on_headers_complete = fuzz_client_headers,
};

/* Print what the client received (escaped, the end of it) and stop. */
static void fuzz_client_fail(const char *why)
{
    size_t len = evbuffer_get_length(fuzz_client.seen);
    const unsigned char *b = evbuffer_pullup(fuzz_client.seen, -1);
    size_t from = len > 4000 ? len - 4000 : 0;
    fprintf(stderr,
            "fuzz_http: the client received a malformed answer stream: %s\n"
            "--- received (%zu bytes, from offset %zu) ---\n",
            why, len, from);
    for (size_t i = from; i < len; i++) {
        if (b[i] == '\n')
            fputs("\\n\n", stderr);
        else if (b[i] == '\r')
            fputs("\\r", stderr);
        else if (b[i] < 32 || b[i] > 126)
            fprintf(stderr, "\\x%02x", b[i]);
        else
            fputc(b[i], stderr);
    }
    fputs("\n--- end ---\n", stderr);
    abort();
}

/* Bytes for the client: they must continue a valid response stream. */
static void fuzz_client_received(int fd, const char *data, size_t len)
{
    (void)fd;
    if (fuzz_client.done)
        return;
    evbuffer_add(fuzz_client.seen, data, len);
    size_t n = http_parser_execute(&fuzz_client.parser, &fuzz_client_settings, data, len);
    if (fuzz_client.parser.upgrade) {
        fuzz_client.done = true;
        return;
    }
    enum http_errno err = HTTP_PARSER_ERRNO(&fuzz_client.parser);
    if (err != HPE_OK || n != len) {
        char why[200];
        snprintf(why, sizeof why, "%s (%s) after %zu of %zu new bytes", http_errno_name(err),
                 http_errno_description(err), n, len);
        fuzz_client_fail(why);
    }
}

/* Forget a pending answer. */
static void fuzz_pending_free(struct fuzz_pending *p)
{
    LIST_REMOVE(p, entry);
    event_free(p->ev);
    free(p);
}

/* Give a pending answer now. */
static void fuzz_pending_answer(struct fuzz_pending *p)
{
    struct http_conn *conn = p->conn;
    int status = p->status;
    size_t len = p->body_len;
    bool head = p->head;
    fuzz_pending_free(p);
    http_respond_json(conn, status,
                      json_pack("{s:s, s:I}", "answer", "later", "body", (json_int_t)len),
                      fuzz_marks(head, false));
}

/* The zero timer of a pending answer (or of a read pause). */
static void fuzz_pending_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fuzz_pending *p = arg;
    (void)fd, (void)what;
    fuzz_activity++;
    if (p->resume) {
        p->resume = false;
        http_conn_pause_read(p->conn, false);
        if (!p->body_done)
            return;
    }
    if (p->upload && !p->body_done)
        return;
    fuzz_pending_answer(p);
}

/* The client left while we owed an answer. */
static void fuzz_pending_close_cb(struct http_conn *conn, void *arg)
{
    struct fuzz_pending *p = arg;
    fuzz_activity++;
    if (!http_conn_is_closed(conn))
        abort(); /* the close callback must only come once the client is gone */
    if (fuzz.flags & FLAG_CLOSE_ANSWERS || p->upload)
        fuzz_pending_answer(p);
}

/* Owe CONN an answer, given on the next loop pass. */
static struct fuzz_pending *fuzz_pending_new(struct http_conn *conn, const struct http_request *req,
                                             int status, bool upload)
{
    static const struct timeval zero = {0, 0};
    struct fuzz_pending *p = xcalloc(1, sizeof *p);
    p->conn = conn;
    p->status = status;
    p->upload = upload;
    p->head = fuzz_is_head(req);
    p->ev = evtimer_new(fuzz.base, fuzz_pending_cb, p);
    LIST_INSERT_HEAD(&fuzz.pending, p, entry);
    http_conn_set_close_cb(conn, fuzz_pending_close_cb, p);
    if (!upload)
        evtimer_add(p->ev, &zero);
    return p;
}

/* WebSocket text: echo it (the server side of the upgrade path). */
static void fuzz_ws_text(struct ws_session *ws, const char *data, size_t len, void *arg)
{
    (void)arg;
    fuzz_activity++;
    ws_send_text(ws, data, len);
    if (len == 5 && memcmp(data, "close", 5) == 0)
        ws_close(ws, 1000, "bye");
}

/* The session ended (it is freed right after). */
static void fuzz_ws_close(struct ws_session *ws, void *arg)
{
    struct fuzz_taken *t = arg;
    (void)ws;
    fuzz_activity++;
    LIST_REMOVE(t, entry);
    free(t);
}

/* A raw tunnel echoes what it reads. */
static void fuzz_tunnel_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    fuzz_activity++;
    bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

/* The tunnel's client left: free the tunnel. */
static void fuzz_tunnel_event(struct bufferevent *bev, short what, void *arg)
{
    struct fuzz_taken *t = arg;
    (void)bev;
    fuzz_activity++;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        LIST_REMOVE(t, entry);
        bufferevent_free(t->bev);
        free(t);
    }
}

/* The Host/Origin rule (guard.c parses every Host and Origin the fuzzer
 * makes): the corpus' short Host names are listed, as server_names are. */
static const struct guard_policy *fuzz_guard(void *arg)
{
    static const char *const names[] = {"x", "a", "h", "example", "[::2]", "10.0.0.1", NULL};
    static const char *const allowed[] = {"http://allowed.example", NULL};
    static const struct guard_policy policy = {names, allowed, "192.0.2.1"};
    (void)arg;
    return &policy;
}

/* GET /ws: the real upgrade check and hand-off. */
static void fuzz_upgrade(struct http_conn *conn, struct http_request *req)
{
    static const struct ws_callbacks cbs = {fuzz_ws_text, fuzz_ws_close};
    struct ws_config cfg;
    char detail[200];
    int status = ws_upgrade_check(req, detail, sizeof detail);
    if (status) {
        http_respond_error(conn, status, detail, fuzz_marks(fuzz_is_head(req), false));
        return;
    }
    ws_config_default(&cfg);
    cfg.max_message = fuzz.flags & FLAG_SMALL ? 256 : cfg.max_message;
    struct fuzz_taken *t = xcalloc(1, sizeof *t);
    LIST_INSERT_HEAD(&fuzz.taken, t, entry);
    t->ws = ws_accept(conn, req, &cfg, &cbs, t);
    if (!t->ws) {
        LIST_REMOVE(t, entry);
        free(t);
    }
}

/* /tunnel: detach and echo raw bytes (what the proxy's CONNECT-like path does). */
static void fuzz_tunnel(struct http_conn *conn)
{
    struct bufferevent *bev = http_conn_detach(conn);
    if (!bev)
        return;
    struct fuzz_taken *t = xcalloc(1, sizeof *t);
    t->bev = bev;
    LIST_INSERT_HEAD(&fuzz.taken, t, entry);
    static const char established[] = "HTTP/1.1 200 Connection Established\r\nX-Fuzz: 1\r\n\r\n";
    bufferevent_write(bev, established, strlen(established));
    bufferevent_setcb(bev, fuzz_tunnel_read, NULL, fuzz_tunnel_event, t);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_input(bev)))
        fuzz_tunnel_read(bev, t);
}

/* End a drain-driven stream and forget it. */
static void fuzz_streamer_end(struct fuzz_streamer *st)
{
    struct http_conn *conn = st->conn;
    LIST_REMOVE(st, entry);
    free(st);
    http_conn_set_drain_cb(conn, NULL, NULL);
    http_conn_set_close_cb(conn, NULL, NULL);
    http_respond_stream_end(conn, false);
}

/* The output drained: write the next chunk (the proxy's back-pressure). */
static void fuzz_streamer_drain(struct http_conn *conn, void *arg)
{
    struct fuzz_streamer *st = arg;
    char head[16];
    fuzz_activity++;
    if (http_conn_output_pending(conn) >= FUZZ_STREAM_CHUNK)
        return;
    if (st->chunks_left-- == 0) {
        http_respond_stream_write(conn, "0\r\n\r\n", 5);
        fuzz_streamer_end(st);
        return;
    }
    int n = snprintf(head, sizeof head, "%x\r\n", FUZZ_STREAM_CHUNK);
    http_respond_stream_write(conn, head, (size_t)n);
    http_respond_stream_write(conn, fuzz_filler, FUZZ_STREAM_CHUNK);
    http_respond_stream_write(conn, "\r\n", 2);
}

/* The client of a stream went away: finish it (the layer drops it). */
static void fuzz_streamer_close(struct http_conn *conn, void *arg)
{
    (void)conn;
    fuzz_activity++;
    fuzz_streamer_end(arg);
}

/* /stream...: a streamed answer, chunked, with a length, or ended by close
 * (the caller writes the framing, so HEAD gets no body from us). */
static void fuzz_stream(struct http_conn *conn, const struct http_request *req)
{
    const char *path = req->path;
    bool head = fuzz_is_head(req);
    char lines[160];
    if (strncmp(path, "/stream/big", 11) == 0 && !head) {
        struct fuzz_streamer *st = xcalloc(1, sizeof *st);
        st->conn = conn;
        st->chunks_left = FUZZ_STREAM_CHUNKS;
        LIST_INSERT_HEAD(&fuzz.streamers, st, entry);
        http_respond_stream_begin(conn, 200, NULL, "Transfer-Encoding: chunked\r\nX-Fuzz: 1\r\n");
        http_conn_set_drain_cb(conn, fuzz_streamer_drain, st);
        http_conn_set_close_cb(conn, fuzz_streamer_close, st);
        fuzz_streamer_drain(conn, st);
    } else if (strncmp(path, "/stream/close", 13) == 0) {
        snprintf(lines, sizeof lines, "Content-Type: text/plain\r\n%s", fuzz_marks(head, false));
        http_respond_stream_begin(conn, 200, NULL, lines);
        if (!head)
            http_respond_stream_write(conn, "until close\n", 12);
        http_respond_stream_end(conn, true);
    } else if (strncmp(path, "/stream/length", 14) == 0) {
        snprintf(lines, sizeof lines, "Content-Length: 5\r\n%s", fuzz_marks(head, false));
        http_respond_stream_begin(conn, 200, "Fine", lines);
        if (!head)
            http_respond_stream_write(conn, "hello", 5);
        http_respond_stream_end(conn, false);
    } else {
        snprintf(lines, sizeof lines, "Transfer-Encoding: chunked\r\n%s", fuzz_marks(head, false));
        http_respond_stream_begin(conn, 200, NULL, lines);
        if (!head) {
            http_respond_stream_write(conn, "5\r\nhello\r\n", 10);
            http_respond_stream_write(conn, "0\r\n\r\n", 5);
        }
        http_respond_stream_end(conn, false);
    }
}

/* A synchronous answer that echoes what the request looked like. */
static void fuzz_answer(struct http_conn *conn, struct http_request *req)
{
    char *q = http_query_param(req->query, "q");
    bool token = http_request_token_ok(req, "secret");
    const char *host = http_request_header(req, "Host");
    size_t body = evbuffer_get_length(req->body);
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:b, s:I, s:b, s:b, s:s}", "method", req->method,
                          "path", req->path, "q", q, "host", host, "token", token, "body",
                          (json_int_t)body, "keep_alive", req->keep_alive, "upgrade", req->upgrade,
                          "peer", http_conn_peer(conn));
    free(q);
    if (strncmp(req->path, "/error", 6) == 0) {
        json_decref(o);
        http_respond_error(conn, 418, "teapot", fuzz_marks(fuzz_is_head(req), true));
        return;
    }
    if (strncmp(req->path, "/big", 4) == 0) {
        json_decref(o);
        http_respond(conn, 200, "text/plain", fuzz_filler, sizeof fuzz_filler,
                     fuzz_marks(fuzz_is_head(req), false));
        return;
    }
    if (strncmp(req->path, "/empty", 6) == 0) {
        json_decref(o);
        http_respond(conn, 204, NULL, NULL, 0, fuzz_marks(fuzz_is_head(req), false));
        return;
    }
    http_respond_json(conn, 200, o, fuzz_marks(fuzz_is_head(req), false));
}

/* The pending answer of CONN's streamed upload, or NULL. */
static struct fuzz_pending *fuzz_upload_find(struct http_conn *conn)
{
    struct fuzz_pending *p;
    LIST_FOREACH(p, &fuzz.pending, entry)
    if (p->conn == conn && p->upload)
        return p;
    return NULL;
}

/* Body bytes of a streamed upload (after on_request, which set up P). */
static void fuzz_upload_body(struct http_conn *conn, const void *data, size_t len, bool last,
                             void *arg)
{
    static const struct timeval zero = {0, 0};
    struct fuzz_pending *p = fuzz_upload_find(conn);
    (void)data, (void)arg;
    fuzz_activity++;
    if (!p) {
        fprintf(stderr, "fuzz_http: body of an upload that was answered or never dispatched\n");
        abort();
    }
    p->body_len += len;
    if (last) {
        p->body_done = true;
        if (!p->resume)
            evtimer_add(p->ev, &zero);
        return;
    }
    if (fuzz.flags & FLAG_PAUSE && !p->resume) {
        p->resume = true;
        http_conn_pause_read(conn, true);
        evtimer_add(p->ev, &zero);
    }
}

/* Head of a request: /upload streams its body (with a larger limit for
 * /upload/big). Nothing is owed until on_request: the layer may still
 * refuse the request by itself. */
static void fuzz_on_headers(struct http_conn *conn, struct http_request *req, void *arg)
{
    (void)arg;
    fuzz_activity++;
    if (strncmp(req->path, "/upload", 7) == 0)
        http_conn_stream_body(conn, fuzz_upload_body, NULL,
                              strstr(req->path, "big") ? 4u << 20 : 0);
}

/* Every complete request (or streamed head): answer by path. */
static void fuzz_on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    (void)arg;
    fuzz_activity++;
    const char *path = req->path;
    if (strncmp(path, "/upload", 7) == 0) {
        if (fuzz.flags & FLAG_EARLY) /* the rest of the body is discarded */
            http_respond_error(conn, 403, "no uploads today", fuzz_marks(fuzz_is_head(req), false));
        else
            fuzz_pending_new(conn, req, 201, true);
        return;
    }
    if (strcmp(path, "/ws") == 0)
        return fuzz_upgrade(conn, req);
    if (strcmp(path, "/tunnel") == 0)
        return fuzz_tunnel(conn);
    if (strncmp(path, "/stream", 7) == 0)
        return fuzz_stream(conn, req);
    if (strncmp(path, "/async", 6) == 0 || fuzz.flags & FLAG_ALL_ASYNC) {
        fuzz_pending_new(conn, req, 202, false);
        return;
    }
    fuzz_answer(conn, req);
}

/* True when nothing the input built is left but the server itself. */
static bool fuzz_all_gone(void *arg)
{
    (void)arg;
    return (!fuzz.server || http_server_connections(fuzz.server) == 0) && LIST_EMPTY(&fuzz.taken) &&
           LIST_EMPTY(&fuzz.pending) && LIST_EMPTY(&fuzz.streamers);
}

/* Free the server while its client is still there (shutdown): owed
 * answers are forgotten, streams too; taken-over connections live on. */
static void fuzz_free_server_early(void)
{
    while (!LIST_EMPTY(&fuzz.pending))
        fuzz_pending_free(LIST_FIRST(&fuzz.pending));
    while (!LIST_EMPTY(&fuzz.streamers)) {
        struct fuzz_streamer *st = LIST_FIRST(&fuzz.streamers);
        LIST_REMOVE(st, entry);
        free(st);
    }
    http_server_free(fuzz.server);
    fuzz.server = NULL;
}

/* One input: a server, one client writing the payload, teardown. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in;
    struct sockaddr_un addr;
    socklen_t addr_len;
    struct http_server_config cfg = {
        .on_request = fuzz_on_request, .on_headers = fuzz_on_headers, .guard = fuzz_guard};

    fuzz_input_parse(data, size, &in);
    memset(&fuzz, 0, sizeof fuzz);
    fuzz.flags = in.flags;
    LIST_INIT(&fuzz.pending);
    LIST_INIT(&fuzz.streamers);
    LIST_INIT(&fuzz.taken);
    http_parser_init(&fuzz_client.parser, HTTP_RESPONSE);
    fuzz_client.done = false;
    fuzz_client.seen = evbuffer_new();
    fuzz_received = fuzz_client_received;
    fuzz_clock_freeze();
    fuzz.base = event_base_new();
    http_limits_default(&cfg.limits);
    if (fuzz.flags & FLAG_SMALL) {
        cfg.limits.max_header_bytes = 512;
        cfg.limits.max_body = 1024;
    }
    int lfd = fuzz_listen_unix(&addr, &addr_len);
    fuzz.server = http_server_new(fuzz.base, lfd, &cfg);
    if (!fuzz.server)
        abort();
    int fd = fuzz_connect_unix(&addr, addr_len);
    fuzz_loop_quiet(fuzz.base, &fd, 1);
    fuzz_send_pieces(fuzz.base, fd, &in);
    if (fuzz.flags & FLAG_HALF_CLOSE) {
        shutdown(fd, SHUT_WR);
        fuzz_loop_quiet(fuzz.base, &fd, 1);
        fuzz_tick(fuzz.base, &fd, 1, in.step_ms);
    }
    if (in.free_early)
        fuzz_free_server_early();
    close(fd);

    /* With the client gone every connection must end, and every session or
     * tunnel that took one over, once the timeouts have had their time. */
    if (!fuzz_wind_down(fuzz.base, fuzz_all_gone, NULL)) {
        fprintf(stderr,
                "fuzz_http: the client left but %zu connection(s), %s%s%s are still there\n",
                fuzz.server ? http_server_connections(fuzz.server) : 0,
                LIST_EMPTY(&fuzz.taken) ? "" : "a WebSocket session or tunnel, ",
                LIST_EMPTY(&fuzz.pending) ? "" : "an owed answer, ",
                LIST_EMPTY(&fuzz.streamers) ? "" : "a streamed answer");
        abort();
    }
    http_server_free(fuzz.server);
    event_base_free(fuzz.base);
    fuzz_clock_thaw();
    evbuffer_free(fuzz_client.seen);
    return 0;
}
