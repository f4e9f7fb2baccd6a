/*
 * fuzz_ws: WebSocket sessions (common/ws.c over wslay) fed arbitrary client
 * bytes. Each input gets a fresh event_base and a session on one end of an
 * AF_UNIX socketpair; the harness plays the client on the other end, writes
 * the payload in pieces, then half-closes or closes and waits for the
 * session to end. The application side checks what ws.h promises: only
 * whole, valid UTF-8 text messages within max_message reach on_text, and
 * on_close comes exactly once; the client side checks every frame the
 * server sends (fuzz_peer_frame).
 *
 * Flags (low bits of the first byte):
 *   1  max_message 64 (1009 cheaply)
 *   2  echo every message with ws_send_text (else only odd-sized ones)
 *   4  after the first message, ws_close() with that message as the reason
 *   8  half-close the client after the payload and read on before closing
 *   16 put the first piece in the session's input before it starts (bytes
 *      that came right behind the handshake)
 *   32 frames mode: the payload describes frames that the harness encodes
 *      and masks: [b0: FIN/RSV/opcode][len: 0-125, 126 or 127 = 16-bit length
 *      follows; +128 = send unmasked][payload]...
 * The fourth byte (see fuzz_harness.h) moves the virtual clock after each
 * piece (server pings every 30 s, the idle drop, the 2 s close wait), has
 * the server close with 1001 before the client leaves ("free early"), or
 * makes the client a slow reader.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdint.h>

#include "common/util.h"
#include "common/ws.h"
#include "fuzz_harness.h"

#define FLAG_SMALL 1
#define FLAG_ECHO 2
#define FLAG_CLOSE 4
#define FLAG_HALF_CLOSE 8
#define FLAG_PREFILL 16
#define FLAG_FRAMES 32

#define FUZZ_SMALL_MESSAGE 64

/* What the application side saw of the session. */
struct fuzz_ws {
    unsigned flags;
    struct ws_config cfg;
    int texts;
    int closes;
};

static struct fuzz_ws fuzz;

/* Once per process: quiet logs. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_process_init();
    return 0;
}

/* A promise of ws.h broken: stop with the reason. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_ws: %s\n", what);
    abort();
}

/* An independent strict UTF-8 check (RFC 3629). */
static bool fuzz_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return false;
        if (len - i - 1 < n || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

/* ---- the client's check of what the server sends ----
 *
 * Server frames must be well-formed (RFC 6455 §5): unmasked, no RSV bits,
 * known opcodes, control frames unfragmented and at most 125 bytes, text
 * (and close reasons) valid UTF-8, close codes that may be sent, nothing
 * after the close frame, and never binary (the application only sends
 * text). A bad cut of a long close reason, for one, shows up here. */

/* The client's parse of the server's frames. */
struct fuzz_peer {
    struct evbuffer *rx;  /* received, not yet parsed */
    struct evbuffer *msg; /* text message being assembled */
    bool in_message;
    bool closed;
};

static struct fuzz_peer fuzz_peer;

/* A frame from the server broke the protocol: show it and stop. */
static void fuzz_peer_fail(const char *why, const uint8_t *frame, size_t len)
{
    fprintf(stderr, "fuzz_ws: the server sent a bad frame: %s\n  frame:", why);
    for (size_t i = 0; i < len && i < 64; i++)
        fprintf(stderr, " %02x", frame[i]);
    fprintf(stderr, "%s\n", len > 64 ? " ..." : "");
    abort();
}

/* True for a close code an endpoint may send (RFC 6455 §7.4). */
static bool fuzz_close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* Check one whole frame (header parsed by the caller). */
static void fuzz_peer_frame(const uint8_t *f, size_t flen, const uint8_t *payload, size_t len)
{
    bool fin = f[0] & 0x80;
    unsigned op = f[0] & 0x0f;
    if (fuzz_peer.closed)
        fuzz_peer_fail("a frame after the close frame", f, flen);
    if (f[0] & 0x70)
        fuzz_peer_fail("RSV bits set", f, flen);
    if (f[1] & 0x80)
        fuzz_peer_fail("a masked server frame", f, flen);
    if (op >= 8) {
        if (!fin || len > 125)
            fuzz_peer_fail("a fragmented or long control frame", f, flen);
        if (op == 8) {
            fuzz_peer.closed = true;
            if (len == 1)
                fuzz_peer_fail("a close frame with a one-byte payload", f, flen);
            if (len >= 2 && !fuzz_close_code_ok((unsigned)payload[0] << 8 | payload[1]))
                fuzz_peer_fail("a close code that must not be sent", f, flen);
            if (len > 2 && !fuzz_utf8_valid(payload + 2, len - 2))
                fuzz_peer_fail("a close reason that is not UTF-8", f, flen);
        } else if (op != 9 && op != 10) {
            fuzz_peer_fail("a reserved control opcode", f, flen);
        }
        return;
    }
    if (op == 2)
        fuzz_peer_fail("a binary frame", f, flen);
    if (op != 0 && op != 1)
        fuzz_peer_fail("a reserved data opcode", f, flen);
    if ((op == 0) != fuzz_peer.in_message)
        fuzz_peer_fail(op == 0 ? "a continuation outside a message" : "a new message inside one", f,
                       flen);
    evbuffer_add(fuzz_peer.msg, payload, len);
    fuzz_peer.in_message = !fin;
    if (fin) {
        size_t n = evbuffer_get_length(fuzz_peer.msg);
        if (!fuzz_utf8_valid(evbuffer_pullup(fuzz_peer.msg, -1), n))
            fuzz_peer_fail("a text message that is not UTF-8", f, flen);
        evbuffer_drain(fuzz_peer.msg, n);
    }
}

/* Bytes from the server: check every whole frame among them. */
static void fuzz_peer_received(int fd, const char *data, size_t len)
{
    (void)fd;
    evbuffer_add(fuzz_peer.rx, data, len);
    for (;;) {
        size_t have = evbuffer_get_length(fuzz_peer.rx);
        const uint8_t *b = evbuffer_pullup(fuzz_peer.rx, have < 14 ? -1 : 14);
        if (have < 2)
            return;
        size_t hlen = 2, plen = b[1] & 0x7f;
        if (plen == 126) {
            if (have < 4)
                return;
            hlen = 4, plen = (size_t)b[2] << 8 | b[3];
            if (plen < 126)
                fuzz_peer_fail("a length that is not minimal", b, hlen);
        } else if (plen == 127) {
            if (have < 10)
                return;
            hlen = 10, plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | b[i];
            if (plen <= 0xffff || plen >> 63)
                fuzz_peer_fail("a length that is not minimal or too big", b, hlen);
        }
        if (b[1] & 0x80)
            hlen += 4;
        if (have < hlen || have - hlen < plen)
            return;
        const uint8_t *f = evbuffer_pullup(fuzz_peer.rx, (ssize_t)(hlen + plen));
        fuzz_peer_frame(f, hlen + plen, f + hlen, plen);
        evbuffer_drain(fuzz_peer.rx, hlen + plen);
    }
}

/* One whole text message. */
static void fuzz_on_text(struct ws_session *ws, const char *data, size_t len, void *arg)
{
    (void)arg;
    fuzz_activity++;
    if (fuzz.closes)
        fuzz_fail("on_text after on_close");
    if (!data)
        fuzz_fail("on_text with NULL data");
    if (len > fuzz.cfg.max_message)
        fuzz_fail("on_text with a message over max_message");
    if (!fuzz_utf8_valid((const unsigned char *)data, len))
        fuzz_fail("on_text with invalid UTF-8");
    fuzz.texts++;
    if (fuzz.flags & FLAG_ECHO || len % 2)
        ws_send_text(ws, data, len);
    (void)ws_output_pending(ws);
    if (fuzz.flags & FLAG_CLOSE && fuzz.texts == 1) {
        char *reason = xstrndup(data, len); /* cut at a NUL, like any C string */
        ws_close(ws, 1000, reason);
        free(reason);
    }
}

/* The session ended; it must say so exactly once. */
static void fuzz_on_close(struct ws_session *ws, void *arg)
{
    (void)ws, (void)arg;
    fuzz_activity++;
    if (fuzz.closes++)
        fuzz_fail("on_close twice");
}

/* Frames mode: encode the frame descriptions of IN into OUT (masked). */
static void fuzz_build_frames(const struct fuzz_input *in, struct evbuffer *out)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    const uint8_t *p = in->data, *end = in->data + in->len;

    while (end - p >= 2) {
        uint8_t b0 = *p++, lb = *p++;
        bool unmasked = lb & 0x80;
        size_t len = lb & 0x7f;
        int form = len < 126 ? 0 : (int)len - 125; /* 1: 16-bit, 2: 64-bit */
        if (form) {
            if (end - p < 2)
                break;
            len = (size_t)p[0] << 8 | p[1];
            p += 2;
        }
        uint8_t head[14];
        size_t n = 0;
        head[n++] = b0;
        head[n++] = (uint8_t)((unmasked ? 0 : 0x80) | (form == 0 ? len : 125 + (size_t)form));
        if (form == 1) {
            head[n++] = (uint8_t)(len >> 8);
            head[n++] = (uint8_t)len;
        } else if (form == 2) {
            for (int i = 7; i >= 0; i--)
                head[n++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
        if (!unmasked) {
            memcpy(head + n, key, 4);
            n += 4;
        }
        evbuffer_add(out, head, n);
        size_t have = (size_t)(end - p) < len ? (size_t)(end - p) : len;
        for (size_t i = 0; i < have; i++) {
            uint8_t c = p[i] ^ (unmasked ? 0 : key[i % 4]);
            evbuffer_add(out, &c, 1);
        }
        p += have;
    }
}

/* True once on_close came. */
static bool fuzz_closed(void *arg)
{
    (void)arg;
    return fuzz.closes > 0;
}

/* One input: a session on a socketpair, the payload, teardown. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct ws_callbacks cbs = {fuzz_on_text, fuzz_on_close};
    struct fuzz_input in;
    struct evbuffer *frames = NULL;
    int sv[2];

    fuzz_input_parse(data, size, &in);
    memset(&fuzz, 0, sizeof fuzz);
    fuzz.flags = in.flags;
    ws_config_default(&fuzz.cfg);
    if (fuzz.flags & FLAG_SMALL)
        fuzz.cfg.max_message = FUZZ_SMALL_MESSAGE;
    if (fuzz.flags & FLAG_FRAMES) {
        frames = evbuffer_new();
        fuzz_build_frames(&in, frames);
        in.len = evbuffer_get_length(frames);
        in.data = evbuffer_pullup(frames, -1);
    }

    fuzz_peer = (struct fuzz_peer){.rx = evbuffer_new(), .msg = evbuffer_new()};
    fuzz_received = fuzz_peer_received;
    fuzz_clock_freeze();
    struct event_base *base = event_base_new();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    fuzz_nonblock(sv[0]);
    fuzz_nonblock(sv[1]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (fuzz.flags & FLAG_PREFILL && in.len) {
        size_t n = in.piece[0] && in.piece[0] < in.len ? in.piece[0] : in.len;
        struct evbuffer *input = bufferevent_get_input(bev);
        evbuffer_unfreeze(input, 0); /* only the bufferevent may add there */
        evbuffer_add(input, in.data, n);
        evbuffer_freeze(input, 0);
        in.data += n;
        in.len -= n;
    }
    struct ws_session *ws = ws_session_new(bev, &fuzz.cfg, &cbs, NULL);
    if (!ws)
        abort();
    (void)ws_session_id(ws);
    fuzz_send_pieces(base, sv[1], &in);
    fuzz_loop_quiet(base, &sv[1], 1);
    /* A client that stays but says nothing: pings, then the idle drop. */
    fuzz_tick(base, &sv[1], 1, in.step_ms);
    fuzz_tick(base, &sv[1], 1, in.step_ms);
    if (fuzz.flags & FLAG_HALF_CLOSE) {
        shutdown(sv[1], SHUT_WR);
        fuzz_loop_quiet(base, &sv[1], 1);
        fuzz_tick(base, &sv[1], 1, in.step_ms);
    }
    if (in.free_early && !fuzz.closes) {
        ws_close(ws, 1001, "going away");
        fuzz_loop_quiet(base, &sv[1], 1);
    }
    close(sv[1]);
    /* A session whose peer is gone must end, at the latest when its close
     * wait or the idle drop runs out. */
    if (!fuzz_wind_down(base, fuzz_closed, NULL))
        fuzz_fail("the session did not end after its peer closed the socket");
    event_base_free(base);
    fuzz_clock_thaw();
    evbuffer_free(fuzz_peer.rx);
    evbuffer_free(fuzz_peer.msg);
    if (frames)
        evbuffer_free(frames);
    return 0;
}
