/*
 * gitfiles: what a task changed in the adapter's folder, from git (SPEC
 * §2.2 "## Files Modified", §12). Before each task the engine asks for a
 * baseline (`git status` and HEAD); after it, the changes since then. A path
 * is listed when its status line is new, changed, or gone (a file dirty
 * before the task is listed only if the task changed it again: its status
 * or its size and modification time differ), plus every file of the commits
 * the task made (HEAD moved: `git diff --name-only OLD NEW`). git runs as a
 * child process with an argv (no shell), read from the event loop, never
 * waited for on it, killed at GITFILES_TIMEOUT_S; GIT_OPTIONAL_LOCKS=0 keeps
 * it from taking the index lock an agent's own git may want. Paths are
 * relative to the checkout's root, over the whole checkout; hive's own
 * files (any .deia folder) are never listed.
 */
#ifndef HIVE_GITFILES_H
#define HIVE_GITFILES_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#define GITFILES_TIMEOUT_S 10 /* one git call */
#define GITFILES_MAX_LIST 200 /* paths listed; beyond: "... and N more" */

struct gitfiles;

/* When a baseline or the changes are ready (or git failed: then the list is
 * empty and the failure logged). */
typedef void (*gitfiles_cb)(void *arg);

/* Follow DIR, or NULL when DIR is not inside a git checkout (no .git in it
 * or above it) — a plain folder lists nothing, as before — or is a folder
 * git ignores (asked once, here: call it before the loop serves). */
struct gitfiles *gitfiles_new(struct event_base *base, const char *dir);
/* Kill a git that runs (its callback is not called) and free. */
void gitfiles_free(struct gitfiles *g);
/* True when a baseline was taken since the last changes were asked. */
bool gitfiles_ready(const struct gitfiles *g);
/* True while git runs. */
bool gitfiles_busy(const struct gitfiles *g);
/* Take the baseline; CB(ARG) once done. Nothing when busy. */
void gitfiles_baseline(struct gitfiles *g, gitfiles_cb cb, void *arg);
/* Find what changed since the baseline; CB(ARG) once done, then take the
 * list with gitfiles_take. */
void gitfiles_changes(struct gitfiles *g, gitfiles_cb cb, void *arg);
/* The last changes found: *N paths (one line each, control characters
 * replaced; the last may be "... and K more"), NULL-terminated, the
 * caller's to free (each, then the array). */
char **gitfiles_take(struct gitfiles *g, size_t *n);
/* Stop what runs without calling back (a stop's grace ran out). */
void gitfiles_cancel(struct gitfiles *g);

/* Paths of a `git status --porcelain=v2 -z --branch` output (for tests):
 * calls FN for HEAD's oid (path NULL) and each entry (XY, path). -1 when the
 * output is malformed. */
int gitfiles_parse_status(const char *out, size_t len,
                          void (*fn)(const char *xy, const char *path, void *arg), void *arg);

#endif
