/*
 * tlws: WebSocket timeline sessions (see tlws.h). Each session is a small
 * record on the hub's list: its bot, whether it is subscribed, and its
 * filters. Messages are parsed whole (the WebSocket layer hands complete
 * text messages); every bad message gets one error with error_code 400 and
 * the session stays open.
 */
#include "worker/tlws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

/* The session's view of the timeline: the bot of its path and, once
 * subscribed, what it asked for. */
struct tlws_session {
    struct tlws *hub;
    struct ws_session *ws;
    struct tlws_session *next;
    char bot_id[TLWS_ID_MAX + 1];
    bool subscribed;
    int source;  /* -1 any, else 0 file, 1 http, 2 websocket */
    int success; /* -1 any, 0, 1 */
    bool has_from;
    int64_t from; /* UTC seconds, inclusive */
};

struct tlws {
    struct ws_config cfg;
    tlws_lookup_fn lookup;
    void *arg;
    struct tlws_session *sessions;
};

static const char *const tlws_sources[] = {"file", "http", "websocket"};

/* 0..2 for a source name, else -1. */
static int tlws_source_index(const char *s)
{
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, tlws_sources[i]) == 0)
            return i;
    return -1;
}

/* Send MSG (taken) to S. */
static void tlws_send(struct tlws_session *s, json_t *msg)
{
    size_t len;
    char *text = json_dump_compact(msg, &len);
    json_decref(msg);
    if (text)
        ws_send_text(s->ws, text, len);
    free(text);
}

/* The error message of §8. */
static void tlws_error(struct tlws_session *s, const char *message)
{
    tlws_send(s,
              json_pack("{s:s, s:s, s:i}", "type", "error", "message", message, "error_code", 400));
}

/* Read the filters of a subscribe message into S. NULL, or the error. */
static const char *tlws_filters(struct tlws_session *s, const json_t *msg)
{
    const json_t *f = json_object_get(msg, "filters"),
                 *from = json_object_get(msg, "from_timestamp");
    s->source = s->success = -1;
    s->has_from = false;
    if (f && !json_is_null(f) && !json_is_object(f))
        return "filters must be an object";
    const json_t *src = f ? json_object_get(f, "source") : NULL;
    const json_t *ok = f ? json_object_get(f, "success") : NULL;
    if (src && !json_is_null(src) && (s->source = tlws_source_index(json_string_value(src))) < 0)
        return "filters.source must be file, http or websocket";
    if (ok && !json_is_null(ok)) {
        if (!json_is_boolean(ok))
            return "filters.success must be true or false";
        s->success = json_is_true(ok);
    }
    if (from && !json_is_null(from)) {
        if (!json_is_string(from) ||
            timeline_parse_time(json_string_value(from), true, &s->from) < 0)
            return "from_timestamp must be an ISO-8601 time";
        s->has_from = true;
    }
    return NULL;
}

/* The newest entries of TL S's subscription matches (up to the default
 * page). */
static json_t *tlws_initial(struct tlws_session *s, struct timeline *tl)
{
    if (!tl)
        return json_array();
    struct timeline_query q = {.limit = TIMELINE_LIMIT_DEFAULT,
                               .source = s->source,
                               .success = s->success,
                               .has_start = s->has_from,
                               .start = s->from};
    json_t *page = timeline_query_run(&tl, 1, &q);
    json_t *entries = json_incref(json_object_get(page, "entries"));
    json_decref(page);
    return entries ? entries : json_array();
}

/* {"type":"subscribe",...}: check, remember, answer with the entries. */
static void tlws_subscribe(struct tlws_session *s, const json_t *msg)
{
    const json_t *bot = json_object_get(msg, "bot_id");
    if (bot && !json_is_null(bot) &&
        (!json_is_string(bot) || strcmp(json_string_value(bot), s->bot_id) != 0))
        return tlws_error(s, "bot_id does not match the path");
    s->subscribed = false;
    const char *err = tlws_filters(s, msg);
    if (err)
        return tlws_error(s, err);
    /* The look-up may bring the owner's view up to date and send updates
     * to other sessions: this one is not subscribed until its initial
     * entries are out, so it never gets one of them twice. */
    struct timeline *tl = s->hub->lookup(s->hub->arg, s->bot_id);
    char message[TLWS_ID_MAX + 40];
    snprintf(message, sizeof message, "Subscribed to %s timeline", s->bot_id);
    tlws_send(s, json_pack("{s:s, s:s, s:s, s:o}", "type", "subscribed", "bot_id", s->bot_id,
                           "message", message, "initial_entries", tlws_initial(s, tl)));
    s->subscribed = true;
}

/* One whole text message of a client. */
static void tlws_text(struct ws_session *ws, const char *data, size_t len, void *arg)
{
    (void)ws;
    struct tlws_session *s = arg;
    json_t *msg = json_parse_bytes(data, len, NULL, 0);
    const char *type = msg ? json_get_str(msg, "type") : NULL;
    if (!msg || !json_is_object(msg))
        tlws_error(s, msg ? "message must be a JSON object" : "invalid JSON");
    else if (!type)
        tlws_error(s, "type is required");
    else if (strcmp(type, "subscribe") == 0)
        tlws_subscribe(s, msg);
    else if (strcmp(type, "unsubscribe") == 0) {
        s->subscribed = false;
        tlws_send(s, json_pack("{s:s, s:s}", "type", "unsubscribed", "bot_id", s->bot_id));
    } else if (strcmp(type, "ping") == 0)
        tlws_send(s, json_pack("{s:s}", "type", "pong"));
    else
        tlws_error(s, "unknown message type");
    json_decref(msg);
}

/* A session ended: unlink and free it. */
static void tlws_closed(struct ws_session *ws, void *arg)
{
    (void)ws;
    struct tlws_session *s = arg;
    for (struct tlws_session **pp = &s->hub->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s);
}

struct tlws *tlws_new(const struct ws_config *config, tlws_lookup_fn lookup, void *arg)
{
    struct tlws *hub = xcalloc(1, sizeof *hub);
    hub->cfg = *config;
    hub->lookup = lookup;
    hub->arg = arg;
    return hub;
}

void tlws_free(struct tlws *hub)
{
    if (!hub)
        return;
    while (hub->sessions) {
        struct tlws_session *s = hub->sessions;
        hub->sessions = s->next;
        ws_session_discard(s->ws);
        free(s);
    }
    free(hub);
}

void tlws_close_all(struct tlws *hub)
{
    for (struct tlws_session *s = hub ? hub->sessions : NULL; s; s = s->next)
        ws_close(s->ws, 1001, "going away");
}

size_t tlws_sessions(const struct tlws *hub)
{
    size_t n = 0;
    for (const struct tlws_session *s = hub ? hub->sessions : NULL; s; s = s->next)
        n++;
    return n;
}

bool tlws_path_bot(const char *path, char *id, size_t cap)
{
    const char *prefix = "/ws/bot/", *suffix = "/timeline";
    size_t plen = strlen(prefix), slen = strlen(suffix), len = strlen(path);
    if (strncmp(path, prefix, plen) != 0 || len <= plen + slen ||
        strcmp(path + len - slen, suffix) != 0)
        return false;
    size_t n = len - plen - slen;
    if (n >= cap || memchr(path + plen, '/', n))
        return false;
    memcpy(id, path + plen, n);
    id[n] = '\0';
    return true;
}

static const struct ws_callbacks tlws_callbacks = {tlws_text, tlws_closed};

/* A session record for BOT_ID, not yet on the hub's list. */
static struct tlws_session *tlws_session_new(struct tlws *hub, const char *bot_id)
{
    struct tlws_session *s = xcalloc(1, sizeof *s);
    s->hub = hub;
    snprintf(s->bot_id, sizeof s->bot_id, "%s", bot_id);
    return s;
}

/* Put S on the list once its WebSocket runs (freed when it does not). */
static void tlws_session_link(struct tlws *hub, struct tlws_session *s)
{
    if (!s->ws) {
        free(s);
        return;
    }
    s->next = hub->sessions;
    hub->sessions = s;
}

void tlws_accept(struct tlws *hub, struct http_conn *conn, const struct http_request *req,
                 const char *bot_id)
{
    struct tlws_session *s = tlws_session_new(hub, bot_id);
    s->ws = ws_accept(conn, req, &hub->cfg, &tlws_callbacks, s);
    tlws_session_link(hub, s);
}

void tlws_attach(struct tlws *hub, struct bufferevent *bev, const char *bot_id)
{
    struct tlws_session *s = tlws_session_new(hub, bot_id);
    s->ws = ws_session_new(bev, &hub->cfg, &tlws_callbacks, s);
    tlws_session_link(hub, s);
}

/* True when S subscribed to BOT and the SOURCE/SUCCESS/TIME of an entry or
 * event pass its filters (SUCCESS -1 or TIME -1: not known yet). */
static bool tlws_wants(const struct tlws_session *s, const char *bot, const char *source,
                       int success, int64_t time)
{
    if (!s->subscribed || !bot || strcmp(bot, s->bot_id) != 0)
        return false;
    if (s->source >= 0 && tlws_source_index(source) != s->source)
        return false;
    if (s->success >= 0 && success >= 0 && success != s->success)
        return false;
    return !s->has_from || time < 0 || time >= s->from;
}

/* The UTC seconds of an object's "timestamp", or -1. */
static int64_t tlws_time(const json_t *o)
{
    int64_t t;
    const char *ts = json_get_str(o, "timestamp");
    return ts && timeline_parse_time(ts, false, &t) == 0 ? t : -1;
}

void tlws_entry(struct tlws *hub, const json_t *entry)
{
    const char *bot = json_get_str(entry, "bot_id"), *source = json_get_str(entry, "source");
    int success = json_is_boolean(json_object_get(entry, "success"))
                      ? json_is_true(json_object_get(entry, "success"))
                      : -1;
    int64_t t = tlws_time(entry);
    for (struct tlws_session *s = hub->sessions; s; s = s->next)
        if (tlws_wants(s, bot, source, success, t))
            tlws_send(s, json_pack("{s:s, s:O}", "type", "update", "entry", entry));
}

/* The message of §8 an event becomes (new reference), or NULL. */
static json_t *tlws_event_message(const json_t *event, const char *type)
{
    if (strcmp(type, "task_output") == 0)
        return json_pack("{s:s, s:O, s:O, s:O}", "type", "progress", "task_id",
                         json_object_get(event, "task_id"), "message",
                         json_object_get(event, "content"), "timestamp",
                         json_object_get(event, "timestamp"));
    const char *as = strcmp(type, "task_started") == 0     ? "task_started"
                     : strcmp(type, "task_completed") == 0 ? "task_completed"
                     : strcmp(type, "task_failed") == 0 || strcmp(type, "task_cancelled") == 0
                         ? "task_failed"
                         : NULL;
    if (!as)
        return NULL;
    json_t *msg = json_deep_copy(event);
    json_object_set_new(msg, "type", json_string(as));
    return msg;
}

void tlws_event(struct tlws *hub, const json_t *event)
{
    const char *type = json_get_str(event, "type");
    if (!hub || !type || !hub->sessions)
        return;
    json_t *msg = tlws_event_message(event, type);
    if (!msg)
        return;
    const json_t *ok = json_object_get(event, "success");
    int success = json_is_boolean(ok) ? json_is_true(ok) : -1;
    for (struct tlws_session *s = hub->sessions; s; s = s->next)
        if (tlws_wants(s, json_get_str(event, "bot_id"), json_get_str(event, "source"), success,
                       -1))
            tlws_send(s, json_incref(msg));
    json_decref(msg);
}
