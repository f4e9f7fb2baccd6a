/*
 * check_answers: the index of answered tasks by id on a real folder. An
 * entry names the newest response of its id; a look-up reads one link; the
 * index is rebuilt from the responses folder when it is missing or removed
 * (newest answer per id, other bots' and non-response files ignored, FIFOs
 * and links never opened), and recovery indexes a response that was linked
 * but not indexed when its worker died. Crash leftovers (a temp link, a
 * half-built folder) are staged by hand. A bot without answers gets no
 * index until its first record.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "worker/answers.h"
#include "worker/response.h"

#include "tests/check_support.h"

static char check_dir[256];   /* the responses folder */
static char check_index[300]; /* its .index/BOT-1 */
static const char *check_bot = "BOT-1";

/* A fresh responses folder for each test. */
static void check_setup(void)
{
    snprintf(check_dir, sizeof check_dir, "/tmp/check_answers.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(check_dir));
    snprintf(check_index, sizeof check_index, "%s/.index/%s", check_dir, check_bot);
}

/* Remove it. */
static void check_teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", check_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Write a response of BOT for task ID (OUTPUT, SUCCESS) as NAME, with its
 * modification time AGE seconds in the past. */
static void check_response(const char *name, const char *bot, const char *id, const char *output,
                           bool success, int age)
{
    struct response r = {.bot_id = bot,
                         .task_id = id,
                         .to = "user",
                         .source = TASK_SOURCE_HTTP,
                         .success = success,
                         .duration_seconds = 2.5,
                         .output = output,
                         .output_len = strlen(output),
                         .error = success ? NULL : "boom",
                         .finished_wall_ns = util_wall_ns()};
    size_t len;
    char *text = response_render(&r, &len);
    char *path = xasprintf("%s/%s", check_dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    struct timespec ts[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
    free(path);
    free(text);
}

/* The name A gives for ID, or "" when none; the outcome in *OUTCOME. */
static const char *check_find(struct answers *a, const char *id, int *outcome)
{
    static char name[256];
    int r = answers_find(a, id, name, sizeof name);
    if (outcome)
        *outcome = r;
    return r < 0 ? "" : name;
}

/* Number of entries in the folder PATH (all but . and ..); -1 when missing. */
static int check_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

START_TEST(test_record_find_load)
{
    struct answers *a = answers_open(check_dir, check_bot);
    /* No answer of the bot: the index is not made at open... */
    ck_assert_int_eq(check_entries(check_index), -1);
    int outcome;
    ck_assert_str_eq(check_find(a, "T-1", &outcome), "");
    ck_assert_int_eq(outcome, -1);
    ck_assert_int_eq(check_entries(check_index), -1); /* ...nor by a look-up */
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-T-1-complete.md", check_bot, "T-1", "first",
                   true, 0);
    ck_assert_int_eq(
        answers_record(a, "T-1", "2026-01-01-0000-BOT-1-user-RESPONSE-T-1-complete.md"), 0);
    ck_assert_int_eq(answers_sync(a), 0);
    ck_assert_str_eq(check_find(a, "T-1", &outcome),
                     "2026-01-01-0000-BOT-1-user-RESPONSE-T-1-complete.md");
    ck_assert_int_eq(outcome, 1);
    /* The entry is a link whose text is the name: nothing else to read. */
    char *entry = xasprintf("%s/T-1", check_index);
    char target[256];
    ssize_t n = readlink(entry, target, sizeof target - 1);
    ck_assert_int_gt(n, 0);
    target[n] = '\0';
    ck_assert_str_eq(target, "2026-01-01-0000-BOT-1-user-RESPONSE-T-1-complete.md");
    free(entry);
    struct answers_entry e;
    ck_assert_int_eq(answers_load(a, "T-1", &e), 0);
    ck_assert_str_eq(e.name, "2026-01-01-0000-BOT-1-user-RESPONSE-T-1-complete.md");
    ck_assert(e.view.success);
    ck_assert_uint_eq(e.view.output.len, 5);
    ck_assert_int_eq(memcmp(e.view.output.p, "first", 5), 0);
    ck_assert_double_eq_tol(e.view.duration_seconds, 2.5, 1e-9);
    answers_entry_clear(&e);
    /* A second answer of the same id (two file tasks) is the newest. */
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-T-1-failed.md", check_bot, "T-1", "second",
                   false, 0);
    ck_assert_int_eq(answers_record(a, "T-1", "2026-01-01-0000-BOT-1-user-RESPONSE-T-1-failed.md"),
                     0);
    ck_assert_int_eq(answers_load(a, "T-1", &e), 0);
    ck_assert(!e.view.success);
    ck_assert_uint_eq(e.view.error.len, 4);
    answers_entry_clear(&e);
    ck_assert_int_eq(check_entries(check_index), 1); /* no temp link left */
    answers_free(a);
}
END_TEST

START_TEST(test_ids_not_indexed)
{
    struct answers *a = answers_open(check_dir, check_bot);
    /* Ids nobody can ask for are not indexed; none escapes the folder. */
    const char *ids[] = {"..", ".", "../x", "a/b", ".hidden", "", "x~", "sp ace"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        ck_assert_int_eq(answers_record(a, ids[i], "2026-x-RESPONSE-y-complete.md"), 0);
        ck_assert_str_eq(check_find(a, ids[i], NULL), "");
    }
    ck_assert_int_eq(check_entries(check_index), -1); /* nothing made */
    /* A link someone else made that names a path is not trusted. */
    ck_assert_int_eq(util_mkdirs(check_index), 0);
    char *entry = xasprintf("%s/EVIL", check_index);
    ck_assert_int_eq(symlink("../../../etc/passwd", entry), 0);
    free(entry);
    answers_free(a);
    a = answers_open(check_dir, check_bot);
    ck_assert_str_eq(check_find(a, "EVIL", NULL), "");
    struct answers_entry e;
    ck_assert_int_eq(answers_load(a, "EVIL", &e), -ENOENT);
    answers_free(a);
}
END_TEST

START_TEST(test_load_missing_or_cut)
{
    struct answers *a = answers_open(check_dir, check_bot);
    struct answers_entry e;
    ck_assert_int_eq(answers_load(a, "GONE", &e), -ENOENT);
    /* The entry's file was removed by hand. */
    ck_assert_int_eq(answers_record(a, "GONE", "2026-01-01-0000-BOT-1-u-RESPONSE-GONE-complete.md"),
                     0);
    ck_assert_int_eq(answers_load(a, "GONE", &e), -ENOENT);
    /* A file that is not a whole response. */
    const char *name = "2026-01-01-0000-BOT-1-u-RESPONSE-CUT-complete.md";
    char *path = xasprintf("%s/%s", check_dir, name);
    FILE *f = fopen(path, "w");
    fputs("# RESPONSE: CUT - Complete\n\n**From:** BOT-1\n", f);
    fclose(f);
    free(path);
    ck_assert_int_eq(answers_record(a, "CUT", name), 0);
    ck_assert_int_eq(answers_load(a, "CUT", &e), -EBADMSG);
    ck_assert_ptr_null(e.text);
    answers_free(a);
}
END_TEST

/* Fill the responses folder with what a rebuild must sort out. */
static void check_rebuild_fixture(void)
{
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md", check_bot, "A", "old", true,
                   100);
    check_response("2026-01-01-0001-BOT-1-user-RESPONSE-A-failed.md", check_bot, "A", "new", false,
                   10);
    /* Same instant: the -2 name is the later one. */
    check_response("2026-01-01-0000-BOT-1-zed-RESPONSE-B-complete.md", check_bot, "B", "b1", true,
                   50);
    check_response("2026-01-01-0000-BOT-1-zed-RESPONSE-B-complete-2.md", check_bot, "B", "b2", true,
                   50);
    /* Another bot's answer, and one whose bot id starts like ours. */
    check_response("2026-01-01-0000-BOT-2-user-RESPONSE-C-complete.md", "BOT-2", "C", "c", true, 0);
    check_response("2026-01-01-0000-BOT-1X-user-RESPONSE-D-complete.md", "BOT-1X", "D", "d", true,
                   0);
    /* A file named like ours whose header says another bot wrote it. */
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-E-complete.md", "BOT-9", "E", "e", true, 0);
    /* Not responses, a FIFO and a symlink named like ours (never opened). */
    char *p = xasprintf("%s/notes.md", check_dir);
    FILE *f = fopen(p, "w");
    fputs("# RESPONSE: N - Complete\n", f);
    fclose(f);
    free(p);
    p = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-F-complete.md", check_dir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    free(p);
    p = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-G-complete.md", check_dir);
    char *target = xasprintf("%s/2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md", check_dir);
    ck_assert_int_eq(symlink(target, p), 0);
    free(target);
    free(p);
}

/* Assert what the index built from check_rebuild_fixture says. */
static void check_rebuilt(struct answers *a)
{
    int outcome;
    ck_assert_str_eq(check_find(a, "A", &outcome),
                     "2026-01-01-0001-BOT-1-user-RESPONSE-A-failed.md");
    ck_assert_int_eq(outcome, 0);
    ck_assert_str_eq(check_find(a, "B", NULL),
                     "2026-01-01-0000-BOT-1-zed-RESPONSE-B-complete-2.md");
    const char *none[] = {"C", "D", "E", "F", "G", "N"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        ck_assert_str_eq(check_find(a, none[i], NULL), "");
    ck_assert_int_eq(check_entries(check_index), 2);
}

START_TEST(test_rebuild_when_missing)
{
    check_rebuild_fixture();
    /* A build a crash left half-done is thrown away first. */
    char *build = xasprintf("%s~build", check_index);
    ck_assert_int_eq(util_mkdirs(build), 0);
    char *stale = xasprintf("%s/Z", build);
    ck_assert_int_eq(symlink("2026-01-01-0000-BOT-1-user-RESPONSE-Z-complete.md", stale), 0);
    free(stale);
    struct answers *a = answers_open(check_dir, check_bot);
    check_rebuilt(a);
    ck_assert_str_eq(check_find(a, "Z", NULL), "");
    ck_assert_int_eq(check_entries(build), -1);
    free(build);
    answers_free(a);
    /* Opened again, the index is used as it is (no rebuild: a record the
     * folder does not show stays). */
    a = answers_open(check_dir, check_bot);
    ck_assert_int_eq(answers_record(a, "H", "2026-01-01-0000-BOT-1-u-RESPONSE-H-complete.md"), 0);
    answers_free(a);
    a = answers_open(check_dir, check_bot);
    ck_assert_str_eq(check_find(a, "H", NULL), "2026-01-01-0000-BOT-1-u-RESPONSE-H-complete.md");
    answers_free(a);
}
END_TEST

START_TEST(test_rebuild_when_removed)
{
    ck_assert_int_eq(util_mkdirs(check_index), 0); /* the index of a bot that answered */
    struct answers *a = answers_open(check_dir, check_bot);
    check_rebuild_fixture();
    ck_assert_str_eq(check_find(a, "A", NULL), ""); /* not recorded: no scan */
    /* The folder removed under a running worker: the next look-up finds
     * that out and rebuilds it. */
    char *cmd = xasprintf("rm -rf '%s/.index'", check_dir);
    ck_assert_int_eq(system(cmd), 0);
    check_rebuilt(a);
    /* And removed again before a record: the record makes it again. */
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    check_response("2026-01-01-0002-BOT-1-user-RESPONSE-K-complete.md", check_bot, "K", "k", true,
                   0);
    ck_assert_int_eq(answers_record(a, "K", "2026-01-01-0002-BOT-1-user-RESPONSE-K-complete.md"),
                     0);
    ck_assert_str_eq(check_find(a, "K", NULL), "2026-01-01-0002-BOT-1-user-RESPONSE-K-complete.md");
    ck_assert_str_eq(check_find(a, "A", NULL), "2026-01-01-0001-BOT-1-user-RESPONSE-A-failed.md");
    answers_free(a);
}
END_TEST

START_TEST(test_stale_temp_link)
{
    ck_assert_int_eq(util_mkdirs(check_index), 0);
    struct answers *a = answers_open(check_dir, check_bot);
    /* A crash between the temp link and its rename left "T~". */
    char *tmp = xasprintf("%s/T~", check_index);
    ck_assert_int_eq(symlink("old-name.md", tmp), 0);
    ck_assert_int_eq(answers_record(a, "T", "2026-01-01-0000-BOT-1-u-RESPONSE-T-complete.md"), 0);
    ck_assert_str_eq(check_find(a, "T", NULL), "2026-01-01-0000-BOT-1-u-RESPONSE-T-complete.md");
    ck_assert_int_eq(access(tmp, F_OK), -1);
    free(tmp);
    answers_free(a);
}
END_TEST

/* Make PENDING (in a pending folder) a hard link of response NAME, as the
 * store leaves it between the link and the removal of the pending name. */
static char *check_pending(const char *name)
{
    char *dir = xasprintf("%s/.pending/%s", check_dir, check_bot);
    ck_assert_int_eq(util_mkdirs(dir), 0);
    char *pending = xasprintf("%s/task.json.pending", dir);
    char *path = xasprintf("%s/%s", check_dir, name);
    unlink(pending);
    ck_assert_int_eq(link(path, pending), 0);
    free(path);
    free(dir);
    return pending;
}

START_TEST(test_recover_linked_not_indexed)
{
    struct answers *a = answers_open(check_dir, check_bot);
    /* Killed between the link and the index entry. */
    const char *name = "2026-01-01-0000-BOT-1-user-RESPONSE-R-complete-2.md";
    check_response(name, check_bot, "R", "r", true, 0);
    char *pending = check_pending(name);
    ck_assert_str_eq(check_find(a, "R", NULL), "");
    ck_assert_int_eq(answers_recover(a, pending), 0);
    ck_assert_str_eq(check_find(a, "R", NULL), name);
    /* Again (killed after the index, before the pending name went): no
     * change. */
    ck_assert_int_eq(answers_recover(a, pending), 0);
    ck_assert_str_eq(check_find(a, "R", NULL), name);
    free(pending);
    /* The index names an older answer of the id: the pending one wins. */
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-S-complete.md", check_bot, "S", "s1", true,
                   60);
    ck_assert_int_eq(answers_record(a, "S", "2026-01-01-0000-BOT-1-user-RESPONSE-S-complete.md"),
                     0);
    check_response("2026-01-01-0001-BOT-1-user-RESPONSE-S-complete.md", check_bot, "S", "s2", true,
                   0);
    pending = check_pending("2026-01-01-0001-BOT-1-user-RESPONSE-S-complete.md");
    ck_assert_int_eq(answers_recover(a, pending), 0);
    ck_assert_str_eq(check_find(a, "S", NULL), "2026-01-01-0001-BOT-1-user-RESPONSE-S-complete.md");
    free(pending);
    /* A pending file of an older answer does not replace a newer entry. */
    pending = check_pending("2026-01-01-0000-BOT-1-user-RESPONSE-S-complete.md");
    ck_assert_int_eq(answers_recover(a, pending), 0);
    ck_assert_str_eq(check_find(a, "S", NULL), "2026-01-01-0001-BOT-1-user-RESPONSE-S-complete.md");
    free(pending);
    answers_free(a);
}
END_TEST

START_TEST(test_recover_not_a_response)
{
    struct answers *a = answers_open(check_dir, check_bot);
    char *dir = xasprintf("%s/.pending/%s", check_dir, check_bot);
    ck_assert_int_eq(util_mkdirs(dir), 0);
    char *pending = xasprintf("%s/x.md.pending", dir);
    FILE *f = fopen(pending, "w");
    fputs("not a response\n", f);
    fclose(f);
    ck_assert_int_eq(answers_recover(a, pending), 0);
    ck_assert_int_eq(check_entries(check_index), -1); /* nothing to index: not made */
    unlink(pending);
    ck_assert_int_eq(answers_recover(a, pending), 0); /* gone: nothing to do */
    free(pending);
    free(dir);
    answers_free(a);
}
END_TEST

START_TEST(test_index_cannot_be_made)
{
    /* Something that is not a folder where the index goes (as a read-only
     * responses folder would, even for root): look-ups find nothing, a
     * record fails (the store then writes the answer again), and once the
     * obstacle is gone the next record makes the index. */
    char *obstacle = xasprintf("%s/.index", check_dir);
    FILE *f = fopen(obstacle, "w");
    fclose(f);
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md", check_bot, "A", "a", true,
                   0);
    struct answers *a = answers_open(check_dir, check_bot);
    ck_assert_str_eq(check_find(a, "A", NULL), "");
    ck_assert_int_lt(answers_record(a, "A", "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md"),
                     0);
    ck_assert_int_eq(answers_sync(a), 0);
    ck_assert_int_eq(unlink(obstacle), 0);
    free(obstacle);
    ck_assert_str_eq(check_find(a, "A", NULL), ""); /* look-ups do not retry the scan */
    ck_assert_int_eq(answers_record(a, "A", "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md"),
                     0);
    ck_assert_str_eq(check_find(a, "A", NULL), "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md");
    answers_free(a);
}
END_TEST

/* The index of a bot without answers is made by its first record, not at
 * open: other bots' answers, other files and a missing responses folder
 * make none; more names than a start should read again make it anyway. */
START_TEST(test_made_by_the_first_record)
{
    char *cmd = xasprintf("rm -rf '%s'", check_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    struct answers *a = answers_open(check_dir, check_bot); /* no responses folder */
    ck_assert_str_eq(check_find(a, "A", NULL), "");
    answers_free(a);
    ck_assert_int_eq(util_mkdirs(check_dir), 0);
    check_response("2026-01-01-0000-BOT-2-user-RESPONSE-C-complete.md", "BOT-2", "C", "c", true, 0);
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-E-complete.md", "BOT-9", "E", "e", true, 0);
    a = answers_open(check_dir, check_bot);
    ck_assert_str_eq(check_find(a, "C", NULL), "");
    ck_assert_str_eq(check_find(a, "E", NULL), "");
    struct answers_entry e;
    ck_assert_int_eq(answers_load(a, "C", &e), -ENOENT);
    ck_assert_int_eq(answers_sync(a), 0);
    ck_assert_int_eq(check_entries(check_index), -1);
    /* The first record makes it (a rebuild: built aside, synced, renamed),
     * and it holds what the folder says besides. */
    check_response("2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md", check_bot, "A", "a", true,
                   0);
    ck_assert_int_eq(answers_record(a, "A", "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md"),
                     0);
    ck_assert_int_eq(answers_sync(a), 0);
    ck_assert_int_eq(check_entries(check_index), 1);
    ck_assert_str_eq(check_find(a, "A", NULL), "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md");
    answers_free(a);
    a = answers_open(check_dir, check_bot);
    ck_assert_str_eq(check_find(a, "A", NULL), "2026-01-01-0000-BOT-1-user-RESPONSE-A-complete.md");
    answers_free(a);
    /* A big folder without answers of another bot: made at its open. */
    for (int i = 0; i < 1001; i++) {
        char *p = xasprintf("%s/other-%d.md", check_dir, i);
        FILE *f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
        free(p);
    }
    char *other = xasprintf("%s/.index/BOT-3", check_dir);
    a = answers_open(check_dir, "BOT-3");
    ck_assert_int_eq(check_entries(other), 0);
    answers_free(a);
    free(other);
}
END_TEST

/* All answers tests in one suite. */
static Suite *check_answers_suite(void)
{
    Suite *s = suite_create("answers");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, check_setup, check_teardown);
    tcase_add_test(tc, test_record_find_load);
    tcase_add_test(tc, test_ids_not_indexed);
    tcase_add_test(tc, test_load_missing_or_cut);
    tcase_add_test(tc, test_rebuild_when_missing);
    tcase_add_test(tc, test_rebuild_when_removed);
    tcase_add_test(tc, test_stale_temp_link);
    tcase_add_test(tc, test_recover_linked_not_indexed);
    tcase_add_test(tc, test_recover_not_a_response);
    tcase_add_test(tc, test_index_cannot_be_made);
    tcase_add_test(tc, test_made_by_the_first_record);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(check_answers_suite());
}
