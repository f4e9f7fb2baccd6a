/*
 * task: the one record a task is, whatever door it came through. Owned by the
 * engine from acceptance to archive.
 */
#ifndef HIVE_TASK_H
#define HIVE_TASK_H

#include <stdbool.h>
#include <stdint.h>

enum task_source { TASK_SOURCE_FILE, TASK_SOURCE_HTTP, TASK_SOURCE_WEBSOCKET };

/* "file", "http" or "websocket". */
const char *task_source_name(enum task_source source);

#endif
