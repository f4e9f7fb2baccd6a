/*
 * front: the supervisor's front door. One HTTP server on `listen`; every
 * request is routed once. Requests under /bots/ are decided as soon as their
 * head is in (front_on_headers): refused at the door (token, unknown bot,
 * bot not running; Host and Origin were judged by the HTTP layer's guard
 * with the hive-level server_names and allowed_origins) or handed to the proxy, which streams the
 * body; everything else (front_on_request) is the supervisor's own small JSON API, answered at once
 * from the hive's state.
 *
 * With hive.tls the door speaks HTTPS: a TLS acceptor (common/tlsserve.c)
 * owns the listening socket and hands each client, decrypted, to the same
 * HTTP server, with the client's address for the guard and X-Forwarded-For.
 *
 * `/bots/<id>` without a trailing slash is redirected (308) to `/bots/<id>/`,
 * the form every proxied path has; an unknown id is 404 either way.
 */
#include "supervisor/front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/http.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/ws.h"
#include "common/route.h"
#include "common/tls.h"
#include "common/tlsserve.h"
#include "pages/pages.h"
#include "supervisor/pooltask.h"
#include "supervisor/proxy.h"
#include "supervisor/watch.h"

#define FRONT_ADDR_MAX (INET6_ADDRSTRLEN + 16) /* "[v6]:port" */
#define FRONT_ID_MAX 64                        /* bot ids are at most this long */

struct front {
    struct event_base *base;
    struct hive *hive;
    struct http_server *http;
    struct tlsserve *tls; /* hive.tls: the acceptor in front of HTTP; NULL: plain */
    struct proxy *proxy;
    struct watch *watch;       /* timelines and metrics */
    struct pooltask *pooltask; /* POST /api/task: pool and tags tasks */
    struct event *shutdown_ev; /* fires the shutdown callback after the 202 */
    void (*shutdown_cb)(void *arg);
    void *shutdown_arg;
    struct guard_policy guard; /* the hive's Host/Origin rule (SPEC §7) */
    int64_t started_mono_ns;
    char listen[FRONT_ADDR_MAX]; /* "127.0.0.1:8000" */
};

/* ---- helpers --------------------------------------------------------------- */

/* A JSON string, or null for NULL or "". */
static json_t *front_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

/* 404 {"detail":"unknown bot ID"}. */
static void front_unknown_bot(struct http_conn *conn, const char *id)
{
    char detail[FRONT_ID_MAX + 32];
    snprintf(detail, sizeof detail, "unknown bot %.*s", FRONT_ID_MAX, id);
    http_respond_error(conn, 404, detail, NULL);
}

/* Copy the bot id at the start of PATH (up to '/' or the end) into ID;
 * returns its length, or 0 when it is empty or too long. */
static size_t front_bot_id(const char *path, char id[FRONT_ID_MAX + 1])
{
    size_t n = strcspn(path, "/");
    if (n == 0 || n > FRONT_ID_MAX) {
        snprintf(id, FRONT_ID_MAX + 1, "%.*s", FRONT_ID_MAX, path);
        return 0;
    }
    memcpy(id, path, n);
    id[n] = '\0';
    return n;
}

/* ---- GET /status ----------------------------------------------------------- */

/* The last exit of a bot, or null. */
static json_t *front_last_exit(const struct hive_bot_info *b)
{
    char at[40];

    if (!b->has_exit)
        return json_null();
    util_iso_utc(at, sizeof at, b->exit_at_wall_ns);
    if (b->exit_signal)
        return json_pack("{s:i, s:s}", "signal", b->exit_signal, "at", at);
    return json_pack("{s:i, s:s}", "code", b->exit_code, "at", at);
}

/* Add to BOT (GET /status) what its worker last said up its channel: queue,
 * current task and counts (null while it has said nothing). */
static void front_bot_live(const struct front *front, const char *id, json_t *bot)
{
    const json_t *st = merge_status(hive_merge(front->hive), id);
    static const char *const keys[] = {"queue",        "current_task",  "tasks_processed",
                                       "tasks_failed", "paused_reason", "paused_until"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        /* Shared, not copied: the merge replaces a status whole, never
         * changes one, and this document is written out and gone before
         * the loop reads the channel again. */
        json_t *v = st ? json_object_get(st, keys[i]) : NULL;
        json_object_set_new(bot, keys[i], v ? json_incref(v) : json_null());
    }
}

/* One bot of GET /status. */
static json_t *front_bot_json(const struct front *front, const struct hive_bot_info *b)
{
    char addr[FRONT_ADDR_MAX], url[FRONT_ADDR_MAX + 300];
    char proxy_url[FRONT_ADDR_MAX + FRONT_ID_MAX + 16];

    util_authority(addr, sizeof addr, b->bind, b->port);
    snprintf(url, sizeof url, "%s", b->url ? b->url : "");
    if (!b->url)
        snprintf(url, sizeof url, "http://%s", addr);
    snprintf(proxy_url, sizeof proxy_url, "%s://%s/bots/%s/", front->tls ? "https" : "http",
             front->listen, b->id);
    json_t *bot = json_pack(
        "{s:s, s:s, s:o, s:i, s:s, s:s, s:I, s:f, s:o, s:o}", "id", b->id, "state", b->state, "pid",
        b->pid > 0 ? json_integer(b->pid) : json_null(), "port", b->port, "url", url, "proxy_url",
        proxy_url, "restarts", (json_int_t)b->restarts, "uptime_seconds", b->uptime_seconds,
        "reason", front_str_or_null(b->reason), "last_exit", front_last_exit(b));
    front_bot_live(front, b->id, bot);
    return bot;
}

/* The whole GET /status document (SPEC §6.3). */
static json_t *front_status_json(const struct front *front)
{
    const struct roster *roster = hive_roster(front->hive);
    size_t n = hive_bot_count(front->hive), running = 0;
    json_t *bots = json_array();
    struct hive_bot_info info;

    for (size_t i = 0; i < n && hive_bot_at(front->hive, i, &info); i++) {
        json_array_append_new(bots, front_bot_json(front, &info));
        running += info.running;
    }
    double up = (double)(util_mono_ns() - front->started_mono_ns) / 1e9;
    return json_pack("{s:{s:s, s:i, s:s, s:f, s:s, s:I, s:I}, s:o}", "hive", "name", roster->name,
                     "pid", (int)getpid(), "version", HIVE_VERSION, "uptime_seconds", up, "listen",
                     front->listen, "bots_total", (json_int_t)n, "bots_running",
                     (json_int_t)running, "bots", bots);
}

/* ---- control --------------------------------------------------------------- */

/* POST /api/bots/<id>/restart|stop|start (the path's last segment says which). */
static void front_control(struct http_conn *conn, struct http_request *req,
                          const struct route_params *pp, void *arg)
{
    struct front *front = arg;
    char id[FRONT_ID_MAX + 1];
    const char *action = strrchr(req->path, '/') + 1;

    snprintf(id, sizeof id, "%.*s", (int)pp->len[0], pp->s[0]);
    int rc = pp->len[0] > FRONT_ID_MAX ? -ENOENT : hive_bot_control(front->hive, id, action);
    if (rc == -ENOENT) {
        front_unknown_bot(conn, id);
    } else if (rc < 0) {
        char detail[FRONT_ID_MAX + 64];
        snprintf(detail, sizeof detail, "cannot %s bot %s now", action, id);
        http_respond_error(conn, 409, detail, NULL);
    } else {
        http_respond_json(
            conn, 202,
            json_pack("{s:s, s:s, s:s}", "status", "accepted", "bot", id, "action", action), NULL);
    }
}

/* POST /api/reload: 202, or 400 with the roster's errors (one per line). */
static void front_reload(struct http_conn *conn, struct http_request *req,
                         const struct route_params *pp, void *arg)
{
    struct front *front = arg;
    char err[8192];

    (void)req, (void)pp;
    log_info("reload requested over HTTP");
    if (hive_reload(front->hive, err, sizeof err) < 0) {
        http_respond_error(conn, 400, err, NULL);
        return;
    }
    http_respond_json(conn, 202, json_pack("{s:s, s:s}", "status", "accepted", "action", "reload"),
                      NULL);
}

/* The 202 of POST /api/shutdown is queued: now tell the owner. */
static void front_shutdown_fire(evutil_socket_t fd, short what, void *arg)
{
    struct front *front = arg;
    (void)fd;
    (void)what;
    if (front->shutdown_cb)
        front->shutdown_cb(front->shutdown_arg);
}

/* POST /api/shutdown: answer first, act from a zero timer. */
static void front_shutdown(struct http_conn *conn, struct http_request *req,
                           const struct route_params *pp, void *arg)
{
    static const struct timeval now = {0, 0};
    struct front *front = arg;

    (void)req, (void)pp;
    log_info("shutdown requested over HTTP");
    http_respond_json(conn, 202,
                      json_pack("{s:s, s:s}", "status", "accepted", "action", "shutdown"), NULL);
    evtimer_add(front->shutdown_ev, &now);
}

/* GET /health (no token). */
static void front_health(struct http_conn *conn, struct http_request *req,
                         const struct route_params *pp, void *arg)
{
    (void)req, (void)pp, (void)arg;
    http_respond_json(conn, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

/* GET /status. */
static void front_status(struct http_conn *conn, struct http_request *req,
                         const struct route_params *pp, void *arg)
{
    (void)req, (void)pp;
    http_respond_json(conn, 200, front_status_json(arg), NULL);
}

/* GET /api/events: the merged stream. */
static void front_events(struct http_conn *conn, struct http_request *req,
                         const struct route_params *pp, void *arg)
{
    struct front *front = arg;
    (void)pp;
    merge_serve(hive_merge(front->hive), conn, req);
}

/* POST /api/task: a task for a pool (or tags), given to its least busy bot. */
static void front_pool_task(struct http_conn *conn, struct http_request *req,
                            const struct route_params *pp, void *arg)
{
    struct front *front = arg;
    (void)pp;
    pooltask_serve(front->pooltask, conn, req);
}

/* The supervisor's own routes (its timeline and metrics are watch.c's table). */
static const struct route front_routes[] = {
    {ROUTE_READ, "/health", ROUTE_PUBLIC, front_health},
    {ROUTE_READ, "/status", 0, front_status},
    {ROUTE_GET, "/api/events", 0, front_events},
    {ROUTE_POST, "/api/bots/*/restart", ROUTE_JSON, front_control},
    {ROUTE_POST, "/api/bots/*/stop", ROUTE_JSON, front_control},
    {ROUTE_POST, "/api/bots/*/start", ROUTE_JSON, front_control},
    {ROUTE_POST, "/api/task", ROUTE_JSON, front_pool_task},
    {ROUTE_POST, "/api/reload", ROUTE_JSON, front_reload},
    {ROUTE_POST, "/api/shutdown", ROUTE_JSON, front_shutdown},
};

/* The supervisor's own API: every path not under /bots/. */
static void front_api(struct front *front, struct http_conn *conn, struct http_request *req)
{
    const char *token = hive_roster(front->hive)->token;

    if (req->path[0] != '/') /* "*" (OPTIONS *) or authority-form: nothing has such a name */
        return http_respond_error(conn, 400, "invalid request target", NULL);
    if (pages_route(conn, req, token)) /* the dashboard, its login */
        return;
    if (route_dispatch(front_routes, sizeof front_routes / sizeof *front_routes, conn, req, token,
                       front))
        return;
    if (watch_route(front->watch, conn, req, token))
        return;
    if (!http_request_token_ok(req, token)) /* no route tells what exists */
        return route_unauthorized(conn);
    http_respond_error(conn, 404, "Not Found", NULL);
}

/* ---- /bots/<id>/... -------------------------------------------------------- */

/* 308 from /bots/<id> to /bots/<id>/ (query kept). */
static void front_redirect_slash(struct http_conn *conn, const struct http_request *req,
                                 const char *id)
{
    char *hdr = xasprintf("Location: /bots/%s/%s%s\r\n", id, req->query ? "?" : "",
                          req->query ? req->query : "");
    http_respond_error(conn, 308, "Permanent Redirect", hdr);
    free(hdr);
}

/* Checks at the door of a bot: a valid WebSocket upgrade (Host and Origin
 * passed the server's guard already), and the bot must be running. False
 * when the request was answered here. */
static bool front_bot_door(struct http_conn *conn, const struct http_request *req,
                           const struct hive_bot_info *info)
{
    char detail[200];

    if (req->upgrade) {
        int status = ws_upgrade_check(req, detail, sizeof detail);
        if (status) {
            http_respond_error(conn, status, detail, NULL);
            return false;
        }
    }
    if (!info->running) {
        snprintf(detail, sizeof detail, "bot %s is %s", info->id, info->state);
        http_respond_error(conn, 503, detail, "Retry-After: 1\r\n");
        return false;
    }
    return true;
}

/* A request under /bots/: refused at the door or handed to the proxy. */
static void front_bots(struct front *front, struct http_conn *conn, struct http_request *req)
{
    const struct roster *roster = hive_roster(front->hive);
    const char *rest = req->path + strlen("/bots");
    char id[FRONT_ID_MAX + 1];
    struct hive_bot_info info;

    rest += *rest == '/';
    size_t n = front_bot_id(rest, id);
    /* The bot's page needs no token (it holds no data; it asks for the login
     * when the API answers 401); the proxy adds the token towards the worker. */
    if (!(n > 0 && pages_is_page(req, rest + n)) && !http_request_token_ok(req, roster->token))
        return route_unauthorized(conn);
    if (n == 0 && !*id)
        return http_respond_error(conn, 404, "Not Found", NULL);
    if (n == 0 || !hive_bot_find(front->hive, id, &info))
        return front_unknown_bot(conn, id);
    if (rest[n] == '\0')
        return front_redirect_slash(conn, req, id);
    if (!front_bot_door(conn, req, &info))
        return;
    struct proxy_target target = {
        .bot_id = info.id,
        .host = info.proxy_addr,
        .port = info.port,
        .local = info.proxy_socket,
        .tls = info.tls,
        .name = info.name,
        .path = rest + n,
        .query = req->query,
        .token = info.url ? info.token : roster->token, /* a remote bot's own */
        .https = front->tls != NULL,
    };
    proxy_forward(front->proxy, conn, req, &target);
}

/* ---- the server ------------------------------------------------------------ */

/* True for paths that belong to the proxy (decided when the head is in). */
static bool front_is_bots_path(const char *path)
{
    return strncmp(path, "/bots/", 6) == 0 || strcmp(path, "/bots") == 0;
}

/* A request head is in: /bots/ requests are decided now, before the body. */
static void front_on_headers(struct http_conn *conn, struct http_request *req, void *arg)
{
    if (front_is_bots_path(req->path))
        front_bots(arg, conn, req);
}

/* A complete request: the API's (the proxy's were taken at their head). */
static void front_on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    if (!front_is_bots_path(req->path))
        front_api(arg, conn, req);
}

/* The "host:port" the front listens on, as clients reach it. */
static void front_listen_name(struct front *front, int listen_fd)
{
    const struct roster *roster = hive_roster(front->hive);
    int port = util_socket_port(listen_fd);

    util_authority(front->listen, sizeof front->listen, roster->listen_host,
                   port > 0 ? port : roster->listen_port);
}

/* The door's Host/Origin rule from the hive-level roster as it is now (a
 * reload applies at once): its server_names, allowed_origins and listen
 * address. */
static const struct guard_policy *front_guard(void *arg)
{
    struct front *front = arg;
    const struct roster *roster = hive_roster(front->hive);
    front->guard = (struct guard_policy){
        .server_names = (const char *const *)roster->server_names,
        .allowed_origins = (const char *const *)roster->allowed_origins,
        .own_host = roster->listen_host,
    };
    return &front->guard;
}

/* A client of the TLS acceptor, decrypted: the HTTP server's now. */
static int front_tls_adopt(int fd, const struct sockaddr *peer, const struct sockaddr *local,
                           void *arg)
{
    struct front *front = arg;
    return http_server_adopt(front->http, fd, peer, local);
}

/* HTTPS on LISTEN_FD with the roster's certificate: an HTTP server of no
 * socket of its own behind a TLS acceptor. NULL with ERR. */
static struct http_server *front_serve_tls(struct front *front, int listen_fd,
                                           const struct http_server_config *hc, char *err,
                                           size_t errlen)
{
    const struct roster *roster = hive_roster(front->hive);
    SSL_CTX *ctx = tls_server_ctx(roster->tls.cert, roster->tls.key, err, errlen);
    if (!ctx)
        return NULL;
    struct http_server *http = http_server_new(front->base, -1, hc);
    struct tlsserve_config tc = {
        .max_connections = hc->limits.max_connections,
        .handshake_timeout_ms = hc->limits.header_timeout_ms,
        .adopt = front_tls_adopt,
        .arg = front,
    };
    front->tls = http ? tlsserve_new(front->base, listen_fd, ctx, &tc) : NULL;
    if (!front->tls) {
        SSL_CTX_free(ctx);
        http_server_free(http);
        snprintf(err, errlen, "cannot serve HTTPS on %s", front->listen);
        return NULL;
    }
    return http;
}

/* Serve the front door on LISTEN_FD. */
struct front *front_new(struct event_base *base, struct hive *hive, int listen_fd, char *err,
                        size_t errlen)
{
    const struct roster_limits *lim = &hive_roster(hive)->limits;
    struct front *front = xcalloc(1, sizeof *front);
    struct http_server_config hc = {
        .limits = {lim->max_header_bytes, lim->max_body, lim->header_timeout_ms,
                   lim->idle_timeout_ms, lim->max_connections},
        .on_request = front_on_request,
        .on_headers = front_on_headers,
        .arg = front,
        .guard = front_guard,
    };

    front->base = base;
    front->hive = hive;
    front->started_mono_ns = util_mono_ns();
    front_listen_name(front, listen_fd);
    if (hive_roster(hive)->tls.cert) {
        front->http = front_serve_tls(front, listen_fd, &hc, err, errlen);
    } else if (!(front->http = http_server_new(base, listen_fd, &hc))) {
        snprintf(err, errlen, "cannot serve HTTP on %s", front->listen);
    }
    if (!front->http) {
        free(front);
        return NULL;
    }
    front->proxy = proxy_new(base, NULL, lim->max_body, lim->idle_timeout_ms);
    front->watch = watch_new(base, hive, front->proxy);
    front->pooltask = pooltask_new(base, hive, proxy_conns(front->proxy));
    front->shutdown_ev = evtimer_new(base, front_shutdown_fire, front);
    return front;
}

/* Close the listener, every client connection, every proxied exchange. */
void front_free(struct front *front)
{
    if (!front)
        return;
    watch_free(front->watch);
    pooltask_free(front->pooltask); /* answers the pool tasks still on their way */
    proxy_free(front->proxy);       /* answers what it still owed, before the server goes */
    tlsserve_free(front->tls);      /* the clients' TLS sides; their plain ends follow */
    http_server_free(front->http);
    event_free(front->shutdown_ev);
    free(front);
}

/* CB is called when a client asks for POST /api/shutdown. */
void front_set_shutdown_cb(struct front *front, void (*cb)(void *arg), void *arg)
{
    front->shutdown_cb = cb;
    front->shutdown_arg = arg;
}
