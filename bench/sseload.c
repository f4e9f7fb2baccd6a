/*
 * sseload: many subscribers of one event stream, in one thread with epoll,
 * so that the client is not what limits a fan-out measurement. It speaks
 * either Server-Sent Events (GET PATH, "data:" lines) or WebSocket (RFC 6455
 * handshake, the server's unmasked text frames), and measures how late each
 * tick reaches each subscriber.
 *
 * A tick is the text "@I:NS" somewhere in an event's data (a JSON string
 * that may escape it, so only digits, '@' and ':' are parsed): I is the
 * tick's index (0 .. EVENTS-1) and NS the CLOCK_REALTIME nanoseconds at
 * which its producer wrote it. Latency = receipt time - NS.
 *
 * Usage: sseload [-w] [-a TOKEN] PORT PATH CONNS EVENTS TIMEOUT_S
 *   -w  WebSocket instead of SSE
 * Connects CONNS subscribers, prints "READY" on a line of its own once
 * every one has its answer's head (stdout is flushed), then reads until
 * every subscriber has seen tick EVENTS-1 or TIMEOUT_S passes, and prints
 * one JSON object: the per-delivery latency percentiles, the per-tick
 * "last subscriber" latency percentiles (the slowest of the CONNS
 * receipts of each tick), counts, bytes read and subscribers lost.
 * SIGTERM ends the reading early (the report still comes). Exit 1 when a
 * subscriber could not connect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SSELOAD_LINE_MAX (1 << 16)

struct sub {
    int fd;
    int head_done; /* the answer's head (or the 101) was read */
    int closed;
    char *line; /* SSE: the partial line; WS: the partial frame */
    size_t len, cap;
    long last_tick; /* highest tick index seen, -1 none */
};

static struct {
    int ws;
    const char *token, *path;
    int port, conns;
    long events;
    double timeout_s;
} opt;

static int64_t *tick_last_ns; /* per tick: the latest receipt's latency */
static long *tick_count;      /* per tick: receipts */
static int64_t *lat;          /* every delivery's latency */
static size_t n_lat, cap_lat;
static long done_subs, lost_subs, heads;
static long long bytes_in; /* everything read, heads included */
static volatile sig_atomic_t stopping;

/* SIGTERM: stop reading and report what was seen. */
static void sseload_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* CLOCK_REALTIME in nanoseconds (the producers' clock). */
static int64_t sseload_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Record every "@I:NS" in TEXT as received now by S. */
static void sseload_ticks(struct sub *s, const char *text, size_t len, int64_t now)
{
    for (size_t i = 0; i < len; i++) {
        /* memchr: a busy stream is megabytes a second of JSON without a
         * tick, and this client shares the machine with what it measures */
        const char *at = memchr(text + i, '@', len - i);
        if (!at)
            break;
        i = (size_t)(at - text);
        size_t j = i + 1;
        long idx = 0;
        int64_t ns = 0;
        while (j < len && text[j] >= '0' && text[j] <= '9')
            idx = idx * 10 + (text[j++] - '0');
        if (j == i + 1 || j >= len || text[j] != ':')
            continue;
        size_t k = ++j;
        while (j < len && text[j] >= '0' && text[j] <= '9')
            ns = ns * 10 + (text[j++] - '0');
        if (j == k || idx >= opt.events)
            continue;
        int64_t l = now - ns;
        if (l > tick_last_ns[idx])
            tick_last_ns[idx] = l;
        tick_count[idx]++;
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 65536;
            lat = realloc(lat, cap_lat * sizeof *lat);
            if (!lat)
                abort();
        }
        lat[n_lat++] = l;
        if (idx > s->last_tick) {
            if (idx == opt.events - 1)
                done_subs++;
            s->last_tick = idx;
        }
        i = j - 1;
    }
}

/* Append LEN bytes to S's partial input. */
static void sseload_keep(struct sub *s, const char *data, size_t len)
{
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->line = realloc(s->line, s->cap);
        if (!s->line)
            abort();
    }
    memcpy(s->line + s->len, data, len);
    s->len += len;
}

/* SSE: complete lines of S's input; "data:" ones carry ticks. */
static void sseload_sse_lines(struct sub *s, int64_t now)
{
    size_t start = 0;
    if (!s->head_done) {
        char *end = memmem(s->line, s->len, "\r\n\r\n", 4);
        if (!end)
            return;
        if (s->len < 12 || memcmp(s->line + 9, "200", 3) != 0) {
            fprintf(stderr, "sseload: answer %.12s\n", s->line);
            exit(1);
        }
        s->head_done = 1;
        heads++;
        start = (size_t)(end - s->line) + 4;
    }
    for (;;) {
        char *nl = memchr(s->line + start, '\n', s->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (s->line + start));
        if (n > 5 && memcmp(s->line + start, "data:", 5) == 0)
            sseload_ticks(s, s->line + start, n, now);
        start += n + 1;
    }
    memmove(s->line, s->line + start, s->len - start);
    s->len -= start;
    if (s->len > SSELOAD_LINE_MAX)
        s->len = 0; /* a line this long carries no tick we can use */
}

/* WS: complete frames of S's input (after the 101's head). */
static void sseload_ws_frames(struct sub *s, int64_t now)
{
    size_t start = 0;
    if (!s->head_done) {
        char *end = memmem(s->line, s->len, "\r\n\r\n", 4);
        if (!end)
            return;
        if (s->len < 12 || memcmp(s->line + 9, "101", 3) != 0) {
            fprintf(stderr, "sseload: answer %.12s\n", s->line);
            exit(1);
        }
        s->head_done = 1;
        heads++;
        start = (size_t)(end - s->line) + 4;
    }
    for (;;) {
        const unsigned char *p = (const unsigned char *)s->line + start;
        size_t avail = s->len - start, hl = 2, plen;
        if (avail < 2)
            break;
        plen = p[1] & 0x7f;
        if (plen == 126) {
            hl = 4;
            if (avail < hl)
                break;
            plen = (size_t)p[2] << 8 | p[3];
        } else if (plen == 127) {
            hl = 10;
            if (avail < hl)
                break;
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | p[i];
        }
        if (avail < hl + plen)
            break;
        if ((p[0] & 0x0f) == 1 || (p[0] & 0x0f) == 0)
            sseload_ticks(s, (const char *)p + hl, plen, now);
        start += hl + plen;
    }
    memmove(s->line, s->line + start, s->len - start);
    s->len -= start;
}

/* Open subscriber S; its request is written at once (it fits the socket). */
static int sseload_connect(struct sub *s, int ep)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
        return -1;
    s->last_tick = -1;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
    return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
}

/* S is connected: send its request, then only read. */
static int sseload_request(struct sub *s, int ep)
{
    char req[1024], auth[300] = "";
    if (opt.token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", opt.token);
    int n = opt.ws
                ? snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n%s\r\n",
                           opt.path, opt.port, auth)
                : snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Accept: text/event-stream\r\n%s\r\n",
                           opt.path, opt.port, auth);
    if (write(s->fd, req, (size_t)n) != n)
        return -1;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = s};
    return epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
}

static int sseload_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The Pth percentile of the sorted V (N values), in milliseconds. */
static double sseload_pct(const int64_t *v, size_t n, double p)
{
    if (!n)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

/* Read what S has; 0, or -1 when it closed. */
static int sseload_read(struct sub *s)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n > 0) {
            bytes_in += n;
            int64_t now = sseload_now();
            sseload_keep(s, buf, (size_t)n);
            if (opt.ws)
                sseload_ws_frames(s, now);
            else
                sseload_sse_lines(s, now);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return -1;
    }
}

/* Print the figures as one JSON object. */
static void sseload_report(double elapsed)
{
    int64_t *last = malloc((size_t)opt.events * sizeof *last);
    size_t n_last = 0;
    long full = 0;
    for (long i = 0; i < opt.events; i++) {
        if (tick_count[i])
            last[n_last++] = tick_last_ns[i];
        if (tick_count[i] >= opt.conns)
            full++;
    }
    qsort(last, n_last, sizeof *last, sseload_cmp);
    qsort(lat, n_lat, sizeof *lat, sseload_cmp);
    printf(
        "{\"conns\":%d,\"events\":%ld,\"ticks_seen\":%zu,\"ticks_everyone\":%ld,"
        "\"deliveries\":%zu,\"bytes\":%lld,\"subs_done\":%ld,\"subs_lost\":%ld,\"elapsed_s\":%.3f,"
        "\"delivery_p50_ms\":%.3f,\"delivery_p99_ms\":%.3f,"
        "\"last_p50_ms\":%.3f,\"last_p99_ms\":%.3f,\"last_max_ms\":%.3f}\n",
        opt.conns, opt.events, n_last, full, n_lat, bytes_in, done_subs, lost_subs, elapsed,
        sseload_pct(lat, n_lat, 50), sseload_pct(lat, n_lat, 99), sseload_pct(last, n_last, 50),
        sseload_pct(last, n_last, 99), sseload_pct(last, n_last, 100));
    free(last);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "wa:")) != -1) {
        if (c == 'w')
            opt.ws = 1;
        else if (c == 'a')
            opt.token = optarg;
        else
            return 2;
    }
    if (argc - optind != 5) {
        fprintf(stderr, "usage: sseload [-w] [-a TOKEN] PORT PATH CONNS EVENTS TIMEOUT_S\n");
        return 2;
    }
    opt.port = atoi(argv[optind]);
    opt.path = argv[optind + 1];
    opt.conns = atoi(argv[optind + 2]);
    opt.events = atol(argv[optind + 3]);
    opt.timeout_s = atof(argv[optind + 4]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    tick_last_ns = calloc((size_t)opt.events, sizeof *tick_last_ns);
    tick_count = calloc((size_t)opt.events, sizeof *tick_count);
    struct sub *subs = calloc((size_t)opt.conns, sizeof *subs);
    signal(SIGTERM, sseload_stop);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < opt.conns; i++)
        if (sseload_connect(&subs[i], ep) < 0) {
            fprintf(stderr, "sseload: connect %d: %s\n", i, strerror(errno));
            return 1;
        }
    struct epoll_event evs[256];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ready = 0;
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
        if (stopping || el > opt.timeout_s || done_subs + lost_subs >= opt.conns)
            break;
        if (!ready && heads + lost_subs >= opt.conns) {
            if (lost_subs) {
                fprintf(stderr, "sseload: %ld subscribers refused\n", lost_subs);
                return 1;
            }
            printf("READY\n");
            fflush(stdout);
            ready = 1;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct sub *s = evs[i].data.ptr;
            if (s->closed)
                continue;
            int bad = (evs[i].events & EPOLLOUT) ? sseload_request(s, ep) : sseload_read(s);
            if (bad < 0) {
                s->closed = 1;
                lost_subs++;
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
            }
        }
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sseload_report((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
