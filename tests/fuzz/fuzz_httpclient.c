/*
 * fuzz_httpclient: the HTTP client's response parser (common/httpclient.c),
 * which reads remote bots' health, metrics and event streams for the
 * supervisor, fed arbitrary answers. Each input sends one request from a
 * fresh client to a 127.0.0.1 socket of this process (kernel-chosen port);
 * the payload after the four control bytes (fuzz_harness.h) is the answer,
 * written in pieces with the virtual clock moving between them, then the
 * server end closes (or, flag 1, stays open until the read timeout). Flag 2
 * streams the body, flag 4 bounds a collected body to 64 bytes. Checked for
 * every input: exactly one done callback; a success has a status of at most
 * three digits and, collected, a body within the bound; streamed, the head comes
 * once and first, and the pieces never hold more than the answer did.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "fuzz_harness.h"

#include "common/httpclient.h"

#define FLAG_KEEP_OPEN 1
#define FLAG_STREAM 2
#define FLAG_SMALL 4

/* What the callbacks saw for one call. */
struct fuzz_hc {
    int dones, heads, err, status;
    size_t streamed, answer_len, max_body;
    bool stream;
};

static struct fuzz_hc fuzz_hc;

/* Stop the run with MSG: libFuzzer keeps the input as a crash. */
static void fuzz_hc_fail(const char *msg)
{
    fprintf(stderr, "fuzz_httpclient: %s\n", msg);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_process_init();
    return 0;
}

static void fuzz_hc_done(int err, const char *why, int status, const char *body, size_t len,
                         void *arg)
{
    struct fuzz_hc *h = arg;
    fuzz_activity++;
    h->dones++;
    h->err = err;
    h->status = status;
    if (fuzz_show)
        fprintf(stderr, "fuzz_httpclient: done err %d (%s) status %d body %zu\n", err,
                why ? why : "-", status, len);
    if (err != 0 && !why)
        fuzz_hc_fail("a failed call says no reason");
    if (err == 0 && (status < 0 || status > 999))
        fuzz_hc_fail("a status over three digits");
    if (err == 0 && !h->stream && (len > h->max_body || (len && !body)))
        fuzz_hc_fail("a collected body over its bound");
}

static void fuzz_hc_head(int status, void *arg)
{
    struct fuzz_hc *h = arg;
    fuzz_activity++;
    if (h->heads++ || h->streamed || h->dones)
        fuzz_hc_fail("a streamed head twice or late");
    if (status < 0 || status > 999)
        fuzz_hc_fail("a streamed status over three digits");
}

static void fuzz_hc_chunk(const char *data, size_t len, void *arg)
{
    struct fuzz_hc *h = arg;
    fuzz_activity++;
    if (!h->heads || h->dones || (len && !data))
        fuzz_hc_fail("a body piece before the head or after the end");
    h->streamed += len;
    if (h->streamed > h->answer_len)
        fuzz_hc_fail("more body than the answer held");
}

/* A listening non-blocking TCP socket on 127.0.0.1, port chosen by the kernel. */
static int fuzz_hc_listen(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("fuzz_httpclient: listening socket");
        abort();
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* True once the call has ended. */
static bool fuzz_hc_ended(void *arg)
{
    return ((struct fuzz_hc *)arg)->dones > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int lfd = -1, port;
    struct fuzz_input in;
    fuzz_input_parse(data, size, &in);
    if (lfd < 0)
        lfd = fuzz_hc_listen(&port);
    memset(&fuzz_hc, 0, sizeof fuzz_hc);
    fuzz_hc.stream = in.flags & FLAG_STREAM;
    fuzz_hc.max_body = in.flags & FLAG_SMALL ? 64 : 1024 * 1024;
    fuzz_hc.answer_len = in.len;
    fuzz_clock_freeze();
    struct event_base *base = event_base_new();
    struct httpclient *hc = httpclient_new(base, NULL);
    struct httpclient_request req = {.host = "127.0.0.1",
                                     .port = port,
                                     .path = "/health",
                                     .read_timeout_ms = 5000,
                                     .max_body = in.flags & FLAG_SMALL ? 64 : 0,
                                     .stream = fuzz_hc.stream};
    struct httpclient_callbacks cb = {fuzz_hc_done, fuzz_hc_head, fuzz_hc_chunk};
    httpclient_send(hc, &req, &cb, &fuzz_hc);
    int sfd = -1;
    for (int i = 0; i < 50 && sfd < 0 && !fuzz_hc.dones; i++) {
        fuzz_loop_quiet(base, NULL, 0);
        sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    if (sfd < 0 && !fuzz_hc.dones)
        fuzz_hc_fail("the client never connected");
    if (sfd >= 0) {
        fuzz_loop_quiet(base, &sfd, 1); /* the request arrives and is drained */
        fuzz_send_pieces(base, sfd, &in);
        if (!(in.flags & FLAG_KEEP_OPEN)) {
            close(sfd);
            sfd = -1;
        }
        fuzz_wind_down(base, fuzz_hc_ended, &fuzz_hc);
    }
    if (fuzz_hc.dones != 1)
        fuzz_hc_fail("the call did not end with exactly one done callback");
    httpclient_free(hc);
    fuzz_loop_quiet(base, NULL, 0);
    if (fuzz_hc.dones != 1)
        fuzz_hc_fail("a done callback after the end");
    if (sfd >= 0)
        close(sfd);
    event_base_free(base);
    fuzz_clock_thaw();
    return 0;
}
