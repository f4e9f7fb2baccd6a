/*
 * check_adapter: the adapter module driven by a real libevent loop. Mock
 * answers (format, delay, MOCK-FAIL, interrupt) and cli children (stdin and
 * {content}, exit status, signals, environment, work dir, timeout with a
 * child that ignores SIGTERM, output cap, a grandchild holding stdout open,
 * interrupt, abandon, commands that cannot run). Every wait is bounded by a
 * deadline so a broken adapter fails a test instead of hanging it.
 */
#include "worker/adapter.h"

#include "common/cgroup.h"
#include "common/util.h"
#include "common/utf8.h"
#include "worker/contain.h"
#include "tests/check_support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* One job's observed callbacks and the loop it runs in. */
struct run {
    struct event_base *base;
    struct event *tick;
    struct adapter_job *job;
    int done_calls;
    bool success;
    char *output;
    size_t output_len;
    char *error;
    double duration;
    char *chunks;
    size_t chunks_len;
    int nchunks;
    int bad_chunks; /* chunks that were not valid UTF-8 */
    bool abandon_in_chunk;
};

/* Keeps EVLOOP_ONCE from blocking for long when nothing else happens. */
static void run_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A fresh base with a 20 ms ticker. */
static void run_init(struct run *r)
{
    memset(r, 0, sizeof *r);
    r->base = event_base_new();
    ck_assert_ptr_nonnull(r->base);
    r->tick = event_new(r->base, -1, EV_PERSIST, run_tick_cb, NULL);
    struct timeval tv = {0, 20000};
    event_add(r->tick, &tv);
}

/* Free what run_init and the callbacks left. */
static void run_fini(struct run *r)
{
    event_free(r->tick);
    event_base_free(r->base);
    free(r->output);
    free(r->error);
    free(r->chunks);
}

/* Chunk callback: collect the bytes; maybe abandon the job from inside. */
static void run_chunk(const char *data, size_t len, void *arg)
{
    struct run *r = arg;
    r->chunks = xrealloc(r->chunks, r->chunks_len + len + 1);
    memcpy(r->chunks + r->chunks_len, data, len);
    r->chunks_len += len;
    r->chunks[r->chunks_len] = '\0';
    r->nchunks++;
    if (utf8_valid_prefix(data, len) != len)
        r->bad_chunks++;
    if (r->abandon_in_chunk && r->job) {
        adapter_abandon(r->job);
        r->job = NULL;
    }
}

/* Done callback: take the result's strings. */
static void run_done(struct adapter_result *result, void *arg)
{
    struct run *r = arg;
    r->done_calls++;
    r->success = result->success;
    r->output = result->output;
    r->output_len = result->output_len;
    r->error = result->error;
    r->duration = result->duration_seconds;
    result->output = NULL;
    result->error = NULL;
    r->job = NULL;
}

/* Run the loop until done was called or MS milliseconds passed. */
static bool run_until_done(struct run *r, int ms)
{
    int64_t deadline = util_mono_ms() + ms;
    while (r->done_calls == 0 && util_mono_ms() < deadline)
        event_base_loop(r->base, EVLOOP_ONCE);
    return r->done_calls > 0;
}

/* Run the loop for MS milliseconds whatever happens. */
static void run_for(struct run *r, int ms)
{
    int64_t deadline = util_mono_ms() + ms;
    while (util_mono_ms() < deadline)
        event_base_loop(r->base, EVLOOP_ONCE);
}

static const struct adapter_task task_default = {
    .task_id = "T-001", .bot_id = "BOT-001", .source = "file", .content = "hello"};

/* Start CONFIG on TASK for R; fails the test if it cannot start. */
static void run_start(struct run *r, const struct adapter_config *config,
                      const struct adapter_task *task)
{
    char err[256] = "";
    r->job = adapter_start(r->base, config, task, run_chunk, run_done, r, err, sizeof err);
    ck_assert_msg(r->job != NULL, "adapter_start failed: %s", err);
    ck_assert_int_eq(r->done_calls, 0); /* never synchronously */
}

/* Run ARGV with CONTENT to completion (within 10 s). */
static void run_cli(struct run *r, char **argv, const char *content)
{
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    struct adapter_task task = task_default;
    task.content = content;
    run_start(r, &config, &task);
    ck_assert(run_until_done(r, 10000));
}

START_TEST(test_mock_format)
{
    struct run r;
    run_init(&r);
    struct adapter_config config = {.type = ADAPTER_MOCK};
    struct adapter_task task = task_default;
    task.content = "\n  \n## Fix the login page  \nIt breaks.\n";
    run_start(&r, &config, &task);
    ck_assert_int_eq(adapter_pid(r.job), 0);
    ck_assert(run_until_done(&r, 2000));
    ck_assert_int_eq(r.done_calls, 1);
    ck_assert(r.success);
    ck_assert_ptr_null(r.error);
    ck_assert_str_eq(r.output, "# Mock response to T-001\n\n**Bot:** BOT-001\n**Source:** file\n"
                               "**Title:** Fix the login page\n**Size:** 39 bytes\n\n## Preview\n\n"
                               "\n  \n## Fix the login page  \nIt breaks.\n\n");
    ck_assert_uint_eq(r.output_len, strlen(r.output));
    ck_assert_int_eq(r.nchunks, 1);
    ck_assert_str_eq(r.chunks, r.output);
    run_for(&r, 50);
    ck_assert_int_eq(r.done_calls, 1);
    run_fini(&r);
}
END_TEST

START_TEST(test_mock_utf8_cut)
{
    struct run r;
    run_init(&r);
    struct adapter_config config = {.type = ADAPTER_MOCK};
    char content[801];
    for (int i = 0; i < 400; i++)
        memcpy(content + 2 * i, "\xc3\xa9", 2); /* é */
    content[800] = '\0';
    struct adapter_task task = task_default;
    task.content = content;
    run_start(&r, &config, &task);
    ck_assert(run_until_done(&r, 2000));
    char title[200], preview[700];
    snprintf(title, sizeof title, "**Title:** %.160s\n", content);
    snprintf(preview, sizeof preview, "## Preview\n\n%.600s\n", content);
    ck_assert_ptr_nonnull(strstr(r.output, title));
    ck_assert_ptr_nonnull(strstr(r.output, "**Size:** 800 bytes\n"));
    char *p = strstr(r.output, preview);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p + strlen(preview), "");
    run_fini(&r);
}
END_TEST

START_TEST(test_mock_delay)
{
    struct run r;
    run_init(&r);
    struct adapter_config config = {.type = ADAPTER_MOCK, .delay_ms = 200};
    int64_t t0 = util_mono_ms();
    run_start(&r, &config, &task_default);
    ck_assert(run_until_done(&r, 3000));
    int64_t elapsed = util_mono_ms() - t0;
    ck_assert_int_ge(elapsed, 190);
    ck_assert_int_lt(elapsed, 2000);
    ck_assert(r.duration >= 0.19);
    ck_assert(r.success);
    run_fini(&r);
}
END_TEST

START_TEST(test_mock_fail)
{
    struct run r;
    run_init(&r);
    struct adapter_config config = {.type = ADAPTER_MOCK};
    struct adapter_task task = task_default;
    task.content = "please fail\nMOCK-FAIL\nthanks\n";
    run_start(&r, &config, &task);
    ck_assert(run_until_done(&r, 2000));
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "mock failure requested");
    run_fini(&r);

    run_init(&r);
    task.content = "MOCK-FAIL is only a line of its own\n";
    run_start(&r, &config, &task);
    ck_assert(run_until_done(&r, 2000));
    ck_assert(r.success);
    run_fini(&r);
}
END_TEST

START_TEST(test_mock_interrupt)
{
    struct run r;
    run_init(&r);
    struct adapter_config config = {.type = ADAPTER_MOCK, .delay_ms = 5000};
    run_start(&r, &config, &task_default);
    run_for(&r, 50);
    adapter_interrupt(r.job);
    ck_assert_int_eq(r.done_calls, 0);
    ck_assert(run_until_done(&r, 1000));
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "interrupted");
    ck_assert_uint_eq(r.output_len, 0);
    ck_assert_int_eq(r.nchunks, 0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_cat_streams_stdin)
{
    struct run r;
    run_init(&r);
    size_t len = 300000;
    char *content = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        content[i] = (char)('a' + i % 26);
    content[len] = '\0';
    char *argv[] = {"cat", NULL};
    run_cli(&r, argv, content);
    ck_assert_msg(r.success, "error: %s", r.error ? r.error : "");
    ck_assert_ptr_null(r.error);
    ck_assert_uint_eq(r.output_len, len);
    ck_assert(memcmp(r.output, content, len) == 0);
    ck_assert_uint_eq(r.chunks_len, len);
    ck_assert(memcmp(r.chunks, content, len) == 0);
    ck_assert_int_ge(r.nchunks, 2);
    free(content);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_content_substitution)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/echo", "{content}", "id={task_id}", "--bot={bot_id}", NULL};
    run_cli(&r, argv, "hello world");
    ck_assert(r.success);
    ck_assert_str_eq(r.output, "hello world id=T-001 --bot=BOT-001\n");
    run_fini(&r);

    /* With {content} in argv, stdin is /dev/null, not the content. */
    run_init(&r);
    char *argv2[] = {"/bin/sh", "-c", "cat; echo \"[{content}]\"", NULL};
    run_cli(&r, argv2, "abc");
    ck_assert(r.success);
    ck_assert_str_eq(r.output, "[abc]\n");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_exit_status)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "echo partial; echo oops >&2; exit 3", NULL};
    run_cli(&r, argv, "");
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "exit status 3: oops");
    ck_assert_str_eq(r.output, "partial\n");
    run_fini(&r);

    run_init(&r);
    char *argv2[] = {"/bin/sh", "-c", "exit 4", NULL};
    run_cli(&r, argv2, "");
    ck_assert_str_eq(r.error, "exit status 4");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_stderr_tail)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c",
                    "i=0; while [ $i -lt 300 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx >&2; "
                    "i=$((i+1)); done; exit 1",
                    NULL};
    run_cli(&r, argv, "");
    ck_assert(!r.success);
    ck_assert(strncmp(r.error, "exit status 1: ", 15) == 0);
    ck_assert_uint_le(strlen(r.error), 15 + 4096);
    ck_assert_ptr_null(strstr(r.error, "line-0-"));
    size_t n = strlen(r.error);
    ck_assert_str_eq(r.error + n - strlen("line-299-xxxxxxxxxxxxxxxxxxxx"),
                     "line-299-xxxxxxxxxxxxxxxxxxxx");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_killed_by_signal)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
    run_cli(&r, argv, "");
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "killed by signal 9");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_environment)
{
    struct run r;
    run_init(&r);
    setenv("HIVE_TEST_REMOVE", "still-here", 1);
    setenv("HIVE_TEST_OVERRIDE", "old", 1);
    char *env_remove[] = {"HIVE_TEST_REMOVE", NULL};
    char *env_set[] = {"HIVE_TEST_SET=hello", "HIVE_TEST_OVERRIDE=new", NULL};
    char *argv[] = {"/bin/sh", "-c",
                    "echo \"r=${HIVE_TEST_REMOVE-unset} s=$HIVE_TEST_SET o=$HIVE_TEST_OVERRIDE "
                    "t=$HIVE_TASK_ID b=$HIVE_BOT_ID src=$HIVE_TASK_SOURCE\"; "
                    "env | grep -c '^HIVE_TEST_OVERRIDE='",
                    NULL};
    struct adapter_config config = {
        .type = ADAPTER_CLI, .argv = argv, .env_remove = env_remove, .env_set = env_set};
    struct adapter_task task = task_default;
    task.source = "websocket";
    run_start(&r, &config, &task);
    ck_assert(run_until_done(&r, 10000));
    ck_assert(r.success);
    ck_assert_str_eq(r.output, "r=unset s=hello o=new t=T-001 b=BOT-001 src=websocket\n1\n");
    ck_assert_str_eq(getenv("HIVE_TEST_REMOVE"), "still-here");
    unsetenv("HIVE_TEST_REMOVE");
    unsetenv("HIVE_TEST_OVERRIDE");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_work_dir)
{
    struct run r;
    run_init(&r);
    char dir[] = "/tmp/check_adapter_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *real = realpath(dir, NULL);
    char *argv[] = {"/bin/pwd", "-P", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv, .work_dir = dir};
    run_start(&r, &config, &task_default);
    ck_assert(run_until_done(&r, 10000));
    char *expect = xasprintf("%s\n", real);
    ck_assert_str_eq(r.output, expect);
    free(expect);
    free(real);
    rmdir(dir);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_timeout)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sleep", "30", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv, .timeout_s = 0.3};
    int64_t t0 = util_mono_ms();
    run_start(&r, &config, &task_default);
    ck_assert(run_until_done(&r, 5000));
    int64_t elapsed = util_mono_ms() - t0;
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "timed out after 0.3 s");
    ck_assert_int_ge(elapsed, 280);
    ck_assert_int_lt(elapsed, 3000);
    ck_assert(r.duration >= 0.28 && r.duration < 3.0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_timeout_sigterm_ignored)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30", NULL};
    struct adapter_config config = {
        .type = ADAPTER_CLI, .argv = argv, .timeout_s = 0.3, .kill_grace_ms = 200};
    int64_t t0 = util_mono_ms();
    run_start(&r, &config, &task_default);
    pid_t pgid = adapter_pid(r.job);
    ck_assert_int_gt(pgid, 0);
    ck_assert(run_until_done(&r, 5000));
    int64_t elapsed = util_mono_ms() - t0;
    ck_assert_str_eq(r.error, "timed out after 0.3 s");
    ck_assert_int_ge(elapsed, 480);
    ck_assert_int_lt(elapsed, 3000);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_output_cap)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/usr/bin/yes", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv, .output_cap = 100000};
    run_start(&r, &config, &task_default);
    ck_assert(run_until_done(&r, 10000));
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "output exceeded 100000 bytes");
    ck_assert_uint_eq(r.output_len, 100000);
    ck_assert_uint_eq(r.chunks_len, 100000);
    ck_assert(strncmp(r.output, "y\ny\n", 4) == 0);
    run_fini(&r);
}
END_TEST

/* True when PID is gone or a zombie (dead, waiting for its new parent). */
static bool pid_is_dead(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    char *close_paren = strrchr(stat, ')');
    return !close_paren || close_paren[1] == '\0' || close_paren[2] == 'Z' || close_paren[2] == 'X';
}

START_TEST(test_cli_grandchild_holding_stdout)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "sleep 30 & echo $!", NULL};
    int64_t t0 = util_mono_ms();
    run_cli(&r, argv, "");
    ck_assert_int_lt(util_mono_ms() - t0, 3000);
    ck_assert(r.success);
    pid_t grandchild = (pid_t)atoi(r.output);
    ck_assert_int_gt(grandchild, 1);
    int64_t deadline = util_mono_ms() + 2000;
    while (!pid_is_dead(grandchild) && util_mono_ms() < deadline)
        usleep(10000);
    ck_assert_msg(pid_is_dead(grandchild), "grandchild %d still alive", (int)grandchild);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_interrupt)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sleep", "30", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    run_start(&r, &config, &task_default);
    run_for(&r, 100);
    int64_t t0 = util_mono_ms();
    adapter_interrupt(r.job);
    ck_assert_int_eq(r.done_calls, 0);
    ck_assert(run_until_done(&r, 3000));
    ck_assert_int_lt(util_mono_ms() - t0, 1500);
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "interrupted");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_abandon)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sleep", "30", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    run_start(&r, &config, &task_default);
    run_for(&r, 100);
    pid_t pid = adapter_pid(r.job);
    ck_assert_int_gt(pid, 0);
    int64_t t0 = util_mono_ms();
    adapter_abandon(r.job);
    r.job = NULL;
    ck_assert_int_lt(util_mono_ms() - t0, 2500);
    errno = 0;
    ck_assert_int_eq(kill(pid, 0), -1); /* killed and reaped */
    ck_assert_int_eq(errno, ESRCH);
    run_for(&r, 200);
    ck_assert_int_eq(r.done_calls, 0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_abandon_inside_chunk)
{
    struct run r;
    run_init(&r);
    r.abandon_in_chunk = true;
    char *argv[] = {"/bin/sh", "-c", "echo first; sleep 30", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    run_start(&r, &config, &task_default);
    pid_t pid = adapter_pid(r.job);
    int64_t deadline = util_mono_ms() + 5000;
    while (r.nchunks == 0 && util_mono_ms() < deadline)
        event_base_loop(r.base, EVLOOP_ONCE);
    ck_assert_int_eq(r.nchunks, 1);
    ck_assert_ptr_null(r.job);
    errno = 0;
    ck_assert_int_eq(kill(pid, 0), -1);
    run_for(&r, 200);
    ck_assert_int_eq(r.done_calls, 0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_child_ignores_stdin)
{
    struct run r;
    run_init(&r);
    size_t len = 1 << 20;
    char *content = xmalloc(len + 1);
    memset(content, 'x', len);
    content[len] = '\0';
    char *argv[] = {"/bin/true", NULL};
    run_cli(&r, argv, content); /* EPIPE on stdin must not kill us */
    ck_assert(r.success);
    ck_assert_uint_eq(r.output_len, 0);
    free(content);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_two_jobs_one_base)
{
    struct run a, b;
    run_init(&a);
    memset(&b, 0, sizeof b);
    b.base = a.base;
    char *slow[] = {"/bin/sh", "-c", "sleep 0.3; echo slow", NULL};
    char *fast[] = {"/bin/echo", "fast", NULL};
    struct adapter_config cs = {.type = ADAPTER_CLI, .argv = slow};
    struct adapter_config cf = {.type = ADAPTER_CLI, .argv = fast};
    char err[256];
    a.job = adapter_start(a.base, &cs, &task_default, run_chunk, run_done, &a, err, sizeof err);
    b.job = adapter_start(a.base, &cf, &task_default, run_chunk, run_done, &b, err, sizeof err);
    ck_assert(a.job && b.job);
    ck_assert(run_until_done(&b, 5000));
    ck_assert_str_eq(b.output, "fast\n");
    ck_assert(run_until_done(&a, 5000));
    ck_assert_str_eq(a.output, "slow\n");
    ck_assert(a.success && b.success);
    free(b.output);
    free(b.error);
    free(b.chunks);
    run_fini(&a);
}
END_TEST

START_TEST(test_cli_cannot_run)
{
    struct run r;
    run_init(&r);
    char err[256] = "";
    char *argv[] = {"/nonexistent/hive-cmd", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    struct adapter_job *job =
        adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    ck_assert_ptr_null(job);
    ck_assert_str_eq(err, "cannot run /nonexistent/hive-cmd: No such file or directory");

    char *argv2[] = {"hive-no-such-command-on-path", NULL};
    config.argv = argv2;
    job = adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    ck_assert_ptr_null(job);
    ck_assert_str_eq(err, "cannot run hive-no-such-command-on-path: No such file or directory");

    char *argv3[] = {"/bin/true", NULL};
    config.argv = argv3;
    config.work_dir = "/nonexistent-work-dir";
    job = adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    ck_assert_ptr_null(job);
    ck_assert_ptr_nonnull(strstr(err, "work dir /nonexistent-work-dir"));

    config.argv = NULL;
    job = adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    ck_assert_ptr_null(job);
    run_for(&r, 100);
    ck_assert_int_eq(r.done_calls, 0);
    run_fini(&r);
}
END_TEST

/* ---- the edges: UTF-8 across reads, hand-over variables, escaped
 * descendants, transient start failures -------------------------------------- */

/* Run a child that writes A, waits, then writes B (two reads for us). */
static void run_two_writes(struct run *r, const char *a, const char *b, size_t cap)
{
    char *argv[] = {"/bin/sh", "-c",      "printf '%s' \"$1\"; sleep 0.05; printf '%s' \"$2\"",
                    "sh",      (char *)a, (char *)b,
                    NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv, .output_cap = cap};
    run_start(r, &config, &task_default);
    ck_assert(run_until_done(r, 10000));
}

START_TEST(test_cli_utf8_split_at_every_offset)
{
    /* ASCII, a 2-, a 3- and a 4-byte character, cut between the two writes
     * at every byte: each chunk is whole characters, the chunks joined are
     * the output, the output is the text. */
    const char *text = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80z";
    size_t len = strlen(text);
    for (size_t cut = 1; cut < len; cut++) {
        char a[16], b[16];
        memcpy(a, text, cut);
        a[cut] = '\0';
        snprintf(b, sizeof b, "%s", text + cut);
        struct run r;
        run_init(&r);
        run_two_writes(&r, a, b, 0);
        ck_assert(r.success);
        ck_assert_msg(r.bad_chunks == 0, "cut at %zu: a chunk was not valid UTF-8", cut);
        ck_assert_str_eq(r.output, text);
        ck_assert_uint_eq(r.chunks_len, len);
        ck_assert_str_eq(r.chunks, text);
        run_fini(&r);
    }
}
END_TEST

START_TEST(test_cli_utf8_cap_inside_character)
{
    /* The cap (4 bytes) falls inside the second 中: only whole characters are kept. */
    struct run r;
    run_init(&r);
    run_two_writes(&r, "\xE4\xB8\xAD\xE4\xB8\xAD", "", 4);
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "output exceeded 4 bytes");
    ck_assert_str_eq(r.output, "\xE4\xB8\xAD");
    ck_assert_str_eq(r.chunks, r.output);
    ck_assert_int_eq(r.bad_chunks, 0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_binary_bytes_become_replacement)
{
    /* Bytes that are not UTF-8 become U+FFFD; a character cut off by the
     * end of the output too. */
    struct run r;
    run_init(&r);
    run_two_writes(&r,
                   "\xFF\xFE"
                   "a\x80",
                   "\xC0\xAF"
                   "b\xE4\xB8",
                   0);
    ck_assert(r.success);
    ck_assert_str_eq(r.output, "\xEF\xBF\xBD\xEF\xBF\xBD"
                               "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                               "b\xEF\xBF\xBD");
    ck_assert_str_eq(r.chunks, r.output);
    ck_assert_int_eq(r.bad_chunks, 0);
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_stderr_error_is_utf8)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c", "printf 'bad \\377 \\344\\270' >&2; exit 3", NULL};
    run_cli(&r, argv, "");
    ck_assert(!r.success);
    ck_assert_str_eq(r.error, "exit status 3: bad \xEF\xBF\xBD \xEF\xBF\xBD");
    run_fini(&r);
}
END_TEST

START_TEST(test_cli_handover_variables_scrubbed)
{
    /* What the supervisor or systemd hands the worker is not the task's. */
    static const char *const names[] = {"HIVE_TOKEN",   "NOTIFY_SOCKET",  "LISTEN_FDS",
                                        "LISTEN_PID",   "LISTEN_FDNAMES", "WATCHDOG_USEC",
                                        "WATCHDOG_PID", "FDSTORE",        "HIVE_SUPERVISOR_PID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        setenv(names[i], "secret", 1);
    setenv("HIVE_TEST_KEPT", "kept", 1);
    struct run r;
    run_init(&r);
    char *argv[] = {"/usr/bin/env", NULL};
    run_cli(&r, argv, "");
    ck_assert(r.success);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char entry[64];
        snprintf(entry, sizeof entry, "\n%s=", names[i]);
        ck_assert_msg(!strstr(r.output, entry) && strncmp(r.output, entry + 1, strlen(entry + 1)),
                      "%s reached the adapter", names[i]);
        unsetenv(names[i]);
    }
    ck_assert_ptr_nonnull(strstr(r.output, "HIVE_TEST_KEPT=kept\n"));
    ck_assert_ptr_nonnull(strstr(r.output, "HIVE_TASK_ID=T-001\n"));
    unsetenv("HIVE_TEST_KEPT");
    run_fini(&r);
}
END_TEST

/* Run a task whose child starts a setsid grandchild (its own session and
 * group) and exits once the grandchild is out of its group; the grandchild
 * must be dead when the task is over. */
static bool setsid_grandchild_killed(void)
{
    struct run r;
    run_init(&r);
    char *argv[] = {"/bin/sh", "-c",
                    "setsid sleep 3000 </dev/null >/dev/null 2>&1 & sleep 0.3; echo $!", NULL};
    run_cli(&r, argv, "");
    ck_assert(r.success);
    pid_t grandchild = (pid_t)atoi(r.output);
    ck_assert_int_gt(grandchild, 1);
    int64_t deadline = util_mono_ms() + 2000;
    while (!pid_is_dead(grandchild) && util_mono_ms() < deadline)
        usleep(10000);
    bool dead = pid_is_dead(grandchild);
    if (!dead) {
        printf("setsid grandchild %d outlived its task\n", (int)grandchild);
        kill(grandchild, SIGKILL);
    }
    run_fini(&r);
    return dead;
}

/* contain_init with a record in a fresh directory; returns the directory. */
static char *contain_start(enum contain_mode want)
{
    char tmpl[] = "/tmp/check-adapter-XXXXXX";
    char *dir = xstrdup(mkdtemp(tmpl));
    char *record = xasprintf("%s/record", dir);
    char desc[512];
    if (want == CONTAIN_SUBREAPER)
        setenv("HIVE_CONTAIN", "subreaper", 1);
    enum contain_mode got = contain_init(record, "BOT-CHECK", desc, sizeof desc);
    unsetenv("HIVE_CONTAIN");
    printf("contain: %s\n", desc);
    free(record);
    if (got != want) {
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* contain_shutdown and remove DIR. */
static void contain_stop(char *dir)
{
    contain_shutdown();
    char *record = xasprintf("%s/record", dir);
    unlink(record);
    free(record);
    rmdir(dir);
    free(dir);
}

START_TEST(test_cli_setsid_grandchild_killed_cgroup)
{
    char *dir = contain_start(CONTAIN_CGROUP);
    if (!dir) {
        printf("no usable cgroup v2 here: cgroup containment not tested\n");
        contain_shutdown();
        return;
    }
    bool dead = setsid_grandchild_killed();
    contain_stop(dir); /* first: a failed check ends the test process */
    ck_assert(dead);
}
END_TEST

START_TEST(test_cli_setsid_grandchild_killed_subreaper)
{
    char *dir = contain_start(CONTAIN_SUBREAPER);
    ck_assert_ptr_nonnull(dir);
    bool dead = setsid_grandchild_killed();
    contain_stop(dir);
    ck_assert(dead);
}
END_TEST

START_TEST(test_cli_setsid_grandchild_killed_on_abandon)
{
    /* Shutdown (abandon) of a running task ends its escaped descendants too. */
    char *dir = contain_start(CONTAIN_CGROUP);
    if (!dir)
        dir = contain_start(CONTAIN_SUBREAPER);
    ck_assert_ptr_nonnull(dir);
    struct run r;
    run_init(&r);
    char *argv[] = {
        "/bin/sh", "-c",
        "setsid sleep 3000 </dev/null >/dev/null 2>&1 & sleep 0.3; echo $!; exec sleep 3000", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    run_start(&r, &config, &task_default);
    int64_t deadline = util_mono_ms() + 5000;
    while (r.nchunks == 0 && util_mono_ms() < deadline)
        event_base_loop(r.base, EVLOOP_ONCE);
    pid_t grandchild = (pid_t)atoi(r.chunks ? r.chunks : "0");
    ck_assert_int_gt(grandchild, 1);
    adapter_abandon(r.job);
    r.job = NULL;
    deadline = util_mono_ms() + 2000;
    while (!pid_is_dead(grandchild) && util_mono_ms() < deadline)
        usleep(10000);
    bool dead = pid_is_dead(grandchild);
    if (!dead)
        kill(grandchild, SIGKILL);
    run_fini(&r);
    contain_stop(dir);
    ck_assert_msg(dead, "setsid grandchild %d outlived its abandoned task", (int)grandchild);
}
END_TEST

START_TEST(test_cli_start_failure_errno)
{
    struct run r;
    run_init(&r);
    char err[256];
    char *argv[] = {"/bin/true", NULL};
    struct adapter_config config = {.type = ADAPTER_CLI, .argv = argv};
    /* Out of descriptors: NULL with EMFILE, a transient cause. */
    struct rlimit old, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    int fds[4096], n = 0;
    low = old;
    low.rlim_cur = 64;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < 4096 && (fds[n] = dup(0)) >= 0)
        n++;
    errno = 0;
    struct adapter_job *job =
        adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    int e = errno;
    while (n > 0)
        close(fds[--n]);
    setrlimit(RLIMIT_NOFILE, &old);
    ck_assert_ptr_null(job);
    ck_assert_msg(e == EMFILE, "errno %d (%s), want EMFILE", e, strerror(e));
    /* Once descriptors are back it starts. */
    run_start(&r, &config, &task_default);
    ck_assert(run_until_done(&r, 10000));
    ck_assert(r.success);
    /* A program that is not there is permanent: ENOENT. */
    char *argv2[] = {"hive-no-such-command-on-path", NULL};
    config.argv = argv2;
    errno = 0;
    job = adapter_start(r.base, &config, &task_default, run_chunk, run_done, &r, err, sizeof err);
    ck_assert_ptr_null(job);
    ck_assert_int_eq(errno, ENOENT);
    run_fini(&r);
}
END_TEST

/* After each edge test, even a failed one: no cgroup of ours is left. */
static void edges_teardown(void)
{
    contain_shutdown();
}

/* The suite. */
static Suite *adapter_suite(void)
{
    Suite *s = suite_create("adapter");
    TCase *mock = tcase_create("mock");
    tcase_add_test(mock, test_mock_format);
    tcase_add_test(mock, test_mock_utf8_cut);
    tcase_add_test(mock, test_mock_delay);
    tcase_add_test(mock, test_mock_fail);
    tcase_add_test(mock, test_mock_interrupt);
    suite_add_tcase(s, mock);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 30);
    tcase_add_test(cli, test_cli_cat_streams_stdin);
    tcase_add_test(cli, test_cli_content_substitution);
    tcase_add_test(cli, test_cli_exit_status);
    tcase_add_test(cli, test_cli_stderr_tail);
    tcase_add_test(cli, test_cli_killed_by_signal);
    tcase_add_test(cli, test_cli_environment);
    tcase_add_test(cli, test_cli_work_dir);
    tcase_add_test(cli, test_cli_timeout);
    tcase_add_test(cli, test_cli_timeout_sigterm_ignored);
    tcase_add_test(cli, test_cli_output_cap);
    tcase_add_test(cli, test_cli_grandchild_holding_stdout);
    tcase_add_test(cli, test_cli_interrupt);
    tcase_add_test(cli, test_cli_abandon);
    tcase_add_test(cli, test_cli_abandon_inside_chunk);
    tcase_add_test(cli, test_cli_child_ignores_stdin);
    tcase_add_test(cli, test_cli_two_jobs_one_base);
    tcase_add_test(cli, test_cli_cannot_run);
    suite_add_tcase(s, cli);
    TCase *edges = tcase_create("edges");
    tcase_set_timeout(edges, 60);
    tcase_add_checked_fixture(edges, NULL, edges_teardown);
    tcase_add_test(edges, test_cli_utf8_split_at_every_offset);
    tcase_add_test(edges, test_cli_utf8_cap_inside_character);
    tcase_add_test(edges, test_cli_binary_bytes_become_replacement);
    tcase_add_test(edges, test_cli_stderr_error_is_utf8);
    tcase_add_test(edges, test_cli_handover_variables_scrubbed);
    tcase_add_test(edges, test_cli_setsid_grandchild_killed_cgroup);
    tcase_add_test(edges, test_cli_setsid_grandchild_killed_subreaper);
    tcase_add_test(edges, test_cli_setsid_grandchild_killed_on_abandon);
    tcase_add_test(edges, test_cli_start_failure_errno);
    suite_add_tcase(s, edges);
    return s;
}

int main(void)
{
    check_remove_stale_cgroups("hive-BOT-CHECK-");
    return check_run(adapter_suite());
}
