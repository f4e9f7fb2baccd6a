/*
 * check_tlws: the WebSocket timeline (worker/tlws.c) over a socketpair, the
 * test being the client: subscribe with filters and get the matching
 * initial entries, `update`s only for new entries that match, the live
 * messages the events sink feeds (task_started, progress, task_completed,
 * task_failed for a cancel) only for the subscribed bot, unsubscribe,
 * ping/pong and the 400 errors, and the path parser.
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "worker/tlws.h"

#include "tests/check_support.h"

#define BOT "BOT-T"

struct client {
    struct event_base *base;
    struct tlws *hub;
    struct timeline *tl;
    char dir[64];
    int fd;
    struct evbuffer *rx;
};

/* The lookup: our one bot. */
static struct timeline *client_lookup(void *arg, const char *bot_id)
{
    struct client *c = arg;
    return strcmp(bot_id, BOT) == 0 ? c->tl : NULL;
}

/* Append a finished task to the timeline. */
static void client_add(struct client *c, const char *id, const char *source, bool ok)
{
    struct timeline_entry e = {.task_id = id,
                               .source = source,
                               .finished_wall_ns = util_wall_ns(),
                               .success = ok,
                               .output = "out",
                               .output_len = 3,
                               .error = ok ? NULL : "boom",
                               .duration_seconds = 0.5,
                               .response_file = id};
    ck_assert_int_eq(timeline_append(c->tl, &e), 0);
}

/* A hub, a timeline with three entries and one session bound to BOT. */
static void client_open(struct client *c)
{
    char err[256];
    int sv[2];
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/check-tlws-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(c->dir));
    c->tl = timeline_open(c->dir, BOT, true, err, sizeof err);
    ck_assert_msg(c->tl != NULL, "%s", err);
    client_add(c, "T-1", "http", true);
    client_add(c, "T-2", "file", false);
    client_add(c, "T-3", "http", true);
    c->base = event_base_new();
    struct ws_config cfg;
    ws_config_default(&cfg);
    cfg.ping_interval_ms = 0;
    c->hub = tlws_new(&cfg, client_lookup, c);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(util_set_nonblock_cloexec(sv[0]), 0);
    ck_assert_int_eq(util_set_nonblock_cloexec(sv[1]), 0);
    c->fd = sv[1];
    c->rx = evbuffer_new();
    tlws_attach(c->hub, bufferevent_socket_new(c->base, sv[0], BEV_OPT_CLOSE_ON_FREE), BOT);
    ck_assert_uint_eq(tlws_sessions(c->hub), 1);
}

static void client_close(struct client *c)
{
    tlws_free(c->hub);
    timeline_close(c->tl);
    close(c->fd);
    evbuffer_free(c->rx);
    event_base_free(c->base);
    char *cmd = xasprintf("rm -rf %s", c->dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Send TEXT as one masked text frame (short: < 126 bytes). */
static void client_send(struct client *c, const char *text)
{
    unsigned char f[140], key[4] = {1, 2, 3, 4};
    size_t len = strlen(text);
    ck_assert_uint_lt(len, 126);
    f[0] = 0x81;
    f[1] = (unsigned char)(0x80 | len);
    memcpy(f + 2, key, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = (unsigned char)text[i] ^ key[i % 4];
    ck_assert_int_eq(write(c->fd, f, 6 + len), (ssize_t)(6 + len));
}

/* The next text message from the server, parsed (waits up to 2 s). */
static json_t *client_next(struct client *c)
{
    int64_t deadline = util_mono_ms() + 2000;
    while (util_mono_ms() < deadline) {
        event_base_loop(c->base, EVLOOP_NONBLOCK);
        evbuffer_read(c->rx, c->fd, 65536);
        size_t have = evbuffer_get_length(c->rx);
        unsigned char *p = evbuffer_pullup(c->rx, (ssize_t)(have < 4 ? have : 4));
        if (have >= 2) {
            size_t len = p[1] & 0x7f, head = 2;
            bool known = len < 126;
            if (len == 126 && have >= 4) {
                len = (size_t)p[2] << 8 | p[3];
                head = 4;
                known = true;
            }
            if (known && have >= head + len) {
                ck_assert_int_eq(p[0], 0x81);
                unsigned char *all = evbuffer_pullup(c->rx, (ssize_t)(head + len));
                json_t *msg = json_parse_bytes((char *)all + head, len, NULL, 0);
                evbuffer_drain(c->rx, head + len);
                ck_assert_ptr_nonnull(msg);
                return msg;
            }
        }
        usleep(500);
    }
    ck_abort_msg("no message from the server");
    return NULL;
}

/* The next message's type is TYPE; the message is returned. */
static json_t *client_expect(struct client *c, const char *type)
{
    json_t *m = client_next(c);
    ck_assert_str_eq(json_get_str(m, "type"), type);
    return m;
}

/* Nothing else is pending: a ping's pong is the next message. */
static void client_quiet(struct client *c)
{
    client_send(c, "{\"type\":\"ping\"}");
    json_decref(client_expect(c, "pong"));
}

/* An event of §8 (new reference). */
static json_t *event(const char *type, const char *bot, const char *source)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "type", type, "bot_id", bot, "task_id",
                     "T-9", "source", source, "timestamp", "2026-12-03T10:00:00Z", "content",
                     "chunk", "success", strcmp(type, "task_completed") == 0);
}

START_TEST(test_subscribe_initial_and_updates)
{
    struct client c;
    client_open(&c);
    client_send(&c,
                "{\"type\":\"subscribe\",\"bot_id\":\"" BOT "\",\"filters\":{\"success\":true}}");
    json_t *m = client_expect(&c, "subscribed");
    ck_assert_str_eq(json_get_str(m, "bot_id"), BOT);
    json_t *init = json_object_get(m, "initial_entries");
    ck_assert_uint_eq(json_array_size(init), 2);
    ck_assert_str_eq(json_get_str(json_array_get(init, 0), "task_id"), "T-3");
    ck_assert_str_eq(json_get_str(json_array_get(init, 1), "task_id"), "T-1");
    json_decref(m);
    /* A failed entry is filtered out, a successful one is an update. */
    json_t *bad = json_pack("{s:s, s:s, s:s, s:b, s:s}", "task_id", "T-4", "bot_id", BOT, "source",
                            "http", "success", 0, "timestamp", "2026-12-03T10:00:00Z");
    json_t *good = json_pack("{s:s, s:s, s:s, s:b, s:s}", "task_id", "T-5", "bot_id", BOT, "source",
                             "file", "success", 1, "timestamp", "2026-12-03T10:00:01Z");
    json_t *other = json_pack("{s:s, s:s, s:s, s:b}", "task_id", "T-6", "bot_id", "BOT-X", "source",
                              "file", "success", 1);
    tlws_entry(c.hub, bad);
    tlws_entry(c.hub, other);
    tlws_entry(c.hub, good);
    m = client_expect(&c, "update");
    ck_assert_str_eq(json_get_str(json_object_get(m, "entry"), "task_id"), "T-5");
    json_decref(m);
    client_quiet(&c);
    /* Unsubscribed: nothing more. */
    client_send(&c, "{\"type\":\"unsubscribe\",\"bot_id\":\"" BOT "\"}");
    json_decref(client_expect(&c, "unsubscribed"));
    tlws_entry(c.hub, good);
    client_quiet(&c);
    json_decref(bad);
    json_decref(good);
    json_decref(other);
    client_close(&c);
}
END_TEST

START_TEST(test_live_events)
{
    struct client c;
    client_open(&c);
    client_send(&c, "{\"type\":\"subscribe\",\"filters\":{\"source\":\"http\"}}");
    json_t *m = client_expect(&c, "subscribed");
    ck_assert_uint_eq(json_array_size(json_object_get(m, "initial_entries")), 2);
    json_decref(m);
    const char *in[] = {"task_received", "task_started",   "task_output", "task_completed",
                        "task_failed",   "task_cancelled", "bot_paused"};
    const char *out[] = {"task_started", "progress", "task_completed", "task_failed",
                         "task_failed"};
    for (size_t i = 0; i < 7; i++) {
        json_t *e = event(in[i], BOT, "http");
        tlws_event(c.hub, e);
        json_decref(e);
        e = event(in[i], "BOT-X", "http"); /* another bot's */
        tlws_event(c.hub, e);
        json_decref(e);
        e = event(in[i], BOT, "file"); /* filtered out by source */
        tlws_event(c.hub, e);
        json_decref(e);
    }
    for (size_t i = 0; i < 5; i++) {
        m = client_expect(&c, out[i]);
        ck_assert_str_eq(json_get_str(m, "task_id"), "T-9");
        if (i == 1)
            ck_assert_str_eq(json_get_str(m, "message"), "chunk");
        json_decref(m);
    }
    client_quiet(&c);
    client_close(&c);
}
END_TEST

START_TEST(test_errors)
{
    struct client c;
    client_open(&c);
    const char *bad[] = {"{nope",
                         "[1]",
                         "{\"x\":1}",
                         "{\"type\":\"dance\"}",
                         "{\"type\":\"subscribe\",\"bot_id\":\"BOT-X\"}",
                         "{\"type\":\"subscribe\",\"filters\":{\"source\":\"ftp\"}}",
                         "{\"type\":\"subscribe\",\"filters\":{\"success\":\"yes\"}}",
                         "{\"type\":\"subscribe\",\"filters\":3}",
                         "{\"type\":\"subscribe\",\"from_timestamp\":\"soon\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        client_send(&c, bad[i]);
        json_t *m = client_expect(&c, "error");
        ck_assert_int_eq(json_integer_value(json_object_get(m, "error_code")), 400);
        ck_assert_ptr_nonnull(json_get_str(m, "message"));
        json_decref(m);
    }
    /* A failed subscribe leaves the session unsubscribed. */
    json_t *e = event("task_started", BOT, "http");
    tlws_event(c.hub, e);
    json_decref(e);
    client_quiet(&c);
    /* from_timestamp in the future: no initial entries. */
    client_send(&c, "{\"type\":\"subscribe\",\"from_timestamp\":\"2999-01-01T00:00:00Z\"}");
    json_t *m = client_expect(&c, "subscribed");
    ck_assert_uint_eq(json_array_size(json_object_get(m, "initial_entries")), 0);
    json_decref(m);
    client_close(&c);
}
END_TEST

START_TEST(test_path)
{
    char id[TLWS_ID_MAX + 1];
    ck_assert(tlws_path_bot("/ws/bot/BOT-1/timeline", id, sizeof id));
    ck_assert_str_eq(id, "BOT-1");
    ck_assert(!tlws_path_bot("/ws/bot//timeline", id, sizeof id));
    ck_assert(!tlws_path_bot("/ws/bot/a/b/timeline", id, sizeof id));
    ck_assert(!tlws_path_bot("/ws/bot/BOT-1/timelines", id, sizeof id));
    ck_assert(!tlws_path_bot("/ws/bot/timeline", id, sizeof id));
    ck_assert(!tlws_path_bot("/ws", id, sizeof id));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tlws");
    TCase *tc = tcase_create("tlws");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_subscribe_initial_and_updates);
    tcase_add_test(tc, test_live_events);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_path);
    suite_add_tcase(s, tc);
    return check_run(s);
}
