/*
 * ws: WebSocket (RFC 6455) server sessions with wslay, on a bufferevent taken
 * over from an HTTP connection. It owns the handshake (SHA-1/base64 from
 * libcrypto; Origin is the HTTP layer's guard's, guard.h), text messages with UTF-8 validation,
 * fragmentation, ping/pong, server pings of idle connections, close codes
 * (1003 binary, 1007 bad UTF-8, 1009 too big, 1002 protocol) and the
 * message-size limit. The application sees whole text messages only.
 */
#ifndef HIVE_WS_H
#define HIVE_WS_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"

struct ws_session;

struct ws_config {
    size_t max_message;   /* 1 MiB; a bigger message closes with 1009 */
    int ping_interval_ms; /* 30 s: ping after this long without traffic; a
                             session silent for two intervals is dropped */
};

struct ws_callbacks {
    /* One complete, valid UTF-8 text message. */
    void (*on_text)(struct ws_session *ws, const char *data, size_t len, void *arg);
    /* The session ended (either side, or an error). It is freed right after
     * this returns; do not use WS afterwards. */
    void (*on_close)(struct ws_session *ws, void *arg);
};

/* SPEC defaults. */
void ws_config_default(struct ws_config *config);

/* Compute Sec-WebSocket-Accept for CLIENT_KEY into OUT (29 bytes with NUL). */
void ws_accept_key(const char *client_key, char out[29]);

/* Validate an upgrade request: 0 when it is a valid WebSocket upgrade, else the
 * HTTP status to answer (400 malformed, 426 missing upgrade/version) with a
 * reason in DETAIL. Origin is not judged here: the server's guard did. */
int ws_upgrade_check(const struct http_request *req, char *detail, size_t cap);

/* Answer 101 to a request that passed ws_upgrade_check() and run a session on
 * the connection (taken over with http_conn_detach()). */
struct ws_session *ws_accept(struct http_conn *conn, const struct http_request *req,
                             const struct ws_config *config, const struct ws_callbacks *cbs,
                             void *arg);

/* Run a session on BEV after a handshake that already happened (tests, and
 * ws_accept itself). Takes ownership of BEV. */
struct ws_session *ws_session_new(struct bufferevent *bev, const struct ws_config *config,
                                  const struct ws_callbacks *cbs, void *arg);

/* Queue a text message; -1 if the session is closing. */
int ws_send_text(struct ws_session *ws, const char *data, size_t len);
/* Start a clean close with CODE; on_close follows once the close is done
 * (or after a short timeout). */
void ws_close(struct ws_session *ws, uint16_t code, const char *reason);
/* Drop the session at once, without a close handshake and without calling
 * on_close: for an owner that is being torn down itself. */
void ws_session_discard(struct ws_session *ws);
/* A process-unique id for the session, never reused. */
uint64_t ws_session_id(const struct ws_session *ws);
/* Bytes queued towards the peer and not yet sent. */
size_t ws_output_pending(const struct ws_session *ws);

#endif
