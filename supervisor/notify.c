/*
 * notify: NOTIFY_SOCKET datagrams in (see notify.h). The keys read are
 * READY=1, WATCHDOG=1, STOPPING=1, FDSTORE=1, FDSTOREREMOVE=1, FDNAME= and
 * hive's own HIVE_NOWATCH=; others are ignored, as systemd ignores keys it
 * does not know.
 */
#include "supervisor/notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

#define NOTIFY_MAX 4096
#define NOTIFY_BATCH 64 /* datagrams read per wakeup, so others get a turn */

struct notify {
    int fd;
    char name[80]; /* "@hive-notify-PID-RANDOM", abstract */
    struct event *ev;
    notify_cb cb;
    void *arg;
};

void notify_parse(char *buf, struct notify_msg *m)
{
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strcmp(l, "READY=1") == 0)
            m->ready = true;
        else if (strcmp(l, "WATCHDOG=1") == 0)
            m->watchdog = true;
        else if (strcmp(l, "STOPPING=1") == 0)
            m->stopping = true;
        else if (strcmp(l, "FDSTORE=1") == 0)
            m->fdstore = true;
        else if (strcmp(l, "FDSTOREREMOVE=1") == 0)
            m->fdstore_remove = true;
        else if (strncmp(l, "FDNAME=", 7) == 0)
            m->fdname = l + 7;
        else if (strncmp(l, "HIVE_NOWATCH=", 13) == 0)
            m->nowatch = l + 13;
    }
}

/* The sender (SCM_CREDENTIALS) and passed descriptors (SCM_RIGHTS) of MH. */
static void notify_sender(struct msghdr *mh, struct notify_msg *m)
{
    m->truncated = (mh->msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            m->pid = cred.pid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                if (m->n_fds < NOTIFY_FDS)
                    m->fds[m->n_fds++] = fd;
                else
                    close(fd);
            }
        }
    }
}

/* Close the descriptors of M that nobody kept. */
static void notify_close_fds(struct notify_msg *m)
{
    for (size_t i = 0; i < m->n_fds; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
}

/* Read one datagram and hand it on; false when none is left. */
static bool notify_read_one(struct notify *n)
{
    char buf[NOTIFY_MAX + 1];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(NOTIFY_FDS * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, NOTIFY_MAX};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t len = recvmsg(n->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (len < 0)
        return errno == EINTR;
    buf[len] = '\0';
    struct notify_msg m;
    memset(&m, 0, sizeof m);
    notify_sender(&mh, &m);
    notify_parse(buf, &m);
    n->cb(n->arg, &m);
    notify_close_fds(&m);
    return true;
}

/* The socket is readable: a batch of datagrams. */
static void notify_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    notify_drain(arg);
}

void notify_drain(struct notify *n)
{
    for (int i = 0; i < NOTIFY_BATCH && notify_read_one(n); i++)
        ;
}

/* Bind N's socket to an abstract name unique to this supervisor. */
static int notify_bind(struct notify *n, char *err, size_t errlen)
{
    char rnd[17];
    int one = 1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    util_random_hex(rnd, 16);
    snprintf(n->name, sizeof n->name, "@hive-notify-%d-%s", (int)getpid(), rnd);
    size_t len = strlen(n->name);
    memcpy(sa.sun_path, n->name, len);
    sa.sun_path[0] = '\0';
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (n->fd < 0 || setsockopt(n->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ||
        bind(n->fd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
        snprintf(err, errlen, "cannot create the notify socket: %s", strerror(errno));
        return -1;
    }
    return 0;
}

struct notify *notify_new(struct event_base *base, notify_cb cb, void *arg, char *err,
                          size_t errlen)
{
    struct notify *n = xcalloc(1, sizeof *n);
    n->cb = cb;
    n->arg = arg;
    if (notify_bind(n, err, errlen) < 0) {
        notify_free(n);
        return NULL;
    }
    n->ev = event_new(base, n->fd, EV_READ | EV_PERSIST, notify_read_cb, n);
    event_add(n->ev, NULL);
    return n;
}

const char *notify_name(const struct notify *n)
{
    return n->name;
}

void notify_free(struct notify *n)
{
    if (!n)
        return;
    if (n->ev)
        event_free(n->ev);
    if (n->fd >= 0)
        close(n->fd);
    free(n);
}
