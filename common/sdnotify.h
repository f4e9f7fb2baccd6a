/*
 * sdnotify: the client side of systemd's service protocols, so that a worker
 * runs the same under `hive up` and under systemd: socket activation
 * (LISTEN_FDS/LISTEN_PID, fd 3) and notifications (NOTIFY_SOCKET datagrams
 * READY=1, WATCHDOG=1, STOPPING=1; WATCHDOG_USEC).
 */
#ifndef HIVE_SDNOTIFY_H
#define HIVE_SDNOTIFY_H

#include <stdint.h>

#define SDNOTIFY_LISTEN_FDS_START 3

/* Number of sockets passed to this process (0 when none or meant for another
 * pid). The variables are removed from the environment so children don't
 * inherit them; the fds are made close-on-exec. */
int sdnotify_listen_fds(void);
/* Send STATE ("READY=1", ...) to $NOTIFY_SOCKET. 0 when sent or when there is
 * no socket to send to, -1 with errno on failure. */
int sdnotify_send(const char *state);
/* The watchdog interval in microseconds from $WATCHDOG_USEC (honouring
 * $WATCHDOG_PID), or 0 when there is no watchdog. */
uint64_t sdnotify_watchdog_usec(void);

#endif
