/*
 * check_ws: the WebSocket layer. Handshake helpers are fed hand-built
 * requests; sessions run on one end of a socketpair while the test plays the
 * client on the other end with hand-built (masked) frames, fed whole, one
 * byte at a time and split at every offset, and reads back what the server
 * sends: pongs, pings, texts and close frames with their codes.
 */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "common/ws.h"

#include "tests/check_support.h"

enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xa
};

/* The client side of one session, and what the session told the test. */
struct peer {
    struct event_base *base;
    int fd;        /* the test's (client's) end */
    int server_fd; /* the session's end, to see whether it read everything */
    struct ws_session *ws;
    char **texts;
    size_t *text_lens;
    size_t n_texts;
    int closes;
    struct evbuffer *rx; /* bytes the server sent, not yet parsed */
    bool eof;
    struct http_conn *held_conn; /* an upgrade request left unanswered */
    struct http_request *held_req;
    bool held_gone;     /* ... whose client went away meanwhile */
    bool echo;          /* on_text answers with the same text */
    bool close_on_text; /* on_text closes the session with 1000 */
};

/* One frame as the server sent it. */
struct frame {
    bool fin;
    int opcode;
    bool masked;
    size_t len;
    unsigned char *payload; /* NUL-terminated copy */
};

/* Build a frame; masked with a fixed key unless UNMASKED. Caller frees. */
static unsigned char *frame_build(bool fin, int opcode, const void *payload, size_t len,
                                  bool unmasked, size_t *out_len)
{
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    unsigned char *f = xmalloc(len + 14);
    size_t n = 0;
    f[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    unsigned char mask_bit = unmasked ? 0 : 0x80;
    if (len < 126) {
        f[n++] = (unsigned char)(mask_bit | len);
    } else if (len <= 0xffff) {
        f[n++] = mask_bit | 126;
        f[n++] = (unsigned char)(len >> 8);
        f[n++] = (unsigned char)len;
    } else {
        f[n++] = mask_bit | 127;
        for (int i = 7; i >= 0; i--)
            f[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (!unmasked) {
        memcpy(f + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        f[n + i] = ((const unsigned char *)payload)[i] ^ (unmasked ? 0 : key[i % 4]);
    *out_len = n + len;
    return f;
}

/* Record a text (a copy), and echo or close when the test asks for it. */
static void peer_on_text(struct ws_session *ws, const char *data, size_t len, void *arg)
{
    struct peer *p = arg;
    p->texts = xrealloc(p->texts, (p->n_texts + 1) * sizeof *p->texts);
    p->text_lens = xrealloc(p->text_lens, (p->n_texts + 1) * sizeof *p->text_lens);
    p->texts[p->n_texts] = xmalloc(len + 1);
    memcpy(p->texts[p->n_texts], data, len);
    p->texts[p->n_texts][len] = '\0';
    p->text_lens[p->n_texts++] = len;
    if (p->echo)
        ck_assert_int_eq(ws_send_text(ws, data, len), 0);
    if (p->close_on_text)
        ws_close(ws, 1000, "done");
}

/* Count the end of the session; it is freed right after. */
static void peer_on_close(struct ws_session *ws, void *arg)
{
    struct peer *p = arg;
    ck_assert_ptr_eq(ws, p->ws);
    p->closes++;
    p->ws = NULL;
}

/* Run one pass of the loop and collect what the server wrote. */
static void peer_pump(struct peer *p)
{
    event_base_loop(p->base, EVLOOP_NONBLOCK);
    while (p->fd >= 0 && !p->eof) {
        int n = evbuffer_read(p->rx, p->fd, 65536);
        if (n == 0)
            p->eof = true;
        if (n <= 0)
            break;
    }
    usleep(200);
}

/* Run the loop until COND holds or MS milliseconds pass; yields COND. COND
 * is evaluated once per pass, so it may consume what it looks at. */
#define PEER_WAIT(p, cond, ms)                                                                     \
    ({                                                                                             \
        int64_t deadline_ = util_mono_ms() + (ms);                                                 \
        bool met_;                                                                                 \
        while (!(met_ = (cond)) && util_mono_ms() < deadline_)                                     \
            peer_pump(p);                                                                          \
        met_;                                                                                      \
    })

/* A read callback that leaves the bytes where they are. */
static void peer_hold_bytes(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
}

/* Leave DATA in BEV's input buffer the way an HTTP connection hands over
 * bytes it read behind the request head. */
static void peer_preload(struct peer *p, struct bufferevent *bev, const void *data, size_t len)
{
    struct evbuffer *input = bufferevent_get_input(bev);
    bufferevent_setcb(bev, peer_hold_bytes, NULL, NULL, NULL);
    bufferevent_enable(bev, EV_READ);
    ck_assert_int_eq(write(p->fd, data, len), (ssize_t)len);
    int64_t deadline = util_mono_ms() + 2000;
    while (evbuffer_get_length(input) < len && util_mono_ms() < deadline)
        event_base_loop(p->base, EVLOOP_NONBLOCK);
    ck_assert_uint_eq(evbuffer_get_length(input), len);
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
}

static const struct ws_callbacks peer_callbacks = {peer_on_text, peer_on_close};

/* A fresh loop and receive buffer for P; no sockets yet. */
static void peer_init(struct peer *p)
{
    memset(p, 0, sizeof *p);
    p->base = event_base_new();
    p->rx = evbuffer_new();
    p->fd = -1;
    p->server_fd = -1;
}

/* The defaults, without idle pings (tests that want them say so). */
static struct ws_config peer_config(void)
{
    struct ws_config config;
    ws_config_default(&config);
    config.ping_interval_ms = 0;
    return config;
}

/* A session on a socketpair with CONFIG (NULL: peer_config()), EARLY bytes
 * already received when it starts. */
static void peer_open_with(struct peer *p, const struct ws_config *config, const void *early,
                           size_t early_len)
{
    struct ws_config defaults = peer_config();
    int sv[2];
    peer_init(p);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(util_set_nonblock_cloexec(sv[0]), 0);
    ck_assert_int_eq(util_set_nonblock_cloexec(sv[1]), 0);
    p->fd = sv[1];
    p->server_fd = sv[0];
    struct bufferevent *bev = bufferevent_socket_new(p->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (early)
        peer_preload(p, bev, early, early_len);
    p->ws = ws_session_new(bev, config ? config : &defaults, &peer_callbacks, p);
    ck_assert_ptr_nonnull(p->ws);
}

/* A session on a socketpair, nothing received yet. */
static void peer_open(struct peer *p, const struct ws_config *config)
{
    peer_open_with(p, config, NULL, 0);
}

/* Hang up if the session still runs, and check it ended exactly once. */
static void peer_end(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->ws)
        ck_assert(PEER_WAIT(p, p->closes > 0, 5000));
    ck_assert_int_eq(p->closes, 1);
}

/* Free what the test side of P holds, the loop last. */
static void peer_free(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    for (size_t i = 0; i < p->n_texts; i++)
        free(p->texts[i]);
    free(p->texts);
    free(p->text_lens);
    evbuffer_free(p->rx);
    event_base_free(p->base);
}

/* End the session and free everything. */
static void peer_finish(struct peer *p)
{
    peer_end(p);
    peer_free(p);
}

/* Write all of DATA to the server, running the loop when the socket is full. */
static void peer_write(struct peer *p, const void *data, size_t len)
{
    const char *s = data;
    while (len > 0) {
        ssize_t n = write(p->fd, s, len);
        if (n < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            peer_pump(p);
            continue;
        }
        s += n;
        len -= (size_t)n;
    }
}

/* Bytes the server has not read yet (0 once the session has ended). */
static int peer_unread(struct peer *p)
{
    int n = 0;
    if (p->closes > 0)
        return 0;
    ck_assert_int_eq(ioctl(p->server_fd, FIONREAD, &n), 0);
    return n;
}

/* Write DATA and run the loop until the server has read and handled it. */
static void peer_feed(struct peer *p, const void *data, size_t len)
{
    peer_write(p, data, len);
    ck_assert(PEER_WAIT(p, peer_unread(p) == 0, 2000));
    peer_pump(p);
}

/* Send one frame, masked as a client must. */
static void peer_send(struct peer *p, bool fin, int opcode, const void *payload, size_t len)
{
    size_t n;
    unsigned char *f = frame_build(fin, opcode, payload, len, false, &n);
    peer_write(p, f, n);
    free(f);
}

/* Parse one whole frame at the head of RX into F (and drain it). */
static bool peer_parse(struct peer *p, struct frame *f)
{
    size_t have = evbuffer_get_length(p->rx), hdr = 2;
    if (have < 2)
        return false;
    unsigned char *b = evbuffer_pullup(p->rx, (ssize_t)(have < 14 ? have : 14));
    uint64_t len = b[1] & 0x7f;
    hdr += len == 126 ? 2 : len == 127 ? 8 : 0;
    hdr += (b[1] & 0x80) ? 4 : 0;
    if (have < hdr)
        return false;
    if (len >= 126) {
        size_t bytes = len == 126 ? 2 : 8;
        len = 0;
        for (size_t i = 0; i < bytes; i++)
            len = (len << 8) | b[2 + i];
    }
    if (have < hdr + len)
        return false;
    f->fin = b[0] & 0x80;
    f->opcode = b[0] & 0x0f;
    f->masked = b[1] & 0x80;
    f->len = len;
    f->payload = xmalloc(len + 1);
    evbuffer_drain(p->rx, hdr);
    evbuffer_remove(p->rx, f->payload, len);
    f->payload[len] = '\0';
    return true;
}

/* Wait up to MS for the next frame from the server. */
static bool peer_frame(struct peer *p, struct frame *f, int ms)
{
    return PEER_WAIT(p, peer_parse(p, f), ms);
}

/* Expect a close frame with CODE, then the server hanging up and on_close. */
static void peer_expect_close(struct peer *p, int code)
{
    struct frame f;
    ck_assert(peer_frame(p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert(f.fin);
    ck_assert(!f.masked);
    ck_assert_uint_ge(f.len, 2);
    ck_assert_int_eq((f.payload[0] << 8) | f.payload[1], code);
    free(f.payload);
    ck_assert(PEER_WAIT(p, p->eof && p->closes == 1, 2000));
}

/* Expect the session to have delivered exactly one text, equal to S. */
static void peer_expect_one_text(struct peer *p, const char *s, size_t len)
{
    ck_assert_uint_eq(p->n_texts, 1);
    ck_assert_uint_eq(p->text_lens[0], len);
    ck_assert(memcmp(p->texts[0], s, len) == 0);
}

/* Read the next frame: an unmasked, final text frame carrying S. */
static void expect_text_frame(struct peer *p, const char *s, size_t len);

START_TEST(test_accept_key_rfc)
{
    char out[29];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ws_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", out);
    ck_assert_uint_eq(strlen(out), 28);
    ck_assert_str_ne(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

/* A hand-built request and the storage for its headers. */
struct test_request {
    struct http_request req;
    struct http_header headers[16];
};

/* Fill T with METHOD, target /ws, HTTP/1.1 and the header PAIRS. */
static void request_init(struct test_request *t, const char *method, const char *const *pairs)
{
    memset(t, 0, sizeof *t);
    t->req.method = method;
    t->req.target = "/ws";
    t->req.path = "/ws";
    t->req.version_major = 1;
    t->req.version_minor = 1;
    t->req.headers = t->headers;
    for (size_t i = 0; pairs[2 * i]; i++) {
        t->headers[i].name = (char *)pairs[2 * i];
        t->headers[i].value = (char *)pairs[2 * i + 1];
        t->req.n_headers++;
    }
}

/* ws_upgrade_check() of a request made of PAIRS; DETAIL gets the reason. */
static int upgrade_status(const char *method, const char *const *pairs, char *detail, size_t cap)
{
    struct test_request t;
    request_init(&t, method, pairs);
    return ws_upgrade_check(&t.req, detail, cap);
}

#define GOOD_KEY "dGhlIHNhbXBsZSBub25jZQ=="

START_TEST(test_upgrade_check)
{
    char d[128];
    const char *ok[] = {"Host",
                        "h:1",
                        "Upgrade",
                        "websocket",
                        "Connection",
                        "Upgrade",
                        "Sec-WebSocket-Key",
                        GOOD_KEY,
                        "Sec-WebSocket-Version",
                        "13",
                        NULL};
    ck_assert_int_eq(upgrade_status("GET", ok, d, sizeof d), 0);
    ck_assert_int_eq(upgrade_status("POST", ok, d, sizeof d), 400);
    ck_assert_ptr_nonnull(strstr(d, "GET"));

    const char *tokens[] = {"Host",
                            "localhost:1",
                            "Upgrade",
                            "WebSocket",
                            "Connection",
                            "keep-alive, Upgrade",
                            "Sec-WebSocket-Key",
                            GOOD_KEY,
                            "Sec-WebSocket-Version",
                            "13",
                            "Origin",
                            "http://LOCALHOST:1",
                            NULL};
    ck_assert_int_eq(upgrade_status("GET", tokens, d, sizeof d), 0);
    ck_assert_str_eq(d, "");

    const char *listed[] = {"Host",
                            "h:1",
                            "Upgrade",
                            "websocket",
                            "Connection",
                            "upgrade",
                            "Sec-WebSocket-Key",
                            GOOD_KEY,
                            "Sec-WebSocket-Version",
                            "13",
                            "Origin",
                            "https://ok.example",
                            NULL};
    ck_assert_int_eq(upgrade_status("GET", listed, d, sizeof d), 0);
}
END_TEST

START_TEST(test_upgrade_check_refusals)
{
    char d[128];
    const char *no_upgrade[] = {"Host",
                                "h:1",
                                "Connection",
                                "Upgrade",
                                "Sec-WebSocket-Key",
                                GOOD_KEY,
                                "Sec-WebSocket-Version",
                                "13",
                                NULL};
    ck_assert_int_eq(upgrade_status("GET", no_upgrade, d, sizeof d), 426);
    const char *h2c[] = {"Host",
                         "h:1",
                         "Upgrade",
                         "h2c",
                         "Connection",
                         "Upgrade",
                         "Sec-WebSocket-Key",
                         GOOD_KEY,
                         "Sec-WebSocket-Version",
                         "13",
                         NULL};
    ck_assert_int_eq(upgrade_status("GET", h2c, d, sizeof d), 426);
    const char *no_conn[] = {"Host",
                             "h:1",
                             "Upgrade",
                             "websocket",
                             "Connection",
                             "keep-alive",
                             "Sec-WebSocket-Key",
                             GOOD_KEY,
                             "Sec-WebSocket-Version",
                             "13",
                             NULL};
    ck_assert_int_eq(upgrade_status("GET", no_conn, d, sizeof d), 426);
    const char *v8[] = {"Host",
                        "h:1",
                        "Upgrade",
                        "websocket",
                        "Connection",
                        "Upgrade",
                        "Sec-WebSocket-Key",
                        GOOD_KEY,
                        "Sec-WebSocket-Version",
                        "8",
                        NULL};
    ck_assert_int_eq(upgrade_status("GET", v8, d, sizeof d), 426);
    ck_assert_ptr_nonnull(strstr(d, "13"));
    const char *no_v[] = {"Host",       "h:1",     "Upgrade",           "websocket",
                          "Connection", "Upgrade", "Sec-WebSocket-Key", GOOD_KEY,
                          NULL};
    ck_assert_int_eq(upgrade_status("GET", no_v, d, sizeof d), 426);
    const char *no_key[] = {
        "Host", "h:1", "Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Version",
        "13",   NULL};
    ck_assert_int_eq(upgrade_status("GET", no_key, d, sizeof d), 400);
    ck_assert_ptr_nonnull(strstr(d, "Sec-WebSocket-Key"));

    struct test_request t; /* HTTP/1.0 cannot upgrade */
    const char *const *ok = (const char *const[]){"Host",
                                                  "h:1",
                                                  "Upgrade",
                                                  "websocket",
                                                  "Connection",
                                                  "Upgrade",
                                                  "Sec-WebSocket-Key",
                                                  GOOD_KEY,
                                                  "Sec-WebSocket-Version",
                                                  "13",
                                                  NULL};
    request_init(&t, "GET", ok);
    t.req.version_minor = 0;
    ck_assert_int_eq(ws_upgrade_check(&t.req, d, sizeof d), 400);
}
END_TEST

/* The status for a request that differs from a good one only in its key. */
static int key_status(const char *key)
{
    char d[128];
    const char *pairs[] = {"Host",
                           "h:1",
                           "Upgrade",
                           "websocket",
                           "Connection",
                           "Upgrade",
                           "Sec-WebSocket-Version",
                           "13",
                           "Sec-WebSocket-Key",
                           key,
                           NULL};
    return upgrade_status("GET", pairs, d, sizeof d);
}

START_TEST(test_upgrade_check_keys)
{
    ck_assert_int_eq(key_status(GOOD_KEY), 0);
    ck_assert_int_eq(key_status("AAAAAAAAAAAAAAAAAAAAAA=="), 0);
    ck_assert_int_eq(key_status(""), 400);
    ck_assert_int_eq(key_status("dGhlIHNhbXBsZSBub25jZQ="), 400);   /* 23 chars */
    ck_assert_int_eq(key_status("dGhlIHNhbXBsZSBub25jZQ=A"), 400);  /* bad padding */
    ck_assert_int_eq(key_status("dGhlIHNhbXBsZSBub25j*Q=="), 400);  /* not base64 */
    ck_assert_int_eq(key_status("dGhlIHNhbXBsZSBub25jZSE="), 400);  /* 17 bytes */
    ck_assert_int_eq(key_status("dGhlIHNhbXBsZSBub25jZQ==="), 400); /* too long */
    ck_assert_int_eq(key_status("c2hvcnQ="), 400);                  /* 5 bytes */
}
END_TEST

START_TEST(test_text_whole)
{
    struct peer p;
    peer_open(&p, NULL);
    peer_send(&p, true, OP_TEXT, "hello", 5);
    ck_assert(PEER_WAIT(&p, p.n_texts == 1, 2000));
    peer_expect_one_text(&p, "hello", 5);
    peer_send(&p, true, OP_TEXT, "", 0);
    ck_assert(PEER_WAIT(&p, p.n_texts == 2, 2000));
    ck_assert_uint_eq(p.text_lens[1], 0);
    ck_assert_str_eq(p.texts[1], "");
    ck_assert_int_eq(p.closes, 0);
    peer_finish(&p);
}
END_TEST

START_TEST(test_text_long_lengths)
{
    struct peer p;
    size_t sizes[] = {125, 126, 65535, 65536, 200000};
    peer_open(&p, NULL);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *s = xmalloc(sizes[i]);
        memset(s, 'a' + (int)i, sizes[i]);
        peer_send(&p, true, OP_TEXT, s, sizes[i]);
        ck_assert(PEER_WAIT(&p, p.n_texts == i + 1, 5000));
        ck_assert_uint_eq(p.text_lens[i], sizes[i]);
        ck_assert(memcmp(p.texts[i], s, sizes[i]) == 0);
        free(s);
    }
    peer_finish(&p);
}
END_TEST

START_TEST(test_text_byte_at_a_time)
{
    struct peer p;
    const char *msg = "one byte at a time: \xe2\x82\xac \xf0\x9d\x84\x9e";
    size_t n;
    unsigned char *f = frame_build(true, OP_TEXT, msg, strlen(msg), false, &n);
    peer_open(&p, NULL);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(p.n_texts, 0);
        peer_feed(&p, f + i, 1);
    }
    peer_expect_one_text(&p, msg, strlen(msg));
    free(f);
    peer_finish(&p);
}
END_TEST

START_TEST(test_text_split_everywhere)
{
    struct peer p;
    const char *msg = "split me \xe2\x82\xac";
    size_t n;
    unsigned char *f = frame_build(true, OP_TEXT, msg, strlen(msg), false, &n);
    peer_open(&p, NULL);
    for (size_t cut = 1; cut < n; cut++) {
        peer_feed(&p, f, cut);
        ck_assert_uint_eq(p.n_texts, cut - 1);
        peer_feed(&p, f + cut, n - cut);
        ck_assert_uint_eq(p.n_texts, cut);
        ck_assert_str_eq(p.texts[cut - 1], msg);
    }
    /* Two frames in one write, cut anywhere, still make two messages. */
    unsigned char *two = xmalloc(2 * n);
    memcpy(two, f, n);
    memcpy(two + n, f, n);
    for (size_t cut = 0; cut <= 2 * n; cut++) {
        size_t before = p.n_texts;
        peer_feed(&p, two, cut);
        peer_feed(&p, two + cut, 2 * n - cut);
        ck_assert_uint_eq(p.n_texts, before + 2);
    }
    free(two);
    free(f);
    ck_assert_int_eq(p.closes, 0);
    peer_finish(&p);
}
END_TEST

START_TEST(test_fragmented_with_ping)
{
    struct peer p;
    struct frame f;
    peer_open(&p, NULL);
    peer_send(&p, false, OP_TEXT, "Hel", 3);
    peer_send(&p, true, OP_PING, "are you there", 13);
    peer_send(&p, false, OP_CONT, "lo, ", 4);
    peer_send(&p, false, OP_CONT, "", 0);
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_PONG);
    ck_assert(!f.masked);
    ck_assert_str_eq((char *)f.payload, "are you there");
    free(f.payload);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_send(&p, true, OP_PONG, "unsolicited", 11);
    peer_send(&p, true, OP_CONT, "world", 5);
    ck_assert(PEER_WAIT(&p, p.n_texts == 1, 2000));
    peer_expect_one_text(&p, "Hello, world", 12);
    /* A character split across two fragments is fine. */
    peer_send(&p, false, OP_TEXT, "a\xe2\x82", 3);
    peer_send(&p, true, OP_CONT,
              "\xac"
              "b",
              2);
    ck_assert(PEER_WAIT(&p, p.n_texts == 2, 2000));
    ck_assert_str_eq(p.texts[1], "a\xe2\x82\xac"
                                 "b");
    ck_assert_int_eq(p.closes, 0);
    peer_finish(&p);
}
END_TEST

/* Send the fragments FRAGS (NULL-terminated) of one text; expect CODE. */
static void expect_text_refused(const char *const *frags, int code, const struct ws_config *config)
{
    struct peer p;
    peer_open(&p, config);
    for (size_t i = 0; frags[i]; i++)
        peer_send(&p, frags[i + 1] == NULL, i == 0 ? OP_TEXT : OP_CONT, frags[i], strlen(frags[i]));
    peer_expect_close(&p, code);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_finish(&p);
}

START_TEST(test_invalid_utf8)
{
    static const char *const cases[][3] = {
        {"\xc0\xaf", NULL},               /* overlong '/' */
        {"\xe0\x80\xaf", NULL},           /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", NULL},       /* overlong, 4 bytes */
        {"\xed\xa0\x80", NULL},           /* surrogate U+D800 */
        {"\xed\xbf\xbf", NULL},           /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", NULL},       /* U+110000 */
        {"\xf5\x80\x80\x80", NULL},       /* lead byte past F4 */
        {"\xff", NULL},                   /* never valid */
        {"ok \x80", NULL},                /* lone continuation */
        {"ends in \xe2\x82", NULL},       /* truncated at the end */
        {"fine", "then \xc0\xaf", NULL},  /* bad in the second fragment */
        {"cut \xe2\x82", "Xtail", NULL},  /* bad continuation across fragments */
        {"truncated \xe2", "\x82", NULL}, /* message ends mid-character */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_text_refused(cases[i], 1007, NULL);
}
END_TEST

START_TEST(test_binary_refused)
{
    struct peer p;
    peer_open(&p, NULL);
    peer_send(&p, true, OP_BINARY, "\x01\x02\x03", 3);
    peer_send(&p, true, OP_TEXT, "after", 5);
    peer_expect_close(&p, 1003);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_finish(&p);
}
END_TEST

START_TEST(test_too_big)
{
    struct ws_config config = {.max_message = 16, .ping_interval_ms = 0};
    const char *const single[] = {"seventeen bytes!!", NULL};
    const char *const fragments[] = {"ten bytes!", "ten bytes!", NULL};
    const char *const many[] = {"four", "four", "four", "four", "x", NULL};
    expect_text_refused(single, 1009, &config);
    expect_text_refused(fragments, 1009, &config);
    expect_text_refused(many, 1009, &config);

    struct peer p; /* exactly the limit passes, in one frame or in pieces */
    peer_open(&p, &config);
    peer_send(&p, true, OP_TEXT, "sixteen bytes!!!", 16);
    peer_send(&p, false, OP_TEXT, "sixteen ", 8);
    peer_send(&p, true, OP_CONT, "bytes!!!", 8);
    ck_assert(PEER_WAIT(&p, p.n_texts == 2, 2000));
    ck_assert_str_eq(p.texts[0], "sixteen bytes!!!");
    ck_assert_str_eq(p.texts[1], "sixteen bytes!!!");
    peer_finish(&p);
}
END_TEST

/* Send a close frame with CODE; expect the server to answer with WANT. */
static void expect_close_answer(int code, int want)
{
    struct peer p;
    unsigned char payload[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    peer_open(&p, NULL);
    peer_send(&p, true, OP_CLOSE, payload, 2);
    peer_expect_close(&p, want);
    peer_finish(&p);
}

START_TEST(test_close_codes)
{
    static const int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    static const int good[] = {1000, 1001, 1003, 1011, 3000, 4000, 4999};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_close_answer(bad[i], 1002);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        expect_close_answer(good[i], good[i]);
}
END_TEST

/* A close frame with REASON fed in two writes split at every offset (and
 * byte by byte) is answered with WANT each time. */
static void expect_split_close(const char *reason, int want)
{
    unsigned char payload[16] = {0x03, 0xe8};
    size_t plen = 2 + strlen(reason), n;
    memcpy(payload + 2, reason, strlen(reason));
    unsigned char *f = frame_build(true, OP_CLOSE, payload, plen, false, &n);
    for (size_t k = 0; k <= n; k++) {
        struct peer p;
        peer_open(&p, NULL);
        if (k == n) {
            for (size_t i = 0; i < n; i++)
                peer_feed(&p, f + i, 1);
        } else {
            peer_feed(&p, f, k);
            peer_feed(&p, f + k, n - k);
        }
        peer_expect_close(&p, want);
        peer_finish(&p);
    }
    free(f);
}

START_TEST(test_close_reason_split)
{
    expect_split_close("\xc3\xa9", 1000); /* valid UTF-8 reason: echoed */
    expect_split_close("\xff", 1007);     /* invalid: refused */
}
END_TEST

START_TEST(test_unmasked_refused)
{
    struct peer p;
    size_t n;
    unsigned char *f = frame_build(true, OP_TEXT, "plain", 5, true, &n);
    peer_open(&p, NULL);
    peer_write(&p, f, n);
    free(f);
    peer_expect_close(&p, 1002);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_finish(&p);
}
END_TEST

START_TEST(test_protocol_errors)
{
    struct peer p; /* a continuation with nothing to continue */
    peer_open(&p, NULL);
    peer_send(&p, true, OP_CONT, "orphan", 6);
    peer_expect_close(&p, 1002);
    peer_finish(&p);

    peer_open(&p, NULL); /* a new text while a fragmented one is open */
    peer_send(&p, false, OP_TEXT, "first", 5);
    peer_send(&p, true, OP_TEXT, "second", 6);
    peer_expect_close(&p, 1002);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_finish(&p);

    peer_open(&p, NULL); /* a reserved opcode */
    peer_send(&p, true, 0x3, "?", 1);
    peer_expect_close(&p, 1002);
    peer_finish(&p);
}
END_TEST

START_TEST(test_clean_close_from_peer)
{
    struct peer p;
    struct frame f;
    peer_open(&p, NULL);
    peer_send(&p, true, OP_TEXT, "last words", 10);
    peer_send(&p, true, OP_CLOSE,
              "\x03\xe8"
              "bye",
              5);
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert_uint_eq(f.len, 5);
    ck_assert(memcmp(f.payload,
                     "\x03\xe8"
                     "bye",
                     5) == 0);
    free(f.payload);
    ck_assert(PEER_WAIT(&p, p.eof, 2000)); /* the server hangs up first */
    ck_assert(PEER_WAIT(&p, p.closes == 1, 2000));
    peer_expect_one_text(&p, "last words", 10);
    PEER_WAIT(&p, false, 50);
    ck_assert_int_eq(p.closes, 1);
    peer_finish(&p);
}
END_TEST

START_TEST(test_close_then_half_close)
{
    struct peer p;
    struct frame f;
    size_t big = (size_t)1 << 20;
    char *s = xmalloc(big);
    memset(s, 'q', big);
    peer_open(&p, NULL);
    /* The server has more queued than the socket holds when the client
     * sends its close and shuts its side: the hang-up is seen while the
     * answer still waits, and everything must still be written. */
    ck_assert_int_eq(ws_send_text(p.ws, s, big), 0);
    peer_send(&p, true, OP_CLOSE, "\x03\xe9", 2);
    ck_assert_int_eq(shutdown(p.fd, SHUT_WR), 0);
    int64_t deadline = util_mono_ms() + 100;
    while (util_mono_ms() < deadline)
        event_base_loop(p.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(p.closes, 0);
    expect_text_frame(&p, s, big);
    free(s);
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert_int_eq((f.payload[0] << 8) | f.payload[1], 1001);
    free(f.payload);
    ck_assert(PEER_WAIT(&p, p.closes == 1 && p.eof, 500));
    peer_finish(&p);
}
END_TEST

START_TEST(test_close_from_server)
{
    struct peer p;
    struct frame f;
    peer_open(&p, NULL);
    ws_close(p.ws, 4000, "going away now");
    ck_assert_int_eq(ws_send_text(p.ws, "late", 4), -1);
    ws_close(p.ws, 1000, "twice");
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert_uint_eq(f.len, 16);
    ck_assert_int_eq((f.payload[0] << 8) | f.payload[1], 4000);
    ck_assert_str_eq((char *)f.payload + 2, "going away now");
    free(f.payload);
    ck_assert_int_eq(p.closes, 0);
    int64_t start = util_mono_ms();
    peer_send(&p, true, OP_CLOSE, "\x0f\xa0", 2);
    ck_assert(PEER_WAIT(&p, p.closes == 1 && p.eof, 1500));
    ck_assert_int_lt(util_mono_ms() - start, 1000);
    ck_assert(!peer_parse(&p, &f)); /* nothing after the close */
    peer_finish(&p);
}
END_TEST

START_TEST(test_close_reason_cut)
{
    struct peer p;
    struct frame f;
    char reason[200];
    memset(reason, 'r', sizeof reason);
    memcpy(reason + 122, "\xe2\x82\xac", 3); /* a character across byte 123 */
    reason[sizeof reason - 1] = '\0';
    peer_open(&p, NULL);
    ws_close(p.ws, 1001, reason);
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert_uint_eq(f.len, 2 + 122);
    free(f.payload);
    peer_finish(&p);
}
END_TEST

START_TEST(test_close_timeout)
{
    struct peer p;
    struct frame f;
    peer_open(&p, NULL);
    int64_t start = util_mono_ms();
    ws_close(p.ws, 1000, "bye");
    ck_assert(peer_frame(&p, &f, 1000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    free(f.payload);
    ck_assert(PEER_WAIT(&p, p.closes == 1, 5000)); /* the peer never answers */
    int64_t took = util_mono_ms() - start;
    ck_assert_int_ge(took, 1500);
    ck_assert_int_le(took, 4000);
    ck_assert(PEER_WAIT(&p, p.eof, 1000));
    peer_finish(&p);
}
END_TEST

START_TEST(test_close_from_on_text)
{
    struct peer p;
    peer_open(&p, NULL);
    p.close_on_text = true;
    peer_send(&p, true, OP_TEXT, "one", 3);
    peer_send(&p, true, OP_TEXT, "two", 3);
    struct frame f;
    ck_assert(peer_frame(&p, &f, 2000));
    ck_assert_int_eq(f.opcode, OP_CLOSE);
    ck_assert_int_eq((f.payload[0] << 8) | f.payload[1], 1000);
    free(f.payload);
    peer_send(&p, true, OP_CLOSE, "\x03\xe8", 2);
    ck_assert(PEER_WAIT(&p, p.closes == 1, 2000));
    peer_expect_one_text(&p, "one", 3);
    peer_finish(&p);
}
END_TEST

START_TEST(test_peer_hangs_up)
{
    struct peer p;
    peer_open(&p, NULL);
    peer_send(&p, true, OP_TEXT, "bye", 3);
    close(p.fd);
    p.fd = -1;
    ck_assert(PEER_WAIT(&p, p.closes == 1, 500)); /* at once, not after a timeout */
    peer_expect_one_text(&p, "bye", 3);
    PEER_WAIT(&p, false, 50);
    ck_assert_int_eq(p.closes, 1);
    peer_finish(&p);
}
END_TEST

START_TEST(test_idle_ping_then_drop)
{
    struct ws_config config = {.max_message = 1024, .ping_interval_ms = 50};
    struct peer p;
    struct frame f;
    peer_open(&p, &config);
    int64_t start = util_mono_ms();
    ck_assert(peer_frame(&p, &f, 1000));
    ck_assert_int_eq(f.opcode, OP_PING);
    ck_assert(f.fin);
    ck_assert(!f.masked);
    free(f.payload);
    ck_assert_int_eq(p.closes, 0);
    ck_assert(PEER_WAIT(&p, p.closes == 1, 2000)); /* never answered */
    ck_assert_int_ge(util_mono_ms() - start, 90);  /* two intervals, less clock skew */
    ck_assert(PEER_WAIT(&p, p.eof, 1000));
    ck_assert(!peer_parse(&p, &f)); /* one ping, then silence means gone */
    peer_finish(&p);
}
END_TEST

START_TEST(test_idle_pong_keeps_alive)
{
    struct ws_config config = {.max_message = 1024, .ping_interval_ms = 60};
    struct peer p;
    struct frame f;
    int pings = 0;
    peer_open(&p, &config);
    int64_t end = util_mono_ms() + 600;
    while (util_mono_ms() < end) {
        peer_pump(&p);
        if (!peer_parse(&p, &f))
            continue;
        ck_assert_int_eq(f.opcode, OP_PING);
        peer_send(&p, true, OP_PONG, f.payload, f.len);
        free(f.payload);
        pings++;
    }
    ck_assert_int_ge(pings, 2);
    ck_assert_int_eq(p.closes, 0);
    /* Messages count as traffic too: no ping while the peer keeps talking
     * (once a ping that may already be on its way has been read). */
    peer_send(&p, true, OP_TEXT, "busy", 4);
    PEER_WAIT(&p, false, 30);
    while (peer_parse(&p, &f)) {
        ck_assert_int_eq(f.opcode, OP_PING);
        free(f.payload);
    }
    end = util_mono_ms() + 300;
    while (util_mono_ms() < end) {
        peer_send(&p, true, OP_TEXT, "busy", 4);
        PEER_WAIT(&p, false, 20);
        ck_assert(!peer_parse(&p, &f));
    }
    ck_assert_int_eq(p.closes, 0);
    peer_finish(&p);
}
END_TEST

/* Read the next frame: an unmasked, final text frame carrying S. */
static void expect_text_frame(struct peer *p, const char *s, size_t len)
{
    struct frame f;
    ck_assert(peer_frame(p, &f, 5000));
    ck_assert(f.fin);
    ck_assert(!f.masked);
    ck_assert_int_eq(f.opcode, OP_TEXT);
    ck_assert_uint_eq(f.len, len);
    ck_assert(memcmp(f.payload, s, len) == 0);
    free(f.payload);
}

START_TEST(test_send_text)
{
    struct peer p;
    size_t sizes[] = {0, 5, 125, 126, 300, 65535, 65536, 70000};
    peer_open(&p, NULL);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *s = xmalloc(sizes[i] + 1);
        memset(s, 'A' + (int)i, sizes[i]);
        ck_assert_int_eq(ws_send_text(p.ws, s, sizes[i]), 0);
        expect_text_frame(&p, s, sizes[i]);
        free(s);
    }
    /* Exact bytes of a short frame: FIN|text, unmasked length 2. */
    ck_assert_int_eq(ws_send_text(p.ws, "hi", 2), 0);
    ck_assert(PEER_WAIT(&p, evbuffer_get_length(p.rx) == 4, 2000));
    ck_assert(memcmp(evbuffer_pullup(p.rx, 4), "\x81\x02hi", 4) == 0);
    evbuffer_drain(p.rx, 4);
    peer_finish(&p);
}
END_TEST

START_TEST(test_send_text_refuses_bad_utf8)
{
    static const char *const bad[] = {"\xc0\xaf",
                                      "\xe0\x80\xaf",
                                      "\xf0\x80\x80\xaf",
                                      "\xed\xa0\x80",
                                      "\xf4\x90\x80\x80",
                                      "x\xe2\x82",
                                      "\x80",
                                      "\xfe"};
    struct peer p;
    peer_open(&p, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(ws_send_text(p.ws, bad[i], strlen(bad[i])), -1);
    const char *good = "\x7f \xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf "
                       "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf";
    ck_assert_int_eq(ws_send_text(p.ws, good, strlen(good)), 0);
    expect_text_frame(&p, good, strlen(good));
    ck_assert_uint_eq(evbuffer_get_length(p.rx), 0);
    peer_finish(&p);
}
END_TEST

START_TEST(test_echo_from_on_text)
{
    struct peer p;
    peer_open(&p, NULL);
    p.echo = true;
    peer_send(&p, true, OP_TEXT, "ping me back", 12);
    peer_send(&p, true, OP_TEXT, "and me", 6);
    expect_text_frame(&p, "ping me back", 12);
    expect_text_frame(&p, "and me", 6);
    peer_finish(&p);
}
END_TEST

START_TEST(test_output_pending_and_limit)
{
    struct peer p;
    peer_open(&p, NULL);
    ck_assert_int_eq(ws_send_text(p.ws, "hello", 5), 0);
    ck_assert_uint_eq(ws_output_pending(p.ws), 0); /* written at once: the socket had room */
    expect_text_frame(&p, "hello", 5);

    /* A peer that never reads is dropped once 8 MiB wait for it. */
    size_t big = (size_t)1 << 20;
    char *s = xmalloc(big);
    memset(s, 'z', big);
    int rc = 0, sent = 0;
    size_t before = 0;
    while (rc == 0 && sent < 40) {
        before = ws_output_pending(p.ws);
        rc = ws_send_text(p.ws, s, big);
        if (rc == 0)
            ck_assert_uint_le(before, (size_t)8 << 20); /* accepted while 8 MiB or less waited */
        sent += rc == 0;
    }
    free(s);
    ck_assert_int_eq(rc, -1);
    ck_assert_uint_gt(before, (size_t)8 << 20); /* refused once more than 8 MiB wait */
    ck_assert_int_ge(sent, 8);     /* (what the socket's buffers took on top does not count) */
    ck_assert_int_eq(p.closes, 0); /* on_close comes from the loop, not from inside the call */
    event_base_loop(p.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(p.closes, 1);
    peer_finish(&p);
}
END_TEST

START_TEST(test_send_one_huge_text)
{
    struct peer p; /* one message over the backlog ceiling is fine when read */
    size_t huge = (size_t)9 << 20;
    char *s = xmalloc(huge);
    memset(s, 'h', huge);
    peer_open(&p, NULL);
    ck_assert_int_eq(ws_send_text(p.ws, s, huge), 0);
    expect_text_frame(&p, s, huge);
    ck_assert_int_eq(ws_send_text(p.ws, "after", 5), 0);
    expect_text_frame(&p, "after", 5);
    ck_assert_int_eq(p.closes, 0);
    free(s);
    peer_finish(&p);
}
END_TEST

START_TEST(test_backlog_drops_on_input)
{
    struct peer p; /* a peer that talks but never reads is dropped when it talks */
    size_t huge = (size_t)9 << 20;
    char *s = xmalloc(huge);
    memset(s, 'h', huge);
    peer_open(&p, NULL);
    ck_assert_int_eq(ws_send_text(p.ws, s, huge), 0);
    free(s);
    for (int i = 0; i < 10; i++)
        event_base_loop(p.base, EVLOOP_NONBLOCK); /* the socket takes what it can */
    ck_assert_int_eq(p.closes, 0);
    peer_send(&p, true, OP_TEXT, "hello?", 6);
    int64_t deadline = util_mono_ms() + 2000;
    while (p.closes == 0 && util_mono_ms() < deadline)
        event_base_loop(p.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(p.closes, 1);
    ck_assert_uint_eq(p.n_texts, 0);
    peer_finish(&p);
}
END_TEST

/* A session that received a text frame of TEXT with the handshake. */
static void peer_open_early(struct peer *p, const char *text)
{
    size_t n;
    unsigned char *f = frame_build(true, OP_TEXT, text, strlen(text), false, &n);
    peer_open_with(p, NULL, f, n);
    free(f);
}

START_TEST(test_early_bytes_processed)
{
    struct peer p;
    peer_open_early(&p, "came with the handshake");
    ck_assert_uint_eq(p.n_texts, 0); /* not from inside ws_session_new() */
    ck_assert(PEER_WAIT(&p, p.n_texts == 1, 2000));
    peer_expect_one_text(&p, "came with the handshake", 23);
    peer_finish(&p);
}
END_TEST

START_TEST(test_early_bytes_then_discarded)
{
    /* The owner discards the session before the loop turns (a worker torn
     * down in the same pass): the pending read of the early bytes goes with
     * it, and the bufferevent is freed (a deferred bufferevent callback held
     * a reference that only running it released: valgrind and LeakSanitizer
     * reported the bufferevent lost). */
    struct peer p;
    peer_open_early(&p, "never read");
    ws_session_discard(p.ws);
    p.ws = NULL;
    ck_assert_uint_eq(p.n_texts, 0);
    ck_assert_int_eq(p.closes, 0);
    peer_free(&p); /* the loop is freed without another turn */
}
END_TEST

START_TEST(test_session_ids)
{
    struct peer a, b;
    peer_open(&a, NULL);
    peer_open(&b, NULL);
    ck_assert_uint_gt(ws_session_id(a.ws), 0);
    ck_assert_uint_eq(ws_session_id(b.ws), ws_session_id(a.ws) + 1);
    peer_finish(&a);
    peer_finish(&b);
    struct ws_config config;
    ws_config_default(&config);
    ck_assert_uint_eq(config.max_message, 1 << 20);
    ck_assert_int_eq(config.ping_interval_ms, 30000);
}
END_TEST

/* The client of a held request went away. */
static void upgrade_held_gone(struct http_conn *conn, void *arg)
{
    struct peer *p = arg;
    ck_assert_ptr_eq(conn, p->held_conn);
    p->held_gone = true;
}

/* The HTTP layer's Host/Origin rule, as the programs set one. */
static const struct guard_policy *upgrade_guard(void *arg)
{
    static const char *const names[] = {"h", NULL};
    static const char *const allowed[] = {"https://ok.example", NULL};
    static const struct guard_policy policy = {names, allowed, NULL};
    (void)arg;
    return &policy;
}

/* Upgrade every request that passes ws_upgrade_check(), else refuse it. */
static void upgrade_on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    struct peer *p = arg;
    struct ws_config config = peer_config();
    char detail[128];
    int status = ws_upgrade_check(req, detail, sizeof detail);
    if (strcmp(req->path, "/later") == 0) { /* the test answers it */
        p->held_conn = conn;
        p->held_req = req;
        http_conn_set_close_cb(conn, upgrade_held_gone, p);
        return;
    }
    if (strcmp(req->path, "/unchecked") == 0) { /* ws_accept() must still refuse no key */
        p->ws = ws_accept(conn, req, &config, &peer_callbacks, p);
        return;
    }
    if (status) {
        http_respond_error(conn, status, detail, NULL);
        return;
    }
    p->ws = ws_accept(conn, req, &config, &peer_callbacks, p);
    ck_assert_ptr_nonnull(p->ws);
}

/* An HTTP server on a loopback port for P, and P's client connected to it. */
static struct http_server *upgrade_start(struct peer *p, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    struct http_server_config config = {
        .on_request = upgrade_on_request, .arg = p, .guard = upgrade_guard};
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    http_limits_default(&config.limits);
    struct http_server *server = http_server_new(p->base, lfd, &config);
    ck_assert_ptr_nonnull(server);
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(p->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(util_set_nonblock_cloexec(p->fd), 0);
    return server;
}

static char *upgrade_read_head(struct peer *p);

/* Send an upgrade request with the header line EXTRA and the bytes AFTER,
 * all in one write; return the response head the server sent (caller frees). */
static char *upgrade_send(struct peer *p, int port, const char *extra, const void *after,
                          size_t after_len)
{
    char *req = xasprintf("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: " GOOD_KEY "\r\n"
                          "%s\r\n",
                          port, extra);
    size_t req_len = strlen(req);
    req = xrealloc(req, req_len + after_len);
    if (after_len)
        memcpy(req + req_len, after, after_len);
    peer_write(p, req, req_len + after_len);
    free(req);
    return upgrade_read_head(p);
}

/* Wait for the head of the server's response; return it (caller frees). */
static char *upgrade_read_head(struct peer *p)
{
    struct evbuffer_ptr end;
    ck_assert(PEER_WAIT(p, (end = evbuffer_search(p->rx, "\r\n\r\n", 4, NULL)).pos >= 0, 2000));
    size_t head_len = (size_t)end.pos + 4;
    char *head = xmalloc(head_len + 1);
    evbuffer_remove(p->rx, head, head_len);
    head[head_len] = '\0';
    return head;
}

START_TEST(test_accept_end_to_end)
{
    struct peer p;
    int port;
    size_t n;
    peer_init(&p);
    struct http_server *server = upgrade_start(&p, &port);
    unsigned char *f = frame_build(true, OP_TEXT, "right behind", 12, false, &n);
    char *extra = xasprintf("Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:%d\r\n", port);
    char *head = upgrade_send(&p, port, extra, f, n);
    free(extra);
    free(f);
    ck_assert_msg(strncmp(head, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0, "%s", head);
    ck_assert_ptr_nonnull(strstr(head, "\r\nUpgrade: websocket\r\n"));
    ck_assert_ptr_nonnull(strstr(head, "\r\nConnection: Upgrade\r\n"));
    ck_assert_ptr_nonnull(
        strstr(head, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    free(head);
    ck_assert(PEER_WAIT(&p, p.n_texts == 1, 2000));
    peer_expect_one_text(&p, "right behind", 12);
    ck_assert_uint_eq(http_server_connections(server), 0);
    ck_assert_int_eq(ws_send_text(p.ws, "welcome", 7), 0);
    expect_text_frame(&p, "welcome", 7);
    peer_send(&p, true, OP_CLOSE, "\x03\xe8", 2);
    peer_expect_close(&p, 1000);
    peer_end(&p);
    http_server_free(server);
    peer_free(&p);
}
END_TEST

START_TEST(test_accept_after_client_left)
{
    struct peer p;
    int port;
    struct ws_config config = peer_config();
    peer_init(&p);
    struct http_server *server = upgrade_start(&p, &port);
    const char *req = "GET /later HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: " GOOD_KEY "\r\n\r\n";
    peer_write(&p, req, strlen(req));
    ck_assert(PEER_WAIT(&p, p.held_conn != NULL, 2000));
    close(p.fd);
    p.fd = -1;
    ck_assert(PEER_WAIT(&p, p.held_gone, 2000));
    ck_assert_ptr_null(ws_accept(p.held_conn, p.held_req, &config, &peer_callbacks, &p));
    PEER_WAIT(&p, false, 20);
    ck_assert_int_eq(p.closes, 0);
    http_server_free(server);
    peer_free(&p);
}
END_TEST

/* Send an upgrade with the header lines EXTRA; expect STATUS and no session. */
static void expect_upgrade_refused(const char *extra, const char *status, const char *detail)
{
    struct peer p;
    int port;
    peer_init(&p);
    struct http_server *server = upgrade_start(&p, &port);
    char *head = upgrade_send(&p, port, extra, NULL, 0);
    ck_assert_msg(strncmp(head, status, strlen(status)) == 0, "%s", head);
    free(head);
    ck_assert(PEER_WAIT(&p, evbuffer_search(p.rx, detail, strlen(detail), NULL).pos >= 0, 2000));
    ck_assert_ptr_null(p.ws);
    ck_assert_int_eq(p.closes, 0);
    http_server_free(server);
    peer_free(&p);
}

START_TEST(test_accept_refusals)
{
    expect_upgrade_refused("Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n",
                           "HTTP/1.1 403 ", "origin not allowed");
    expect_upgrade_refused("Sec-WebSocket-Version: 8\r\n", "HTTP/1.1 426 ", "13");

    struct peer p; /* ws_accept() without a usable key answers 400 itself */
    int port;
    peer_init(&p);
    struct http_server *server = upgrade_start(&p, &port);
    const char *req = "GET /unchecked HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    peer_write(&p, req, strlen(req));
    char *head = upgrade_read_head(&p);
    ck_assert_msg(strncmp(head, "HTTP/1.1 400 ", 13) == 0, "%s", head);
    free(head);
    ck_assert_ptr_null(p.ws);
    http_server_free(server);
    peer_free(&p);
}
END_TEST

/* All ws tests in one suite. */
static Suite *check_ws_suite(void)
{
    Suite *s = suite_create("ws");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_accept_key_rfc);
    tcase_add_test(tc, test_upgrade_check);
    tcase_add_test(tc, test_upgrade_check_refusals);
    tcase_add_test(tc, test_upgrade_check_keys);
    tcase_add_test(tc, test_text_whole);
    tcase_add_test(tc, test_text_long_lengths);
    tcase_add_test(tc, test_text_byte_at_a_time);
    tcase_add_test(tc, test_text_split_everywhere);
    tcase_add_test(tc, test_fragmented_with_ping);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_binary_refused);
    tcase_add_test(tc, test_too_big);
    tcase_add_test(tc, test_close_codes);
    tcase_add_test(tc, test_close_reason_split);
    tcase_add_test(tc, test_unmasked_refused);
    tcase_add_test(tc, test_protocol_errors);
    tcase_add_test(tc, test_clean_close_from_peer);
    tcase_add_test(tc, test_close_then_half_close);
    tcase_add_test(tc, test_close_from_server);
    tcase_add_test(tc, test_close_reason_cut);
    tcase_add_test(tc, test_close_timeout);
    tcase_add_test(tc, test_close_from_on_text);
    tcase_add_test(tc, test_peer_hangs_up);
    tcase_add_test(tc, test_idle_ping_then_drop);
    tcase_add_test(tc, test_idle_pong_keeps_alive);
    tcase_add_test(tc, test_send_text);
    tcase_add_test(tc, test_send_text_refuses_bad_utf8);
    tcase_add_test(tc, test_echo_from_on_text);
    tcase_add_test(tc, test_output_pending_and_limit);
    tcase_add_test(tc, test_send_one_huge_text);
    tcase_add_test(tc, test_backlog_drops_on_input);
    tcase_add_test(tc, test_early_bytes_processed);
    tcase_add_test(tc, test_early_bytes_then_discarded);
    tcase_add_test(tc, test_session_ids);
    tcase_add_test(tc, test_accept_end_to_end);
    tcase_add_test(tc, test_accept_refusals);
    tcase_add_test(tc, test_accept_after_client_left);
    suite_add_tcase(s, tc);
    return s;
}

/* Run the suite; the exit status says whether everything passed. */
int main(void)
{
    /* The sessions under test write to sockets the test closes. */
    signal(SIGPIPE, SIG_IGN);
    return check_run(check_ws_suite());
}
