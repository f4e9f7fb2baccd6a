/*
 * taskfile: parse a task file of the file queue (SPEC §2.1): YAML front matter
 * (through libyaml) or plain markdown with **Field:** lines. Pure: bytes in,
 * struct out; never logs, never touches the disk.
 */
#ifndef HIVE_TASKFILE_H
#define HIVE_TASKFILE_H

#include <stddef.h>

struct taskfile {
    char *task_id;     /* front matter task_id, else the file stem */
    char *from;        /* default "unknown" */
    char *to;          /* default the bot id */
    char *priority;    /* as written, default "P2" */
    int priority_rank; /* the digit after "P" (any case), 10 when there is none */
    char *created_at;  /* NULL when absent */
    char *content;     /* body after the front matter, or the whole file */
};

/* Parse LEN bytes of DATA. STEM is the file name without ".md"; BOT_ID fills
 * the default "to". A UTF-8 BOM is skipped and CRLF is accepted. Returns 0, or
 * -1 with a reason in ERR (invalid UTF-8, NUL bytes, malformed or non-mapping
 * front matter, an unterminated front matter, a field of the wrong type, an
 * empty task, a task id that task_id_valid() refuses) and TF cleared. */
int taskfile_parse(const char *data, size_t len, const char *stem, const char *bot_id,
                   struct taskfile *tf, char *err, size_t errlen);
/* Free the fields of TF. */
void taskfile_clear(struct taskfile *tf);
/* The digit right after "P" (also "p3", " P1 ", "P0 (BLOCKING)"), 10 when
 * there is none. */
int taskfile_priority_rank(const char *priority);

#endif
