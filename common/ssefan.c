/*
 * ssefan: owns one writer thread, its epoll set and the lanes it writes (see
 * ssefan.h). Why a thread: a worker with 100 subscribers spent ~35 µs of
 * each ~300 µs task in the kernel copying the task's events into their
 * sockets (bench E2, perf: tcp_sendmsg), on the loop that also takes and
 * answers tasks, while the second core idled (vmstat: ~45 % idle). Moved
 * here, that copy runs beside the loop instead of in it.
 *
 * Locking: one mutex guards the lanes and their queues. The thread holds it
 * except around sendmsg and epoll_wait; while it writes a lane outside the
 * mutex the lane is `busy`, and ssefan_remove waits for that to end, so a
 * lane and the ranges in its queue are never freed under the thread. The
 * thread finds a blocked lane again by its descriptor (our own dup, which
 * lives as long as the lane); an event for a descriptor whose lane is gone
 * finds nothing, or a newer lane that then tries a write: harmless.
 */
#include "common/ssefan.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define SSEFAN_IOV 64    /* ranges per sendmsg */
#define SSEFAN_EVENTS 64 /* epoll events per wait */
#define SSEFAN_BUDGET 16 /* sendmsg calls per lane per pass: the others wait no longer */

struct ssefan_seg {
    const char *data;
    size_t len;
    size_t off; /* written so far */
    ssefan_cleanup cleanup;
    void *arg;
    struct ssefan_seg *next;
};

struct ssefan_lane {
    struct ssefan *fan;
    int fd; /* our dup of the connection's socket */
    struct ssefan_seg *head, **tail;
    size_t queued; /* bytes in the queue not written yet */
    bool busy;     /* the thread writes it, outside the mutex */
    bool blocked;  /* its socket was full: waits for EPOLLOUT */
    bool armed;    /* its descriptor is in the epoll set */
    bool dead;     /* its socket failed */
    bool on_dead;  /* in the list of deaths the loop has not been told of */
    ssefan_dead_cb dead_cb;
    void *arg;
    struct ssefan_lane *prev, *next; /* the fan's lanes */
    struct ssefan_lane *dead_next;
};

struct ssefan {
    struct event_base *base;
    pthread_mutex_t lock;
    pthread_cond_t idle; /* a lane stopped being busy */
    pthread_t thread;
    bool started;
    bool quit;
    bool sleeping; /* the thread waits in epoll_wait */
    bool woken;    /* ... and has been woken already */
    int epfd;      /* the thread's: WAKE and the blocked lanes */
    int wake;      /* eventfd, loop -> thread: there is more to write */
    int told;      /* eventfd, thread -> loop: a lane died */
    struct event *told_ev;
    struct ssefan_lane *lanes;
    struct ssefan_lane *dead_head, **dead_tail;
    struct ssefan_lane **by_fd; /* the lanes by descriptor, for epoll events */
    size_t by_fd_cap;
};

static void ssefan_told_cb(evutil_socket_t fd, short what, void *arg);

struct ssefan *ssefan_new(struct event_base *base)
{
    struct ssefan *f = xcalloc(1, sizeof *f);
    f->base = base;
    f->epfd = f->wake = f->told = -1;
    f->dead_tail = &f->dead_head;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->idle, NULL);
    return f;
}

/* Release every range of L's queue (mutex held, L not busy). */
static void ssefan_drop_queue(struct ssefan_lane *l)
{
    struct ssefan_seg *s = l->head;
    while (s) {
        struct ssefan_seg *next = s->next;
        if (s->cleanup)
            s->cleanup(s->data, s->len, s->arg);
        free(s);
        s = next;
    }
    l->head = NULL;
    l->tail = &l->head;
    l->queued = 0;
}

/* N bytes of L's queue went out: release the ranges they finish. */
static void ssefan_consume(struct ssefan_lane *l, size_t n)
{
    l->queued -= n;
    while (n > 0 && l->head) {
        struct ssefan_seg *s = l->head;
        size_t rest = s->len - s->off;
        if (n < rest) {
            s->off += n;
            return;
        }
        n -= rest;
        l->head = s->next;
        if (!l->head)
            l->tail = &l->head;
        if (s->cleanup)
            s->cleanup(s->data, s->len, s->arg);
        free(s);
    }
}

/* L's socket is full: have epoll say when it takes more (mutex held). */
static void ssefan_block(struct ssefan *f, struct ssefan_lane *l)
{
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT, .data.fd = l->fd};
    l->blocked = true;
    if (epoll_ctl(f->epfd, l->armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, l->fd, &ev) == 0) {
        l->armed = true;
        return;
    }
    /* Cannot wait for it (no memory for the epoll entry): try again at the
     * next wake rather than never. */
    l->blocked = false;
}

/* L's socket failed: drop its queue and tell the loop (mutex held). */
static void ssefan_die(struct ssefan *f, struct ssefan_lane *l)
{
    l->dead = true;
    ssefan_drop_queue(l);
    l->on_dead = true;
    l->dead_next = NULL;
    *f->dead_tail = l;
    f->dead_tail = &l->dead_next;
    uint64_t one = 1;
    if (write(f->told, &one, sizeof one) < 0) {
        /* Only fails when the counter is full: the loop is told already. */
    }
}

/* Write what L has queued until it is sent, the socket is full or the
 * budget is spent. Mutex held on entry and exit; released around sendmsg.
 * True when anything was written. */
static bool ssefan_write(struct ssefan *f, struct ssefan_lane *l)
{
    bool wrote = false;
    l->busy = true;
    for (int budget = SSEFAN_BUDGET; l->head && !l->dead && budget > 0; budget--) {
        struct iovec iov[SSEFAN_IOV];
        int n = 0;
        for (struct ssefan_seg *s = l->head; s && n < SSEFAN_IOV; s = s->next)
            iov[n++] = (struct iovec){(char *)s->data + s->off, s->len - s->off};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        int fd = l->fd;
        pthread_mutex_unlock(&f->lock);
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        int err = errno;
        pthread_mutex_lock(&f->lock);
        if (w > 0) {
            ssefan_consume(l, (size_t)w);
            wrote = true;
        } else if (w < 0 && err == EINTR) {
            continue;
        } else if (w == 0 || err == EAGAIN || err == EWOULDBLOCK) {
            ssefan_block(f, l);
            break;
        } else {
            ssefan_die(f, l);
            break;
        }
    }
    l->busy = false;
    pthread_cond_broadcast(&f->idle);
    return wrote;
}

/* The thread: passes over the lanes while any has something to write and a
 * socket that takes it, then sleep until woken or a socket drains. */
static void *ssefan_main(void *arg)
{
    struct ssefan *f = arg;
    struct epoll_event evs[SSEFAN_EVENTS];
    pthread_setname_np(pthread_self(), "hive-events");
    pthread_mutex_lock(&f->lock);
    while (!f->quit) {
        bool again = true;
        while (again && !f->quit) {
            again = false;
            for (struct ssefan_lane *l = f->lanes; l && !f->quit; l = l->next)
                if (l->head && !l->blocked && !l->dead)
                    again |= ssefan_write(f, l);
        }
        if (f->quit)
            break;
        f->sleeping = true;
        f->woken = false;
        pthread_mutex_unlock(&f->lock);
        int n = epoll_wait(f->epfd, evs, SSEFAN_EVENTS, -1);
        pthread_mutex_lock(&f->lock);
        f->sleeping = false;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == f->wake) {
                uint64_t v;
                if (read(f->wake, &v, sizeof v) < 0) {
                    /* Nothing to read: a spurious wake-up. */
                }
            } else if ((size_t)fd < f->by_fd_cap && f->by_fd[fd]) {
                f->by_fd[fd]->blocked = false;
            }
        }
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* Start the thread (signals stay with the loop's thread). -1 with errno. */
static int ssefan_start(struct ssefan *f)
{
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    f->told = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = f->wake};
    if (f->epfd < 0 || f->wake < 0 || f->told < 0 ||
        epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->wake, &ev) < 0)
        goto fail;
    f->told_ev = event_new(f->base, f->told, EV_READ | EV_PERSIST, ssefan_told_cb, f);
    if (!f->told_ev || event_add(f->told_ev, NULL) < 0)
        goto fail;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&f->thread, NULL, ssefan_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        errno = r;
        goto fail;
    }
    f->started = true;
    return 0;
fail:;
    int err = errno;
    if (f->told_ev)
        event_free(f->told_ev);
    f->told_ev = NULL;
    int *fds[] = {&f->epfd, &f->wake, &f->told};
    for (size_t i = 0; i < 3; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    errno = err;
    return -1;
}

struct ssefan_lane *ssefan_add(struct ssefan *f, int fd, ssefan_dead_cb dead, void *arg)
{
    if (!f->started && ssefan_start(f) < 0) {
        log_warn("event streams: no writer thread (%s); the loop writes them", strerror(errno));
        return NULL;
    }
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return NULL; /* out of descriptors: the caller writes itself */
    /* The dups never take more than the lowest quarter of the table: the
     * rest stays for connections and the files answers are written to. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)dfd >= rl.rlim_cur / 4) {
        close(dfd);
        return NULL;
    }
    struct ssefan_lane *l = xcalloc(1, sizeof *l);
    l->fan = f;
    l->fd = dfd;
    l->tail = &l->head;
    l->dead_cb = dead;
    l->arg = arg;
    pthread_mutex_lock(&f->lock);
    if ((size_t)dfd >= f->by_fd_cap) {
        size_t cap = f->by_fd_cap ? f->by_fd_cap : 64;
        while (cap <= (size_t)dfd)
            cap *= 2;
        f->by_fd = xrealloc(f->by_fd, cap * sizeof *f->by_fd);
        memset(f->by_fd + f->by_fd_cap, 0, (cap - f->by_fd_cap) * sizeof *f->by_fd);
        f->by_fd_cap = cap;
    }
    f->by_fd[dfd] = l;
    l->next = f->lanes;
    if (f->lanes)
        f->lanes->prev = l;
    f->lanes = l;
    pthread_mutex_unlock(&f->lock);
    return l;
}

void ssefan_push(struct ssefan_lane *l, const void *data, size_t len, ssefan_cleanup cleanup,
                 void *arg)
{
    struct ssefan *f = l->fan;
    struct ssefan_seg *s = xcalloc(1, sizeof *s);
    s->data = data;
    s->len = len;
    s->cleanup = cleanup;
    s->arg = arg;
    pthread_mutex_lock(&f->lock);
    if (l->dead || len == 0) {
        pthread_mutex_unlock(&f->lock);
        if (cleanup)
            cleanup(data, len, arg);
        free(s);
        return;
    }
    *l->tail = s;
    l->tail = &s->next;
    l->queued += len;
    bool wake = f->sleeping && !f->woken && !l->blocked;
    if (wake)
        f->woken = true;
    pthread_mutex_unlock(&f->lock);
    uint64_t one = 1;
    if (wake && write(f->wake, &one, sizeof one) < 0) {
        /* Only fails when the counter is full: the thread is woken already. */
    }
}

size_t ssefan_pending(struct ssefan_lane *l)
{
    pthread_mutex_lock(&l->fan->lock);
    size_t n = l->queued;
    pthread_mutex_unlock(&l->fan->lock);
    return n;
}

size_t ssefan_refused(struct ssefan_lane *l)
{
    pthread_mutex_lock(&l->fan->lock);
    size_t n = l->blocked ? l->queued : 0;
    pthread_mutex_unlock(&l->fan->lock);
    return n;
}

void ssefan_remove(struct ssefan_lane *l, ssefan_unsent_cb unsent, void *ctx)
{
    struct ssefan *f = l->fan;
    pthread_mutex_lock(&f->lock);
    while (l->busy)
        pthread_cond_wait(&f->idle, &f->lock);
    if (l->prev)
        l->prev->next = l->next;
    else
        f->lanes = l->next;
    if (l->next)
        l->next->prev = l->prev;
    f->by_fd[l->fd] = NULL;
    if (l->armed)
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    if (l->on_dead) {
        struct ssefan_lane **p = &f->dead_head;
        while (*p != l)
            p = &(*p)->dead_next;
        *p = l->dead_next;
        if (!*p)
            f->dead_tail = p;
    }
    struct ssefan_seg *s = l->head;
    l->head = NULL;
    pthread_mutex_unlock(&f->lock);
    close(l->fd);
    while (s) {
        struct ssefan_seg *next = s->next;
        if (unsent)
            unsent(ctx, s->data + s->off, s->len - s->off, s->cleanup, s->arg);
        else if (s->cleanup)
            s->cleanup(s->data, s->len, s->arg);
        free(s);
        s = next;
    }
    free(l);
}

/* The thread told us of dead lanes: tell their owners, one at a time (an
 * owner's callback may remove other lanes). */
static void ssefan_told_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ssefan *f = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof v) < 0) {
        /* Nothing to read: told already. */
    }
    for (;;) {
        pthread_mutex_lock(&f->lock);
        struct ssefan_lane *l = f->dead_head;
        ssefan_dead_cb cb = NULL;
        void *cb_arg = NULL;
        if (l) {
            f->dead_head = l->dead_next;
            if (!f->dead_head)
                f->dead_tail = &f->dead_head;
            l->on_dead = false;
            cb = l->dead_cb;
            cb_arg = l->arg;
        }
        pthread_mutex_unlock(&f->lock);
        if (!l)
            return;
        if (cb)
            cb(cb_arg);
    }
}

void ssefan_free(struct ssefan *f)
{
    if (!f)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->lock);
        f->quit = true;
        pthread_mutex_unlock(&f->lock);
        uint64_t one = 1;
        if (write(f->wake, &one, sizeof one) < 0) {
            /* The counter is full: the thread is woken already. */
        }
        pthread_join(f->thread, NULL);
    }
    while (f->lanes)
        ssefan_remove(f->lanes, NULL, NULL);
    if (f->told_ev)
        event_free(f->told_ev);
    int fds[] = {f->epfd, f->wake, f->told};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(f->by_fd);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->idle);
    free(f);
}
