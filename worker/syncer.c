/*
 * syncer: owns one thread and the two queues between it and the event loop:
 * jobs go down under a mutex and a condition variable; finished jobs come
 * up under the same mutex, announced by an eventfd that the loop watches.
 * Only system calls run on the thread; everything else stays on the loop.
 * The thread starts with the first job: a worker that is started and stopped
 * without a task to make durable never pays for it.
 */
#include "worker/syncer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct syncer_item {
    syncer_job_fn fn;
    void *job;
    syncer_done_cb done;
    void *arg;
    int result;
    struct syncer_item *next;
};

struct syncer {
    pthread_t thread;
    bool started; /* the thread runs (from the first job on) */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t idle;                   /* a job finished */
    bool busy;                             /* the thread runs a job */
    struct syncer_item *todo, **todo_tail; /* for the thread */
    struct syncer_item *done, **done_tail; /* for the loop */
    bool quit;
    int efd;
    struct event *ev;
};

/* Take the first item of a list (HEAD, TAIL), or NULL. */
static struct syncer_item *syncer_shift(struct syncer_item **head, struct syncer_item ***tail)
{
    struct syncer_item *it = *head;
    if (it) {
        *head = it->next;
        if (!*head)
            *tail = head;
        it->next = NULL;
    }
    return it;
}

/* Append IT to a list (TAIL). */
static void syncer_append(struct syncer_item ***tail, struct syncer_item *it)
{
    it->next = NULL;
    **tail = it;
    *tail = &it->next;
}

/* The thread: run jobs in order until told to quit.
 *
 * It asks for the kernel's shortest CPU slice (EEVDF: an earlier deadline,
 * so it gets a CPU as soon as it wakes): a task's acceptance and answer wait
 * on its jobs, each a few system calls. With the default slice, on a machine
 * whose other cores were busy (bench E2: the load generator, 100 subscribers
 * and their writer thread on 2 cores), each task waited ~10 µs for the
 * thread to be run and the loop idled meanwhile: 0.90x the tasks a second
 * of no subscribers, ~0.98x with the short slice (bench/README.md). A job that waits for the disk
 * sleeps: the slice only changes how soon it starts. */
static void *syncer_main(void *arg)
{
    struct syncer *sy = arg;
    pthread_setname_np(pthread_self(), "hive-sync");
    util_sched_slice_set(UTIL_SCHED_SLICE_BRISK);
    pthread_mutex_lock(&sy->lock);
    for (;;) {
        while (!sy->quit && !sy->todo)
            pthread_cond_wait(&sy->wake, &sy->lock);
        if (sy->quit)
            break;
        struct syncer_item *it = syncer_shift(&sy->todo, &sy->todo_tail);
        sy->busy = true;
        pthread_mutex_unlock(&sy->lock);
        it->result = it->fn(it->job);
        pthread_mutex_lock(&sy->lock);
        sy->busy = false;
        syncer_append(&sy->done_tail, it);
        pthread_cond_broadcast(&sy->idle);
        uint64_t one = 1;
        /* An eventfd counter only overflows after 2^64-1 writes. */
        ssize_t w = write(sy->efd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&sy->lock);
    return NULL;
}

/* The loop side: call back every finished job, in order. */
static void syncer_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct syncer *sy = arg;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n); /* EAGAIN: already read, nothing lost */
    (void)r;
    for (;;) {
        pthread_mutex_lock(&sy->lock);
        struct syncer_item *it = syncer_shift(&sy->done, &sy->done_tail);
        pthread_mutex_unlock(&sy->lock);
        if (!it)
            break;
        it->done(it->result, it->arg);
        free(it);
    }
}

/* Start the thread; 0 or an errno value. */
static int syncer_start(struct syncer *sy)
{
    /* The thread is born with every signal blocked: signals are the loop's
     * (a handler must never run on the sync thread, nor a default action
     * be taken there for a signal the loop blocks). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&sy->thread, NULL, syncer_main, sy);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sy->started = r == 0;
    return r;
}

struct syncer *syncer_new(struct event_base *base)
{
    struct syncer *sy = xcalloc(1, sizeof *sy);
    sy->todo_tail = &sy->todo;
    sy->done_tail = &sy->done;
    sy->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sy->efd < 0) {
        free(sy);
        return NULL;
    }
    pthread_mutex_init(&sy->lock, NULL);
    pthread_cond_init(&sy->wake, NULL);
    pthread_cond_init(&sy->idle, NULL);
    sy->ev = event_new(base, sy->efd, EV_READ | EV_PERSIST, syncer_read_cb, sy);
    event_add(sy->ev, NULL);
    return sy;
}

/* Free every item of a list. */
static void syncer_free_list(struct syncer_item *it)
{
    while (it) {
        struct syncer_item *next = it->next;
        free(it);
        it = next;
    }
}

void syncer_free(struct syncer *sy)
{
    if (!sy)
        return;
    pthread_mutex_lock(&sy->lock);
    sy->quit = true;
    pthread_cond_signal(&sy->wake);
    pthread_mutex_unlock(&sy->lock);
    if (sy->started)
        pthread_join(sy->thread, NULL);
    syncer_free_list(sy->todo);
    syncer_free_list(sy->done);
    event_free(sy->ev);
    close(sy->efd);
    pthread_mutex_destroy(&sy->lock);
    pthread_cond_destroy(&sy->wake);
    pthread_cond_destroy(&sy->idle);
    free(sy);
}

void syncer_drain(struct syncer *sy)
{
    for (;;) {
        pthread_mutex_lock(&sy->lock);
        while (!sy->done && (sy->busy || sy->todo))
            pthread_cond_wait(&sy->idle, &sy->lock);
        bool empty = !sy->done;
        pthread_mutex_unlock(&sy->lock);
        if (empty)
            return;
        syncer_read_cb(sy->efd, EV_READ, sy); /* may queue more jobs */
    }
}

void syncer_run(struct syncer *sy, syncer_job_fn fn, void *job, syncer_done_cb done, void *arg)
{
    struct syncer_item *it = xcalloc(1, sizeof *it);
    it->fn = fn, it->job = job, it->done = done, it->arg = arg;
    int r = sy->started ? 0 : syncer_start(sy);
    if (r != 0) { /* no thread to be had: sync on the loop, answer as the thread would */
        log_warn("cannot start the sync thread (%s); syncing on the event loop", strerror(r));
        it->result = fn(job);
        pthread_mutex_lock(&sy->lock);
        syncer_append(&sy->done_tail, it);
        uint64_t one = 1;
        ssize_t w = write(sy->efd, &one, sizeof one);
        (void)w;
        pthread_mutex_unlock(&sy->lock);
        return;
    }
    pthread_mutex_lock(&sy->lock);
    syncer_append(&sy->todo_tail, it);
    pthread_cond_signal(&sy->wake);
    pthread_mutex_unlock(&sy->lock);
}

/* A small file to replace durably (syncer_write_file). */
struct syncer_file {
    char *path;
    char *data;
    size_t len;
};

/* On the thread: the folder, then the atomic durable replace. */
static int syncer_file_job(void *job)
{
    struct syncer_file *f = job;
    char *dir = xstrdup(f->path);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        rc = util_mkdirs(dir);
    }
    if (rc == 0)
        rc = util_write_file_atomic(f->path, f->data, f->len);
    free(dir);
    return rc < 0 ? -errno : 0;
}

/* On the loop: say what failed, free the job. */
static void syncer_file_done(int result, void *arg)
{
    struct syncer_file *f = arg;
    if (result < 0)
        log_warn("cannot write %s: %s", f->path, strerror(-result));
    free(f->path);
    free(f->data);
    free(f);
}

void syncer_write_file(struct syncer *sy, const char *path, const void *data, size_t len)
{
    struct syncer_file *f = xmalloc(sizeof *f);
    f->path = xstrdup(path);
    f->data = xmalloc(len + 1);
    memcpy(f->data, data, len);
    f->len = len;
    syncer_run(sy, syncer_file_job, f, syncer_file_done, f);
}
