/*
 * engine: owns the bot's queues, the running task and the bookkeeping that
 * /status and GET /api/task/<id> read. A task flows one way: submit →
 * (batched durable write) → realtime queue → claim → adapter → response
 * written → (batched durable commit: link, index, archive) → reported and
 * freed. File tasks join at the claim. A finished task is not kept in
 * memory: the index of answers (answers.h) knows its id, and its output is
 * read back from its response file.
 *
 * Tasks run one at a time, but their answers are group-committed: a finished
 * task's response is written (not yet synced) and the next task starts at
 * once; the written responses are made durable together by one sync, then
 * linked and archived, those names made durable by a second sync (of the
 * folders), and only then reported (WebSocket, GET, counters): "done"
 * survives a power cut. The commit comes on the next loop pass when the bot
 * has nothing else to start, else at most ENGINE_ANSWER_MS later or at
 * ENGINE_ANSWER_MAX answers. Every sync runs on the syncer's thread, never
 * on the loop; while one runs, new submissions and answers gather for the
 * next.
 *
 * A transient failure (out of descriptors, memory, disk) never fails a
 * task: the task is held, first in line, and tried again by the retry timer.
 */
#include "worker/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/agent.h"
#include "worker/answers.h"
#include "worker/filequeue.h"
#include "worker/gitfiles.h"
#include "worker/queue.h"
#include "worker/response.h"
#include "worker/stall.h"
#include "worker/syncer.h"

#define ENGINE_RETRY_MS 1000
#define ENGINE_ANSWER_MS 5   /* longest a written answer waits for company */
#define ENGINE_ANSWER_MAX 64 /* answers per commit */
/* A recovery a passing shortage left undone is tried again after 100 ms,
 * then twice as long each time, at most 1.6 s apart: soon after the
 * shortage, without spinning through it. */
#define ENGINE_RECOVER_MS 100
#define ENGINE_RECOVER_MAX_MS 1600

/* A finished task whose response is written but not yet durable. */
struct engine_answer {
    struct task *task;
    char *base;      /* the response's name without suffix */
    int fd;          /* its written file; -1: the commit failed, write it again */
    bool committing; /* in the commit that runs */
};

/* A batch of submissions being made durable (the first N of pending). */
struct engine_persist {
    size_t n;
    struct task **tasks;
    int *fds;
    bool *ok;
};

/* A batch of answers being committed (the answers marked committing):
 * written, then (one sync) named and archived, then (the next sync, which
 * also makes the next batch's data durable) reported. */
struct engine_commit {
    struct engine *engine;
    size_t n;
    struct task **tasks;
    char **bases;
    int *fds;
    int *rc;
    struct engine_commit *names; /* the batch whose names this sync makes durable */
};

/* A cancel waiting for its task's answer to be durable (engine_cancel). */
struct engine_cancel {
    const struct task *task; /* compared, never read: gone at a stop */
    engine_cancel_cb cb;
    void *arg;
};

/* A submitted realtime task waiting for its durable write. */
struct engine_pending {
    struct task *task;
    engine_accept_cb cb;
    void *arg;
};

struct engine {
    struct event_base *base;
    struct engine_config cfg;
    struct store *store;
    struct activity *activity;
    struct engine_events ev;
    struct filequeue *files;
    struct queue *realtime; /* queued realtime tasks, in run order */
    struct engine_pending *pending;
    size_t n_pending, cap_pending;
    struct task *current;
    struct adapter_job *job;
    bool result_unwritten;         /* current finished but its response is not on disk */
    struct engine_answer *answers; /* finished, waiting for the commit */
    size_t n_answers, cap_answers;
    bool stopping, stopped, cooling;
    bool paused;       /* the PAUSE file exists: read before each task start, kept
                          fresh for /status by inotify on the controls folder */
    bool paused_known; /* PAUSED was read once (later changes are events) */
    struct events *events;
    unsigned long processed, failed;
    struct event *commit_ev;           /* group commit of pending submissions */
    struct event *kick_ev;             /* deferred look for work */
    struct event *cooldown_ev;         /* end of the pause after a task */
    struct event *answer_ev;           /* group commit of written answers */
    struct event *retry_ev;            /* retry of a response write that failed */
    struct event *grace_ev;            /* end of the stop grace */
    struct event *names_ev;            /* retry of a failed sync of a commit's names */
    struct syncer *syncer;             /* runs every sync off the loop */
    struct engine_persist *persisting; /* submissions whose sync runs */
    struct engine_commit *committing;  /* the sync of answers that runs */
    struct engine_commit *published;   /* named and archived, waiting for a sync */
    struct queue *held;                /* claimed or next tasks that wait for a resource */
    uint64_t held_seq;
    bool waiting;                  /* a held task waits for the retry timer */
    struct engine_cancel *cancels; /* cancels waiting for their answer */
    size_t n_cancels, cap_cancels;
    struct gitfiles *git; /* the adapter's folder is a git checkout: files modified */
    struct stall *stall;  /* stall_after: silent running tasks */
    /* Agent CLIs (SPEC §12) */
    char *session;         /* session_continue: the session the next task resumes */
    char *fresh_note;      /* the current task runs again in a new session: why */
    char *hold_reason;     /* the bot paused itself (usage limit, budget); NULL: no */
    int64_t hold_until;    /* ... until then (Unix seconds); 0: until resumed */
    bool hold_budget;      /* ... for its budget */
    struct event *hold_ev; /* looks whether hold_until has come */
    int64_t limit_backoff; /* seconds of the last backoff of a limit without a time */
    struct budget *budget; /* NULL: none */
    char *pause_note;      /* the PAUSE file's reason, or NULL */

    /* Crash recovery a passing shortage left undone (store_recover) */
    bool recovering;          /* store_recover left something undone: nothing starts */
    int recover_ms;           /* the wait before its next try */
    struct event *recover_ev; /* ... which this timer makes */
};

static void engine_run_next(struct engine *e);
static void engine_commit_answers(struct engine *e);
static void engine_cancelled(struct engine *e, struct task *t);
static void engine_cancel_answer(struct engine *e, struct task *t);
static void engine_cancel_flush(struct engine *e);
static bool engine_answered_cancelled(struct engine *e, const char *id);
static bool engine_agent_done(struct engine *e, struct adapter_result *res);
static void engine_tool_cb(const char *name, const char *summary, void *arg);
static void engine_hold_set(struct engine *e, const char *reason, int64_t until, bool budget);
static void engine_hold_clear(struct engine *e, const char *why);
static void engine_budget_start(struct engine *e);
static void engine_recover_cb(evutil_socket_t fd, short what, void *arg);

/* Log one activity event about TASK that is not a task event of §8 (those
 * are told through events.h, whose activity sink writes them). */
static void engine_activity(struct engine *e, const char *type, const struct task *t,
                            const char *result, double dur, const char *error)
{
    struct activity_event ev = {.event_type = type,
                                .result = result,
                                .duration_seconds = dur,
                                .error = error,
                                .task_id = t ? t->id : NULL,
                                .source = t ? task_source_name(t->source) : NULL};
    activity_log(e->activity, &ev, NULL);
}

/* Log a warning about TASK, also as a `warning` activity event. */
static void engine_warn(struct engine *e, const struct task *t, const char *what)
{
    /* The log's sink makes it a warning event (activity_log_warnings). */
    activity_set_task(e->activity, t ? t->id : NULL, t ? task_source_name(t->source) : NULL);
    log_warn("%s%s%s", t ? "task " : "", t ? t->id : "", what);
    activity_set_task(e->activity, NULL, NULL);
}

/* Schedule a look for work on the next loop pass (never re-entrantly). */
void engine_kick(struct engine *e)
{
    static const struct timeval zero = {0, 0};
    if (!e->stopped)
        evtimer_add(e->kick_ev, &zero);
}

const char *engine_task_state(struct engine *e, const char *id)
{
    const struct task *t = engine_find(e, id);
    if (t)
        return task_state_name(t->cancelled ? TASK_CANCELLED : t->state);
    char name[256];
    int answered = answers_find(store_answers(e->store), id, name, sizeof name);
    if (answered < 0)
        return NULL;
    return task_state_name(answered                           ? TASK_DONE
                           : engine_answered_cancelled(e, id) ? TASK_CANCELLED
                                                              : TASK_FAILED);
}

/* Match a task by id (queue_find_if predicate). */
static bool engine_match_id(const void *task, const void *id)
{
    return strcmp(((const struct task *)task)->id, id) == 0;
}

enum engine_submit_status engine_submit(struct engine *e, struct task *t, engine_accept_cb cb,
                                        void *arg)
{
    static const struct timeval zero = {0, 0};
    if (e->stopping)
        return ENGINE_STOPPING;
    /* A task of the last run not yet read back (in _active/ or _realtime/)
     * may carry this id: taking it now would give the id a second task. */
    if (e->recovering)
        return ENGINE_RECOVERING;
    /* An id is an idempotency key: queued (from any source), running or
     * answered, before a restart too, it is not accepted again. */
    if (engine_task_state(e, t->id))
        return ENGINE_DUPLICATE;
    if (queue_len(e->realtime) + e->n_pending >= e->cfg.queue_max)
        return ENGINE_FULL;
    if (e->n_pending == e->cap_pending) {
        e->cap_pending = e->cap_pending ? e->cap_pending * 2 : 16;
        e->pending = xrealloc(e->pending, e->cap_pending * sizeof *e->pending);
    }
    t->state = TASK_ACCEPTING;
    t->order = util_wall_ns();
    e->pending[e->n_pending++] = (struct engine_pending){t, cb, arg};
    /* A zero timer runs after the I/O of the next loop pass, so every
     * submission that arrives meanwhile shares the batch's fsyncs. */
    if (!evtimer_pending(e->commit_ev, NULL))
        evtimer_add(e->commit_ev, &zero);
    return ENGINE_ACCEPTED;
}

/* On the sync thread: make a batch of submissions durable. */
static int engine_persist_job(void *job)
{
    struct engine_persist *p = job;
    return store_realtime_sync(p->fds, p->n);
}

/* Free a persist batch. */
static void engine_persist_free(struct engine_persist *p)
{
    free(p->tasks);
    free(p->fds);
    free(p->ok);
    free(p);
}

/* On the loop: the batch's sync is over; queue and acknowledge each task
 * that made it (the others hear 500: they were never accepted). */
static void engine_persisted_cb(int synced, void *arg)
{
    static const struct timeval zero = {0, 0};
    struct engine *e = arg;
    struct engine_persist *p = e->persisting;
    if (synced < 0)
        log_error("cannot make %zu tasks durable: %s", p->n, strerror(-synced));
    store_realtime_settle(e->store, p->tasks, p->n, p->fds, synced, p->ok);
    struct engine_pending *batch = xmalloc(p->n * sizeof *batch);
    memcpy(batch, e->pending, p->n * sizeof *batch);
    e->n_pending -= p->n;
    memmove(e->pending, e->pending + p->n, e->n_pending * sizeof *e->pending);
    e->persisting = NULL;
    for (size_t i = 0; i < p->n; i++) {
        struct task *t = p->tasks[i];
        if (!p->ok[i]) {
            batch[i].cb(NULL, 0, batch[i].arg);
            task_free(t);
            continue;
        }
        t->state = TASK_QUEUED;
        queue_push(e->realtime, t->id, t->rank, t->order, t);
        size_t position = queue_position(e->realtime, t->id);
        events_task_received(e->events, t, position);
        batch[i].cb(t, position, batch[i].arg);
    }
    free(batch);
    engine_persist_free(p);
    if (e->n_pending)
        evtimer_add(e->commit_ev, &zero);
    engine_kick(e);
}

/* Group commit: write and name the batch on the loop, sync it on the
 * thread; submissions that arrive meanwhile wait for the next batch. */
static void engine_commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    if (e->persisting || !e->n_pending)
        return; /* its completion starts the next batch */
    struct engine_persist *p = xcalloc(1, sizeof *p);
    p->n = e->n_pending;
    p->tasks = xmalloc(p->n * sizeof *p->tasks);
    p->fds = xmalloc(p->n * sizeof *p->fds);
    p->ok = xmalloc(p->n * sizeof *p->ok);
    for (size_t i = 0; i < p->n; i++)
        p->tasks[i] = e->pending[i].task;
    store_realtime_prepare(e->store, p->tasks, p->n, p->fds, p->ok);
    e->persisting = p;
    syncer_run(e->syncer, engine_persist_job, p, engine_persisted_cb, e);
}

/* Render T's response and write it, not yet durable: the open descriptor
 * (BASE gets the name without suffix), or -errno. */
static int engine_write_answer(struct engine *e, struct task *t, char **base)
{
    struct response r = {.bot_id = e->cfg.bot_id,
                         .task_id = t->id,
                         .to = t->from,
                         .source = t->source,
                         .success = t->success,
                         .duration_seconds = t->duration_seconds,
                         .output = t->output,
                         .output_len = t->output_len,
                         .error = t->error,
                         .files = (const char *const *)t->files_modified,
                         .n_files = t->n_files_modified,
                         .finished_wall_ns = util_wall_ns(),
                         .usage = &t->usage};
    size_t len;
    char *text = response_render(&r, &len);
    int fd = store_write_response(e->store, t, text, len);
    free(text);
    *base = fd >= 0 ? response_base_name(&r) : NULL;
    return fd;
}

/* Start the stop grace, once: what still runs or waits then is left. */
static void engine_arm_grace(struct engine *e)
{
    struct timeval tv = {(long)e->cfg.stop_grace_s,
                         (long)((e->cfg.stop_grace_s - (long)e->cfg.stop_grace_s) * 1e6)};
    if (!evtimer_pending(e->grace_ev, NULL))
        evtimer_add(e->grace_ev, &tv);
}

/* Report a response that could not be written and try again later (disk
 * full, read-only): nothing else starts meanwhile. */
static void engine_answer_failed(struct engine *e, const struct task *t, int rc)
{
    char what[200];
    snprintf(what, sizeof what, "cannot write the response of task %s: %s (retrying)", t->id,
             strerror(-rc));
    if (store_transient(-rc) || rc == -ENOENT) { /* passes: a warning event, by the log's sink */
        activity_set_task(e->activity, t->id, task_source_name(t->source));
        log_warn("%s", what);
        activity_set_task(e->activity, NULL, NULL);
    } else {
        log_error("%s", what);
        engine_activity(e, "error", t, "failure", 0, "response write failed");
    }
    struct timeval tv = {ENGINE_RETRY_MS / 1000, (ENGINE_RETRY_MS % 1000) * 1000};
    if (!evtimer_pending(e->retry_ev, NULL))
        evtimer_add(e->retry_ev, &tv);
    if (e->stopping)
        engine_arm_grace(e);
}

/* True while an answer whose commit failed waits to be written again. */
static bool engine_answers_stuck(const struct engine *e)
{
    for (size_t i = 0; i < e->n_answers; i++)
        if (e->answers[i].fd < 0 && !e->answers[i].committing)
            return true;
    return false;
}

/* True when a written answer waits for the commit. */
static bool engine_answers_ready(const struct engine *e)
{
    for (size_t i = 0; i < e->n_answers; i++)
        if (e->answers[i].fd >= 0 && !e->answers[i].committing)
            return true;
    return false;
}

/* Schedule the commit of the written answers: on the next loop pass when
 * the bot has nothing else to start (or enough answers wait), else a few
 * ms later so that the answers of the next tasks share its sync. */
static void engine_schedule_answers(struct engine *e)
{
    static const struct timeval zero = {0, 0};
    static const struct timeval later = {0, ENGINE_ANSWER_MS * 1000};
    bool more = !e->stopping && !e->cooling && !e->paused &&
                (queue_len(e->realtime) > 0 || e->n_pending > 0 ||
                 (e->files && filequeue_len(e->files) > 0));
    if (!more || e->n_answers >= ENGINE_ANSWER_MAX) {
        evtimer_del(e->answer_ev);
        evtimer_add(e->answer_ev, &zero);
    } else if (!evtimer_pending(e->answer_ev, NULL)) {
        evtimer_add(e->answer_ev, &later);
    }
}

/* Hand T's written answer (FD, or -1: written again by the retry timer) to
 * the next commit. */
static void engine_answer_add(struct engine *e, struct task *t, char *base, int fd)
{
    if (e->n_answers == e->cap_answers) {
        e->cap_answers = e->cap_answers ? e->cap_answers * 2 : 16;
        e->answers = xrealloc(e->answers, e->cap_answers * sizeof *e->answers);
    }
    e->answers[e->n_answers++] = (struct engine_answer){t, base, fd, false};
}

/* Write the current task's response and hand the task to the next commit;
 * on failure it stays current (retried later) and nothing else starts. */
static bool engine_write_response(struct engine *e)
{
    struct task *t = e->current;
    char *base;
    int fd = engine_write_answer(e, t, &base);
    if (fd < 0) {
        engine_answer_failed(e, t, fd);
        return false;
    }
    engine_answer_add(e, t, base, fd);
    e->current = NULL;
    e->result_unwritten = false;
    return true;
}

/* An answer is durable, linked, indexed and archived: account, report and
 * forget it (GET reads it back from its response file). */
static void engine_complete(struct engine *e, struct task *t)
{
    t->state = t->cancelled ? TASK_CANCELLED : t->success ? TASK_DONE : TASK_FAILED;
    e->processed++;
    if (!t->success)
        e->failed++;
    log_info("task %s %s in %.1f s -> %s", t->id, t->success ? "done" : "failed",
             t->duration_seconds, t->response_file);
    events_task_done(e->events, t);
    if (t->cancelled)
        engine_cancelled(e, t);
    task_free(t);
}

/* The answer of T is settled with RC: reported (0) or kept to be written
 * again (-errno). */
static void engine_settle_answer(struct engine *e, struct task *t, int rc)
{
    size_t i = 0;
    while (i < e->n_answers && e->answers[i].task != t)
        i++;
    if (i == e->n_answers)
        return;
    struct engine_answer *a = &e->answers[i];
    if (rc != 0) {
        engine_answer_failed(e, t, rc);
        a->fd = -1;
        a->committing = false;
        return;
    }
    free(a->base);
    memmove(a, a + 1, (e->n_answers - i - 1) * sizeof *a);
    e->n_answers--;
    engine_complete(e, t);
}

/* Free a commit batch (its descriptors are closed by then). */
static void engine_commit_free(struct engine_commit *c)
{
    if (!c)
        return;
    engine_commit_free(c->names);
    free(c->tasks);
    free(c->bases);
    free(c->fds);
    free(c->rc);
    free(c);
}

/* On the sync thread: make the new answers' data, and the names of the
 * batch published before, durable, with one sync. */
static int engine_sync_job(void *job)
{
    struct engine_commit *c = job;
    return store_sync_commit(c->engine->store, c->fds, c->n, c->names != NULL);
}

/* After a failed sync: the new answers are written again (retry timer), the
 * published batch waits for the next sync. */
static void engine_sync_failed(struct engine *e, struct engine_commit *c, int result)
{
    char what[160];
    snprintf(what, sizeof what, "cannot sync the answers: %s (retrying)", strerror(-result));
    engine_warn(e, NULL, what);
    store_publish_responses(e->store, c->tasks, c->bases, c->fds, c->n, result, c->rc);
    for (size_t i = 0; i < c->n; i++)
        engine_settle_answer(e, c->tasks[i], c->rc[i]);
    e->published = c->names;
    c->names = NULL;
    engine_commit_free(c);
    if (e->published) {
        struct timeval tv = {ENGINE_RETRY_MS / 1000, (ENGINE_RETRY_MS % 1000) * 1000};
        evtimer_add(e->names_ev, &tv);
    }
}

/* On the loop: the sync is over. The batch published before is durable,
 * names and all: report it. The new answers' data is durable: name and
 * archive them; the next sync (started at once) makes that durable. */
static void engine_synced_cb(int result, void *arg)
{
    struct engine *e = arg;
    struct engine_commit *c = e->committing;
    e->committing = NULL;
    if (result < 0) {
        engine_sync_failed(e, c, result);
    } else {
        if (c->names) {
            store_release_responses(e->store, c->names->tasks, c->names->n, c->names->rc);
            for (size_t i = 0; i < c->names->n; i++)
                engine_settle_answer(e, c->names->tasks[i], c->names->rc[i]);
            engine_commit_free(c->names);
            c->names = NULL;
        }
        store_publish_responses(e->store, c->tasks, c->bases, c->fds, c->n, 0, c->rc);
        bool any = false;
        for (size_t i = 0; i < c->n; i++) {
            if (c->rc[i] != 0)
                engine_settle_answer(e, c->tasks[i], c->rc[i]);
            any |= c->rc[i] == 0;
        }
        for (size_t i = 0; i < e->n_answers; i++)
            if (e->answers[i].committing)
                e->answers[i].fd = -1; /* closed by the publish */
        if (any)
            e->published = c;
        else
            engine_commit_free(c);
    }
    if (e->published && !evtimer_pending(e->names_ev, NULL))
        engine_commit_answers(e); /* the names wait for no company */
    else if (engine_answers_ready(e))
        engine_schedule_answers(e);
    if (e->stopping)
        engine_run_next(e);
    else
        engine_kick(e);
}

/* Timer: sync a published batch's names again. */
static void engine_names_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    engine_commit_answers(arg);
}

/* Group commit of the written answers: one sync for the data of all that
 * are written and for the names of the batch published before. One sync
 * runs at a time; answers written meanwhile wait for the next. An answer
 * whose commit failed stays, to be written again by the retry timer. */
static void engine_commit_answers(struct engine *e)
{
    if (e->committing || (!engine_answers_ready(e) && !e->published))
        return;
    struct engine_commit *c = xcalloc(1, sizeof *c);
    size_t cap = e->n_answers + 1;
    c->engine = e;
    c->tasks = xmalloc(cap * sizeof *c->tasks);
    c->bases = xmalloc(cap * sizeof *c->bases);
    c->fds = xmalloc(cap * sizeof *c->fds);
    c->rc = xmalloc(cap * sizeof *c->rc);
    for (size_t i = 0; i < e->n_answers; i++) {
        struct engine_answer *a = &e->answers[i];
        if (a->fd < 0 || a->committing)
            continue;
        a->committing = true;
        c->tasks[c->n] = a->task, c->bases[c->n] = a->base, c->fds[c->n] = a->fd;
        c->n++;
    }
    c->names = e->published;
    e->published = NULL;
    evtimer_del(e->names_ev);
    e->committing = c;
    syncer_run(e->syncer, engine_sync_job, c, engine_synced_cb, e);
}

/* Timer: commit the written answers. */
static void engine_answer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    engine_commit_answers(arg);
}

/* The current task's answer is written: cool down or look for the next task,
 * and schedule the commit. */
static void engine_task_done(struct engine *e)
{
    if (e->cfg.cooldown_s > 0 && !e->stopping) {
        struct timeval tv = {(long)e->cfg.cooldown_s,
                             (long)((e->cfg.cooldown_s - (long)e->cfg.cooldown_s) * 1e6)};
        e->cooling = true;
        evtimer_add(e->cooldown_ev, &tv);
    } else {
        engine_kick(e);
    }
    engine_schedule_answers(e);
}

/* Write the current task's recorded result as its answer. */
static void engine_answer_current(struct engine *e)
{
    e->result_unwritten = true;
    if (engine_write_response(e))
        engine_task_done(e);
}

/* git said what the current task changed: its answer can be written. */
static void engine_git_changed_cb(void *arg)
{
    struct engine *e = arg;
    struct task *t = e->current;
    if (!t)
        return;
    t->files_modified = gitfiles_take(e->git, &t->n_files_modified);
    engine_answer_current(e);
}

/* A baseline was taken: look for work again. */
static void engine_git_ready_cb(void *arg)
{
    engine_kick(arg);
}

/* True when the next task may start: no git to ask, or a baseline of the
 * folder was taken since the last task (else one is asked for; it kicks). */
static bool engine_git_baseline(struct engine *e)
{
    if (!e->git || gitfiles_ready(e->git))
        return true;
    gitfiles_baseline(e->git, engine_git_ready_cb, e);
    return false;
}

/* The running task has been silent SILENT_S: task_stalled. */
static void engine_stalled_cb(double silent_s, void *arg)
{
    struct engine *e = arg;
    if (!e->current || !e->job)
        return;
    log_info("task %s: no output for %.0f s (stalled)", e->current->id, silent_s);
    events_task_stalled(e->events, e->current, silent_s);
}

/* Record the result of the current task and answer it. */
static void engine_finish(struct engine *e, bool success, char *output, size_t output_len,
                          char *error, double duration)
{
    struct task *t = e->current;
    if (e->stall)
        stall_stop(e->stall);
    if (t->cancelled) { /* killed by engine_cancel: whatever the kill made of it */
        success = false;
        free(error);
        error = xstrdup(TASK_CANCEL_ERROR);
    }
    t->success = success;
    free(t->output);
    t->output = output ? output : xstrdup("");
    t->output_len = output ? output_len : 0;
    free(t->error);
    t->error = error;
    t->duration_seconds = duration;
    if (e->git) /* the answer lists what the task changed: ask git first */
        gitfiles_changes(e->git, engine_git_changed_cb, e);
    else
        engine_answer_current(e);
}

/* Adapter output as it comes. */
static void engine_chunk_cb(const char *data, size_t len, void *arg)
{
    struct engine *e = arg;
    if (e->stall)
        stall_output(e->stall);
    if (e->current)
        events_task_output(e->events, e->current, data, len);
}

/* The adapter is done with the current task. */
static void engine_done_cb(struct adapter_result *res, void *arg)
{
    struct engine *e = arg;
    e->job = NULL;
    if (engine_agent_done(e, res))
        return;
    char *output = res->output, *error = res->error;
    res->output = NULL, res->error = NULL;
    engine_finish(e, res->success, output, res->output_len, error, res->duration_seconds);
}

/* Retry timer: write again the current task's response and the answers
 * whose commit failed. */
static void engine_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    bool rewritten = false;
    e->waiting = false;
    for (size_t i = 0; i < e->n_answers; i++) {
        struct engine_answer *a = &e->answers[i];
        if (a->fd >= 0 || a->committing)
            continue;
        free(a->base);
        a->fd = engine_write_answer(e, a->task, &a->base);
        if (a->fd < 0)
            engine_answer_failed(e, a->task, a->fd);
        rewritten |= a->fd >= 0;
    }
    if (e->current && e->result_unwritten && engine_write_response(e)) {
        engine_task_done(e);
        return;
    }
    if (rewritten)
        engine_schedule_answers(e);
    engine_kick(e);
}

/* The reason a PAUSE file gives in its text (the hive's budget writes one;
 * `hive pause` writes "paused", which is none). */
static void engine_pause_note(struct engine *e)
{
    free(e->pause_note);
    e->pause_note = util_read_file(store_paths(e->store)->pause, 512, NULL);
    size_t len = e->pause_note ? strcspn(e->pause_note, "\r\n") : 0;
    if (e->pause_note)
        e->pause_note[len] = '\0';
    if (len == 0 || strcmp(e->pause_note, "paused") == 0) {
        free(e->pause_note);
        e->pause_note = NULL;
    }
}

/* The bot is now PAUSED (or not): a change is an event (the first look at
 * start is not one). */
static void engine_set_paused(struct engine *e, bool paused)
{
    bool changed = e->paused_known && paused != e->paused, first = !e->paused_known;
    e->paused = paused;
    e->paused_known = true;
    if (paused && (changed || first))
        engine_pause_note(e);
    if (changed)
        events_bot_paused_why(e->events, paused, paused ? e->pause_note : NULL, 0);
}

/* Look whether the PAUSE file exists (SPEC: before every task start). */
static bool engine_paused(struct engine *e)
{
    engine_set_paused(e, store_paused(e->store));
    return e->paused || e->hold_reason;
}

/* The next task in order, not taken, or NULL. */
static const struct task *engine_peek_next(const struct engine *e)
{
    const struct task *t = queue_peek(e->realtime);
    return t ? t : e->files ? filequeue_peek(e->files) : NULL;
}

/* Take the next task in order, or NULL. */
static struct task *engine_take_next(struct engine *e)
{
    struct task *t = queue_pop(e->realtime);
    if (!t && e->files)
        t = filequeue_pop(e->files);
    return t;
}

/* True when a written answer belongs to a task file named FILE_NAME (a new
 * file of that name must not be claimed before that answer is committed:
 * both would share _active/FILE_NAME and the response's temp name). */
static bool engine_answer_named(const struct engine *e, const char *file_name)
{
    for (size_t i = 0; i < e->n_answers; i++)
        if (strcmp(e->answers[i].task->file_name, file_name) == 0)
            return true;
    return false;
}

/* Hold T (first in line) until the retry timer: a resource it needs is
 * short now (ERR, -errno). Nothing else starts meanwhile, so order holds. */
static void engine_hold(struct engine *e, struct task *t, int err, const char *step)
{
    char what[200];
    snprintf(what, sizeof what, ": %s: %s; it waits and runs once that passes", step,
             strerror(-err));
    engine_warn(e, t, what);
    t->state = TASK_QUEUED;
    /* A realtime task goes back to its place in its queue, where GET
     * /api/task and duplicate checks see it; a file task cannot (the file
     * queue forgets a file that leaves its folder), it waits aside. */
    if (t->source == TASK_SOURCE_FILE || queue_push(e->realtime, t->id, t->rank, t->order, t) < 0)
        queue_push(e->held, t->file_name, 0, (int64_t)e->held_seq++, t);
    struct timeval tv = {ENGINE_RETRY_MS / 1000, (ENGINE_RETRY_MS % 1000) * 1000};
    e->waiting = true;
    if (!evtimer_pending(e->retry_ev, NULL))
        evtimer_add(e->retry_ev, &tv);
}

/* Mark T running and tell everyone. */
static void engine_mark_started(struct engine *e, struct task *t)
{
    e->current = t;
    t->state = TASK_RUNNING;
    t->started_wall_ns = util_wall_ns();
    events_task_started(e->events, t);
    if (e->stall)
        stall_start(e->stall);
}

/* Start TASK (already claimed) through the adapter. False when it could not
 * start for now (held, see engine_hold). */
static bool engine_start_task(struct engine *e, struct task *t)
{
    char err[512];
    if (t->cancelled) { /* cancelled while held for a resource: never runs */
        engine_cancel_answer(e, t);
        return true;
    }
    if (t->parse_error) {
        engine_mark_started(e, t);
        engine_finish(e, false, NULL, 0, xstrdup(t->parse_error), 0);
        return true;
    }
    struct adapter_task at = {.task_id = t->id,
                              .bot_id = e->cfg.bot_id,
                              .source = task_source_name(t->source),
                              .content = t->content,
                              .resume_session = e->session,
                              .tool = engine_tool_cb};
    e->current = t; /* for chunks; the adapter calls back only later */
    errno = 0;
    e->job = adapter_start(e->base, &e->cfg.adapter, &at, engine_chunk_cb, engine_done_cb, e, err,
                           sizeof err);
    int saved = errno;
    if (!e->job && saved && store_transient(saved)) {
        e->current = NULL;
        engine_hold(e, t, -saved, "cannot start the adapter");
        return false;
    }
    engine_mark_started(e, t);
    if (!e->job)
        engine_finish(e, false, NULL, 0, xstrdup(err), 0);
    return true;
}

/* Finish stopping once nothing runs and every answer is committed. */
static void engine_maybe_stopped(struct engine *e)
{
    if (!e->stopping || e->current || e->stopped || e->n_pending || e->n_answers || e->committing ||
        e->published)
        return;
    e->stopped = true;
    engine_cancel_flush(e); /* cancels whose task was left queued */
    if (e->grace_ev)
        evtimer_del(e->grace_ev);
    if (e->ev.stopped)
        e->ev.stopped(e->ev.arg);
}

/* The next task to try: a held one first, else the next in order (taken
 * from its queue). NULL when there is none. */
static struct task *engine_take(struct engine *e)
{
    struct task *t = queue_pop(e->held);
    return t ? t : engine_take_next(e);
}

/* Claim T and start it. False when it must wait (held). */
static bool engine_claim_and_start(struct engine *e, struct task *t)
{
    int r = store_claim(e->store, t, e->cfg.bot_id);
    if (r == 0)
        return engine_start_task(e, t);
    if (store_transient(-r)) {
        engine_hold(e, t, r, t->claimed ? "cannot read its file" : "cannot claim it");
        return false;
    }
    if (r == -EINVAL && t->source == TASK_SOURCE_FILE && e->files)
        filequeue_not_regular(e->files, t->file_name);
    else if (r == -EINVAL)
        engine_warn(e, t, ": not a regular file (a link, FIFO, device or folder); left alone");
    else
        log_warn("cannot claim task %s: %s", t->id, strerror(-r));
    task_free(t);
    return true;
}

/* If the bot is free, claim and start the next task. */
static void engine_run_next(struct engine *e)
{
    if (e->stopping) {
        engine_commit_answers(e);
        engine_maybe_stopped(e);
        return;
    }
    /* Nothing is claimed (nor answered) before recovery is done: it takes
     * what is in _active/ for what a dead worker left. */
    while (!e->current && !e->cooling && !e->waiting && !e->recovering &&
           !engine_answers_stuck(e) && !engine_paused(e)) {
        const struct task *next = queue_peek(e->held);
        if (!next)
            next = engine_peek_next(e);
        if (!next)
            return;
        if (next->file_name && !next->claimed && engine_answer_named(e, next->file_name)) {
            engine_commit_answers(e); /* its completion kicks */
            return;
        }
        if (!engine_git_baseline(e) || !engine_claim_and_start(e, engine_take(e)))
            return;
    }
}

/* ---- agent CLIs: sessions, usage limits, budgets (SPEC §12) --------------- */

#define ENGINE_LIMIT_BACKOFF_S 60     /* the first wait of a limit that names no time */
#define ENGINE_LIMIT_BACKOFF_MAX 3600 /* the longest */
#define ENGINE_LIMIT_LATE_S 5         /* a reset time this recently past lifts at once */

/* The agent of the current task used a tool: a live event, as its output. */
static void engine_tool_cb(const char *name, const char *summary, void *arg)
{
    struct engine *e = arg;
    if (e->current)
        events_task_tool(e->events, e->current, name, summary);
}

/* Keep SESSION (NULL: none) as the one the next task resumes, durably. */
static void engine_session_set(struct engine *e, const char *session)
{
    if (!e->cfg.session_continue || (session && e->session && !strcmp(session, e->session)))
        return;
    free(e->session);
    e->session = session ? xstrdup(session) : NULL;
    if (e->cfg.work_dir)
        agent_session_save(e->syncer, e->cfg.work_dir, e->cfg.bot_id, session);
}

/* Arm the look at hold_until: at most a second away, so a clock that jumps
 * (a suspended machine, a test's clock) is noticed soon. */
static void engine_hold_arm(struct engine *e)
{
    if (!e->hold_reason || !e->hold_until)
        return;
    int64_t left_ms = (e->hold_until - agent_now()) * 1000;
    if (left_ms > 1000)
        left_ms = 1000;
    if (left_ms < 10)
        left_ms = 10;
    struct timeval tv = {(long)(left_ms / 1000), (long)(left_ms % 1000) * 1000};
    evtimer_add(e->hold_ev, &tv);
}

/* The bot pauses itself for REASON until UNTIL (0: until resumed). */
static void engine_hold_set(struct engine *e, const char *reason, int64_t until, bool budget)
{
    free(e->hold_reason);
    e->hold_reason = xstrdup(reason);
    e->hold_until = until;
    e->hold_budget = budget;
    char when[40] = "hive resume";
    if (until)
        util_iso_local(when, sizeof when, until * 1000000000LL);
    log_warn("paused until %s: %s", when, reason);
    events_bot_paused_why(e->events, true, reason, until);
    evtimer_del(e->hold_ev);
    engine_hold_arm(e);
}

/* The bot's own pause is over (WHY): back to work. */
static void engine_hold_clear(struct engine *e, const char *why)
{
    free(e->hold_reason);
    e->hold_reason = NULL;
    e->hold_until = 0;
    e->hold_budget = false;
    evtimer_del(e->hold_ev);
    log_info("resumed: %s", why);
    events_bot_paused_why(e->events, false, why, 0);
    engine_kick(e);
}

/* The hold's timer: over when hold_until has come, else look again. */
static void engine_hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    if (!e->hold_reason || !e->hold_until)
        return;
    if (agent_now() < e->hold_until)
        return engine_hold_arm(e);
    engine_hold_clear(e, e->hold_budget ? "budget: a new day" : "usage limit: reset time reached");
}

/* A budget spent already today (a restart) pauses the bot at once. */
static void engine_budget_start(struct engine *e)
{
    int64_t now = agent_now();
    if (!e->budget || budget_level(e->budget, now) != BUDGET_OVER)
        return;
    char reason[200];
    budget_describe(e->budget, reason, sizeof reason);
    engine_hold_set(e, reason, budget_day_end(e->budget, now), true);
}

/* Count what task T cost against the day's budget: warn at 80 %, pause at 100 %. */
static void engine_budget_count(struct engine *e, const struct task *t)
{
    if (!e->budget)
        return;
    int64_t now = agent_now();
    enum budget_level level = budget_add(e->budget, &t->usage, now);
    char reason[200];
    budget_describe(e->budget, reason, sizeof reason);
    if (level == BUDGET_WARN) {
        char msg[260];
        snprintf(msg, sizeof msg, "80%% of the daily budget used (%s)", reason);
        log_warn("%s", msg);
        events_warning(e->events, msg);
    } else if (level == BUDGET_OVER && !e->hold_reason) {
        engine_hold_set(e, reason, budget_day_end(e->budget, now), true);
    }
}

/* The current task met a usage limit: it goes back, first in line and not
 * failed (no answer), and the bot pauses until the limit lifts. */
static void engine_limit_requeue(struct engine *e, const struct adapter_result *res)
{
    struct task *t = e->current;
    e->current = NULL;
    free(e->fresh_note);
    e->fresh_note = NULL;
    t->state = TASK_QUEUED;
    if (t->source == TASK_SOURCE_FILE || queue_push(e->realtime, t->id, t->rank, t->order, t) < 0)
        queue_push(e->held, t->file_name, 0, (int64_t)e->held_seq++, t);
    int64_t now = agent_now(), until = res->limit_reset;
    /* "try again in 1 s" read at the end of a second is past by the time it
     * gets here: it lifts now, it is not a limit without a time. */
    if (until > 0 && until <= now && now - until < ENGINE_LIMIT_LATE_S)
        until = now + 1;
    if (until <= now) {
        e->limit_backoff = e->limit_backoff ? e->limit_backoff * 2 : ENGINE_LIMIT_BACKOFF_S;
        if (e->limit_backoff > ENGINE_LIMIT_BACKOFF_MAX)
            e->limit_backoff = ENGINE_LIMIT_BACKOFF_MAX;
        until = now + e->limit_backoff;
    }
    char reason[600];
    snprintf(reason, sizeof reason, "usage limit: %.500s", res->error ? res->error : "reached");
    engine_hold_set(e, reason, e->cfg.auto_resume ? until : 0, false);
}

/* A usage limit while the bot stops: the task is not failed but left queued
 * (unclaimed), as a task the stop grace cut short is, to run at the next
 * start. */
static void engine_limit_leave_queued(struct engine *e)
{
    log_warn("task %s hit a usage limit while the bot stops; left queued", e->current->id);
    if (e->stall)
        stall_stop(e->stall);
    store_unclaim(e->store, e->current);
    events_task_forget(e->events, e->current);
    task_free(e->current);
    e->current = NULL;
    free(e->fresh_note);
    e->fresh_note = NULL;
    engine_maybe_stopped(e);
}

/* The agent refused the session to resume: run the current task again, at
 * once, in a new session, and say so in its output. False when it could not
 * start (the caller answers the first run). */
static bool engine_run_fresh(struct engine *e, const struct adapter_result *res)
{
    struct task *t = e->current;
    char err[512];
    e->fresh_note = xasprintf("[hive] The agent could not resume session %s (%s); this task ran "
                              "in a new session.\n\n",
                              e->session ? e->session : "?", res->error ? res->error : "refused");
    log_warn("task %s: %s", t->id, e->fresh_note);
    engine_session_set(e, NULL);
    events_task_output(e->events, t, e->fresh_note, strlen(e->fresh_note));
    struct adapter_task at = {.task_id = t->id,
                              .bot_id = e->cfg.bot_id,
                              .source = task_source_name(t->source),
                              .content = t->content,
                              .tool = engine_tool_cb};
    e->job = adapter_start(e->base, &e->cfg.adapter, &at, engine_chunk_cb, engine_done_cb, e, err,
                           sizeof err);
    if (!e->job) { /* the first run's answer stands */
        log_warn("task %s: cannot start it again: %s", t->id, err);
        free(e->fresh_note);
        e->fresh_note = NULL;
    }
    return e->job != NULL;
}

/* Put the note of a fresh run in front of RES's output. */
static void engine_fresh_prefix(struct engine *e, struct adapter_result *res)
{
    if (!e->fresh_note)
        return;
    size_t n = strlen(e->fresh_note);
    char *out = xmalloc(n + res->output_len + 1);
    memcpy(out, e->fresh_note, n);
    memcpy(out + n, res->output ? res->output : "", res->output_len);
    out[n + res->output_len] = '\0';
    free(res->output);
    res->output = out;
    res->output_len += n;
    free(e->fresh_note);
    e->fresh_note = NULL;
}

/* What an agent's result means beyond success: a usage limit (requeued,
 * true), a refused resume (run again fresh, true), else its session, tokens
 * and cost are kept and counted (false: answer it). */
static bool engine_agent_done(struct engine *e, struct adapter_result *res)
{
    struct task *t = e->current;
    bool live = !t->cancelled && !e->stopping;
    if (res->limited && live) {
        engine_limit_requeue(e, res);
        return true;
    }
    if (res->limited && !t->cancelled) { /* stopping: leave it queued for the next start */
        engine_limit_leave_queued(e);
        return true;
    }
    if (res->resume_rejected && live && !e->fresh_note && engine_run_fresh(e, res))
        return true;
    if (!res->limited)
        e->limit_backoff = 0;
    engine_fresh_prefix(e, res);
    t->usage = res->usage;
    if (res->session_id)
        engine_session_set(e, res->session_id);
    engine_budget_count(e, t);
    return false;
}

int engine_reset_session(struct engine *e)
{
    free(e->session);
    e->session = NULL;
    if (e->cfg.work_dir)
        agent_session_save(e->syncer, e->cfg.work_dir, e->cfg.bot_id, NULL);
    log_info("agent session reset: the next task starts a new conversation");
    return 0;
}

/* Deferred kick. */
static void engine_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    engine_run_next(arg);
}

/* End of the cooldown. */
static void engine_cooldown_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    e->cooling = false;
    engine_run_next(e);
}

/* The stop grace ran out: kill the running task and leave it queued. */
static void engine_grace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    if (e->git)
        gitfiles_cancel(e->git); /* its callback would find the task gone */
    if (e->stall)
        stall_stop(e->stall);
    if (e->current) {
        log_warn("task %s did not finish within %.1f s; left queued", e->current->id,
                 e->cfg.stop_grace_s);
        if (e->job)
            adapter_abandon(e->job);
        e->job = NULL;
        if (!e->result_unwritten)
            store_unclaim(e->store, e->current);
        /* Its events held behind an answer still being committed must not
         * wait for it (it is freed): found by fuzz_json_task under ASan. */
        events_task_forget(e->events, e->current);
        task_free(e->current);
        e->current = NULL;
    }
    engine_commit_answers(e);
    /* Answers that could not be committed: their tasks stay claimed and
     * run again at the next start. Those being committed (or waiting for
     * the commit that runs) finish first. */
    size_t kept = 0;
    for (size_t i = 0; i < e->n_answers; i++) {
        struct engine_answer a = e->answers[i];
        if (a.committing || a.fd >= 0) {
            e->answers[kept++] = a;
            continue;
        }
        log_warn("task %s not answered before the stop; it runs again at the next start",
                 a.task->id);
        free(a.base);
        events_task_forget(e->events, a.task);
        task_free(a.task);
    }
    e->n_answers = kept;
    engine_maybe_stopped(e);
}

/* A claimed task (queue_find_if predicate). */
static bool engine_match_claimed(const void *task, const void *unused)
{
    (void)unused;
    return ((const struct task *)task)->claimed;
}

/* Drop the held tasks at a stop: back to their queues, to run at the next
 * start. */
static void engine_release_held(struct engine *e)
{
    struct task *t;
    while ((t = queue_pop(e->held))) {
        if (t->claimed)
            store_unclaim(e->store, t);
        task_free(t);
    }
    /* Realtime tasks held in their queue: back to _realtime/, so that the
     * next start does not count a death for them. */
    const struct task *c;
    while ((c = queue_find_if(e->realtime, engine_match_claimed, NULL))) {
        t = queue_remove(e->realtime, c->id);
        store_unclaim(e->store, t);
        if (t->claimed || queue_push(e->realtime, t->id, t->rank, t->order, t) < 0)
            task_free(t); /* left in _active/: recovery puts it back */
    }
}

/* File queue or controls folder changed. */
static void engine_files_cb(void *arg)
{
    struct engine *e = arg;
    engine_paused(e);
    engine_kick(e);
}

struct engine *engine_new(struct event_base *base, const struct engine_config *cfg,
                          struct store *store, struct activity *activity, struct events *events,
                          const struct engine_events *callbacks)
{
    struct engine *e = xcalloc(1, sizeof *e);
    e->base = base;
    e->cfg = *cfg;
    e->store = store;
    e->activity = activity;
    e->events = events;
    e->ev = *callbacks;
    e->realtime = queue_new();
    e->commit_ev = evtimer_new(base, engine_commit_cb, e);
    e->kick_ev = evtimer_new(base, engine_kick_cb, e);
    e->cooldown_ev = evtimer_new(base, engine_cooldown_cb, e);
    e->answer_ev = evtimer_new(base, engine_answer_cb, e);
    e->retry_ev = evtimer_new(base, engine_retry_cb, e);
    e->grace_ev = evtimer_new(base, engine_grace_cb, e);
    e->names_ev = evtimer_new(base, engine_names_cb, e);
    e->hold_ev = evtimer_new(base, engine_hold_cb, e);
    e->recover_ev = evtimer_new(base, engine_recover_cb, e);
    e->held = queue_new();
    if (cfg->stall_after_s > 0)
        e->stall = stall_new(base, cfg->stall_after_s, engine_stalled_cb, e);
    if (cfg->adapter.type != ADAPTER_MOCK) /* mock touches no file */
        e->git = gitfiles_new(base, cfg->adapter.work_dir);
    e->syncer = syncer_new(base);
    if (!e->syncer) { /* an eventfd (the thread starts with the first job) */
        log_error("cannot start the sync thread: %s", strerror(errno));
        exit(1);
    }
    if (cfg->session_continue && cfg->work_dir)
        e->session = agent_session_load(cfg->work_dir, cfg->bot_id);
    if (cfg->work_dir)
        e->budget = budget_open(e->syncer, cfg->work_dir, cfg->bot_id, &cfg->budget);
    return e;
}

/* True when a realtime task of id ID is queued or being stored. */
static bool engine_knows_submission(const struct engine *e, const char *id)
{
    for (size_t i = 0; i < e->n_pending; i++)
        if (strcmp(e->pending[i].task->id, id) == 0)
            return true;
    return queue_find(e->realtime, id) != NULL;
}

/* Requeue a recovered realtime task; a claimed one (poison) is answered
 * first. A recovery tried again hands over the tasks submitted meanwhile
 * too: those are known already. */
static void engine_recovered_cb(struct task *t, void *arg)
{
    struct engine *e = arg;
    if (!t->claimed && engine_knows_submission(e, t->id)) {
        task_free(t);
        return;
    }
    t->state = TASK_QUEUED;
    if (t->claimed) {
        events_task_received(e->events, t, 0);
        queue_push(e->held, t->file_name, 0, (int64_t)e->held_seq++, t);
    } else if (queue_push(e->realtime, t->id, t->rank, t->order, t) < 0) {
        task_free(t);
    }
}

/* The file queue found a file that is not a regular file: say so once. */
static void engine_not_regular_cb(const char *name, void *arg)
{
    char what[400];
    snprintf(what, sizeof what,
             "%s in the queue is not a regular file (a link, FIFO, device or "
             "folder); it is never opened and left alone",
             name);
    engine_warn(arg, NULL, what);
}

/* The file queue found a new task. */
static void engine_seen_cb(const struct task *t, void *arg)
{
    struct engine *e = arg;
    events_task_received(e->events, t, 0);
}

/* Arm the next try of a recovery left undone. */
static void engine_recover_arm(struct engine *e)
{
    e->recover_ms = e->recover_ms ? e->recover_ms * 2 : ENGINE_RECOVER_MS;
    if (e->recover_ms > ENGINE_RECOVER_MAX_MS)
        e->recover_ms = ENGINE_RECOVER_MAX_MS;
    struct timeval tv = {e->recover_ms / 1000, (e->recover_ms % 1000) * 1000};
    evtimer_add(e->recover_ev, &tv);
}

/* Try again the recovery a passing shortage left undone; once done, the
 * tasks it put back in the queue folder are looked for (inotify may be
 * missing for the same shortage) and work starts. */
static void engine_recover_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct engine *e = arg;
    if (e->stopping)
        return;
    int n = store_recover(e->store, e->cfg.bot_id, engine_recovered_cb, e);
    if (store_recover_incomplete(e->store)) {
        engine_recover_arm(e);
        return;
    }
    log_info("recovery done: %d more task(s) recovered", n);
    e->recovering = false;
    if (e->files)
        filequeue_rescan(e->files);
    engine_kick(e);
}

int engine_start(struct engine *e, int inotify_fd)
{
    int n = store_recover(e->store, e->cfg.bot_id, engine_recovered_cb, e);
    e->recovering = store_recover_incomplete(e->store);
    if (e->recovering)
        engine_recover_arm(e);
    /* Without a file queue (websocket-only) this watches the controls
     * folder only, for the PAUSE file. */
    e->files =
        filequeue_new(e->base, store_paths(e->store), e->cfg.bot_id, inotify_fd, e->cfg.file_queue,
                      e->cfg.file_min_age_s, e->cfg.rescan_s, engine_files_cb, e);
    filequeue_set_hooks(e->files, engine_not_regular_cb, engine_seen_cb, e);
    filequeue_rescan(e->files);
    engine_budget_start(e);
    engine_paused(e);
    engine_kick(e);
    return n;
}

/* queue_free's payload destructor. */
static void engine_free_task(void *t)
{
    task_free(t);
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    /* First: the syncs given finish and are reported (a submission is
     * acknowledged, an answer reported, as they would have been), and no
     * sync may run on what goes next. */
    syncer_drain(e->syncer);
    while (e->n_pending) { /* submissions not yet written: as the timer would */
        engine_commit_cb(-1, 0, e);
        syncer_drain(e->syncer);
    }
    syncer_free(e->syncer);
    engine_cancel_flush(e);
    free(e->cancels);
    if (e->persisting) {
        for (size_t i = 0; i < e->persisting->n; i++)
            if (e->persisting->fds[i] >= 0)
                close(e->persisting->fds[i]);
        engine_persist_free(e->persisting);
    }
    engine_commit_free(e->committing);
    engine_commit_free(e->published);
    queue_free(e->held, engine_free_task);
    if (e->job)
        adapter_abandon(e->job);
    gitfiles_free(e->git);
    stall_free(e->stall);
    events_task_forget_all(e->events); /* the tasks it holds are freed below */
    task_free(e->current);
    for (size_t i = 0; i < e->n_pending; i++)
        task_free(e->pending[i].task);
    free(e->pending);
    for (size_t i = 0; i < e->n_answers; i++) { /* recovery settles them */
        if (e->answers[i].fd >= 0)
            close(e->answers[i].fd);
        free(e->answers[i].base);
        task_free(e->answers[i].task);
    }
    free(e->answers);
    queue_free(e->realtime, engine_free_task);
    filequeue_free(e->files);
    event_free(e->commit_ev);
    event_free(e->kick_ev);
    event_free(e->cooldown_ev);
    event_free(e->answer_ev);
    event_free(e->retry_ev);
    event_free(e->grace_ev);
    event_free(e->names_ev);
    event_free(e->hold_ev);
    event_free(e->recover_ev);
    free(e->session);
    free(e->fresh_note);
    free(e->hold_reason);
    free(e->pause_note);
    budget_free(e->budget);
    free(e);
}

const struct task *engine_find(const struct engine *e, const char *id)
{
    if (e->current && strcmp(e->current->id, id) == 0)
        return e->current;
    const struct task *t = queue_find(e->realtime, id);
    for (size_t i = 0; !t && i < e->n_pending; i++)
        if (strcmp(e->pending[i].task->id, id) == 0)
            t = e->pending[i].task;
    for (size_t i = 0; !t && i < e->n_answers; i++)
        if (strcmp(e->answers[i].task->id, id) == 0)
            t = e->answers[i].task;
    if (!t)
        t = queue_find_if(e->held, engine_match_id, id);
    if (!t && e->files)
        t = filequeue_find(e->files, id);
    return t;
}

/* queue_find_if visitor: keep the earliest arrival in CTX, match nothing. */
static bool engine_oldest_visit(const void *task, const void *ctx)
{
    const struct task *t = task;
    int64_t *oldest = (int64_t *)ctx;
    if (!*oldest || t->order < *oldest)
        *oldest = t->order;
    return false;
}

/* When the longest-waiting queued task arrived (realtime: accepted; file:
 * its mtime, the file queue's order), or 0. */
static int64_t engine_oldest(const struct engine *e)
{
    int64_t oldest = 0;
    queue_find_if(e->realtime, engine_oldest_visit, &oldest);
    const struct task *f = e->files ? filequeue_peek(e->files) : NULL;
    if (f && (!oldest || f->order < oldest))
        oldest = f->order;
    return oldest;
}

void engine_status(struct engine *e, struct engine_status *st)
{
    /* Without inotify nothing tells us of a PAUSE file dropped by hand. */
    bool paused =
        e->files && filequeue_watching(e->files) ? e->paused || e->hold_reason : engine_paused(e);
    st->state = e->stopping ? "stopping" : e->current ? "busy" : paused ? "paused" : "idle";
    st->current = e->current;
    st->realtime = queue_len(e->realtime) + e->n_pending;
    st->file = e->files ? filequeue_len(e->files) : 0;
    st->processed = e->processed;
    st->failed = e->failed;
    st->oldest_wall_ns = engine_oldest(e);
    st->paused_reason = e->hold_reason ? e->hold_reason : paused ? e->pause_note : NULL;
    st->paused_until = e->hold_until;
}

int engine_pause(struct engine *e, bool paused)
{
    int r = store_set_paused(e->store, paused);
    if (r < 0)
        return r;
    engine_set_paused(e, paused);
    if (!paused && e->hold_reason) {
        if (e->hold_budget && e->budget)
            budget_override(e->budget, agent_now());
        engine_hold_clear(e, "resumed by hand");
    }
    log_info("%s", paused ? "paused" : "resumed");
    engine_kick(e);
    return 0;
}

bool engine_interrupt(struct engine *e)
{
    if (!e->job)
        return false;
    adapter_interrupt(e->job);
    return true;
}

void engine_stop(struct engine *e)
{
    if (e->stopping)
        return;
    e->stopping = true;
    evtimer_del(e->recover_ev); /* what it left undone waits for the next start */
    engine_release_held(e);
    if (e->current || engine_answers_stuck(e))
        engine_arm_grace(e);
    engine_kick(e);
}

bool engine_stopping(const struct engine *e)
{
    return e->stopping;
}

/* ----- cancel (SPEC §4): a queued task leaves its queue, a running one is
 * killed; either ends through the normal answer path, failed with the error
 * "cancelled", and the cancel is answered once that answer is durable. */

/* True when ID's newest answer (it is a failed one) says it was cancelled:
 * the response file tells, so this holds after a restart too. */
static bool engine_answered_cancelled(struct engine *e, const char *id)
{
    struct answers_entry a;
    if (answers_load(store_answers(e->store), id, &a) < 0)
        return false;
    bool cancelled = a.view.cancelled;
    answers_entry_clear(&a);
    return cancelled;
}

/* Remember that CB waits for T's cancelled answer. */
static void engine_cancel_wait(struct engine *e, const struct task *t, engine_cancel_cb cb,
                               void *arg)
{
    if (e->n_cancels == e->cap_cancels) {
        e->cap_cancels = e->cap_cancels ? e->cap_cancels * 2 : 4;
        e->cancels = xrealloc(e->cancels, e->cap_cancels * sizeof *e->cancels);
    }
    e->cancels[e->n_cancels++] = (struct engine_cancel){t, cb, arg};
}

/* End the wait of T's cancel: ANSWERED is T once its answer is durable, NULL
 * when there will be none. */
static void engine_cancel_notify(struct engine *e, const struct task *t,
                                 const struct task *answered)
{
    for (size_t i = 0; i < e->n_cancels; i++) {
        if (e->cancels[i].task != t)
            continue;
        struct engine_cancel c = e->cancels[i];
        e->cancels[i] = e->cancels[--e->n_cancels];
        c.cb(answered, c.arg);
        return;
    }
}

/* The bot stopped (or goes away) with cancels still waiting: their tasks
 * were left queued, to run at the next start; each waiter hears NULL. */
static void engine_cancel_flush(struct engine *e)
{
    while (e->n_cancels) {
        struct engine_cancel c = e->cancels[--e->n_cancels];
        c.cb(NULL, c.arg);
    }
}

/* The one place where a task ends as cancelled: its answer (failed, error
 * "cancelled") is durable, linked, indexed and archived, and it has been
 * reported like any answer (engine_complete). */
static void engine_cancelled(struct engine *e, struct task *t)
{
    log_info("task %s cancelled", t->id);
    engine_cancel_notify(e, t, t);
}

/* Answer T, claimed and cancelled before it ran: a failed response with the
 * error "cancelled", committed with the other answers. */
static void engine_cancel_answer(struct engine *e, struct task *t)
{
    t->success = false;
    free(t->output);
    t->output = xstrdup("");
    t->output_len = 0;
    free(t->error);
    t->error = xstrdup(TASK_CANCEL_ERROR);
    t->duration_seconds = 0;
    char *base = NULL;
    int fd = engine_write_answer(e, t, &base);
    if (fd < 0)
        engine_answer_failed(e, t, fd); /* the retry timer writes it again */
    engine_answer_add(e, t, base, fd);
    engine_schedule_answers(e);
}

/* Cancel T, just taken out of its queue: claim it (its file leaves the
 * queue or _realtime/ as for a run) and answer it. A resource that is short
 * holds it (still cancelled: it is answered, never run, once it passes). */
static void engine_cancel_queued(struct engine *e, struct task *t)
{
    t->cancelled = true;
    int r = store_claim(e->store, t, e->cfg.bot_id);
    if (r == 0) {
        engine_cancel_answer(e, t);
        return;
    }
    if (store_transient(-r)) {
        engine_hold(e, t, r, t->claimed ? "cannot read its file to cancel it" : "cannot claim it");
        return;
    }
    log_warn("cannot cancel task %s: %s", t->id, strerror(-r));
    engine_cancel_notify(e, t, NULL);
    task_free(t);
}

/* T (queued) from whichever queue holds it, or NULL when none does. */
static struct task *engine_cancel_take(struct engine *e, const struct task *t)
{
    if (queue_find(e->realtime, t->id) == t)
        return queue_remove(e->realtime, t->id);
    if (queue_find_if(e->held, engine_match_id, t->id) == t)
        return queue_remove(e->held, t->file_name);
    if (e->files && filequeue_find(e->files, t->id) == t)
        return filequeue_take(e->files, t);
    return NULL;
}

/* True when T is a submission still being made durable. */
static bool engine_cancel_storing(const struct engine *e, const struct task *t)
{
    for (size_t i = 0; i < e->n_pending; i++)
        if (e->pending[i].task == t)
            return true;
    return false;
}

/* True when claiming T now would take the _active/ name of the running task
 * or of an answer not yet committed (a new file of the same name). */
static bool engine_cancel_collides(const struct engine *e, const struct task *t)
{
    if (t->claimed)
        return false;
    return engine_answer_named(e, t->file_name) ||
           (e->current && strcmp(e->current->file_name, t->file_name) == 0);
}

/* Cancel the running task: kill its process tree (the adapter's interrupt
 * path); its answer says "cancelled" (engine_finish). */
static enum engine_cancel_status engine_cancel_running(struct engine *e, engine_cancel_cb cb,
                                                       void *arg)
{
    if (!e->job || e->result_unwritten)
        return ENGINE_CANCEL_FINISHED; /* its answer is being written */
    e->current->cancelled = true;
    engine_cancel_wait(e, e->current, cb, arg);
    log_info("task %s: cancel asked, killing it", e->current->id);
    adapter_interrupt(e->job); /* may finish the task at once (mock) */
    return ENGINE_CANCEL_OK;
}

enum engine_cancel_status engine_cancel(struct engine *e, const char *id, engine_cancel_cb cb,
                                        void *arg)
{
    if (e->stopping)
        return ENGINE_CANCEL_STOPPING;
    const struct task *found = engine_find(e, id);
    if (!found)
        return engine_task_state(e, id) ? ENGINE_CANCEL_FINISHED : ENGINE_CANCEL_UNKNOWN;
    if (found->cancelled)
        return ENGINE_CANCEL_FINISHED;
    if (found == e->current)
        return engine_cancel_running(e, cb, arg);
    /* While recovery is undone nothing is claimed, a cancel's claim neither. */
    if (e->recovering || engine_cancel_storing(e, found) || engine_cancel_collides(e, found))
        return ENGINE_CANCEL_BUSY;
    struct task *t = engine_cancel_take(e, found);
    if (!t)
        return ENGINE_CANCEL_FINISHED; /* answered, its answer being committed */
    engine_cancel_wait(e, t, cb, arg);
    engine_cancel_queued(e, t);
    return ENGINE_CANCEL_OK;
}

int64_t engine_oldest_waiting_ns(const struct engine *e)
{
    int64_t rt = queue_oldest_time(e->realtime),
            file = e->files ? filequeue_oldest_ns(e->files) : 0;
    return rt && file ? (rt < file ? rt : file) : rt ? rt : file;
}
