/*
 * botlock: one worker per bot per work dir (SPEC §1). The lock is a flock(2)
 * on .deia/hive/locks/<BOT-ID>.lock, with the holder's pid written inside so
 * that a refused worker can name it.
 */
#ifndef HIVE_BOTLOCK_H
#define HIVE_BOTLOCK_H

#include <stddef.h>
#include <sys/types.h>

/* Take BOT_ID's lock under WORK_DIR: its descriptor (close-on-exec, so no
 * adapter holds it; the kernel drops it when this process dies). -1 with the
 * reason in ERR; then *HOLDER is the pid that holds it, or 0 when the lock
 * could not be taken for another reason (or the holder is not known). */
int botlock_take(const char *work_dir, const char *bot_id, pid_t *holder, char *err, size_t errlen);

#endif
