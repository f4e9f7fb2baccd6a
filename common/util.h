/*
 * util: allocation that never fails (it aborts), time helpers, ids and the
 * durable-file primitives (write, fsync, rename) every process needs.
 */
#ifndef HIVE_UTIL_H
#define HIVE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "HOST:PORT" into OUT (CAP bytes), an IPv6 HOST in brackets: a URL's or a
 * Host header's authority. */
void util_authority(char *out, size_t cap, const char *host, int port);
/* Room for an authority of a DNS name (253) or an address, and a port. */
#define UTIL_AUTHORITY_MAX 272

/* A growing byte buffer: DATA holds LEN bytes and, once anything was added,
 * a NUL after them. All zeros is an empty buffer; free(DATA) releases it. */
struct util_buf {
    char *data;
    size_t len, cap;
};
/* Make room for MORE bytes and the NUL (util_buf_add's rare path). */
void util_buf_grow(struct util_buf *b, size_t more);
/* Append LEN bytes of DATA to B. */
static inline void util_buf_add(struct util_buf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap)
        util_buf_grow(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Monotonic clock in nanoseconds and milliseconds. */
int64_t util_mono_ns(void);
int64_t util_mono_ms(void);
/* Wall clock in nanoseconds since the epoch. */
int64_t util_wall_ns(void);
/* Format UTC "2026-01-02T03:04:05.678Z" (at least 32 bytes). */
void util_iso_utc(char *buf, size_t cap, int64_t wall_ns);
/* Format local "2026-01-02T03:04:05" (at least 32 bytes). */
void util_iso_local(char *buf, size_t cap, int64_t wall_ns);

/* True when ID matches [A-Za-z0-9._-]{1,64} and is not "." or "..". */
bool util_id_valid(const char *id);
/* Copy IN to OUT keeping [A-Za-z0-9._-], others become '_'; never empty
 * (an empty or dot-only result becomes "_"). */
void util_sanitize(const char *in, char *out, size_t cap);
/* Fill OUT with N random lowercase hex characters and a NUL. */
void util_random_hex(char *out, size_t n);

/* mkdir -p with mode 0755; 0 or -1 with errno. */
int util_mkdirs(const char *path);
/* The lock every hive process takes around git's worktree bookkeeping of
 * WORK_DIR's repository (`git worktree add`, `remove`, `prune`): one
 * writer's prune would remove another's half-made entry. It waits for the
 * lock (.deia/hive/locks/worktrees.lock, an flock released with its holder
 * even when killed); close the descriptor to release it. -1 with errno when
 * it cannot be had (the caller then goes on unlocked). */
int util_worktrees_lock(const char *work_dir);
/* fsync a directory by path; 0 or -1 with errno. */
int util_fsync_dir(const char *path);
/* Write DATA to PATH through a temp file in the same folder, fsync, rename
 * over PATH, fsync the folder. 0 or -1 with errno. */
int util_write_file_atomic(const char *path, const void *data, size_t len);
/* The same; with DURABLE false, without the fsyncs (atomic, not durable). */
int util_replace_file(const char *path, const void *data, size_t len, bool durable);
/* Open PATH for appending (O_APPEND | O_CREAT, MODE) with FLAGS (O_WRONLY
 * or O_RDWR, and any others), never through what someone else planted
 * there: a symlink, FIFO, socket, device or hard link (a regular file with
 * another name too) at PATH is removed (the entry,
 * never what it points to) with a warning naming it, and a new regular file
 * made with O_EXCL in its place. Opening never blocks (a FIFO waits for no
 * reader); the descriptor returned is blocking and close-on-exec. -1 with
 * errno when no regular file can be had (a directory is there, say). */
int util_open_append(const char *path, int flags, mode_t mode);
/* Read a whole file (at most MAX bytes, else -1 with EFBIG); NUL-terminated. */
char *util_read_file(const char *path, size_t max, size_t *len_out);
/* From /proc/PID/stat (PID 0: this process), in clock ticks: the CPU it used
 * (utime + stime) into *CPU and when it started, after boot, into *START
 * (either may be NULL). 0, or -1 (no such process, unreadable). */
int util_proc_stat(pid_t pid, unsigned long long *cpu, unsigned long long *start);
/* The state, parent and process group (each may be NULL) in TEXT, the
 * contents of a /proc/PID/stat: read after the command's closing
 * parenthesis, as the command may hold anything. 0, or -1 when TEXT is not
 * one. */
int util_proc_stat_ids(const char *text, char *state, pid_t *ppid, pid_t *pgid);
/* True for 127.0.0.0/8, ::1, [::1] and "localhost". */
bool util_addr_is_loopback(const char *host);
/* Bind and listen on HOST:PORT (PORT 0: the kernel picks), non-blocking and
 * close-on-exec. Returns the fd, or -1 with errno and a reason in ERR. */
int util_listen_tcp(const char *host, int port, char *err, size_t errlen);
/* Raise this process' soft limit on open descriptors to its hard limit (at
 * most UTIL_NOFILE_MAX), as a server of many sockets must; the soft limit it
 * had is kept for util_nofile_restore(). 0, or -1 with errno. */
int util_nofile_raise(void);
#define UTIL_NOFILE_MAX (1 << 20)
/* In a child, before exec (async-signal-safe): the soft limit
 * util_nofile_raise() found, so the programs we start get what the user set
 * (as systemd does for its services' children). */
void util_nofile_restore(void);
/* The calling thread's slice under SCHED_OTHER in ns (EEVDF's request size:
 * the kernel's default unless one was asked for); 0 under another policy, or
 * before Linux 6.12, which has no slices to tell. */
uint64_t util_sched_slice(void);
/* Ask for a slice of NS for the calling thread under SCHED_OTHER (0: the
 * kernel's default again), its nice value kept. Kernels before 6.12 take it
 * and ignore it. 0, or -1 with errno (EPERM: not under SCHED_OTHER, or its
 * children's scheduling is reset at fork). */
int util_sched_slice_set(uint64_t ns);
/* The kernel's shortest slice: the supervisor's while it starts bots
 * (supervisor/hive.c), a worker's sync thread's (worker/syncer.c). */
#define UTIL_SCHED_SLICE_BRISK 100000ULL
/* True when nothing at all is at PATH (not even a link): a file made by its
 * first use is not made yet. */
bool util_absent(const char *path);
/* Longest name util_listen_local() gives, with its NUL. */
#define UTIL_LOCAL_NAME_MAX 32
/* Listen on a new Unix stream socket in the abstract namespace under a name
 * the kernel picks (no file to clean up; gone with its last descriptor),
 * non-blocking and close-on-exec. Returns the fd with the name (printable,
 * without the leading NUL) in NAME, or -1 with errno. */
int util_listen_local(char name[UTIL_LOCAL_NAME_MAX]);
/* The address of abstract socket NAME for connect(); its length, or 0 when
 * NAME is empty or too long. */
socklen_t util_local_addr(const char *name, struct sockaddr_storage *addr);
/* The local port of a bound socket, or -1. */
int util_socket_port(int fd);
/* Set O_NONBLOCK and FD_CLOEXEC. */
int util_set_nonblock_cloexec(int fd);

#endif
