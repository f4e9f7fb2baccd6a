/*
 * fuzz_json_task: the JSON that clients send a worker, through the worker's
 * real HTTP API and WebSocket protocol (worker/api.c) into its real engine,
 * store and mock adapter (fuzz_worker.h: a whole bot per input, queue_max
 * 2, the mock answering after 1 s of virtual time). The payload goes in as
 * the body of POST /api/task; GET /status is asked while that task runs;
 * the clock moves on so it completes; then the same JSON goes in as a
 * WebSocket text message, whose task's ack/started/chunk/response go back to
 * that client; finally GET /api/task/<id> for the id the body names, and
 * everything is torn down in the worker's own order.
 *
 * Input: one flags byte (low six bits; '@' is none), then the JSON.
 *   1  pause the bot first (POST /api/pause): tasks stay queued
 *   2  submit three times on each channel (duplicates, a full queue)
 *   4  send the WebSocket message as two fragments with a ping between
 *   8  close the WebSocket client right after its message (before the ack)
 *   16 POST /api/interrupt right behind the task (pipelined)
 *   32 stop the engine (SIGTERM's path) and close the sessions
 */
#include <jansson.h>
#include <stdint.h>

#include "common/json.h"
#include "fuzz_worker.h"

#define FLAG_PAUSE 1
#define FLAG_THRICE 2
#define FLAG_FRAGMENT 4
#define FLAG_WS_LEAVE 8
#define FLAG_INTERRUPT 16
#define FLAG_STOP 32

/* Once per process: quiet logs, the scratch folder. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_process_init();
    fuzz_scratch_dir();
    return 0;
}

/* The body as a WebSocket text message (whole, or in two fragments with a
 * ping between them). */
static void fuzz_ws_message(struct evbuffer *out, const uint8_t *body, size_t len, bool fragment)
{
    if (!fragment) {
        fuzz_frame(out, 0x81, body, len);
        return;
    }
    fuzz_frame(out, 0x01, body, len / 2);
    fuzz_frame(out, 0x89, "p", 1);
    fuzz_frame(out, 0x80, body + len / 2, len - len / 2);
}

/* GET /api/task/<id> for the task_id the body names, if it is a string. */
static void fuzz_ask_task(struct evbuffer *out, const uint8_t *body, size_t len)
{
    json_t *o = json_parse_bytes((const char *)body, len, NULL, 0);
    const char *id = json_is_object(o) ? json_get_str(o, "task_id") : NULL;
    if (id && strlen(id) < 200 && !strpbrk(id, " \r\n?#%")) {
        char *path = xasprintf("/api/task/%s", id);
        fuzz_request(out, "GET", path, NULL, 0);
        free(path);
    }
    json_decref(o);
}

/* One input: a worker, the JSON over HTTP and WebSocket, teardown. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct fuzz_worker_config cfg = {.queue_max = 2};
    struct fuzz_worker w;
    unsigned flags = size ? data[0] & 0x3f : 0;
    const uint8_t *body = size ? data + 1 : data;
    size_t len = size ? size - 1 : 0;
    int times = flags & FLAG_THRICE ? 3 : 1;
    struct evbuffer *out = evbuffer_new();

    fuzz_clock_freeze();
    fuzz_worker_new(&w, &cfg);
    int http = fuzz_connect_unix(&w.addr, w.addr_len);
    int ws = fuzz_connect_unix(&w.addr, w.addr_len);
    int fds[2] = {http, ws};

    /* The WebSocket client is in before anything runs. */
    evbuffer_add(out, FUZZ_WS_UPGRADE, strlen(FUZZ_WS_UPGRADE));
    fuzz_flush(w.base, ws, out);
    if (flags & FLAG_PAUSE)
        fuzz_request(out, "POST", "/api/pause", "{}", 2);
    for (int i = 0; i < times; i++)
        fuzz_request(out, "POST", "/api/task", body, len);
    if (flags & FLAG_INTERRUPT)
        fuzz_request(out, "POST", "/api/interrupt", "{}", 2);
    fuzz_request(out, "GET", "/status", NULL, 0);
    fuzz_flush(w.base, http, out);
    fuzz_loop_quiet(w.base, fds, 2);
    fuzz_tick(w.base, fds, 2, 1500); /* the mock answers */
    fuzz_tick(w.base, fds, 2, 1500);

    /* Then the same JSON as a WebSocket message (the HTTP task is done by
     * now, so an explicit task_id is free again unless the bot is paused). */
    for (int i = 0; i < times; i++)
        fuzz_ws_message(out, body, len, flags & FLAG_FRAGMENT);
    fuzz_flush(w.base, ws, out);
    if (flags & FLAG_WS_LEAVE) {
        close(ws);
        fds[1] = ws = -1;
    }
    fuzz_loop_quiet(w.base, fds, 2);
    fuzz_tick(w.base, fds, 2, 1500);
    fuzz_tick(w.base, fds, 2, 1500);

    /* Ask about the task and the bot. */
    fuzz_ask_task(out, body, len);
    fuzz_request(out, "GET", "/status", NULL, 0);
    fuzz_flush(w.base, http, out);
    fuzz_loop_quiet(w.base, fds, 2);

    if (flags & FLAG_STOP) {
        /* SIGTERM: the running task gets its grace, then the sessions are
         * closed with 1001 once the engine reports it stopped. */
        engine_stop(w.engine);
        fuzz_loop_quiet(w.base, fds, 2);
        fuzz_tick(w.base, fds, 2, 1000);
    }
    close(http);
    if (ws >= 0)
        close(ws);
    if (!fuzz_wind_down(w.base, fuzz_worker_no_sessions, &w)) {
        fprintf(stderr, "fuzz_json_task: a WebSocket session outlived its client\n");
        abort();
    }
    fuzz_worker_free(&w);
    fuzz_clock_thaw();
    evbuffer_free(out);
    return 0;
}
