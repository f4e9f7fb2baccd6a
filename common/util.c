/*
 * util: small helpers shared by every program. Allocation failure is fatal
 * here so that callers never check; file helpers return -1 with errno.
 */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

/* Abort with a message: there is no sane way on from out-of-memory. */
static void util_oom(void)
{
    static const char msg[] = "hive: out of memory\n";
    ssize_t unused = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)unused;
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        util_oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        util_oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        util_oom();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        util_oom();
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        util_oom();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        util_oom();
    return s;
}

void util_authority(char *out, size_t cap, const char *host, int port)
{
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

void util_buf_grow(struct util_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

int64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t util_mono_ms(void)
{
    return util_mono_ns() / 1000000;
}

int64_t util_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Format UTC with milliseconds and a Z. */
void util_iso_utc(char *buf, size_t cap, int64_t wall_ns)
{
    time_t t = (time_t)(wall_ns / 1000000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03dZ", (int)(wall_ns / 1000000 % 1000));
}

/* Format local time without a zone, as DEIA's datetime.now().isoformat(). */
void util_iso_local(char *buf, size_t cap, int64_t wall_ns)
{
    time_t t = (time_t)(wall_ns / 1000000000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
}

static bool util_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool util_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (; id[n]; n++)
        if (n >= 64 || !util_id_char(id[n]))
            return false;
    return n > 0 && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

void util_sanitize(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool only_dots = true;
    for (; in && *in && n + 1 < cap; in++) {
        out[n++] = util_id_char(*in) ? *in : '_';
        if (*in != '.')
            only_dots = false;
    }
    out[n] = '\0';
    if (n == 0 || only_dots)
        snprintf(out, cap, "_");
}

void util_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    if (n > sizeof raw)
        n = sizeof raw;
    if (getrandom(raw, n, 0) != (ssize_t)n) {
        for (size_t i = 0; i < n; i++)
            raw[i] = (unsigned char)(util_mono_ns() >> (i % 8));
    }
    for (size_t i = 0; i < n; i++)
        out[i] = hex[raw[i] & 15];
    out[n] = '\0';
}

/* The work dir's worktrees lock, waited for (see util.h). */
int util_worktrees_lock(const char *work_dir)
{
    char *dir = xasprintf("%s/.deia/hive/locks", work_dir);
    char *path = xasprintf("%s/worktrees.lock", dir);
    int fd =
        util_mkdirs(dir) < 0 ? -1 : open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    while (fd >= 0 && flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            fd = -1;
            errno = e;
        }
    }
    free(path);
    free(dir);
    return fd;
}

bool util_absent(const char *path)
{
    struct stat st;
    return lstat(path, &st) < 0 && errno == ENOENT;
}

/* The kernel's struct sched_attr (linux/sched/types.h, its first version),
 * under a name of ours: newer glibc declares it in <sched.h>, older none. */
struct util_sched_attr {
    uint32_t size;
    uint32_t policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime; /* under SCHED_OTHER: the slice (0: the default) */
    uint64_t deadline;
    uint64_t period;
};
#define UTIL_SCHED_OTHER 0

/* The calling thread's attributes, or -1 when not under SCHED_OTHER or
 * with its children's scheduling reset at fork (a flag that
 * util_sched_slice_set would drop). */
static int util_sched_get(struct util_sched_attr *a)
{
    memset(a, 0, sizeof *a);
    if (syscall(SYS_sched_getattr, 0, a, (unsigned)sizeof *a, 0) < 0)
        return -1;
    if (a->policy != UTIL_SCHED_OTHER || a->flags != 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

uint64_t util_sched_slice(void)
{
    struct util_sched_attr a;
    return util_sched_get(&a) < 0 ? 0 : a.runtime;
}

int util_sched_slice_set(uint64_t ns)
{
    struct util_sched_attr a;
    if (util_sched_get(&a) < 0)
        return -1;
    struct util_sched_attr want = {
        .size = sizeof want, .policy = UTIL_SCHED_OTHER, .nice = a.nice, .runtime = ns};
    return syscall(SYS_sched_setattr, 0, &want, 0) < 0 ? -1 : 0;
}

/* mkdir -p: the leaf is tried first and parents are made only when it is
 * missing, so a path whose parents exist costs one mkdir, not one per
 * component (a worker's layout is a dozen folders deep under the work dir). */
int util_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    if (mkdir(buf, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -1;
    char *slash = strrchr(buf, '/');
    if (slash == NULL || slash == buf)
        return -1;
    *slash = '\0';
    if (util_mkdirs(buf) < 0)
        return -1;
    *slash = '/';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int util_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return r;
}

/* Write all of LEN bytes, retrying short writes. */
static int util_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int util_replace_file(const char *path, const void *data, size_t len, bool durable)
{
    char tmp[4200], dir[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (util_write_all(fd, data, len) < 0 || (durable && fsync(fd) < 0)) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return durable ? util_fsync_dir(dir) : 0;
}

int util_write_file_atomic(const char *path, const void *data, size_t len)
{
    return util_replace_file(path, data, len, true);
}

/* What kind of thing ST is, for a warning; NULL when it is ours to use (a
 * regular file of one name) or not to be replaced (a folder). */
static const char *util_file_kind(const struct stat *st)
{
    mode_t mode = st->st_mode;
    if (S_ISREG(mode))
        return st->st_nlink > 1 ? "a file with another name (a hard link)" : NULL;
    if (S_ISLNK(mode))
        return "a symlink";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return NULL; /* a folder: nothing to replace */
}

/* PATH, whose open with FLAGS failed with errno or gave FD (closed here)
 * that is no regular file: when what is there is something to replace,
 * remove it and make a new file. -1 with errno otherwise. */
static int util_open_replace(const char *path, int flags, mode_t mode, int fd)
{
    int e = errno;
    struct stat st;
    bool seen = fd >= 0 ? fstat(fd, &st) == 0 : lstat(path, &st) == 0;
    if (fd >= 0)
        close(fd);
    const char *kind = seen ? util_file_kind(&st) : NULL;
    if (!kind) { /* a folder, a file we may not open, nothing at all: the open's error */
        errno = e;
        return -1;
    }
    log_warn("%s was %s, not a file of ours: replaced by a new file, not written through", path,
             kind);
    if (unlink(path) < 0 && errno != ENOENT)
        return -1;
    flags &= ~(O_NONBLOCK | O_TRUNC);
    return open(path, flags | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
}

int util_open_append(const char *path, int flags, mode_t mode)
{
    int fd = -1;
    for (int tries = 0; tries < 2 && fd < 0; tries++) { /* once more when one raced us */
        fd = open(path, flags | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1)
            break;
        fd = util_open_replace(path, flags, mode, fd);
        if (fd < 0 && errno != EEXIST)
            return -1;
    }
    int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (fl >= 0 && (fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int util_proc_stat(pid_t pid, unsigned long long *cpu, unsigned long long *start)
{
    char path[64], text[1024];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    const char *p = strrchr(text, ')'); /* the command may hold spaces and parentheses */
    unsigned long long utime, stime, begun;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu",
                     &utime, &stime, &begun) != 3)
        return -1;
    if (cpu)
        *cpu = utime + stime;
    if (start)
        *start = begun;
    return 0;
}

int util_proc_stat_ids(const char *text, char *state, pid_t *ppid, pid_t *pgid)
{
    const char *p = strrchr(text, ')');
    char st;
    int pp, pg;
    if (!p || sscanf(p + 1, " %c %d %d", &st, &pp, &pg) != 3)
        return -1;
    if (state)
        *state = st;
    if (ppid)
        *ppid = pp;
    if (pgid)
        *pgid = pg;
    return 0;
}

char *util_read_file(const char *path, size_t max, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                free(buf);
                close(fd);
                errno = EFBIG;
                return NULL;
            }
            cap = cap * 2 > max ? max : cap * 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            free(buf);
            close(fd);
            errno = saved;
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

int util_set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

bool util_addr_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char buf[64];
    if (!host)
        return false;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int util_listen_tcp(const char *host, int port, char *err, size_t errlen)
{
    char service[16], name[64];
    snprintf(service, sizeof service, "%d", port);
    snprintf(name, sizeof name, "%s", host);
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
        memmove(name, name + 1, n - 2);
        name[n - 2] = '\0';
    }
    /* A numeric address (the default 127.0.0.1, any --bind a supervisor
     * passes) needs no resolver: getaddrinfo's set-up is a cost at every
     * worker start. A name still goes through it. */
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct addrinfo numeric = {.ai_socktype = SOCK_STREAM};
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = 0;
    if (port >= 0 && port <= 65535 && inet_pton(AF_INET, name, &sin.sin_addr) == 1) {
        numeric.ai_family = AF_INET;
        numeric.ai_addr = (struct sockaddr *)&sin;
        numeric.ai_addrlen = sizeof sin;
    } else if (port >= 0 && port <= 65535 && inet_pton(AF_INET6, name, &sin6.sin6_addr) == 1) {
        numeric.ai_family = AF_INET6;
        numeric.ai_addr = (struct sockaddr *)&sin6;
        numeric.ai_addrlen = sizeof sin6;
    } else {
        gai = getaddrinfo(name, service, &hints, &ai);
    }
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        errno = EINVAL;
        return -1;
    }
    const struct addrinfo *use = ai ? ai : &numeric;
    int fd = socket(use->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, use->ai_addr, use->ai_addrlen) < 0 || listen(fd, 511) < 0) {
        int saved = errno;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
                 saved == EADDRINUSE ? "address already in use" : strerror(saved));
        if (fd >= 0)
            close(fd);
        if (ai)
            freeaddrinfo(ai);
        errno = saved;
        return -1;
    }
    if (ai)
        freeaddrinfo(ai);
    return fd;
}

/* The soft limit util_nofile_raise() found (process-wide, like the limit). */
static struct rlimit util_nofile_found;
static bool util_nofile_raised;

int util_nofile_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > UTIL_NOFILE_MAX
                      ? (rlim_t)UTIL_NOFILE_MAX
                      : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return 0;
    struct rlimit raised = {want, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
        return -1;
    util_nofile_found = rl;
    util_nofile_raised = true;
    return 0;
}

void util_nofile_restore(void)
{
    if (util_nofile_raised)
        setrlimit(RLIMIT_NOFILE, &util_nofile_found);
}

int util_listen_local(char name[UTIL_LOCAL_NAME_MAX])
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    socklen_t len = sizeof un;
    sa_family_t family = AF_UNIX;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Binding only the family asks the kernel for a unique abstract name. */
    if (bind(fd, (struct sockaddr *)&family, sizeof family) < 0 || listen(fd, 511) < 0 ||
        getsockname(fd, (struct sockaddr *)&un, &len) < 0)
        goto fail;
    size_t n = len - offsetof(struct sockaddr_un, sun_path);
    if (n < 2 || n > UTIL_LOCAL_NAME_MAX || un.sun_path[0] != '\0') {
        errno = EPROTO;
        goto fail;
    }
    for (size_t i = 1; i < n; i++)
        if (un.sun_path[i] <= ' ' || un.sun_path[i] > '~') {
            errno = EPROTO;
            goto fail;
        }
    memcpy(name, un.sun_path + 1, n - 1);
    name[n - 1] = '\0';
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

socklen_t util_local_addr(const char *name, struct sockaddr_storage *addr)
{
    struct sockaddr_un *un = (struct sockaddr_un *)addr;
    size_t n = strlen(name);
    if (n == 0 || n + 1 > sizeof un->sun_path)
        return 0;
    memset(addr, 0, sizeof *addr);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

int util_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}
