/*
 * api: the running hive over HTTP, for the `hive` commands (the CLI may
 * block: no event loop). See api.c.
 */
#ifndef HIVE_CLI_API_H
#define HIVE_CLI_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/roster.h"

/* The exit codes of the `hive` commands. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INACTIVE 3 /* status: a listed bot is not running */
#define CLI_EXIT_CONFIG 78

/* The running hive, as hive.yaml describes it. */
struct api {
    struct roster *roster;
    char host[256]; /* where to connect (wildcards mean loopback) */
    char addr[300]; /* "127.0.0.1:8000", for messages and Host */
    int port;
    const char *token; /* NULL when the hive has none */
};

/* One answer. */
struct api_response {
    int status;
    char *body;
    size_t len, cap;
    bool done;
};

/* Load hive.yaml from PATH into C; prints the problems and returns 78. */
int api_load(struct api *c, const char *path);
/* A connected blocking socket to the hive (with I/O timeouts), or -1 with
 * errno; EPROTO when its TLS failed (the reason is printed once). With
 * hive.tls the socket is the plain end of a TLS relay (see api.c). */
int api_connect(const struct api *c);
/* Say that nothing answers on the hive's address; returns 1. */
int api_not_running(const struct api *c);
/* Send all LEN bytes of DATA; -1 on error. */
int api_send_all(int fd, const char *data, size_t len);
/* Read the head of an event stream's answer from FD (at most 64 KiB); the
 * bytes after it go to R when the status is 200. The HTTP status, or -1. */
struct sse_reader;
int api_stream_head(int fd, struct sse_reader *r);
/* Append LEN bytes of body to R. */
void api_response_append(struct api_response *r, const char *at, size_t len);
/* Free the body of R. */
void api_response_free(struct api_response *r);
/* METHOD TARGET with an optional JSON BODY. 0 with R filled; -1 when no
 * hive answers (errno from connect); -2 when the exchange broke. */
int api_request(const struct api *c, const char *method, const char *target, const char *body,
                struct api_response *r);
/* The body of R as JSON (NULL when it is not). */
json_t *api_json(const struct api_response *r);
/* Print the error of an answer with an unexpected status. */
void api_print_error(const struct api_response *r);
/* One request whose answer must have status EXPECT (0: any 2xx). Prints
 * what went wrong and returns the exit code (0 with R to free on success). */
int api_call(const struct api *c, const char *method, const char *target, const char *body,
             int expect, struct api_response *r);
/* Sleep MS milliseconds. */
void api_sleep_ms(int ms);

#endif
