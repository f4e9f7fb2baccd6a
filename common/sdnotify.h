/*
 * sdnotify: the client side of systemd's service protocols, so that a worker
 * runs the same under `hive up` and under systemd: socket activation
 * (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, fds from 3), notifications
 * (NOTIFY_SOCKET datagrams READY=1, WATCHDOG=1, STOPPING=1; WATCHDOG_USEC) and
 * the file-descriptor store (FDSTORE=1 + FDNAME= with the fd attached,
 * FDSTOREREMOVE=1; $FDSTORE; stored fds come back by name in LISTEN_FDNAMES).
 */
#ifndef HIVE_SDNOTIFY_H
#define HIVE_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#define SDNOTIFY_LISTEN_FDS_START 3

/* Number of descriptors passed to this process (0 when none or meant for
 * another pid). The variables are removed from the environment so children
 * don't inherit them; the fds are made close-on-exec. */
int sdnotify_listen_fds(void);
/* sdnotify_listen_fds, and in *NAMED the passed fd that $LISTEN_FDNAMES names
 * NAME (-1 when none is). */
int sdnotify_listen_fds_named(const char *name, int *named);
/* The index of NAME among the first N colon-separated names of FDNAMES (a
 * $LISTEN_FDNAMES value), or -1 when it is not one of them. */
int sdnotify_fdnames_index(const char *fdnames, int n, const char *name);
/* Send STATE ("READY=1", ...) to $NOTIFY_SOCKET, never waiting. 0 when sent
 * or when there is no socket to send to, -1 with errno on failure (EAGAIN:
 * the receiver's queue is full; a state that must arrive is sent again
 * later by the caller). */
int sdnotify_send(const char *state);
/* sdnotify_send with descriptor FD attached (SCM_RIGHTS), as systemd's
 * sd_pid_notify_with_fds: "FDSTORE=1\nFDNAME=NAME\n" asks the service manager
 * to keep FD and pass it back, named, to the next instance of the service. */
int sdnotify_send_fd(const char *state, int fd);
/* How many descriptors the service manager keeps for us ($FDSTORE, with a
 * $NOTIFY_SOCKET to send them to); 0 when there is no store. */
long sdnotify_fdstore_max(void);
/* Whether FD is an anonymous inode of KIND ("inotify", "eventfd", ...): how a
 * receiver checks that a named descriptor is what its name says. */
bool sdnotify_fd_is_anon(int fd, const char *kind);
/* The watchdog interval in microseconds from $WATCHDOG_USEC (honouring
 * $WATCHDOG_PID), or 0 when there is no watchdog. */
uint64_t sdnotify_watchdog_usec(void);

#endif
