/*
 * echo: a trivial WebSocket server that answers each text message the way a
 * hive worker answers a task — ack, started, chunk and response frames
 * carrying the message's task_id — but does no work, no disk and no JSON
 * parsing. Run against it, wsload shows its own ceiling: the rate it could
 * drive if the server cost nothing.
 *
 *   echo [--port N]     (0 or absent: the kernel picks; prints "listening on PORT")
 *
 * One thread, epoll, 127.0.0.1 only; the handshake computes the real
 * Sec-WebSocket-Accept (SHA-1 + base64 from libcrypto).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    int upgraded;
    char *in, *out;
    size_t in_len, in_cap, out_len, out_off, out_cap;
    int want_out;
};

static int epfd;

/* Allocate or die. */
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

/* Append to the output buffer. */
static void out_add(struct conn *c, const void *p, size_t n)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* Close and forget a connection. */
static void conn_close(struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Write what is pending; 0 on success, -1 if the connection died. */
static int conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -1;
        c->out_off += (size_t)n;
    }
    int want = c->out_off < c->out_len;
    if (want != c->want_out) {
        c->want_out = want;
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

/* One unmasked server frame. */
static void frame_send(struct conn *c, int opcode, const char *p, size_t n)
{
    unsigned char h[4];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126)
        h[1] = (unsigned char)n;
    else {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    }
    out_add(c, h, hl);
    out_add(c, p, n);
}

/* Answer one task message with the four frames a worker sends. */
static void task_answer(struct conn *c, const char *m, size_t len)
{
    char id[80] = "none";
    const char *k = memmem(m, len, "\"task_id\":\"", 11);
    if (k) {
        k += 11;
        size_t n = 0;
        while (k + n < m + len && k[n] != '"' && n < sizeof id - 1)
            n++;
        memcpy(id, k, n);
        id[n] = 0;
    }
    static const char *const fmt[] = {
        "{\"type\":\"ack\",\"status\":\"queued\",\"task_id\":\"%s\",\"timestamp\":"
        "\"2026-01-01T00:00:00.000Z\"}",
        "{\"type\":\"started\",\"task_id\":\"%s\",\"timestamp\":\"2026-01-01T00:00:00.000Z\"}",
        "{\"type\":\"chunk\",\"task_id\":\"%s\",\"content\":\"# Mock response\\n\\nx\\n\"}",
        "{\"type\":\"response\",\"task_id\":\"%s\",\"content\":\"# Mock response\\n\\nx\\n\","
        "\"success\":true,\"error\":null,\"duration_seconds\":0.0,\"source\":\"websocket\","
        "\"timestamp\":\"2026-01-01T00:00:00.000Z\"}"};
    for (int i = 0; i < 4; i++) {
        char buf[512];
        int n = snprintf(buf, sizeof buf, fmt[i], id);
        frame_send(c, 1, buf, (size_t)n);
    }
}

/* The upgrade: 0 done, 1 need more, -1 bad. */
static int handshake(struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len > 16384 ? -1 : 1;
    char *key = memmem(c->in, (size_t)(end - c->in), "Sec-WebSocket-Key: ", 19);
    if (!key)
        return -1;
    key += 19;
    size_t klen = strcspn(key, "\r\n");
    char src[128];
    if (klen > 64)
        return -1;
    snprintf(src, sizeof src, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)klen, key);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)src, strlen(src), sha);
    unsigned char acc[64];
    EVP_EncodeBlock(acc, sha, SHA_DIGEST_LENGTH);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    out_add(c, resp, (size_t)n);
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->upgraded = 1;
    return 0;
}

/* Handle every whole frame: 0, or -1 to close. */
static int frames(struct conn *c)
{
    size_t off = 0;
    while (c->in_len - off >= 2) {
        unsigned char *p = (unsigned char *)c->in + off;
        size_t avail = c->in_len - off, h = 2;
        uint64_t len = p[1] & 0x7f;
        int opcode = p[0] & 0x0f;
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (!(p[1] & 0x80))
            return -1; /* clients must mask */
        if (avail < h + 4 + len)
            break;
        unsigned char *mask = p + h;
        char *payload = (char *)p + h + 4;
        for (uint64_t i = 0; i < len; i++)
            payload[i] ^= (char)mask[i & 3];
        off += h + 4 + len;
        if (opcode == 8)
            return -1;
        if (opcode == 9)
            frame_send(c, 10, payload, len);
        else if (opcode == 1)
            task_answer(c, payload, len);
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

/* Read and answer; -1 to close. */
static int conn_read(struct conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -1;
        c->in_len += (size_t)n;
    }
    if (!c->upgraded) {
        int r = handshake(c);
        if (r != 0)
            return r < 0 ? -1 : 0;
    }
    if (frames(c) < 0)
        return -1;
    return conn_flush(c);
}

int main(int argc, char **argv)
{
    int port = 0;
    if (argc == 3 && strcmp(argv[1], "--port") == 0)
        port = atoi(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: echo [--port N]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("echo: listen");
        return 1;
    }
    printf("listening on %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int r = 0;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                r = conn_read(c);
            if (r == 0 && (evs[i].events & EPOLLOUT))
                r = conn_flush(c);
            if (r < 0)
                conn_close(c);
        }
    }
}
