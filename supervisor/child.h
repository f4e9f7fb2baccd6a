/*
 * child: starts one worker process the way systemd starts a socket-activated
 * Type=notify service, so the same worker binary runs under both: its own
 * process group, its descriptors from fd 3 up with LISTEN_FDS/LISTEN_PID
 * and LISTEN_FDNAMES (the listening socket first, then e.g. the proxy's
 * private socket and what its previous run left in the fd store),
 * NOTIFY_SOCKET (and WATCHDOG_USEC, FDSTORE) for its notifications, stdout
 * and stderr into a pipe the supervisor reads, stdin from /dev/null and no
 * other descriptor. It also finds the hive-worker binary. No libevent and no
 * logging here: errors come back in a buffer.
 */
#ifndef HIVE_CHILD_H
#define HIVE_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The exit status of a child that could not exec a program that is not
 * there or not runnable: permanent, like a configuration error. */
#define CHILD_EXIT_NOEXEC 78

/* Most descriptors handed to a worker (LISTEN_FDS). */
#define CHILD_FDS_MAX 4

/* Most cgroup v1 hierarchies a worker joins (memory, cpu, pids). */
#define CHILD_V1_MAX 3

/* One descriptor handed over, and its name in LISTEN_FDNAMES. */
struct child_fd {
    int fd;
    const char *name; /* "listen", "proxy", "inotify": no ':' */
};

/* What to start. */
struct child_spec {
    const char *path;  /* the program */
    char *const *argv; /* argv[0] included, NULL-terminated */
    /* Handed over from fd 3 up in this order (LISTEN_FDS, LISTEN_FDNAMES);
     * the first is the listening socket. */
    struct child_fd fds[CHILD_FDS_MAX];
    size_t n_fds;
    const char *notify_socket; /* NOTIFY_SOCKET, "@name" for an abstract socket */
    uint64_t watchdog_usec;    /* WATCHDOG_USEC; 0: none */
    const char *token;         /* HIVE_TOKEN; NULL removes it */
    const char *token_env;     /* the roster's token variable, removed (the worker has
                                  HIVE_TOKEN); NULL: none */
    const char *cgroup_dir;    /* a cgroup v2 to start the worker in; NULL: ours */
    /* cgroup v1 groups (memory, cpu, pids limits) to start it in; NULL-ended. */
    const char *cgroup_v1_dirs[CHILD_V1_MAX + 1];
    char *const *env;  /* "NAME=value" set first (the hive's own variables win); or NULL */
    const char *user;  /* run as this user (we are root); NULL: as we are */
    const char *group; /* with this group; NULL: the user's primary group */
};

/* The hive-worker to run: $HIVE_WORKER_BIN, else next to this executable,
 * else ../worker/ of it (the build tree). Caller frees; NULL with the places
 * tried in ERR. */
char *child_worker_path(char *err, size_t errlen);
/* Reserve a few low descriptor numbers for child_spawn, early (before the
 * bots' descriptors): a spawn then hands the worker its descriptors through
 * them and the child copies only the descriptors below them, not the
 * supervisor's whole table (a spawn's cost no longer grows with the number
 * of bots). Without it (or on a kernel without CLOSE_RANGE_UNSHARE) a
 * spawn copies the table and closes all of it in the child. */
void child_reserve_fds(void);
/* Fork and exec SPEC in a new process group. Returns the pid with *OUT_FD the
 * read end of its output pipe (non-blocking, close-on-exec), or -1 with a
 * reason in ERR. */
pid_t child_spawn(const struct child_spec *spec, int *out_fd, char *err, size_t errlen);

/* Make the layout folders of bot BOT_ID in WORK_DIR usable by USER (and
 * GROUP, else the user's primary group) before its worker drops to that
 * user: the bot's own folders and files are given to it, the folders all
 * bots share get mode 1777 (anyone may create, only the owner remove, as
 * /tmp). -1 with a reason in ERR. */
int child_hand_over_layout(const char *work_dir, const char *bot_id, const char *user,
                           const char *group, char *err, size_t errlen);

/* What /proc shows of process PID's main thread right now. */
enum child_look {
    CHILD_UNSEEN = -1, /* we may not look (ptrace rules, hidepid) */
    CHILD_BUSY = 0,    /* running, in another call, stopped, or gone */
    CHILD_WAITING = 1, /* asleep in epoll_wait: its event loop waits for work */
};
/* Look at PID: a worker that is asleep in its event loop's epoll_wait is
 * not hung, whether or not it sent a keep-alive lately. */
enum child_look child_look(pid_t pid);
/* How many times PID's main thread went to sleep of its own accord
 * (voluntary context switches): it moves while an event loop turns; -1. */
long long child_sleeps(pid_t pid);

#endif
