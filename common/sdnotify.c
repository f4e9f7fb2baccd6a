/*
 * sdnotify: talks systemd's notify and socket-activation protocols without
 * libsystemd. The supervisor implements the other side (supervisor/), so the
 * wire format here is the contract between the two.
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

int sdnotify_listen_fds(void)
{
    long pid = sdnotify_env_long("LISTEN_PID");
    long n = sdnotify_env_long("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != (long)getpid() || n <= 0)
        return 0;
    for (int fd = SDNOTIFY_LISTEN_FDS_START; fd < SDNOTIFY_LISTEN_FDS_START + n; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0)
            return -1;
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
    return (int)n;
}

int sdnotify_send(const char *state)
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
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t r = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int saved = errno;
    close(fd);
    errno = saved;
    return r < 0 ? -1 : 0;
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
