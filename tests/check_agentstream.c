/*
 * check_agentstream: the agent CLI stream reader (worker/agentstream.c) fed
 * recorded streams whole, one byte at a time and cut at every offset: the
 * text, the tool uses and the outcome never depend on where the bytes were
 * cut. claude's stream-json (text, tool use, error result, usage limit with
 * and without a time, a killed stream, a line over the limit, lines that are
 * not JSON), codex's exec --json and gemini's json document; the usage-limit
 * and refused-resume texts of plain CLIs.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "worker/agentstream.h"

#include "tests/check_support.h"

#define NOW 1767225600 /* 2026-01-01T00:00:00Z */

/* What a run of the reader gave: the callbacks' record and the outcome. */
struct run {
    struct util_buf text;  /* every text piece, joined */
    struct util_buf tools; /* "name|summary\n" per tool use */
    struct agentstream_outcome out;
    int feed_rc;
};

static void run_text(void *arg, const char *text, size_t len)
{
    util_buf_add(&((struct run *)arg)->text, text, len);
}

static void run_tool(void *arg, const char *name, const char *summary)
{
    struct run *r = arg;
    char *line = xasprintf("%s|%s\n", name, summary);
    util_buf_add(&r->tools, line, strlen(line));
    free(line);
}

/* Feed IN (LEN bytes) to a reader of DIALECT cut at CUTS[0..N), then finish. */
static void run_cuts(enum agentstream_dialect dialect, size_t max, const char *in, size_t len,
                     const size_t *cuts, size_t n, struct run *r)
{
    memset(r, 0, sizeof *r);
    util_buf_add(&r->text, "", 0);
    util_buf_add(&r->tools, "", 0);
    struct agentstream_sink sink = {run_text, run_tool, r};
    struct agentstream *s = agentstream_new(dialect, max, &sink);
    size_t prev = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : len;
        if (agentstream_feed(s, in + prev, end - prev) < 0)
            r->feed_rc = -1;
        prev = end;
    }
    agentstream_finish(s, NOW, &r->out);
    agentstream_free(s);
}

static void run_clear(struct run *r)
{
    free(r->text.data);
    free(r->tools.data);
    agentstream_outcome_clear(&r->out);
}

/* Both runs gave the same text, tools and outcome. */
static void run_same(const struct run *a, const struct run *b, size_t cut)
{
    ck_assert_msg(a->text.len == b->text.len && !memcmp(a->text.data, b->text.data, a->text.len),
                  "text differs when cut at %zu", cut);
    ck_assert_msg(strcmp(a->tools.data, b->tools.data) == 0, "tools differ when cut at %zu", cut);
    ck_assert(a->out.success == b->out.success && a->out.have_result == b->out.have_result);
    ck_assert(a->out.usage.input == b->out.usage.input && a->out.usage.known == b->out.usage.known);
    ck_assert((a->out.error == NULL) == (b->out.error == NULL));
    if (a->out.error)
        ck_assert_str_eq(a->out.error, b->out.error);
    ck_assert(a->out.limited == b->out.limited && a->out.limit_reset == b->out.limit_reset);
}

/* Run IN whole into WHOLE, then check every single cut and a byte-by-byte
 * feed give the same. */
static void run_every_cut(enum agentstream_dialect dialect, const char *in, struct run *whole)
{
    size_t len = strlen(in);
    run_cuts(dialect, 0, in, len, NULL, 0, whole);
    for (size_t c = 0; c <= len; c++) {
        struct run r;
        run_cuts(dialect, 0, in, len, &c, 1, &r);
        run_same(whole, &r, c);
        run_clear(&r);
    }
    size_t *every = malloc((len + 1) * sizeof *every);
    for (size_t i = 0; i <= len; i++)
        every[i] = i;
    struct run r;
    run_cuts(dialect, 0, in, len, every, len, &r);
    run_same(whole, &r, (size_t)-1);
    run_clear(&r);
    free(every);
}

static const char claude_text[] =
    "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-1\",\"tools\":[\"Bash\"]}\n"
    "warning: this line is not JSON\n"
    "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"Looking "
    "\\u00e0 it\"}]},\"session_id\":\"s-1\"}\n"
    "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\","
    "\"name\":\"Bash\",\"input\":{\"command\":\"ls -la\\nrm x\",\"description\":\"list\"}}]}}\n"
    "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
    "\"content\":\"a\"}]}}\n"
    "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"Grep\","
    "\"input\":{\"x\":[1,2]}},{\"type\":\"text\",\"text\":\"Done \\u2713\"}]}}\n"
    "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"duration_ms\":2345,"
    "\"num_turns\":3,\"result\":\"Done \\u2713\",\"session_id\":\"s-1\",\"total_cost_usd\":0.0123,"
    "\"usage\":{\"input_tokens\":120,\"output_tokens\":345,\"cache_read_input_tokens\":15000,"
    "\"cache_creation_input_tokens\":2000}}\n";

/* claude: text streams as it comes, tools in order, the result's numbers. */
START_TEST(test_claude_text_and_tools)
{
    struct run r;
    run_every_cut(AGENTSTREAM_CLAUDE, claude_text, &r);
    ck_assert_str_eq(r.text.data, "Looking \xc3\xa0 it\n\nDone \xe2\x9c\x93");
    ck_assert_str_eq(r.tools.data, "Bash|ls -la rm x\nGrep|{\"x\":[1,2]}\n");
    ck_assert(r.out.have_result && r.out.success && !r.out.error && !r.out.limited);
    ck_assert_str_eq(r.out.session_id, "s-1");
    ck_assert_str_eq(r.out.answer, "Done \xe2\x9c\x93");
    ck_assert(r.out.usage.known && r.out.usage.cost_known);
    ck_assert_uint_eq(r.out.usage.input, 120);
    ck_assert_uint_eq(r.out.usage.output, 345);
    ck_assert_uint_eq(r.out.usage.cache_read, 15000);
    ck_assert_uint_eq(r.out.usage.cache_write, 2000);
    ck_assert_double_eq_tol(r.out.usage.cost_usd, 0.0123, 1e-9);
    run_clear(&r);
}
END_TEST

/* claude: an error result fails the task with its subtype. */
START_TEST(test_claude_error_result)
{
    const char *in = "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-2\"}\n"
                     "{\"type\":\"result\",\"subtype\":\"error_max_turns\",\"is_error\":true,"
                     "\"session_id\":\"s-2\",\"total_cost_usd\":0.002,\"usage\":{\"input_tokens\":"
                     "10,\"output_tokens\":5}}";
    struct run r;
    run_every_cut(AGENTSTREAM_CLAUDE, in, &r);
    ck_assert(r.out.have_result && !r.out.success && !r.out.limited);
    ck_assert_str_eq(r.out.error, "agent error (error_max_turns): no message");
    ck_assert_str_eq(r.out.session_id, "s-2");
    ck_assert_uint_eq(r.out.usage.input, 10);
    run_clear(&r);
}
END_TEST

/* claude: its usage-limit result, with the reset time after a bar, and the
 * newer wording with a time of day. */
START_TEST(test_claude_usage_limit)
{
    const char *in = "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":"
                     "\"Claude AI usage limit reached|1767229200\",\"session_id\":\"s\"}\n";
    struct run r;
    run_every_cut(AGENTSTREAM_CLAUDE, in, &r);
    ck_assert(!r.out.success && r.out.limited);
    ck_assert_int_eq(r.out.limit_reset, 1767229200);
    run_clear(&r);
    in = "{\"type\":\"result\",\"is_error\":true,\"result\":\"5-hour limit reached \\u2219 resets "
         "3pm\"}";
    run_cuts(AGENTSTREAM_CLAUDE, 0, in, strlen(in), NULL, 0, &r);
    ck_assert(r.out.limited);
    time_t t = (time_t)r.out.limit_reset;
    struct tm tm;
    localtime_r(&t, &tm);
    ck_assert_int_eq(tm.tm_hour, 15);
    ck_assert_int_eq(tm.tm_min, 0);
    ck_assert(r.out.limit_reset > NOW && r.out.limit_reset <= NOW + 86400 + 3600);
    run_clear(&r);
}
END_TEST

/* claude: a stream cut short (killed CLI, no result) fails with a clear
 * error; a line over the limit is an error, not a crash or a huge buffer. */
START_TEST(test_claude_truncated)
{
    const char *in = "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-3\"}\n"
                     "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                     "\"text\":\"Starting\"}]}}\n"
                     "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_02\",\"type\":\"mess";
    struct run r;
    run_every_cut(AGENTSTREAM_CLAUDE, in, &r);
    ck_assert_str_eq(r.text.data, "Starting");
    ck_assert(!r.out.have_result && !r.out.success && !r.out.limited);
    ck_assert_ptr_nonnull(strstr(r.out.error, "ended without a result"));
    ck_assert_ptr_nonnull(strstr(r.out.error, "msg_02"));
    ck_assert_str_eq(r.out.session_id, "s-3");
    run_clear(&r);
    run_cuts(AGENTSTREAM_CLAUDE, 0, "", 0, NULL, 0, &r);
    ck_assert_str_eq(r.out.error, "the agent's stream ended without a result");
    run_clear(&r);
    run_cuts(AGENTSTREAM_CLAUDE, 16, claude_text, strlen(claude_text), NULL, 0, &r);
    ck_assert_int_eq(r.feed_rc, -1);
    ck_assert_ptr_nonnull(strstr(r.out.error, "longer than 16 bytes"));
    run_clear(&r);
}
END_TEST

/* claude: a result with its answer but no streamed text gives the answer as
 * the output; wrong types are ignored, not trusted. */
START_TEST(test_claude_answer_only_and_bad_types)
{
    const char *in = "{\"type\":\"assistant\",\"message\":{\"content\":\"not an array\"}}\n"
                     "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                     "\"text\":7},{\"type\":\"tool_use\",\"name\":3,\"input\":\"x\"}]}}\n"
                     "[1,2,3]\n\"str\"\nnull\n{\"type\":5}\n"
                     "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":"
                     "\"the answer\",\"total_cost_usd\":\"free\",\"usage\":{\"input_tokens\":-5,"
                     "\"output_tokens\":1.5e300}}\n";
    struct run r;
    run_every_cut(AGENTSTREAM_CLAUDE, in, &r);
    ck_assert_str_eq(r.text.data, "the answer");
    ck_assert_str_eq(r.tools.data, "tool|x\n");
    ck_assert(r.out.success && r.out.usage.known && !r.out.usage.cost_known);
    ck_assert_uint_eq(r.out.usage.input, 0);
    ck_assert_uint_eq(r.out.usage.output, 0);
    run_clear(&r);
}
END_TEST

/* codex exec --json: thread id, agent messages, commands, turn usage. */
START_TEST(test_codex)
{
    const char *in =
        "{\"type\":\"thread.started\",\"thread_id\":\"th-9\"}\n{\"type\":\"turn.started\"}\n"
        "{\"type\":\"item.started\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\","
        "\"command\":\"bash -lc ls\",\"status\":\"in_progress\"}}\n"
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\","
        "\"command\":\"bash -lc ls\",\"exit_code\":0}}\n"
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i2\",\"type\":\"agent_message\",\"text\":"
        "\"A README.\"}}\n"
        "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":24763,\"cached_input_tokens\":"
        "24448,\"output_tokens\":122}}\n";
    struct run r;
    run_every_cut(AGENTSTREAM_CODEX, in, &r);
    ck_assert_str_eq(r.text.data, "A README.");
    ck_assert_str_eq(r.tools.data, "command|bash -lc ls\n");
    ck_assert(r.out.success && r.out.usage.known && !r.out.usage.cost_known);
    ck_assert_str_eq(r.out.session_id, "th-9");
    ck_assert_uint_eq(r.out.usage.input, 24763);
    ck_assert_uint_eq(r.out.usage.cache_read, 24448);
    ck_assert_uint_eq(r.out.usage.output, 122);
    run_clear(&r);
    in = "{\"type\":\"error\",\"message\":\"stream disconnected\"}\n"
         "{\"type\":\"turn.failed\",\"error\":{\"message\":\"You've hit your usage limit. Try "
         "again in 5 minutes.\"}}\n";
    run_every_cut(AGENTSTREAM_CODEX, in, &r);
    ck_assert(!r.out.success && r.out.limited);
    ck_assert_int_eq(r.out.limit_reset, NOW + 300);
    run_clear(&r);
}
END_TEST

/* gemini --output-format json: one document (pretty-printed, so over many
 * lines), read at the end. */
START_TEST(test_gemini)
{
    const char *in =
        "{\n  \"response\": \"Paris.\",\n  \"stats\": {\"models\": {\"g\": {\"tokens\": "
        "{\"prompt\": 250, \"candidates\": 8, \"cached\": 100}}}}\n}\n";
    struct run r;
    run_every_cut(AGENTSTREAM_GEMINI, in, &r);
    ck_assert_str_eq(r.text.data, "Paris.");
    ck_assert(r.out.success && r.out.usage.known);
    ck_assert_uint_eq(r.out.usage.input, 250);
    ck_assert_uint_eq(r.out.usage.output, 8);
    ck_assert_uint_eq(r.out.usage.cache_read, 100);
    run_clear(&r);
    in = "{\"error\": {\"type\": \"ApiError\", \"message\": \"Quota exceeded for quota metric\", "
         "\"code\": 429}}";
    run_every_cut(AGENTSTREAM_GEMINI, in, &r);
    ck_assert(!r.out.success && r.out.limited && r.out.limit_reset == 0);
    ck_assert_str_eq(r.out.error, "agent error: Quota exceeded for quota metric");
    run_clear(&r);
}
END_TEST

/* The plain-text limit messages of CLIs without JSON, and what is not one. */
START_TEST(test_limit_texts)
{
    int64_t reset;
    ck_assert(agentstream_limit_text("Claude AI usage limit reached|1767229200", NOW, &reset));
    ck_assert_int_eq(reset, 1767229200);
    ck_assert(
        agentstream_limit_text("Error: Rate limit exceeded. Try again in 30 seconds", NOW, &reset));
    ck_assert_int_eq(reset, NOW + 30);
    ck_assert(agentstream_limit_text("usage limit reached, resets at 04:30", NOW, &reset));
    time_t t = (time_t)reset;
    struct tm tm;
    localtime_r(&t, &tm);
    ck_assert(tm.tm_hour == 4 && tm.tm_min == 30 && reset > NOW && reset <= NOW + 90000);
    ck_assert(agentstream_limit_text("429 Too Many Requests", NOW, &reset));
    ck_assert_int_eq(reset, 0);
    ck_assert(agentstream_limit_text("weekly limit reached. resets 12am", NOW, &reset));
    ck_assert(reset > NOW);
    ck_assert(!agentstream_limit_text("exit status 1: file not found", NOW, &reset));
    ck_assert(!agentstream_limit_text("limited edition", NOW, &reset));
    ck_assert(!agentstream_limit_text(NULL, NOW, &reset));
    ck_assert(agentstream_resume_rejected("No conversation found with session ID: abc"));
    ck_assert(agentstream_resume_rejected("Error: session abc not found"));
    ck_assert(!agentstream_resume_rejected("exit status 1: boom"));
    ck_assert_int_eq(agentstream_dialect_named("claude"), AGENTSTREAM_CLAUDE);
    ck_assert_int_eq(agentstream_dialect_named("cli"), AGENTSTREAM_NONE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("agentstream");
    TCase *tc = tcase_create("agentstream");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_claude_text_and_tools);
    tcase_add_test(tc, test_claude_error_result);
    tcase_add_test(tc, test_claude_usage_limit);
    tcase_add_test(tc, test_claude_truncated);
    tcase_add_test(tc, test_claude_answer_only_and_bad_types);
    tcase_add_test(tc, test_codex);
    tcase_add_test(tc, test_gemini);
    tcase_add_test(tc, test_limit_texts);
    suite_add_tcase(s, tc);
    return check_run(s);
}
