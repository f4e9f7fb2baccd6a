/*
 * answers: the index of one bot's answered tasks by id (SPEC §3, §4). The
 * shared responses folder holds every bot's answers, so finding one by
 * reading it is a scan that grows with the hive's history; the index makes a
 * look-up one readlinkat(). It is a folder per bot,
 * .deia/hive/responses/.index/<BOT>/, with one symbolic link per answered id
 * whose target is the name of that id's newest response file (a link is
 * never followed: only its text is read).
 *
 * Consistency: an entry is written when a response gets its final name and
 * before its pending file goes (see store.h), and made durable with the
 * commit, so a crash between the two leaves the pending file for recovery,
 * which indexes it again (answers_recover). A missing index (first start,
 * or removed) is rebuilt from the responses folder, built aside and renamed
 * into place, so a crash while rebuilding leaves no partial index. A bot
 * that has no answer there has no index until its first record makes it
 * (absent is empty), so that its start makes no folder.
 */
#ifndef HIVE_ANSWERS_H
#define HIVE_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

#include "worker/response.h"

struct answers;

/* A task's newest answer, read back. */
struct answers_entry {
    char *name; /* the response file's name in the responses folder */
    char *text; /* its whole text */
    size_t len;
    struct response_view view; /* spans into TEXT */
};

/* The index of BOT_ID's answers in RESPONSES_DIR, rebuilt now if it is
 * missing and the folder holds answers of the bot (else made by the first
 * record); when it cannot be (a read-only folder), it is tried again at the
 * next record or look-up. */
struct answers *answers_open(const char *responses_dir, const char *bot_id);
void answers_free(struct answers *a);
/* TASK_ID's newest answer is now the response file NAME: point its entry
 * there. 0, or -errno. Ids that cannot be asked for (not valid task ids) are
 * not indexed. */
int answers_record(struct answers *a, const char *task_id, const char *name);
/* Make the entries recorded since the last call durable. 0 or -errno. */
int answers_sync(struct answers *a);
/* Recovery: PENDING_PATH is a whole response that has its final name (it
 * was linked, maybe just now by recovery) but may not be indexed yet: index
 * it unless a newer answer of its id is. 0, or -errno when it could not be
 * (keep the pending file to try again). */
int answers_recover(struct answers *a, const char *pending_path);
/* The name of TASK_ID's newest response into NAME (CAP bytes) and what it
 * says: 1 complete, 0 failed, -1 no answer. One readlinkat(). */
int answers_find(struct answers *a, const char *task_id, char *name, size_t cap);
/* Read TASK_ID's newest answer back into E (free with answers_entry_clear).
 * 0; -ENOENT when there is none (or its file is gone); -EBADMSG when the
 * file is not a whole response; -errno. */
int answers_load(struct answers *a, const char *task_id, struct answers_entry *e);
void answers_entry_clear(struct answers_entry *e);

#endif
