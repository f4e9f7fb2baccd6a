/*
 * sdnotify: talks systemd's notify, socket-activation and fd-store protocols
 * without libsystemd. The supervisor implements the other side (supervisor/),
 * so the wire format here is the contract between the two.
 */
#include "common/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* More passed descriptors than this is a broken environment, not a gift. */
#define SDNOTIFY_LISTEN_FDS_MAX 4096

/* Parse a decimal environment variable; -1 when unset or malformed. */
static long sdnotify_env_long(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < 0)
        return -1;
    return n;
}

int sdnotify_fdnames_index(const char *fdnames, int n, const char *name)
{
    size_t want = strlen(name);
    int index = -1, count = 0;
    for (const char *p = fdnames; p; count++) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (index < 0 && len == want && memcmp(p, name, len) == 0)
            index = count;
        p = colon ? colon + 1 : NULL;
    }
    /* As sd_listen_fds_with_names: names that do not match the fds in
     * number describe nothing. */
    return count == n ? index : -1;
}

int sdnotify_listen_fds_named(const char *name, int *named)
{
    long pid = sdnotify_env_long("LISTEN_PID");
    long n = sdnotify_env_long("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    bool ours = pid == (long)getpid() && n > 0 && n <= SDNOTIFY_LISTEN_FDS_MAX;
    int index = ours && names && name ? sdnotify_fdnames_index(names, (int)n, name) : -1;
    *named = -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!ours)
        return 0;
    for (int fd = SDNOTIFY_LISTEN_FDS_START; fd < SDNOTIFY_LISTEN_FDS_START + n; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0)
            return -1;
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
    if (index >= 0)
        *named = SDNOTIFY_LISTEN_FDS_START + index;
    return (int)n;
}

int sdnotify_listen_fds(void)
{
    int unused;
    return sdnotify_listen_fds_named(NULL, &unused);
}

/* Send STATE to $NOTIFY_SOCKET, with descriptor FD attached unless it is -1. */
static int sdnotify_sendmsg(const char *state, int fd)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {(void *)state, strlen(state)};
    struct msghdr mh = {.msg_name = &sa,
                        .msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len),
                        .msg_iov = &iov,
                        .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof ctl.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    /* One socket for the process' life: a watchdog ping of an idle worker is
     * then one system call, not three (at 1,000 idle bots these wake-ups are
     * the hive's idle CPU). Close-on-exec, so no task inherits it. */
    static int s = -1;
    if (s < 0 && (s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    /* Never wait: a service manager that is not reading (stopped with
     * Ctrl-Z) must not freeze us. A full socket is EAGAIN to the caller. */
    ssize_t r = sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    return r < 0 ? -1 : 0;
}

int sdnotify_send(const char *state)
{
    return sdnotify_sendmsg(state, -1);
}

int sdnotify_send_fd(const char *state, int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    return sdnotify_sendmsg(state, fd);
}

long sdnotify_fdstore_max(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    long n = sdnotify_env_long("FDSTORE");
    return path && *path && n > 0 ? n : 0;
}

bool sdnotify_fd_is_anon(int fd, const char *kind)
{
    char link[64], target[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return strncmp(target, "anon_inode:", 11) == 0 && strcmp(target + 11, kind) == 0;
}

uint64_t sdnotify_watchdog_usec(void)
{
    long pid = sdnotify_env_long("WATCHDOG_PID");
    if (pid >= 0 && pid != (long)getpid())
        return 0;
    const char *v = getenv("WATCHDOG_USEC");
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end ? 0 : (uint64_t)n;
}
