/*
 * check_merge: the merge's one list of listeners (supervisor/merge.c): each
 * listener gets only the kinds of news it asked for, in the order they
 * listen, a bot's state before its bot_state event; events also after a
 * repeat is dropped only once; a listener may stop listening (itself or
 * another) while it is told. Each bot's cursor survives a restart: from
 * the cursors kept at exit plus the lines after them, from every line when
 * those are stale (the log moved on) or gone, and after a kill -9 (no new
 * cursors kept) from the old ones plus the lines since.
 */
#include "supervisor/merge.h"

#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#include "tests/check_support.h"

/* What the listeners heard, one line per note: "<tag>:<kind>:<bot>:<detail>". */
static char heard[4096];

struct ear {
    const char *tag;
    struct merge *m;
    int *stop; /* when set: unlisten this id at the first note */
};

static void listen_cb(const struct merge_note *n, void *arg)
{
    struct ear *e = arg;
    const char *kind = n->what == MERGE_NOTE_EVENT    ? "event"
                       : n->what == MERGE_NOTE_STATUS ? "status"
                                                      : "state";
    const char *detail = n->what == MERGE_NOTE_EVENT
                             ? json_string_value(json_object_get(n->event, "type"))
                         : n->what == MERGE_NOTE_STATE ? n->state
                                                       : "-";
    size_t len = strlen(heard);
    snprintf(heard + len, sizeof heard - len, "%s:%s:%s:%s\n", e->tag, kind, n->bot_id, detail);
    if (e->stop && *e->stop) {
        merge_unlisten(e->m, *e->stop);
        *e->stop = 0;
    }
}

struct fixture {
    char dir[64];
    char *path;
    struct event_base *base;
    struct merge *m;
};

static void fixture_open(struct fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/check-merge-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    f->path = xasprintf("%s/events.jsonl", f->dir);
    f->base = event_base_new();
    f->m = merge_new(f->base, f->path);
    heard[0] = '\0';
}

static void fixture_close(struct fixture *f)
{
    merge_free(f->m);
    event_base_free(f->base);
    char *more[] = {xasprintf("%s.cursors", f->path), xasprintf("%s.1", f->path)};
    for (size_t i = 0; i < 2; i++) {
        unlink(more[i]);
        free(more[i]);
    }
    unlink(f->path);
    free(f->path);
    rmdir(f->dir);
}

/* Merge event SEQ of BOT. */
static void merge_seq(struct merge *m, const char *bot, int seq)
{
    char *e = xasprintf("{\"type\":\"task_received\",\"seq\":%d,\"task_id\":\"T\"}", seq);
    merge_remote_event(m, bot, e, strlen(e));
    free(e);
}

/* Put TEXT as the kept cursors, then restart F's merge (the old one gone). */
static void restart_with(struct fixture *f, const char *cursors, const char *text)
{
    merge_free(f->m);
    FILE *w = fopen(cursors, "w");
    ck_assert_ptr_nonnull(w);
    fputs(text, w);
    fclose(w);
    f->m = merge_new(f->base, f->path);
}

START_TEST(test_cursors_across_restarts)
{
    struct fixture f;
    fixture_open(&f);
    merge_seq(f.m, "BOT-A", 5);
    merge_seq(f.m, "BOT-B", 9);
    merge_free(f.m); /* a clean exit keeps the cursors */
    char *cursors = xasprintf("%s.cursors", f.path);
    ck_assert_int_eq(access(cursors, F_OK), 0);
    f.m = merge_new(f.base, f.path);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-A"), 5);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-B"), 9);
    merge_seq(f.m, "BOT-A", 5); /* a repeat */
    merge_seq(f.m, "BOT-A", 6);
    merge_seq(f.m, "BOT-C", 1);
    /* A kill -9 now: no new cursors; the old ones and the lines since. */
    char *old = util_read_file(cursors, 1 << 20, NULL);
    ck_assert_ptr_nonnull(old);
    restart_with(&f, cursors, old);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-A"), 6);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-B"), 9);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-C"), 1);
    /* Kept cursors that do not match the log (it was replaced): every line. */
    restart_with(&f, cursors, "{\"ino\":1,\"size\":10,\"last\":3,\"bots\":{\"BOT-A\":99}}");
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-A"), 6);
    /* Garbage there: every line as well. */
    restart_with(&f, cursors, "{\"ino\":");
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-B"), 9);
    /* A FIFO there holds nothing up (an open for reading would wait for a
     * writer): every line. */
    merge_free(f.m);
    ck_assert_int_eq(unlink(cursors), 0);
    ck_assert_int_eq(mkfifo(cursors, 0644), 0);
    f.m = merge_new(f.base, f.path);
    ck_assert_uint_eq(merge_last_seq(f.m, "BOT-A"), 6);
    merge_free(f.m);
    unlink(cursors);
    f.m = merge_new(f.base, f.path);
    free(old);
    free(cursors);
    fixture_close(&f);
}
END_TEST

START_TEST(test_filters_and_order)
{
    struct fixture f;
    fixture_open(&f);
    struct ear all = {"all", f.m, NULL}, ev = {"ev", f.m, NULL}, st = {"st", f.m, NULL};
    merge_listen(f.m, MERGE_NOTE_ALL, listen_cb, &all);
    merge_listen(f.m, MERGE_NOTE_EVENT, listen_cb, &ev);
    merge_listen(f.m, MERGE_NOTE_STATE | MERGE_NOTE_STATUS, listen_cb, &st);
    merge_bot_state(f.m, "BOT-A", "running", 42, "", 0);
    const char *e1 = "{\"type\":\"task_completed\",\"seq\":1,\"task_id\":\"t1\"}";
    merge_remote_event(f.m, "BOT-A", e1, strlen(e1));
    merge_remote_event(f.m, "BOT-A", e1, strlen(e1)); /* a repeat: nobody hears it */
    const char *out = "{\"type\":\"task_output\",\"task_id\":\"t2\",\"content\":\"x\"}";
    merge_remote_event(f.m, "BOT-A", out, strlen(out));
    const char *s1 = "{\"queue\":{\"realtime\":1,\"file\":0}}";
    merge_remote_status(f.m, "BOT-B", s1, strlen(s1));
    ck_assert_str_eq(heard, "all:state:BOT-A:running\n"
                            "st:state:BOT-A:running\n"
                            "all:event:BOT-A:bot_state\n"
                            "ev:event:BOT-A:bot_state\n"
                            "all:event:BOT-A:task_completed\n"
                            "ev:event:BOT-A:task_completed\n"
                            "all:event:BOT-A:task_output\n"
                            "ev:event:BOT-A:task_output\n"
                            "all:status:BOT-B:-\n"
                            "st:status:BOT-B:-\n");
    fixture_close(&f);
}
END_TEST

START_TEST(test_unlisten_while_told)
{
    struct fixture f;
    fixture_open(&f);
    int victim = 0, self = 0;
    struct ear a = {"a", f.m, &victim}, b = {"b", f.m, NULL}, c = {"c", f.m, &self};
    merge_listen(f.m, MERGE_NOTE_EVENT, listen_cb, &a);
    victim = merge_listen(f.m, MERGE_NOTE_EVENT, listen_cb, &b);
    self = merge_listen(f.m, MERGE_NOTE_EVENT, listen_cb, &c);
    const char *e1 = "{\"type\":\"task_started\",\"seq\":1}";
    const char *e2 = "{\"type\":\"task_completed\",\"seq\":2}";
    merge_remote_event(f.m, "BOT-A", e1, strlen(e1));
    merge_remote_event(f.m, "BOT-A", e2, strlen(e2));
    /* a removed b before it was told; c removed itself after its first. */
    ck_assert_str_eq(heard, "a:event:BOT-A:task_started\n"
                            "c:event:BOT-A:task_started\n"
                            "a:event:BOT-A:task_completed\n");
    /* Unknown and repeated ids are harmless. */
    merge_unlisten(f.m, 999);
    merge_unlisten(f.m, victim);
    fixture_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("merge");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_filters_and_order);
    tcase_add_test(tc, test_unlisten_while_told);
    tcase_add_test(tc, test_cursors_across_restarts);
    suite_add_tcase(s, tc);
    return check_run(s);
}
