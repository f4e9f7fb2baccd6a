/*
 * api: owns the bot's HTTP server and its WebSocket sessions. One routing
 * step (api_route) maps a request to one handler; every handler answers
 * once. Tasks go to the engine; answers that wait for the durable write are
 * given from the engine's accept callback.
 */
#include "worker/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/ssehub.h"
#include "common/route.h"
#include "common/utf8.h"
#include "common/util.h"
#include "pages/pages.h"
#include "worker/answers.h"
#include "worker/taskfile.h"

/* A reply to a WebSocket client held back behind an ack that is not sent
 * yet (SPEC §5: replies come in the order of the client's messages). */
struct api_ws_reply {
    uint64_t seq; /* the ack it stands for, when it is one */
    char *text;   /* NULL: the ack, not made yet */
    size_t len;
    struct api_ws_reply *next;
};

/* A connected WebSocket client. */
struct api_ws {
    struct ws_session *ws;
    uint64_t id;
    struct api *api;
    struct api_ws *next;
    struct api_ws_reply *held, **held_tail; /* in order; empty: send at once */
    uint64_t next_seq;
};

/* A task's ack being waited for: its session and its place among the replies. */
struct api_ws_probe {
    struct api *api;
    uint64_t id, seq;
};

/* A growing output buffer. */

/* The UTC date and time of one second, formatted once for that second. */
struct api_clock {
    int64_t sec;
    char text[40];
};

struct api {
    struct api_config cfg;
    struct http_server *http;
    struct engine *engine;
    struct observe *observe; /* timeline and metrics routes; NULL: none */
    struct store *store;
    struct api_ws *sessions;
    pid_t pid;
    struct util_buf status; /* the last /status body, reused */
    struct api_clock now_clock, started_clock;
    struct guard_policy guard; /* the Host/Origin rule of every request */
    struct events *events;     /* the bot's events (api_set_events) */
    uint64_t events_sub;
    struct ssehub *hub; /* the subscribers of GET /api/events */
};

/* A replay under way: its API and its reader. */
struct api_replay {
    struct api *api;
    struct ssehub_sub *sub;
};

/* Current UTC time as a JSON string. */
static json_t *api_now(void)
{
    char ts[40];
    util_iso_utc(ts, sizeof ts, util_wall_ns());
    return json_string(ts);
}

/* Seconds rounded to milliseconds, for JSON. */
static double api_ms(double seconds)
{
    return (double)(int64_t)(seconds * 1000 + 0.5) / 1000;
}

/* A string or JSON null. */
static json_t *api_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Append the NUL-terminated LIT (a literal: its strlen is a constant). */
static inline void api_buf_lit(struct util_buf *b, const char *lit)
{
    util_buf_add(b, lit, strlen(lit));
}

/* Append V in decimal. */
static void api_buf_uint(struct util_buf *b, uint64_t v)
{
    char digits[24];
    size_t n = sizeof digits;
    do
        digits[--n] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    util_buf_add(b, digits + n, sizeof digits - n);
}

/* Append the escape \uXXXX of the UTF-16 code unit U. */
static void api_buf_u16(struct util_buf *b, uint32_t u)
{
    static const char hex[] = "0123456789ABCDEF";
    char esc[6] = {'\\', 'u', hex[u >> 12 & 15], hex[u >> 8 & 15], hex[u >> 4 & 15], hex[u & 15]};
    util_buf_add(b, esc, sizeof esc);
}

/* Append the escape of the character at P (one that JSON_ENSURE_ASCII
 * escapes); returns how many bytes it took. A byte that is not well-formed
 * UTF-8 (a file name can be anything) becomes U+FFFD. */
static size_t api_buf_escape(struct util_buf *b, const unsigned char *p)
{
    static const char plain[] = "\"\\\b\f\n\r\t", named[] = "\"\\bfnrt";
    const char *c = *p ? strchr(plain, *p) : NULL;
    if (c) {
        char esc[2] = {'\\', named[c - plain]};
        util_buf_add(b, esc, 2);
        return 1;
    }
    size_t n = utf8_char_len(p, strnlen((const char *)p, 4));
    uint32_t cp = n == 0 ? 0xfffd : n == 1 ? p[0] : p[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (p[i] & 0x3f);
    if (cp < 0x10000) {
        api_buf_u16(b, cp);
    } else {
        api_buf_u16(b, 0xd800 | ((cp - 0x10000) >> 10));
        api_buf_u16(b, 0xdc00 | (cp & 0x3ff));
    }
    return n ? n : 1;
}

/* Append S as a JSON string, escaped as jansson's JSON_ENSURE_ASCII does
 * (so the text is byte for byte what json_dumps gave before). */
static void api_buf_str(struct util_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    util_buf_add(b, "\"", 1);
    while (*p) {
        size_t run = 0;
        while (p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        util_buf_add(b, (const char *)p, run);
        p += run;
        if (*p)
            p += api_buf_escape(b, p);
    }
    util_buf_add(b, "\"", 1);
}

/* Append the timestamp WALL_NS as a JSON string ("2026-01-02T03:04:05.678Z",
 * as util_iso_utc), formatting the seconds part only when it changed. */
static void api_buf_time(struct util_buf *b, struct api_clock *clock, int64_t wall_ns)
{
    int64_t sec = wall_ns / 1000000000;
    if (sec != clock->sec || !clock->text[0]) {
        util_iso_utc(clock->text, sizeof clock->text, wall_ns);
        clock->text[strcspn(clock->text, ".")] = '\0';
        clock->sec = sec;
    }
    int ms = (int)(wall_ns / 1000000 % 1000);
    char tail[7] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    util_buf_add(b, "\"", 1);
    api_buf_lit(b, clock->text);
    util_buf_add(b, tail, 6);
}

/* The fields of GET /status (also the WebSocket "status" message, which
 * adds TYPE), rendered into api->status: no JSON tree, no allocation once
 * the buffer has grown, no system call but the clocks (vDSO). */
static const struct util_buf *api_status_render(struct api *api, const char *type)
{
    struct engine_status st;
    struct util_buf *b = &api->status;
    engine_status(api->engine, &st);
    b->len = 0;
    api_buf_lit(b, "{\"bot_id\":");
    api_buf_str(b, api->cfg.bot_id);
    api_buf_lit(b, ",\"status\":\"");
    api_buf_lit(b, st.state);
    api_buf_lit(b, "\",\"mode\":\"");
    api_buf_lit(b, api->cfg.mode);
    api_buf_lit(b, "\",\"port\":");
    if (api->cfg.port < 0)
        util_buf_add(b, "-", 1);
    api_buf_uint(b, (uint64_t)(api->cfg.port < 0 ? -(int64_t)api->cfg.port : api->cfg.port));
    api_buf_lit(b, ",\"pid\":");
    api_buf_uint(b, (uint64_t)api->pid);
    api_buf_lit(b, ",\"uptime_seconds\":");
    /* Whole seconds, as DEIA's int(time.time() - start_time): its bot page
     * prints the value as it comes. */
    api_buf_uint(b, (uint64_t)(util_mono_ns() - api->cfg.started_mono_ns) / 1000000000);
    api_buf_lit(b, ",\"tasks_processed\":");
    api_buf_uint(b, st.processed);
    api_buf_lit(b, ",\"tasks_failed\":");
    api_buf_uint(b, st.failed);
    api_buf_lit(b, ",\"current_task\":");
    if (st.current) {
        api_buf_lit(b, "{\"task_id\":");
        api_buf_str(b, st.current->id);
        api_buf_lit(b, ",\"source\":\"");
        api_buf_lit(b, task_source_name(st.current->source));
        api_buf_lit(b, "\",\"started_at\":");
        api_buf_time(b, &api->started_clock, st.current->started_wall_ns);
        api_buf_lit(b, "}");
    } else {
        api_buf_lit(b, "null");
    }
    api_buf_lit(b, ",\"queue\":{\"realtime\":");
    api_buf_uint(b, st.realtime);
    api_buf_lit(b, ",\"file\":");
    api_buf_uint(b, st.file);
    api_buf_lit(b, "},\"paused_reason\":");
    if (st.paused_reason)
        api_buf_str(b, st.paused_reason);
    else
        api_buf_lit(b, "null");
    api_buf_lit(b, ",\"paused_until\":");
    if (st.paused_reason && st.paused_until)
        api_buf_time(b, &api->now_clock, st.paused_until * 1000000000LL);
    else
        api_buf_lit(b, "null");
    api_buf_lit(b, ",\"timestamp\":");
    api_buf_time(b, &api->now_clock, util_wall_ns());
    api_buf_lit(b, ",\"version\":\"" HIVE_VERSION "\"");
    if (type) {
        api_buf_lit(b, ",\"type\":\"");
        api_buf_lit(b, type);
        api_buf_lit(b, "\"");
    }
    api_buf_lit(b, "}");
    return b;
}

/* LEN bytes of S as a JSON string, made valid UTF-8 first (bad bytes become
 * U+FFFD): jansson refuses invalid UTF-8, and a refused string would make the
 * whole message null. */
static json_t *api_text(const char *s, size_t len)
{
    char *clean = utf8_sanitize(s ? s : "", s ? len : 0, &len);
    json_t *j = json_stringn(clean, len);
    free(clean);
    return j;
}

/* S (NUL-terminated) as api_text does, or JSON null for NULL. */
static json_t *api_text_or_null(const char *s)
{
    return s ? api_text(s, strlen(s)) : json_null();
}

/* A span of a response file as a JSON string (null when absent). */
static json_t *api_span_json(struct response_span span)
{
    return span.p ? api_text(span.p, span.len) : json_null();
}

/* GET /api/task/<id> of a finished task: its newest response file, read
 * back; NULL when the id was never answered here. */
static json_t *api_task_from_disk(struct api *api, const char *id)
{
    struct answers_entry a;
    if (answers_load(store_answers(api->store), id, &a) < 0)
        return NULL;
    const struct response_view *v = &a.view;
    enum task_state state = v->success ? TASK_DONE : v->cancelled ? TASK_CANCELLED : TASK_FAILED;
    json_t *o = json_pack("{s:s, s:s, s:s, s:{s:b, s:o, s:o, s:f, s:s}}", "task_id", id, "state",
                          task_state_name(state), "source", task_source_name(v->source), "result",
                          "success", v->success, "output", api_span_json(v->output), "error",
                          api_span_json(v->error), "duration_seconds", v->duration_seconds,
                          "response_file", a.name);
    answers_entry_clear(&a);
    return o;
}

/* The JSON of a task the engine holds: queued or running (a finished one
 * is read back from its response file). */
static json_t *api_task_json(const struct task *t)
{
    return json_pack("{s:s, s:s, s:s}", "task_id", t->id, "state", task_state_name(t->state),
                     "source", task_source_name(t->source));
}

/* GET /api/task/<id>. */
static void api_get_task(struct api *api, struct http_conn *conn, const char *id)
{
    if (!util_id_valid(id)) {
        http_respond_error(conn, 400, "invalid task_id", NULL);
        return;
    }
    const struct task *t = engine_find(api->engine, id);
    json_t *o = t ? api_task_json(t) : api_task_from_disk(api, id);
    if (!o)
        http_respond_error(conn, 404, "Not Found", NULL);
    else
        http_respond_json(conn, 200, o, NULL);
}

/* Build a task from a submission object; NULL with DETAIL when invalid. */
static struct task *api_task_from_json(json_t *body, enum task_source src, const char **detail)
{
    const char *cmd = json_get_str(body, "command");
    json_t *jid = json_object_get(body, "task_id");
    json_t *jprio = json_object_get(body, "priority");
    const char *from = json_get_str(body, "from");
    if (!cmd && json_is_string(json_object_get(body, "command"))) {
        *detail = "command must not contain NUL characters";
        return NULL;
    }
    if (!cmd || !*cmd) {
        *detail = src == TASK_SOURCE_HTTP ? "command is required" : "Missing 'command' field";
        return NULL;
    }
    if (jid && !json_is_null(jid) && !task_id_valid(json_get_str(body, "task_id"))) {
        *detail = "invalid task_id";
        return NULL;
    }
    char id[80];
    if (jid && json_is_string(jid))
        snprintf(id, sizeof id, "%s", json_string_value(jid));
    else {
        char hex[9];
        util_random_hex(hex, 8);
        snprintf(id, sizeof id, "%s-%s", src == TASK_SOURCE_HTTP ? "HTTP" : "WS", hex);
    }
    struct task *t = task_new(id, src);
    t->content = xstrdup(cmd);
    if (json_is_string(jprio))
        t->priority = xstrdup(json_string_value(jprio));
    else if (json_is_integer(jprio))
        t->priority = xasprintf("P%d", (int)json_integer_value(jprio));
    else
        t->priority = xstrdup("P0");
    t->rank = taskfile_priority_rank(t->priority);
    t->from = xstrdup(from && *from ? from : "user");
    return t;
}

/* The engine made an HTTP task durable: answer 202. A task it could not
 * store (out of descriptors, memory or disk space) was never accepted: 503
 * with Retry-After, as those pass, so a client retries instead of giving up. */
static void api_http_accepted(struct task *t, size_t position, void *arg)
{
    struct http_conn *conn = arg;
    if (!t) {
        http_respond_error(conn, 503, "cannot store the task now", "Retry-After: 1\r\n");
        return;
    }
    http_respond_json(conn, 202,
                      json_pack("{s:s, s:s, s:I, s:s, s:o}", "status", "queued", "task_id", t->id,
                                "position", (json_int_t)position, "message", "Task queued",
                                "timestamp", api_now()),
                      NULL);
}

/* The body of the 409 of a submission whose id this bot has queued,
 * running or answered (ids are idempotency keys): {"detail","task_id",
 * "state"}. */
static json_t *api_duplicate_json(struct api *api, const char *id)
{
    const char *state = engine_task_state(api->engine, id);
    if (!state) /* cannot be: engine_submit just found it */
        state = "queued";
    bool answered = strcmp(state, "done") == 0 || strcmp(state, "failed") == 0;
    char detail[160];
    snprintf(detail, sizeof detail, "task %s is already %s", id, answered ? "answered" : state);
    return json_pack("{s:s, s:s, s:s}", "detail", detail, "task_id", id, "state", state);
}

/* Why a submission was refused, other than a duplicate, and the status that
 * says so (both doors): each is worth trying again soon. */
static const char *api_refusal(enum engine_submit_status st, int *code)
{
    *code = st == ENGINE_FULL ? 429 : 503;
    switch (st) {
    case ENGINE_FULL:
        return "Task queue full - too many pending tasks";
    case ENGINE_RECOVERING:
        return "bot is recovering the tasks of its last run; try again";
    default:
        return "bot is stopping";
    }
}

/* Answer a refused submission (HTTP). */
static void api_http_refused(struct api *api, struct http_conn *conn, enum engine_submit_status st,
                             const char *id)
{
    if (st == ENGINE_DUPLICATE) {
        http_respond_json(conn, 409, api_duplicate_json(api, id), NULL);
        return;
    }
    int code;
    const char *why = api_refusal(st, &code);
    http_respond_error(conn, code, why, "Retry-After: 1\r\n");
}

/* POST /api/task. */
static void api_post_task(struct api *api, struct http_conn *conn, struct http_request *req)
{
    size_t len = evbuffer_get_length(req->body);
    const char *data = (const char *)evbuffer_pullup(req->body, -1);
    json_t *body = json_parse_bytes(data ? data : "", len, NULL, 0);
    if (!json_is_object(body)) {
        json_decref(body);
        http_respond_error(conn, 400, "invalid JSON", NULL);
        return;
    }
    const char *detail = NULL;
    struct task *t = api_task_from_json(body, TASK_SOURCE_HTTP, &detail);
    json_decref(body);
    if (!t) {
        http_respond_error(conn, 400, detail, NULL);
        return;
    }
    enum engine_submit_status st = engine_submit(api->engine, t, api_http_accepted, conn);
    if (st != ENGINE_ACCEPTED) {
        api_http_refused(api, conn, st, t->id);
        task_free(t);
    }
}

/* A cancel waiting for its task's answer: where to give the 200. */
struct api_cancel {
    struct api *api;
    struct http_conn *conn;
};

/* The engine answered a cancelled task durably (T), or will not (NULL). */
static void api_cancel_answered(const struct task *t, void *arg)
{
    struct api_cancel *c = arg;
    json_t *o = t ? api_task_from_disk(c->api, t->id) : NULL;
    if (o)
        http_respond_json(c->conn, 200, o, NULL);
    else
        http_respond_error(c->conn, 503,
                           t ? "the cancelled answer cannot be read back"
                             : "the bot stopped before the task was cancelled; it stays queued",
                           "Retry-After: 1\r\n");
    free(c);
}

/* A cancel that cannot be done: 404, 409 (with the task's state), 503. */
static void api_cancel_refused(struct api *api, struct http_conn *conn,
                               enum engine_cancel_status st, const char *id)
{
    if (st == ENGINE_CANCEL_UNKNOWN) {
        http_respond_error(conn, 404, "Not Found", NULL);
    } else if (st == ENGINE_CANCEL_FINISHED) {
        const char *state = engine_task_state(api->engine, id);
        char detail[160];
        snprintf(detail, sizeof detail, "task %s is already %s", id,
                 state && strcmp(state, "running") != 0 ? state : "finishing");
        http_respond_json(conn, 409,
                          json_pack("{s:s, s:s, s:s}", "detail", detail, "task_id", id, "state",
                                    state ? state : "running"),
                          NULL);
    } else if (st == ENGINE_CANCEL_BUSY) {
        http_respond_error(conn, 503, "the task cannot be cancelled this instant; try again",
                           "Retry-After: 1\r\n");
    } else {
        http_respond_error(conn, 503, "bot is stopping", "Retry-After: 1\r\n");
    }
}

/* POST /api/task/<id>/cancel: answered once the task's cancelled answer is
 * durable (so a cancel that was answered holds across a crash). A body is
 * optional (curl -X POST sends none); one that is sent must be JSON. */
static void api_cancel_task(struct api *api, struct http_conn *conn, struct http_request *req,
                            const char *id)
{
    bool typed = http_request_header(req, "Content-Type") != NULL;
    if ((typed || evbuffer_get_length(req->body) > 0) && !route_is_json(req))
        return http_respond_error(conn, 415, "Content-Type must be application/json", NULL);
    if (!task_id_valid(id))
        return http_respond_error(conn, 400, "invalid task_id", NULL);
    struct api_cancel *c = xmalloc(sizeof *c);
    *c = (struct api_cancel){api, conn};
    enum engine_cancel_status st = engine_cancel(api->engine, id, api_cancel_answered, c);
    if (st != ENGINE_CANCEL_OK) {
        free(c);
        api_cancel_refused(api, conn, st, id);
    }
}

/* POST /api/reset: the next task of an agent bot starts a new session. */
static void api_reset(struct api *api, struct http_conn *conn)
{
    int r = engine_reset_session(api->engine);
    if (r < 0) {
        char detail[200];
        snprintf(detail, sizeof detail, "cannot reset the session: %s", strerror(-r));
        return http_respond_error(conn, 500, detail, NULL);
    }
    http_respond_json(conn, 200, json_pack("{s:s}", "status", "reset"), NULL);
}

/* POST /api/pause, /api/resume, /api/interrupt, /api/reset. */
static void api_control(struct api *api, struct http_conn *conn, const char *what)
{
    if (strcmp(what, "interrupt") == 0) {
        struct engine_status st;
        engine_status(api->engine, &st);
        char *id = st.current ? xstrdup(st.current->id) : NULL;
        bool done = engine_interrupt(api->engine);
        http_respond_json(conn, 200,
                          json_pack("{s:s, s:o}", "status", done ? "interrupted" : "idle",
                                    "task_id", api_str(done ? id : NULL)),
                          NULL);
        free(id);
        return;
    }
    if (strcmp(what, "reset") == 0)
        return api_reset(api, conn);
    bool pause = strcmp(what, "pause") == 0;
    int r = engine_pause(api->engine, pause);
    if (r < 0) {
        char detail[200];
        snprintf(detail, sizeof detail, "cannot %s: %s", what, strerror(-r));
        http_respond_error(conn, 500, detail, NULL);
        return;
    }
    http_respond_json(conn, 200, json_pack("{s:s}", "status", pause ? "paused" : "resumed"), NULL);
}

/* ----- WebSocket ----- */

/* Find a live session by id. */
static struct api_ws *api_ws_find(struct api *api, uint64_t id)
{
    for (struct api_ws *s = api->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* Send the held replies from the head on, up to an ack still waited for. */
static void api_ws_flush(struct api_ws *s)
{
    struct api_ws_reply *r;
    while ((r = s->held) && r->text) {
        ws_send_text(s->ws, r->text, r->len);
        s->held = r->next;
        free(r->text);
        free(r);
    }
    if (!s->held)
        s->held_tail = &s->held;
}

/* Append a reply (TEXT taken over; NULL: a place for an ack) to S's held ones. */
static struct api_ws_reply *api_ws_append(struct api_ws *s, char *text, size_t len)
{
    struct api_ws_reply *r = xcalloc(1, sizeof *r);
    r->text = text;
    r->len = len;
    if (!s->held_tail)
        s->held_tail = &s->held;
    *s->held_tail = r;
    s->held_tail = &r->next;
    return r;
}

/* Forget S's held replies (it is going away). */
static void api_ws_drop_held(struct api_ws *s)
{
    for (struct api_ws_reply *r = s->held, *next; r; r = next) {
        next = r->next;
        free(r->text);
        free(r);
    }
    s->held = NULL;
    s->held_tail = &s->held;
}

/* Send TEXT (taken over) to S now, or after the acks it must follow. */
static void api_ws_emit(struct api_ws *s, char *text, size_t len)
{
    if (!s->held) {
        ws_send_text(s->ws, text, len);
        free(text);
        return;
    }
    api_ws_append(s, text, len);
}

/* Keep a place for the ack of a task S has just sent; its probe. */
static struct api_ws_probe *api_ws_hold(struct api *api, struct api_ws *s)
{
    struct api_ws_probe *probe = xmalloc(sizeof *probe);
    *probe = (struct api_ws_probe){.api = api, .id = s->id, .seq = ++s->next_seq};
    api_ws_append(s, NULL, 0)->seq = probe->seq;
    return probe;
}

/* Put TEXT (taken over; NULL: nothing) in the place kept for PROBE's ack and
 * send what may go now. The session may be gone. Frees PROBE. */
static void api_ws_fill(struct api_ws_probe *probe, char *text, size_t len)
{
    struct api_ws *s = api_ws_find(probe->api, probe->id);
    struct api_ws_reply **pp = s ? &s->held : NULL;
    while (pp && *pp && ((*pp)->text || (*pp)->seq != probe->seq))
        pp = &(*pp)->next;
    free(probe);
    if (!pp || !*pp) {
        free(text);
        return;
    }
    struct api_ws_reply *r = *pp;
    if (text) {
        r->text = text;
        r->len = len;
    } else { /* no ack after all: the place goes */
        *pp = r->next;
        if (s->held_tail == &r->next)
            s->held_tail = pp;
        free(r);
    }
    api_ws_flush(s);
}

/* Send a JSON object (stolen) to session ID if it is still there. */
static void api_ws_send(struct api *api, uint64_t id, json_t *msg)
{
    struct api_ws *s = id ? api_ws_find(api, id) : NULL;
    if (s) {
        size_t len;
        char *text = json_dump_compact(msg, &len);
        api_ws_emit(s, text, len);
    }
    json_decref(msg);
}

/* Send {"type":"error","message":TEXT} (with a status code when given). */
static void api_ws_error(struct api *api, uint64_t id, const char *text, int status)
{
    json_t *m = json_pack("{s:s, s:s}", "type", "error", "message", text);
    if (status)
        json_object_set_new(m, "status_code", json_integer(status));
    api_ws_send(api, id, m);
}

/* The error message of a task whose id this bot knows: the 409's fields
 * (api_duplicate_json) with "message" and "status_code". */
static void api_ws_duplicate(struct api *api, uint64_t id, const char *task_id)
{
    json_t *m = api_duplicate_json(api, task_id);
    json_object_set_new(m, "type", json_string("error"));
    json_object_set(m, "message", json_object_get(m, "detail"));
    json_object_del(m, "detail");
    json_object_set_new(m, "status_code", json_integer(409));
    api_ws_send(api, id, m);
}

/* The engine made a WebSocket task durable: ack it, in its place. */
static void api_ws_accepted(struct task *t, size_t position, void *arg)
{
    (void)position;
    struct api_ws_probe *probe = arg;
    json_t *m = t ? json_pack("{s:s, s:s, s:s, s:o}", "type", "ack", "status", "queued", "task_id",
                              t->id, "timestamp", api_now())
                  : json_pack("{s:s, s:s, s:i}", "type", "error", "message",
                              "cannot store the task now", "status_code", 503);
    size_t len;
    char *text = json_dump_compact(m, &len);
    json_decref(m);
    api_ws_fill(probe, text, len);
}

/* {"type":"task"} from a client. */
static void api_ws_task(struct api *api, struct api_ws *s, json_t *msg)
{
    const char *detail = NULL;
    struct task *t = api_task_from_json(msg, TASK_SOURCE_WEBSOCKET, &detail);
    if (!t) {
        api_ws_error(api, s->id, detail, 400);
        return;
    }
    t->ws_session = s->id;
    struct api_ws_probe *probe = api_ws_hold(api, s);
    enum engine_submit_status st = engine_submit(api->engine, t, api_ws_accepted, probe);
    if (st == ENGINE_ACCEPTED)
        return;
    api_ws_fill(probe, NULL, 0);
    if (st == ENGINE_DUPLICATE) {
        api_ws_duplicate(api, s->id, t->id);
    } else {
        int code;
        const char *why = api_refusal(st, &code);
        api_ws_error(api, s->id, why, code);
    }
    task_free(t);
}

/* One text message from a client. */
static void api_ws_text(struct ws_session *ws, const char *data, size_t len, void *arg)
{
    (void)ws;
    struct api_ws *s = arg;
    struct api *api = s->api;
    json_t *msg = json_parse_bytes(data, len, NULL, 0);
    if (!msg || !json_is_object(msg)) {
        api_ws_error(api, s->id, msg ? "Message must be a JSON object" : "Invalid JSON format", 0);
        json_decref(msg);
        return;
    }
    const char *type = json_get_str(msg, "type");
    if (type && strcmp(type, "task") == 0)
        api_ws_task(api, s, msg);
    else if (type && strcmp(type, "ping") == 0)
        api_ws_send(api, s->id, json_pack("{s:s, s:o}", "type", "pong", "timestamp", api_now()));
    else if (type && strcmp(type, "status") == 0) {
        const struct util_buf *b = api_status_render(api, "status");
        char *copy = xmalloc(b->len + 1);
        memcpy(copy, b->data, b->len);
        api_ws_emit(s, copy, b->len);
    } else {
        char *t = type ? xstrdup(type) : json_dump_compact(json_object_get(msg, "type"), NULL);
        char *text = xasprintf("Unknown message type: %s", t);
        api_ws_error(api, s->id, text, 0);
        free(text);
        free(t);
    }
    json_decref(msg);
}

/* A client went away; its accepted tasks run on regardless. */
static void api_ws_closed(struct ws_session *ws, void *arg)
{
    (void)ws;
    struct api_ws *s = arg;
    api_ws_drop_held(s);
    for (struct api_ws **pp = &s->api->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s);
}

/* GET /ws: upgrade (Host and Origin passed the server's guard). */
static void api_ws_upgrade(struct api *api, struct http_conn *conn, struct http_request *req)
{
    char detail[200];
    int status = ws_upgrade_check(req, detail, sizeof detail);
    if (status) {
        http_respond_error(conn, status, detail,
                           status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                         : NULL);
        return;
    }
    if (engine_stopping(api->engine)) {
        http_respond_error(conn, 503, "bot is stopping", "Retry-After: 1\r\n");
        return;
    }
    static const struct ws_callbacks cbs = {api_ws_text, api_ws_closed};
    struct api_ws *s = xcalloc(1, sizeof *s);
    s->api = api;
    s->ws = ws_accept(conn, req, &api->cfg.ws, &cbs, s);
    if (!s->ws) {
        free(s);
        return;
    }
    s->id = ws_session_id(s->ws);
    s->held_tail = &s->held;
    s->next = api->sessions;
    api->sessions = s;
}

/* The WebSocket sink of the bot's events: a task's started, chunk and
 * response messages (SPEC §5) go to the client that submitted it. */
static void api_ws_event(struct api *api, const struct events_event *ev)
{
    const struct task *t = ev->task;
    if (!t || !t->ws_session)
        return;
    if (strcmp(ev->type, "task_started") == 0)
        api_ws_send(api, t->ws_session,
                    json_pack("{s:s, s:s, s:o}", "type", "started", "task_id", t->id, "timestamp",
                              api_now()));
    else if (strcmp(ev->type, "task_output") == 0)
        api_ws_send(api, t->ws_session,
                    json_pack("{s:s, s:s, s:o}", "type", "chunk", "task_id", t->id, "content",
                              api_text(ev->chunk, ev->chunk_len)));
    else if (strcmp(ev->type, "task_tool") == 0)
        api_ws_send(api, t->ws_session, json_loadb(ev->json, ev->json_len, 0, NULL));
    else if (strcmp(ev->type, "task_completed") == 0 || strcmp(ev->type, "task_failed") == 0 ||
             strcmp(ev->type, "task_cancelled") == 0)
        api_ws_send(api, t->ws_session,
                    json_pack("{s:s, s:s, s:o, s:b, s:o, s:f, s:s, s:o}", "type", "response",
                              "task_id", t->id, "content", api_text(t->output, t->output_len),
                              "success", t->success, "error", api_text_or_null(t->error),
                              "duration_seconds", api_ms(t->duration_seconds), "source",
                              task_source_name(t->source), "timestamp", api_now()));
}

/* ----- the event stream (GET /api/events, SPEC §8) ----- */

/* Every event of the bot: to its WebSocket client and the stream's
 * subscribers (task_output, live only, has no id). */
static void api_event_cb(const struct events_event *ev, void *arg)
{
    struct api *api = arg;
    api_ws_event(api, ev);
    char id[24] = "";
    if (ev->seq)
        snprintf(id, sizeof id, "%llu", (unsigned long long)ev->seq);
    ssehub_publish(api->hub, ev->seq ? id : NULL, ev->type, api->cfg.bot_id, ev->json,
                   ev->json_len);
}

/* Replay callback: one stored event (or the resync notice) to one reader. */
static void api_replay_cb(const struct events_event *ev, void *arg)
{
    struct api_replay *r = arg;
    char id[24] = "";
    if (ev->seq)
        snprintf(id, sizeof id, "%llu", (unsigned long long)ev->seq);
    ssehub_send_to(r->sub, ev->seq ? id : NULL, ev->type, r->api->cfg.bot_id, ev->json,
                   ev->json_len);
}

/* GET /api/events: what the cursor missed (from the events file), then live. */
static void api_events(struct api *api, struct http_conn *conn, struct http_request *req)
{
    uint64_t since = 0;
    int has = ssehub_cursor(req, &since);
    if (has < 0)
        return http_respond_error(conn, 400, "invalid cursor", NULL);
    struct ssehub_sub *sub = ssehub_open(api->hub, conn, req);
    if (!sub)
        return;
    struct api_replay r = {api, sub};
    if (has)
        events_replay(api->events, since, 0, api_replay_cb, &r);
    ssehub_live(sub);
}

/* ----- routing ----- */

/* GET /health (no token: it tells nothing but that the bot is up). */
static void api_route_health(struct http_conn *conn, struct http_request *req,
                             const struct route_params *pp, void *arg)
{
    (void)req, (void)pp;
    struct api *api = arg;
    http_respond_json(conn, 200,
                      json_pack("{s:s, s:s, s:o}", "status", "ok", "bot_id", api->cfg.bot_id,
                                "timestamp", api_now()),
                      NULL);
}

/* GET /status. */
static void api_route_status(struct http_conn *conn, struct http_request *req,
                             const struct route_params *pp, void *arg)
{
    (void)req, (void)pp;
    const struct util_buf *b = api_status_render(arg, NULL);
    http_respond(conn, 200, "application/json", b->data, b->len, NULL);
}

/* GET /api/events. */
static void api_route_events(struct http_conn *conn, struct http_request *req,
                             const struct route_params *pp, void *arg)
{
    (void)pp;
    api_events(arg, conn, req);
}

/* GET /ws. */
static void api_route_ws(struct http_conn *conn, struct http_request *req,
                         const struct route_params *pp, void *arg)
{
    (void)pp;
    api_ws_upgrade(arg, conn, req);
}

/* GET /api/task/<id> (the id ends the path). */
static void api_route_get_task(struct http_conn *conn, struct http_request *req,
                               const struct route_params *pp, void *arg)
{
    (void)req;
    api_get_task(arg, conn, pp->s[0]);
}

/* POST /api/task/<id>/cancel. */
static void api_route_cancel(struct http_conn *conn, struct http_request *req,
                             const struct route_params *pp, void *arg)
{
    char id[80];
    if (!route_param(pp, 0, id, sizeof id))
        return http_respond_error(conn, 400, "invalid task_id", NULL);
    api_cancel_task(arg, conn, req, id);
}

/* POST /api/task. */
static void api_route_post_task(struct http_conn *conn, struct http_request *req,
                                const struct route_params *pp, void *arg)
{
    (void)pp;
    struct api *api = arg;
    if (engine_stopping(api->engine))
        return http_respond_error(conn, 503, "bot is stopping", "Retry-After: 1\r\n");
    api_post_task(api, conn, req);
}

/* POST /api/pause, /resume, /interrupt, /reset: the last segment says which. */
static void api_route_control(struct http_conn *conn, struct http_request *req,
                              const struct route_params *pp, void *arg)
{
    (void)pp;
    api_control(arg, conn, req->path + strlen("/api/"));
}

/* The worker's routes (its timeline and metrics are observe.c's table). */
static const struct route api_routes[] = {
    {ROUTE_READ, "/health", ROUTE_PUBLIC, api_route_health},
    {ROUTE_READ, "/status", 0, api_route_status},
    {ROUTE_GET, "/api/events", 0, api_route_events},
    {ROUTE_GET, "/ws", 0, api_route_ws},
    {ROUTE_POST, "/api/task/*/cancel", 0, api_route_cancel}, /* a body is optional */
    {ROUTE_READ, "/api/task/*", 0, api_route_get_task},
    {ROUTE_POST, "/api/task", ROUTE_JSON, api_route_post_task},
    {ROUTE_POST, "/api/pause", ROUTE_JSON, api_route_control},
    {ROUTE_POST, "/api/resume", ROUTE_JSON, api_route_control},
    {ROUTE_POST, "/api/interrupt", ROUTE_JSON, api_route_control},
    {ROUTE_POST, "/api/reset", ROUTE_JSON, api_route_control},
};

/* The one routing step: every request ends in exactly one handler. */
static void api_route(struct http_conn *conn, struct http_request *req, void *arg)
{
    struct api *api = arg;
    if (req->path[0] != '/')
        return http_respond_error(conn, 400, "invalid request target", NULL);
    if (pages_route(conn, req, api->cfg.token)) /* the bot's page, its login */
        return;
    if (route_dispatch(api_routes, sizeof api_routes / sizeof *api_routes, conn, req,
                       api->cfg.token, api))
        return;
    if (api->observe && observe_route(api->observe, conn, req, api->cfg.token))
        return;
    if (!http_request_token_ok(req, api->cfg.token)) /* no route tells what exists */
        return route_unauthorized(conn);
    http_respond_error(conn, 404, "Not Found", NULL);
}

/* The Host/Origin rule of this bot's port (fixed for the worker's life). */
static const struct guard_policy *api_guard(void *arg)
{
    struct api *api = arg;
    return &api->guard;
}

struct api *api_new(struct event_base *base, int listen_fd, const struct api_config *cfg,
                    struct store *store)
{
    struct api *api = xcalloc(1, sizeof *api);
    api->cfg = *cfg;
    api->store = store;
    api->pid = getpid();
    api->guard = (struct guard_policy){cfg->server_names, cfg->allowed_origins, cfg->bind};
    struct http_server_config hc = {
        .limits = cfg->limits, .on_request = api_route, .arg = api, .guard = api_guard};
    api->http = http_server_new(base, listen_fd, &hc);
    if (!api->http) {
        free(api);
        return NULL;
    }
    /* A writer thread: the copy of every task's events into each subscriber's
     * socket runs beside the loop that takes and answers tasks (bench E2). */
    api->hub = ssehub_new(base, SSEHUB_MAX_PENDING, SSEHUB_KEEPALIVE_MS, true);
    return api;
}

void api_set_engine(struct api *api, struct engine *engine)
{
    api->engine = engine;
}

size_t api_event_subscribers(void *arg)
{
    struct api *api = arg;
    return api->hub ? ssehub_subscribers(api->hub) : 0;
}

void api_set_observe(struct api *api, struct observe *observe)
{
    api->observe = observe;
}

void api_set_events(struct api *api, struct events *events)
{
    api->events = events;
    api->events_sub = events_subscribe(events, api_event_cb, api);
}

void api_close_sessions(struct api *api)
{
    ssehub_close_all(api->hub);
    for (struct api_ws *s = api->sessions; s; s = s->next)
        ws_close(s->ws, 1001, "going away");
}

size_t api_sessions(const struct api *api)
{
    size_t n = 0;
    for (const struct api_ws *s = api->sessions; s; s = s->next)
        n++;
    return n;
}

int api_listen(struct api *api, int listen_fd)
{
    return http_server_listen(api->http, listen_fd);
}

void api_free(struct api *api)
{
    if (!api)
        return;
    while (api->sessions) { /* clients that never answered our close */
        struct api_ws *s = api->sessions;
        api->sessions = s->next;
        ws_session_discard(s->ws);
        api_ws_drop_held(s);
        free(s);
    }
    if (api->events)
        events_unsubscribe(api->events, api->events_sub);
    ssehub_free(api->hub);
    http_server_free(api->http);
    free(api->status.data);
    free(api);
}
