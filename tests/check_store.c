/*
 * check_store: the durable steps of a task and crash recovery. Each crash is
 * staged by building on disk exactly what a worker killed at that instant
 * leaves behind, then recovery must end with one response per task, the task
 * archived or requeued, and no pending file left. Answers are committed in
 * batches (written, then one sync, then renamed, linked, archived each), so
 * crashes before and inside a batch's commit are staged too. _archive/ and
 * the pending folder are made by the first answer, quietly (absent is
 * empty), and made again, with a warning, when removed after that.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/answers.h"
#include "worker/response.h"
#include "worker/store.h"

#include "tests/check_support.h"

static char check_dir[256];
static struct store *check_st;

/* A fresh work dir and store for each test. */
static void check_setup(void)
{
    snprintf(check_dir, sizeof check_dir, "/tmp/check_store.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(check_dir));
    char err[256];
    check_st = store_open(check_dir, "BOT-1", err, sizeof err);
    ck_assert_ptr_nonnull(check_st);
}

/* Remove the work dir. */
static void check_teardown(void)
{
    store_free(check_st);
    char *cmd = xasprintf("rm -rf '%s'", check_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Number of entries in DIR whose name starts with PREFIX ("" = all but
 * dots); a missing folder (made on first use) has none. */
static int check_count(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d && errno == ENOENT)
        return 0;
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            strncmp(e->d_name, prefix, strlen(prefix)) == 0 && (*prefix || e->d_name[0] != '.'))
            n++;
    closedir(d);
    return n;
}

/* The response file the index of STORE names for ID, or NULL; caller frees. */
static char *check_found(struct store *store, const char *id)
{
    char name[256];
    return answers_find(store_answers(store), id, name, sizeof name) < 0 ? NULL : xstrdup(name);
}

/* A realtime task as the engine makes one. */
static struct task *check_rt_task(const char *id)
{
    struct task *t = task_new(id, TASK_SOURCE_HTTP);
    t->content = xstrdup("do it");
    t->priority = xstrdup("P1");
    t->rank = 1;
    t->from = xstrdup("user");
    t->order = 12345;
    return t;
}

/* Persist one realtime task and claim it. */
static struct task *check_claimed(const char *id)
{
    struct task *t = check_rt_task(id);
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    ck_assert_int_eq(store_claim(check_st, t, "BOT-1"), 0);
    return t;
}

/* The text and base name of a response for T. */
static char *check_response(struct task *t, char **base, size_t *len)
{
    struct response r = {.bot_id = "BOT-1",
                         .task_id = t->id,
                         .to = "user",
                         .source = t->source,
                         .success = true,
                         .output = "out",
                         .output_len = 3,
                         .finished_wall_ns = util_wall_ns()};
    *base = response_base_name(&r);
    return response_render(&r, len);
}

/* Recovery callback: collect requeued tasks. */
static void check_requeue(struct task *t, void *arg)
{
    int *n = arg;
    (*n)++;
    task_free(t);
}

START_TEST(test_persist_and_load)
{
    struct task *t = check_rt_task("A-1");
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    ck_assert_str_eq(t->file_name, "A-1.json");
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, "."), 0);
    struct task *l = store_load_realtime(check_st, store_paths(check_st)->realtime, "A-1.json");
    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(l->id, "A-1");
    ck_assert_str_eq(l->content, "do it");
    ck_assert_str_eq(l->priority, "P1");
    ck_assert_int_eq(l->rank, 1);
    ck_assert_int_eq(l->order, 12345);
    ck_assert_int_eq(l->source, TASK_SOURCE_HTTP);
    task_free(l);
    task_free(t);
}
END_TEST

START_TEST(test_finish_once)
{
    struct task *t = check_claimed("A-2");
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 1);
    char *base;
    size_t len;
    char *text = check_response(t, &base, &len);
    ck_assert_int_eq(store_finish(check_st, t, base, text, len), 0);
    ck_assert_ptr_nonnull(t->response_file);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 1);
    /* The same task id again gets a second name, never an overwrite. */
    struct task *t2 = check_claimed("A-2");
    ck_assert_int_eq(store_finish(check_st, t2, base, text, len), 0);
    ck_assert_str_ne(t->response_file, t2->response_file);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 2);
    char *found = check_found(check_st, "A-2");
    ck_assert_str_eq(found, t2->response_file); /* the newest answer of A-2 */
    free(found);
    ck_assert_ptr_null(check_found(check_st, "nope"));
    char err[256];
    struct store *other = store_open(check_dir, "BOT-2", err, sizeof err);
    ck_assert_ptr_null(check_found(other, "A-2")); /* each bot has its own index */
    store_free(other);
    free(base);
    free(text);
    task_free(t);
    task_free(t2);
}
END_TEST

/* Write the pending file of a claimed task as store_finish would. */
static char *check_write_pending(struct task *t)
{
    char *base;
    size_t len;
    char *text = check_response(t, &base, &len);
    char *pending = xasprintf("%s/%s.pending", store_paths(check_st)->pending, t->file_name);
    ck_assert_int_eq(util_mkdirs(store_paths(check_st)->pending), 0); /* an earlier answer's */
    FILE *f = fopen(pending, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, len, f);
    fclose(f);
    free(text);
    free(base);
    return pending;
}

START_TEST(test_crash_before_link)
{
    struct task *t = check_claimed("B-1");
    char *pending = check_write_pending(t);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    ck_assert_int_eq(requeued, 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 1);
    char *found = check_found(check_st, "B-1");
    ck_assert_ptr_nonnull(found);
    free(found);
    free(pending);
    task_free(t);
}
END_TEST

START_TEST(test_crash_while_writing_response)
{
    /* Killed between creating and filling the response: an empty temp file,
     * and (staged, as after a crash before the fsync) a cut pending file. */
    struct task *t = check_claimed("B-0");
    char *pending = check_write_pending(t);
    truncate(pending, 40);
    char *tmp = xasprintf("%s.tmp", pending);
    FILE *f = fopen(tmp, "w");
    fclose(f);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 1);
    ck_assert_int_eq(requeued, 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 0);
    free(tmp);
    free(pending);
    task_free(t);
}
END_TEST

START_TEST(test_commit_batch)
{
    /* Three answers written one after the other (tasks run one at a time),
     * then committed together with one sync. */
    struct task *t[3] = {check_claimed("G-1"), check_claimed("G-2"), check_claimed("G-3")};
    char *bases[3];
    int fds[3], rc[3];
    for (int i = 0; i < 3; i++) {
        size_t len;
        char *text = check_response(t[i], &bases[i], &len);
        fds[i] = store_write_response(check_st, t[i], text, len);
        ck_assert_int_ge(fds[i], 0);
        free(text);
    }
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 0);
    store_commit_responses(check_st, t, bases, fds, 3, rc);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rc[i], 0);
        ck_assert_ptr_nonnull(t[i]->response_file);
        char *found = check_found(check_st, t[i]->id);
        ck_assert_str_eq(found, t[i]->response_file);
        free(found);
        free(bases[i]);
        task_free(t[i]);
    }
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 3);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 3);
}
END_TEST

START_TEST(test_crash_before_commit)
{
    /* Killed after a task's answer was written (whole, in the page cache)
     * but before the commit made it durable, while the next task ran: both
     * run again, and nothing was answered. */
    struct task *a = check_claimed("H-1");
    struct task *b = check_claimed("H-2");
    char *base;
    size_t len;
    char *text = check_response(a, &base, &len);
    int fd = store_write_response(check_st, a, text, len);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 1);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 2);
    ck_assert_int_eq(requeued, 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 0);
    free(text);
    free(base);
    task_free(a);
    task_free(b);
}
END_TEST

START_TEST(test_crash_during_commit)
{
    /* Killed inside a commit: the batch was synced, the first answer got its
     * pending name and its final name, the second still has its temp name
     * (synced, but recovery cannot know that), the third was renamed to its
     * pending name only. One response each for the first and third, the
     * second runs again. */
    struct task *t[3] = {check_claimed("K-1"), check_claimed("K-2"), check_claimed("K-3")};
    char *pending[3];
    for (int i = 0; i < 3; i++)
        pending[i] = check_write_pending(t[i]);
    char *final = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-K-1-complete.md",
                            store_paths(check_st)->responses);
    ck_assert_int_eq(link(pending[0], final), 0);
    char *tmp = xasprintf("%s.tmp", pending[1]);
    ck_assert_int_eq(rename(pending[1], tmp), 0);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 1);
    ck_assert_int_eq(requeued, 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, "K-2"), 1);
    for (int i = 0; i < 3; i++) {
        char *found = check_found(check_st, t[i]->id);
        if (i == 1)
            ck_assert_ptr_null(found);
        else
            ck_assert_ptr_nonnull(found);
        free(found);
        free(pending[i]);
        task_free(t[i]);
    }
    free(tmp);
    free(final);
}
END_TEST

/* A store's opening makes neither _active/ nor _realtime/ (a recovery
 * reads them as empty); the first accepted task makes _realtime/, its claim
 * _active/. */
START_TEST(test_active_and_realtime_made_on_use)
{
    const struct store_paths *p = store_paths(check_st);
    struct stat st;
    ck_assert_int_eq(stat(p->queue, &st), 0);
    ck_assert_int_eq(lstat(p->active, &st), -1);
    ck_assert_int_eq(lstat(p->realtime, &st), -1);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    ck_assert(!store_recover_incomplete(check_st));
    struct task *t = check_rt_task("M-1");
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    ck_assert(stat(p->realtime, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_int_eq(lstat(p->active, &st), -1);
    ck_assert_int_eq(store_claim(check_st, t, "BOT-1"), 0);
    ck_assert(stat(p->active, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_int_eq(check_count(p->active, "M-1"), 1);
    task_free(t);
}
END_TEST

START_TEST(test_persist_with_named_temp_files)
{
    /* Where O_TMPFILE is missing: named temp files renamed, none left. */
    store_use_named_temp_files(check_st);
    struct task *t[2] = {check_rt_task("N-1"), check_rt_task("N-2")};
    bool ok[2] = {false, false};
    store_persist_realtime(check_st, t, 2, ok);
    ck_assert(ok[0] && ok[1]);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, "."), 0);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 2);
    task_free(t[0]);
    task_free(t[1]);
}
END_TEST

START_TEST(test_persist_replaces_stale_file)
{
    /* A stale file under the same name is replaced, as a rename would. */
    char *stale = xasprintf("%s/S-1.json", store_paths(check_st)->realtime);
    ck_assert_int_eq(util_mkdirs(store_paths(check_st)->realtime), 0); /* as the first task's */
    FILE *f = fopen(stale, "w");
    fputs("stale", f);
    fclose(f);
    struct task *t = check_rt_task("S-1");
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    struct task *l = store_load_realtime(check_st, store_paths(check_st)->realtime, "S-1.json");
    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(l->content, "do it");
    task_free(l);
    task_free(t);
    free(stale);
}
END_TEST

START_TEST(test_persist_batch_and_cut_file)
{
    /* A batch persisted together; then a task file cut by a power loss
     * before its batch's sync (never acknowledged) is set aside. */
    struct task *t[2] = {check_rt_task("P-1"), check_rt_task("P-2")};
    bool ok[2] = {false, false};
    store_persist_realtime(check_st, t, 2, ok);
    ck_assert(ok[0] && ok[1]);
    char *cut = xasprintf("%s/P-3.json", store_paths(check_st)->realtime);
    FILE *f = fopen(cut, "w");
    fputs("{\"task_id\":\"P-3\",\"comm", f);
    fclose(f);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 2);
    ck_assert_int_eq(requeued, 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ".P-3.json"), 1);
    requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 2);
    free(cut);
    task_free(t[0]);
    task_free(t[1]);
}
END_TEST

START_TEST(test_crash_after_link)
{
    struct task *t = check_claimed("B-2");
    char *pending = check_write_pending(t);
    char *final = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-B-2-complete.md",
                            store_paths(check_st)->responses);
    ck_assert_int_eq(link(pending, final), 0);
    int requeued = 0;
    store_recover(check_st, "BOT-1", check_requeue, &requeued);
    ck_assert_int_eq(requeued, 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 1);
    free(final);
    free(pending);
    task_free(t);
}
END_TEST

START_TEST(test_crash_after_archive)
{
    struct task *t = check_claimed("B-3");
    char *pending = check_write_pending(t);
    char *final = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-B-3-complete.md",
                            store_paths(check_st)->responses);
    ck_assert_int_eq(link(pending, final), 0);
    char *a = xasprintf("%s/B-3.json", store_paths(check_st)->active);
    char *b = xasprintf("%s/B-3.json", store_paths(check_st)->archive);
    ck_assert_int_eq(util_mkdirs(store_paths(check_st)->archive), 0);
    ck_assert_int_eq(rename(a, b), 0);
    int requeued = 0;
    store_recover(check_st, "BOT-1", check_requeue, &requeued);
    ck_assert_int_eq(requeued, 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    free(a), free(b), free(final), free(pending);
    task_free(t);
}
END_TEST

START_TEST(test_crash_while_running)
{
    struct task *t = check_claimed("C-1");
    /* A file task claimed too. */
    char *q = xasprintf("%s/job.md", store_paths(check_st)->queue);
    FILE *f = fopen(q, "w");
    fputs("**From:** ann\nhello\n", f);
    fclose(f);
    struct task *ft = task_new("job", TASK_SOURCE_FILE);
    ft->file_name = xstrdup("job.md");
    ck_assert_int_eq(store_claim(check_st, ft, "BOT-1"), 0);
    ck_assert_str_eq(ft->from, "ann");
    ck_assert_str_eq(ft->content, "**From:** ann\nhello\n");
    /* And a temp file that was never acknowledged. */
    char *tmp = xasprintf("%s/.X.tmp", store_paths(check_st)->realtime);
    f = fopen(tmp, "w");
    fclose(f);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 1);
    ck_assert_int_eq(requeued, 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 1);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    ck_assert_int_eq(access(q, F_OK), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 0);
    free(q), free(tmp);
    task_free(t);
    task_free(ft);
}
END_TEST

START_TEST(test_unclaim_keeps_newer_file)
{
    char *q = xasprintf("%s/dup.md", store_paths(check_st)->queue);
    FILE *f = fopen(q, "w");
    fputs("first\n", f);
    fclose(f);
    struct task *ft = task_new("dup", TASK_SOURCE_FILE);
    ft->file_name = xstrdup("dup.md");
    ck_assert_int_eq(store_claim(check_st, ft, "BOT-1"), 0);
    f = fopen(q, "w");
    fputs("second\n", f);
    fclose(f);
    int requeued = 0;
    store_recover(check_st, "BOT-1", check_requeue, &requeued);
    /* Neither copy is lost: the claimed one comes back under another name. */
    ck_assert_int_eq(check_count(store_paths(check_st)->queue, "dup"), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    free(q);
    task_free(ft);
}
END_TEST

START_TEST(test_pending_is_per_bot)
{
    /* Another bot's leftover pending answer (its task in its own _active/)
     * is that bot's to settle: recovery here neither links nor removes it,
     * and a temp file of no claimed task of ours goes. */
    char *other = xasprintf("%s/../BOT-2", store_paths(check_st)->pending);
    ck_assert_int_eq(util_mkdirs(other), 0);
    char *theirs = xasprintf("%s/T-9.json.pending", other);
    FILE *f = fopen(theirs, "w");
    fputs("# RESPONSE: T-9 - Complete\n\n**Response generated:** now\n", f);
    fclose(f);
    char *stray = xasprintf("%s/gone.json.pending.tmp", store_paths(check_st)->pending);
    ck_assert_int_eq(util_mkdirs(store_paths(check_st)->pending), 0);
    f = fopen(stray, "w");
    fclose(f);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    ck_assert_int_eq(check_count(other, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->pending, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 0);
    free(stray);
    free(theirs);
    free(other);
}
END_TEST

/* Finish a new realtime task ID; 0 or what store_finish said. */
static int check_answer(const char *id)
{
    struct task *t = check_claimed(id);
    char *base;
    size_t len;
    char *text = check_response(t, &base, &len);
    int r = store_finish(check_st, t, base, text, len);
    ck_assert(r != 0 || !t->claimed);
    free(base);
    free(text);
    task_free(t);
    return r;
}

/* Log sink: count the warnings. */
static void check_count_warnings(enum log_level level, const char *message, void *arg)
{
    (void)message;
    int *n = arg;
    *n += level == LOG_LEVEL_WARN;
}

START_TEST(test_pending_folder_recreated)
{
    /* The pending folder removed under a running worker (a fresh mount over
     * the responses folder, a cleanup script): the next answer still lands. */
    ck_assert_int_eq(check_answer("R-0"), 0);
    ck_assert_int_eq(rmdir(store_paths(check_st)->pending), 0);
    ck_assert_int_eq(check_answer("R-1"), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->responses, ""), 2);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 2);
}
END_TEST

START_TEST(test_made_on_first_answer)
{
    /* A start makes neither _archive/ nor the pending folder (nor the
     * answers index): nothing needs them before the first answer, and each
     * inode a start makes is slow on an ext4 without a journal. Recovery
     * and look-ups take them for empty. */
    struct stat st;
    const struct store_paths *p = store_paths(check_st);
    char *index = xasprintf("%s/.index/BOT-1", p->responses);
    ck_assert_int_eq(lstat(p->archive, &st), -1);
    ck_assert_int_eq(lstat(p->pending, &st), -1);
    ck_assert_int_eq(lstat(index, &st), -1);
    int requeued = 0, warnings = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    ck_assert(!store_recover_incomplete(check_st));
    ck_assert_ptr_null(check_found(check_st, "M-1"));
    ck_assert_int_eq(lstat(p->archive, &st), -1);
    ck_assert_int_eq(lstat(p->pending, &st), -1);
    /* The first answer makes them, saying nothing (it is no removal). */
    log_set_sink(LOG_LEVEL_WARN, check_count_warnings, &warnings);
    ck_assert_int_eq(check_answer("M-1"), 0);
    ck_assert_int_eq(warnings, 0);
    ck_assert(lstat(p->archive, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert(lstat(p->pending, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert(lstat(index, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_int_eq(check_count(p->archive, ""), 1);
    ck_assert_int_eq(check_count(p->pending, ""), 0);
    char *found = check_found(check_st, "M-1");
    ck_assert_ptr_nonnull(found);
    free(found);
    /* Removed after that, they are made again, and that is told. */
    char *cmd = xasprintf("rm -rf '%s' '%s'", p->archive, p->pending);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    ck_assert_int_eq(check_answer("M-2"), 0);
    ck_assert_int_eq(warnings, 2);
    ck_assert_int_eq(check_count(p->archive, ""), 1);
    log_set_sink(LOG_LEVEL_WARN, NULL, NULL);
    /* The next start finds them and recovers nothing. */
    store_free(check_st);
    char err[256];
    check_st = store_open(check_dir, "BOT-1", err, sizeof err);
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    ck_assert_int_eq(requeued, 0);
    found = check_found(check_st, "M-2");
    ck_assert_ptr_nonnull(found);
    free(found);
    free(index);
}
END_TEST

START_TEST(test_temp_name_symlink_not_followed)
{
    /* SPEC §7: a link planted at the predictable temp name is replaced, its
     * target untouched. */
    struct task *t = check_claimed("L-1");
    char *victim = xasprintf("%s/victim", check_dir);
    FILE *f = fopen(victim, "w");
    fputs("precious\n", f);
    fclose(f);
    char *tmp = xasprintf("%s/%s.pending.tmp", store_paths(check_st)->pending, t->file_name);
    ck_assert_int_eq(util_mkdirs(store_paths(check_st)->pending), 0);
    ck_assert_int_eq(symlink(victim, tmp), 0);
    char *base;
    size_t len;
    char *text = check_response(t, &base, &len);
    ck_assert_int_eq(store_finish(check_st, t, base, text, len), 0);
    size_t vlen;
    char *v = store_read_regular(victim, &vlen);
    ck_assert_str_eq(v, "precious\n");
    /* Reads never follow a link either. */
    ck_assert_int_eq(symlink(victim, tmp), 0);
    ck_assert_ptr_null(store_read_regular(tmp, NULL));
    free(v), free(text), free(base), free(tmp), free(victim);
    task_free(t);
}
END_TEST

START_TEST(test_symlinked_folder_refused)
{
    char *archive = xasprintf("%s/.deia/hive/tasks/BOT-9/_archive", check_dir);
    char *queue = xasprintf("%s/.deia/hive/tasks/BOT-9", check_dir);
    ck_assert_int_eq(util_mkdirs(queue), 0);
    ck_assert_int_eq(symlink("/tmp", archive), 0);
    char err[512];
    ck_assert_ptr_null(store_open(check_dir, "BOT-9", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "symlink"));
    free(archive), free(queue);
}
END_TEST

START_TEST(test_folders_made_again)
{
    /* _active/ and _archive/ removed under the worker: the claim and the
     * archive make them again, and nothing is left to run twice. */
    ck_assert_int_eq(check_answer("F-0"), 0); /* _archive/ is made by the first answer */
    struct task *t = check_rt_task("F-1");
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    ck_assert_int_eq(rmdir(store_paths(check_st)->active), 0);
    ck_assert_int_eq(store_claim(check_st, t, "BOT-1"), 0);
    char *cmd = xasprintf("rm -rf '%s'", store_paths(check_st)->archive);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    char *base;
    size_t len;
    char *text = check_response(t, &base, &len);
    ck_assert_int_eq(store_finish(check_st, t, base, text, len), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->archive, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert(!t->claimed);
    free(text), free(base);
    task_free(t);
}
END_TEST

/* Recovery callback: keep the one task handed over. */
static void check_keep(struct task *t, void *arg)
{
    struct task **out = arg;
    ck_assert_ptr_null(*out);
    *out = t;
}

START_TEST(test_poison_after_three_deaths)
{
    /* The worker dies while it holds the task: deaths 1 and 2 put it back
     * (counted durably in _active/), the third hands it over claimed, to be
     * answered failed. */
    struct task *t = check_claimed("P-1");
    for (int death = 1; death <= 3; death++) {
        struct task *got = NULL;
        int n = store_recover(check_st, "BOT-1", check_keep, &got);
        ck_assert_int_eq(n, 1);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(got->id, "P-1");
        if (death < 3) {
            ck_assert(!got->claimed);
            ck_assert_ptr_null(got->parse_error);
            ck_assert_int_eq(store_claim(check_st, got, "BOT-1"), 0);
        } else {
            ck_assert(got->claimed);
            ck_assert_str_eq(got->parse_error, "worker died 3 times while running this task");
            char *base;
            size_t len;
            char *text = check_response(got, &base, &len);
            ck_assert_int_eq(store_finish(check_st, got, base, text, len), 0);
            free(text), free(base);
        }
        task_free(got);
    }
    /* Answered: nothing left in _active/, markers included. */
    ck_assert_int_eq(check_count(store_paths(check_st)->active, "."), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    int requeued = 0;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 0);
    task_free(t);
}
END_TEST

START_TEST(test_stale_death_marker_swept)
{
    /* Chaos run, 2026-12-03: a worker killed after a task's archive but
     * before its death markers went left `.X.json.died-1` in _active/ for
     * good. Recovery removes markers whose task is gone, keeps the others. */
    const char *active = store_paths(check_st)->active;
    char *stale = xasprintf("%s/.GONE-1.json.died-1", active);
    ck_assert_int_eq(util_mkdirs(active), 0); /* made by the first claim, as a worker's */
    int fd = open(stale, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    struct task *t = check_claimed("LIVE-1");
    struct task *got = NULL;
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_keep, &got), 1);
    ck_assert_int_eq(access(stale, F_OK), -1);
    ck_assert_int_eq(store_claim(check_st, got, "BOT-1"), 0);
    char *live = xasprintf("%s/.%s.died-1", active, got->file_name);
    ck_assert_int_eq(access(live, F_OK), 0); /* LIVE-1's own death counts on */
    task_free(got), task_free(t);
    free(stale), free(live);
}
END_TEST

START_TEST(test_large_task_loads)
{
    /* Whatever was accepted comes back, whatever its size. */
    struct task *t = check_rt_task("BIG-1");
    free(t->content);
    size_t n = 20u << 20;
    t->content = xmalloc(n + 1);
    memset(t->content, 'z', n);
    t->content[n] = '\0';
    bool ok = false;
    store_persist_realtime(check_st, &t, 1, &ok);
    ck_assert(ok);
    struct task *l = store_load_realtime(check_st, store_paths(check_st)->realtime, "BIG-1.json");
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(strlen(l->content), n);
    task_free(l);
    task_free(t);
}
END_TEST

/* Recovery without a descriptor to spare (EMFILE everywhere) hands over
 * nothing and changes nothing, says it is undone, and the next call does
 * it all, each task once. It used to skip them until the next start. */
START_TEST(test_recover_short_of_descriptors)
{
    struct task *q = check_rt_task("RQ-1");
    bool ok = false;
    store_persist_realtime(check_st, &q, 1, &ok);
    ck_assert(ok);
    struct task *a = check_claimed("RA-1");
    struct rlimit saved, none;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    none = (struct rlimit){0, saved.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
    int requeued = 0;
    int n = store_recover(check_st, "BOT-1", check_requeue, &requeued);
    bool undone = store_recover_incomplete(check_st);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(requeued, 0);
    ck_assert(undone);
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 1);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 1);
    ck_assert_int_eq(store_recover(check_st, "BOT-1", check_requeue, &requeued), 2);
    ck_assert_int_eq(requeued, 2);
    ck_assert(!store_recover_incomplete(check_st));
    ck_assert_int_eq(check_count(store_paths(check_st)->active, ""), 0);
    ck_assert_int_eq(check_count(store_paths(check_st)->realtime, ""), 2);
    task_free(a);
    task_free(q);
}
END_TEST

static Suite *check_store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, check_setup, check_teardown);
    tcase_add_test(tc, test_persist_and_load);
    tcase_add_test(tc, test_active_and_realtime_made_on_use);
    tcase_add_test(tc, test_recover_short_of_descriptors);
    tcase_add_test(tc, test_finish_once);
    tcase_add_test(tc, test_crash_while_writing_response);
    tcase_add_test(tc, test_commit_batch);
    tcase_add_test(tc, test_crash_before_commit);
    tcase_add_test(tc, test_crash_during_commit);
    tcase_add_test(tc, test_persist_batch_and_cut_file);
    tcase_add_test(tc, test_persist_with_named_temp_files);
    tcase_add_test(tc, test_persist_replaces_stale_file);
    tcase_add_test(tc, test_crash_before_link);
    tcase_add_test(tc, test_crash_after_link);
    tcase_add_test(tc, test_crash_after_archive);
    tcase_add_test(tc, test_crash_while_running);
    tcase_add_test(tc, test_unclaim_keeps_newer_file);
    tcase_add_test(tc, test_pending_is_per_bot);
    tcase_add_test(tc, test_pending_folder_recreated);
    tcase_add_test(tc, test_made_on_first_answer);
    tcase_add_test(tc, test_temp_name_symlink_not_followed);
    tcase_add_test(tc, test_symlinked_folder_refused);
    tcase_add_test(tc, test_folders_made_again);
    tcase_add_test(tc, test_poison_after_three_deaths);
    tcase_add_test(tc, test_stale_death_marker_swept);
    tcase_add_test(tc, test_large_task_loads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_store_suite());
}
