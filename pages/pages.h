/*
 * pages: the web pages of SPEC §10, served by both programs from the same
 * embedded document: on the supervisor it is the hive dashboard, on a worker
 * (directly or through the supervisor's /bots/<id>/) the bot's own page; the
 * page tells which from the /status it is given. Also the login that lets a
 * browser use a hive with a token without putting the token in any URL:
 * POST /api/login sets the hive_token cookie (HttpOnly, SameSite=Strict),
 * which http_request_token_ok() accepts like a Bearer header.
 */
#ifndef HIVE_PAGES_H
#define HIVE_PAGES_H

#include <stdbool.h>

#include "common/http.h"

/* Answer the page routes, which need no token (the page holds no data of
 * the hive; it asks for its login when the API answers 401): GET / and
 * POST /api/login, /api/logout. TOKEN is the server's (NULL: none). True
 * when REQ was one of them and is answered. */
bool pages_route(struct http_conn *conn, const struct http_request *req, const char *token);

/* True for GET or HEAD of "/" (the page itself). */
bool pages_is_page(const struct http_request *req, const char *path);

#endif
