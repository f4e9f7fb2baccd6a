/*
 * stream: follows the supervisor's event stream. Each event becomes one line
 * "TIME BOT TYPE [TASK] details"; the cursor (the last id: seen) is kept so
 * that after a lost connection (a hive restart, say) the stream resumes
 * exactly where it stopped, with Last-Event-ID. Reading is blocking with a
 * timeout longer than the stream's keepalive, so a dead connection is seen.
 */
#include "cli/stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/sse.h"
#include "common/util.h"

#define STREAM_READ_TIMEOUT_S 40 /* > the 15 s keepalive: silence means a dead link */
#define STREAM_RETRY_MS 1000
#define STREAM_MAX_LINE (2u << 20)

struct stream {
    const struct api *c;
    const struct stream_opts *o;
    char cursor[32]; /* "" until an id was seen (and no --since) */
    int printed;
};

/* True when the options let events of BOT through. */
static bool stream_wants(const struct stream *s, const char *bot)
{
    if (!s->o->n_bots)
        return true;
    for (size_t i = 0; i < s->o->n_bots; i++)
        if (bot && strcmp(s->o->bots[i], bot) == 0)
            return true;
    return false;
}

/* The details of an event for its line. */
static void stream_details(const char *type, json_t *d, char *out, size_t cap)
{
    out[0] = '\0';
    if (strcmp(type, "bot_state") == 0) {
        json_t *pid = json_object_get(d, "pid");
        const char *reason = json_get_str(d, "reason");
        snprintf(out, cap, "%s pid=%lld restarts=%lld%s%s", json_get_str(d, "state"),
                 json_is_integer(pid) ? (long long)json_integer_value(pid) : 0LL,
                 (long long)json_integer_value(json_object_get(d, "restarts")),
                 reason ? " reason=" : "", reason ? reason : "");
    } else if (strncmp(type, "task_", 5) == 0 && json_object_get(d, "success")) {
        const char *err = json_get_str(d, "error");
        snprintf(out, cap, "%s %.3fs%s%s",
                 json_is_true(json_object_get(d, "success")) ? "ok" : "failed",
                 json_number_value(json_object_get(d, "duration_seconds")), err ? " error=" : "",
                 err ? err : "");
    } else if (strcmp(type, "task_output") == 0) {
        const char *content = json_get_str(d, "content");
        snprintf(out, cap, "%zu bytes", content ? strlen(content) : 0);
    } else if (strcmp(type, "task_output_dropped") == 0) {
        snprintf(out, cap, "%lld bytes in %lld chunks not relayed (the hive's channel was full)",
                 (long long)json_integer_value(json_object_get(d, "dropped_bytes")),
                 (long long)json_integer_value(json_object_get(d, "dropped_events")));
    }
}

/* One event from the stream: a line, and the cursor moves. */
static void stream_event_cb(const struct sse_event *ev, void *arg)
{
    struct stream *s = arg;
    if (s->o->max_events && s->printed >= s->o->max_events)
        return; /* done: the rest of this read is not ours to print */
    if (ev->id[0])
        snprintf(s->cursor, sizeof s->cursor, "%s", ev->id);
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *bot = json_get_str(d, "bot_id");
    if (strcmp(ev->type, "resync") == 0) {
        printf("-- resync: events were missed (no longer kept)\n");
    } else if (stream_wants(s, bot)) {
        char details[600];
        stream_details(ev->type, d, details, sizeof details);
        const char *task = json_get_str(d, "task_id");
        printf("%s %s %s%s%s%s%s\n",
               json_get_str(d, "timestamp") ? json_get_str(d, "timestamp") : "-", bot ? bot : "-",
               ev->type, task ? " " : "", task ? task : "", *details ? " " : "", details);
        s->printed++;
    }
    fflush(stdout);
    json_decref(d);
}

/* Send the request of one connection on FD. */
static int stream_request(struct stream *s, int fd)
{
    char *auth = s->c->token ? xasprintf("Authorization: Bearer %s\r\n", s->c->token) : xstrdup("");
    char *resume = s->cursor[0] ? xasprintf("Last-Event-ID: %s\r\n", s->cursor) : xstrdup("");
    const char *bot = s->o->n_bots == 1 ? s->o->bots[0] : NULL; /* the server filters one */
    char *head =
        xasprintf("GET /api/events%s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hive/%s\r\n"
                  "Accept: text/event-stream\r\n%s%s\r\n",
                  bot ? "?bot=" : "", bot ? bot : "", s->c->addr, HIVE_VERSION, auth, resume);
    int rc = api_send_all(fd, head, strlen(head));
    free(auth);
    free(resume);
    free(head);
    return rc;
}

/* One connection: follow until it breaks. -1 when the hive refused (no
 * retry), 0 when to reconnect, 1 when done (--count reached). */
static int stream_once(struct stream *s)
{
    int fd = api_connect(s->c);
    if (fd < 0) /* EPROTO: TLS failed (a CA that does not match): no retry helps */
        return errno == EPROTO ? -1 : 0;
    struct timeval tv = {STREAM_READ_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sse_reader r;
    sse_reader_init(&r, STREAM_MAX_LINE, stream_event_cb, s);
    int rc = 0;
    if (stream_request(s, fd) < 0) {
        rc = 0;
    } else {
        int status = api_stream_head(fd, &r);
        if (status != 200 && status != -1)
            fprintf(stderr, "hive events: the hive answered %d\n", status);
        if (status != 200 && status != -1)
            rc = -1;
        char chunk[65536];
        ssize_t n;
        while (status == 200 && (!s->o->max_events || s->printed < s->o->max_events) &&
               (n = recv(fd, chunk, sizeof chunk, 0)) > 0)
            if (sse_reader_feed(&r, chunk, (size_t)n) != SSE_OK)
                break;
        if (s->o->max_events && s->printed >= s->o->max_events)
            rc = 1;
    }
    sse_reader_free(&r);
    close(fd);
    return rc;
}

int stream_run(const struct api *c, const struct stream_opts *o)
{
    struct stream s = {.c = c, .o = o};
    if (o->since)
        snprintf(s.cursor, sizeof s.cursor, "%s", o->since);
    bool told = false;
    for (;;) {
        int rc = stream_once(&s);
        if (rc < 0)
            return CLI_EXIT_FAIL;
        if (rc > 0)
            return CLI_EXIT_OK;
        if (!told) {
            fprintf(stderr, "hive events: connection to %s lost; reconnecting\n", c->addr);
            told = true;
        }
        api_sleep_ms(STREAM_RETRY_MS);
    }
}
