/*
 * standin: 503 on a stopped or fatal bot's sockets (see standin.h). One HTTP
 * server with borrowed listeners, the bot's own Host/Origin rule (copied,
 * so a reload that frees the roster cannot leave it dangling), and one
 * answer for every request.
 */
#include "supervisor/standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/guard.h"
#include "common/http.h"
#include "common/util.h"

#define STANDIN_DETAIL_MAX 256

struct standin {
    struct http_server *http;
    char **server_names;
    char **allowed_origins;
    char *bind;
    struct guard_policy guard;
    char *bot_id;
    char detail[STANDIN_DETAIL_MAX]; /* "bot BOT-001 is stopped" */
};

/* A NULL-terminated copy of LIST. */
static char **standin_strv_copy(char *const *list)
{
    size_t n = 0;
    while (list && list[n])
        n++;
    char **copy = xcalloc(n + 1, sizeof *copy);
    for (size_t i = 0; i < n; i++)
        copy[i] = xstrdup(list[i]);
    return copy;
}

/* Free a list made by standin_strv_copy(). */
static void standin_strv_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

/* Every request: 503 with the bot's state, and the connection closed so the
 * client's next one reaches the worker once it is back. */
static void standin_on_request(struct http_conn *conn, struct http_request *req, void *arg)
{
    struct standin *standin = arg;
    (void)req;
    http_conn_close_after(conn);
    http_respond_error(conn, 503, standin->detail, NULL);
}

/* The bot's Host/Origin rule, as its worker applies it. */
static const struct guard_policy *standin_guard(void *arg)
{
    struct standin *standin = arg;
    return &standin->guard;
}

struct standin *standin_new(struct event_base *base, const struct roster_bot *def,
                            const struct roster_limits *limits, int listen_fd, int proxy_fd)
{
    struct standin *standin = xcalloc(1, sizeof *standin);
    struct http_server_config hc = {
        .limits = {limits->max_header_bytes, limits->max_body, limits->header_timeout_ms,
                   limits->idle_timeout_ms, limits->max_connections},
        .on_request = standin_on_request,
        .arg = standin,
        .guard = standin_guard,
        .borrow_fds = true,
    };

    standin->bot_id = xstrdup(def->id);
    standin->server_names = standin_strv_copy(def->server_names);
    standin->allowed_origins = standin_strv_copy(def->allowed_origins);
    standin->bind = xstrdup(def->bind);
    standin->guard =
        (struct guard_policy){(const char *const *)standin->server_names,
                              (const char *const *)standin->allowed_origins, standin->bind};
    standin_set_state(standin, "stopped", NULL);
    standin->http = http_server_new(base, listen_fd, &hc);
    if (!standin->http || (proxy_fd >= 0 && http_server_listen(standin->http, proxy_fd) < 0)) {
        standin_free(standin);
        return NULL;
    }
    return standin;
}

void standin_set_state(struct standin *standin, const char *state, const char *reason)
{
    if (reason && *reason)
        snprintf(standin->detail, sizeof standin->detail, "bot %s is %s (%s)", standin->bot_id,
                 state, reason);
    else
        snprintf(standin->detail, sizeof standin->detail, "bot %s is %s", standin->bot_id, state);
}

void standin_free(struct standin *standin)
{
    if (!standin)
        return;
    http_server_free(standin->http);
    standin_strv_free(standin->server_names);
    standin_strv_free(standin->allowed_origins);
    free(standin->bind);
    free(standin->bot_id);
    free(standin);
}
