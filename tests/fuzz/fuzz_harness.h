/*
 * fuzz_harness: what the event-driven fuzz targets share. An input starts
 * with four control bytes, read from their low six bits so that printable
 * seeds work ('@' is 0, 'A' is 1, ...): flags, two piece sizes, and a byte
 * of clock step and client behaviour. The rest is written to the code under
 * test in pieces, with the loop run between them. The loop runs non-blocking
 * passes until nothing moves any more; the client's end is drained and
 * discarded as it goes (unless it plays a slow reader); everything a target
 * builds is torn down before the input is done, so inputs do not leak into
 * each other and leaks show up per input.
 *
 * Time is virtual while an input runs: this file defines clock_gettime(), so
 * libevent's timers (and hive's monotonic clock) see a clock that stands
 * still until the harness moves it. Timeouts (408, idle, linger, WebSocket
 * pings and close waits) then fire at the same point of every run of an
 * input instead of whenever the machine was slow.
 */
#ifndef HIVE_FUZZ_HARNESS_H
#define HIVE_FUZZ_HARNESS_H

#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* Passes of the loop without progress before it counts as quiet. */
#define FUZZ_QUIET_PASSES 4
/* Hard cap on loop passes for one wait (a livelock shows up as a timeout). */
#define FUZZ_MAX_PASSES 100000

/* Split plan of one input. */
struct fuzz_input {
    unsigned flags;      /* six bits of the first byte */
    size_t piece[2];     /* alternating piece sizes; 0 = all the rest */
    int step_ms;         /* the clock moves this much after each piece */
    bool free_early;     /* the target frees its server with clients on */
    bool slow_reader;    /* the client reads nothing until it closes */
    const uint8_t *data; /* the payload after the control bytes */
    size_t len;
};

/* The fourth control byte: low four bits times 4 s of clock step, 16 free
 * early, 32 slow reader. */
#define FUZZ_STEP_UNIT_MS 4000
#define FUZZ_FREE_EARLY 16
#define FUZZ_SLOW_READER 32
#define FUZZ_CONTROL_BYTES 4

/* ---- virtual time ---- */

/* Whether the clock stands still, and where. */
static bool fuzz_clock_frozen;
static struct timespec fuzz_clock_now;

/* The real clock_gettime of the C library. */
static inline int fuzz_real_clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    return real(id, ts);
}

/* Interposed for the whole program (libevent included): the monotonic
 * clocks stand still while an input runs; everything else is real. */
int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (fuzz_clock_frozen && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
                              id == CLOCK_MONOTONIC_RAW || id == CLOCK_BOOTTIME)) {
        *ts = fuzz_clock_now;
        return 0;
    }
    return fuzz_real_clock_gettime(id, ts);
}

/* Stop the clock (at the real time, or later if an earlier input moved it
 * further), before anything of the input is built. */
static inline void fuzz_clock_freeze(void)
{
    struct timespec real;
    fuzz_real_clock_gettime(CLOCK_MONOTONIC, &real);
    if (real.tv_sec > fuzz_clock_now.tv_sec ||
        (real.tv_sec == fuzz_clock_now.tv_sec && real.tv_nsec > fuzz_clock_now.tv_nsec))
        fuzz_clock_now = real;
    fuzz_clock_frozen = true;
}

/* Let the clock run again (libFuzzer times its units with it). */
static inline void fuzz_clock_thaw(void)
{
    fuzz_clock_frozen = false;
}

/* Move the stopped clock MS milliseconds on. */
static inline void fuzz_clock_advance(int ms)
{
    fuzz_clock_now.tv_nsec += (long)(ms % 1000) * 1000000L;
    fuzz_clock_now.tv_sec += ms / 1000 + fuzz_clock_now.tv_nsec / 1000000000L;
    fuzz_clock_now.tv_nsec %= 1000000000L;
}

/* ---- input and loop ---- */

/* Bumped by every callback a target owns, so waits see progress that the
 * client cannot observe (an answer given from a timer, a session closing). */
static unsigned long fuzz_activity;

/* HIVE_FUZZ_SHOW=1: copy what the clients receive to stderr (debugging). */
static bool fuzz_show;

/* Optional: every byte a client receives, for a target's own checks. */
static void (*fuzz_received)(int fd, const char *data, size_t len);

/* Size of a piece from one control byte: low six bits, times 64 when the
 * high bit is set; 0 means "the rest". */
static inline size_t fuzz_piece_size(uint8_t b)
{
    return (size_t)(b & 0x3f) << ((b & 0x80) ? 6 : 0);
}

/* Whether the clients read what they get (not while playing slow readers). */
static bool fuzz_clients_read = true;

/* Split DATA into control bytes and payload. */
static inline void fuzz_input_parse(const uint8_t *data, size_t len, struct fuzz_input *in)
{
    memset(in, 0, sizeof *in);
    fuzz_clients_read = true;
    if (len < FUZZ_CONTROL_BYTES) {
        in->data = data;
        in->len = len;
        return;
    }
    in->flags = data[0] & 0x3f;
    in->piece[0] = fuzz_piece_size(data[1]);
    in->piece[1] = fuzz_piece_size(data[2]);
    in->step_ms = (data[3] & 0x0f) * FUZZ_STEP_UNIT_MS;
    in->free_early = data[3] & FUZZ_FREE_EARLY;
    in->slow_reader = data[3] & FUZZ_SLOW_READER;
    fuzz_clients_read = !in->slow_reader;
    in->data = data + FUZZ_CONTROL_BYTES;
    in->len = len - FUZZ_CONTROL_BYTES;
}

/* Once per process: no SIGPIPE, quiet logs unless HIVE_FUZZ_LOG is set. */
static inline void fuzz_process_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    fuzz_show = getenv("HIVE_FUZZ_SHOW") != NULL;
    log_init("fuzz",
             getenv("HIVE_FUZZ_LOG") ? LOG_LEVEL_DEBUG : (enum log_level)(LOG_LEVEL_ERROR + 1));
}

/* Read and discard whatever is waiting on FD; the byte count (0 at EOF or
 * when nothing is there). *EOF_SEEN is set once the peer closed. */
static inline size_t fuzz_drain(int fd, bool *eof_seen)
{
    char buf[16384];
    size_t total = 0;

    if (fd < 0)
        return 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            total += (size_t)n;
            if (fuzz_show)
                fprintf(stderr, "<<< fd %d: %.*s\n", fd, (int)n, buf);
            if (fuzz_received)
                fuzz_received(fd, buf, (size_t)n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            if (eof_seen)
                *eof_seen = true;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return total;
    }
}

/* Run non-blocking passes until nothing moves for a few passes in a row:
 * no active events, no new bytes for the clients, no callback of ours. */
static inline void fuzz_loop_quiet(struct event_base *base, const int *fds, size_t n_fds)
{
    int quiet = 0;

    for (int pass = 0; pass < FUZZ_MAX_PASSES && quiet < FUZZ_QUIET_PASSES; pass++) {
        unsigned long before = fuzz_activity;
        event_base_loop(base, EVLOOP_NONBLOCK);
        bool progress = fuzz_activity != before;
        for (size_t i = 0; i < n_fds && fuzz_clients_read; i++)
            if (fuzz_drain(fds[i], NULL) > 0)
                progress = true;
        if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) > 0)
            progress = true;
        quiet = progress ? 0 : quiet + 1;
    }
}

/* Write LEN bytes to FD, running the loop while the peer does not read.
 * Returns false (and gives up on the rest) when the peer stopped reading
 * for good or went away. */
static inline bool fuzz_send(struct event_base *base, int fd, const void *data, size_t len)
{
    const char *p = data;
    int stalls = 0;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            stalls = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return false;
        if (++stalls > 3)
            return false;
        fuzz_loop_quiet(base, &fd, 1);
    }
    return true;
}

/* Move the clock STEP_MS on (if any) and let whatever timed out run. */
static inline void fuzz_tick(struct event_base *base, const int *fds, size_t n_fds, int step_ms)
{
    if (step_ms <= 0)
        return;
    fuzz_clock_advance(step_ms);
    fuzz_loop_quiet(base, fds, n_fds);
}

/* Write the payload of IN to FD piece by piece; after each the loop runs,
 * the clock moves on by the input's step and the loop runs again. */
static inline bool fuzz_send_pieces(struct event_base *base, int fd, const struct fuzz_input *in)
{
    size_t off = 0;

    for (int i = 0; off < in->len; i++) {
        size_t n = in->piece[i & 1];
        if (n == 0 || n > in->len - off)
            n = in->len - off;
        if (!fuzz_send(base, fd, in->data + off, n))
            return false;
        off += n;
        fuzz_loop_quiet(base, &fd, 1);
        fuzz_tick(base, &fd, 1, in->step_ms);
    }
    return true;
}

/* After the client left: run the loop, moving the clock by up to a minute
 * in steps while DONE(ARG) is false, so that close waits, lingering and
 * idle timeouts can end what is left. True once DONE. */
static inline bool fuzz_wind_down(struct event_base *base, bool (*done)(void *), void *arg)
{
    fuzz_loop_quiet(base, NULL, 0);
    for (int i = 0; i < 30 && !done(arg); i++) {
        fuzz_clock_advance(2500);
        fuzz_loop_quiet(base, NULL, 0);
    }
    return done(arg);
}

/* Make FD non-blocking and close-on-exec. */
static inline void fuzz_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* A listening AF_UNIX stream socket with a kernel-chosen abstract name (no
 * file, no port, nothing to clean up); its address goes to ADDR. */
static inline int fuzz_listen_unix(struct sockaddr_un *addr, socklen_t *addr_len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un any = {.sun_family = AF_UNIX};

    if (fd < 0 || bind(fd, (struct sockaddr *)&any, sizeof(sa_family_t)) < 0 ||
        listen(fd, 64) < 0) {
        perror("fuzz: listening socket");
        abort();
    }
    *addr_len = sizeof *addr;
    if (getsockname(fd, (struct sockaddr *)addr, addr_len) < 0) {
        perror("fuzz: getsockname");
        abort();
    }
    return fd;
}

/* A non-blocking client connected to ADDR (the connection completes at
 * once on AF_UNIX; the server accepts it on the next loop pass). */
static inline int fuzz_connect_unix(const struct sockaddr_un *addr, socklen_t addr_len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, addr_len) < 0) {
        perror("fuzz: connect");
        abort();
    }
    fuzz_nonblock(fd);
    return fd;
}

/* nftw callback: remove everything below the top folder. */
static inline int fuzz_rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type;
    if (ftw->level > 0)
        remove(path);
    return 0;
}

/* Empty DIR (keep DIR itself). */
static inline void fuzz_empty_dir(const char *dir)
{
    nftw(dir, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch folder, once made. */
static char fuzz_scratch_path[256];

/* atexit: remove the scratch folder. */
static inline void fuzz_scratch_remove(void)
{
    if (fuzz_scratch_path[0]) {
        fuzz_empty_dir(fuzz_scratch_path);
        rmdir(fuzz_scratch_path);
    }
}

/* A private scratch folder for the whole run, removed at exit: under
 * $HIVE_FUZZ_SCRATCH when set (scripts/fuzz points it into its own temp
 * folder, so nothing is left behind after a crash), else on tmpfs when there
 * is one (fsync is cheap there), else under $TMPDIR or /tmp. */
static inline const char *fuzz_scratch_dir(void)
{
    if (fuzz_scratch_path[0])
        return fuzz_scratch_path;
    const char *tmp = getenv("HIVE_FUZZ_SCRATCH");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_scratch_path, sizeof fuzz_scratch_path, "%s/hive-fuzz-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_scratch_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_scratch_remove);
    return fuzz_scratch_path;
}

#endif
