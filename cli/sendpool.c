/*
 * sendpool: a task for a pool. The supervisor answers 202 only once the
 * chosen bot stored the task, with its bot_id and task_id; that line is what
 * `hive send @POOL` prints. `--wait` then asks the chosen bot after the task
 * (GET /bots/BOT/api/task/ID through the supervisor) every SENDPOOL_POLL_MS
 * until it is done, failed or cancelled, and prints its output: the task was
 * already sent over HTTP, so there is no WebSocket to stream it on.
 */
#include "cli/sendpool.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

#define SENDPOOL_POLL_MS 200
#define SENDPOOL_WAIT_MS (24 * 3600 * 1000) /* a task's timeout ends it long before */

/* Ask after TASK_ID on BOT until it ends; print its output; 0/1 on success. */
static int sendpool_wait(const struct api *c, const char *bot, const char *task_id)
{
    char *target = xasprintf("/bots/%s/api/task/%s", bot, task_id);
    int rc = CLI_EXIT_FAIL;
    for (int waited = 0; waited < SENDPOOL_WAIT_MS; waited += SENDPOOL_POLL_MS) {
        struct api_response r = {0};
        if (api_request(c, "GET", target, NULL, &r) == 0 && r.status == 200) {
            json_t *j = api_json(&r);
            const char *state = json_get_str(j, "state");
            json_t *res = json_object_get(j, "result");
            bool ended = state && strcmp(state, "queued") != 0 && strcmp(state, "running") != 0;
            if (ended) {
                const char *out = json_get_str(res, "output"), *err = json_get_str(res, "error");
                fputs(out ? out : "", stdout);
                if (out && *out && out[strlen(out) - 1] != '\n')
                    putchar('\n');
                if (err && *err)
                    fprintf(stderr, "hive: task %s on %s: %s\n", task_id, bot, err);
                rc = json_is_true(json_object_get(res, "success")) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
            }
            json_decref(j);
            api_response_free(&r);
            if (ended)
                break;
        } else {
            api_response_free(&r);
        }
        api_sleep_ms(SENDPOOL_POLL_MS);
    }
    free(target);
    return rc;
}

int sendpool_send(const struct api *c, const char *pool, const char *text, bool wait)
{
    json_t *body = json_pack("{s:s, s:s}", "command", text, "pool", pool);
    char *json = json_dump_compact(body, NULL);
    struct api_response r;
    int rc = api_call(c, "POST", "/api/task", json, 202, &r);
    json_decref(body);
    free(json);
    if (rc != CLI_EXIT_OK)
        return rc;
    json_t *j = api_json(&r);
    const char *task_id = json_get_str(j, "task_id"), *bot = json_get_str(j, "bot_id");
    if (!task_id || !bot) {
        fprintf(stderr, "hive: unexpected answer: %s\n", r.body ? r.body : "");
        rc = CLI_EXIT_FAIL;
    } else {
        if (wait) { /* stdout is the task's output */
            fprintf(stderr, "hive: task %s went to %s\n", task_id, bot);
            rc = sendpool_wait(c, bot, task_id);
        } else {
            printf("%s %s\n", task_id, bot);
        }
    }
    json_decref(j);
    api_response_free(&r);
    return rc;
}
