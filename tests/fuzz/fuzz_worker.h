/*
 * fuzz_worker: a whole bot for the fuzz targets that talk to the worker's
 * real API (fuzz_json_task, fuzz_api): store, activity log, API and engine
 * wired as worker.c wires them, with the mock adapter, on a fresh event_base
 * and an abstract AF_UNIX listener, in a scratch folder emptied for every
 * input. Plus the little a client needs: requests and masked frames.
 */
#ifndef HIVE_FUZZ_WORKER_H
#define HIVE_FUZZ_WORKER_H

#include <event2/buffer.h>

#include "common/util.h"
#include "fuzz_harness.h"
#include "worker/activity.h"
#include "worker/api.h"
#include "worker/engine.h"
#include "worker/events.h"
#include "worker/store.h"

#define FUZZ_BOT "FUZZ-BOT"
/* The mock adapter answers after this long (virtual time), so a task is
 * seen running until the harness moves the clock. */
#define FUZZ_MOCK_DELAY_MS 1000

/* What differs between the targets' workers. */
struct fuzz_worker_config {
    size_t queue_max;
    const char *token;
    bool small_limits; /* 512-byte heads, 1 KiB bodies and messages */
};

/* One worker, built and torn down per input. */
struct fuzz_worker {
    struct event_base *base;
    struct store *store;
    struct activity *activity;
    struct api *api;
    struct engine *engine;
    struct events *events;
    struct sockaddr_un addr;
    socklen_t addr_len;
};

/* Every event of the bot's vocabulary counts as activity (the API
 * subscribes on its own, as in worker.c). */
static inline void fuzz_worker_event(const struct events_event *ev, void *arg)
{
    (void)ev, (void)arg;
    fuzz_activity++;
}

/* The engine stopped: say goodbye to the WebSocket clients (worker.c). */
static inline void fuzz_worker_stopped(void *arg)
{
    struct fuzz_worker *w = arg;
    fuzz_activity++;
    if (w->api)
        api_close_sessions(w->api);
}

/* Build the worker as worker.c does: store, activity, API, engine. */
static inline void fuzz_worker_new(struct fuzz_worker *w, const struct fuzz_worker_config *cfg)
{
    char err[300];
    const char *dir = fuzz_scratch_dir();

    memset(w, 0, sizeof *w);
    fuzz_empty_dir(dir);
    w->store = store_open(dir, FUZZ_BOT, err, sizeof err);
    if (!w->store) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    w->activity = activity_open(store_paths(w->store)->activity, FUZZ_BOT);
    w->base = event_base_new();

    struct api_config ac = {.bot_id = FUZZ_BOT,
                            .mode = "websocket-only",
                            .port = 8001,
                            .token = cfg->token,
                            .started_mono_ns = util_mono_ns()};
    http_limits_default(&ac.limits);
    ws_config_default(&ac.ws);
    if (cfg->small_limits) {
        ac.limits.max_header_bytes = 512;
        ac.limits.max_body = 1024;
        ac.ws.max_message = 1024;
    }
    int lfd = fuzz_listen_unix(&w->addr, &w->addr_len);
    w->api = api_new(w->base, lfd, &ac, w->store);
    if (!w->api)
        abort();

    struct engine_config ec = {
        .bot_id = FUZZ_BOT,
        .adapter = {.type = ADAPTER_MOCK, .work_dir = dir, .delay_ms = FUZZ_MOCK_DELAY_MS},
        .queue_max = cfg->queue_max,
        .stop_grace_s = 0.5,
        .file_queue = false};
    char *path = xasprintf("%s/%s-events.jsonl", store_paths(w->store)->logs, FUZZ_BOT);
    w->events = events_open(path, FUZZ_BOT, w->activity);
    free(path);
    events_subscribe(w->events, fuzz_worker_event, w);
    struct engine_events ev = {fuzz_worker_stopped, w};
    w->engine = engine_new(w->base, &ec, w->store, w->activity, w->events, &ev);
    api_set_engine(w->api, w->engine);
    api_set_events(w->api, w->events);
    engine_start(w->engine, -1);
}

/* Tear the worker down in worker.c's order (the API may be gone already). */
static inline void fuzz_worker_free(struct fuzz_worker *w)
{
    engine_free(w->engine);
    api_free(w->api);
    events_close(w->events);
    activity_close(w->activity);
    store_free(w->store);
    event_base_free(w->base);
}

/* True once the API has no WebSocket session left. */
static inline bool fuzz_worker_no_sessions(void *arg)
{
    struct fuzz_worker *w = arg;
    return !w->api || api_sessions(w->api) == 0;
}

/* Append a request with a JSON BODY (may be NULL) to OUT. */
static inline void fuzz_request(struct evbuffer *out, const char *method, const char *path,
                                const void *body, size_t len)
{
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: localhost\r\n", method, path);
    if (body)
        evbuffer_add_printf(out, "Content-Type: application/json\r\nContent-Length: %zu\r\n", len);
    evbuffer_add(out, "\r\n", 2);
    if (body)
        evbuffer_add(out, body, len);
}

/* The upgrade request of a well-behaved WebSocket client. */
#define FUZZ_WS_UPGRADE                                                                            \
    "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"         \
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

/* Append one masked client frame to OUT. */
static inline void fuzz_frame(struct evbuffer *out, uint8_t b0, const void *data, size_t len)
{
    static const uint8_t key[4] = {0xa1, 0x5e, 0x07, 0xc3};
    uint8_t head[14];
    size_t n = 0;

    head[n++] = b0;
    if (len < 126) {
        head[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        head[n++] = 0x80 | 126;
        head[n++] = (uint8_t)(len >> 8);
        head[n++] = (uint8_t)len;
    } else {
        head[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(head + n, key, 4);
    evbuffer_add(out, head, n + 4);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = ((const uint8_t *)data)[i] ^ key[i % 4];
        evbuffer_add(out, &c, 1);
    }
}

/* Send OUT whole on FD and empty it. */
static inline void fuzz_flush(struct event_base *base, int fd, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);
    if (len && fd >= 0)
        fuzz_send(base, fd, evbuffer_pullup(out, -1), len);
    evbuffer_drain(out, len);
}

#endif
