/*
 * check_ssefan: the writer thread of live event streams, on real sockets
 * (socketpairs): every byte arrives once and in order through a full
 * socket; what was not written when a lane is removed comes back in order
 * (so the connection can send it after what went); a peer that is gone is
 * told to the loop and its queue released; every range is released once.
 */
#include "common/ssefan.h"

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/check_support.h"

#define BIG (3u << 20) /* more than a socket pair holds */

static atomic_int released;     /* ranges released */
static atomic_size_t rel_bytes; /* and their bytes */

static void count_cleanup(const void *data, size_t len, void *arg)
{
    (void)data, (void)arg;
    atomic_fetch_add(&released, 1);
    atomic_fetch_add(&rel_bytes, len);
}

/* A pattern no shift of itself matches: byte I of the stream. */
static char pattern_at(size_t i)
{
    return (char)((i * 7 + i / 251) & 0xff);
}

static char *pattern(size_t n)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_at(i);
    return p;
}

/* A non-blocking socket pair: [0] is the lane's, [1] the reader's. */
static void pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

/* Read from FD until N bytes are in OUT or 10 s passed; the count read. */
static size_t read_n(int fd, char *out, size_t n)
{
    size_t got = 0;
    for (int idle = 0; got < n && idle < 100;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            idle++;
            continue;
        }
        ssize_t r = read(fd, out + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static void wait_released(int want)
{
    for (int i = 0; i < 1000 && atomic_load(&released) < want; i++)
        usleep(10000);
    ck_assert_int_eq(atomic_load(&released), want);
}

static void reset(void)
{
    atomic_store(&released, 0);
    atomic_store(&rel_bytes, 0);
}

/* A fan on a loop of its own and one lane writing to a socket pair. */
struct fx {
    struct event_base *base;
    struct ssefan *f;
    int sv[2];
    struct ssefan_lane *l;
};

/* Counters reset; DEAD (with the fixture's loop as its argument) is told
 * of the lane's death. */
static void fx_open(struct fx *x, ssefan_dead_cb dead)
{
    reset();
    x->base = event_base_new();
    x->f = ssefan_new(x->base);
    pair(x->sv);
    x->l = ssefan_add(x->f, x->sv[0], dead, x->base);
    ck_assert_ptr_nonnull(x->l);
}

/* Whatever the test left: the lane, the fan, the sockets, the loop. */
static void fx_close(struct fx *x)
{
    if (x->l)
        ssefan_remove(x->l, NULL, NULL);
    ssefan_free(x->f);
    for (int i = 0; i < 2; i++)
        if (x->sv[i] >= 0)
            close(x->sv[i]);
    event_base_free(x->base);
}

/* Until L's socket is full: its queue stops shrinking (4 s at most). */
static void wait_stalled(struct ssefan_lane *l)
{
    size_t last = SIZE_MAX, now;
    for (int i = 0; i < 200 && (now = ssefan_pending(l)) != last; i++) {
        last = now;
        usleep(20000);
    }
}

/* Until the thread has written all of L's queue (1 s at most). */
static void wait_drained(struct ssefan_lane *l)
{
    for (int i = 0; i < 200 && ssefan_pending(l) > 0; i++)
        usleep(5000);
}

/* Push SRC's first TOTAL bytes to L in ranges of PIECE; the ranges pushed. */
static int push_pieces(struct ssefan_lane *l, const char *src, size_t total, size_t piece)
{
    int ranges = 0;
    for (size_t off = 0; off < total; off += piece, ranges++)
        ssefan_push(l, src + off, piece, count_cleanup, NULL);
    return ranges;
}

START_TEST(test_never_started)
{
    struct event_base *base = event_base_new();
    ssefan_free(ssefan_new(base));
    event_base_free(base);
}
END_TEST

/* A lane's dup stays in the lowest quarter of the descriptor table: past
 * it the caller is told to write itself, and nothing is left open. */
START_TEST(test_dups_stay_in_the_lowest_quarter)
{
    struct rlimit old, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct event_base *base = event_base_new();
    struct ssefan *f = ssefan_new(base);
    int sv[2];
    pair(sv);
    struct ssefan_lane *lanes[64];
    size_t n = 0;
    while (n < 64 && (lanes[n] = ssefan_add(f, sv[0], NULL, NULL)))
        n++;
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_lt(n, 64); /* stopped below 64 = 256 / 4 */
    int probe = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
    ck_assert_int_ge(probe, 0);
    ck_assert_int_ge(probe, 64); /* the refused dup was closed, the next is past the quarter */
    close(probe);
    for (size_t i = 0; i < n; i++)
        ssefan_remove(lanes[i], NULL, NULL);
    ssefan_free(f);
    close(sv[0]);
    close(sv[1]);
    event_base_free(base);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}
END_TEST

/* 3 MiB in ranges of every size from 1 byte up, through a socket that holds
 * far less: all of it arrives in order, each range released once. */
START_TEST(test_in_order_through_a_full_socket)
{
    struct fx x;
    fx_open(&x, NULL);
    struct ssefan_lane *l = x.l;
    char *src = pattern(BIG);
    size_t off = 0;
    int ranges = 0;
    for (size_t n = 1; off < BIG; n = n * 3 + 1, ranges++) {
        size_t take = n < BIG - off ? n : BIG - off;
        ssefan_push(l, src + off, take, count_cleanup, NULL);
        off += take;
    }
    char *got = malloc(BIG);
    ck_assert_uint_eq(read_n(x.sv[1], got, BIG), BIG);
    ck_assert(memcmp(got, src, BIG) == 0);
    wait_released(ranges);
    ck_assert_uint_eq(atomic_load(&rel_bytes), BIG);
    ck_assert_uint_eq(ssefan_pending(l), 0);
    ssefan_remove(l, NULL, NULL);
    x.l = NULL;
    /* Our own socket is still open: the lane wrote to a dup of it. */
    ck_assert_int_ne(fcntl(x.sv[0], F_GETFD), -1);
    fx_close(&x);
    free(src);
    free(got);
}
END_TEST

struct unsent {
    char *buf;
    size_t len;
    int calls;
};

static void collect_unsent(void *ctx, const void *data, size_t len, ssefan_cleanup cleanup,
                           void *arg)
{
    struct unsent *u = ctx;
    memcpy(u->buf + u->len, data, len);
    u->len += len;
    u->calls++;
    if (cleanup)
        cleanup(data, len, arg);
}

/* Removed while the reader reads nothing: what reached the socket plus what
 * came back is the whole stream, in order, and nothing is written after. */
START_TEST(test_remove_hands_back_the_rest_in_order)
{
    struct fx x;
    fx_open(&x, NULL);
    struct ssefan_lane *l = x.l;
    char *src = pattern(BIG);
    int ranges = push_pieces(l, src, BIG, 4096);
    wait_stalled(l);
    ck_assert_uint_gt(ssefan_pending(l), 0);
    struct unsent u = {malloc(BIG), 0, 0};
    ssefan_remove(l, collect_unsent, &u);
    x.l = NULL;
    ck_assert_uint_gt(u.len, 0);
    ck_assert_int_eq(atomic_load(&released), ranges); /* each once: written or handed back */
    char *got = malloc(BIG);
    size_t n = read_n(x.sv[1], got, BIG - u.len);
    ck_assert_uint_eq(n, BIG - u.len);
    memcpy(got + n, u.buf, u.len);
    ck_assert(memcmp(got, src, BIG) == 0);
    /* Nothing more comes: the lane's dup is closed, ours is quiet. */
    struct pollfd p = {x.sv[1], POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 50), 0);
    fx_close(&x);
    free(src), free(got), free(u.buf);
}
END_TEST

/* A client that does not read: its bytes count as refused once its socket
 * is full, and no more once it has read them all. A client that reads has
 * nothing refused. */
START_TEST(test_refused_only_by_a_full_socket)
{
    struct fx x;
    fx_open(&x, NULL);
    struct ssefan_lane *l = x.l;
    char *src = pattern(BIG);
    push_pieces(l, "x", 1, 1);
    wait_drained(l);
    ck_assert_uint_eq(ssefan_pending(l), 0);
    ck_assert_uint_eq(ssefan_refused(l), 0);
    push_pieces(l, src, BIG, 4096);
    wait_stalled(l);
    ck_assert_uint_gt(ssefan_pending(l), 0);
    ck_assert_uint_eq(ssefan_refused(l), ssefan_pending(l));
    char *got = malloc(BIG + 1);
    ck_assert_uint_eq(read_n(x.sv[1], got, BIG + 1), BIG + 1);
    wait_drained(l);
    ck_assert_uint_eq(ssefan_refused(l), 0);
    ck_assert_uint_eq(ssefan_pending(l), 0);
    fx_close(&x);
    free(src), free(got);
}
END_TEST

static int dead_calls;

static void on_dead(void *arg)
{
    dead_calls++;
    event_base_loopbreak(arg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* The reader is gone: the loop is told once, the queue is released, and
 * what is pushed afterwards is released at once. */
START_TEST(test_a_gone_peer_is_told_to_the_loop)
{
    dead_calls = 0;
    struct fx x;
    fx_open(&x, on_dead);
    struct ssefan_lane *l = x.l;
    struct event_base *base = x.base;
    close(x.sv[1]);
    x.sv[1] = -1;
    static const char msg[] = "data: x\n\n";
    ssefan_push(l, msg, sizeof msg - 1, count_cleanup, NULL);
    struct event *t = evtimer_new(base, on_timeout, base);
    struct timeval tv = {10, 0};
    evtimer_add(t, &tv);
    event_base_dispatch(base);
    ck_assert_int_eq(dead_calls, 1);
    ck_assert_int_eq(atomic_load(&released), 1);
    ck_assert_uint_eq(ssefan_pending(l), 0);
    ssefan_push(l, msg, sizeof msg - 1, count_cleanup, NULL);
    ck_assert_int_eq(atomic_load(&released), 2);
    event_free(t);
    fx_close(&x);
}
END_TEST

/* 40 lanes fed in turns, read in turns: each gets its own stream whole. */
START_TEST(test_many_lanes)
{
    enum { LANES = 40, EACH = 200000 };
    reset();
    struct event_base *base = event_base_new();
    struct ssefan *f = ssefan_new(base);
    int sv[LANES][2];
    struct ssefan_lane *l[LANES];
    char *src = pattern(EACH);
    for (int i = 0; i < LANES; i++) {
        pair(sv[i]);
        l[i] = ssefan_add(f, sv[i][0], NULL, NULL);
        ck_assert_ptr_nonnull(l[i]);
    }
    int ranges = 0;
    for (size_t off = 0; off < EACH; off += 1000)
        for (int i = 0; i < LANES; i++, ranges++)
            ssefan_push(l[i], src + off, 1000, count_cleanup, NULL);
    char *got = malloc(EACH);
    for (int i = 0; i < LANES; i++) {
        ck_assert_uint_eq(read_n(sv[i][1], got, EACH), EACH);
        ck_assert(memcmp(got, src, EACH) == 0);
    }
    wait_released(ranges);
    for (int i = 0; i < LANES; i++) {
        ssefan_remove(l[i], NULL, NULL);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    ssefan_free(f);
    free(src), free(got);
    event_base_free(base);
}
END_TEST

/* Freed with lanes still queued (a process that stops): every range is
 * released, the thread ends. */
START_TEST(test_free_with_queued_lanes)
{
    struct fx x;
    fx_open(&x, NULL);
    char *src = pattern(BIG);
    int ranges = push_pieces(x.l, src, BIG, 65536);
    ssefan_free(x.f);
    ck_assert_int_eq(atomic_load(&released), ranges);
    x.l = NULL;
    x.f = NULL;
    fx_close(&x);
    free(src);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ssefan");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_never_started);
    tcase_add_test(tc, test_dups_stay_in_the_lowest_quarter);
    tcase_add_test(tc, test_in_order_through_a_full_socket);
    tcase_add_test(tc, test_remove_hands_back_the_rest_in_order);
    tcase_add_test(tc, test_refused_only_by_a_full_socket);
    tcase_add_test(tc, test_a_gone_peer_is_told_to_the_loop);
    tcase_add_test(tc, test_many_lanes);
    tcase_add_test(tc, test_free_with_queued_lanes);
    suite_add_tcase(s, tc);
    return check_run(s);
}
