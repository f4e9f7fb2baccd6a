/*
 * watchlimit: room for one inotify instance per bot that watches its file
 * queue. The kernel allows fs.inotify.max_user_instances (128 by default)
 * per user, all of that user's processes together; a worker that gets none
 * finds its task files by the queue's 30 s rescan only.
 */
#ifndef HIVE_WATCHLIMIT_H
#define HIVE_WATCHLIMIT_H

#include <stddef.h>

/* The kernel's knob. */
#define WATCHLIMIT_PROC "/proc/sys/fs/inotify/max_user_instances"

/* Make sure the limit at PATH leaves WATCHING instances for the bots besides
 * what the user's other programs use: raise it when we may (root; logged),
 * otherwise warn loudly with the command that would. 1 raised, 0 enough
 * already, -1 short (warned). */
int watchlimit_ensure(const char *path, size_t watching);

#endif
