/*
 * wsload: a WebSocket load client for hive's task protocol, small enough not
 * to be the bottleneck (one thread, epoll, raw RFC 6455 frames; client frames
 * masked with a fixed key, which the protocol allows).
 *
 * Each of CONNS connections sends ROUNDS tasks {"type":"task","command":...,
 * "task_id":"PREFIX-c-s"}, keeping WINDOW of them outstanding, and a round
 * trip ends at the task's {"type":"response"} (or {"type":"error"}). The task
 * id in every answer says which send it belongs to, so the latencies send ->
 * ack, send -> started and send -> response are exact even with WINDOW > 1.
 * GAP_US > 0 waits that long after each response before the next send (an
 * idle bot between tasks, for dispatch latency). DURATION > 0 bounds the
 * load in time too: after DURATION seconds no new task is sent, the ones in
 * flight are awaited, and the rate is what was done meanwhile.
 *
 * Prints one JSON object with counts, the elapsed time from the last
 * handshake to the last response, and latency percentiles in microseconds.
 * Exit status 1 if anything failed (connect, handshake, close, timeout).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct buf {
    char *data;
    size_t len, cap, off; /* bytes [off, len) are pending */
};

struct conn {
    int fd, index;
    int handshaken, closed;
    int want_out; /* registered for EPOLLOUT */
    struct buf in, out;
    long sent, done;    /* tasks sent, round trips finished */
    long outstanding;   /* sent and not finished */
    int64_t *sent_ns;   /* send time by sequence number */
    int64_t next_at_ns; /* GAP_US: earliest next send; 0 = now */
    char *msg;          /* a fragmented message being assembled */
    size_t msg_len, msg_cap;
};

static struct {
    const char *host, *path, *prefix, *command, *origin;
    int port, conns, window;
    long rounds;
    double timeout_s;
    long gap_us;
    double duration_s;
} opt = {"127.0.0.1", "/ws", "B", "x", NULL, 0, 1, 1, 100, 60.0, 0, 0};

static int draining;       /* DURATION is over: send nothing new */
static int64_t t_last_end; /* when the last round trip finished */

static struct {
    long acks, started, responses, errors, frames_in, other;
    long lat_n[3];
    int64_t *lat[3]; /* 0 ack, 1 started, 2 response */
    int failures;
    char failure[256];
} st;

static int epfd;

/* Monotonic nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Allocate or die. */
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(1);
    }
    return p;
}

/* Append LEN bytes to B. */
static void buf_add(struct buf *b, const void *p, size_t len)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + len > b->cap) {
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        while (b->len + len > b->cap)
            b->cap = b->cap ? b->cap * 2 : 4096;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
}

/* Record the first failure and count it. */
static void fail(struct conn *c, const char *what)
{
    if (st.failures++ == 0)
        snprintf(st.failure, sizeof st.failure, "conn %d: %s", c ? c->index : -1, what);
    if (c && !c->closed) {
        c->closed = 1;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
}

/* Queue one masked client frame. */
static void frame_send(struct conn *c, int opcode, const char *payload, size_t len)
{
    unsigned char hdr[14];
    size_t h = 0;
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    hdr[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126)
        hdr[h++] = (unsigned char)(0x80 | len);
    else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (unsigned char)(len >> 8);
        hdr[h++] = (unsigned char)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(hdr + h, mask, 4);
    h += 4;
    buf_add(&c->out, hdr, h);
    char tmp[512];
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof tmp ? len - done : sizeof tmp;
        for (size_t i = 0; i < n; i++)
            tmp[i] = (char)(payload[done + i] ^ mask[(done + i) & 3]);
        buf_add(&c->out, tmp, n);
        done += n;
    }
}

/* Write what is pending; wait for EPOLLOUT only while something is left. */
static void conn_flush(struct conn *c)
{
    while (!c->closed && c->out.len > c->out.off) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            fail(c, "send failed");
            return;
        }
        c->out.off += (size_t)n;
    }
    int want = c->out.len > c->out.off;
    if (c->closed || want == c->want_out)
        return;
    c->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send the connection's next task. */
static void task_send(struct conn *c)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"task\",\"command\":\"%s\",\"task_id\":\"%s-%d-%ld\"}",
                     opt.command, opt.prefix, c->index, c->sent);
    c->sent_ns[c->sent] = now_ns();
    c->sent++;
    c->outstanding++;
    frame_send(c, 1, msg, (size_t)n);
}

/* Send as many tasks as the window and the gap allow. */
static void conn_pump(struct conn *c)
{
    while (!c->closed && c->handshaken && !draining && c->sent < opt.rounds &&
           c->outstanding < opt.window) {
        if (opt.gap_us > 0 && c->next_at_ns > now_ns())
            break;
        task_send(c);
        if (opt.gap_us > 0)
            break;
    }
    conn_flush(c);
}

/* The sequence number in "task_id":"PREFIX-c-s", or -1. */
static long msg_seq(const char *m, size_t len)
{
    const char *k = memmem(m, len, "\"task_id\":\"", 11);
    if (!k)
        return -1;
    k += 11;
    const char *end = memchr(k, '"', len - (size_t)(k - m));
    const char *dash = NULL;
    for (const char *p = k; end && p < end; p++)
        if (*p == '-')
            dash = p;
    if (!dash)
        return -1;
    return strtol(dash + 1, NULL, 10);
}

/* Record one latency of kind K for send SEQ. */
static void latency_add(struct conn *c, int k, long seq)
{
    if (seq < 0 || seq >= c->sent)
        return;
    st.lat[k][st.lat_n[k]++] = now_ns() - c->sent_ns[seq];
}

/* One complete text message from the server. */
static void msg_handle(struct conn *c, const char *m, size_t len)
{
    const char *t = memmem(m, len, "\"type\":\"", 8);
    if (!t) {
        st.other++;
        return;
    }
    t += 8;
    size_t rest = len - (size_t)(t - m);
    long seq = msg_seq(m, len);
    if (rest >= 4 && memcmp(t, "ack\"", 4) == 0) {
        st.acks++;
        latency_add(c, 0, seq);
    } else if (rest >= 8 && memcmp(t, "started\"", 8) == 0) {
        st.started++;
        latency_add(c, 1, seq);
    } else if (rest >= 9 && memcmp(t, "response\"", 9) == 0) {
        st.responses++;
        latency_add(c, 2, seq);
        goto finished;
    } else if (rest >= 6 && memcmp(t, "error\"", 6) == 0) {
        st.errors++;
        goto finished;
    } else
        st.other++;
    return;
finished:
    t_last_end = now_ns();
    c->done++;
    c->outstanding--;
    if (opt.gap_us > 0)
        c->next_at_ns = now_ns() + opt.gap_us * 1000;
}

/* Parse every whole frame in the input buffer. */
static void frames_parse(struct conn *c)
{
    for (;;) {
        unsigned char *p = (unsigned char *)c->in.data + c->in.off;
        size_t avail = c->in.len - c->in.off;
        if (avail < 2)
            return;
        int fin = p[0] & 0x80, opcode = p[0] & 0x0f, masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4)
                return;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (masked)
            h += 4;
        if (avail < h + len)
            return;
        char *payload = (char *)p + h;
        if (masked)
            for (uint64_t i = 0; i < len; i++)
                payload[i] ^= (char)p[h - 4 + (i & 3)];
        c->in.off += h + len;
        st.frames_in++;
        if (opcode == 9) {
            frame_send(c, 10, payload, len);
        } else if (opcode == 8) {
            fail(c, "server closed the connection");
            return;
        } else if (opcode == 1 || opcode == 0) {
            if (fin && opcode == 1 && c->msg_len == 0)
                msg_handle(c, payload, len);
            else {
                if (c->msg_len + len > c->msg_cap) {
                    c->msg_cap = (c->msg_len + len) * 2;
                    c->msg = xrealloc(c->msg, c->msg_cap);
                }
                memcpy(c->msg + c->msg_len, payload, len);
                c->msg_len += len;
                if (fin) {
                    msg_handle(c, c->msg, c->msg_len);
                    c->msg_len = 0;
                }
            }
        } else if (opcode != 10) {
            fail(c, "unexpected frame opcode");
            return;
        }
    }
}

/* The handshake answer: 101 and the end of the head, or wait for more. */
static void handshake_parse(struct conn *c)
{
    char *start = c->in.data + c->in.off;
    size_t avail = c->in.len - c->in.off;
    char *end = memmem(start, avail, "\r\n\r\n", 4);
    if (!end)
        return;
    if (avail < 12 || memcmp(start, "HTTP/1.1 101", 12) != 0) {
        char line[80];
        size_t n = strcspn(start, "\r\n");
        snprintf(line, sizeof line, "handshake refused: %.*s", (int)(n < 60 ? n : 60), start);
        fail(c, line);
        return;
    }
    c->in.off += (size_t)(end + 4 - start);
    c->handshaken = 1;
}

/* Read what the socket has and act on it. */
static void conn_read(struct conn *c)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            fail(c, n == 0 ? "connection closed by the server" : "recv failed");
            return;
        }
        buf_add(&c->in, tmp, (size_t)n);
    }
    if (!c->handshaken)
        handshake_parse(c);
    if (c->handshaken && !c->closed)
        frames_parse(c);
}

/* Start a non-blocking connection and queue its upgrade request. */
static void conn_open(struct conn *c, const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        fail(c, "connect failed");
        return;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     opt.path, opt.host, opt.port, opt.origin ? "Origin: " : "",
                     opt.origin ? opt.origin : "", opt.origin ? "\r\n" : "");
    buf_add(&c->out, req, (size_t)n);
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The P-th percentile of latency kind K, in microseconds (-1 if none). */
static double percentile(int k, double p)
{
    if (st.lat_n[k] == 0)
        return -1;
    long i = (long)(p / 100.0 * (double)(st.lat_n[k] - 1) + 0.5);
    return st.lat[k][i] / 1000.0;
}

static void usage(void)
{
    fprintf(stderr, "usage: wsload --port N [--host A] [--path /ws] [--conns N] [--rounds M]\n"
                    "              [--window W] [--gap-us U] [--timeout S] [--prefix P]\n"
                    "              [--command TEXT] [--origin O] [--duration S]\n");
    exit(2);
}

/* Parse the command line into opt. */
static void options_parse(int argc, char **argv)
{
    static const struct option longs[] = {{"host", 1, 0, 'h'},   {"port", 1, 0, 'p'},
                                          {"path", 1, 0, 'P'},   {"conns", 1, 0, 'c'},
                                          {"rounds", 1, 0, 'r'}, {"window", 1, 0, 'w'},
                                          {"gap-us", 1, 0, 'g'}, {"timeout", 1, 0, 't'},
                                          {"prefix", 1, 0, 'x'}, {"command", 1, 0, 'C'},
                                          {"origin", 1, 0, 'o'}, {"duration", 1, 0, 'd'},
                                          {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'P':
            opt.path = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'r':
            opt.rounds = atol(optarg);
            break;
        case 'w':
            opt.window = atoi(optarg);
            break;
        case 'g':
            opt.gap_us = atol(optarg);
            break;
        case 't':
            opt.timeout_s = atof(optarg);
            break;
        case 'x':
            opt.prefix = optarg;
            break;
        case 'C':
            opt.command = optarg;
            break;
        case 'o':
            opt.origin = optarg;
            break;
        case 'd':
            opt.duration_s = atof(optarg);
            break;
        default:
            usage();
        }
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.rounds <= 0 || opt.window <= 0)
        usage();
}

int main(int argc, char **argv)
{
    options_parse(argc, argv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1)
        usage();
    long total = (long)opt.conns * opt.rounds;
    for (int k = 0; k < 3; k++)
        st.lat[k] = xrealloc(NULL, sizeof(int64_t) * (size_t)total);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)opt.conns, sizeof *conns);
    int64_t t_start = now_ns(), deadline = t_start + (int64_t)(opt.timeout_s * 1e9);
    for (int i = 0; i < opt.conns; i++) {
        conns[i].index = i;
        conns[i].sent_ns = xrealloc(NULL, sizeof(int64_t) * (size_t)opt.rounds);
        conn_open(&conns[i], &sa);
    }
    int all_shaken = 0, timed_out = 0;
    int64_t t0 = 0;
    struct epoll_event evs[256];
    for (;;) {
        int live = 0, shaken = 0;
        for (int i = 0; i < opt.conns; i++) {
            live += !conns[i].closed && conns[i].done < (draining ? conns[i].sent : opt.rounds);
            shaken += conns[i].handshaken || conns[i].closed;
        }
        if (!all_shaken && shaken == opt.conns) {
            /* Tasks start only once every connection is up, so the rate
             * measures round trips, not handshakes. */
            all_shaken = 1;
            t0 = now_ns();
            for (int i = 0; i < opt.conns; i++)
                conn_pump(&conns[i]);
            continue;
        }
        if (live == 0)
            break;
        int64_t now = now_ns();
        if (all_shaken && opt.duration_s > 0 && now - t0 > (int64_t)(opt.duration_s * 1e9))
            draining = 1;
        if (now > deadline) {
            timed_out = 1;
            fail(NULL, "timeout");
            break;
        }
        int wait_ms = 100;
        for (int i = 0; opt.gap_us > 0 && all_shaken && i < opt.conns; i++) {
            struct conn *c = &conns[i];
            if (!c->closed && !draining && c->outstanding == 0 && c->sent < opt.rounds) {
                int64_t left = c->next_at_ns - now;
                int ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
                if (ms < wait_ms)
                    wait_ms = ms;
            }
        }
        int n = epoll_wait(epfd, evs, 256, wait_ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->closed)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(c);
            if (!c->closed && (evs[i].events & EPOLLOUT))
                conn_flush(c);
        }
        if (all_shaken)
            for (int i = 0; i < opt.conns; i++) {
                struct conn *c = &conns[i];
                if (!c->closed && (c->outstanding < opt.window || c->out.len > c->out.off))
                    conn_pump(c);
            }
    }
    int64_t t_last = t_last_end > t0 ? t_last_end : now_ns();
    long sent = 0;
    for (int i = 0; i < opt.conns; i++)
        sent += conns[i].sent;
    for (int k = 0; k < 3; k++)
        qsort(st.lat[k], (size_t)st.lat_n[k], sizeof(int64_t), cmp_i64);
    double elapsed = (t_last - t0) / 1e9;
    long finished = st.responses + st.errors;
    printf("{\"conns\":%d,\"rounds\":%ld,\"window\":%d,\"sent\":%ld,\"stopped_by_duration\":%s,"
           "\"responses\":%ld,\"errors\":%ld,"
           "\"acks\":%ld,\"started\":%ld,\"frames_in\":%ld,\"other\":%ld,\"elapsed_s\":%.6f,"
           "\"rt_per_s\":%.1f,\"frames_per_s\":%.1f,"
           "\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f,\"started_p50_us\":%.1f,"
           "\"started_p99_us\":%.1f,\"response_p50_us\":%.1f,\"response_p99_us\":%.1f,"
           "\"failures\":%d,\"failure\":\"%s\",\"timed_out\":%s}\n",
           opt.conns, opt.rounds, opt.window, sent, draining ? "true" : "false", st.responses,
           st.errors, st.acks, st.started, st.frames_in, st.other, elapsed,
           elapsed > 0 ? finished / elapsed : 0.0, elapsed > 0 ? st.frames_in / elapsed : 0.0,
           percentile(0, 50), percentile(0, 99), percentile(1, 50), percentile(1, 99),
           percentile(2, 50), percentile(2, 99), st.failures, st.failure,
           timed_out ? "true" : "false");
    return st.failures > 0 || finished < (draining ? sent : total) ? 1 : 0;
}
