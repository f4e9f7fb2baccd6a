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
 * the IN_USE the user's other programs hold now and WATCHLIMIT_HEADROOM
 * more: raise it when we may (root; logged), otherwise warn loudly with the
 * command that would. 1 raised, 0 enough already, -1 short (warned). */
int watchlimit_ensure(const char *path, size_t watching, size_t in_use);

/* The inotify instances held now by the processes under PROC (a /proc)
 * that run as our effective user, ours and our children's left out (our
 * bots are counted by WATCHING; a reload finds them running). An instance
 * two processes share is counted twice: a limit a little high is harmless. */
size_t watchlimit_in_use(const char *proc);

#endif
