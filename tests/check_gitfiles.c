/*
 * check_gitfiles: what a task changed, from git. The status parser fed
 * bytes (porcelain v2 -z: ordinary, renamed, unmerged, untracked entries,
 * paths with spaces, malformed records); then the whole thing against a
 * real repository on a real event loop: a baseline, changes by "the task"
 * (new, modified, deleted files, a commit), files dirty before it left
 * alone, hive's own .deia files, the cap of the list, and folders that are
 * no checkout or that git ignores.
 */
#include "worker/gitfiles.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#include "tests/check_support.h"

/* ---- the parser ---- */

struct seen {
    char text[4096];
};

static void collect(const char *xy, const char *path, void *arg)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%s%s:%s;", path ? "" : "HEAD=", xy,
             path ? path : "");
}

START_TEST(test_parse_entries)
{
    static const char out[] = "# branch.oid 0123abcd\0# branch.head main\0"
                              "1 .M N... 100644 100644 100644 aaaa bbbb README\0"
                              "1 A. N... 000000 100644 100644 0000 cccc dir/with space.txt\0"
                              "2 R. N... 100644 100644 100644 aaaa aaaa R100 new name\0old name\0"
                              "u UU N... 100644 100644 100644 100644 a b c conflict.c\0"
                              "? untracked file\0! ignored\0";
    struct seen s = {""};
    ck_assert_int_eq(gitfiles_parse_status(out, sizeof out - 1, collect, &s), 0);
    ck_assert_str_eq(s.text, "HEAD=0123abcd:;.M:README;A.:dir/with space.txt;R.:new name;"
                             "UU:conflict.c;??:untracked file;!!:ignored;");
}
END_TEST

START_TEST(test_parse_refuses_malformed)
{
    struct seen s = {""};
    static const char cut[] = "? a\0? b"; /* no NUL at the end */
    ck_assert_int_eq(gitfiles_parse_status(cut, sizeof cut - 1, collect, &s), -1);
    static const char short1[] = "1 .M N... 100644 README\0";
    ck_assert_int_eq(gitfiles_parse_status(short1, sizeof short1 - 1, collect, &s), -1);
    static const char kind[] = "x what\0";
    ck_assert_int_eq(gitfiles_parse_status(kind, sizeof kind - 1, collect, &s), -1);
    ck_assert_int_eq(gitfiles_parse_status("", 0, collect, &s), 0);
}
END_TEST

/* ---- a real repository ---- */

static char repo[64];
static struct event_base *base;
static bool called;

/* Run a shell line in the repository; it must succeed. */
static void sh(const char *line)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd %s && (%s) >/dev/null 2>&1", repo, line);
    ck_assert_int_eq(system(cmd), 0);
}

static void done_cb(void *arg)
{
    (void)arg;
    called = true;
}

/* Run the loop until the callback came (bounded). */
static void wait_done(void)
{
    for (int i = 0; i < 2000 && !called; i++)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert(called);
    called = false;
}

/* The changes as "a|b|c". */
static void changes(struct gitfiles *g, char *out, size_t cap)
{
    gitfiles_changes(g, done_cb, NULL);
    wait_done();
    size_t n;
    char **list = gitfiles_take(g, &n);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", i ? "|" : "", list[i]);
        free(list[i]);
    }
    free(list);
}

static void repo_setup(void)
{
    strcpy(repo, "/tmp/check-gitfiles-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(repo));
    sh("git init -q . && git config user.email t@t && git config user.name t && "
       "echo a > kept.txt && echo b > gone.txt && echo c > edit.txt && git add . && "
       "git commit -qm init");
    base = event_base_new();
    called = false;
}

static void repo_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", repo);
    ck_assert_int_eq(system(cmd), 0);
    event_base_free(base);
}

START_TEST(test_changes_since_the_baseline)
{
    sh("echo dirty >> kept.txt && echo u > before.txt"); /* dirty before the task */
    struct gitfiles *g = gitfiles_new(base, repo);
    ck_assert_ptr_nonnull(g);
    ck_assert(!gitfiles_ready(g));
    gitfiles_baseline(g, done_cb, NULL);
    ck_assert(gitfiles_busy(g));
    wait_done();
    ck_assert(gitfiles_ready(g));
    /* the task: new, edited, deleted files, one in a sub-folder; hive's own */
    sh("echo n > 'new file.txt' && echo e >> edit.txt && rm gone.txt && mkdir -p d/e && "
       "echo x > d/e/f && mkdir -p .deia/hive && echo s > .deia/hive/state");
    char out[2048];
    changes(g, out, sizeof out);
    ck_assert_str_eq(out, "d/e/f|edit.txt|gone.txt|new file.txt");
    ck_assert(!gitfiles_ready(g));
    /* next task: it commits a file and touches one dirty before */
    gitfiles_baseline(g, done_cb, NULL);
    wait_done();
    sh("sleep 0.01; echo again >> before.txt && echo c > c.txt && git add c.txt && "
       "git commit -qm task");
    changes(g, out, sizeof out);
    ck_assert_str_eq(out, "before.txt|c.txt");
    /* a task that changes nothing */
    gitfiles_baseline(g, done_cb, NULL);
    wait_done();
    changes(g, out, sizeof out);
    ck_assert_str_eq(out, "");
    gitfiles_free(g);
}
END_TEST

START_TEST(test_list_is_capped)
{
    struct gitfiles *g = gitfiles_new(base, repo);
    gitfiles_baseline(g, done_cb, NULL);
    wait_done();
    sh("for i in $(seq 1 250); do echo $i > f$i; done");
    gitfiles_changes(g, done_cb, NULL);
    wait_done();
    size_t n;
    char **list = gitfiles_take(g, &n);
    ck_assert_uint_eq(n, GITFILES_MAX_LIST + 1);
    ck_assert_str_eq(list[n - 1], "... and 50 more");
    ck_assert_ptr_null(list[n]);
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    gitfiles_free(g);
}
END_TEST

START_TEST(test_no_checkout_no_list)
{
    char dir[] = "/tmp/check-gitfiles-plain-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_null(gitfiles_new(base, dir));
    rmdir(dir);
    /* a folder git ignores: nothing to list; a plain sub-folder: followed */
    sh("echo out/ > .gitignore && mkdir -p out/x sub/y");
    char path[128];
    snprintf(path, sizeof path, "%s/out/x", repo);
    ck_assert_ptr_null(gitfiles_new(base, path));
    snprintf(path, sizeof path, "%s/sub/y", repo);
    struct gitfiles *sub = gitfiles_new(base, path);
    ck_assert_ptr_nonnull(sub);
    gitfiles_free(sub);
    /* freed while git runs: killed, no callback */
    struct gitfiles *g = gitfiles_new(base, repo);
    gitfiles_baseline(g, done_cb, NULL);
    gitfiles_free(g);
    event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert(!called);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gitfiles");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_entries);
    tcase_add_test(tc, test_parse_refuses_malformed);
    suite_add_tcase(s, tc);
    TCase *rt = tcase_create("repository");
    tcase_set_timeout(rt, 60);
    tcase_add_checked_fixture(rt, repo_setup, repo_teardown);
    tcase_add_test(rt, test_changes_since_the_baseline);
    tcase_add_test(rt, test_list_is_capped);
    tcase_add_test(rt, test_no_checkout_no_list);
    suite_add_tcase(s, rt);
    return check_run(s);
}
