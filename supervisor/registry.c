/*
 * registry: .deia/hive/registry.json, DEIA-compatible (see registry.h). Our
 * entries carry metadata.managed_by "hive", so a write replaces exactly
 * those and keeps every other tool's; times are written as DEIA writes them
 * (naive local ISO 8601 with microseconds).
 */
#include "supervisor/registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define REGISTRY_REFRESH_S 60 /* DEIA calls an entry stale after 300 s */
#define REGISTRY_READ_MAX (16 * 1024 * 1024)
#define REGISTRY_GAP_MS 250   /* between writes: a 1,000-bot file is 233 KB */
#define REGISTRY_OWNER "hive" /* metadata.managed_by of our entries */

struct registry {
    registry_entry_fn entry;
    void *arg;
    char *path;
    char *name;
    json_t *foreign;    /* the other tools' entries, as last read */
    json_t *base;       /* the file as we last wrote it, without our entries */
    struct stat wrote;  /* the file we last wrote, as stat() saw it then */
    int64_t written_ms; /* monotonic time of the last write */
    bool warned;
    struct event *changed_ev, *refresh_ev;
};

/* A time as DEIA writes it (Python's datetime.now().isoformat(): local
 * time, no zone, microseconds), or null when never. DEIA compares these
 * with its own naive local now; a zone would make every entry stale. */
static json_t *registry_time(int64_t wall_ns)
{
    char ts[64];
    struct tm tm;
    if (wall_ns == 0)
        return json_null();
    time_t sec = (time_t)(wall_ns / 1000000000);
    localtime_r(&sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%06ld", (long)(wall_ns % 1000000000 / 1000));
    return json_string(ts);
}

/* One bot's registry entry (SPEC §2, plus restarts and reason); metadata
 * marks it as ours, so the next write knows which entries it may replace. */
static json_t *registry_bot(const struct registry *reg, const struct registry_entry *e)
{
    bool live = e->pid > 0;
    int64_t beat = live && e->beat_is_now ? util_wall_ns() : e->heartbeat_wall_ns;
    json_t *meta = json_pack("{s:s, s:s, s:i}", "managed_by", REGISTRY_OWNER, "hive", reg->name,
                             "supervisor_pid", (int)getpid());
    return json_pack("{s:i, s:o, s:s, s:s, s:o, s:o, s:o, s:i, s:s}", "port", e->port, "pid",
                     live ? json_integer(e->pid) : json_null(), "repo", reg->name, "status",
                     e->status, "registered_at", registry_time(e->registered_wall_ns),
                     "last_heartbeat", registry_time(beat), "metadata", meta, "restarts",
                     (int)e->restarts, "reason", e->reason);
}

/* True when ENTRY was written by a hive (this one or an earlier run in the
 * same work dir: the work dir's lock allows one hive at a time). */
static bool registry_is_ours(json_t *entry)
{
    json_t *owner = json_object_get(json_object_get(entry, "metadata"), "managed_by");
    return json_is_string(owner) && strcmp(json_string_value(owner), REGISTRY_OWNER) == 0;
}

/* The registry file as it is now, with only its foreign entries left in
 * "bots". A file that cannot be read or parsed (DEIA writes it in place, so
 * we may catch it half-written) gives the foreign entries we saw last time:
 * an entry is never dropped because of a torn read. */
static json_t *registry_read(struct registry *reg)
{
    /* Still the file we wrote (no other tool replaced or rewrote it since):
     * what it holds besides our entries is what we kept of it. Reading and
     * parsing it again was a fifth of the supervisor's CPU while a
     * thousand bots started (a 233 KB file every 250 ms). */
    struct stat st;
    if (reg->base && stat(reg->path, &st) == 0 && st.st_ino == reg->wrote.st_ino &&
        st.st_dev == reg->wrote.st_dev && st.st_size == reg->wrote.st_size &&
        st.st_mtim.tv_sec == reg->wrote.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == reg->wrote.st_mtim.tv_nsec &&
        st.st_ctim.tv_sec == reg->wrote.st_ctim.tv_sec &&
        st.st_ctim.tv_nsec == reg->wrote.st_ctim.tv_nsec)
        return json_deep_copy(reg->base);
    size_t len;
    char *text = util_read_file(reg->path, REGISTRY_READ_MAX, &len);
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    bool missing = !text && errno == ENOENT;
    free(text);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "bots"))) {
        json_decref(root);
        root = json_object();
        json_object_set_new(
            root, "bots", missing || !reg->foreign ? json_object() : json_deep_copy(reg->foreign));
        return root;
    }
    json_t *bots = json_object_get(root, "bots"), *entry;
    const char *id;
    void *tmp;
    json_object_foreach_safe(bots, tmp, id, entry)
    {
        if (registry_is_ours(entry))
            json_object_del(bots, id);
    }
    json_decref(reg->foreign);
    reg->foreign = json_deep_copy(bots);
    return root;
}

/* Rewrite the file by atomic rename: the foreign entries as they are, ours
 * replaced (and those of bots we no longer have dropped). */
void registry_write(struct registry *reg)
{
    struct registry_entry e;
    if (!reg->path)
        return;
    reg->written_ms = util_mono_ms();
    json_t *root = registry_read(reg);
    json_t *bots = json_object_get(root, "bots");
    json_decref(reg->base);
    reg->base = NULL;
    json_t *base = json_deep_copy(root); /* before our entries go in */
    for (size_t i = 0; reg->entry(reg->arg, i, &e); i++)
        json_object_set_new(bots, e.id, registry_bot(reg, &e));
    json_object_set_new(root, "updated_at", registry_time(util_wall_ns()));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    memcpy(text + len, "\n", 2);
    /* Atomic but not fsynced: the registry is a snapshot of live state, stale
     * after a crash whatever the disk kept, and a flush would stall the loop
     * (proxy, READY handling, API) at every state change. */
    if (util_replace_file(reg->path, text, len + 1, false) < 0) {
        if (!reg->warned)
            log_warn("cannot write %s: %s", reg->path, strerror(errno));
        reg->warned = true;
        json_decref(base);
    } else if (stat(reg->path, &reg->wrote) == 0 && reg->wrote.st_size == (off_t)(len + 1)) {
        reg->base = base; /* (a file of another size is another tool's, written meanwhile) */
    } else {
        json_decref(base);
    }
    free(text);
    json_decref(root);
}

/* The slow refresh: heartbeat times move on while nothing else changes, so
 * that DEIA's stale check (5 minutes) keeps seeing live bots. */
static void registry_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    struct registry *reg = arg;
    struct registry_entry e;
    (void)fd, (void)what;
    for (size_t i = 0; reg->entry(reg->arg, i, &e); i++)
        if (e.pid > 0) {
            registry_write(reg);
            return;
        }
}

/* The deferred write of registry_changed. */
static void registry_changed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    registry_write(arg);
}

/* A state change: written at the end of this loop pass, or REGISTRY_GAP_MS
 * after the last write when that was sooner. A thousand bots starting change
 * state thousands of times; a write each time (the whole file, every bot)
 * made starting them quadratic. */
void registry_changed(struct registry *reg)
{
    if (evtimer_pending(reg->changed_ev, NULL))
        return;
    int64_t wait = reg->written_ms + REGISTRY_GAP_MS - util_mono_ms();
    if (wait < 0 || wait > REGISTRY_GAP_MS) /* never written, or the clock moved */
        wait = 0;
    struct timeval tv = {0, (long)wait * 1000};
    evtimer_add(reg->changed_ev, &tv);
}

struct registry *registry_new(struct event_base *base, registry_entry_fn entry, void *arg)
{
    struct registry *reg = xcalloc(1, sizeof *reg);
    struct timeval refresh = {REGISTRY_REFRESH_S, 0};
    reg->entry = entry;
    reg->arg = arg;
    reg->name = xstrdup("hive");
    reg->changed_ev = evtimer_new(base, registry_changed_cb, reg);
    reg->refresh_ev = event_new(base, -1, EV_PERSIST, registry_refresh_cb, reg);
    event_add(reg->refresh_ev, &refresh);
    return reg;
}

void registry_set_path(struct registry *reg, const char *path)
{
    free(reg->path);
    reg->path = xstrdup(path);
    json_decref(reg->base); /* what we wrote elsewhere says nothing of this file */
    reg->base = NULL;
}

void registry_set_name(struct registry *reg, const char *hive_name)
{
    free(reg->name);
    reg->name = xstrdup(hive_name);
}

void registry_free(struct registry *reg)
{
    if (!reg)
        return;
    event_free(reg->changed_ev);
    event_free(reg->refresh_ev);
    json_decref(reg->foreign);
    json_decref(reg->base);
    free(reg->path);
    free(reg->name);
    free(reg);
}
