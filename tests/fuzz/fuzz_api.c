/*
 * fuzz_api: raw client bytes against a whole worker (fuzz_worker.h): the
 * worker's routing (api_route: /health, /status, /ws, /api/task,
 * /api/task/<id>, pause/resume/interrupt, 401/404/405/415/503), its
 * WebSocket protocol on a real upgrade, and GET /api/task/<id> for tasks
 * the engine no longer remembers (read back from response files). One
 * client writes the payload in pieces (fuzz_harness.h), the clock moves so
 * that mock tasks finish and timeouts fire, and the worker is torn down.
 *
 * Flags (low bits of the first byte):
 *   1  a token is configured ("secret"): Bearer header or ?token=
 *   2  the bot is paused from the start
 *   4  the engine is stopping from the start (503s)
 *   8  small limits (512-byte heads, 1 KiB bodies and messages)
 *   16 response files of an earlier run are on disk (OLD-1 done, OLD-2
 *      failed), as after a restart
 *   32 half-close the client after the payload
 * The fourth byte: clock step per piece, "free early" = shut the worker down
 * the way SIGTERM does while the client is still connected, slow reader.
 */
#include <stdint.h>

#include "fuzz_worker.h"

#define FLAG_TOKEN 1
#define FLAG_PAUSED 2
#define FLAG_STOPPING 4
#define FLAG_SMALL 8
#define FLAG_OLD_RESPONSES 16
#define FLAG_HALF_CLOSE 32

/* Once per process: quiet logs, the scratch folder. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_process_init();
    fuzz_scratch_dir();
    return 0;
}

/* Write one response file as an earlier run of the worker left it. */
static void fuzz_old_response(struct fuzz_worker *w, const char *id, bool ok)
{
    char *path =
        xasprintf("%s/2026-01-01-0000-%s-user-RESPONSE-%s-%s.md", store_paths(w->store)->responses,
                  FUZZ_BOT, id, ok ? "complete" : "failed");
    char *text = ok ? xasprintf("# RESPONSE: %s - Complete\n\n**From:** %s\n**To:** user\n"
                                "**Task:** %s\n**Source:** websocket\n\n## Output\n\nold "
                                "output\n\n## Files Modified\n\n- None\n",
                                id, FUZZ_BOT, id)
                    : xasprintf("# RESPONSE: %s - Failed\n\n**Source:** \n", id);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(text);
    free(path);
}

/* One input: a worker, one client writing the payload, teardown. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in;
    struct fuzz_worker w;

    fuzz_input_parse(data, size, &in);
    struct fuzz_worker_config cfg = {.queue_max = 3,
                                     .token = in.flags & FLAG_TOKEN ? "secret" : NULL,
                                     .small_limits = in.flags & FLAG_SMALL};
    fuzz_clock_freeze();
    fuzz_worker_new(&w, &cfg);
    if (in.flags & FLAG_OLD_RESPONSES) {
        fuzz_old_response(&w, "OLD-1", true);
        fuzz_old_response(&w, "OLD-2", false);
    }
    if (in.flags & FLAG_PAUSED)
        engine_pause(w.engine, true);
    if (in.flags & FLAG_STOPPING)
        engine_stop(w.engine);

    int fd = fuzz_connect_unix(&w.addr, w.addr_len);
    fuzz_loop_quiet(w.base, &fd, 1);
    fuzz_send_pieces(w.base, fd, &in);
    fuzz_tick(w.base, &fd, 1, 1500); /* the last task's mock answer */
    if (in.flags & FLAG_HALF_CLOSE) {
        shutdown(fd, SHUT_WR);
        fuzz_loop_quiet(w.base, &fd, 1);
    }
    if (in.free_early) {
        /* SIGTERM with the client still there: stop, let the running task
         * finish, close the sessions (the client never answers the close,
         * so the close wait runs out), then free with HTTP clients on. */
        engine_stop(w.engine);
        fuzz_tick(w.base, &fd, 1, 1000);
        api_close_sessions(w.api);
        if (!fuzz_wind_down(w.base, fuzz_worker_no_sessions, &w)) {
            fprintf(stderr, "fuzz_api: a WebSocket session did not end after 1001\n");
            abort();
        }
        fuzz_worker_free(&w);
        close(fd);
        fuzz_clock_thaw();
        return 0;
    }
    close(fd);
    if (!fuzz_wind_down(w.base, fuzz_worker_no_sessions, &w)) {
        fprintf(stderr, "fuzz_api: a WebSocket session outlived its client\n");
        abort();
    }
    fuzz_worker_free(&w);
    fuzz_clock_thaw();
    return 0;
}
